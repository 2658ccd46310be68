//! Whether the addresses a configuration listens on can be bound, and, for
//! one that cannot, which process holds it.
//!
//! `palisade check` runs this so that a port already in use is found before
//! `run` (and without blaming the running Palisade, whose sockets a check
//! before a reload finds in use as expected); `run` runs it so that the
//! failure names the file, line and key instead of Pingora retrying the
//! bind. Who holds a port is read from Linux's `/proc` (the listening
//! socket's inode in `/proc/net/tcp*`, then the process with that socket
//! among its descriptors); where `/proc` does not tell, the holder is
//! unknown.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;

use crate::config::{Config, ConfigError, KeyPath};

/// An address of the configuration that cannot be bound.
#[derive(Debug)]
pub struct Unbindable {
    /// Where the address is in the configuration.
    pub path: KeyPath,
    /// The address.
    pub address: SocketAddr,
    /// The bind error.
    pub error: std::io::Error,
    /// The process listening there, when known.
    pub holder: Option<Holder>,
    /// The holder is a Palisade running this configuration file (started
    /// with `-c` naming it, or whose pid is in `server.pid_file`).
    pub held_by_running: bool,
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}

/// Every listener and admin address of `config` (read from `file`) that
/// cannot be bound now. The test sockets are closed again before
/// returning.
pub fn unbindable(config: &Config, file: &Path) -> Vec<Unbindable> {
    let mut addresses: Vec<(KeyPath, SocketAddr)> = config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let path = KeyPath::root().key("listeners").index(i).key("address");
            (path, l.address)
        })
        .collect();
    if let Some(admin) = &config.admin {
        addresses.push((KeyPath::root().key("admin").key("address"), admin.address));
    }
    let running = running_pid(&config.server.pid_file);
    addresses
        .into_iter()
        .filter_map(|(path, address)| {
            let error = TcpListener::bind(address).err()?;
            let holder = (error.kind() == std::io::ErrorKind::AddrInUse)
                .then(|| holder_of(address))
                .flatten();
            let held_by_running = holder
                .as_ref()
                .is_some_and(|h| Some(h.pid) == running || runs_file(h.pid, file));
            Some(Unbindable {
                path,
                address,
                error,
                holder,
                held_by_running,
            })
        })
        .collect()
}

impl Unbindable {
    /// The problem as a configuration diagnostic, located at the address.
    pub fn to_config_error(&self) -> ConfigError {
        let held = match (&self.holder, self.held_by_running) {
            (Some(h), true) => format!(" (held by the running Palisade, pid {})", h.pid),
            (Some(h), false) => format!(" (held by `{}`, pid {})", h.name, h.pid),
            (None, _) => String::new(),
        };
        let error = ConfigError::value(
            self.path.clone(),
            format!("cannot listen on {}: {}{held}", self.address, self.error),
        );
        match self.error.kind() {
            std::io::ErrorKind::AddrInUse if self.held_by_running => error.with_hint(
                "Palisade is already running with this configuration: `palisade reload` applies a change, \
                 `kill -USR2 <pid>` upgrades the binary",
            ),
            std::io::ErrorKind::AddrInUse => {
                error.with_hint("stop the process that holds it, or choose another address")
            }
            std::io::ErrorKind::PermissionDenied => error.with_hint(
                "ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit grants it)",
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                error.with_hint("the address is not one of this machine's")
            }
            _ => error,
        }
    }
}

/// The pid in `pid_file`, if the file names a live process.
fn running_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Whether process `pid` is `palisade run` with `file` as its
/// configuration (`-c`/`--config`, resolved from its working directory).
fn runs_file(pid: u32, file: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let is_palisade = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "palisade");
    if !is_palisade || !args.iter().any(|a| a == "run") {
        return false;
    }
    let mut config = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "-c" || arg == "--config" {
            config = rest.next().cloned();
        } else if let Some(v) = arg.strip_prefix("--config=") {
            config = Some(v.to_string());
        } else if let Some(v) = arg
            .strip_prefix("-c")
            .filter(|v| !v.is_empty() && !arg.starts_with("--"))
        {
            config = Some(v.to_string());
        }
    }
    let config = config.unwrap_or_else(|| crate::config::DEFAULT_FILE.to_string());
    let theirs = Path::new(&format!("/proc/{pid}/cwd")).join(config);
    match (std::fs::canonicalize(theirs), std::fs::canonicalize(file)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The process with a socket listening where binding `address` conflicts.
fn holder_of(address: SocketAddr) -> Option<Holder> {
    let inodes = listening_inodes(address);
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if targets.iter().any(|t| link.as_os_str() == t.as_str()) {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                return Some(Holder { pid, name });
            }
        }
    }
    None
}

/// The inodes of the listening TCP sockets that conflict with `address`:
/// same port, and the same address or a wildcard on either side.
fn listening_inodes(address: SocketAddr) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let Some((local, inode)) = listening_socket(line) else {
                continue;
            };
            let conflicts = local.port() == address.port()
                && (local.ip() == address.ip()
                    || local.ip().is_unspecified()
                    || address.ip().is_unspecified());
            if conflicts {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// The local address and inode of a `/proc/net/tcp*` line in state LISTEN.
fn listening_socket(line: &str) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((SocketAddr::new(kernel_ip(ip)?, port), inode))
}

/// An address as `/proc/net/tcp*` writes it: the address's 32-bit words
/// as the kernel holds them in memory, printed as host-order integers.
fn kernel_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        let digits = hex.get(i * 8..i * 8 + 8)?;
        u32::from_str_radix(digits, 16).ok().map(u32::to_ne_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            Some(IpAddr::from(octets).to_canonical())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_addresses_parse() {
        // 127.0.0.1:8080 and [::1]:443, as a little-endian kernel writes them.
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            listening_socket(v4),
            Some(("127.0.0.1:8080".parse().unwrap(), 4242))
        );
        let v6 = "   1: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            listening_socket(v6),
            Some(("[::1]:443".parse().unwrap(), 77))
        );
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(listening_socket(&established), None);
    }

    #[test]
    fn a_port_held_here_is_found_with_its_holder() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = held.local_addr().unwrap();
        let holder = holder_of(address).expect("this process holds it");
        assert_eq!(holder.pid, std::process::id());
        assert!(TcpListener::bind(address).is_err());
        // A wildcard bind on that port conflicts too.
        let wildcard = SocketAddr::new("0.0.0.0".parse().unwrap(), address.port());
        assert_eq!(holder_of(wildcard).map(|h| h.pid), Some(std::process::id()));
    }
}

//! The `palisade` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use palisade::cache::CacheStore;
use palisade::config::{LoadError, Report};
use palisade::reload::Reloader;
use palisade::runtime::RuntimeHandle;
use palisade::upgrade::UpgradePlan;
use palisade::upstream::state::HealthRegistry;
use tracing::{info, warn};

/// mimalloc instead of the system allocator: the request path allocates and
/// frees many small buffers per request (headers, bodies, futures), and
/// glibc's malloc/free took about 16 % of the CPU of a cache hit.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG: &str = "conf/palisade.yaml";

#[derive(Parser)]
#[command(
    name = "palisade",
    version = concat!(env!("CARGO_PKG_VERSION"), " (pingora 0.9.1)"),
    about = "A caching reverse proxy built on Pingora",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy in the foreground (or as a daemon with `server.daemon`).
    Run {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Take the listening sockets over from a running process (graceful
        /// upgrade): wait on `server.upgrade_socket` until the old process
        /// gets SIGQUIT. `kill -USR2 <pid>` does both steps for you.
        #[arg(short, long)]
        upgrade: bool,
        /// Run in the background (as `server.daemon: true`).
        #[arg(short, long)]
        daemon: bool,
    },
    /// Check the configuration file and exit: 0 when valid, 1 otherwise.
    Check {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Ask the running proxy to reload FILE (through its admin API) and
    /// print what changed, or the errors that kept it from reloading.
    Reload {
        /// The configuration file the proxy runs with.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Hash a password read from standard input (one line) for a basic auth
    /// policy's `users:` or an htpasswd file.
    HashPassword {
        /// Print a bcrypt hash (cost 12) instead of argon2id.
        #[arg(long)]
        bcrypt: bool,
    },
    /// Make a new random API key; prints the key (give it to the client)
    /// and the `keys:` entry with its SHA-256 (put it in the configuration).
    GenerateApiKey {
        /// The key's name (the identity of requests using it).
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            upgrade,
            daemon,
        } => run(&config, upgrade, daemon),
        Command::Reload { config } => reload(&config),
        Command::HashPassword { bcrypt } => hash_password(bcrypt),
        Command::GenerateApiKey { name } => generate_api_key(&name),
    }
}

fn reload(path: &Path) -> ExitCode {
    // The file is checked here first, so that errors show in this terminal;
    // the running proxy checks it again before applying it.
    let loaded = match palisade::load(path, &HealthRegistry::default()) {
        Ok((loaded, _)) => loaded,
        Err(e) => {
            print_load_error(path, &e);
            return ExitCode::FAILURE;
        }
    };
    let Some(admin) = &loaded.config.admin else {
        eprintln!(
            "palisade: {} has no `admin:` section; send SIGHUP to the process instead (systemctl reload palisade)",
            path.display()
        );
        return ExitCode::FAILURE;
    };
    let token = match admin.resolve_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("palisade: {e}");
            return ExitCode::FAILURE;
        }
    };
    match palisade::admin::client::post(admin.address, "/reload", &token) {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("palisade: reload refused ({status}):\n{body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "palisade: cannot reach the admin API at {}: {e}",
                admin.address
            );
            ExitCode::FAILURE
        }
    }
}

fn hash_password(bcrypt: bool) -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("palisade: cannot read the password from standard input");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("palisade: empty password (write it on standard input, e.g. `palisade hash-password < file`)");
        return ExitCode::FAILURE;
    }
    match palisade::auth::basic::hash_password(password, bcrypt) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate_api_key(name: &str) -> ExitCode {
    let (key, digest) = palisade::auth::api_key::generate();
    println!("key: {key}");
    println!("entry: {{ name: {name}, sha256: {digest} }}");
    ExitCode::SUCCESS
}

fn print_load_error(path: &Path, e: &LoadError) {
    eprintln!("{e}");
    if let LoadError::Invalid { report } = e {
        eprintln!(
            "palisade: configuration file {} test failed ({})",
            path.display(),
            count(report.errors.len(), "error")
        );
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn check(path: &Path) -> ExitCode {
    match palisade::load(path, &HealthRegistry::default()) {
        Ok((loaded, runtime)) => {
            let report: Report = loaded.report(Vec::new());
            if !report.warnings.is_empty() {
                eprintln!("{report}");
            }
            let c = &loaded.config;
            eprintln!(
                "palisade: configuration file {} test is successful ({}, {}, {}, {})",
                path.display(),
                count(c.listeners.len(), "listener"),
                count(c.upstreams.len(), "upstream"),
                count(
                    runtime.pools.iter().map(|p| p.backends().len()).sum(),
                    "backend"
                ),
                count(c.routes.len(), "route"),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_load_error(path, &e);
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path, upgrade: bool, daemon: bool) -> ExitCode {
    // Where to find the next version on SIGUSR2: this path, resolved now,
    // before a package upgrade replaces the file.
    let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("palisade"));
    let registry = Arc::new(HealthRegistry::default());
    let (loaded, runtime) = match palisade::load(path, &registry) {
        Ok(ok) => ok,
        Err(e) => {
            print_load_error(path, &e);
            return ExitCode::FAILURE;
        }
    };
    let config = &loaded.config;
    // `--daemon` is a process option like `--upgrade`: the configuration
    // stays as written, so that a reload does not see `server` changed.
    let daemon = daemon || config.server.daemon;
    // During an upgrade the old process still holds the addresses.
    if !upgrade {
        if let Err(e) = palisade::server::check_listeners(config) {
            eprintln!("palisade: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = palisade::observe::access_log::init(&config.logging.access_log) {
        eprintln!("palisade: {e}");
        return ExitCode::FAILURE;
    }
    palisade::logging::init(config.logging.level);
    for w in loaded.report(Vec::new()).warnings {
        warn!("{w}");
    }
    for l in &config.listeners {
        info!(
            listener = %l.name,
            address = %l.address,
            h2c = l.h2c,
            tls = l.tls.is_some(),
            "listening"
        );
    }
    info!(
        config = %path.display(),
        routes = config.routes.len(),
        upstreams = config.upstreams.len(),
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        upgrade,
        "palisade starting"
    );
    let runtime = Arc::new(RuntimeHandle::new(runtime));
    let cache = CacheStore::leak(&config.cache);
    let reloader = Arc::new(Reloader::new(
        path.to_path_buf(),
        config.clone(),
        loaded.sha256.clone(),
        runtime.clone(),
        registry.clone(),
    ));
    let plan = UpgradePlan {
        binary,
        config: path.to_path_buf(),
        upgrade_socket: config.server.upgrade_socket.clone(),
        daemon,
    };
    let services = palisade::server::Shared {
        runtime,
        cache,
        registry,
        reloader,
        upgrade: plan,
    };
    let server = match palisade::server::build(config, upgrade, daemon, services) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("palisade: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.run_forever()
}

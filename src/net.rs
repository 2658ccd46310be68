//! Small networking and HTTP-field helpers shared by several modules
//! (the bottom layer, beside `config`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ahash::AHashSet;

use ipnet::IpNet;

/// The body length a message declares (`Content-Length`), when it is a
/// valid number.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The value of cookie `name` in a request's `Cookie` fields, if present
/// (read by cache keys, limit keys and hash keys alike).
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// A set of IP networks (e.g. the trusted proxies, an allow list), matched
/// by containment.
///
/// Networks are grouped by prefix length, one hash set of masked addresses
/// per length, so a lookup costs one probe per distinct prefix length (at
/// most 33 for IPv4, 129 for IPv6, a handful in practice) however many
/// networks the set holds.
///
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, seen on dual-stack
/// listeners) are matched as the IPv4 address they carry.
#[derive(Debug, Clone, Default)]
pub struct IpSet {
    v4: Box<[(u8, AHashSet<u32>)]>,
    v6: Box<[(u8, AHashSet<u128>)]>,
}

fn mask_v4(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (!0u32 << (32 - u32::from(len)))
    }
}

fn mask_v6(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (!0u128 << (128 - u32::from(len)))
    }
}

impl IpSet {
    /// A set of the given networks.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4: BTreeMap<u8, AHashSet<u32>> = BTreeMap::new();
        let mut v6: BTreeMap<u8, AHashSet<u128>> = BTreeMap::new();
        for net in networks {
            match net.trunc() {
                IpNet::V4(n) => {
                    v4.entry(n.prefix_len())
                        .or_default()
                        .insert(u32::from(n.network()));
                }
                IpNet::V6(n) => {
                    v6.entry(n.prefix_len())
                        .or_default()
                        .insert(u128::from(n.network()));
                }
            }
        }
        Self {
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
        }
    }

    /// Whether `ip` is inside one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let addr = u32::from(v4);
                self.v4
                    .iter()
                    .any(|(len, set)| set.contains(&mask_v4(addr, *len)))
            }
            IpAddr::V6(v6) => {
                let addr = u128::from(v6);
                self.v6
                    .iter()
                    .any(|(len, set)| set.contains(&mask_v6(addr, *len)))
            }
        }
    }

    /// Whether the set has no network.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// An IP address as a header value (`X-Forwarded-For`): IPv4 written
/// digit by digit, a tenth of what `Display` costs on the request path.
pub fn ip_header_value(ip: IpAddr) -> http::HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return http::HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            text[len] = b'0' + d;
            len += 1;
        }
    }
    http::HeaderValue::from_bytes(&text[..len])
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

/// Sends the TCP acknowledgement the kernel is holding back on socket `fd`
/// now (`TCP_QUICKACK`), instead of when the delayed-ACK timer fires.
///
/// On a kept-alive connection Linux delays ACKs (up to 40 ms) in
/// request/response traffic; an origin that writes a response's header and
/// body in two segments with Nagle on (`python3 -m http.server`, many
/// frameworks) holds the body back until its header is acknowledged, so
/// every response would stall that long. Called once the response header
/// has been read; a no-op where the option does not exist.
pub fn acknowledge_now(fd: std::os::fd::RawFd) {
    #[cfg(target_os = "linux")]
    {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid
        // pointer; an fd that is not a TCP socket only makes it fail, and
        // failure changes nothing (the ACK is then sent by the timer).
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_v4_v6_and_mapped_addresses() {
        let set = IpSet::new(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        assert!(set.contains("10.1.2.3".parse().unwrap()));
        assert!(set.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(set.contains("fd12::1".parse().unwrap()));
        assert!(!set.contains("192.168.0.1".parse().unwrap()));
        assert!(!IpSet::default().contains("10.0.0.1".parse().unwrap()));
        let all = IpSet::new(["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        let hosts = IpSet::new([
            "192.0.2.7/32".parse().unwrap(),
            "2001:db8::7/128".parse().unwrap(),
        ]);
        assert!(hosts.contains("192.0.2.7".parse().unwrap()));
        assert!(!hosts.contains("192.0.2.6".parse().unwrap()));
        assert!(hosts.contains("2001:db8::7".parse().unwrap()));
        assert!(!hosts.contains("2001:db8::6".parse().unwrap()));
    }

    #[test]
    fn ip_header_values_are_the_addresses_text() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.20.30.40",
            "100.200.255.9",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(parsed), ip, "{ip}");
        }
    }
}

//! How slow a client may be: the request body's minimum rate (Apache
//! `mod_reqtimeout`'s `MinRate`), on top of Pingora's per-read timeout.

use std::time::Duration;

use crate::runtime::ListenerPolicy;

/// Whether a body of which `received` bytes arrived `elapsed` after the
/// request started is too slow: past `client_body_timeout` plus one second
/// per `client_body_min_rate` bytes. A client that drips a byte now and then
/// never trips the per-read timeout; this catches it.
pub fn body_too_slow(listener: &ListenerPolicy, elapsed: Duration, received: u64) -> bool {
    let Some(rate) = listener.client_body_min_rate else {
        return false;
    };
    let allowed =
        listener.client_body_timeout + Duration::from_secs_f64(received as f64 / rate as f64);
    elapsed > allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(rate: Option<u64>) -> ListenerPolicy {
        ListenerPolicy {
            name: "test".into(),
            certificates: None,
            https: Default::default(),
            https_port: 443,
            hsts: None,
            ip_filter: None,
            send_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(30),
            client_body_min_rate: rate,
            error_pages: Default::default(),
        }
    }

    #[test]
    fn the_allowance_grows_with_what_arrived() {
        let l = listener(Some(500));
        let secs = Duration::from_secs;
        assert!(!body_too_slow(&l, secs(29), 0));
        assert!(body_too_slow(&l, secs(31), 0));
        // 5 000 bytes buy 10 more seconds.
        assert!(!body_too_slow(&l, secs(39), 5_000));
        assert!(body_too_slow(&l, secs(41), 5_000));
        // A byte every 25 s: cut off at the second one.
        assert!(!body_too_slow(&l, secs(25), 1));
        assert!(body_too_slow(&l, secs(50), 2));
        assert!(!body_too_slow(&listener(None), secs(3600), 0));
    }
}

//! When a failed upstream attempt is tried again: the rule alone, without
//! the request it applies to (the proxy gathers the facts).
//!
//! - A connect failure never reached the backend: any method goes to a
//!   *different* backend, within the pool's `max_retries`.
//! - A failure after the request was sent is replayed only when replaying
//!   cannot repeat an effect or a byte the client already has: an
//!   idempotent method, a body still fully buffered, no response started,
//!   time left before the request deadline.
//! - A pooled connection the backend had closed (the keep-alive race) is
//!   not the backend's failure: replayed on a new connection without
//!   spending `max_retries`, at most [`MAX_STALE_CONNECTION_REPLAYS`] times.
//! - Otherwise, an upstream fault is retried on another backend within
//!   `max_retries`, while the pool has one the request has not tried.

/// How many times one request is replayed after finding a pooled upstream
/// connection closed by the backend.
pub const MAX_STALE_CONNECTION_REPLAYS: u32 = 3;

/// The budget and the pool's state when an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Retries on another backend already spent.
    pub retries_used: u32,
    /// The pool's `max_retries`.
    pub max_retries: u32,
    /// The request deadline (`request_timeout`) has passed.
    pub deadline_passed: bool,
    /// The pool has an available backend this request has not tried.
    pub untried_left: bool,
}

impl Budget {
    fn allows_another_backend(&self) -> bool {
        self.retries_used < self.max_retries && !self.deadline_passed && self.untried_left
    }
}

/// Whether a connection that could not be made is tried on another
/// backend.
pub fn after_connect_failure(budget: Budget) -> bool {
    budget.allows_another_backend()
}

/// What is known of an attempt that failed after its request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentFailure {
    /// The method is idempotent (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// The request body is still fully buffered for a replay.
    pub body_buffered: bool,
    /// The upstream response header arrived.
    pub response_started: bool,
    /// The failure was on a pooled connection the backend had closed.
    pub stale_connection: bool,
    /// The failure is the upstream's (not the client's, not internal).
    pub upstream_fault: bool,
    /// Stale-connection replays already made.
    pub stale_replays_used: u32,
}

/// What to do after an attempt failed once sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSent {
    /// Answer the client with the failure.
    GiveUp,
    /// Replay on a new connection; not spent from `max_retries`.
    Replay,
    /// Retry on another backend, spending one of `max_retries`.
    Retry,
}

/// The rule for a failure after the request was sent.
pub fn after_sent(failure: SentFailure, budget: Budget) -> AfterSent {
    let replayable = failure.idempotent
        && failure.body_buffered
        && !failure.response_started
        && !budget.deadline_passed;
    if !replayable {
        return AfterSent::GiveUp;
    }
    if failure.stale_connection {
        return if failure.stale_replays_used < MAX_STALE_CONNECTION_REPLAYS {
            AfterSent::Replay
        } else {
            AfterSent::GiveUp
        };
    }
    if failure.upstream_fault && budget.allows_another_backend() {
        AfterSent::Retry
    } else {
        AfterSent::GiveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: Budget = Budget {
        retries_used: 0,
        max_retries: 2,
        deadline_passed: false,
        untried_left: true,
    };

    const GET_RESET: SentFailure = SentFailure {
        idempotent: true,
        body_buffered: true,
        response_started: false,
        stale_connection: false,
        upstream_fault: true,
        stale_replays_used: 0,
    };

    #[test]
    fn a_connect_failure_goes_to_another_backend_while_the_budget_lasts() {
        assert!(after_connect_failure(ROOM));
        for spent in [
            Budget {
                retries_used: 2,
                ..ROOM
            },
            Budget {
                deadline_passed: true,
                ..ROOM
            },
            Budget {
                untried_left: false,
                ..ROOM
            },
            Budget {
                max_retries: 0,
                ..ROOM
            },
        ] {
            assert!(!after_connect_failure(spent), "{spent:?}");
        }
    }

    #[test]
    fn an_idempotent_request_is_retried_on_another_backend() {
        assert_eq!(after_sent(GET_RESET, ROOM), AfterSent::Retry);
        assert_eq!(
            after_sent(
                GET_RESET,
                Budget {
                    retries_used: 2,
                    ..ROOM
                }
            ),
            AfterSent::GiveUp
        );
        assert_eq!(
            after_sent(
                GET_RESET,
                Budget {
                    untried_left: false,
                    ..ROOM
                }
            ),
            AfterSent::GiveUp
        );
    }

    #[test]
    fn nothing_is_replayed_that_could_repeat_an_effect_or_a_byte() {
        for unsafe_to_replay in [
            SentFailure {
                idempotent: false,
                ..GET_RESET
            },
            SentFailure {
                body_buffered: false,
                ..GET_RESET
            },
            SentFailure {
                response_started: true,
                ..GET_RESET
            },
        ] {
            assert_eq!(after_sent(unsafe_to_replay, ROOM), AfterSent::GiveUp);
            // Not even after a closed pooled connection: a POST may have
            // been read and acted on before the backend closed.
            let stale = SentFailure {
                stale_connection: true,
                ..unsafe_to_replay
            };
            assert_eq!(after_sent(stale, ROOM), AfterSent::GiveUp);
        }
        assert_eq!(
            after_sent(
                GET_RESET,
                Budget {
                    deadline_passed: true,
                    ..ROOM
                }
            ),
            AfterSent::GiveUp
        );
    }

    #[test]
    fn a_closed_pooled_connection_is_replayed_without_spending_retries() {
        let stale = SentFailure {
            stale_connection: true,
            ..GET_RESET
        };
        let no_retries = Budget {
            max_retries: 0,
            untried_left: false,
            ..ROOM
        };
        assert_eq!(after_sent(stale, no_retries), AfterSent::Replay);
        let worn = SentFailure {
            stale_replays_used: MAX_STALE_CONNECTION_REPLAYS,
            ..stale
        };
        assert_eq!(after_sent(worn, ROOM), AfterSent::GiveUp);
    }

    #[test]
    fn a_failure_that_is_not_the_upstreams_is_not_retried() {
        let internal = SentFailure {
            upstream_fault: false,
            ..GET_RESET
        };
        assert_eq!(after_sent(internal, ROOM), AfterSent::GiveUp);
    }
}

//! The one shape of an early answer: a request refused (or redirected)
//! before it reaches the cache or the origin, and the one function that
//! writes it. Every check that can stop a request returns a [`Refusal`];
//! [`answer`] logs why (at debug level: a refusal is the client's business,
//! never a credential) and sends it, decorated like every generated
//! response.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue};
use pingora::prelude::*;
use tracing::debug;

use super::context::RequestCtx;
use super::respond;
use crate::auth::{Authenticator, Denial};

/// A request answered before the origin: its status, why, and what the
/// answer carries besides the short plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status sent.
    pub status: u16,
    /// Why, for the log.
    pub reason: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
}

impl Refusal {
    /// A refusal with `status`, for `reason`.
    pub fn new(status: u16, reason: &'static str) -> Self {
        Refusal {
            status,
            reason,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A `308 Permanent Redirect` to `location` (clients following it keep
    /// the method and body, unlike with 301).
    pub fn redirect(location: &str, reason: &'static str) -> Self {
        Self::redirect_with(308, location, reason)
    }

    /// A redirect with `status` to `location` (`400` if it is not a valid
    /// header value).
    pub fn redirect_with(status: u16, location: &str, reason: &'static str) -> Self {
        match HeaderValue::from_str(location) {
            Ok(value) => Refusal::new(status, reason).with_header(header::LOCATION, value),
            Err(_) => Refusal::new(400, "the redirect target is not a valid header value"),
        }
    }

    /// Adds a header to the answer (appended: several challenges may go
    /// out under one name).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Answers with `body` instead of the status line.
    pub fn with_body(mut self, body: Option<Bytes>) -> Self {
        self.body = body;
        self
    }

    /// The refusal of an authentication policy's `denial`: its status and
    /// every challenge the policy issues for it.
    pub fn denied(authenticator: &Authenticator, denial: &Denial, reason: &'static str) -> Self {
        authenticator
            .challenges(denial)
            .into_iter()
            .fold(Refusal::new(denial.status(), reason), |r, c| {
                r.with_header(header::WWW_AUTHENTICATE, c)
            })
    }

    /// The headers of the answer.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

/// Sends `refusal` and ends the request (closing the connection if the
/// request body was not read).
pub async fn answer(session: &mut Session, ctx: &RequestCtx, refusal: Refusal) -> Result<()> {
    debug!(
        status = refusal.status,
        route = %ctx.route_name(),
        client = ?ctx.client_ip,
        request_id = %ctx.request_id_str(),
        "{}",
        refusal.reason
    );
    let (mut resp, body) = respond::build_generated(refusal.status, refusal.body, ctx)?;
    for (name, value) in refusal.headers {
        // A refusal's own Content-Type replaces the default one; other
        // fields (challenges) may repeat.
        if name == header::CONTENT_TYPE {
            resp.insert_header(name, value)?;
        } else {
            resp.append_header(name, value)?;
        }
    }
    respond::write(session, ctx, resp, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_carries_its_location_or_becomes_a_400() {
        let r = Refusal::redirect("https://example.com/a?b=1", "plain HTTP");
        assert_eq!(r.status, 308);
        assert_eq!(r.headers()[0].0, header::LOCATION);
        assert_eq!(r.headers()[0].1, "https://example.com/a?b=1");
        assert_eq!(Refusal::redirect("https://x/\n", "plain HTTP").status, 400);
    }
}

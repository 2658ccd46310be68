//! Builders shared by the unit tests (compiled only for `cargo test`), so
//! that every module's tests build requests and responses the same way.

use pingora::http::{RequestHeader, ResponseHeader};

/// A request `method uri` with `headers` appended in order.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, uri.as_bytes(), None).expect("request line");
    for (name, value) in headers {
        r.append_header(name.to_string(), *value).expect("header");
    }
    r
}

/// `GET /` with `headers`.
pub fn get(headers: &[(&str, &str)]) -> RequestHeader {
    request("GET", "/", headers)
}

/// A response with `status` and `headers` appended in order.
pub fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(status, None).expect("status");
    for (name, value) in headers {
        r.append_header(name.to_string(), *value).expect("header");
    }
    r
}

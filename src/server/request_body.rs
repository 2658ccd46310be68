//! What the listener needs to know about a request head to read its body
//! before the origin is contacted (request buffering): the body's framing
//! and the reasons not to buffer it. Pure functions of the bytes read.

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What a request head says that matters for buffering its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadFacts {
    /// `Host` (or the absolute URI's authority).
    pub host: Option<String>,
    /// The request path, without the query.
    pub path: String,
    /// How the body is delimited.
    pub framing: Framing,
    /// The body must stream: an upgrade, `Expect: 100-continue` (the
    /// client waits for the origin's go-ahead), gRPC.
    pub must_stream: bool,
}

/// Reads the head in `head` (complete, blank line included). `None` when
/// it does not parse (or its framing is ambiguous): Pingora reads it then
/// and answers as it does.
pub fn parse_head(head: &[u8], max_headers: usize) -> Option<HeadFacts> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let target = req.path?;
    let (authority, path) = match target.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), "/"),
        },
        None => (None, target),
    };
    let path = path.split('?').next().unwrap_or("/").to_string();
    let mut host = authority.map(str::to_string);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut must_stream = false;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).ok()?.trim();
        match h.name.to_ascii_lowercase().as_str() {
            "host" if host.is_none() => host = Some(value.to_string()),
            "content-length" => {
                let n: usize = value.parse().ok()?;
                if length.is_some_and(|l| l != n) {
                    return None;
                }
                length = Some(n);
            }
            "transfer-encoding" => chunked = true,
            "upgrade" => must_stream = true,
            "expect" if value.eq_ignore_ascii_case("100-continue") => must_stream = true,
            "content-type" if value.to_ascii_lowercase().starts_with("application/grpc") => {
                must_stream = true
            }
            _ => {}
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    Some(HeadFacts {
        host,
        path,
        framing,
        must_stream,
    })
}

/// For a chunked body whose bytes so far are `body`: its total length on
/// the wire once complete (`Ok(Some(n))`), `Ok(None)` while incomplete,
/// `Err(())` when it is malformed (left to Pingora).
#[allow(clippy::result_unit_err)]
pub fn chunked_length(body: &[u8]) -> Result<Option<usize>, ()> {
    let mut at = 0;
    loop {
        let Some(line_end) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[at..at + line_end]).map_err(|_| ())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ())?;
        at += line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(end) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        let next = at
            .checked_add(size)
            .and_then(|n| n.checked_add(2))
            .ok_or(())?;
        if body.len() < next {
            return Ok(None);
        }
        if &body[next - 2..next] != b"\r\n" {
            return Err(());
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_framing_and_the_reasons_to_stream() {
        let facts = parse_head(
            b"POST /up?x=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n",
            10,
        )
        .unwrap();
        assert_eq!(facts.host.as_deref(), Some("a.test"));
        assert_eq!(facts.path, "/up");
        assert_eq!(facts.framing, Framing::Length(5));
        assert!(!facts.must_stream);
        let chunked = parse_head(
            b"POST http://b.test/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            10,
        )
        .unwrap();
        assert_eq!(chunked.host.as_deref(), Some("b.test"));
        assert_eq!(chunked.framing, Framing::Chunked);
        assert!(chunked.must_stream);
        let get = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 10).unwrap();
        assert_eq!(get.framing, Framing::None);
        assert!(parse_head(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            10
        )
        .is_none());
    }

    #[test]
    fn finds_the_end_of_a_chunked_body() {
        assert_eq!(chunked_length(b"3\r\nabc\r\n0\r\n\r\n"), Ok(Some(13)));
        assert_eq!(
            chunked_length(b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nnext"),
            Ok(Some(21))
        );
        assert_eq!(chunked_length(b"3\r\nab"), Ok(None));
        assert_eq!(chunked_length(b"3\r\nabc\r\n"), Ok(None));
        assert_eq!(chunked_length(b"zz\r\n"), Err(()));
        assert_eq!(chunked_length(b"3\r\nabcd\r\n"), Err(()));
    }
}

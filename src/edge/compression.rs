//! On-the-fly compression of a route's responses (gzip, brotli, zstd),
//! computed once: the coding is chosen from the client's `Accept-Encoding`
//! *before* the cache, and the request's field is rewritten to that one
//! coding, so a caching route stores at most one variant per coding (the
//! compressed response carries `Vary: Accept-Encoding`) and a hit costs
//! no compression. The compression itself happens as the origin's response
//! arrives, before it is stored (flate2, brotli and zstd streaming
//! writers); a strong `ETag` is weakened (RFC 9110 §8.8.1) and
//! `Content-Length` and `Accept-Ranges` dropped on the fly.
//!
//! Only `200` responses of a listed media type, at least `min_length`
//! long when declared, without `Cache-Control: no-transform` and not
//! already coded are compressed; an origin's own coding is passed through
//! (or decoded for a client that accepts none, with `decompress`).

use http::{header, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::config::CompressionConfig;

/// A coding Palisade produces, in its order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// brotli.
    Brotli,
    /// zstd.
    Zstd,
    /// gzip.
    Gzip,
    /// None.
    Identity,
}

impl Coding {
    /// The token in `Accept-Encoding` / `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
            Coding::Identity => "identity",
        }
    }
}

/// A route's compression, compiled.
#[derive(Debug, Clone)]
pub struct CompressionPolicy {
    types: Box<[Box<str>]>,
    min_length: u64,
    gzip: u32,
    brotli: u32,
    zstd: u32,
    decompress: bool,
}

impl CompressionPolicy {
    /// Compiles a validated configuration.
    pub fn compile(config: &CompressionConfig) -> Self {
        Self {
            types: config
                .types
                .iter()
                .map(|t| t.to_ascii_lowercase().into_boxed_str())
                .collect(),
            min_length: config.min_length,
            gzip: config.gzip,
            brotli: config.brotli,
            zstd: config.zstd,
            decompress: config.decompress,
        }
    }

    fn level(&self, coding: Coding) -> u32 {
        match coding {
            Coding::Brotli => self.brotli,
            Coding::Zstd => self.zstd,
            Coding::Gzip => self.gzip,
            Coding::Identity => 0,
        }
    }

    /// The coding for a client's `Accept-Encoding` (RFC 9110 §12.5.3): the
    /// enabled coding with the highest q-value, ties going to br, then
    /// zstd, then gzip; `identity` when none is acceptable.
    pub fn choose(&self, accept_encoding: Option<&HeaderValue>) -> Coding {
        let Some(text) = accept_encoding.and_then(|v| v.to_str().ok()) else {
            return Coding::Identity;
        };
        // One pass, no allocation: the q of each coding we produce, and of `*`.
        const CODINGS: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];
        let mut listed: [Option<f32>; 3] = [None; 3];
        let mut wildcard: Option<f32> = None;
        for item in text.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
                })
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if token == "*" {
                wildcard = Some(q);
            } else if let Some(i) = CODINGS
                .iter()
                .position(|c| token.eq_ignore_ascii_case(c.as_str()))
            {
                listed[i] = Some(q);
            }
        }
        let mut best = (Coding::Identity, 0.0f32);
        for (i, coding) in CODINGS.into_iter().enumerate() {
            let q = listed[i].or(wildcard).unwrap_or(0.0);
            if self.level(coding) > 0 && q > 0.0 && q > best.1 {
                best = (coding, q);
            }
        }
        best.0
    }

    /// Rewrites the request's `Accept-Encoding` to the one chosen coding:
    /// what the cache key varies on and what the origin is asked for.
    pub fn normalise_request(&self, req: &mut RequestHeader) -> pingora::Result<Coding> {
        let coding = self.choose(req.headers.get(header::ACCEPT_ENCODING));
        req.insert_header(header::ACCEPT_ENCODING, coding.as_str())?;
        Ok(coding)
    }

    /// Whether Palisade may compress (or decode) `resp` at all.
    pub fn applies_to(&self, resp: &ResponseHeader) -> bool {
        if resp.status != http::StatusCode::OK {
            return false;
        }
        let no_transform = |v: &HeaderValue| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
        };
        if resp
            .headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .any(no_transform)
        {
            return false;
        }
        if resp.headers.contains_key(header::CONTENT_ENCODING) {
            return self.decompress;
        }
        if crate::net::declared_length(&resp.headers).is_some_and(|len| len < self.min_length) {
            return false;
        }
        let media = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim());
        media.is_some_and(|m| self.types.iter().any(|t| t.eq_ignore_ascii_case(m)))
    }

    /// The compression state for one response to a request whose
    /// (normalised) header is `req`.
    pub fn context(&self, req: &RequestHeader) -> Compressor {
        let accepted = self.choose(req.headers.get(header::ACCEPT_ENCODING));
        Compressor {
            accepted,
            level: self.level(accepted),
            codec: None,
            remaining: None,
        }
    }
}

/// One response's compression: the codec chosen for it, fed the origin's
/// body as it arrives.
///
/// Pingora ends an origin body with a separate "done" step that the
/// upstream body filter never sees, so the codec is finished when the
/// declared `Content-Length` has arrived (or when a piece says it is the
/// last).
pub struct Compressor {
    accepted: Coding,
    /// The policy's level for `accepted`.
    level: u32,
    codec: Option<Codec>,
    remaining: Option<u64>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("accepted", &self.accepted)
            .field("active", &self.codec.is_some())
            .finish()
    }
}

/// A streaming encoder or decoder writing into a buffer.
enum Codec {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    GunZip(flate2::write::GzDecoder<Vec<u8>>),
    UnBrotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    UnZstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Codec {
    fn encoder(coding: Coding, level: u32) -> Option<Self> {
        Some(match coding {
            Coding::Gzip => Codec::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            // A 4 MiB window (lgwin 22), the brotli default.
            Coding::Brotli => Codec::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                level,
                22,
            ))),
            Coding::Zstd => Codec::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), i32::try_from(level).ok()?).ok()?,
            ),
            Coding::Identity => return None,
        })
    }

    fn decoder(content_encoding: &str) -> Option<Self> {
        match content_encoding.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Codec::GunZip(flate2::write::GzDecoder::new(Vec::new()))),
            "br" => Some(Codec::UnBrotli(Box::new(brotli::DecompressorWriter::new(
                Vec::new(),
                4096,
            )))),
            "zstd" => Some(Codec::UnZstd(
                zstd::stream::write::Decoder::new(Vec::new()).ok()?,
            )),
            _ => None,
        }
    }

    /// The metric label.
    fn name(&self) -> &'static str {
        match self {
            Codec::Gzip(_) => "gzip",
            Codec::Brotli(_) => "br",
            Codec::Zstd(_) => "zstd",
            Codec::GunZip(_) => "de-gzip",
            Codec::UnBrotli(_) => "de-br",
            Codec::UnZstd(_) => "de-zstd",
        }
    }

    /// Feeds `input`; at `end`, finishes the stream. What came out so far.
    fn feed(&mut self, input: &[u8], end: bool) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Codec::Gzip(e) => {
                e.write_all(input)?;
                if end {
                    e.try_finish()?;
                }
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::Brotli(e) => {
                e.write_all(input)?;
                if end {
                    // Only closing the writer emits the last block.
                    let done = std::mem::replace(
                        e,
                        Box::new(brotli::CompressorWriter::new(Vec::new(), 0, 0, 22)),
                    );
                    return Ok(done.into_inner());
                }
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::Zstd(e) => {
                e.write_all(input)?;
                if end {
                    e.do_finish()?;
                }
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::GunZip(d) => {
                d.write_all(input)?;
                if end {
                    d.try_finish()?;
                }
                Ok(std::mem::take(d.get_mut()))
            }
            Codec::UnBrotli(d) => {
                d.write_all(input)?;
                if end {
                    d.flush()?;
                }
                Ok(std::mem::take(d.get_mut()))
            }
            Codec::UnZstd(d) => {
                d.write_all(input)?;
                if end {
                    d.flush()?;
                }
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }
}

impl Compressor {
    /// Takes the response header: picks the codec, and writes what the
    /// coding changes (`Content-Encoding`, `Vary: Accept-Encoding`, a weak
    /// `ETag`, no length or ranges). The codec's name, when there is one.
    pub fn response_header(&mut self, resp: &mut ResponseHeader) -> Option<&'static str> {
        let codec = match resp.headers.get(header::CONTENT_ENCODING) {
            // Already coded: decoded only for a client that accepts no
            // coding (`applies_to` let it through only with `decompress`).
            Some(ce) => match self.accepted {
                Coding::Identity => ce.to_str().ok().and_then(Codec::decoder),
                _ => None,
            },
            None => Codec::encoder(self.accepted, self.level),
        };
        add_vary(resp);
        let codec = codec?;
        self.remaining = crate::net::declared_length(&resp.headers);
        match &codec {
            Codec::GunZip(_) | Codec::UnBrotli(_) | Codec::UnZstd(_) => {
                resp.remove_header(&header::CONTENT_ENCODING);
            }
            _ => {
                let _ = resp.insert_header(header::CONTENT_ENCODING, self.accepted.as_str());
            }
        }
        resp.remove_header(&header::CONTENT_LENGTH);
        resp.remove_header(&header::ACCEPT_RANGES);
        weaken_etag(resp);
        let name = codec.name();
        self.codec = Some(codec);
        Some(name)
    }

    /// A piece of the body, transformed; the pieces before the last may
    /// come out empty (the codec buffers). A codec error stops the
    /// response (the body can no longer be told apart from garbage).
    pub fn body(
        &mut self,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
    ) -> std::io::Result<()> {
        let Some(codec) = self.codec.as_mut() else {
            return Ok(());
        };
        let input = body.take().unwrap_or_default();
        let complete = match self.remaining.as_mut() {
            Some(left) => {
                *left = left.saturating_sub(input.len() as u64);
                *left == 0
            }
            None => false,
        };
        let end = end_of_stream || complete;
        let out = codec.feed(&input, end)?;
        if end {
            self.codec = None;
        }
        *body = (!out.is_empty()).then(|| bytes::Bytes::from(out));
        Ok(())
    }
}

/// Adds `Accept-Encoding` to the response's `Vary` (unless it is there or
/// `Vary: *`).
fn add_vary(resp: &mut ResponseHeader) {
    let present = resp.headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|n| n.trim() == "*" || n.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !present {
        let _ = resp.append_header(header::VARY, "Accept-Encoding");
    }
}

/// RFC 9110 §8.8.1: another coding is another representation, so a strong
/// `ETag` is weakened (an invalid one is dropped), as nginx does.
fn weaken_etag(resp: &mut ResponseHeader) {
    let Some(etag) = resp.headers.get(header::ETAG).cloned() else {
        return;
    };
    let bytes = etag.as_bytes();
    if bytes.starts_with(b"W/") {
        return;
    }
    match HeaderValue::from_bytes(&[b"W/", bytes].concat()) {
        Ok(weak) if bytes.starts_with(b"\"") => {
            let _ = resp.insert_header(header::ETAG, weak);
        }
        _ => {
            resp.remove_header(&header::ETAG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CompressionPolicy {
        CompressionPolicy::compile(&CompressionConfig::default())
    }

    fn choose(ae: &str) -> Coding {
        policy().choose(Some(&HeaderValue::from_str(ae).unwrap()))
    }

    #[test]
    fn the_best_acceptable_coding_is_chosen_by_q_then_preference() {
        assert_eq!(choose("gzip, deflate, br, zstd"), Coding::Brotli);
        assert_eq!(choose("gzip, zstd"), Coding::Zstd);
        assert_eq!(choose("gzip"), Coding::Gzip);
        assert_eq!(choose("br;q=0.5, gzip;q=0.9"), Coding::Gzip);
        assert_eq!(choose("br;q=0, gzip"), Coding::Gzip);
        assert_eq!(choose("*"), Coding::Brotli);
        assert_eq!(choose("*;q=0.1, gzip;q=0.5"), Coding::Gzip);
        assert_eq!(choose("identity"), Coding::Identity);
        assert_eq!(choose("deflate, compress"), Coding::Identity);
        assert_eq!(choose("GZIP;Q=1"), Coding::Gzip);
        assert_eq!(policy().choose(None), Coding::Identity);
        let no_br = CompressionPolicy::compile(&CompressionConfig {
            brotli: 0,
            ..CompressionConfig::default()
        });
        assert_eq!(
            no_br.choose(Some(&HeaderValue::from_static("br, gzip"))),
            Coding::Gzip
        );
    }

    #[test]
    fn only_listed_types_of_a_sufficient_length_are_compressed() {
        let resp = |status: u16, headers: &[(&str, &str)]| {
            let mut r = ResponseHeader::build(status, None).unwrap();
            for (k, v) in headers {
                r.insert_header(k.to_string(), *v).unwrap();
            }
            r
        };
        let p = policy();
        assert!(p.applies_to(&resp(200, &[("content-type", "text/html; charset=utf-8")])));
        assert!(p.applies_to(&resp(200, &[("content-type", "Application/JSON")])));
        assert!(!p.applies_to(&resp(200, &[("content-type", "image/png")])));
        assert!(!p.applies_to(&resp(200, &[])));
        assert!(!p.applies_to(&resp(206, &[("content-type", "text/html")])));
        assert!(!p.applies_to(&resp(
            200,
            &[("content-type", "text/html"), ("content-length", "100")]
        )));
        assert!(!p.applies_to(&resp(
            200,
            &[
                ("content-type", "text/html"),
                ("cache-control", "max-age=60, no-transform")
            ]
        )));
        assert!(!p.applies_to(&resp(
            200,
            &[("content-type", "text/html"), ("content-encoding", "gzip")]
        )));
    }
}

//! An origin that speaks HTTP/1.1 by hand on raw TCP connections, for the
//! misbehaviours a real server library will not produce: closing a kept-alive
//! connection instead of answering, hanging, bad framing, wrong codings.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as the raw origin read it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The request line, e.g. `GET /a HTTP/1.1`.
    pub line: String,
    /// The body (read by `Content-Length` only).
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The method.
    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }

    /// The request target.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
}

/// One accepted connection, handed to the origin's handler.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    seen: Arc<Mutex<Vec<RawRequest>>>,
}

impl RawConn {
    /// Reads the next request; `None` when the peer closed the connection.
    pub async fn request(&mut self) -> Option<RawRequest> {
        let head_end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            self.chunked_body().await?
        } else {
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            self.at_least(length).await?;
            self.buf.drain(..length).collect()
        };
        let request = RawRequest { line, body };
        self.seen.lock().unwrap().push(request.clone());
        Some(request)
    }

    /// Reads until `n` bytes are buffered; `None` when the peer closed.
    async fn at_least(&mut self, n: usize) -> Option<()> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => self.buf.extend_from_slice(&chunk[..read]),
            }
        }
        Some(())
    }

    /// Reads a chunked body (trailers ignored), de-chunked.
    async fn chunked_body(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                let more = self.buf.len() + 1;
                self.at_least(more).await?;
            };
            let size_line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // The empty line after the last chunk (no trailers sent).
                self.at_least(2).await?;
                self.buf.drain(..2);
                return Some(body);
            }
            self.at_least(size + 2).await?;
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Holds the connection open without answering, for `duration`.
    pub async fn hang(self, duration: Duration) {
        tokio::time::sleep(duration).await;
        drop(self);
    }
}

/// A running raw origin; stops accepting when dropped (connections being
/// handled finish on their own).
pub struct RawOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<RawRequest>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    /// Starts an origin on an ephemeral loopback port that runs `handler`
    /// on every connection it accepts.
    pub async fn start<F, Fut>(handler: F) -> RawOrigin
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw origin");
        let addr = listener.local_addr().expect("raw origin address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count) = (seen.clone(), connections.clone());
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let conn = RawConn {
                    stream,
                    buf: Vec::new(),
                    seen: log.clone(),
                };
                tokio::spawn(handler(conn));
            }
        });
        RawOrigin {
            addr,
            seen,
            connections,
            task,
        }
    }

    /// `host:port`, for a config file.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request it read, in order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// A complete response with a `Content-Length`, kept alive.
pub fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

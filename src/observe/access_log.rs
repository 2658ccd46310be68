//! The access log: one line per request, JSON or NCSA combined, written by
//! a dedicated thread so that a slow disk or a blocked pipe never holds a
//! request up.
//!
//! Request threads format their line and hand it to a bounded channel; when
//! the channel is full the line is dropped and counted
//! (`palisade_access_log_dropped_total`). The writer thread batches what is
//! queued, flushes once per batch, and reopens a file output on `SIGUSR1`
//! (after logrotate has moved it).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tracing::{error, info};

use super::metrics::metrics;
use crate::config::log_template::{self, Part};
use crate::config::{AccessLogConfig, AccessLogFormat, AccessLogOutput};

/// How often the writer looks for a reopen request while idle.
const IDLE_WAKEUP: Duration = Duration::from_millis(100);

/// One request, as the access log records it.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// When the request ended (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The `X-Request-Id` sent upstream and back.
    pub request_id: &'a str,
    /// The client's address (after trusted proxies).
    pub client_ip: Option<std::net::IpAddr>,
    /// Request method.
    pub method: &'a str,
    /// The requested host.
    pub host: &'a str,
    /// Path and query as forwarded (normalised; API keys in the query
    /// removed).
    pub uri: std::borrow::Cow<'a, str>,
    /// `HTTP/1.1`, `HTTP/2.0`…
    pub protocol: &'a str,
    /// Status sent; 0 when the client went away before a response.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes_sent: usize,
    /// Request body bytes received.
    pub bytes_received: u64,
    /// Whole request, in milliseconds (to the microsecond).
    #[serde(serialize_with = "micros")]
    pub duration_ms: f64,
    /// Until the upstream response header, in milliseconds (to the
    /// microsecond; none when no upstream answered).
    #[serde(serialize_with = "micros_opt")]
    pub upstream_ms: Option<f64>,
    /// The status the last backend answered (none when none did).
    pub upstream_status: Option<u16>,
    /// The listener's name.
    pub listener: &'a str,
    /// The route's name, `-` when none matched.
    pub route: &'a str,
    /// The upstream pool, when one was used.
    pub upstream: Option<&'a str>,
    /// The last backend tried.
    pub backend: Option<&'a str>,
    /// Backends tried.
    pub tries: usize,
    /// Every backend tried, in order.
    pub backends_tried: &'a [std::net::SocketAddr],
    /// What the cache did, on caching routes.
    pub cache: Option<&'a str>,
    /// What became of the response this request fetched for the cache
    /// (`stored`, `too-large`, `no-room`, `purged`, `aborted`), when it
    /// was admitted.
    pub cache_fill: Option<&'static str>,
    /// Who the request was authenticated as.
    pub identity: Option<&'a str>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `Referer`.
    pub referer: Option<&'a str>,
    /// What went wrong, when the request failed (Pingora's error type).
    pub error: Option<&'static str>,
    /// What refused the request, when something did: `limit:NAME`,
    /// `auth:POLICY`, `purge:POLICY`, `ip_filter`, `https`.
    pub refused_by: Option<&'a str>,
}

/// Milliseconds rounded to the microsecond: `0.864`, not
/// `0.8644310000000001`.
fn round_micros(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn micros<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_micros(*ms))
}

fn micros_opt<S: serde::Serializer>(ms: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_some(&round_micros(*ms)),
        None => s.serialize_none(),
    }
}

impl Entry<'_> {
    /// The line in `format` (`template` when it is `template`), newline
    /// included.
    pub fn format(&self, format: AccessLogFormat, template: Option<&Template>) -> String {
        match (format, template) {
            (AccessLogFormat::Template, Some(t)) => t.render(self),
            (AccessLogFormat::Combined, _) => self.combined(),
            _ => {
                let mut line = serde_json::to_string(self).unwrap_or_default();
                line.push('\n');
                line
            }
        }
    }

    /// One field as a template writes it (`-` when absent).
    fn field(&self, field: log_template::Field) -> std::borrow::Cow<'_, str> {
        fn opt(v: Option<&str>) -> std::borrow::Cow<'_, str> {
            std::borrow::Cow::Borrowed(v.unwrap_or("-"))
        }
        use log_template::Field;
        use std::borrow::Cow;
        match field {
            Field::Time => Cow::Borrowed(&self.time),
            Field::RequestId => Cow::Borrowed(self.request_id),
            Field::ClientIp => self
                .client_ip
                .map_or(Cow::Borrowed("-"), |ip| Cow::Owned(ip.to_string())),
            Field::Method => escape(self.method),
            Field::Host => escape(self.host),
            Field::Uri => Cow::Owned(escape(&self.uri).into_owned()),
            Field::Protocol => Cow::Borrowed(self.protocol),
            Field::Status => Cow::Owned(self.status.to_string()),
            Field::BytesSent => Cow::Owned(self.bytes_sent.to_string()),
            Field::BytesReceived => Cow::Owned(self.bytes_received.to_string()),
            Field::DurationMs => Cow::Owned(round_micros(self.duration_ms).to_string()),
            Field::UpstreamMs => self.upstream_ms.map_or(Cow::Borrowed("-"), |ms| {
                Cow::Owned(round_micros(ms).to_string())
            }),
            Field::UpstreamStatus => self
                .upstream_status
                .map_or(Cow::Borrowed("-"), |s| Cow::Owned(s.to_string())),
            Field::Listener => Cow::Borrowed(self.listener),
            Field::Route => escape(self.route),
            Field::Upstream => opt(self.upstream),
            Field::Backend => opt(self.backend),
            Field::Tries => Cow::Owned(self.tries.to_string()),
            Field::BackendsTried => {
                if self.backends_tried.is_empty() {
                    Cow::Borrowed("-")
                } else {
                    let list: Vec<String> = self
                        .backends_tried
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    Cow::Owned(list.join(","))
                }
            }
            Field::Cache => opt(self.cache),
            Field::CacheFill => opt(self.cache_fill),
            Field::Identity => self.identity.map_or(Cow::Borrowed("-"), escape),
            Field::UserAgent => self.user_agent.map_or(Cow::Borrowed("-"), escape),
            Field::Referer => self.referer.map_or(Cow::Borrowed("-"), escape),
            Field::Error => opt(self.error),
            Field::RefusedBy => opt(self.refused_by),
        }
    }

    /// `$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent"`.
    fn combined(&self) -> String {
        let client = self
            .client_ip
            .map_or_else(|| "-".to_string(), |ip| ip.to_string());
        format!(
            "{client} - {user} [{time}] \"{method} {uri} {protocol}\" {status} {bytes} \"{referer}\" \"{agent}\"\n",
            user = escape(self.identity.unwrap_or("-")),
            time = clf_time(&self.time),
            method = escape(self.method),
            uri = escape(&self.uri),
            protocol = self.protocol,
            status = self.status,
            bytes = self.bytes_sent,
            referer = escape(self.referer.unwrap_or("-")),
            agent = escape(self.user_agent.unwrap_or("-")),
        )
    }
}

/// The current time as the access log writes it.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// `2026-12-01T21:55:36.123Z` as `01/Dec/2026:21:55:36 +0000`.
fn clf_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let part = |r: std::ops::Range<usize>| rfc3339.get(r).unwrap_or("00");
    let month = part(5..7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        part(8..10),
        part(0..4),
        part(11..19)
    )
}

/// Quotes, backslashes and control bytes as `\xHH`, like nginx.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f)
    {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' | '\\' | '\x00'..='\x1f' | '\x7f' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// Where the writer thread writes.
enum Sink {
    Stdout,
    Stderr,
    File { path: PathBuf, file: File },
}

impl Sink {
    fn open(output: &AccessLogOutput) -> io::Result<Option<Sink>> {
        Ok(Some(match output {
            AccessLogOutput::Off => return Ok(None),
            AccessLogOutput::Stdout => Sink::Stdout,
            AccessLogOutput::Stderr => Sink::Stderr,
            AccessLogOutput::File(path) => Sink::File {
                file: append(path)?,
                path: path.clone(),
            },
        }))
    }

    fn write_batch(&mut self, lines: &[String]) -> io::Result<()> {
        fn all(w: &mut dyn Write, lines: &[String]) -> io::Result<()> {
            let mut w = io::BufWriter::with_capacity(64 * 1024, w);
            for line in lines {
                w.write_all(line.as_bytes())?;
            }
            w.flush()
        }
        match self {
            Sink::Stdout => all(&mut io::stdout().lock(), lines),
            Sink::Stderr => all(&mut io::stderr().lock(), lines),
            Sink::File { file, .. } => all(file, lines),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File { path, file } = self {
            match append(path) {
                Ok(new) => {
                    *file = new;
                    info!(file = %path.display(), "access log reopened");
                }
                Err(e) => {
                    error!(file = %path.display(), error = %e, "cannot reopen the access log; still writing to the old file")
                }
            }
        }
    }
}

fn append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// A parsed `template` line.
#[derive(Debug, Clone)]
pub struct Template(Vec<Part>);

impl Template {
    /// Parses `text` (`Err` names the unknown field).
    pub fn parse(text: &str) -> Result<Self, String> {
        log_template::parse(text).map(Self)
    }

    fn render(&self, entry: &Entry<'_>) -> String {
        let mut line = String::with_capacity(256);
        for part in &self.0 {
            match part {
                Part::Text(t) => line.push_str(t),
                Part::Field(f) => line.push_str(&entry.field(*f)),
            }
        }
        line.push('\n');
        line
    }
}

/// The access log of the process.
pub struct AccessLog {
    format: AccessLogFormat,
    template: Option<Template>,
    lines: SyncSender<String>,
    reopen: Arc<AtomicBool>,
    /// Taken by the writer thread when it starts.
    pending: Mutex<Option<(Receiver<String>, Sink)>>,
}

static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

/// Opens the access log configured by `config` (no thread is started until
/// the server runs: daemon mode forks first). An output that cannot be
/// opened is an error; `off` is not.
pub fn init(config: &AccessLogConfig) -> Result<(), String> {
    let sink = match Sink::open(&config.output) {
        Ok(Some(sink)) => sink,
        Ok(None) => return Ok(()),
        Err(e) => {
            return Err(format!(
                "cannot open the access log (logging.access_log.output): {e}"
            ))
        }
    };
    let template = match (&config.template, config.format) {
        (Some(text), AccessLogFormat::Template) => {
            Some(Template::parse(text).map_err(|e| format!("logging.access_log.template: {e}"))?)
        }
        _ => None,
    };
    let (tx, rx) = mpsc::sync_channel(config.buffer.max(1));
    let log = AccessLog {
        format: config.format,
        template,
        lines: tx,
        reopen: Arc::new(AtomicBool::new(false)),
        pending: Mutex::new(Some((rx, sink))),
    };
    ACCESS_LOG
        .set(log)
        .map_err(|_| "the access log is already open".to_string())
}

/// The access log, when one is configured.
pub fn get() -> Option<&'static AccessLog> {
    ACCESS_LOG.get()
}

impl AccessLog {
    /// Queues `entry`; drops (and counts) it when the writer is behind.
    pub fn log(&self, entry: &Entry<'_>) {
        match self
            .lines
            .try_send(entry.format(self.format, self.template.as_ref()))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics().access_log_dropped()
            }
        }
    }

    /// Starts the writer thread (once).
    /// Asks the writer to reopen its file (after log rotation).
    pub fn request_reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Starts the thread that writes queued lines (once per process).
    pub fn start_writer(&self) {
        let Some((rx, sink)) = self.pending.lock().take() else {
            return;
        };
        let reopen = self.reopen.clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(rx, sink, &reopen));
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the access log writer; access log lines will be dropped");
        }
    }
}

fn write_loop(rx: Receiver<String>, mut sink: Sink, reopen: &AtomicBool) {
    let mut batch = Vec::with_capacity(256);
    let mut failing = false;
    loop {
        match rx.recv_timeout(IDLE_WAKEUP) {
            Ok(line) => {
                batch.push(line);
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(line) => batch.push(line),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
        }
        if batch.is_empty() {
            continue;
        }
        match sink.write_batch(&batch) {
            Ok(()) => failing = false,
            Err(e) => {
                // Reported once per outage, not once per batch.
                if !failing {
                    error!(error = %e, "cannot write the access log; lines are lost until it works again");
                }
                failing = true;
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: "2026-12-01T21:55:36.123Z".into(),
            request_id: "abc",
            client_ip: Some("192.0.2.7".parse().unwrap()),
            method: "GET",
            host: "example.com",
            uri: "/a?b=\"c\"".into(),
            protocol: "HTTP/1.1",
            status: 200,
            bytes_sent: 512,
            bytes_received: 0,
            duration_ms: 1.25,
            upstream_ms: Some(1.0),
            listener: "http",
            route: "site",
            upstream: Some("app"),
            backend: Some("127.0.0.1:9000"),
            tries: 1,
            cache: Some("miss"),
            cache_fill: Some("stored"),
            identity: None,
            user_agent: Some("curl/8"),
            referer: None,
            error: None,
            refused_by: Some("limit:per_client"),
            upstream_status: Some(200),
            backends_tried: &[],
        }
    }

    #[test]
    fn templates_write_their_fields_and_round_durations_to_the_microsecond() {
        let t = Template::parse(
            "$client_ip \"$method $uri\" $status ${duration_ms}ms up=$upstream_status $refused_by $backend",
        )
        .unwrap();
        let mut e = entry();
        e.duration_ms = 0.864_431_000_000_000_1;
        assert_eq!(
            e.format(AccessLogFormat::Template, Some(&t)),
            "192.0.2.7 \"GET /a?b=\\x22c\\x22\" 200 0.864ms up=200 limit:per_client 127.0.0.1:9000\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&e.format(AccessLogFormat::Json, None)).unwrap();
        assert_eq!(json["duration_ms"], 0.864);
        assert_eq!(json["refused_by"], "limit:per_client");
    }

    #[test]
    fn combined_matches_the_ncsa_layout() {
        assert_eq!(
            entry().format(AccessLogFormat::Combined, None),
            "192.0.2.7 - - [01/Dec/2026:21:55:36 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 512 \"-\" \"curl/8\"\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let line = entry().format(AccessLogFormat::Json, None);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["route"], "site");
        assert_eq!(v["cache"], "miss");
        assert_eq!(v["identity"], serde_json::Value::Null);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, rx) = mpsc::sync_channel(1);
        let log = AccessLog {
            format: AccessLogFormat::Json,
            template: None,
            lines: tx,
            reopen: Arc::new(AtomicBool::new(false)),
            pending: Mutex::new(None),
        };
        let before = metrics().access_log_dropped_count();
        log.log(&entry());
        log.log(&entry());
        log.log(&entry());
        assert_eq!(metrics().access_log_dropped_count() - before, 2);
        assert!(rx.try_recv().unwrap().contains("\"route\":\"site\""));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\nb\\"), "a\\x0Ab\\x5C");
        assert_eq!(escape("plain"), "plain");
    }
}

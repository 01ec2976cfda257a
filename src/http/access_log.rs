//! The access log: one line per request (and per refused handshake, see
//! [`super::handshake_log`]), on stdout, text or JSON (SPEC "Access log").
//! Lines are formatted on the request's task and written by one writer thread, so a slow
//! stdout never blocks a request and no lock is taken on the request path. The writer writes
//! in batches, [`BATCH_PAUSE`] apart: while it pauses, queueing a line is a plain push with
//! no thread to wake, which is what keeps the log's cost per request low. If the writer falls
//! more than [`QUEUE_LINES`] behind, lines are dropped and counted in
//! `gatehouse_access_log_dropped_total`, never queued without bound.
//!
//! The text format is `key=value` pairs; a value with a space, `"`, `=` or a control
//! character (or an empty one) is written as a JSON string, so no request can forge a field.

use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::config::LogFormat;

/// Lines buffered between requests and the writer thread (~8 MB at 1 kB a line).
const QUEUE_LINES: usize = 8192;

/// The writer's pause after each batch: a line reaches stdout at most this much later.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// One request, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Always `request` (a refused handshake is another event).
    pub event: &'static str,
    pub time: String,
    pub peer: IpAddr,
    pub sni: Option<String>,
    pub principal: Option<String>,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    pub route: Option<String>,
    pub upstream: Option<String>,
    pub decision: Option<&'static str>,
    pub policy: Option<String>,
}

/// A line of the access log, in either format.
pub trait LogLine {
    fn json(&self) -> String;
    /// The `key=value` text line, into `out`.
    fn text(&self, out: &mut String);

    fn format(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Json => self.json(),
            LogFormat::Text => {
                let mut out = String::with_capacity(256);
                self.text(&mut out);
                out
            }
        }
    }
}

impl LogLine for Record {
    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn text(&self, out: &mut String) {
        fn opt(v: &Option<String>) -> Value<'_> {
            v.as_deref().map_or(Value::Missing, Value::Text)
        }
        let fields: [(&str, Value<'_>); 15] = [
            ("event", Value::Text(self.event)),
            ("time", Value::Text(&self.time)),
            ("peer", Value::Ip(self.peer)),
            ("sni", opt(&self.sni)),
            ("principal", opt(&self.principal)),
            ("method", Value::Text(&self.method)),
            ("host", opt(&self.host)),
            ("path", Value::Text(&self.path)),
            ("status", Value::Number(u64::from(self.status))),
            ("bytes", Value::Number(self.bytes)),
            ("duration_ms", Value::Millis(self.duration_ms)),
            ("route", opt(&self.route)),
            ("upstream", opt(&self.upstream)),
            (
                "decision",
                self.decision.map(Value::Text).unwrap_or(Value::Missing),
            ),
            ("policy", opt(&self.policy)),
        ];
        write_fields(&fields, out);
    }
}

/// `key=value` pairs separated by spaces.
pub(crate) fn write_fields(fields: &[(&str, Value<'_>)], out: &mut String) {
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        value.write(out);
    }
}

/// One value of a text line.
pub(crate) enum Value<'a> {
    Text(&'a str),
    Ip(IpAddr),
    Number(u64),
    Millis(f64),
    Missing,
}

impl Value<'_> {
    fn write(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing into a String cannot fail.
        let _ = match self {
            Self::Text(v) => {
                write_text(v, out);
                Ok(())
            }
            Self::Ip(ip) => write!(out, "{ip}"),
            Self::Number(n) => write!(out, "{n}"),
            Self::Millis(ms) => write!(out, "{ms:.3}"),
            Self::Missing => {
                out.push('-');
                Ok(())
            }
        };
    }
}

/// A text value as is, or as a JSON string when it could be read as more than one value.
pub fn write_text(value: &str, out: &mut String) {
    let plain = !value.is_empty()
        && value != "-"
        && !value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c.is_control());
    if plain {
        out.push_str(value);
    } else {
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
    }
}

/// The sending half; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    format: LogFormat,
    /// `gatehouse_access_log_dropped_total`.
    dropped: Counter,
}

/// Resolves when the writer thread has written every line and ended (once every
/// [`AccessLog`] clone is gone).
pub struct Drained(Receiver<()>);

impl Drained {
    /// Waits for the writer, at most `limit` (a stdout nobody reads must not hang the exit).
    pub fn wait(self, limit: std::time::Duration) {
        let _ = self.0.recv_timeout(limit);
    }
}

impl AccessLog {
    /// Starts the writer thread on `out`; lines it cannot take in time count in `dropped`.
    pub fn start(
        format: LogFormat,
        out: Box<dyn Write + Send>,
        dropped: Counter,
    ) -> std::io::Result<(Self, Drained)> {
        Self::with_queue(format, out, dropped, QUEUE_LINES)
    }

    /// [`AccessLog::start`] with a queue of `lines` (tests make it small).
    pub fn with_queue(
        format: LogFormat,
        out: Box<dyn Write + Send>,
        dropped: Counter,
        lines: usize,
    ) -> std::io::Result<(Self, Drained)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(lines);
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                write_lines(&rx, out);
                drop(done_tx);
            })?;
        let log = Self {
            tx,
            format,
            dropped,
        };
        Ok((log, Drained(done)))
    }

    pub fn emit(&self, line: &impl LogLine) {
        match self.tx.try_send(line.format(self.format)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

fn write_lines(rx: &Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let mut ok = writeln!(out, "{line}").is_ok();
        // Drain what is already queued, then flush once.
        while let Ok(more) = rx.try_recv() {
            ok &= writeln!(out, "{more}").is_ok();
        }
        if !(ok && out.flush().is_ok()) {
            return;
        }
        // Not waiting in `recv` meanwhile: senders push without waking this thread.
        std::thread::sleep(BATCH_PAUSE);
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-12-07T03:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            event: "request",
            time: "2026-12-07T03:00:00.000Z".into(),
            peer: "10.0.0.1".parse().unwrap(),
            sni: Some("test.com".into()),
            principal: Some("test.client".into()),
            method: "GET".into(),
            host: Some("test.com".into()),
            path: "/status/200".into(),
            status: 200,
            bytes: 12,
            duration_ms: 1.5,
            route: Some("0".into()),
            upstream: Some("http://127.0.0.1:8000".into()),
            decision: Some("allow"),
            policy: None,
        }
    }

    /// The `key=value` pairs of a text line, JSON strings decoded.
    fn pairs(line: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=').unwrap();
            let (value, after) = if after.starts_with('"') {
                let mut de = serde_json::Deserializer::from_str(after).into_iter::<String>();
                let v = de.next().unwrap().unwrap();
                (v, &after[de.byte_offset()..])
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            };
            out.push((key.to_owned(), value));
            rest = after.strip_prefix(' ').unwrap_or(after);
        }
        out
    }

    #[test]
    fn text_lines_cannot_be_forged() {
        let plain = record().format(LogFormat::Text);
        assert_eq!(
            plain,
            "event=request time=2026-12-07T03:00:00.000Z peer=10.0.0.1 sni=test.com \
             principal=test.client method=GET host=test.com path=/status/200 status=200 bytes=12 \
             duration_ms=1.500 route=0 upstream=http://127.0.0.1:8000 decision=allow policy=-"
        );
        for hostile in [
            "x decision=allow",
            "x\" decision=\"allow",
            "a=b",
            "line\nbreak status=200",
            "",
            "-",
            "tab\there",
        ] {
            let mut r = record();
            r.host = Some(hostile.to_owned());
            r.path = hostile.to_owned();
            let line = r.format(LogFormat::Text);
            assert!(!line.contains('\n'), "{line}");
            let fields = pairs(&line);
            assert_eq!(fields.len(), 15, "{line}");
            assert_eq!(fields[6], ("host".into(), hostile.to_owned()), "{line}");
            assert_eq!(fields[7], ("path".into(), hostile.to_owned()), "{line}");
            assert_eq!(fields.iter().filter(|(k, _)| k == "decision").count(), 1);
        }
    }

    #[test]
    fn lines_the_writer_cannot_take_are_counted() {
        /// A stdout that never accepts a byte; says when the writer is stuck in it.
        struct Stuck(std::sync::mpsc::Sender<()>);
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.send(());
                loop {
                    std::thread::park();
                }
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (stuck_tx, stuck) = std::sync::mpsc::channel();
        let dropped = Counter::default();
        let (log, _) = AccessLog::with_queue(
            LogFormat::Json,
            Box::new(Stuck(stuck_tx)),
            dropped.clone(),
            4,
        )
        .unwrap();
        log.emit(&record());
        stuck
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the writer reached stdout");
        // The writer is blocked: four lines fit the queue, the other sixteen are dropped.
        for _ in 0..20 {
            log.emit(&record());
        }
        assert_eq!(dropped.get(), 16);
    }
}

//! The access log: one line per request (and per refused handshake, see
//! [`handshake`]), on stdout, text or JSON (SPEC "Access log").
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

use crate::config::LogFormat;

pub(crate) mod handshake;

/// Lines buffered between requests and the writer thread (~8 MB at 1 kB a line).
const QUEUE_LINES: usize = 8192;

/// The writer's pause after each batch: a line reaches stdout at most this much later.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// One request, as logged.
#[derive(Debug, Clone)]
pub(crate) struct Record {
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

/// A line of the access log: its fields in order, which both formats write.
pub(crate) trait LogLine {
    /// Calls `each` with every field, in the line's order.
    fn fields(&self, each: &mut impl FnMut(&str, Value<'_>));

    fn format(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Json => {
                let mut j = JsonLine::new();
                self.fields(&mut |key, value| j.field(key, &value));
                j.finish()
            }
            LogFormat::Text => {
                let mut out = String::with_capacity(256);
                self.fields(&mut |key, value| {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(key);
                    out.push('=');
                    value.write(&mut out);
                });
                out
            }
        }
    }
}

impl LogLine for Record {
    fn fields(&self, each: &mut impl FnMut(&str, Value<'_>)) {
        each("event", Value::Text(self.event));
        each("time", Value::Text(&self.time));
        each("peer", Value::Ip(self.peer));
        each("sni", Value::opt(self.sni.as_deref()));
        each("principal", Value::opt(self.principal.as_deref()));
        each("method", Value::Text(&self.method));
        each("host", Value::opt(self.host.as_deref()));
        each("path", Value::Text(&self.path));
        each("status", Value::Number(u64::from(self.status)));
        each("bytes", Value::Number(self.bytes));
        each("duration_ms", Value::Millis(self.duration_ms));
        each("route", Value::opt(self.route.as_deref()));
        each("upstream", Value::opt(self.upstream.as_deref()));
        each("decision", Value::opt(self.decision));
        each("policy", Value::opt(self.policy.as_deref()));
    }
}

/// A flat JSON object written field by field, straight into one `String` (serde_json spent
/// more instructions on a line than the rest of the request's logging together).
struct JsonLine(String);

impl JsonLine {
    fn new() -> Self {
        let mut out = String::with_capacity(320);
        out.push('{');
        Self(out)
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    fn field(&mut self, key: &str, value: &Value<'_>) {
        self.key(key);
        match value {
            Value::Text(v) => json_string(v, &mut self.0),
            Value::Ip(ip) => {
                self.0.push('"');
                push_ip(*ip, &mut self.0);
                self.0.push('"');
            }
            Value::Number(n) => push_u64(*n, &mut self.0),
            Value::Millis(ms) => push_millis(*ms, &mut self.0),
            Value::List(items) => {
                self.0.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        self.0.push(',');
                    }
                    json_string(v, &mut self.0);
                }
                self.0.push(']');
            }
            Value::Missing => self.0.push_str("null"),
        }
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// `n` in decimal (`core::fmt` costs more than the rest of a log line).
fn push_u64(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // n % 10 < 10: the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// `ms` with exactly three decimals (`1.500`); not finite or negative as `0.000`.
fn push_millis(ms: f64, out: &mut String) {
    // Saturating float-to-int cast: NaN and negatives give 0.
    let micros = (ms * 1000.0).round() as u64;
    push_u64(micros / 1000, out);
    out.push('.');
    push_3_digits(micros % 1000, out);
}

/// `n` (below 1000) as three digits, zero-padded.
fn push_3_digits(n: u64, out: &mut String) {
    for d in [n / 100 % 10, n / 10 % 10, n % 10] {
        // A digit: d < 10.
        out.push(char::from(b'0' + d as u8));
    }
}

/// An address as `Display` writes it; IPv4 without `core::fmt`.
fn push_ip(ip: IpAddr, out: &mut String) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(u64::from(octet), out);
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing into a String cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// `value` as a JSON string: quoted, with `"`, `\\` and control characters escaped.
fn json_string(value: &str, out: &mut String) {
    out.push('"');
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push_str(value);
    } else {
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if u32::from(c) < 0x20 => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// One field's value.
pub(crate) enum Value<'a> {
    Text(&'a str),
    Ip(IpAddr),
    Number(u64),
    /// Milliseconds, written with three decimals.
    Millis(f64),
    /// Strings: a JSON array; in text, joined with `,`.
    List(&'a [String]),
    /// JSON `null`, text `-`.
    Missing,
}

impl<'a> Value<'a> {
    pub(crate) fn opt(value: Option<&'a str>) -> Self {
        value.map_or(Self::Missing, Self::Text)
    }

    /// The text format's spelling.
    fn write(&self, out: &mut String) {
        match self {
            Self::Text(v) => write_text(v, out),
            Self::List(items) => write_text(&items.join(","), out),
            Self::Ip(ip) => push_ip(*ip, out),
            Self::Number(n) => push_u64(*n, out),
            Self::Millis(ms) => push_millis(*ms, out),
            Self::Missing => out.push('-'),
        }
    }
}

/// A text value as is, or as a JSON string when it could be read as more than one value.
pub(crate) fn write_text(value: &str, out: &mut String) {
    let plain = !value.is_empty()
        && value != "-"
        && !value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c.is_control());
    if plain {
        out.push_str(value);
    } else {
        json_string(value, out);
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
    pub(crate) fn wait(self, limit: std::time::Duration) {
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
    pub(crate) fn with_queue(
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

    pub(crate) fn emit(&self, line: &impl LogLine) {
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

/// Now, as RFC 3339 UTC with milliseconds. The part down to the second is formatted once per
/// second on each thread.
pub(crate) fn now_rfc3339() -> String {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != secs {
            *prefix = rfc3339(secs);
            prefix.pop(); // the `Z`
            *second = secs;
        }
        let mut out = String::with_capacity(prefix.len() + 5);
        out.push_str(prefix);
        out.push('.');
        push_3_digits(u64::from(since_epoch.subsec_millis()), &mut out);
        out.push('Z');
        out
    })
}

#[cfg(test)]
mod tests;

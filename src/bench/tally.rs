//! What a worker counts (only what completes inside the measured window) and the report
//! made of the merged counts: text for people, one JSON object for scripts.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::plan::{Mode, Plan, Window};

/// Latencies are recorded in microseconds, from 1 µs to 60 s at 3 significant digits.
const LATENCY_MAX_US: u64 = 60_000_000;

/// Why an attempt got no response. The JSON names are part of the output's contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The TCP connect failed (refused, unreachable).
    Connect,
    /// A TLS error or alert: a refused client certificate, an untrusted server.
    Tls,
    /// The peer closed or reset the connection or stream before the answer was complete.
    Reset,
    /// A connect, handshake or answer took longer than 10 s.
    Timeout,
    /// Anything else in HTTP: a malformed answer, a refused protocol.
    Protocol,
}

impl ErrorKind {
    const ALL: [Self; 5] = [
        Self::Connect,
        Self::Tls,
        Self::Reset,
        Self::Timeout,
        Self::Protocol,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
        }
    }
}

/// A failed attempt: its kind and what the error said (sources included).
#[derive(Debug)]
pub(crate) struct Failure {
    kind: ErrorKind,
    message: String,
}

impl Failure {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn from_error(err: &(dyn StdError + 'static)) -> Self {
        let mut message = err.to_string();
        let mut next = err.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !message.contains(&text) {
                let _ = write!(message, ": {text}");
            }
            next = e.source();
        }
        Self::new(classify(err), message)
    }
}

/// One worker's counts; merged into one at the end.
pub(crate) struct Tally {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: [u64; ErrorKind::ALL.len()],
    first_errors: [Option<String>; ErrorKind::ALL.len()],
    handshakes: u64,
    resumed: u64,
    bytes: u64,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            // The bounds are constants that `new_with_bounds` accepts (low ≥ 1, high ≥ 2·low,
            // sigfig ≤ 5), so this cannot fail.
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .expect("constant histogram bounds are valid"),
            statuses: BTreeMap::new(),
            errors: [0; ErrorKind::ALL.len()],
            first_errors: Default::default(),
            handshakes: 0,
            resumed: 0,
            bytes: 0,
        }
    }

    /// A complete answer to a request sent at `began`.
    pub(crate) fn response(&mut self, window: &Window, began: Instant, status: u16, bytes: u64) {
        let now = Instant::now();
        if !window.counts(now) {
            return;
        }
        let us = u64::try_from((now - began).as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(us.clamp(1, LATENCY_MAX_US));
        *self.statuses.entry(status).or_default() += 1;
        self.bytes += bytes;
    }

    pub(crate) fn handshake(&mut self, window: &Window, resumed: bool) {
        if window.counts(Instant::now()) {
            self.handshakes += 1;
            self.resumed += u64::from(resumed);
        }
    }

    pub(crate) fn failure(&mut self, window: &Window, failure: Failure) {
        if !window.counts(Instant::now()) {
            return;
        }
        let i = failure.kind as usize;
        self.errors[i] += 1;
        self.first_errors[i].get_or_insert(failure.message);
    }

    pub(crate) fn merge(&mut self, other: Self) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (i, n) in other.errors.into_iter().enumerate() {
            self.errors[i] += n;
        }
        for (mine, theirs) in self.first_errors.iter_mut().zip(other.first_errors) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.bytes += other.bytes;
    }

    /// Answers received, whatever their status.
    pub(crate) fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// The merged tally with the settings it was measured under.
pub(crate) struct Report<'a> {
    plan: &'a Plan,
    tally: &'a Tally,
    seconds: f64,
}

impl<'a> Report<'a> {
    pub(crate) fn new(plan: &'a Plan, tally: &'a Tally) -> Self {
        Self {
            plan,
            tally,
            seconds: plan.window.length().as_secs_f64(),
        }
    }

    fn rate(&self, n: u64) -> f64 {
        round(n as f64 / self.seconds, 1)
    }

    fn ms(&self, quantile: f64) -> f64 {
        let h = &self.tally.latency_us;
        let us = if quantile >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(quantile)
        };
        round(us as f64 / 1000.0, 3)
    }

    fn streams(&self) -> u32 {
        match self.plan.mode {
            Mode::Http2 { streams } => streams,
            _ => 1,
        }
    }

    fn resume(&self) -> bool {
        matches!(self.plan.mode, Mode::NewConnection { resume: true })
    }

    /// One object; the field names and their meaning are stable (README, "Load testing").
    pub(crate) fn json(&self) -> Value {
        let t = self.tally;
        let statuses: Map<String, Value> = t
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        let mut errors = Map::new();
        let mut first_errors = Map::new();
        for kind in ErrorKind::ALL {
            errors.insert(kind.name().into(), json!(t.errors[kind as usize]));
            if let Some(m) = &t.first_errors[kind as usize] {
                first_errors.insert(kind.name().into(), json!(m));
            }
        }
        let latency = if t.responses() == 0 {
            Value::Null
        } else {
            json!({
                "p50": self.ms(0.50), "p90": self.ms(0.90), "p99": self.ms(0.99),
                "max": self.ms(1.0), "mean": round(t.latency_us.mean() / 1000.0, 3),
            })
        };
        json!({
            "url": self.plan.url,
            "connect": self.plan.addr.to_string(),
            "mode": self.plan.mode.name(),
            "resume": self.resume(),
            "connections": self.plan.connections,
            "streams": self.streams(),
            "warmup_s": self.plan.warmup.as_secs_f64(),
            "duration_s": self.seconds,
            "requests": t.responses(),
            "requests_per_s": self.rate(t.responses()),
            "failed": t.failed(),
            "handshakes": t.handshakes,
            "handshakes_per_s": self.rate(t.handshakes),
            "resumed": t.resumed,
            "latency_ms": latency,
            "status": statuses,
            "errors": errors,
            "first_errors": first_errors,
            "bytes_received": t.bytes,
            "mb_per_s": round(t.bytes as f64 / 1e6 / self.seconds, 2),
        })
    }

    pub(crate) fn text(&self) -> String {
        let (t, p) = (self.tally, self.plan);
        let mode = match p.mode {
            Mode::Http1 => "HTTP/1.1 keep-alive".to_owned(),
            Mode::Http2 { streams } => format!("HTTP/2, {streams} streams per connection"),
            Mode::NewConnection { resume: false } => {
                "a new connection per request (full handshakes)".to_owned()
            }
            Mode::NewConnection { resume: true } => {
                "a new connection per request (resumed sessions)".to_owned()
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} via {}: {mode}, {} connections, {:.1} s measured after {:.1} s warm-up",
            p.url,
            p.addr,
            p.connections,
            self.seconds,
            p.warmup.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  requests    {:>10}  {:>10.1}/s   failed {}",
            t.responses(),
            self.rate(t.responses()),
            t.failed()
        );
        let _ = writeln!(
            out,
            "  handshakes  {:>10}  {:>10.1}/s   resumed {}",
            t.handshakes,
            self.rate(t.handshakes),
            t.resumed
        );
        if t.responses() > 0 {
            let _ = writeln!(
                out,
                "  latency     p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                self.ms(0.50),
                self.ms(0.90),
                self.ms(0.99),
                self.ms(1.0)
            );
        }
        let statuses: Vec<String> = t
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(out, "  responses   {}", or_none(&statuses.join(", ")));
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|k| t.errors[**k as usize] > 0)
            .map(|k| format!("{} {}", k.name(), t.errors[*k as usize]))
            .collect();
        let _ = writeln!(out, "  errors      {}", or_none(&errors.join(", ")));
        for kind in ErrorKind::ALL {
            if let Some(m) = &t.first_errors[kind as usize] {
                let _ = writeln!(out, "    first {}: {m}", kind.name());
            }
        }
        let _ = writeln!(
            out,
            "  received    {:.2} MB ({:.2} MB/s)",
            t.bytes as f64 / 1e6,
            t.bytes as f64 / 1e6 / self.seconds
        );
        out
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Sorts an error by the side and layer that failed, walking its sources (hyper wraps the
/// I/O error, which wraps the TLS alert): a TLS error anywhere in the chain wins.
pub(crate) fn classify(err: &(dyn StdError + 'static)) -> ErrorKind {
    let chain = || sources(err);
    // Over HTTP/2 the TLS error reaches us as text only (h2 keeps an I/O error's kind and
    // message); an `InvalidData` I/O error from the TLS stream is always a TLS one (that is
    // how tokio-rustls reports them; hyper reports its own parse errors otherwise).
    let is_tls = |e: &(dyn StdError + 'static)| {
        e.is::<rustls::Error>()
            || e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::InvalidData)
            || e.downcast_ref::<h2::Error>()
                .and_then(h2::Error::get_io)
                .is_some_and(|io| io.kind() == io::ErrorKind::InvalidData)
    };
    if chain().any(is_tls) {
        return ErrorKind::Tls;
    }
    chain().find_map(layer_kind).unwrap_or(ErrorKind::Protocol)
}

fn sources<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

fn layer_kind(e: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return match io.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Some(ErrorKind::Reset),
            io::ErrorKind::TimedOut => Some(ErrorKind::Timeout),
            _ => None,
        };
    }
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        if let Some(io) = h2.get_io() {
            return layer_kind(io);
        }
        return (h2.is_reset() || h2.is_go_away()).then_some(ErrorKind::Reset);
    }
    let hyper = e.downcast_ref::<hyper::Error>()?;
    (hyper.is_incomplete_message() || hyper.is_canceled()).then_some(ErrorKind::Reset)
}

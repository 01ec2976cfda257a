//! The access log: one line per request, on stdout, text or JSON (SPEC "Access log").
//! Lines are formatted on the request's task and written by one writer thread, so a slow
//! stdout never blocks a request and no lock is taken on the request path. If the writer
//! falls more than [`QUEUE_LINES`] behind, lines are dropped and counted, never queued
//! without bound.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde::Serialize;

use crate::config::LogFormat;

/// Lines buffered between requests and the writer thread (~8 MB at 1 kB a line).
const QUEUE_LINES: usize = 8192;

/// One request, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
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

impl Record {
    pub fn format(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Json => serde_json::to_string(self).unwrap_or_default(),
            LogFormat::Text => {
                let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
                format!(
                    "{} peer={} sni={} principal={} method={} host={} path={:?} status={} bytes={} duration_ms={:.3} route={} upstream={} decision={} policy={}",
                    self.time,
                    self.peer,
                    opt(&self.sni),
                    opt(&self.principal),
                    self.method,
                    opt(&self.host),
                    self.path,
                    self.status,
                    self.bytes,
                    self.duration_ms,
                    opt(&self.route),
                    opt(&self.upstream),
                    self.decision.unwrap_or("-"),
                    opt(&self.policy),
                )
            }
        }
    }
}

/// The sending half; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    format: LogFormat,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the writer thread on `out`.
    pub fn start(format: LogFormat, out: Box<dyn Write + Send>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&rx, out))?;
        Ok(Self {
            tx,
            format,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn emit(&self, record: &Record) {
        match self.tx.try_send(record.format(self.format)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_default()
}

//! Per-connection and per-stream timing for the HTTPS listener.
//!
//! [`Activity`] counts requests in flight and remembers when the last one ended, when the
//! bytes of a new request head started to arrive, and (HTTP/1) when the response body last
//! moved. [`Activity::deadline`] resolves when `request_header_timeout` (from a head's first
//! byte), `idle_timeout` (no request in flight) or `stream_idle_timeout` (a response body
//! with no bytes moving: the upstream sends nothing, or the client reads nothing so hyper
//! stops pulling) has passed, or the client certificate has expired; once the connection
//! was asked to close, it gives a client that was sent a GOAWAY its last seconds.
//! [`Watched`] is the TLS stream reporting its reads, and feeding HTTP/1 head bytes to a
//! [`HeadScan`] so a request with both `Content-Length` and `Transfer-Encoding` can be
//! refused. Times are milliseconds since the connection started.
//!
//! HTTP/2 streams share a connection, so their bodies are watched one by one instead:
//! [`StreamExecutor`] runs each stream's task and ends it (which resets the stream) when its
//! response body has not moved for `stream_idle_timeout`, whether because the upstream is
//! silent or because the client keeps its flow-control window shut.
//!
//! Nothing on the request path wakes a watchdog: it sleeps until the earliest moment a
//! deadline could pass given what it saw, then looks again. A head or body that starts later
//! has a later deadline, so a timeout is never detected late, and a busy connection costs one
//! timer wake-up per timeout period rather than two per request.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::conn::head_scan::HeadScan;

pub(crate) struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
    /// 0 = no request head in progress.
    head_started_ms: AtomicU64,
    /// HTTP/1: when the response body in flight last moved; 0 = no body in flight.
    body_moved_ms: AtomicU64,
    /// HTTP/1 requests handed to the service so far.
    requests: AtomicU64,
    /// The first request (by index) whose framing is ambiguous or could not be followed:
    /// the head scanner's verdict (`u64::MAX`: none).
    refuse_from: AtomicU64,
    /// HTTP/1 only: HTTP/2 sends control frames on idle connections and frames its own heads.
    http1: bool,
}

/// The connection-level timeouts [`Activity::watchdog`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub head: Duration,
    pub idle: Duration,
    pub stream_idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    Head,
    Idle,
    /// HTTP/1: the response body in flight has not moved for `stream_idle_timeout`.
    StreamIdle,
    /// The client certificate's `notAfter` has passed.
    Certificate,
    /// A connection asked to close had no request in flight for its grace period.
    Grace,
}

/// A request in flight; ends when dropped (with its response body).
pub(crate) struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    /// The response head is out and its body starts streaming.
    pub(crate) fn body_started(&self) {
        self.moved();
    }

    /// Bytes of the response body moved (a frame was handed to hyper).
    pub(crate) fn moved(&self) {
        match self.0.http1 {
            true => self
                .0
                .body_moved_ms
                .store(self.0.now_ms(), Ordering::Relaxed),
            false => stream_moved(),
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        self.0.last_done_ms.store(now, Ordering::Relaxed);
        if self.0.http1 {
            self.0.body_moved_ms.store(0, Ordering::Relaxed);
        }
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

impl Activity {
    pub(crate) fn new(http1: bool) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            body_moved_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            refuse_from: AtomicU64::new(u64::MAX),
            http1,
        })
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "not set".
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// `now_ms` counts from 1 at `base`.
    fn instant(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms.saturating_sub(1))
    }

    /// A request head was parsed; returns its guard and whether its framing was ambiguous
    /// (HTTP/1: the head scanner refused it).
    pub(crate) fn request_started(self: &Arc<Self>) -> (RequestGuard, bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
        let ambiguous = self.http1
            && self.requests.fetch_add(1, Ordering::Relaxed)
                >= self.refuse_from.load(Ordering::Relaxed);
        (RequestGuard(self.clone()), ambiguous)
    }

    /// Bytes arrived: with no request in flight they begin a new HTTP/1 request head.
    fn bytes_read(&self) {
        let new_head = self.http1
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0;
        if new_head {
            self.head_started_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The connection's one timer. Until the connection is asked to close (`closing` is
    /// `None`) it resolves when the head, idle or (HTTP/1) stream-idle timeout has passed, or
    /// at `expires` (the client certificate's `notAfter`); afterwards, once no request has
    /// been in flight for the grace period ([`Expired::Grace`]). One future with one `Sleep`
    /// for all of them keeps an idle connection's task small.
    pub(crate) async fn deadline(
        &self,
        t: &Timeouts,
        expires: Option<Instant>,
        closing: Option<(Instant, Duration)>,
    ) -> Expired {
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let next = match closing {
                None => self.watch(t, expires),
                Some((since, grace)) => self.quiet_for(since, grace),
            };
            match next {
                Ok(at) => sleep.as_mut().reset(at),
                Err(expired) => return expired,
            }
        }
    }

    /// What has expired by now, or the earliest moment something could.
    fn watch(&self, t: &Timeouts, expires: Option<Instant>) -> Result<Instant, Expired> {
        if expires.is_some_and(|at| at <= Instant::now()) {
            return Err(Expired::Certificate);
        }
        let now = self.now_ms();
        let head = self.head_started_ms.load(Ordering::Relaxed);
        let idle = self.in_flight.load(Ordering::Relaxed) == 0;
        let body = self.body_moved_ms.load(Ordering::Relaxed);
        if head != 0 && head + ms(t.head) <= now {
            return Err(Expired::Head);
        }
        let idle_deadline = self.last_done_ms.load(Ordering::Relaxed).max(1) + ms(t.idle);
        if head == 0 && idle && idle_deadline <= now {
            return Err(Expired::Idle);
        }
        if body != 0 && body + ms(t.stream_idle) <= now {
            return Err(Expired::StreamIdle);
        }
        // The earliest any deadline can pass: one not yet running starts no earlier than now.
        let head_next = match head {
            0 if self.http1 => now + ms(t.head),
            0 => u64::MAX / 2,
            started => started + ms(t.head),
        };
        let idle_next = if idle && head == 0 {
            idle_deadline
        } else {
            now + ms(t.idle)
        };
        let body_next = match body {
            0 if self.http1 => now + ms(t.stream_idle),
            0 => u64::MAX / 2,
            moved => moved + ms(t.stream_idle),
        };
        let next = self.instant(head_next.min(idle_next).min(body_next));
        Ok(expires.map_or(next, |at| next.min(at)))
    }

    /// Whether no request has been in flight for `grace` (counted from `since` at the
    /// earliest): the time a client that was sent a GOAWAY gets to close by itself. If not,
    /// the earliest moment it could be so.
    fn quiet_for(&self, since: Instant, grace: Duration) -> Result<Instant, Expired> {
        let last_done = self.instant(self.last_done_ms.load(Ordering::Relaxed).max(1));
        let quiet_since = since.max(last_done);
        let busy = self.in_flight.load(Ordering::Relaxed) > 0;
        let now = Instant::now();
        if !busy && now >= quiet_since + grace {
            return Err(Expired::Grace);
        }
        Ok(if busy {
            now + grace
        } else {
            quiet_since + grace
        })
    }
}

// === HTTP/2 streams ===

/// Where the stream task being polled on this thread keeps its body's last movement;
/// `None` outside a stream task (HTTP/1 bodies report to their connection's [`Activity`]).
struct StreamSlot {
    /// `Some(last movement)` once the response body started.
    moved: Option<Instant>,
}

thread_local! {
    static STREAM: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// Records that the response body of the stream being polled moved (or started).
fn stream_moved() {
    STREAM.with(|s| {
        if s.get().is_some() {
            s.set(Some(Some(Instant::now())));
        }
    });
}

/// hyper's executor for HTTP/2 stream tasks: each runs under a stream-idle watchdog. Ending a
/// stream task drops its `SendStream`, so h2 resets the stream (`RST_STREAM(CANCEL)`) and
/// the response body, with the upstream connection it reads from, is dropped (never pooled).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamExecutor {
    pub stream_idle: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(watch_stream(fut, self.stream_idle));
    }
}

async fn watch_stream<F: Future>(fut: F, idle: Duration) {
    let mut fut = pin!(fut);
    let mut slot = StreamSlot { moved: None };
    // Armed once the body has started and the task is waiting: most responses finish first.
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    std::future::poll_fn(|cx| {
        let outer = STREAM.replace(Some(slot.moved));
        let polled = fut.as_mut().poll(cx);
        if let Some(moved) = STREAM.replace(outer) {
            slot.moved = moved;
        }
        if polled.is_ready() {
            return Poll::Ready(());
        }
        let Some(moved) = slot.moved else {
            return Poll::Pending;
        };
        let deadline = moved + idle;
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= deadline {
                tracing::debug!("HTTP/2 response body idle for stream_idle_timeout: stream reset");
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
    })
    .await;
}

/// The TLS stream, reporting reads to [`Activity`] and scanning HTTP/1 request heads.
pub(crate) struct Watched<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
    pub scan: HeadScan,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            this.activity.bytes_read();
            // Every byte, bodies and pipelined heads included: the scanner follows the framing.
            if this.activity.http1 {
                this.scan.feed(&buf.filled()[before..]);
                if let Some(first) = this.scan.refuse_from() {
                    this.activity.refuse_from.store(first, Ordering::Relaxed);
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;

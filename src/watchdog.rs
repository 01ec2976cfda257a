//! Per-connection timing and head inspection for the HTTPS listener.
//!
//! [`Activity`] counts requests in flight and remembers when the last one ended and when the
//! bytes of a new request head started to arrive; [`Activity::watchdog`] resolves when
//! `request_header_timeout` (from a head's first byte) or `idle_timeout` (no request in flight)
//! has passed. [`Watched`] is the TLS stream reporting its reads, and feeding HTTP/1 head bytes
//! to a [`HeadScan`] so a request with both `Content-Length` and `Transfer-Encoding` can be
//! refused. Times are milliseconds since the connection started.
//!
//! Nothing on the request path wakes the watchdog: it sleeps until the earliest moment a
//! deadline could pass given what it saw, then looks again. A head that starts later has a
//! later deadline, so a timeout is never detected late, and a busy connection costs one timer
//! wake-up per timeout period rather than two per request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::http::head_scan::HeadScan;

pub struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
    /// 0 = no request head in progress.
    head_started_ms: AtomicU64,
    /// The head being received carried both Content-Length and Transfer-Encoding.
    ambiguous_length: AtomicBool,
    /// HTTP/1 only: HTTP/2 sends control frames on idle connections and frames its own heads.
    http1: bool,
}

pub enum Expired {
    Head,
    Idle,
}

/// A request in flight; ends when dropped (with its response body).
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0
            .last_done_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub fn new(http1: bool) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            ambiguous_length: AtomicBool::new(false),
            http1,
        })
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "not set".
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A request head was parsed; returns its guard and whether its framing was ambiguous.
    pub fn request_started(self: &Arc<Self>) -> (RequestGuard, bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
        let ambiguous = self.ambiguous_length.swap(false, Ordering::Relaxed);
        (RequestGuard(self.clone()), ambiguous)
    }

    /// Bytes arrived. Returns true when they begin a new HTTP/1 request head.
    fn bytes_read(&self) -> bool {
        let new_head = self.http1
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0;
        if new_head {
            self.head_started_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        new_head
    }

    /// Resolves when the head timeout or the idle timeout has passed.
    pub async fn watchdog(&self, head_timeout: Duration, idle_timeout: Duration) -> Expired {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let now = self.now_ms();
            let head = self.head_started_ms.load(Ordering::Relaxed);
            let idle = self.in_flight.load(Ordering::Relaxed) == 0;
            if head != 0 && head + ms(head_timeout) <= now {
                return Expired::Head;
            }
            let idle_deadline = self.last_done_ms.load(Ordering::Relaxed).max(1) + ms(idle_timeout);
            if head == 0 && idle && idle_deadline <= now {
                return Expired::Idle;
            }
            // The earliest either deadline can pass: one not yet running starts no earlier
            // than now.
            let head_next = match head {
                0 if self.http1 => now + ms(head_timeout),
                0 => u64::MAX / 2,
                started => started + ms(head_timeout),
            };
            let idle_next = if idle && head == 0 {
                idle_deadline
            } else {
                now + ms(idle_timeout)
            };
            let next = head_next.min(idle_next);
            // `now_ms` counts from 1 at `base`.
            sleep
                .as_mut()
                .reset(self.base + Duration::from_millis(next.saturating_sub(1)));
        }
    }
}

/// The TLS stream, reporting reads to [`Activity`] and scanning HTTP/1 request heads.
pub struct Watched<S> {
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
            if this.activity.bytes_read() {
                this.scan.reset();
            }
            // Only head bytes: while a request is in flight, what arrives is its body.
            if this.activity.http1 && this.activity.in_flight.load(Ordering::Relaxed) == 0 {
                this.scan.feed(&buf.filled()[before..]);
                if this.scan.ambiguous_length() {
                    this.activity
                        .ambiguous_length
                        .store(true, Ordering::Relaxed);
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

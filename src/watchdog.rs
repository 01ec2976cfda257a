//! Per-connection timing and head inspection for the HTTPS listener.
//!
//! [`Activity`] counts requests in flight and remembers when the last one ended and when the
//! bytes of a new request head started to arrive; [`Activity::watchdog`] resolves when
//! `request_header_timeout` (from a head's first byte) or `idle_timeout` (no request in flight)
//! has passed. [`Watched`] is the TLS stream reporting its reads, and feeding HTTP/1 head bytes
//! to a [`HeadScan`] so a request with both `Content-Length` and `Transfer-Encoding` can be
//! refused. Times are milliseconds since the connection started.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
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
    changed: Notify,
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
        self.0.changed.notify_one();
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
            changed: Notify::new(),
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
            self.changed.notify_one();
        }
        new_head
    }

    /// Resolves when the head timeout or the idle timeout has passed.
    pub async fn watchdog(&self, head_timeout: Duration, idle_timeout: Duration) -> Expired {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2);
        loop {
            let now = self.now_ms();
            let head = self.head_started_ms.load(Ordering::Relaxed);
            let idle = self.in_flight.load(Ordering::Relaxed) == 0;
            let head_deadline = (head != 0).then(|| head + ms(head_timeout));
            let idle_deadline =
                idle.then(|| self.last_done_ms.load(Ordering::Relaxed).max(1) + ms(idle_timeout));
            if head_deadline.is_some_and(|d| d <= now) {
                return Expired::Head;
            }
            if head == 0 && idle_deadline.is_some_and(|d| d <= now) {
                return Expired::Idle;
            }
            let next = [head_deadline, idle_deadline].into_iter().flatten().min();
            let notified = self.changed.notified();
            match next {
                Some(at) => {
                    let _ = tokio::time::timeout(Duration::from_millis(at - now), notified).await;
                }
                None => notified.await,
            }
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

//! An upgraded connection (WebSocket) after `101 Switching Protocols`: bytes are copied both
//! ways until both sides close. hyper's connection future ends at the `101`, so the tunnel
//! task takes over what the connection held (SPEC "Upgrade"): the client connection's lease
//! (its `max_connections` permit, its place in `gatehouse_connections_active`, its drain
//! receiver) and the upstream connection's pool slot. It is closed after `idle_timeout` with
//! no bytes either way, when `drain_timeout` has passed after shutdown began, and at once when
//! its client stops being accepted (a reload refuses the certificate, or it expires), as an
//! open connection would be.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::connection::Conn;
use crate::metrics::Metrics;
use crate::runtime::Published;

/// The tunnel's time limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub idle: Duration,
    pub drain: Duration,
}

/// Runs the tunnel between the client's and the upstream's upgraded connections.
pub(crate) async fn run(
    down: OnUpgrade,
    up: OnUpgrade,
    conn: Arc<Conn>,
    upstream_slot: Option<OwnedSemaphorePermit>,
    limits: Limits,
    published: Arc<Published>,
    metrics: Arc<Metrics>,
) {
    // Held to the end with `conn` (whose lease is the client connection's permit and gauge).
    let _upstream_slot = upstream_slot;
    let mut stop = conn.lease.stop.clone();
    let mut swaps = published.subscribe();
    // Checked once against the current snapshot too: a reload may have come between the
    // connection's last check and the `101`.
    swaps.mark_changed();
    let (Ok(down), Ok(up)) = tokio::join!(down, up) else {
        return;
    };
    let base = Instant::now();
    let moved = AtomicU64::new(0);
    let mut down = Tracked::new(TokioIo::new(down), &moved, base);
    let mut up = Tracked::new(TokioIo::new(up), &moved, base);
    let peer = conn.info.peer;
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down, &mut up) => {
            tracing::debug!(%peer, result = ?r, "tunnel closed");
        }
        () = idle(&moved, base, limits.idle) => {
            tracing::debug!(%peer, "tunnel idle for idle_timeout: closed");
        }
        () = async {
            let _ = stop.wait_for(|draining| *draining).await;
            tokio::time::sleep(limits.drain).await;
        } => {
            tracing::debug!(%peer, "tunnel closed at the end of the drain");
        }
        refused = published.until_refused(&conn.info, &mut swaps) => {
            refused.log(peer, "closing its tunnel");
            metrics.closed(refused.reason());
        }
    }
}

/// Resolves once no byte has moved for `limit`.
async fn idle(moved: &AtomicU64, base: Instant, limit: Duration) {
    loop {
        let last = base + Duration::from_millis(moved.load(Ordering::Relaxed));
        let deadline = last + limit;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// One side of the tunnel, recording when bytes last arrived from either side.
struct Tracked<'a, IO> {
    io: IO,
    moved: &'a AtomicU64,
    base: Instant,
}

impl<'a, IO> Tracked<'a, IO> {
    fn new(io: IO, moved: &'a AtomicU64, base: Instant) -> Self {
        Self { io, moved, base }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<'_, IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX / 4);
            self.moved.store(ms, Ordering::Relaxed);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

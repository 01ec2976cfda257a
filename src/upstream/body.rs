//! [`UpstreamBody`]: an upstream's response body on its way to the client, which releases
//! what the exchange held when it ends: an HTTP/1.1 connection back to the pool, an HTTP/2
//! stream's place on its connection ([`InFlight`]), or an upgraded connection's slot.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use super::pool::{Conn, H2State, Pool};

/// Keeps a stream counted in flight on its HTTP/2 connection until the response body is
/// done or dropped.
pub(super) struct InFlight(Arc<H2State>);

impl InFlight {
    /// Counts one more stream on the connection of `state`.
    pub(super) fn start(state: &Arc<H2State>) -> Self {
        state.stream_started();
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stream_ended();
    }
}

/// An upstream response body; its connection goes back to the pool once the body has been
/// read to its end. A body dropped before its end takes the connection with it (hyper
/// closes it); a `101 Switching Protocols` hands it to the tunnel ([`UpstreamBody::upgraded`]).
pub(crate) struct UpstreamBody {
    pub(super) inner: Incoming,
    pub(super) release: Release,
}

/// What becomes of the connection once the body is done.
pub(super) enum Release {
    /// Back to the pool once the body has been read to its end.
    Pool(Arc<Pool>, Conn),
    /// Upgraded (101): never pooled; its slot goes to the tunnel.
    Upgrade(Conn),
    /// An HTTP/2 stream: counted in flight on its connection until the body is done.
    Stream(#[allow(dead_code, reason = "held for its Drop")] InFlight),
    /// Dropped: already pooled, or closed mid-body.
    Gone,
}

impl UpstreamBody {
    fn release_if_done(&mut self, done: bool) {
        if (done || self.inner.is_end_stream())
            && matches!(self.release, Release::Pool(..))
            && let Release::Pool(pool, conn) = std::mem::replace(&mut self.release, Release::Gone)
        {
            pool.put(conn);
        }
    }

    /// After a `101`: the connection's pool slot, which the tunnel holds until it closes.
    pub(crate) fn upgraded(mut self) -> Option<OwnedSemaphorePermit> {
        match std::mem::replace(&mut self.release, Release::Gone) {
            Release::Upgrade(conn) => Some(conn.into_slot()),
            _ => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release_if_done(true),
            Poll::Ready(Some(Ok(_))) => self.release_if_done(false),
            Poll::Ready(Some(Err(_))) => self.release = Release::Gone,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.release_if_done(false);
    }
}

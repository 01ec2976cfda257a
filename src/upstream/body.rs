//! What travels on an upstream connection: [`UpstreamBody`], the response body that hands
//! its connection back to the pool at its end, and [`UpstreamStream`], the socket that
//! counts the bytes read from it (did a failed exchange get any of a response?).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::OwnedSemaphorePermit;

use super::pool::{Conn, Pool};

/// An upstream response body; its connection goes back to the pool once the body has been
/// read to its end. A body dropped before its end takes the connection with it (hyper
/// closes it); a `101 Switching Protocols` hands it to the tunnel ([`UpstreamBody::upgraded`]).
pub struct UpstreamBody {
    pub(super) inner: Incoming,
    pub(super) release: Release,
}

/// What becomes of the connection once the body is done.
pub(super) enum Release {
    /// Back to the pool once the body has been read to its end.
    Pool(Arc<Pool>, Conn),
    /// Upgraded (101): never pooled; its slot goes to the tunnel.
    Upgrade(Conn),
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
    pub fn upgraded(mut self) -> Option<OwnedSemaphorePermit> {
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

/// A connection to an upstream, counting the bytes read from it.
#[derive(Debug)]
pub(super) struct UpstreamStream {
    pub(super) socket: Socket,
    pub(super) read: Arc<AtomicU64>,
}

#[derive(Debug)]
pub(super) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.socket {
            Socket::Tcp(s) => s.is_write_vectored(),
            Socket::Unix(s) => s.is_write_vectored(),
        }
    }
}


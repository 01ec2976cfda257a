//! The client's request body on its way upstream: [`ClientBody`] passes frames through,
//! remembers how the body ended, and aborts it when the client sends nothing for
//! `stream_idle_timeout`. The upstream connection task polls it, so its timer wakes that task;
//! an aborted or malformed body makes hyper abandon the upstream request mid-body, so the
//! upstream never sees a complete request. The service reads [`BodyOutcome`] afterwards to
//! blame the client (400 / 408), not the upstream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// How a request body ended, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyOutcome {
    /// Still streaming (or never read).
    Open,
    /// Read to its end.
    Complete,
    /// Bad framing (a malformed chunk) or the client went away mid-body.
    Malformed,
    /// No bytes from the client for `stream_idle_timeout`.
    Stalled,
}

/// Shared between the body (in the upstream connection's task) and the request's service.
#[derive(Debug, Default)]
pub(crate) struct BodyState(AtomicU8);

impl BodyState {
    pub(crate) fn outcome(&self) -> BodyOutcome {
        match self.0.load(Ordering::Acquire) {
            1 => BodyOutcome::Complete,
            2 => BodyOutcome::Malformed,
            3 => BodyOutcome::Stalled,
            _ => BodyOutcome::Open,
        }
    }

    fn set(&self, outcome: BodyOutcome) {
        let v = match outcome {
            BodyOutcome::Open => 0,
            BodyOutcome::Complete => 1,
            BodyOutcome::Malformed => 2,
            BodyOutcome::Stalled => 3,
        };
        self.0.store(v, Ordering::Release);
    }
}

/// The error a stalled body ends with.
#[derive(Debug)]
pub(super) struct ClientStalled(Duration);

impl std::fmt::Display for ClientStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client sent no body bytes for {:?}", self.0)
    }
}

impl std::error::Error for ClientStalled {}

pub(crate) struct ClientBody {
    inner: Incoming,
    state: Arc<BodyState>,
    idle: Duration,
    moved: Instant,
    /// Armed the first time the client makes us wait; re-armed from `moved` when it fires.
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientBody {
    pub(crate) fn new(inner: Incoming, idle: Duration) -> (Self, Arc<BodyState>) {
        let state = Arc::new(BodyState::default());
        let body = Self {
            inner,
            state: state.clone(),
            idle,
            moved: Instant::now(),
            timer: None,
        };
        (body, state)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.moved = Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.state.set(BodyOutcome::Malformed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.state.set(BodyOutcome::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.moved + this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                loop {
                    ready!(timer.as_mut().poll(cx));
                    if Instant::now() >= deadline {
                        this.state.set(BodyOutcome::Stalled);
                        return Poll::Ready(Some(Err(Box::new(ClientStalled(this.idle)))));
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

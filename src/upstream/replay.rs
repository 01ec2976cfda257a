//! [`Replay`]: a request body on its way to an h2c upstream, recorded (up to
//! [`REPLAY_LIMIT`]) so that a request the upstream did not process can be sent again.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::RequestBody;

/// A request body kept for a replay up to this many bytes; a larger one is not retried.
pub(super) const REPLAY_LIMIT: usize = 64 * 1024;

/// The recording a request body is replayed from.
struct Tape {
    /// The body's frames not read yet.
    inner: Option<RequestBody>,
    /// The frames read so far, while they fit in [`REPLAY_LIMIT`].
    frames: Vec<Frame<Bytes>>,
    kept: usize,
    overflowed: bool,
}

/// A request body on its way to an h2c upstream, recorded so that it can be sent again:
/// each [`Replay`] made by [`Replay::again`] reads the recording from its start, then the
/// rest of the body (recording it too).
pub(super) struct Replay {
    tape: Arc<Mutex<Tape>>,
    /// The next frame of the recording this copy returns.
    at: usize,
}

impl Replay {
    pub(super) fn new(body: RequestBody) -> Self {
        Self {
            tape: Arc::new(Mutex::new(Tape {
                inner: Some(body),
                frames: Vec::new(),
                kept: 0,
                overflowed: false,
            })),
            at: 0,
        }
    }

    fn tape(&self) -> std::sync::MutexGuard<'_, Tape> {
        self.tape.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn again(&self) -> Self {
        Self {
            tape: self.tape.clone(),
            at: 0,
        }
    }

    pub(super) fn replayable(&self) -> bool {
        !self.tape().overflowed
    }
}

fn copy(frame: &Frame<Bytes>) -> Option<Frame<Bytes>> {
    match (frame.data_ref(), frame.trailers_ref()) {
        (Some(data), _) => Some(Frame::data(data.clone())),
        (None, Some(trailers)) => Some(Frame::trailers(trailers.clone())),
        (None, None) => None,
    }
}

impl Body for Replay {
    type Data = Bytes;
    type Error = <RequestBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let mut tape = this.tape.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(frame) = tape.frames.get(this.at).and_then(copy) {
            this.at += 1;
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(inner) = tape.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && !tape.overflowed
        {
            let size = frame.data_ref().map_or(0, Bytes::len);
            tape.kept += size;
            match (tape.kept <= REPLAY_LIMIT, copy(frame)) {
                (true, Some(kept)) => {
                    tape.frames.push(kept);
                    this.at = tape.frames.len();
                }
                _ => {
                    tape.overflowed = true;
                    tape.frames = Vec::new();
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let tape = self.tape();
        self.at >= tape.frames.len() && tape.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let tape = self.tape();
        match (self.at, tape.inner.as_ref()) {
            (0, Some(b)) if tape.frames.is_empty() => b.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

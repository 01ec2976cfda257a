//! The response body on its way to the client: [`LoggedBody`] counts its bytes, keeps the
//! connection's watchdog informed, and when it is done (or dropped) records the request's
//! metrics and writes its access-log line.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::ProxyBody;
use super::connection::Shared;
use crate::access_log::Record;
use crate::conn::watchdog::RequestGuard;
use crate::metrics::RouteSeries;

/// What is recorded when the response body is done: metrics, and the access-log line.
pub(super) struct Pending {
    pub(super) shared: Arc<Shared>,
    pub(super) start: Instant,
    pub(super) series: Arc<RouteSeries>,
    pub(super) code: u16,
    pub(super) record: Option<Record>,
}

/// The response body, counting bytes; writes the access-log line when it is done or dropped.
pub(crate) struct LoggedBody {
    pub(super) inner: ProxyBody,
    pub(super) bytes: u64,
    pub(super) pending: Option<Box<Pending>>,
    /// Keeps the connection's request in flight until the body is done.
    pub(super) guard: Option<RequestGuard>,
}

impl LoggedBody {
    /// Ties the request's in-flight guard to this body: the body starts streaming now, and
    /// the connection's watchdog sees it move.
    pub(crate) fn with_guard(mut self, guard: RequestGuard) -> Self {
        guard.body_started();
        self.guard = Some(guard);
        self
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
            if let Some(guard) = &self.guard {
                guard.moved();
            }
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

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let elapsed = p.start.elapsed();
        p.shared
            .metrics
            .count_request(&p.series, p.code, elapsed.as_secs_f64());
        if let (Some(mut record), Some(log)) = (p.record, &p.shared.access_log) {
            record.bytes = self.bytes;
            record.duration_ms = elapsed.as_secs_f64() * 1000.0;
            log.emit(&record);
        }
    }
}

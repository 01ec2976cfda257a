//! HTTP/2 without TLS to the upstream (`upstream_protocol = "h2c"`, gRPC): requests are
//! multiplexed on the pool's connections (hyper's `client::conn::http2`), each connection
//! owning one of the pool's `upstream_max_connections` slots for its whole life.
//!
//! A request goes to the open connection with the fewest streams in flight, among those
//! below the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS`; when all are full, to a new
//! connection on a free slot; when no slot is free, to the least busy one, where the HTTP/2
//! layer queues it until a stream closes. A connection that received a GOAWAY takes no new
//! request (its streams in flight finish). A request the upstream did not process (refused
//! with `REFUSED_STREAM`, or above a GOAWAY's last stream) is sent again once, on another
//! connection if there is one: its body is replayed from a bounded recording
//! ([`Replay`]). The pool's sweep lets a connection go once it has been idle for a minute.

use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::metrics::counter::Counter;

use super::body::{InFlight, Release, UpstreamBody};
use super::pool::{H2Conn, H2State, Pool};
use super::replay::Replay;
use super::{RequestBody, UpstreamError, error_chain};

impl Pool {
    /// A connection with room for a stream, or (`Err`) the least busy one, if any.
    fn h2_pick(&self) -> Result<H2Conn, Option<H2Conn>> {
        let mut conns = self.h2_conns();
        conns.retain(H2Conn::open);
        match conns.iter().min_by_key(|c| c.load()).cloned() {
            Some(c) if c.has_room() => Ok(c),
            other => Err(other),
        }
    }

    /// A connection for the next request: see the module documentation.
    async fn h2_conn(&self) -> Result<H2Conn, UpstreamError> {
        if let Ok(c) = self.h2_pick() {
            return Ok(c);
        }
        // One connection is made at a time: the requests of a burst that find none wait for
        // it instead of each opening its own.
        let _dialing = self.h2_dial.lock().await;
        let busiest = match self.h2_pick() {
            Ok(c) => return Ok(c),
            Err(busiest) => busiest,
        };
        let slot = match (self.slots.clone().try_acquire_owned(), busiest) {
            (Ok(slot), _) => slot,
            (Err(_), Some(c)) => return Ok(c),
            (Err(_), None) => match self.slots.clone().acquire_owned().await {
                Ok(slot) => slot,
                // The semaphore is never closed.
                Err(_) => return Err(UpstreamError::Unavailable("pool closed".into())),
            },
        };
        let stream = self.socket().await?;
        let (sender, conn) = http2::Builder::<TokioExecutor>::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Unavailable(error_chain(&e)))?;
        let state = H2State::new();
        let seen = state.clone();
        let mut conn = Box::pin(conn);
        tokio::spawn(async move {
            // The slot is this connection's until it ends.
            let _slot = slot;
            let ended = std::future::poll_fn(|cx| {
                let polled = conn.as_mut().poll(cx);
                seen.set_max_streams(conn.current_max_send_streams());
                polled
            })
            .await;
            if let Err(e) = ended {
                tracing::debug!(error = %error_chain(&e), "upstream h2c connection ended");
            }
        });
        let c = H2Conn { sender, state };
        self.h2_conns().push(c.clone());
        Ok(c)
    }

    fn h2_conns(&self) -> std::sync::MutexGuard<'_, Vec<H2Conn>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `req` (its URI already absolute, its version HTTP/2) on a connection of this
    /// pool; a request the upstream did not process is sent again once.
    pub(super) async fn exchange_h2(
        &self,
        req: Request<RequestBody>,
        retries: &Counter,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (parts, body) = req.into_parts();
        let tape = Replay::new(body);
        let mut retried = false;
        loop {
            let conn = self.h2_conn().await?;
            let mut sender = conn.sender.clone();
            let req = Request::from_parts(parts.clone(), tape.again());
            let guard = InFlight::start(&conn.state);
            match sender.send_request(req).await {
                Ok(res) => {
                    let (parts, inner) = res.into_parts();
                    let body = UpstreamBody {
                        inner,
                        release: Release::Stream(guard),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(e) => {
                    let unprocessed = not_processed(&e);
                    if unprocessed.is_some_and(|go_away| go_away) {
                        conn.state.go_away();
                    }
                    if unprocessed.is_some() && !retried && tape.replayable() {
                        tracing::debug!(error = %error_chain(&e), "upstream did not process the request: sending it again");
                        retries.inc();
                        retried = true;
                        continue;
                    }
                    return Err(UpstreamError::BadResponse(error_chain(&e)));
                }
            }
        }
    }
}

/// `Some(closing)` when the upstream certainly did not process the request: a
/// `REFUSED_STREAM` reset (`Some(false)`), or a connection that was closing, by a GOAWAY
/// that excludes the stream or came before it was sent, or by its end (`Some(true)`).
fn not_processed(e: &hyper::Error) -> Option<bool> {
    // Never handed to the connection: it was closing (after a GOAWAY, or gone).
    if e.is_canceled() {
        return Some(true);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_go_away() && h2.is_remote() {
                return Some(true);
            }
            return (h2.reason() == Some(h2::Reason::REFUSED_STREAM)).then_some(false);
        }
        source = err.source();
    }
    None
}

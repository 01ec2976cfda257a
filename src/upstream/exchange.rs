//! One exchange with an upstream: a connection from the [`Pool`] (or a new one), the
//! request written, the response head awaited under the route timeout, a stale pooled
//! connection retried once; then [`UpstreamBody`] hands the connection back to the pool
//! when the response body ends, unless the upstream said `connection: close`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::body::{Release, UpstreamBody};
use super::pool::{Conn, Got, Pool};
use super::{RequestBody, UpstreamError, error_chain};
use crate::config::UpstreamProtocol;

impl Pool {
    async fn connect(&self, slot: OwnedSemaphorePermit) -> Result<Conn, UpstreamError> {
        let stream = self.socket().await?;
        let read = stream.read.clone();
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Unavailable(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %error_chain(&e), "upstream connection ended");
            }
        });
        Ok(Conn {
            sender,
            slot,
            read,
            expires: None,
        })
    }

    /// Sends `req` (its URI is set here to `target`, the normalized path and the query),
    /// waiting at most `timeout` for a connection and the response head. The connection goes
    /// back to the pool when the returned body has been read to its end, unless the upstream
    /// said `connection: close`; its `keep-alive: timeout=` bounds its reuse. A retry (see
    /// [`Pool::exchange`]) is counted in `retries`.
    pub(crate) async fn send(
        self: &Arc<Self>,
        timeout: Duration,
        target: String,
        mut req: Request<RequestBody>,
        retries: &Counter,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if self.protocol == UpstreamProtocol::H2c {
            // HTTP/2 carries the host as :authority, in an absolute URI.
            let authority = req
                .headers_mut()
                .remove(http::header::HOST)
                .and_then(|h| h.to_str().ok().map(str::to_owned))
                .unwrap_or_default();
            *req.uri_mut() =
                Uri::from_maybe_shared(Bytes::from(["http://", &authority, &target].concat()))
                    .map_err(|_| UpstreamError::BadTarget)?;
            *req.version_mut() = http::Version::HTTP_2;
            return match tokio::time::timeout(timeout, self.exchange_h2(req, retries)).await {
                Err(_) => Err(UpstreamError::Timeout),
                Ok(done) => done,
            };
        }
        // A target that is not a valid origin-form is a client error: a 400.
        *req.uri_mut() =
            Uri::from_maybe_shared(Bytes::from(target)).map_err(|_| UpstreamError::BadTarget)?;
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(timeout, self.exchange(req, retries)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok((res, mut conn))) => {
                let release = match keep_alive(res.headers()) {
                    _ if res.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                        Release::Upgrade(conn)
                    }
                    KeepAlive::Close => Release::Gone,
                    KeepAlive::For(secs) => {
                        conn.expires =
                            Some(Instant::now() + secs.saturating_sub(Duration::from_secs(1)));
                        Release::Pool(self.clone(), conn)
                    }
                    KeepAlive::Default => Release::Pool(self.clone(), conn),
                };
                let (parts, inner) = res.into_parts();
                Ok(Response::from_parts(parts, UpstreamBody { inner, release }))
            }
        }
    }

    /// One exchange on a pooled or new connection. A pooled connection can turn out dead:
    /// a request never written on it goes to another one; a request written on it that got
    /// no byte of a response is retried once on a new connection when it is idempotent with
    /// an empty body (SPEC "Upstream keep-alive": an upstream closing idle connections costs
    /// no failed requests; nginx's `proxy_next_upstream error`).
    async fn exchange(
        &self,
        mut req: Request<RequestBody>,
        retries: &Counter,
    ) -> Result<(Response<Incoming>, Conn), UpstreamError> {
        let mut retried = false;
        loop {
            let got = match retried {
                true => Got::Slot(self.fresh_slot().await),
                false => match self.take_or_wait() {
                    Ok(got) => got,
                    Err(queued) => self.wait(queued).await,
                },
            };
            let (mut conn, reused) = match got {
                Got::Pooled(conn) => (conn, true),
                // Boxed: the rare path would otherwise make every request's future larger.
                Got::Slot(slot) => (Box::pin(self.connect(slot)).await?, false),
            };
            // A connection that just finished a response may not have said so yet.
            if let Err(e) = conn.sender.ready().await {
                match reused {
                    true => continue,
                    // Accepted, then closed or garbled before any request: as nginx's
                    // "upstream prematurely closed connection", a 502.
                    false => return Err(UpstreamError::BadResponse(error_chain(&e))),
                }
            }
            let replay = (reused && !retried).then(|| replayable(&req)).flatten();
            let read_before = conn.read.load(Ordering::Relaxed);
            match conn.sender.try_send_request(req).await {
                Ok(res) => return Ok((res, conn)),
                Err(mut e) => match (e.take_message(), replay) {
                    // Never written: the pooled connection was stale. Try another one.
                    (Some(unsent), _) if reused => req = unsent,
                    (None, Some(again)) if conn.read.load(Ordering::Relaxed) == read_before => {
                        tracing::debug!(error = %error_chain(e.error()), "pooled upstream connection failed before any response: retrying on a new one");
                        retries.inc();
                        retried = true;
                        req = again;
                    }
                    _ => return Err(UpstreamError::BadResponse(error_chain(e.error()))),
                },
            }
        }
    }
}

/// A copy of `req` to send again, when it may be: an idempotent method (RFC 9110 §9.2.2)
/// and no body.
fn replayable(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    use http::Method;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || matches!(req.body(), Either::Left(_)) {
        return None;
    }
    let mut again = Request::new(Either::Right(Empty::new()));
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    Some(again)
}

/// What an upstream response says about reusing its connection.
#[derive(Debug, PartialEq, Eq)]
enum KeepAlive {
    /// `connection: close`.
    Close,
    /// `keep-alive: timeout=N`.
    For(Duration),
    Default,
}

fn keep_alive(headers: &http::HeaderMap) -> KeepAlive {
    let tokens = |name| {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    if tokens(http::header::CONNECTION).any(|t| t.eq_ignore_ascii_case("close")) {
        return KeepAlive::Close;
    }
    if !headers.contains_key("keep-alive") {
        return KeepAlive::Default;
    }
    let timeout = tokens(http::HeaderName::from_static("keep-alive")).find_map(|t| {
        let (k, v) = t.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("timeout")
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
    });
    match timeout {
        Some(secs) => KeepAlive::For(Duration::from_secs(secs)),
        None => KeepAlive::Default,
    }
}

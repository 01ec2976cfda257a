//! The connections to one upstream: at most `upstream_max_connections`, busy and idle
//! together, each owning a slot of the pool's semaphore; a request takes an idle one, opens
//! one on a free slot, or waits in turn. [`Pool::send`] runs one exchange under the route
//! timeout and retries a stale pooled connection once.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use super::body::{Release, Socket, UpstreamBody, UpstreamStream};
use super::{RequestBody, UpstreamError, error_chain};
use crate::config::Upstream;

/// How long an idle pooled upstream connection is kept (nginx keepalive_timeout's default is 60 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a pool drops the connections idle for longer than that.
const POOL_SWEEP: Duration = Duration::from_secs(15);

/// The connections to one upstream: the idle ones, most recently used last, and the
/// requests waiting for one.
#[derive(Debug)]
pub struct Pool {
    upstream: Upstream,
    /// One permit per connection, busy or idle.
    slots: Arc<Semaphore>,
    /// Held only to push or pop, never across an await.
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Idle>,
    /// Requests waiting for a connection to be handed back, oldest first.
    waiters: VecDeque<oneshot::Sender<Conn>>,
}

/// One upstream connection and the pool slot it occupies.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<RequestBody>,
    slot: OwnedSemaphorePermit,
    /// Response bytes read on this connection so far (did a failed exchange get any?).
    read: Arc<AtomicU64>,
    /// Not reused past this: the upstream's `keep-alive: timeout=` less 1 s.
    expires: Option<Instant>,
}

impl Conn {
    fn reusable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && self.expires.is_none_or(|t| now < t)
    }
}

impl Conn {
    /// The pool slot, for a connection that leaves the pool for good (an upgraded tunnel
    /// keeps counting against `upstream_max_connections` until it closes).
    pub fn into_slot(self) -> OwnedSemaphorePermit {
        self.slot
    }
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Where a connection for a request came from.
enum Got {
    Pooled(Conn),
    Slot(OwnedSemaphorePermit),
}

impl Pool {
    pub(super) fn new(upstream: Upstream, max: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            upstream,
            slots: Arc::new(Semaphore::new(max)),
            state: Mutex::new(PoolState::default()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection, a free slot, or (when neither) a place in the queue.
    fn take_or_wait(&self) -> Result<Got, oneshot::Receiver<Conn>> {
        let mut state = self.state();
        let now = Instant::now();
        while let Some(entry) = state.idle.pop() {
            if entry.conn.reusable(now) {
                return Ok(Got::Pooled(entry.conn));
            }
        }
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(Got::Slot(slot));
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back(tx);
        Err(rx)
    }

    /// Waits for a connection handed back or a slot freed, whichever comes first.
    async fn wait(&self, mut handed: oneshot::Receiver<Conn>) -> Got {
        let slots = self.slots.clone();
        tokio::select! {
            biased;
            Ok(conn) = &mut handed => Got::Pooled(conn),
            Ok(slot) = slots.acquire_owned() => {
                // A connection handed over at the same moment goes back to the pool.
                handed.close();
                if let Ok(conn) = handed.try_recv() {
                    self.put(conn);
                }
                Got::Slot(slot)
            }
        }
    }

    /// A slot for a new connection, for a retry: closes an idle connection to free one if
    /// need be, else waits for one.
    async fn fresh_slot(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return slot;
            }
            let idle = self.state().idle.pop();
            if idle.is_none() {
                break;
            }
        }
        match self.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Hands a connection to the oldest waiting request, or keeps it idle.
    pub(super) fn put(&self, mut conn: Conn) {
        if !conn.reusable(Instant::now()) {
            return;
        }
        let mut state = self.state();
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(conn) {
                Ok(()) => return,
                // That request gave up (timeout) or got a slot instead.
                Err(back) => conn = back,
            }
        }
        state.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// How many idle connections are pooled (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.state().idle.len()
    }

    async fn connect(&self, slot: OwnedSemaphorePermit) -> Result<Conn, UpstreamError> {
        let unavailable = |e: io::Error| UpstreamError::Unavailable(e.to_string());
        let socket = match &self.upstream {
            Upstream::Tcp { authority } => {
                let tcp = TcpStream::connect(authority.as_str())
                    .await
                    .map_err(unavailable)?;
                tcp.set_nodelay(true).map_err(unavailable)?;
                Socket::Tcp(tcp)
            }
            Upstream::Unix(path) => {
                Socket::Unix(UnixStream::connect(path).await.map_err(unavailable)?)
            }
        };
        let read = Arc::new(AtomicU64::new(0));
        let stream = UpstreamStream {
            socket,
            read: read.clone(),
        };
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
    pub async fn send(
        self: &Arc<Self>,
        timeout: Duration,
        target: String,
        mut req: Request<RequestBody>,
        retries: &Counter,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // A target that is not a valid origin-form is a client error: a 400.
        *req.uri_mut() = Uri::from_maybe_shared(Bytes::from(target))
            .map_err(|_| UpstreamError::BadTarget)?;
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

/// Drops connections idle for longer than `POOL_IDLE_TIMEOUT`, until the pool is gone.
async fn sweep(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(POOL_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        pool.state()
            .idle
            .retain(|e| e.conn.reusable(now) && now.duration_since(e.since) < POOL_IDLE_TIMEOUT);
    }
}


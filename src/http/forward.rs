//! The upstream side: HTTP/1.1 keep-alive connections (hyper's `client::conn::http1`), pooled
//! per upstream. The pools outlive config snapshots, so a reload never drops pooled
//! connections. Upstreams are `http://host:port` or `unix:/path`; failures are classified
//! into 502 / 503 / 504.
//!
//! The pool is ours rather than hyper-util's legacy client because the proxy's needs are
//! narrow: one upstream per pool (no URI keying), a connection goes back when its response
//! body has been read to the end (no task spawned per request to wait for readiness), and a
//! request that never left a stale pooled connection is retried once on another one.
//!
//! Each pool holds at most `upstream_max_connections` connections, busy and idle together
//! (SPEC "Edge limits"): every connection owns one of the pool's slots for its whole life.
//! A request that finds no idle connection and no free slot waits, first come first served,
//! for either a connection handed back or a slot freed by a closed connection; the route
//! timeout bounds the wait (then 504).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use super::ProxyError;
use super::body::ClientBody;
use crate::config::Upstream;

/// How long an idle pooled upstream connection is kept (nginx keepalive_timeout's default is 60 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a pool drops the connections idle for longer than that.
const POOL_SWEEP: Duration = Duration::from_secs(15);

/// A request body sent upstream: the client's, or none (a request without a body, or one
/// the proxy makes itself).
pub type RequestBody = Either<ClientBody, Empty<Bytes>>;

/// The pools of every upstream seen so far, shared by all snapshots.
pub struct Upstreams {
    pools: Mutex<HashMap<Upstream, Arc<Pool>>>,
    /// `upstream_max_connections`: fixed at startup.
    max_per_upstream: usize,
}

/// A snapshot's handle on the pool of one of its routes, resolved on the route's first request.
pub type PoolSlot = OnceLock<Arc<Pool>>;

impl Upstreams {
    pub fn new(max_per_upstream: usize) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            max_per_upstream,
        }
    }

    /// The pool for `upstream`; `slot` caches it, so the registry is locked once per route
    /// and snapshot, not per request.
    pub fn pool<'a>(&self, slot: &'a PoolSlot, upstream: &Upstream) -> &'a Arc<Pool> {
        slot.get_or_init(|| {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .entry(upstream.clone())
                .or_insert_with(|| Pool::new(upstream.clone(), self.max_per_upstream))
                .clone()
        })
    }
}

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
    fn new(upstream: Upstream, max: usize) -> Arc<Self> {
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
    fn put(&self, mut conn: Conn) {
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

    async fn connect(&self, slot: OwnedSemaphorePermit) -> Result<Conn, ProxyError> {
        let unavailable = |e: io::Error| ProxyError::UpstreamUnavailable(e.to_string());
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
            .map_err(|e| ProxyError::UpstreamUnavailable(error_chain(&e)))?;
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
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        // A target that is not a valid origin-form is a client error: a 400.
        *req.uri_mut() = Uri::from_maybe_shared(Bytes::from(target))
            .map_err(|_| ProxyError::BadPath(super::normalize::BadPath::ControlOrSpace))?;
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(timeout, self.exchange(req, retries)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
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
    ) -> Result<(Response<Incoming>, Conn), ProxyError> {
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
                    false => return Err(ProxyError::BadUpstreamResponse(error_chain(&e))),
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
                    _ => return Err(ProxyError::BadUpstreamResponse(error_chain(e.error()))),
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// An upstream response body; its connection goes back to the pool once the body has been
/// read to its end. A body dropped before its end takes the connection with it (hyper
/// closes it); a `101 Switching Protocols` hands it to the tunnel ([`UpstreamBody::upgraded`]).
pub struct UpstreamBody {
    inner: Incoming,
    release: Release,
}

/// What becomes of the connection once the body is done.
enum Release {
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
pub struct UpstreamStream {
    socket: Socket,
    read: Arc<AtomicU64>,
}

#[derive(Debug)]
enum Socket {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A one-connection-at-a-time upstream that answers every request with `body` and counts
    /// the connections it accepted.
    async fn upstream(body: &'static str) -> (Upstream, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(body.as_bytes()),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        let up = Upstream::Tcp {
            authority: addr.to_string(),
        };
        (up, accepted)
    }

    /// A request with an empty `Incoming` body, as the proxy would forward a GET.
    fn get() -> Request<RequestBody> {
        let mut req = Request::new(Either::Right(Empty::new()));
        req.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("up"));
        req
    }

    async fn fetch(pool: &Arc<Pool>) -> String {
        let res = pool
            .send(
                Duration::from_secs(5),
                "/x?y=1".into(),
                get(),
                &Counter::default(),
            )
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_body_was_read() {
        let (up, accepted) = upstream("hello").await;
        let upstreams = Upstreams::new(1024);
        let slot = PoolSlot::new();
        let pool = upstreams.pool(&slot, &up).clone();
        for _ in 0..5 {
            assert_eq!(fetch(&pool).await, "hello");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
        // Another snapshot's slot for the same upstream finds the same pool.
        let other = PoolSlot::new();
        assert!(Arc::ptr_eq(upstreams.pool(&other, &up), &pool));
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_pool_them_all() {
        let (up, accepted) = upstream("x").await;
        let pool = Upstreams::new(1024).pool(&PoolSlot::new(), &up).clone();
        let held: Vec<_> = futures_join(&pool, 3).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(pool.idle_count(), 0, "bodies not read yet");
        drop(held);
        // Dropped before their (non-empty) end: the connections are not pooled.
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(fetch(&pool).await, "x");
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn at_most_max_connections_are_opened_and_waiters_are_served_in_turn() {
        let (up, accepted) = upstream("x").await;
        let pool = Upstreams::new(2).pool(&PoolSlot::new(), &up).clone();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move { fetch(&pool).await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "x");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(), 2);
    }

    #[tokio::test]
    async fn a_request_that_finds_every_slot_busy_times_out_as_504() {
        let (up, accepted) = upstream("x").await;
        let pool = Upstreams::new(1).pool(&PoolSlot::new(), &up).clone();
        // The one connection stays busy: its body is never read.
        let held = pool
            .send(
                Duration::from_secs(5),
                "/".into(),
                get(),
                &Counter::default(),
            )
            .await
            .unwrap();
        let e = pool
            .send(
                Duration::from_millis(200),
                "/".into(),
                get(),
                &Counter::default(),
            )
            .await
            .err();
        assert!(matches!(e, Some(ProxyError::UpstreamTimeout)), "{e:?}");
        // Released by reading the body to its end: the next request reuses it.
        let body = held.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"x");
        assert_eq!(fetch(&pool).await, "x");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    async fn futures_join(pool: &Arc<Pool>, n: usize) -> Vec<Response<UpstreamBody>> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for _ in 0..n {
            let pool = pool.clone();
            pending.push(tokio::spawn(async move {
                pool.send(
                    Duration::from_secs(5),
                    "/".into(),
                    get(),
                    &Counter::default(),
                )
                .await
                .unwrap()
            }));
        }
        for p in pending {
            out.push(p.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_is_replaced_without_failing_the_request() {
        // An upstream that answers one request per connection, then closes it.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream::Tcp {
            authority: listener.local_addr().unwrap().to_string(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tokio::io::AsyncWriteExt::write_all(
                    &mut tcp,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                )
                .await;
                // Closed without `connection: close`: the client pools it and finds it dead.
            }
        });
        let pool = Upstreams::new(1024).pool(&PoolSlot::new(), &up).clone();
        for _ in 0..3 {
            assert_eq!(fetch(&pool).await, "ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn refused_is_503_and_silence_is_504_and_garbage_is_502() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream::Tcp {
            authority: closed.local_addr().unwrap().to_string(),
        };
        drop(closed);
        let pool = Upstreams::new(1024).pool(&PoolSlot::new(), &up).clone();
        let e = pool
            .send(
                Duration::from_secs(5),
                "/".into(),
                get(),
                &Counter::default(),
            )
            .await
            .err();
        assert!(
            matches!(e, Some(ProxyError::UpstreamUnavailable(_))),
            "{e:?}"
        );

        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream::Tcp {
            authority: silent.local_addr().unwrap().to_string(),
        };
        let pool = Upstreams::new(1024).pool(&PoolSlot::new(), &up).clone();
        let e = pool
            .send(
                Duration::from_millis(200),
                "/".into(),
                get(),
                &Counter::default(),
            )
            .await
            .err();
        assert!(matches!(e, Some(ProxyError::UpstreamTimeout)), "{e:?}");

        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = silent.accept().await {
                let _ = tcp.read(&mut [0u8; 1024]).await;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, b"NOT HTTP\r\n\r\n").await;
            }
        });
        let e = pool
            .send(
                Duration::from_secs(5),
                "/".into(),
                get(),
                &Counter::default(),
            )
            .await
            .err();
        assert!(
            matches!(e, Some(ProxyError::BadUpstreamResponse(_))),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_target_that_is_not_origin_form_is_a_400() {
        let (up, _) = upstream("x").await;
        let pool = Upstreams::new(1024).pool(&PoolSlot::new(), &up).clone();
        let e = pool
            .send(
                Duration::from_secs(5),
                "/a b".into(),
                get(),
                &Counter::default(),
            )
            .await
            .err();
        assert!(matches!(e, Some(ProxyError::BadPath(_))), "{e:?}");
    }
}

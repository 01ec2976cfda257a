//! The listeners and their accept loops: `run(listeners, runtime, shutdown)`.
//!
//! HTTPS: a permit (`max_connections`) is taken before `accept`, so excess connections wait
//! in the kernel backlog; each connection gets a task that does the TLS handshake against the
//! snapshot current at accept, then serves HTTP/1.1 or HTTP/2 (hyper auto) with
//! [`service::handle`]. A per-connection watchdog enforces `request_header_timeout` (from the
//! first byte of a request head) and `idle_timeout` (no request in flight). On shutdown the
//! listeners close, every connection is asked to finish (HTTP/2 GOAWAY, HTTP/1 close after
//! the in-flight response) and the server waits up to `drain_timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use crate::config::{Listen, ProxySettings};
use crate::http::access_log::AccessLog;
use crate::http::forward::Upstreams;
use crate::http::service::{self, Conn, Shared};
use crate::http::{ConnInfo, redirect};
use crate::runtime::Runtime;
use crate::tls;

/// The bound sockets. Binding is separate from serving so tests can bind port 0 and read
/// the addresses, and so a bind error is reported before anything starts.
pub struct Listeners {
    pub https: TcpListener,
    pub http: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(listen: &Listen) -> io::Result<Self> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        Ok(Self {
            https: bind(listen.https).await?,
            http: match listen.http {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
            admin: match listen.admin {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
        })
    }
}

/// What a running server exposes to the outside (admin, tests).
#[derive(Clone)]
pub struct Handle {
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// False until listeners are bound and certificates loaded; false again while draining.
    pub ready: Arc<AtomicBool>,
}

/// Runs until `shutdown` resolves, then drains. Returns once every connection is done or
/// `drain_timeout` has passed.
pub async fn run(
    listeners: Listeners,
    runtime: Arc<ArcSwap<Runtime>>,
    access_log: Option<AccessLog>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let settings = runtime.load().config.proxy;
    let redirect_port = runtime.load().config.listen.redirect_https_port;
    let handle = Handle {
        runtime: runtime.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let shared = Arc::new(Shared {
        runtime: runtime.clone(),
        upstreams: Upstreams::new(),
        access_log,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let https_port = listeners.https.local_addr()?.port();

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_https(
        listeners.https,
        https_port,
        shared,
        settings,
        stop_rx.clone(),
    ));
    if let Some(l) = listeners.http {
        tasks.spawn(accept_plain(l, redirect_port, stop_rx.clone()));
    }
    if let Some(l) = listeners.admin {
        tasks.spawn(crate::admin::serve(l, handle.clone(), stop_rx.clone()));
    }
    drop(stop_rx);
    handle.ready.store(true, Ordering::SeqCst);
    tracing::info!(https = %https_port, "gatehouse is ready");

    shutdown.await;
    tracing::info!(drain_timeout = ?settings.drain_timeout, "shutting down: draining connections");
    handle.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: `closed()` resolves when the last one ends.
    if tokio::time::timeout(settings.drain_timeout, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = stop_tx.receiver_count(),
            "drain timeout: closing the remaining connections"
        );
    }
    tasks.abort_all();
    Ok(())
}

async fn accept_https(
    listener: TcpListener,
    port: u16,
    shared: Arc<Shared>,
    settings: ProxySettings,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let builder = Arc::new(http_builder(&settings));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_tls(tcp, peer, port, shared, &builder, settings, stop).await;
            drop(permit);
        });
    }
}

fn http_builder(s: &ProxySettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // The watchdog enforces request_header_timeout from the first byte; hyper's own timer
        // would also close idle keep-alive connections.
        .header_read_timeout(None)
        // A request head that does not fit the read buffer gets 431 from hyper.
        .max_buf_size(s.max_request_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .initial_stream_window_size(s.h2_stream_window)
        .initial_connection_window_size(s.h2_connection_window)
        .max_header_list_size(u32::try_from(s.max_request_header_bytes).unwrap_or(u32::MAX));
    b
}

async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    port: u16,
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    settings: ProxySettings,
    mut stop: watch::Receiver<bool>,
) {
    let tls_runtime = shared.runtime.load_full();
    let accepted = tokio::select! {
        r = tls::accept(tcp, &tls_runtime, settings.handshake_timeout) => r,
        _ = stop.changed() => return,
    };
    let accepted = match accepted {
        Ok(a) => a,
        Err(f) => {
            tracing::debug!(%peer, outcome = f.outcome.as_str(), server = ?f.server, detail = %f.detail, "TLS handshake failed");
            return;
        }
    };
    let is_h2 = accepted.stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let info = ConnInfo {
        peer,
        listener_port: port,
        sni: accepted.sni,
        server: accepted.server,
        identity: accepted.identity,
    };
    let conn = Arc::new(Conn::new(info, tls_runtime));
    let activity = Arc::new(Activity::new(!is_h2));
    let io = TokioIo::new(Watched {
        inner: accepted.stream,
        activity: activity.clone(),
    });
    let svc = {
        let activity = activity.clone();
        service_fn(move |req| {
            let guard = activity.request_started();
            let fut = service::handle(req, conn.clone(), shared.clone());
            async move {
                let res = fut.await;
                res.map(|r| r.map(|body| body.on_drop(guard)))
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            res = connection.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            expired = activity.watchdog(settings.request_header_timeout, settings.idle_timeout), if !closing => {
                closing = true;
                match expired {
                    Expired::Head => {
                        tracing::debug!(%peer, "request head not received within request_header_timeout");
                        return;
                    }
                    Expired::Idle => connection.as_mut().graceful_shutdown(),
                }
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn accept_plain(listener: TcpListener, redirect_port: u16, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| redirect::handle(req, redirect_port));
            let mut b = auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = b.serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

// === impl Activity ===

/// Per-connection timing: requests in flight, when the last one ended, and when the bytes
/// of a new request head started to arrive. Milliseconds since the connection started.
pub struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
    /// 0 = no request head in progress.
    head_started_ms: AtomicU64,
    /// HTTP/1 only: HTTP/2 sends control frames on idle connections.
    track_heads: bool,
    changed: Notify,
}

pub enum Expired {
    Head,
    Idle,
}

/// Ends a request's in-flight count when its response body is done.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0
            .last_done_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

impl Activity {
    fn new(track_heads: bool) -> Self {
        Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            track_heads,
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "not set".
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    fn bytes_read(&self) {
        if self.track_heads
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// Resolves when the head timeout or the idle timeout has passed.
    async fn watchdog(&self, head_timeout: Duration, idle_timeout: Duration) -> Expired {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2);
        loop {
            let now = self.now_ms();
            let head = self.head_started_ms.load(Ordering::Relaxed);
            let idle = self.in_flight.load(Ordering::Relaxed) == 0;
            let head_deadline = (head != 0).then(|| head + ms(head_timeout));
            let idle_deadline =
                idle.then(|| self.last_done_ms.load(Ordering::Relaxed).max(1) + ms(idle_timeout));
            if head_deadline.is_some_and(|d| d <= now) {
                return Expired::Head;
            }
            if head == 0 && idle_deadline.is_some_and(|d| d <= now) {
                return Expired::Idle;
            }
            let next = [head_deadline, idle_deadline].into_iter().flatten().min();
            let notified = self.changed.notified();
            match next {
                Some(at) => {
                    let _ = tokio::time::timeout(Duration::from_millis(at - now), notified).await;
                }
                None => notified.await,
            }
        }
    }
}

/// The TLS stream, reporting reads to [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

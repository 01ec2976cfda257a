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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::server::TlsStream;

use crate::config::{Listen, ProxySettings};
use crate::http::access_log::AccessLog;
use crate::http::forward::Upstreams;
use crate::http::head_scan::HeadScan;
use crate::http::service::{self, Conn, Shared};
use crate::http::{ConnInfo, redirect};
use crate::metrics::{HandshakeLabels, ListenerLabels, Metrics};
use crate::proxy_protocol;
use crate::runtime::Runtime;
use crate::tls;
use crate::watchdog::{Activity, Expired, Watched};

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
    pub metrics: Arc<Metrics>,
}

/// Runs until `shutdown` resolves, then drains. Returns once every connection is done or
/// `drain_timeout` has passed.
pub async fn run(
    listeners: Listeners,
    runtime: Arc<ArcSwap<Runtime>>,
    access_log: Option<AccessLog>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let settings = runtime.load().config.proxy;
    metrics.init_series(&runtime.load());
    metrics.set_certs(&runtime.load());
    let handle = Handle {
        runtime: runtime.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        metrics: metrics.clone(),
    };
    let shared = Arc::new(Shared {
        runtime: runtime.clone(),
        upstreams: Upstreams::new(),
        access_log,
        metrics: metrics.clone(),
        unrouted: Arc::new("none".to_owned()),
        unrouted_series: Default::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let https_port = listeners.https.local_addr()?.port();
    let redirect_port = runtime
        .load()
        .config
        .listen
        .redirect_https_port
        .unwrap_or(https_port);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_https(
        listeners.https,
        https_port,
        shared,
        settings,
        stop_rx.clone(),
    ));
    if let Some(l) = listeners.http {
        tasks.spawn(accept_plain(
            l,
            redirect_port,
            metrics.clone(),
            stop_rx.clone(),
        ));
    }
    if let Some(l) = listeners.admin {
        tasks.spawn(crate::admin::serve(l, handle.clone()));
    }
    drop(stop_rx);
    handle.ready.store(true, Ordering::SeqCst);
    tracing::info!(https = %https_port, "gatehouse is ready");

    shutdown.await;
    let drain_timeout = runtime.load().config.proxy.drain_timeout;
    tracing::info!(?drain_timeout, "shutting down: draining connections");
    handle.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: `closed()` resolves when the last one ends.
    if tokio::time::timeout(drain_timeout, stop_tx.closed())
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
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_tls(tcp, peer, port, shared, stop).await;
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

/// One HTTPS connection: the handshake, then HTTP until the connection ends, idles out or the
/// server drains. The handshake's state and the HTTP connection are boxed, so the task holds
/// only what the current phase needs (one idle connection's memory is what S4 measures).
async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    port: u16,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let tls_runtime = shared.runtime.load_full();
    // Connection settings come from the snapshot current at accept, so a reload applies them
    // to new connections (max_connections and listeners need a restart).
    let settings = tls_runtime.config.proxy;
    let _active = Active::new(&shared.metrics, "https");
    let handshake = Box::pin(handshake(tcp, peer, port, &tls_runtime, &shared));
    let done = tokio::select! {
        done = handshake => done,
        _ = stop.changed() => return,
    };
    let Some(done) = done else { return };
    let peer = done.info.peer;
    let is_h2 = done.stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let activity = Activity::new(!is_h2);
    let builder = http_builder(&settings);
    let mut connection = http_connection(&builder, done, tls_runtime, &shared, &activity);
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

/// A connection whose handshake succeeded.
struct Handshaken {
    stream: TlsStream<TcpStream>,
    info: ConnInfo,
}

/// The PROXY protocol header (when configured) and the TLS handshake, within
/// handshake_timeout together; every outcome is counted.
async fn handshake(
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    port: u16,
    tls_runtime: &Runtime,
    shared: &Shared,
) -> Option<Box<Handshaken>> {
    let settings = &tls_runtime.config.proxy;
    let server_label = |index: Option<usize>| match index {
        Some(i) => tls_runtime.servers[i].label.clone(),
        None => shared.unrouted.clone(),
    };
    let count = |server, outcome: tls::HandshakeOutcome| {
        shared
            .metrics
            .handshakes
            .get_or_create(&HandshakeLabels {
                server,
                result: outcome.as_str(),
            })
            .inc();
    };
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    if settings.proxy_protocol {
        match tokio::time::timeout_at(deadline, proxy_protocol::read_header(&mut tcp)).await {
            Ok(Ok(header)) => peer = header.source.unwrap_or(peer),
            Ok(Err(e)) => {
                count(server_label(None), tls::HandshakeOutcome::Error);
                tracing::debug!(%peer, error = %e, "no valid PROXY protocol header");
                return None;
            }
            Err(_) => {
                count(server_label(None), tls::HandshakeOutcome::Timeout);
                tracing::debug!(%peer, "no PROXY protocol header within handshake_timeout");
                return None;
            }
        }
    }
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    match tls::accept(tcp, tls_runtime, remaining).await {
        Ok(a) => {
            count(server_label(Some(a.server)), tls::HandshakeOutcome::Ok);
            let info = ConnInfo {
                peer,
                listener_port: port,
                sni: a.sni,
                server: a.server,
                identity: a.identity,
            };
            Some(Box::new(Handshaken {
                stream: a.stream,
                info,
            }))
        }
        Err(f) => {
            count(server_label(f.server), f.outcome);
            tracing::debug!(%peer, outcome = f.outcome.as_str(), server = ?f.server, detail = %f.detail, "TLS handshake failed");
            None
        }
    }
}

/// The HTTP side of a handshaken connection, on the heap. Built outside any async fn, so
/// the values moved into it leave no copies in the connection task's state.
fn http_connection<'b>(
    builder: &'b auto::Builder<TokioExecutor>,
    done: Box<Handshaken>,
    tls_runtime: Arc<Runtime>,
    shared: &Arc<Shared>,
    activity: &Arc<Activity>,
) -> Pin<Box<impl GracefulConnection<Error = Box<dyn std::error::Error + Send + Sync>> + 'b>> {
    let Handshaken { stream, info } = *done;
    let conn = Arc::new(Conn::new(info, tls_runtime));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        scan: HeadScan::default(),
    });
    let svc = {
        let activity = activity.clone();
        let shared = shared.clone();
        service_fn(move |req| {
            let (guard, ambiguous_length) = activity.request_started();
            let fut = service::handle(req, conn.clone(), shared.clone(), ambiguous_length);
            async move {
                let res = fut.await;
                res.map(|r| r.map(|body| body.on_drop(guard)))
            }
        })
    };
    Box::pin(builder.serve_connection_with_upgrades(io, svc))
}

async fn accept_plain(
    listener: TcpListener,
    redirect_port: u16,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
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
        let active = Active::new(&metrics, "http");
        tokio::spawn(async move {
            let _active = active;
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

/// Counts one open connection in `gatehouse_connections_active` while it lives.
struct Active(prometheus_client::metrics::gauge::Gauge);

impl Active {
    fn new(metrics: &Metrics, listener: &'static str) -> Self {
        let gauge = metrics
            .connections_active
            .get_or_create_owned(&ListenerLabels { listener });
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

//! The listeners and their accept loops: `run(listeners, runtime, shutdown)`.
//!
//! Every listener is bounded in connections and in time (SPEC "Edge limits"); each cap sits
//! next to its accept loop, taken as a permit *before* `accept`, so excess connections wait
//! in the kernel backlog and never hold a descriptor. The caps are fitted into the process's
//! open-file limit first ([`crate::conn::limits::plan`]).
//! - [`https`]: `max_connections`, `max_connections_per_ip`, the handshake, then HTTP/1.1 or
//!   HTTP/2 as ALPN chose, under the connection watchdog ([`crate::conn::watchdog`]).
//! - [`plain`]: `max_plaintext_connections`, one request head within `request_header_timeout`
//!   of accept, one `301`, closed.
//! - admin ([`crate::server::admin`]): 64 connections, heads within 10 s.
//!
//! On shutdown the listeners close, every connection is asked to finish (HTTP/2 GOAWAY,
//! HTTP/1 close after the in-flight response, tunnels at the end of the drain) and the server
//! waits up to `drain_timeout`.

pub(crate) mod admin;
mod https;

mod plain;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::access_log::handshake::RefusedHandshakes;
use crate::config::Listen;
use crate::conn::limits::{self, PerIp};
use crate::http::connection::Shared;
use crate::metrics::Metrics;
use crate::runtime::Published;
use crate::upstream::Upstreams;

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
pub(crate) struct Handle {
    pub runtime: Arc<Published>,
    /// False until listeners are bound and certificates loaded; false again while draining.
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

/// Runs until `shutdown` resolves, then drains. Returns once every connection is done or
/// `drain_timeout` has passed.
pub async fn run(
    listeners: Listeners,
    runtime: Arc<Published>,
    access_log: Option<AccessLog>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let rt = runtime.load_full();
    let settings = rt.config.proxy.clone();
    rt.init_metrics(&metrics);
    let nofile = limits::raise_nofile_limit();
    let (caps, note) = limits::plan(
        nofile,
        settings.max_connections,
        settings.max_plaintext_connections,
        listeners.http.is_some(),
        listeners.admin.is_some(),
    );
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    let handle = Handle {
        runtime: runtime.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        metrics: metrics.clone(),
    };
    let shared = Arc::new(Shared {
        runtime: runtime.clone(),
        upstreams: Upstreams::new(settings.upstream_max_connections),
        refused: RefusedHandshakes::new(access_log.clone()),
        access_log,
        metrics: metrics.clone(),
        unrouted: Arc::new("none".to_owned()),
        unrouted_series: Default::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let https_port = listeners.https.local_addr()?.port();
    let redirect_port = rt.config.listen.redirect_https_port.unwrap_or(https_port);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(https::accept(
        listeners.https,
        https_port,
        shared,
        PerIp::new(),
        caps.https,
        stop_rx.clone(),
    ));
    if let Some(l) = listeners.http {
        tasks.spawn(plain::accept(
            l,
            plain::Settings {
                redirect_port,
                cap: caps.plaintext,
                head_timeout: settings.request_header_timeout,
                max_head_bytes: settings.max_request_header_bytes,
            },
            metrics.clone(),
            stop_rx.clone(),
        ));
    }
    if let Some(l) = listeners.admin {
        tasks.spawn(crate::server::admin::serve(l, handle.clone(), caps.admin));
    }
    drop(stop_rx);
    handle.ready.store(true, Ordering::SeqCst);
    tracing::info!(https = %https_port, "gatehouse is ready");

    shutdown.await;
    drain(&runtime, &handle, stop_tx).await;
    tasks.abort_all();
    Ok(())
}

/// Not ready any more, every connection told to finish, and at most `drain_timeout` to do so.
async fn drain(runtime: &Published, handle: &Handle, stop_tx: watch::Sender<bool>) {
    let drain_timeout = runtime.load().config.proxy.drain_timeout;
    tracing::info!(?drain_timeout, "shutting down: draining connections");
    handle.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    // Every connection (and tunnel) holds a receiver: `closed()` resolves when the last ends.
    if tokio::time::timeout(drain_timeout, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = stop_tx.receiver_count(),
            "drain timeout: closing the remaining connections"
        );
    }
}

/// Logs an accept error at most once a second (a flood of `EMFILE` must not flood the log),
/// then backs off briefly instead of spinning.
pub(crate) async fn accept_failed(
    listener: &'static str,
    e: &io::Error,
    last_logged: &mut Option<tokio::time::Instant>,
) {
    let now = tokio::time::Instant::now();
    if last_logged.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1)) {
        tracing::warn!(listener, error = %e, "accept failed");
        *last_logged = Some(now);
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

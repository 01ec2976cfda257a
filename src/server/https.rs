//! The HTTPS listener: accept under `max_connections` and `max_connections_per_ip`, the PROXY
//! header (when configured) and the TLS handshake within `handshake_timeout`, then HTTP as
//! ALPN chose — HTTP/2 after `h2`, HTTP/1.x after `http/1.1` or no ALPN, and nothing else
//! (bytes of the other protocol close the connection) — under the connection watchdog.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::config::ProxySettings;
use crate::conn::handshake;
use crate::conn::head_scan::HeadScan;
use crate::conn::limits::{Lease, PerIp};
use crate::conn::proxy_protocol;
use crate::conn::watchdog::{Activity, Expired, StreamExecutor, Timeouts, Watched};
use crate::http::connection::{Conn, Shared};
use crate::http::service;
use crate::metrics::{HandshakeLabels, RejectedLabels};
use crate::runtime::{self, Refused, Runtime};
use crate::tls;

/// How long a client that was sent a GOAWAY (idle or drain) may keep the connection once no
/// request is in flight (SPEC: 10 s), so one that never answers hyper's PING cannot hold it.
const GOAWAY_GRACE: Duration = Duration::from_secs(10);

pub(super) async fn accept(
    listener: TcpListener,
    port: u16,
    shared: Arc<Shared>,
    per_ip: Arc<PerIp>,
    cap: usize,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(cap));
    let mut last_error = None;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    super::accept_failed("https", &e, &mut last_error).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let rt = shared.runtime.load_full();
        let mut lease = Lease::new(permit, shared.metrics.active("https"), stop.clone());
        // Without PROXY protocol the socket's address is the client's: count it before
        // spawning anything. Otherwise the header names the client (see `handshake`).
        if !rt.config.proxy.proxy_protocol && !admit(&mut lease, peer, &rt, &per_ip, &shared) {
            continue;
        }
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve(
            tcp,
            peer,
            port,
            shared.clone(),
            per_ip.clone(),
            rt,
            lease,
        ));
    }
}

/// `max_connections_per_ip`: counts the connection against `peer`'s address, or counts a
/// rejection and returns false (the caller closes the connection).
fn admit(
    lease: &mut Lease,
    peer: SocketAddr,
    rt: &Runtime,
    per_ip: &Arc<PerIp>,
    shared: &Shared,
) -> bool {
    let limit = rt.config.proxy.max_connections_per_ip;
    if limit == 0 {
        return true;
    }
    match per_ip.admit(peer.ip(), limit) {
        Some(slot) => {
            lease.set_ip(slot);
            true
        }
        None => {
            shared
                .metrics
                .connections_rejected
                .get_or_create(&RejectedLabels {
                    listener: "https",
                    reason: "per_ip_limit",
                })
                .inc();
            tracing::debug!(%peer, limit, "max_connections_per_ip reached: connection closed");
            false
        }
    }
}

/// One HTTPS connection: the handshake, then HTTP until the connection ends, idles out or the
/// server drains. The handshake's state and the HTTP connection are boxed, so the task holds
/// only what the current phase needs (one idle connection's memory is what S4 measures).
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    port: u16,
    shared: Arc<Shared>,
    per_ip: Arc<PerIp>,
    tls_runtime: Arc<Runtime>,
    mut lease: Lease,
) {
    let mut stop = lease.stop.clone();
    let handshake = Box::pin(handshake(
        tcp,
        peer,
        port,
        &tls_runtime,
        &shared,
        &per_ip,
        &mut lease,
    ));
    let done = tokio::select! {
        done = handshake => done,
        _ = stop.changed() => return,
    };
    let Some(done) = done else { return };
    // Connection settings come from the snapshot current at accept, so a reload applies them
    // to new connections (the listeners' caps need a restart).
    let settings = &tls_runtime.config.proxy;
    let timeouts = Timeouts {
        head: settings.request_header_timeout,
        idle: settings.idle_timeout,
        stream_idle: settings.stream_idle_timeout,
    };
    let h2 = done.stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let activity = Activity::new(!h2);
    let (connection, conn) = http_connection(done, tls_runtime, &shared, &activity, lease, h2);
    drive(connection, activity, timeouts, stop, conn, shared).await;
}

/// After a revocation or expiry: how long the client has once no request is in flight.
const REVOKED_GRACE: Duration = Duration::from_secs(1);

/// Polls the HTTP connection under its watchdog until it ends: a stalled head or HTTP/1 body
/// closes it at once; idleness or the drain asks it to finish (GOAWAY for HTTP/2), and a
/// client that has not closed [`GOAWAY_GRACE`] after its last request is closed. After each
/// reload the client certificate is checked against the new snapshot, and at its `notAfter`
/// the connection ends: a client no longer accepted is asked to finish and is closed
/// [`REVOKED_GRACE`] after its last request (SPEC: within 2 s). One timer
/// ([`Activity::deadline`]) serves every deadline: this future is what an idle connection's
/// task holds.
async fn drive(
    mut connection: Pin<Box<dyn Serving>>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) {
    let peer = &conn.info.peer;
    let mut swaps = shared.runtime.subscribe();
    let expires = runtime::expiry(&conn.info);
    let mut closing: Option<(Instant, Duration)> = None;
    let refuse = |refused: Refused| {
        refused.log(*peer, "closing its connection");
        shared.metrics.closed(refused.reason());
        REVOKED_GRACE
    };
    loop {
        let close = tokio::select! {
            res = connection.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            expired = activity.deadline(&timeouts, expires, closing) => match expired {
                Expired::Head => {
                    tracing::debug!(%peer, "request head not received within request_header_timeout");
                    return;
                }
                Expired::StreamIdle => {
                    tracing::debug!(%peer, "response body idle for stream_idle_timeout: connection closed");
                    return;
                }
                Expired::Grace => {
                    tracing::debug!(%peer, "client kept the connection after being asked to close: closed");
                    return;
                }
                Expired::Idle => GOAWAY_GRACE,
                Expired::Certificate => refuse(Refused::Expired),
            },
            _ = stop.changed(), if closing.is_none() => GOAWAY_GRACE,
            outcome = shared.runtime.until_revoked(&conn.info, &mut swaps), if closing.is_none() => {
                refuse(Refused::Revoked(outcome))
            }
        };
        connection.as_mut().shutdown();
        closing = Some((Instant::now(), close));
    }
}

/// The PROXY protocol header (when configured) and the TLS handshake, within
/// handshake_timeout together; every outcome is counted.
async fn handshake(
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    port: u16,
    tls_runtime: &Runtime,
    shared: &Shared,
    per_ip: &Arc<PerIp>,
    lease: &mut Lease,
) -> Option<Box<handshake::Accepted<TcpStream>>> {
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
    let refuse = |peer: SocketAddr, f: handshake::Failure| {
        count(server_label(f.server), f.outcome);
        tracing::debug!(%peer, outcome = f.outcome.as_str(), server = ?f.server, detail = %f.detail, "TLS handshake failed");
        shared.refused.refused(peer.ip(), &f);
        None
    };
    let deadline = Instant::now() + settings.handshake_timeout;
    if settings.proxy_protocol {
        match tokio::time::timeout_at(deadline, proxy_protocol::read_header(&mut tcp)).await {
            Ok(Ok(header)) => peer = header.source.unwrap_or(peer),
            Ok(Err(e)) => {
                let detail = format!("no valid PROXY protocol header: {e}");
                return refuse(
                    peer,
                    handshake::Failure::early(tls::HandshakeOutcome::Error, detail),
                );
            }
            Err(_) => {
                let detail = "no PROXY protocol header within handshake_timeout".to_owned();
                return refuse(
                    peer,
                    handshake::Failure::early(tls::HandshakeOutcome::Timeout, detail),
                );
            }
        }
        if !admit(lease, peer, tls_runtime, per_ip, shared) {
            return None;
        }
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    match handshake::accept(tcp, (peer, port), tls_runtime, remaining).await {
        Ok(a) => {
            count(server_label(Some(a.info.server)), tls::HandshakeOutcome::Ok);
            Some(Box::new(a))
        }
        Err(f) => refuse(peer, f),
    }
}

/// A served HTTP connection, whichever protocol ALPN chose.
trait Serving: Future<Output = hyper::Result<()>> + Send {
    /// Finish in-flight requests and close (HTTP/2: GOAWAY).
    fn shutdown(self: Pin<&mut Self>);
}

impl<I, B, S> Serving for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, B, S> Serving for http2::Connection<I, S, StreamExecutor>
where
    S: HttpService<Incoming, ResBody = B> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The HTTP side of a handshaken connection, on the heap. Built outside any async fn, so
/// the values moved into it leave no copies in the connection task's state.
fn http_connection(
    done: Box<handshake::Accepted<TcpStream>>,
    tls_runtime: Arc<Runtime>,
    shared: &Arc<Shared>,
    activity: &Arc<Activity>,
    lease: Lease,
    h2: bool,
) -> (Pin<Box<dyn Serving>>, Arc<Conn>) {
    let handshake::Accepted { stream, info } = *done;
    let settings = tls_runtime.config.proxy.clone();
    let conn = Arc::new(Conn::new(info, tls_runtime, lease));
    let for_service = conn.clone();
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
            // Boxed: the request's state is ~8 KiB, and hyper moves an HTTP/2 stream's future
            // (which holds this one) into a task of its own; a box moves as a pointer.
            let fut = Box::pin(service::handle(
                req,
                for_service.clone(),
                shared.clone(),
                ambiguous_length,
            ));
            async move {
                let res = fut.await;
                res.map(|r| r.map(|body| body.with_guard(guard)))
            }
        })
    };
    let connection: Pin<Box<dyn Serving>> = match h2 {
        true => Box::pin(h2_builder(&settings).serve_connection(io, svc)),
        false => Box::pin(
            h1_builder(&settings)
                .serve_connection(io, svc)
                .with_upgrades(),
        ),
    };
    (connection, conn)
}

fn h1_builder(s: &ProxySettings) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // The watchdog enforces request_header_timeout from the first byte; hyper's own timer
        // would also close idle keep-alive connections.
        .header_read_timeout(None)
        // A request head that does not fit the read buffer gets 431 from hyper.
        .max_buf_size(s.max_request_header_bytes.max(8192));
    b
}

fn h2_builder(s: &ProxySettings) -> http2::Builder<StreamExecutor> {
    let mut b = http2::Builder::new(StreamExecutor {
        stream_idle: s.stream_idle_timeout,
    });
    b.timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .initial_stream_window_size(s.h2_stream_window)
        .initial_connection_window_size(s.h2_connection_window)
        .max_header_list_size(u32::try_from(s.max_request_header_bytes).unwrap_or(u32::MAX));
    b
}

//! The load loops. Each is closed: a worker sends its next request when the previous answer
//! has been read whole. Every step (connect, handshake, request and body) is bounded by
//! [`STEP_TIMEOUT`], and no loop starts work after the window closes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;

use super::STEP_TIMEOUT;
use super::plan::Plan;
use super::tally::{ErrorKind, Failure, Tally};

/// After a failed connect or handshake, so a dead target is not hammered in a busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Keep-alive HTTP/1.1: one connection, one request in flight; reconnects when the server
/// closes it.
pub(crate) async fn http1(plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::new();
    while plan.window.open() {
        let Some((tls, handshake)) = open(&plan, &mut tally).await else {
            continue;
        };
        let Ok((mut send, conn)) = http1::handshake(TokioIo::new(tls)).await else {
            continue;
        };
        let driver = tokio::spawn(conn);
        while plan.window.open() {
            // A connection the server closed between requests is not a failed request.
            if send.ready().await.is_err() {
                break;
            }
            let began = Instant::now();
            match exchange(send.send_request(plan.request.http1(false))).await {
                Ok((status, bytes)) => {
                    handshake.accepted(&plan.window, &mut tally);
                    tally.response(&plan.window, began, status, bytes);
                }
                Err(failure) => {
                    tally.failure(&plan.window, failure);
                    break;
                }
            }
        }
        drop(send);
        driver.abort();
    }
    tally
}

/// HTTP/2: one connection, `streams` loops on it, each with one request in flight.
pub(crate) async fn http2(plan: Arc<Plan>, streams: u32) -> Tally {
    let mut tally = Tally::new();
    while plan.window.open() {
        let Some((tls, handshake)) = open(&plan, &mut tally).await else {
            continue;
        };
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            let failure = Failure::new(ErrorKind::Protocol, "the server did not choose h2 (ALPN)");
            tally.failure(&plan.window, failure);
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        }
        let (send, driver) = match http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await {
            Ok((send, conn)) => (send, tokio::spawn(conn)),
            Err(e) => {
                tally.failure(&plan.window, Failure::from_error(&e));
                continue;
            }
        };
        let handshake = Arc::new(handshake);
        let mut loops = JoinSet::new();
        for _ in 0..streams {
            loops.spawn(stream_loop(plan.clone(), send.clone(), handshake.clone()));
        }
        // The connection ends when the last stream loop drops its sender.
        drop(send);
        while let Some(joined) = loops.join_next().await {
            if let Ok(t) = joined {
                tally.merge(t);
            }
        }
        driver.abort();
    }
    tally
}

async fn stream_loop(
    plan: Arc<Plan>,
    mut send: http2::SendRequest<Full<Bytes>>,
    handshake: Arc<Handshake>,
) -> Tally {
    let mut tally = Tally::new();
    while plan.window.open() {
        if send.ready().await.is_err() {
            break;
        }
        let began = Instant::now();
        match exchange(send.send_request(plan.request.http2())).await {
            Ok((status, bytes)) => {
                handshake.accepted(&plan.window, &mut tally);
                tally.response(&plan.window, began, status, bytes);
            }
            Err(failure) => {
                tally.failure(&plan.window, failure);
                // A reset stream leaves the connection usable; a dead connection does not.
                if send.is_closed() {
                    break;
                }
            }
        }
    }
    tally
}

/// A new TCP and TLS connection for each request (`connection: close`); the latency
/// counted runs from the connect to the last byte of the body.
pub(crate) async fn new_connection(plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::new();
    while plan.window.open() {
        let began = Instant::now();
        let Some((tls, handshake)) = open(&plan, &mut tally).await else {
            continue;
        };
        let Ok((mut send, conn)) = http1::handshake(TokioIo::new(tls)).await else {
            continue;
        };
        let driver = tokio::spawn(conn);
        match exchange(send.send_request(plan.request.http1(true))).await {
            Ok((status, bytes)) => {
                handshake.accepted(&plan.window, &mut tally);
                tally.response(&plan.window, began, status, bytes);
            }
            Err(failure) => tally.failure(&plan.window, failure),
        }
        drop(send);
        driver.abort();
    }
    tally
}

/// A completed client-side handshake, counted once the server has answered on the
/// connection: in TLS 1.3 a server that refuses the client certificate says so only after
/// the client has finished its side.
struct Handshake {
    resumed: bool,
    counted: AtomicBool,
}

impl Handshake {
    fn accepted(&self, window: &super::plan::Window, tally: &mut Tally) {
        if !self.counted.load(Ordering::Relaxed) && !self.counted.swap(true, Ordering::Relaxed) {
            tally.handshake(window, self.resumed);
        }
    }
}

/// Connects and completes the client side of the TLS handshake, or counts a failure and
/// pauses a little.
async fn open(plan: &Plan, tally: &mut Tally) -> Option<(TlsStream<TcpStream>, Handshake)> {
    match connect(plan).await {
        Ok(tls) => {
            let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            let handshake = Handshake {
                resumed,
                counted: AtomicBool::new(false),
            };
            Some((tls, handshake))
        }
        Err(failure) => {
            tally.failure(&plan.window, failure);
            tokio::time::sleep(RETRY_PAUSE).await;
            None
        }
    }
}

async fn connect(plan: &Plan) -> Result<TlsStream<TcpStream>, Failure> {
    let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(plan.addr))
        .await
        .map_err(|_| Failure::new(ErrorKind::Timeout, "connect timed out"))?
        .map_err(|e| Failure::new(ErrorKind::Connect, format!("{}: {e}", plan.addr)))?;
    // Small requests: do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    tokio::time::timeout(
        STEP_TIMEOUT,
        plan.connector.connect(plan.server_name.clone(), tcp),
    )
    .await
    .map_err(|_| Failure::new(ErrorKind::Timeout, "TLS handshake timed out"))?
    .map_err(|e| Failure::from_error(&e))
}

/// Sends one request and reads the whole answer: its status and body size.
async fn exchange(
    sent: impl Future<Output = Result<Response<Incoming>, hyper::Error>>,
) -> Result<(u16, u64), Failure> {
    let answer = async {
        let response = sent.await.map_err(|e| Failure::from_error(&e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::from_error(&e))?;
            if let Some(data) = frame.data_ref() {
                bytes += data.len() as u64;
            }
        }
        Ok((status, bytes))
    };
    tokio::time::timeout(STEP_TIMEOUT, answer)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                ErrorKind::Timeout,
                "no complete answer in 10 s",
            ))
        })
}

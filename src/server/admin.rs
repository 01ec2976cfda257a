//! The admin listener: `/metrics` (Prometheus text), `/healthz` (200 while the process runs), `/readyz` (200 once serving,
//! 503 while draining) and `/certs` (JSON, one object per loaded certificate).
//!
//! Bounded like every listener (SPEC "Edge limits"): at most [`crate::conn::limits::ADMIN_CONNECTIONS`]
//! connections (the rest wait in the backlog), HTTP/1.1 only, a request head within
//! [`HEAD_TIMEOUT`] of accept or of the previous response (hyper's header timer, which also
//! closes idle keep-alive connections then), and a response that cannot be written for
//! [`WRITE_TIMEOUT`] closes the connection.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::runtime::Runtime;
use crate::server::Handle;

/// A request head must arrive within this of accept or of the previous response.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A response write that makes no progress for this long closes the connection.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoints until aborted. It takes no part in the drain (the drain waits
/// for connections only): it stays up while draining, so `/readyz` can say 503, and is
/// aborted when the server returns.
pub(crate) async fn serve(listener: TcpListener, handle: Handle, cap: usize) {
    let limit = Arc::new(Semaphore::new(cap));
    let mut last_error = None;
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                crate::server::accept_failed("admin", &e, &mut last_error).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(respond(&req, &handle)) }
            });
            let io = WriteDeadline {
                io: tcp,
                timer: None,
            };
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(io), svc)
                .await;
        });
    }
}

/// A socket whose writes fail once one has been blocked for [`WRITE_TIMEOUT`]: a client that
/// asks and never reads cannot hold a connection. The timer exists only while a write waits.
struct WriteDeadline<IO> {
    io: IO,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<IO: AsyncWrite + Unpin> WriteDeadline<IO> {
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.timer = None;
            return polled;
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "admin client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.guard(cx, polled)
    }
}

fn respond<B>(req: &Request<B>, handle: &Handle) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if handle.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let mut res = Response::new(Full::new(Bytes::from(handle.metrics.encode())));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            res
        }
        "/certs" => {
            let body =
                serde_json::to_vec_pretty(&certs(&handle.runtime.load())).unwrap_or_default();
            let mut res = Response::new(Full::new(Bytes::from(body)));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /certs\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

#[derive(Serialize)]
struct CertEntry<'a> {
    server: &'a str,
    kind: &'static str,
    subject: &'a str,
    sans: &'a [String],
    serial: &'a str,
    not_before: String,
    not_after: String,
    days_left: i64,
}

fn certs(rt: &Runtime) -> Vec<CertEntry<'_>> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let rfc3339 = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    rt.servers
        .iter()
        .flat_map(|s| {
            s.certs.iter().map(move |(kind, c)| CertEntry {
                server: s.config.name(),
                kind: kind.as_str(),
                subject: &c.subject,
                sans: &c.sans,
                serial: &c.serial,
                not_before: rfc3339(c.not_before),
                not_after: rfc3339(c.not_after),
                days_left: c.days_left(now),
            })
        })
        .collect()
}

//! The admin listener: `/metrics` (Prometheus text), `/healthz` (200 while the process runs), `/readyz` (200 once serving,
//! 503 while draining) and `/certs` (JSON, one object per loaded certificate).

use std::convert::Infallible;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::runtime::Runtime;
use crate::server::Handle;

/// Serves the admin endpoints until aborted. It takes no part in the drain (the drain waits
/// for connections only): it stays up while draining, so `/readyz` can say 503, and is
/// aborted when the server returns.
pub async fn serve(listener: TcpListener, handle: Handle) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(respond(&req, &handle)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
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

//! `gatehouse echo`: a small httpbin-like upstream for demos and tests.
//! - `/status/{code}`: that status (418 with httpbin's teapot)
//! - `/headers`: `{"headers": {...}}` of the request
//! - `/anything[/...]`: method, path, query, headers, body length and SHA-256 as JSON
//! - `/bytes/{n}`: n bytes of a fixed pattern (`i % 251`), streamed
//! - `/delay/{seconds}`: waits, then answers like `/anything`
//! - `/echo`: streams the request body back
//! - `/upgrade`: answers `101` and echoes raw bytes on the upgraded connection
//!
//! Repeated headers are joined with `,` in the JSON.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

type EchoBody = Either<Full<Bytes>, Either<Incoming, StreamBody<PatternStream>>>;

/// Serves forever on `listener`.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(serve_connection(tcp));
    }
}

/// Serves one accepted connection (HTTP/1.1 or HTTP/2 prior knowledge) until it closes.
pub async fn serve_connection(tcp: tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    let svc = service_fn(handle);
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
        .await;
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or_default();
    let rest = segments.next().unwrap_or_default();
    let res = match first {
        "status" => match rest
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(StatusCode::IM_A_TEAPOT) => text(StatusCode::IM_A_TEAPOT, TEAPOT),
            Some(code) => text(code, ""),
            None => text(StatusCode::BAD_REQUEST, "bad status code\n"),
        },
        "headers" => json_response(&json!({ "headers": header_map(&req) })),
        "anything" => anything(req).await,
        "delay" => match rest.parse::<f64>() {
            Ok(secs) if (0.0..=60.0).contains(&secs) => {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                anything(req).await
            }
            _ => text(StatusCode::BAD_REQUEST, "delay takes 0 to 60 seconds\n"),
        },
        "bytes" => match rest.parse::<u64>() {
            Ok(n) => {
                let mut res = Response::new(Either::Right(Either::Right(StreamBody::new(
                    PatternStream { sent: 0, total: n },
                ))));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                res.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                res
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "bytes takes a count\n"),
        },
        "echo" => Response::new(Either::Right(Either::Left(req.into_body()))),
        "upgrade" => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut res = text(StatusCode::SWITCHING_PROTOCOLS, "");
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            let proto = req
                .headers()
                .get(header::UPGRADE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("echo"));
            res.headers_mut().insert(header::UPGRADE, proto);
            res
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(res)
}

const TEAPOT: &str = "\n    -=[ teapot ]=-\n\n       _...._\n     .'  _ _ `.\n    | .\"` ^ `\". _,\n    \\_;`\"---\"`|//\n      |       ;/\n      \\_     _/\n        `\"\"\"`\n";

async fn anything(req: Request<Incoming>) -> Response<EchoBody> {
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers = header_map(&req);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(data) = f.data_ref() {
                    len += data.len() as u64;
                    hasher.update(data);
                }
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    if e.is_incomplete_message() {
                        "incomplete body\n"
                    } else {
                        "bad body\n"
                    },
                );
            }
        }
    }
    json_response(&json!({
        "method": method,
        "version": version,
        "path": path,
        "query": query,
        "headers": headers,
        "body_bytes": len,
        "body_sha256": crate::identity::hex(&hasher.finalize()),
    }))
}

fn header_map<B>(req: &Request<B>) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in req.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|prev| {
                prev.push(',');
                prev.push_str(&v);
            })
            .or_insert(v);
    }
    map
}

fn text(status: StatusCode, body: &'static str) -> Response<EchoBody> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

fn json_response(value: &serde_json::Value) -> Response<EchoBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut res = Response::new(Either::Left(Full::new(Bytes::from(body))));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The byte at offset `i` of `/bytes/{n}`: tests check bodies against it.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Streams `/bytes/{n}` in 64 KiB frames.
pub(crate) struct PatternStream {
    sent: u64,
    total: u64,
}

impl futures_core::Stream for PatternStream {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.sent >= self.total {
            return std::task::Poll::Ready(None);
        }
        let n = (self.total - self.sent).min(64 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern_byte).collect();
        self.sent += n;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

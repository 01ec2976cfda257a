//! Trailers both ways through an h2c route: a client's request trailers reach the HTTP/2
//! upstream, and the upstream's response trailers reach the client, unchanged (gRPC's
//! `grpc-status` travels this way; the gRPC tests cover the response side with a real gRPC
//! stack, this one the request side, which gRPC clients rarely use).

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An HTTP/2 (prior knowledge) upstream that answers with the request's body length, and
/// trailers naming the request's `x-checksum` trailer and its HTTP version.
async fn h2c_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let version = format!("{:?}", req.version());
                let collected = req.into_body().collect().await.unwrap();
                let checksum = collected
                    .trailers()
                    .and_then(|t| t.get("x-checksum").cloned())
                    .unwrap_or(HeaderValue::from_static("none"));
                let len = collected.to_bytes().len();
                let mut trailers = HeaderMap::new();
                trailers.insert("x-seen-checksum", checksum);
                trailers.insert("x-seen-version", HeaderValue::from_str(&version).unwrap());
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                let frames = vec![
                    Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{len} bytes")))),
                    Ok(Frame::trailers(trailers)),
                ];
                Ok::<_, Infallible>(Response::new(StreamBody::new(ready_stream(frames))))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    addr
}

/// A stream of ready items.
fn ready_stream<T>(items: Vec<T>) -> ReceiverStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(items.len().max(1));
    for item in items {
        tx.try_send(item).unwrap();
    }
    ReceiverStream(rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_trailers_cross_an_h2c_route() {
    let upstream = h2c_upstream().await;
    let (pki, client, _) = test_com().await;
    let cfg = config(
        &pki,
        &["test.com"],
        upstream,
        "",
        "upstream_protocol = \"h2c\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client)).h2();
    let tls = connect(proxy.https, "test.com", &opts).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc123"));
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::data(Bytes::from_static(b" world"))),
        Ok(Frame::trailers(trailers)),
    ];
    let req = Request::post("https://test.com/svc.Echo/Call")
        .header("content-type", "application/grpc")
        .body(StreamBody::new(ready_stream(frames)))
        .unwrap();
    let res = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let collected = tokio::time::timeout(STEP, res.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    let got = collected.trailers().cloned().expect("response trailers");
    assert_eq!(collected.to_bytes(), "11 bytes");
    assert_eq!(
        got["x-seen-checksum"], "abc123",
        "the request trailer went up"
    );
    assert_eq!(got["x-seen-version"], "HTTP/2.0");
    assert_eq!(got["grpc-status"], "0", "the response trailer came down");
}

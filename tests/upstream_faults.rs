//! Upstream faults (SPEC "Malformed requests", "Upstream keep-alive"): each fault is blamed
//! on the side that caused it. A malformed or stalled request body never completes upstream;
//! an upstream closing its keep-alive connections costs no failed requests, an idempotent
//! request is retried once and a POST with a body is not; `Connection: close` and keep-alive
//! timeouts are honoured; a response keeps its framing after a body error.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::upstream::{Script, scripted_upstream};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_malformed_chunk_is_the_clients_fault_and_never_completes_upstream() {
    let (up, seen) = scripted_upstream(Script::ReadBody).await;
    let (proxy, opts, _pki) = proxy_to(up, "").await;
    let res = raw_h1(
        &proxy,
        &opts,
        b"POST /upload HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    assert!(
        res.contains("malformed or incomplete request body"),
        "{res}"
    );
    seen.closed().await;
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "the head was forwarded"
    );
    assert_eq!(
        seen.complete_chunked.load(Ordering::SeqCst),
        0,
        "the upstream got a complete request"
    );
    proxy
        .expect_metric("gatehouse_requests_total{route=\"0\",code=\"400\"}", 1.0)
        .await;
    assert!(
        !proxy.metrics.encode().contains("code=\"502\""),
        "counted as an upstream fault"
    );
}

#[tokio::test]
async fn an_upstream_closing_after_every_response_costs_no_failed_requests() {
    let (up, seen) = scripted_upstream(Script::CloseAfterEach).await;
    let (proxy, opts, _pki) = proxy_to(up, "").await;
    let tls = connect(proxy.https, "test.com", &opts.clone().h1())
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1000 {
        send.ready().await.unwrap();
        let res =
            tokio::time::timeout(STEP, send.send_request(get("test.com", &format!("/n/{i}"))))
                .await
                .unwrap()
                .unwrap();
        *statuses.entry(res.status().as_u16()).or_insert(0) += 1;
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(
        statuses,
        [(200, 1000)].into(),
        "statuses of 1000 sequential GETs"
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        seen.connections.load(Ordering::SeqCst)
    );
    let retries = proxy.metric("gatehouse_upstream_retries_total{route=\"0\"}");
    println!("1000 GETs, {retries} retried on a new connection");
}

#[tokio::test]
async fn an_idempotent_request_is_retried_once_and_a_post_with_a_body_is_not() {
    let (up, seen) = scripted_upstream(Script::DieOnSecond).await;
    let (proxy, opts, _pki) = proxy_to(up, "").await;
    let h1 = opts.clone().h1();
    // First GET: a new connection, answered and pooled.
    let r = request(proxy.https, "test.com", &h1, get("test.com", "/a"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Second GET: the pooled connection dies on it before any response: retried, 200.
    let r = request(proxy.https, "test.com", &h1, get("test.com", "/b"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    proxy
        .expect_metric("gatehouse_upstream_retries_total{route=\"0\"}", 1.0)
        .await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    // A POST with a body on the (now pooled) retry connection: it dies on it, not retried.
    let post = http::Request::post("/c")
        .header("host", "test.com")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let r = request(proxy.https, "test.com", &h1, post).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        proxy.metric("gatehouse_upstream_retries_total{route=\"0\"}"),
        1.0
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        4,
        "the POST reached the upstream once"
    );
}

#[tokio::test]
async fn connection_close_and_keep_alive_timeout_are_honoured() {
    for (extra, want_connections) in [
        ("connection: close\r\n", 3),
        // timeout=1, less 1 s: never reused.
        ("keep-alive: timeout=1\r\n", 3),
        // timeout=30: reused.
        ("keep-alive: timeout=30\r\n", 1),
        ("", 1),
    ] {
        let (up, seen) = scripted_upstream(Script::Answer(extra)).await;
        let (proxy, opts, _pki) = proxy_to(up, "").await;
        let tls = connect(proxy.https, "test.com", &opts.clone().h1())
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        for _ in 0..3 {
            send.ready().await.unwrap();
            let res = send.send_request(get("test.com", "/")).await.unwrap();
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            want_connections,
            "upstream answering with {extra:?}"
        );
    }
}

#[tokio::test]
async fn a_request_over_http2_with_a_stalled_body_does_not_reach_the_upstream_whole() {
    // The HTTP/2 side of the malformed-body rule: a stream reset mid-body aborts the upstream
    // request (no complete request), and nothing is counted as an upstream fault.
    let (up, seen) = scripted_upstream(Script::ReadBody).await;
    let (proxy, opts, _pki) = proxy_to(up, "").await;
    let tls = connect(proxy.https, "test.com", &opts.clone().h2())
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(
        b"0123456789",
    ))))
    .await
    .unwrap();
    let body = http_body_util::StreamBody::new(ReceiverStream(rx));
    let req = http::Request::post("https://test.com/upload")
        .version(http::Version::HTTP_2)
        .header("content-length", "1000")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { send.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client gives up mid-body: its stream is reset.
    tx.send(Err(std::io::Error::other("client gave up")))
        .await
        .unwrap();
    let _ = tokio::time::timeout(STEP, pending).await;
    seen.closed().await;
    assert!(seen.body_bytes.load(Ordering::SeqCst) < 1000);
    assert!(!proxy.metrics.encode().contains("code=\"502\""));
    driver.abort();
}

#[tokio::test]
async fn responses_keep_their_framing_after_a_body_error() {
    // After a 400 for a bad body, HTTP/1.1 closes the connection (the rest is unread).
    let (up, _seen) = scripted_upstream(Script::ReadBody).await;
    let (proxy, opts, _pki) = proxy_to(up, "").await;
    let mut tls = connect(proxy.https, "test.com", &opts.clone().h1())
        .await
        .unwrap();
    tls.write_all(
        b"POST / HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, tls.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let res = String::from_utf8_lossy(&out);
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    assert!(
        res.to_ascii_lowercase().contains("connection: close"),
        "{res}"
    );
}

//! `request_header_timeout` (SPEC §3 "Malformed requests"): a request head that stalls or
//! trickles is cut off and never forwarded, while an idle keep-alive connection, which has
//! not started a head, is left open.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_stalled_request_head_is_cut_off_after_request_header_timeout() {
    let env = TappedProxy::start("[proxy]\nrequest_header_timeout = \"1s\"\n").await;
    let mut tls = env.connect().await;
    tls.write_all(b"GET /anything HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    assert!(
        closed_within(&mut tls, Duration::from_secs(4)).await,
        "a half request head kept the connection open"
    );
    assert_eq!(env.tap.requests(), 0);
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off_after_request_header_timeout() {
    let env = TappedProxy::start("[proxy]\nrequest_header_timeout = \"1s\"\n").await;
    let mut tls = env.connect().await;
    let head = format!(
        "GET /anything HTTP/1.1\r\nHost: test.com\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(40)
    );
    let started = Instant::now();
    let mut cut_off = false;
    // One byte every 100 ms: the whole head would take ~8 s.
    for b in head.bytes() {
        if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
            cut_off = true;
            break;
        }
        if closed_within(&mut tls, Duration::from_millis(100)).await {
            cut_off = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(
        cut_off,
        "a client trickling its request head was not cut off"
    );
    assert_eq!(env.tap.requests(), 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_not_cut_off_by_request_header_timeout() {
    let env = TappedProxy::start("[proxy]\nrequest_header_timeout = \"1s\"\n").await;
    let mut tls = env.connect().await;
    // Nothing sent yet: the head timer has not started.
    assert!(
        !closed_within(&mut tls, Duration::from_secs(2)).await,
        "an idle new connection was closed"
    );
    let mut buf = Vec::new();
    tls.write_all(b"GET /anything/1 HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut tls, &mut buf).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Idle between requests: still open, and it answers the next one.
    assert!(
        !closed_within(&mut tls, Duration::from_secs(2)).await,
        "an idle keep-alive connection was closed"
    );
    tls.write_all(b"GET /anything/2 HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut tls, &mut buf).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/anything/2");
}

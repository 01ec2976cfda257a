//! Malformed and unusual HTTP/1.1 requests (SPEC §3 "Malformed requests"), sent over raw
//! TLS to a proxy in front of a tapped echo: conflicting or broken framing, odd request
//! targets, a missing Host and oversized heads get their 4xx, and the tap shows on the wire
//! that nothing is forwarded.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

// === malformed framing ===

#[tokio::test]
async fn content_length_and_transfer_encoding_together_get_400_and_nothing_is_forwarded() {
    let env = TappedProxy::start("").await;
    let mut failures = Vec::new();
    for (what, head) in [
        (
            "CL then TE",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "CL 0 then TE",
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let req = format!(
            "POST /anything HTTP/1.1\r\nHost: test.com\r\n{head}Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let r = env.exchange(req.as_bytes()).await;
        if r.status != 400 {
            failures.push(format!("{what}: got {} {}", r.status, r.text()));
        }
    }
    env.settle().await;
    if env.tap.requests() != 0 {
        failures.push(format!("forwarded upstream:\n{}", env.tap.sent()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn header_names_with_spaces_get_400() {
    let env = TappedProxy::start("").await;
    for header in ["X Bad: 1", "X-Bad : 1", " X-Bad: 1", "X-Bad\t: 1"] {
        let r = env.get("/anything", &[header]).await;
        assert_eq!(r.status, 400, "{header:?}: {}", r.text());
    }
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
}

#[tokio::test]
async fn a_chunked_body_malformed_mid_stream_never_reaches_the_upstream_complete() {
    let env = TappedProxy::start("").await;
    let mut tls = env.connect().await;
    let head = "POST /anything HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(b"5\r\nhello\r\n").await.unwrap();
    tls.flush().await.unwrap();
    // Let the proxy forward the head and the first chunk, then break the framing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tls
        .write_all(b"zz\r\nthis is not a chunk\r\n0\r\n\r\n")
        .await;
    let _ = tls.flush().await;
    let mut buf = Vec::new();
    let reply = read_response(&mut tls, &mut buf).await;
    if let Ok(r) = &reply {
        assert_ne!(
            r.status,
            200,
            "the upstream answered a complete request: {}",
            r.text()
        );
        assert!(!r.text().contains("body_bytes"), "{}", r.text());
    }
    env.settle().await;
    let sent = env.tap.sent();
    // The upstream got at most the head and the good chunk, never a terminating chunk.
    assert!(!sent.contains("this is not a chunk"), "{sent}");
    assert!(
        !sent.contains("0\r\n\r\n"),
        "the upstream request was completed: {sent:?}"
    );
}

#[tokio::test]
async fn a_well_formed_chunked_body_is_forwarded() {
    let env = TappedProxy::start("").await;
    let req = "POST /anything HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = env.exchange(req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_bytes"], 11);
}

// === request targets ===

#[tokio::test]
async fn absolute_form_is_served_by_its_path() {
    let env = TappedProxy::start("").await;
    for (target, path, query) in [
        ("https://test.com/anything/x", "/anything/x", None),
        (
            "https://test.com:8443/anything/x?a=1",
            "/anything/x",
            Some("a=1"),
        ),
        ("https://TEST.com//anything/./y", "/anything/y", None),
    ] {
        let r = env.get(target, &[]).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let j = r.json();
        assert_eq!(j["path"], path, "{target}");
        assert_eq!(j["query"].as_str(), query, "{target}");
    }
    assert!(
        !env.tap.sent().contains("https://"),
        "the upstream must get origin form:\n{}",
        env.tap.sent()
    );
    // The authority of an absolute-form target is the host, and it is bound to the SNI.
    let r = env.get("https://other.com/anything/x", &[]).await;
    assert_eq!(r.status, 421, "{}", r.text());
}

#[tokio::test]
async fn options_asterisk_is_answered_by_the_proxy() {
    let env = TappedProxy::start("").await;
    let r = env
        .exchange(b"OPTIONS * HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(r.status, 204);
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
    // An ordinary OPTIONS is proxied.
    let r = env
        .exchange(b"OPTIONS /anything HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["method"], "OPTIONS");
}

#[tokio::test]
async fn request_without_host_gets_400() {
    let env = TappedProxy::start("").await;
    for req in [
        "GET /anything HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /anything HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        "GET /anything HTTP/1.1\r\nHost: :8443\r\nConnection: close\r\n\r\n",
    ] {
        let r = env.exchange(req.as_bytes()).await;
        assert_eq!(r.status, 400, "{req:?}: {}", r.text());
    }
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
}

// === limits ===

#[tokio::test]
async fn request_headers_over_the_limit_get_431() {
    let env = TappedProxy::start("[proxy]\nmax_request_header_bytes = 8192\n").await;
    let small = format!("X-Filler: {}", "a".repeat(4000));
    let r = env.get("/anything", &[&small]).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let big: Vec<String> = (0..20)
        .map(|i| format!("X-Filler-{i}: {}", "b".repeat(1000)))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let r = env.get("/anything", &big).await;
    assert_eq!(r.status, 431, "{}", r.text());
    let one_big = format!("X-Filler: {}", "c".repeat(20_000));
    let r = env.get("/anything", &[&one_big]).await;
    assert_eq!(r.status, 431, "{}", r.text());
    env.settle().await;
    assert_eq!(env.tap.requests(), 1, "only the small request is forwarded");
}

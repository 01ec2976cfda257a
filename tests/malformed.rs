//! Malformed and unusual HTTP/1.1 requests, header rewriting and the request-head timeout
//! (SPEC §3 "Malformed requests", "Routing and forwarding"), over raw TLS, to a proxy in
//! front of a tapped echo (`common::tap`), so "nothing is forwarded" is checked on the wire.

mod common;

use std::time::{Duration, Instant};

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

// === headers ===

#[tokio::test]
async fn headers_with_underscores_are_dropped_by_default_before_authorization() {
    // An allow policy that needs the header: a dropped header cannot satisfy it.
    let env = TappedProxy::start(
        r#"
[[policy]]
name = "needs-x-user"
action = "allow"
  [[policy.rules]]
  to.paths = ["/anything/guarded"]
  when = [{ key = "request.headers[x_user]", values = ["*"] }]
[[policy]]
name = "open"
action = "allow"
  [[policy.rules]]
  to.paths = ["/headers"]
"#,
    )
    .await;
    let h = env
        .get("/headers", &["X_User: admin", "x-user-ok: 1"])
        .await
        .upstream_headers();
    assert!(!h.contains_key("x_user"), "{h:?}");
    assert_eq!(h["x-user-ok"], "1");
    let r = env.get("/anything/guarded", &["x_user: admin"]).await;
    assert_eq!(r.status, 403, "a rule saw a dropped header: {}", r.text());
}

#[tokio::test]
async fn headers_with_underscores_reject() {
    let env = TappedProxy::start("[proxy]\nheaders_with_underscores = \"reject\"\n").await;
    let r = env.get("/headers", &["x_user: admin"]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    env.settle().await;
    assert_eq!(
        env.tap.requests(),
        0,
        "forwarded upstream:\n{}",
        env.tap.sent()
    );
    let r = env.get("/headers", &["x-user: admin"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn headers_with_underscores_allow() {
    let env = TappedProxy::start("[proxy]\nheaders_with_underscores = \"allow\"\n").await;
    let h = env
        .get("/headers", &["x_user: admin"])
        .await
        .upstream_headers();
    assert_eq!(h["x_user"], "admin");
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_not_forwarded() {
    let env = TappedProxy::start("").await;
    let r = env
        .exchange(
            b"GET /headers HTTP/1.1\r\nHost: test.com\r\n\
              Connection: keep-alive, X-Secret\r\nConnection: x-other\r\n\
              X-Secret: 1\r\nX-Other: 2\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
              TE: trailers\r\nTrailer: x-t\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
        )
        .await;
    let h = r.upstream_headers();
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
    }
    // The upstream connection is the proxy's own: whatever it says there, the client's
    // Connection header's tokens are not forwarded.
    if let Some(c) = h.get("connection").and_then(|c| c.as_str()) {
        assert!(
            !c.to_ascii_lowercase().contains("x-secret") && !c.contains("x-other"),
            "{c}"
        );
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["host"], "test.com", "host is kept");
}

#[tokio::test]
async fn x_forwarded_for_and_proto() {
    let env = TappedProxy::start("").await;
    let h = env.get("/headers", &[]).await.upstream_headers();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    let h = env
        .get(
            "/headers",
            &["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: http"],
        )
        .await
        .upstream_headers();
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn x_request_id_is_added_when_absent_and_kept_when_present() {
    let env = TappedProxy::start("").await;
    let a = env.get("/headers", &[]).await.upstream_headers()["x-request-id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let b = env.get("/headers", &[]).await.upstream_headers()["x-request-id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}");
    assert_ne!(a, b, "each request gets its own id");
    let h = env
        .get("/headers", &["X-Request-Id: my-id-123"])
        .await
        .upstream_headers();
    assert_eq!(h["x-request-id"], "my-id-123");
}

// === timeouts ===

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

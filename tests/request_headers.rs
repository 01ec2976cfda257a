//! How request headers are rewritten on the way upstream (SPEC §3 "Routing and forwarding"):
//! headers with underscores (drop, reject, allow), hop-by-hop and `Connection`-named headers,
//! `X-Forwarded-For`/`-Proto` and `X-Request-Id`, seen from the echo upstream behind a tap.

mod common;

use common::*;

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
async fn headers_with_underscores_reject_refuses_them_with_400() {
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
async fn headers_with_underscores_allow_forwards_them() {
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
async fn x_forwarded_for_is_appended_to_and_proto_is_always_https() {
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

//! Request targets that are never valid get 400 from the proxy and never reach the upstream
//! (SPEC §3 "Path normalization": bad or NUL escapes, a target not starting with `/`, a raw
//! space), while encoded control characters other than NUL and any query pass untouched.

mod common;

use common::*;

#[tokio::test]
async fn always_invalid_paths_get_400() {
    let (pki, proxy) = echo_proxy("", DENY_TEAPOT).await;
    let opts = client_for(&pki, "test.client");
    for target in [
        "/anything/%zz",
        "/anything/%4",
        "/anything/%",
        "/anything/%g0",
        "/anything/%00",
        "/anything/a%00b",
        "/anything/%2F%00",
        "anything/x",
        "*",
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        assert_eq!(r.status, 400, "GET {target}: {}", r.raw);
        assert!(
            !r.text().contains("\"path\""),
            "GET {target} reached the upstream: {}",
            r.raw
        );
    }
    // A raw space ends the request target: the request line is malformed.
    let reply = raw(
        proxy.https,
        "test.com",
        &opts,
        b"GET /anything/a b HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n",
        STEP,
    )
    .await;
    assert_eq!(status_of(&reply), 400, "{reply}");
    // Encoded control characters other than NUL stay encoded, and the query is never inspected.
    let r = get_raw(&proxy, &opts, "/anything/a%0ab%7f?%zz%00").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let j = r.json();
    assert_eq!(j["path"], "/anything/a%0ab%7f");
    assert_eq!(j["query"], "%zz%00");
}

/// SPEC: "Always 400: ... a path not starting with `/` (except `*` for `OPTIONS`)". A target
/// without a `/` looks like an authority (`GET host:port`, valid only for CONNECT); it is still
/// not a path, whatever host it names.
#[tokio::test]
async fn request_target_without_leading_slash_gets_400() {
    let (pki, proxy) = echo_proxy("", DENY_TEAPOT).await;
    let opts = client_for(&pki, "test.client");
    let mut failures = Vec::new();
    for target in [
        "anything/x",
        "status/418",
        "test.com",
        "test.com:443",
        "anything",
        "status",
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        if r.status != 400 {
            failures.push(format!("GET {target}: got {} {:?}", r.status, r.text()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! What the upstream receives after path normalization (SPEC §3 "Path normalization",
//! "Routing and forwarding"): the normalized path and the untouched query, under each
//! `escaped_slashes` (keep, reject, decode, redirect) and `path_normalization` (none, base)
//! setting, with authorization seeing the same path. The unit table in
//! `src/request/normalize.rs` covers the function itself; this is through the whole proxy, over
//! raw TLS.

mod common;

use common::*;

/// `(sent target, path the upstream sees, query the upstream sees)` under the defaults.
#[rustfmt::skip]
const FORWARDED: &[(&str, &str, Option<&str>)] = &[
    ("/anything/a//b/./c?q=%2F..//", "/anything/a/b/c", Some("q=%2F..//")),
    ("/anything/x/../y?a=1&b=/../..&c=%zz%00", "/anything/y", Some("a=1&b=/../..&c=%zz%00")),
    ("/anything/%61%62%63", "/anything/abc", None),
    ("/anything/%7e%7E", "/anything/~~", None),
    ("/anything/a%20b%3Bc%3bd", "/anything/a%20b%3Bc%3bd", None),
    ("/anything/a%0ab", "/anything/a%0ab", None),
    ("/anything/%252e%252e/x", "/anything/%252e%252e/x", None),
    ("/anything/caf%C3%A9", "/anything/caf%C3%A9", None),
    ("/anything/418/.", "/anything/418/", None),
    ("/anything/a/..", "/anything/", None),
    ("/anything/..;/anything/x", "/anything/x", None),
    ("/anything/a/.;p=1/b;q=2", "/anything/a/b;q=2", None),
    ("/anything/a\\b", "/anything/a/b", None),
    ("/anything/a#frag?x=1", "/anything/a", None),
    ("/anything/a?x=1#frag", "/anything/a", Some("x=1")),
    ("//anything//a//", "/anything/a/", None),
    ("/anything/A/B", "/anything/A/B", None),
];

#[tokio::test]
async fn upstream_receives_the_normalized_path_and_the_untouched_query() {
    let (pki, proxy) = echo_proxy("", DENY_TEAPOT).await;
    let opts = client_for(&pki, "test.client");
    let mut failures = Vec::new();
    for &(target, path, query) in FORWARDED {
        let r = get_raw(&proxy, &opts, target).await;
        if r.status != 200 {
            failures.push(format!("{target:?}: got {}: {}", r.status, r.raw));
            continue;
        }
        let j = r.json();
        if j["path"] != path || j["query"].as_str() != query {
            failures.push(format!(
                "{target:?}: upstream saw path {} query {}, want {path:?} {query:?}",
                j["path"], j["query"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn escaped_slashes_keep_forwards_them_encoded_in_one_segment() {
    let (pki, proxy) = echo_proxy(
        "",
        &format!("[proxy]\nescaped_slashes = \"keep\"\n{DENY_TEAPOT}"),
    )
    .await;
    let opts = client_for(&pki, "test.client");
    for (target, path) in [
        ("/anything/a%2Fb", "/anything/a%2Fb"),
        ("/anything/a%2fb%5Cc%5cd", "/anything/a%2fb%5Cc%5cd"),
        ("/anything/x/..%2F..%2Fy", "/anything/x/..%2F..%2Fy"),
        ("/anything//a%2F/./%61", "/anything/a%2F/a"),
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        assert_eq!(r.status, 200, "{target}: {}", r.raw);
        assert_eq!(r.json()["path"], path, "{target}");
    }
    // Kept encoded, `/status%2F418` is one segment: not the denied path, and the upstream
    // gets exactly that one segment too (the echo knows no such endpoint).
    let r = get_raw(&proxy, &opts, "/status%2F418").await;
    assert_eq!(r.status, 404, "{}", r.raw);
    assert_denied(
        &get_raw(&proxy, &opts, "/status/%2e/418").await,
        "keep still normalizes dots",
    );
}

#[tokio::test]
async fn escaped_slashes_reject_refuses_them_in_the_path_with_400() {
    let (pki, proxy) = echo_proxy(
        "",
        &format!("[proxy]\nescaped_slashes = \"reject\"\n{DENY_TEAPOT}"),
    )
    .await;
    let opts = client_for(&pki, "test.client");
    for target in [
        "/anything/a%2Fb",
        "/anything/a%2fb",
        "/anything/a%5Cb",
        "/anything/a%5cb",
        "/status%2F418",
        "/status%2F418?x=1",
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        assert_eq!(r.status, 400, "{target}: {}", r.raw);
    }
    // Only the path is looked at, and a raw backslash is not an escaped slash.
    for (target, path) in [
        ("/anything/a/b?x=%2F%5C", "/anything/a/b"),
        ("/anything/a\\b", "/anything/a/b"),
        ("/anything/a%252Fb", "/anything/a%252Fb"),
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        assert_eq!(r.status, 200, "{target}: {}", r.raw);
        assert_eq!(r.json()["path"], path, "{target}");
    }
}

#[tokio::test]
async fn escaped_slashes_decode_forwards_and_authorizes_them_as_slashes() {
    let (pki, proxy) = echo_proxy(
        "",
        &format!("[proxy]\nescaped_slashes = \"decode\"\n{DENY_TEAPOT}"),
    )
    .await;
    let opts = client_for(&pki, "test.client");
    for (target, path, query) in [
        ("/anything/a%2Fb", "/anything/a/b", None),
        ("/anything/a%2fb", "/anything/a/b", None),
        ("/anything/a%5Cb%5cc", "/anything/a/b/c", None),
        ("/anything/a%2F%2Fb?q=%2F", "/anything/a/b", Some("q=%2F")),
        ("/anything/x/..%2F..%2Fanything%2Fy", "/anything/y", None),
        ("/private/..%2Fanything%5c%2e%2Fabc", "/anything/abc", None), // normalization-cases.md row 60
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        assert_eq!(r.status, 200, "{target}: {}", r.raw);
        let j = r.json();
        assert_eq!(j["path"], path, "{target}");
        assert_eq!(j["query"].as_str(), query, "{target}");
    }
    for target in [
        "/status%2F418",
        "/status%5c418",
        "/anything/..%2Fstatus%2F418",
        "/anything%2F..%2Fstatus/418?x",
    ] {
        assert_denied(&get_raw(&proxy, &opts, target).await, target);
    }
}

#[tokio::test]
async fn escaped_slashes_redirect_is_the_default() {
    let (pki, proxy) = echo_proxy("", DENY_TEAPOT).await;
    let opts = client_for(&pki, "test.client");
    for (target, location, path) in [
        ("/anything/a%2Fb", "/anything/a/b", "/anything/a/b"),
        (
            "/anything/a%2F%2Fb/./c?x=%2F",
            "/anything/a/b/c?x=%2F",
            "/anything/a/b/c",
        ),
        ("/anything/a%5C..%5Cb", "/anything/b", "/anything/b"),
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        assert_eq!(r.status, 307, "{target}: {}", r.raw);
        assert_eq!(r.header("location"), Some(location), "{target}");
        let r = get_raw(&proxy, &opts, location).await;
        assert_eq!(r.status, 200, "{location}: {}", r.raw);
        assert_eq!(r.json()["path"], path, "{location}");
    }
}

#[tokio::test]
async fn path_normalization_none_forwards_the_path_as_sent() {
    let (pki, proxy) = echo_proxy(
        "",
        &format!("[proxy]\npath_normalization = \"none\"\n{DENY_TEAPOT}"),
    )
    .await;
    let opts = client_for(&pki, "test.client");
    for target in [
        "/anything/a//b/./c/../%2e%2E/d",
        "/anything/%61%62%63",
        "/anything/a%2Fb%5cc",
        "/anything/a\\b",
        "/anything/..;x/y/.;z",
    ] {
        let r = get_raw(&proxy, &opts, target).await;
        assert_eq!(r.status, 200, "{target}: {}", r.raw);
        assert_eq!(r.json()["path"], target, "{target}");
    }
    let r = get_raw(&proxy, &opts, "/anything/a//b?q=/../%2F").await;
    assert_eq!(r.json()["query"], "q=/../%2F");
    // The exact path is still denied; the always-400 checks still apply.
    assert_denied(&get_raw(&proxy, &opts, "/status/418").await, "none");
    for target in ["/anything/%zz", "/anything/%00", "anything/x"] {
        assert_eq!(get_raw(&proxy, &opts, target).await.status, 400, "{target}");
    }
}

#[tokio::test]
async fn path_normalization_base_keeps_double_slashes() {
    let (pki, proxy) = echo_proxy(
        "",
        &format!("[proxy]\npath_normalization = \"base\"\n{DENY_TEAPOT}"),
    )
    .await;
    let opts = client_for(&pki, "test.client");
    let r = get_raw(&proxy, &opts, "/anything//a/./b/../%63").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["path"], "/anything//a/c");
    assert_denied(
        &get_raw(&proxy, &opts, "/status/x/%2e%2e/418").await,
        "base",
    );
}

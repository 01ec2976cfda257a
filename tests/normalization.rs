//! Path normalization through the whole proxy (SPEC §3 "Path normalization", "Authorization",
//! "Routing and forwarding"), over a raw TLS client so that no HTTP client library cleans the
//! request target first. The unit table in `src/http/normalize.rs` covers the function itself;
//! here we check that authorization and the upstream see the same, normalized path.

mod common;

use common::*;
use gatehouse::dev::pki::{LeafSpec, Usage};

/// What the proxy must do with a spelling of `/status/418` for `test.client`.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// It normalizes to `/status/418`: 403.
    Deny,
    /// It holds an escaped slash: 307 to this location, which is itself denied.
    Redirect(&'static str),
    /// Always invalid: 400 from the proxy.
    Bad,
    /// It normalizes to `/status/418/`, a different path (SPEC: `/status/418/.` ->
    /// `/status/418/`): not denied, forwarded, and the echo refuses `418/` as a code.
    TrailingSlash,
}
use Want::{Bad, Deny, Redirect, TrailingSlash};

#[rustfmt::skip]
const TEAPOT_SPELLINGS: &[(&str, Want)] = &[
    ("/status/418", Deny),
    // slashes
    ("//status/418", Deny),
    ("/status//418", Deny),
    ("///status///418", Deny),
    ("//status//418", Deny),
    // dot segments
    ("/status/./418", Deny),
    ("/./status/418", Deny),
    ("/status/x/../418", Deny),
    ("/x/../status/418", Deny),
    ("/x/y/../../status/418", Deny),
    ("/../status/418", Deny),
    ("/../../status/418", Deny),
    ("/status//./418", Deny),
    ("/status/.//418", Deny),
    ("/status/x/./../418", Deny),
    // encoded dots (unreserved: decoded once)
    ("/status/%2e/418", Deny),
    ("/status/%2E/418", Deny),
    ("/%2e/status/418", Deny),
    ("/status/%2E%2E/status/418", Deny),
    ("/status/%2e%2e/status/418", Deny),
    ("/status/.%2e/status/418", Deny),
    ("/status/%2E./status/418", Deny),
    ("/%2E%2E/status/418", Deny),
    ("/status/x/%2e%2e/418", Deny),
    // `.;x` and `..;x` segments
    ("/status/..;/status/418", Deny),
    ("/status/..;x=1/status/418", Deny),
    ("/status/.;x/418", Deny),
    ("/status/.;/418", Deny),
    ("/.;/status/418", Deny),
    ("/status/x/..;/418", Deny),
    ("/status/%2e%2e;x/status/418", Deny),
    // other unreserved escapes
    ("/%73tatus/418", Deny),
    ("/%73%74%61%74%75%73/%34%31%38", Deny),
    ("/status/%34%31%38", Deny),
    ("/status/4%31%38", Deny),
    ("/st%61tus/41%38", Deny),
    // raw backslash
    ("/status\\418", Deny),
    ("\\status/418", Bad),
    ("/status\\..\\status\\418", Deny),
    ("/status/x\\..\\418", Deny),
    // query and fragment
    ("/status/418?x=1", Deny),
    ("/status/418?", Deny),
    ("/status/418??x", Deny),
    ("/status/418?/../anything", Deny),
    ("/status/418#frag", Deny),
    ("/status/418#/../../anything", Deny),
    ("/status/418#", Deny),
    // absolute form
    ("https://test.com//status/418", Deny),
    ("https://test.com/status/%2e/418", Deny),
    // escaped slashes: 307 under the default `redirect`
    ("/status%2F418", Redirect("/status/418")),
    ("/status%2f418", Redirect("/status/418")),
    ("/status%5C418", Redirect("/status/418")),
    ("/status%5c418", Redirect("/status/418")),
    ("/%2Fstatus/418", Redirect("/status/418")),
    ("/status%2F%2F418", Redirect("/status/418")),
    ("/anything/..%2Fstatus/418", Redirect("/status/418")),
    ("/anything/..%2fstatus%2f418", Redirect("/status/418")),
    ("/anything%2F..%2Fstatus%2F418", Redirect("/status/418")),
    ("/anything/..%5cstatus%5C418", Redirect("/status/418")),
    ("/status/..%2F%2e%2e%2Fstatus/418", Redirect("/status/418")),
    ("/status%2F418?x=1", Redirect("/status/418?x=1")),
    ("/status%2F418?q=%2F..//", Redirect("/status/418?q=%2F..//")),
    // a trailing `/` is another path
    ("/status/418/.", TrailingSlash),
    ("/status/418/x/..", TrailingSlash),
    ("/status/418//", TrailingSlash),
    // always 400
    ("/status/418%zz", Bad),
    ("/status/%zz/../418", Bad),
    ("/status/418%4", Bad),
    ("/status/418%", Bad),
    ("/status/418%00", Bad),
    ("/status/%00/../418", Bad),
    ("/status%2F418%00", Bad),
    ("status/418", Bad),
];

#[tokio::test]
async fn bypass_spellings_of_a_denied_path_are_denied() {
    assert!(TEAPOT_SPELLINGS.len() >= 40);
    let (pki, proxy) = echo_proxy("", DENY_TEAPOT).await;
    let denied = client_for(&pki, "test.client");
    let other = client_for(&pki, "other.client");

    // The rule is principal-specific: another client gets the teapot.
    let r = get_raw(&proxy, &other, "/status/418").await;
    assert_eq!(r.status, 418, "{}", r.raw);

    let mut failures = Vec::new();
    for &(target, want) in TEAPOT_SPELLINGS {
        let r = get_raw(&proxy, &denied, target).await;
        if r.status == 418 {
            failures.push(format!("{target:?}: BYPASS, got the teapot"));
            continue;
        }
        let ok = match want {
            Deny => r.status == 403 && r.text() == "RBAC: access denied",
            Bad => r.status == 400,
            TrailingSlash => r.status == 400 && r.text().contains("bad status code"),
            Redirect(location) => {
                if r.status == 307 && r.header("location") == Some(location) {
                    let again = get_raw(&proxy, &denied, location).await;
                    if again.status != 403 {
                        failures.push(format!(
                            "{target:?}: redirected to {location:?}, which got {}",
                            again.status
                        ));
                    }
                    true
                } else {
                    false
                }
            }
        };
        if !ok {
            failures.push(format!(
                "{target:?}: want {want:?}, got {} location={:?} body={:?}",
                r.status,
                r.header("location"),
                r.text()
            ));
        }
        // The spellings that normalize to /status/418 do reach the teapot for a client the
        // rule does not name: the upstream got the normalized path, not the raw spelling.
        if matches!(want, Deny) {
            let r = get_raw(&proxy, &other, target).await;
            if r.status != 418 {
                failures.push(format!(
                    "{target:?}: other.client got {}, want 418 (normalized path forwarded)",
                    r.status
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

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
async fn escaped_slashes_keep() {
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
async fn escaped_slashes_reject() {
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
async fn escaped_slashes_decode() {
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

#[tokio::test]
async fn allow_any_principal_under_optional_client_auth_denies_anonymous_clients() {
    let allow_authenticated = r#"
[[policy]]
name = "authenticated-only"
action = "allow"
  [[policy.rules]]
  from.principals = ["*"]
"#;
    let (pki, proxy) = echo_proxy(r#"client_auth = "optional""#, allow_authenticated).await;

    let anon = ClientOpts::new(&pki, None);
    for target in ["/anything/x", "/status/200", "//anything/%2e/x"] {
        assert_denied(&get_raw(&proxy, &anon, target).await, target);
    }

    let authed = client_for(&pki, "test.client");
    let r = get_raw(&proxy, &authed, "/anything/x").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["path"], "/anything/x");

    // SPEC: a verified certificate without a spiffe:// URI SAN has no principal but still
    // counts as authenticated for "*".
    let mut dns_only = LeafSpec::new(Usage::Client, 30);
    dns_only.dns = vec!["client.example.com".into()];
    let dns_only = pki.issue("dnsonly", &dns_only);
    let r = get_raw(
        &proxy,
        &ClientOpts::new(&pki, Some(&dns_only)),
        "/status/200",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
}

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

/// The deny rule and the normalization hold on one keep-alive connection too: nothing a
/// previous request did changes how the next one is normalized.
#[tokio::test]
async fn pipelined_spellings_on_one_connection() {
    let (pki, proxy) = echo_proxy("", DENY_TEAPOT).await;
    let opts = client_for(&pki, "test.client");
    let mut bytes = Vec::new();
    for target in [
        "/anything/ok",
        "//status/418",
        "/status/%2e/418",
        "/anything/a/../b",
    ] {
        bytes.extend_from_slice(
            format!("GET {target} HTTP/1.1\r\nHost: test.com\r\n\r\n").as_bytes(),
        );
    }
    bytes.extend_from_slice(
        b"GET /status/204 HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n",
    );
    let reply = raw(proxy.https, "test.com", &opts, &bytes, STEP).await;
    let statuses: Vec<u16> = reply
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| status_of(&reply[i..]))
        .collect();
    assert_eq!(statuses, [200, 403, 403, 200, 204], "{reply}");
    assert!(!reply.contains("teapot"), "{reply}");
}

//! Spellings of a denied path cannot get past the deny rule (SPEC §3 "Path normalization",
//! "Authorization"): every encoding, dot segment, slash run and escaped slash of
//! `/status/418` is denied, redirected to a denied path or refused, on fresh connections and
//! pipelined on one; an allow rule for any principal still denies anonymous clients. Sent
//! over raw TLS, so that no HTTP client library cleans the request target first.

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

//! Pure header rewriting for the upstream request and the downstream response:
//! hop-by-hop removal, `x-forwarded-*`, `x-request-id`, headers with underscores, and
//! `x-forwarded-client-cert` (Envoy's format) in its three modes.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{ForwardClientCert, HeadersWithUnderscores};
use crate::identity::PeerIdentity;

pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub(crate) static CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
pub(crate) static CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one hop and never cross a proxy (RFC 9110 §7.6.1), and the
/// credentials a client gives a proxy (`proxy-authorization`), which are ours, not the
/// upstream's.
fn standard_hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
    ]
}

/// Forwarding headers nothing in front of an edge proxy vouches for.
fn forwarded_family() -> [&'static HeaderName; 5] {
    [
        &header::FORWARDED,
        &X_FORWARDED_HOST,
        &X_FORWARDED_PORT,
        &X_FORWARDED_PREFIX,
        &X_REAL_IP,
    ]
}

/// Which client-sent headers [`sanitize`] removes besides the certificate headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sanitize {
    /// `x-forwarded-client-cert` (every mode but `append_forward` behind a verified certificate).
    pub xfcc: bool,
    /// The forwarded family (unless `trust_forwarded_headers`).
    pub forwarded: bool,
}

/// Removes the client-sent headers gatehouse replaces or must not pass on: RFC 9440
/// `client-cert` / `client-cert-chain` always, XFCC and the forwarded family as `s` says.
/// One pass over the names when there is nothing to remove (the common case).
pub(crate) fn sanitize(headers: &mut HeaderMap, s: Sanitize) {
    let family = forwarded_family();
    let unwanted = |k: &HeaderName| {
        *k == CLIENT_CERT
            || *k == CLIENT_CERT_CHAIN
            || (s.xfcc && *k == XFCC)
            || (s.forwarded && family.contains(&k))
    };
    if !headers.keys().any(unwanted) {
        return;
    }
    headers.remove(&CLIENT_CERT);
    headers.remove(&CLIENT_CERT_CHAIN);
    if s.xfcc {
        headers.remove(&XFCC);
    }
    if s.forwarded {
        for name in family {
            headers.remove(name);
        }
    }
}

/// RFC 9440 `Client-Cert` (the leaf) and, when the client sent intermediates,
/// `Client-Cert-Chain` (an RFC 8941 list of byte sequences, in the order sent).
pub(crate) fn client_cert_values(
    chain: &[impl AsRef<[u8]>],
) -> (Option<HeaderValue>, Option<HeaderValue>) {
    use base64::Engine as _;
    let item = |der: &[u8]| {
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let leaf = chain
        .first()
        .and_then(|der| HeaderValue::from_str(&item(der.as_ref())).ok());
    let rest: Vec<String> = chain.iter().skip(1).map(|der| item(der.as_ref())).collect();
    let intermediates = (!rest.is_empty())
        .then(|| HeaderValue::from_str(&rest.join(", ")).ok())
        .flatten();
    (leaf, intermediates)
}

/// Removes hop-by-hop headers and every header named in `Connection`. With `keep_upgrade`
/// (a WebSocket handshake being passed through), `Upgrade` and `Connection: upgrade` stay.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names is cheaper than eight removals.
    let hop = standard_hop_by_hop();
    if !keep_upgrade && !headers.keys().any(|k| hop.contains(&k)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| !(keep_upgrade && name == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in hop {
        if keep_upgrade && (name == header::UPGRADE || name == header::CONNECTION) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Is this an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade`)?
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// An HTTP/1.1 upgrade request keeps only the `Upgrade` tokens `allowed` accepts. Returns
/// whether it still asks for an upgrade; if not, `Upgrade` and `Connection` go with the other
/// hop-by-hop headers and the request is forwarded as an ordinary one (so `h2c` never
/// reaches the upstream: the h2c-smuggling class).
pub(crate) fn filter_upgrade(headers: &mut HeaderMap, allowed: impl Fn(&str) -> bool) -> bool {
    if !is_upgrade(headers) {
        return false;
    }
    let offered: Vec<String> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let kept: Vec<&str> = offered
        .iter()
        .map(String::as_str)
        .filter(|t| allowed(t))
        .collect();
    if kept.is_empty() {
        return false;
    }
    if kept.len() != offered.len() {
        match HeaderValue::from_str(&kept.join(", ")) {
            Ok(v) => {
                headers.insert(header::UPGRADE, v);
            }
            Err(_) => return false,
        }
    }
    true
}

/// Applies `headers_with_underscores`. `Err(name)` under `reject` names the first offender.
pub(crate) fn apply_underscores(
    headers: &mut HeaderMap,
    mode: HeadersWithUnderscores,
) -> Result<(), String> {
    if mode == HeadersWithUnderscores::Allow || !headers.keys().any(|k| k.as_str().contains('_')) {
        return Ok(());
    }
    let offenders: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    if mode == HeadersWithUnderscores::Reject {
        return Err(offenders[0].as_str().to_owned());
    }
    for name in offenders {
        headers.remove(name);
    }
    Ok(())
}

/// `x-forwarded-proto: https`, the peer appended to `x-forwarded-for`, an `x-request-id`.
/// `peer` is the client's address as a header value, made once per connection.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    request_id: impl FnOnce() -> HeaderValue,
) {
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    let joined = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) if !prev.trim_ascii().is_empty() => {
            HeaderValue::from_bytes(&[prev, b", ", peer.as_bytes()].concat()).ok()
        }
        _ => Some(peer.clone()),
    };
    if let Some(v) = joined {
        headers.insert(&X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(&X_REQUEST_ID, request_id());
    }
}

/// The peer's address as an `x-forwarded-for` element (IPv4-mapped IPv6 shown as IPv4).
pub(crate) fn peer_value(peer: IpAddr) -> HeaderValue {
    // An IP address in text is always a valid header value.
    HeaderValue::from_str(&peer.to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Applies the XFCC mode. `element` is this hop's XFCC element when a client certificate
/// was verified (see [`xfcc_element`]), already a header value: under the default mode it is
/// inserted as is (a reference-count increment), never re-validated per request.
pub(crate) fn apply_xfcc(
    headers: &mut HeaderMap,
    mode: ForwardClientCert,
    element: Option<&HeaderValue>,
) {
    let client_sent: Vec<HeaderValue> = match mode {
        ForwardClientCert::AppendForward => headers.get_all(&XFCC).iter().cloned().collect(),
        _ => Vec::new(),
    };
    if headers.contains_key(&XFCC) {
        headers.remove(&XFCC);
    }
    let Some(element) = element else { return };
    match mode {
        ForwardClientCert::Sanitize => {}
        ForwardClientCert::SanitizeSet => {
            headers.insert(&XFCC, element.clone());
        }
        ForwardClientCert::AppendForward => {
            let mut parts: Vec<&[u8]> = client_sent.iter().map(HeaderValue::as_bytes).collect();
            parts.push(element.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&parts.join(&b","[..])) {
                headers.insert(&XFCC, v);
            }
        }
    }
}

/// This hop's XFCC element, Envoy's format:
/// `By=<server URI SAN>;Hash=<sha256 hex>;Subject="<DN>";URI=<uri>;DNS=<dns>`.
pub(crate) fn xfcc_element(server_uri_sans: &[String], id: &PeerIdentity) -> String {
    let mut out = String::with_capacity(128);
    for by in server_uri_sans {
        push_pair(&mut out, "By", by, false);
    }
    push_pair(&mut out, "Hash", &id.cert_sha256_hex(), false);
    push_pair(&mut out, "Subject", &id.subject, true);
    for uri in &id.uri_sans {
        push_pair(&mut out, "URI", uri, false);
    }
    for dns in &id.dns_sans {
        push_pair(&mut out, "DNS", dns, false);
    }
    out
}

fn push_pair(out: &mut String, key: &str, value: &str, always_quote: bool) {
    if !out.is_empty() {
        out.push(';');
    }
    out.push_str(key);
    out.push('=');
    if always_quote || value.contains([',', ';', '=', '"']) {
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn upgrade_headers_survive_for_websocket() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "k");
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn upgrade_tokens_outside_the_allow_list_are_dropped() {
        let websocket = |t: &str| t.eq_ignore_ascii_case("websocket");
        for (upgrade, connection, want_upgrade, want) in [
            ("websocket", "Upgrade", true, Some("websocket")),
            ("WebSocket", "keep-alive, upgrade", true, Some("WebSocket")),
            ("h2c", "Upgrade, HTTP2-Settings", false, None),
            ("h2c, websocket", "Upgrade", true, Some("websocket")),
            ("foo/1.0", "Upgrade", false, None),
            // Without `Connection: upgrade` it is no upgrade at all.
            ("websocket", "keep-alive", false, None),
        ] {
            let mut h = map(&[
                ("upgrade", upgrade),
                ("connection", connection),
                ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ]);
            let upgrading = filter_upgrade(&mut h, websocket);
            assert_eq!(upgrading, want_upgrade, "{upgrade} / {connection}");
            remove_hop_by_hop(&mut h, upgrading);
            assert_eq!(
                h.get("upgrade").map(|v| v.to_str().unwrap()),
                want,
                "{upgrade} / {connection}"
            );
            if connection.contains("HTTP2-Settings") {
                assert!(!h.contains_key("http2-settings"), "{h:?}");
            }
        }
    }

    #[test]
    fn underscores_table() {
        let base = [("x_user", "admin"), ("x-ok", "1")];
        let mut h = map(&base);
        apply_underscores(&mut h, HeadersWithUnderscores::Allow).unwrap();
        assert_eq!(h.len(), 2);
        apply_underscores(&mut h, HeadersWithUnderscores::Drop).unwrap();
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-ok"));
        let mut h = map(&base);
        assert_eq!(
            apply_underscores(&mut h, HeadersWithUnderscores::Reject),
            Err("x_user".to_owned())
        );
    }

    #[test]
    fn forwarded_headers() {
        let mut h = map(&[
            ("x-forwarded-proto", "http"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        set_forwarded(&mut h, &peer_value("127.0.0.1".parse().unwrap()), || {
            HeaderValue::from_static("id-1")
        });
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-request-id"], "id-1");
        let mut h = map(&[("x-request-id", "mine")]);
        set_forwarded(
            &mut h,
            &peer_value("::ffff:10.1.2.3".parse().unwrap()),
            || HeaderValue::from_static("new"),
        );
        assert_eq!(h["x-request-id"], "mine");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        // An empty or blank previous value is replaced, not joined.
        let mut h = map(&[("x-forwarded-for", "  ")]);
        set_forwarded(&mut h, &peer_value("::1".parse().unwrap()), || {
            HeaderValue::from_static("id")
        });
        assert_eq!(h["x-forwarded-for"], "::1");
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_and_others_are_untouched() {
        for name in standard_hop_by_hop() {
            let mut h = map(&[(name.as_str(), "x"), ("x-kept", "1")]);
            remove_hop_by_hop(&mut h, false);
            assert_eq!(h.len(), 1, "{name}: {h:?}");
        }
        let mut h = map(&[("x-kept", "1"), ("host", "a"), ("x-forwarded-for", "b")]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 3);
    }

    fn identity() -> PeerIdentity {
        PeerIdentity {
            uri_sans: vec!["spiffe://test.client".into()],
            dns_sans: vec!["a.example.com".into(), "b.example.com".into()],
            subject: "CN=client,O=Example, Inc.".into(),
            cert_sha256: [0xab; 32],
            ..PeerIdentity::default()
        }
    }

    #[test]
    fn xfcc_element_format() {
        let e = xfcc_element(&["spiffe://gatehouse".into()], &identity());
        assert_eq!(
            e,
            format!(
                "By=spiffe://gatehouse;Hash={};Subject=\"CN=client,O=Example, Inc.\";URI=spiffe://test.client;DNS=a.example.com;DNS=b.example.com",
                "ab".repeat(32)
            )
        );
        let e = xfcc_element(&[], &identity());
        assert!(e.starts_with("Hash="), "{e}");
    }

    #[test]
    fn xfcc_modes() {
        let client = [("x-forwarded-client-cert", "By=evil;Hash=00")];
        for (mode, element, want) in [
            (ForwardClientCert::Sanitize, Some("Hash=11"), None),
            (ForwardClientCert::Sanitize, None, None),
            (
                ForwardClientCert::SanitizeSet,
                Some("Hash=11"),
                Some("Hash=11"),
            ),
            (ForwardClientCert::SanitizeSet, None, None),
            (
                ForwardClientCert::AppendForward,
                Some("Hash=11"),
                Some("By=evil;Hash=00,Hash=11"),
            ),
            (ForwardClientCert::AppendForward, None, None),
        ] {
            let mut h = map(&client);
            let element = element.map(HeaderValue::from_static);
            apply_xfcc(&mut h, mode, element.as_ref());
            assert_eq!(
                h.get(&XFCC).map(|v| v.to_str().unwrap()),
                want,
                "{mode:?} {element:?}"
            );
        }
    }
}

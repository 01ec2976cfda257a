//! Request integrity (SPEC "Malformed requests", forwarding, access log): what the upstream
//! receives is exactly what was authorized. Nothing the client sends (XFCC, Host, forwarding
//! headers, both framing headers, log-breaking bytes) can satisfy a rule, name another host,
//! smuggle a request or forge a log line; the proxy's own headers carry the verified
//! certificate, and `OPTIONS *` is answered by the proxy over HTTP/1.1 and HTTP/2.

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::upstream::{Script, scripted_upstream};
use common::*;
use http_body_util::Full;

#[tokio::test]
async fn options_star_is_answered_204_over_http1_and_http2() {
    let echo = start_echo().await;
    let (proxy, opts, _pki) = proxy_to(echo, "").await;
    let res = raw_h1(
        &proxy,
        &opts,
        b"OPTIONS * HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 204"), "{res}");
    // HTTP/2: `:path *`.
    let target = http::Uri::builder()
        .scheme("https")
        .authority("test.com")
        .path_and_query("*")
        .build()
        .unwrap();
    let req = http::Request::options(target)
        .version(http::Version::HTTP_2)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = request(proxy.https, "test.com", &opts.clone().h2(), req)
        .await
        .unwrap();
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn a_client_sent_xfcc_or_host_cannot_satisfy_a_condition() {
    let echo = start_echo().await;
    let policies = r#"
[[policy]]
name = "needs-xfcc"
action = "allow"
  [[policy.rules]]
  when = [{ key = "request.headers[x-forwarded-client-cert]", values = ["*"] }]

[[policy]]
name = "deny-other-host"
action = "deny"
  [[policy.rules]]
  when = [{ key = "request.headers[host]", not_values = ["test.com"] }]
"#;
    let (proxy, opts, _pki) = proxy_to(echo, policies).await;
    let forged = http::Request::get("/headers")
        .header("host", "test.com")
        .header("x-forwarded-client-cert", "By=spiffe://admin;Hash=00")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = request(proxy.https, "test.com", &opts.clone().h1(), forged)
        .await
        .unwrap();
    assert_eq!(r.status, 403, "a client-sent XFCC satisfied the condition");
    // HTTP/2: a `host` header other than :authority is not what policies see.
    let (proxy, opts, _pki) = proxy_to(
        start_echo().await,
        &policies.replace("action = \"allow\"", "action = \"audit\""),
    )
    .await;
    let req = http::Request::get("https://test.com/headers")
        .version(http::Version::HTTP_2)
        .header("host", "evil.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = request(proxy.https, "test.com", &opts.clone().h2(), req)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["headers"]["host"],
        "test.com",
        "the upstream got the client's host"
    );
}

#[tokio::test]
async fn bad_hosts_get_400_and_host_rules_match_every_spelling_of_a_host() {
    let echo = start_echo().await;
    let (pki, client, _) = test_com().await;
    let cfg = config(
        &pki,
        &["*"],
        echo,
        "",
        r#"
[[policy]]
name = "deny-admin"
action = "deny"
  [[policy.rules]]
  to.hosts = ["admin.example.com"]
"#,
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();
    for (head, want, upstream_host) in [
        ("Host: test.com\r\nHost: other.com", 400, None),
        ("Host: a.com:1:2", 400, None),
        ("Host: a.com:", 400, None),
        ("Host: user@test.com", 400, None),
        ("Host: [::1", 400, None),
        ("Host: test.com.", 200, Some("test.com")),
        ("Host: test.com.:8443", 200, Some("test.com:8443")),
        ("Host: [::1]:8443", 200, Some("[::1]:8443")),
        ("Host: admin.example.com.", 403, None),
        ("Host: ADMIN.example.com.:443", 403, None),
        ("Host: admin.example.com", 403, None),
    ] {
        let req = format!("GET /headers HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n");
        let res = raw(proxy.https, "test.com", &opts, req.as_bytes(), STEP).await;
        assert_eq!(status_of(&res), want, "{head:?}: {res}");
        if let Some(host) = upstream_host {
            let json = read_response(&mut res.as_bytes(), &mut Vec::new())
                .await
                .unwrap_or_else(|e| panic!("{head:?}: {e}: {res}"))
                .json();
            assert_eq!(json["headers"]["host"], host, "{head:?}");
        }
    }
}

#[tokio::test]
async fn an_escaped_slash_redirect_never_names_another_host() {
    let echo = start_echo().await;
    let (proxy, opts, _pki) = proxy_to(echo, "[proxy]\npath_normalization = \"base\"").await;
    for (path, location) in [
        ("/%2Fevil.com", "/evil.com"),
        ("/%2F%2Fevil.com/x?y=1", "/evil.com/x?y=1"),
        ("/%5Cevil.com", "/evil.com"),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n");
        let res = raw_h1(&proxy, &opts, req.as_bytes()).await;
        assert_eq!(status_of(&res), 307, "{res}");
        let got = res
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or_default();
        assert_eq!(got.trim(), location, "{path}");
    }
}

#[tokio::test]
async fn a_pipelined_request_with_both_framing_headers_is_refused() {
    let (up, seen) = scripted_upstream(Script::Answer("")).await;
    let (proxy, opts, _pki) = proxy_to(up, "").await;
    let pipelined = b"GET /first HTTP/1.1\r\nHost: test.com\r\n\r\n\
        POST /second HTTP/1.1\r\nHost: test.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: test.com\r\n\r\n";
    let res = raw_h1(&proxy, &opts, pipelined).await;
    let statuses: Vec<u16> = res
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| status_of(&res[i..]))
        .collect();
    assert_eq!(statuses, [200, 400], "{res}");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "only the first request was forwarded"
    );
}

#[tokio::test]
async fn forwarding_headers_are_removed_unless_trusted_and_proxy_credentials_always() {
    let echo = start_echo().await;
    let sent = [
        ("forwarded", "for=1.2.3.4;host=evil"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "1"),
        ("x-forwarded-prefix", "/admin"),
        ("x-real-ip", "1.2.3.4"),
        ("proxy-authorization", "Basic c2VjcmV0"),
        ("client-cert", ":Zm9yZ2Vk:"),
        ("client-cert-chain", ":Zm9yZ2Vk:"),
    ];
    for trusted in [false, true] {
        let extra = format!("[proxy]\ntrust_forwarded_headers = {trusted}");
        let (proxy, opts, _pki) = proxy_to(echo, &extra).await;
        let mut req = http::Request::get("/headers").header("host", "test.com");
        for (k, v) in sent {
            req = req.header(k, v);
        }
        let r = request(
            proxy.https,
            "test.com",
            &opts.clone().h1(),
            req.body(Full::new(Bytes::new())).unwrap(),
        )
        .await
        .unwrap();
        let headers = &r.json()["headers"];
        for (k, v) in sent {
            let kept = trusted && !k.starts_with("proxy-") && !k.starts_with("client-cert");
            let want = kept.then_some(v);
            assert_eq!(
                headers.get(k).and_then(|v| v.as_str()),
                want,
                "{k} (trusted: {trusted})"
            );
        }
    }
}

#[tokio::test]
async fn rfc9440_client_cert_headers_carry_the_verified_certificate() {
    use base64::Engine as _;
    let echo = start_echo().await;
    let (pki, client, _) = test_com().await;
    let cfg = config(
        &pki,
        &["test.com"],
        echo,
        "",
        "[proxy]\nclient_cert_headers = \"rfc9440\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();
    let req = http::Request::get("/headers")
        .header("host", "test.com")
        .header("client-cert", ":Zm9yZ2Vk:")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = request(proxy.https, "test.com", &opts, req).await.unwrap();
    let b64 = |der: &[u8]| {
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    assert_eq!(r.json()["headers"]["client-cert"], b64(&client.der));
    assert_eq!(
        r.json()["headers"]["client-cert-chain"],
        b64(&client.ca_der)
    );
}

#[tokio::test]
async fn the_text_access_log_cannot_be_forged_and_drops_are_exported() {
    let echo = start_echo().await;
    let (pki, client, _) = test_com().await;
    let cfg = config(&pki, &["test.com"], echo, "", "");
    let (proxy, log) =
        Proxy::start_with_log_format(pki.dir.path(), &cfg, gatehouse::config::LogFormat::Text)
            .await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();
    let res = raw(
        proxy.https,
        "test.com",
        &opts,
        b"GET /status/200 HTTP/1.1\r\nHost: x decision=allow\r\nConnection: close\r\n\r\n",
        STEP,
    )
    .await;
    assert_eq!(status_of(&res), 400, "{res}");
    let lines = log.lines(1).await;
    let line = &lines[0];
    // The forged field stays inside the quoted host; the real decision field is the only one.
    assert!(line.contains(" host=\"x decision=allow\" path="), "{line}");
    assert!(line.ends_with(" decision=- policy=-"), "{line}");
    assert!(line.starts_with("event=request "), "{line}");
    assert_eq!(proxy.metric("gatehouse_access_log_dropped_total"), 0.0);
    assert!(
        proxy
            .metrics
            .encode()
            .contains("gatehouse_access_log_dropped_total 0")
    );
}

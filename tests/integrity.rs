//! Request integrity and upstream faults (SPEC "Malformed requests", "Upstream keep-alive",
//! forwarding, access log): what the upstream receives is exactly what was authorized, and
//! each fault is blamed on the side that caused it.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::upstream::{Script, scripted_upstream};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `test.com` setup (mTLS required, the test client) forwarding to `upstream`.
async fn start(upstream: std::net::SocketAddr, extra: &str) -> (Proxy, ClientOpts, TestPki) {
    let (pki, client, _) = test_com().await;
    let cfg = config(&pki, &["test.com"], upstream, "", extra);
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    (proxy, opts, pki)
}

/// Raw bytes over one TLS connection (HTTP/1.1); everything the server sends until it closes.
async fn raw_h1(proxy: &Proxy, opts: &ClientOpts, bytes: &[u8]) -> String {
    raw(proxy.https, "test.com", &opts.clone().h1(), bytes, STEP).await
}

#[tokio::test]
async fn a_malformed_chunk_is_the_clients_fault_and_never_completes_upstream() {
    let (up, seen) = scripted_upstream(Script::ReadBody).await;
    let (proxy, opts, _pki) = start(up, "").await;
    let res = raw_h1(
        &proxy,
        &opts,
        b"POST /upload HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    assert!(
        res.contains("malformed or incomplete request body"),
        "{res}"
    );
    seen.closed().await;
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "the head was forwarded"
    );
    assert_eq!(
        seen.complete_chunked.load(Ordering::SeqCst),
        0,
        "the upstream got a complete request"
    );
    proxy
        .expect_metric("gatehouse_requests_total{route=\"0\",code=\"400\"}", 1.0)
        .await;
    assert!(
        !proxy.metrics.encode().contains("code=\"502\""),
        "counted as an upstream fault"
    );
}

#[tokio::test]
async fn an_upstream_closing_after_every_response_costs_no_failed_requests() {
    let (up, seen) = scripted_upstream(Script::CloseAfterEach).await;
    let (proxy, opts, _pki) = start(up, "").await;
    let tls = connect(proxy.https, "test.com", &opts.clone().h1())
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1000 {
        send.ready().await.unwrap();
        let res =
            tokio::time::timeout(STEP, send.send_request(get("test.com", &format!("/n/{i}"))))
                .await
                .unwrap()
                .unwrap();
        *statuses.entry(res.status().as_u16()).or_insert(0) += 1;
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(
        statuses,
        [(200, 1000)].into(),
        "statuses of 1000 sequential GETs"
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        seen.connections.load(Ordering::SeqCst)
    );
    let retries = proxy.metric("gatehouse_upstream_retries_total{route=\"0\"}");
    println!("1000 GETs, {retries} retried on a new connection");
}

#[tokio::test]
async fn an_idempotent_request_is_retried_once_and_a_post_with_a_body_is_not() {
    let (up, seen) = scripted_upstream(Script::DieOnSecond).await;
    let (proxy, opts, _pki) = start(up, "").await;
    let h1 = opts.clone().h1();
    // First GET: a new connection, answered and pooled.
    let r = request(proxy.https, "test.com", &h1, get("test.com", "/a"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Second GET: the pooled connection dies on it before any response: retried, 200.
    let r = request(proxy.https, "test.com", &h1, get("test.com", "/b"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    proxy
        .expect_metric("gatehouse_upstream_retries_total{route=\"0\"}", 1.0)
        .await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    // A POST with a body on the (now pooled) retry connection: it dies on it, not retried.
    let post = http::Request::post("/c")
        .header("host", "test.com")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let r = request(proxy.https, "test.com", &h1, post).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        proxy.metric("gatehouse_upstream_retries_total{route=\"0\"}"),
        1.0
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        4,
        "the POST reached the upstream once"
    );
}

#[tokio::test]
async fn connection_close_and_keep_alive_timeout_are_honoured() {
    for (extra, want_connections) in [
        ("connection: close\r\n", 3),
        // timeout=1, less 1 s: never reused.
        ("keep-alive: timeout=1\r\n", 3),
        // timeout=30: reused.
        ("keep-alive: timeout=30\r\n", 1),
        ("", 1),
    ] {
        let (up, seen) = scripted_upstream(Script::Answer(extra)).await;
        let (proxy, opts, _pki) = start(up, "").await;
        let tls = connect(proxy.https, "test.com", &opts.clone().h1())
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        for _ in 0..3 {
            send.ready().await.unwrap();
            let res = send.send_request(get("test.com", "/")).await.unwrap();
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            want_connections,
            "upstream answering with {extra:?}"
        );
    }
}

#[tokio::test]
async fn options_star_is_answered_204_over_http1_and_http2() {
    let echo = start_echo().await;
    let (proxy, opts, _pki) = start(echo, "").await;
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
    let (proxy, opts, _pki) = start(echo, policies).await;
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
    let (proxy, opts, _pki) = start(
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
async fn host_rules() {
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
            let body = &res[res.find("\r\n\r\n").unwrap() + 4..];
            let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| {
                // A chunked body: take the JSON between the chunk lines.
                let start = body.find('{').unwrap_or(0);
                let end = body.rfind('}').map_or(body.len(), |e| e + 1);
                serde_json::from_str(&body[start..end]).unwrap_or_else(|_| panic!("{e}: {body}"))
            });
            assert_eq!(json["headers"]["host"], host, "{head:?}");
        }
    }
}

#[tokio::test]
async fn an_escaped_slash_redirect_never_names_another_host() {
    let echo = start_echo().await;
    let (proxy, opts, _pki) = start(echo, "[proxy]\npath_normalization = \"base\"").await;
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
    let (proxy, opts, _pki) = start(up, "").await;
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
        let (proxy, opts, _pki) = start(echo, &extra).await;
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

#[tokio::test]
async fn a_request_over_http2_with_a_stalled_body_does_not_reach_the_upstream_whole() {
    // The HTTP/2 side of the malformed-body rule: a stream reset mid-body aborts the upstream
    // request (no complete request), and nothing is counted as an upstream fault.
    let (up, seen) = scripted_upstream(Script::ReadBody).await;
    let (proxy, opts, _pki) = start(up, "").await;
    let tls = connect(proxy.https, "test.com", &opts.clone().h2())
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(
        b"0123456789",
    ))))
    .await
    .unwrap();
    let body = http_body_util::StreamBody::new(ReceiverStream(rx));
    let req = http::Request::post("https://test.com/upload")
        .version(http::Version::HTTP_2)
        .header("content-length", "1000")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { send.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client gives up mid-body: its stream is reset.
    tx.send(Err(std::io::Error::other("client gave up")))
        .await
        .unwrap();
    let _ = tokio::time::timeout(STEP, pending).await;
    seen.closed().await;
    assert!(seen.body_bytes.load(Ordering::SeqCst) < 1000);
    assert!(!proxy.metrics.encode().contains("code=\"502\""));
    driver.abort();
}

#[tokio::test]
async fn responses_keep_their_framing_after_a_body_error() {
    // After a 400 for a bad body, HTTP/1.1 closes the connection (the rest is unread).
    let (up, _seen) = scripted_upstream(Script::ReadBody).await;
    let (proxy, opts, _pki) = start(up, "").await;
    let mut tls = connect(proxy.https, "test.com", &opts.clone().h1())
        .await
        .unwrap();
    tls.write_all(
        b"POST / HTTP/1.1\r\nHost: test.com\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, tls.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let res = String::from_utf8_lossy(&out);
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    assert!(
        res.to_ascii_lowercase().contains("connection: close"),
        "{res}"
    );
}

//! Listeners and the connection lifecycle: TLS versions, the plaintext redirect (scenario 4),
//! admin endpoints, graceful drain, idle timeout, the connection limit, the access log.

mod common;

use std::time::Duration;

use common::*;
use gatehouse::dev::pki::{KeyType, LeafSpec};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn plain_get(addr: std::net::SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn wildcard_ecdsa_server_is_tls13_only_and_plaintext_redirects_to_https() {
    let pki = TestPki::new();
    let mut server = LeafSpec::server(&["*.k.example.com"]);
    server.key_type = KeyType::EcdsaP256;
    pki.issue("server", &server);
    let client = pki.client("spiffe://test.client");
    let echo = start_echo().await;
    let cfg = config(&pki, &["*.k.example.com"], echo, "", "").replace(
        "https = \"127.0.0.1:0\"",
        "https = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));

    let r = request(
        proxy.https,
        "httpbin2.k.example.com",
        &opts,
        get("httpbin2.k.example.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200);

    let mut tls12 = opts.clone();
    tls12.tls12_only = true;
    assert!(
        connect(proxy.https, "httpbin2.k.example.com", &tls12)
            .await
            .is_err(),
        "TLS 1.2 must be refused by default"
    );
    // The SNI chose the server before the version negotiation failed.
    proxy
        .expect_metric(&handshakes("*.k.example.com", "error"), 1.0)
        .await;

    let http = proxy.http.unwrap();
    let raw = plain_get(http, "GET /status/200?x=1 HTTP/1.1\r\nHost: httpbin2.k.example.com:8080\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&raw), 301, "{raw}");
    let location = format!(
        "https://httpbin2.k.example.com:{}/status/200?x=1",
        proxy.https.port()
    );
    assert_eq!(header(&raw, "location"), Some(location.as_str()));

    let raw = plain_get(http, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&raw), 400, "no host: {raw}");
}

#[tokio::test]
async fn redirect_port_443_is_left_out_and_tls12_can_be_enabled() {
    let (pki, client, echo) = test_com().await;
    let cfg = config(&pki, &["test.com"], echo, "", "").replace(
        "https = \"127.0.0.1:0\"",
        "https = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nredirect_https_port = 443\n[tls]\nmin_version = \"1.2\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let raw = plain_get(
        proxy.http.unwrap(),
        "GET /a HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(header(&raw, "location"), Some("https://test.com/a"));
    let mut tls12 = ClientOpts::new(&pki, Some(&client));
    tls12.tls12_only = true;
    let r = request(
        proxy.https,
        "test.com",
        &tls12,
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200, "min_version = 1.2 accepts TLS 1.2");
}

#[tokio::test]
async fn admin_endpoints() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let echo = start_echo().await;
    let cfg = config(&pki, &["test.com"], echo, "", "").replace(
        "https = \"127.0.0.1:0\"",
        "https = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let admin = proxy.admin.unwrap();
    let get = |path: &str| {
        plain_get(
            admin,
            Box::leak(
                format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    .into_boxed_str(),
            ),
        )
    };
    assert_eq!(status_of(&get("/healthz").await), 200);
    assert_eq!(status_of(&get("/readyz").await), 200);
    let metrics = get("/metrics").await;
    assert_eq!(status_of(&metrics), 200);
    for line in [
        "# TYPE gatehouse_tls_handshakes counter",
        "gatehouse_tls_handshakes_total{server=\"test.com\",result=\"ok\"} 0",
        "gatehouse_connections_active{listener=\"https\"} 0",
        "gatehouse_denied_requests_total{reason=\"no_allow_match\"} 0",
        "gatehouse_reloads_total{result=\"error\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    assert!(
        metrics.contains(
            "gatehouse_cert_not_after_timestamp_seconds{server=\"test.com\",kind=\"server\""
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "gatehouse_cert_not_after_timestamp_seconds{server=\"test.com\",kind=\"client_ca\""
        ),
        "{metrics}"
    );

    let certs = get("/certs").await;
    let body = certs.split_once("\r\n\r\n").unwrap().1;
    let list: serde_json::Value = serde_json::from_str(body).unwrap();
    let list = list.as_array().unwrap();
    let kinds: Vec<&str> = list.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["server", "server_chain", "client_ca"]);
    let leaf = &list[0];
    assert_eq!(leaf["server"], "test.com");
    assert_eq!(leaf["subject"], "CN=test.com");
    assert_eq!(leaf["sans"], serde_json::json!(["DNS:test.com"]));
    let serial = leaf["serial"].as_str().unwrap();
    assert!(
        !serial.starts_with('0')
            && serial
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{serial}"
    );
    assert!(leaf["not_after"].as_str().unwrap().ends_with('Z'));
    // The test PKI's CA lives 30 days, and a leaf never outlives its CA.
    let days = leaf["days_left"].as_i64().unwrap();
    assert!((28..=30).contains(&days), "{days}");
    assert_eq!(status_of(&get("/nope").await), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_finishes_in_flight_requests() {
    let (pki, client, echo) = test_com().await;
    let cfg = config(
        &pki,
        &["test.com"],
        echo,
        "",
        "[proxy]\ndrain_timeout = \"10s\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let addr = proxy.https;
    let opts = ClientOpts::new(&pki, Some(&client));
    let slow =
        tokio::spawn(
            async move { request(addr, "test.com", &opts, get("test.com", "/delay/1")).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    proxy.shutdown().await.unwrap();
    assert_eq!(
        slow.await.unwrap().unwrap().status,
        200,
        "the in-flight request completes"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drain ends when the last request does"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn drain_timeout_bounds_shutdown() {
    let (pki, client, echo) = test_com().await;
    let cfg = config(
        &pki,
        &["test.com"],
        echo,
        "",
        "[proxy]\ndrain_timeout = \"500ms\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let (addr, opts) = (proxy.https, ClientOpts::new(&pki, Some(&client)));
    let _slow = tokio::spawn(async move {
        request(addr, "test.com", &opts, get("test.com", "/delay/20")).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    proxy.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_connections_are_closed_after_idle_timeout() {
    let (pki, client, echo) = test_com().await;
    let cfg = config(
        &pki,
        &["test.com"],
        echo,
        "",
        "[proxy]\nidle_timeout = \"1s\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let mut tls = connect(proxy.https, "test.com", &opts).await.unwrap();
    tls.write_all(b"GET /status/200 HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(STEP, tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn max_connections_holds_extra_connections_in_the_backlog() {
    let (pki, client, echo) = test_com().await;
    let cfg = config(
        &pki,
        &["test.com"],
        echo,
        "",
        "[proxy]\nmax_connections = 1",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let first = connect(proxy.https, "test.com", &opts).await.unwrap();
    // The second TCP connect succeeds (kernel backlog) but nobody accepts it: no handshake.
    let second = tokio::time::timeout(
        Duration::from_millis(700),
        connect(proxy.https, "test.com", &opts),
    )
    .await;
    assert!(
        second.is_err(),
        "a second connection was served past max_connections = 1"
    );
    drop(first);
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(
        r.unwrap().status,
        200,
        "served once the first connection closed"
    );
}

#[tokio::test]
async fn json_access_log_has_specs_fields() {
    let (pki, client, echo) = test_com().await;
    let cfg = config(&pki, &["test.com"], echo, "", DENY_TEAPOT);
    let (proxy, log) = Proxy::start_with_log(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    assert_eq!(
        request(
            proxy.https,
            "test.com",
            &opts,
            get("test.com", "/status//418")
        )
        .await
        .unwrap()
        .status,
        403
    );
    assert_eq!(
        request(
            proxy.https,
            "test.com",
            &opts,
            get("test.com", "/bytes/1000")
        )
        .await
        .unwrap()
        .status,
        200
    );
    let lines = log.lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let denied: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let ok: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    for key in [
        "time",
        "peer",
        "sni",
        "principal",
        "method",
        "host",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "route",
        "upstream",
        "decision",
        "policy",
    ] {
        assert!(denied.get(key).is_some(), "missing {key}: {denied}");
    }
    assert_eq!(
        denied["path"], "/status/418",
        "the normalized path is logged"
    );
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["policy"], "deny-test-client-teapot");
    assert_eq!(denied["principal"], "test.client");
    assert_eq!(denied["status"], 403);
    assert_eq!(ok["bytes"], 1000);
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["policy"], serde_json::Value::Null);
    assert_eq!(ok["route"], "0");
    assert_eq!(ok["upstream"], format!("http://{echo}"));
    assert_eq!(ok["sni"], "test.com");
    assert_eq!(ok["peer"], "127.0.0.1");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_counts_as_a_handshake_timeout() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let echo = start_echo().await;
    let cfg = config(
        &pki,
        &["test.com"],
        echo,
        "",
        "[proxy]\nhandshake_timeout = \"300ms\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let mut silent = TcpStream::connect(proxy.https).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP, silent.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the server closes a silent connection");
    proxy
        .expect_metric(&handshakes("none", "timeout"), 1.0)
        .await;
}

#[tokio::test]
async fn cert_expiry_gauges_carry_server_kind_serial_and_not_after() {
    let pki = TestPki::new();
    let leaf = pki.server("server", &["test.com"]);
    let echo = start_echo().await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], echo, "", "")).await;
    let ca_der = rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    for (kind, der) in [
        ("server", leaf.der.as_slice()),
        ("client_ca", ca_der.as_ref()),
    ] {
        let s = gatehouse::tls::credentials::CertSummary::parse(der).unwrap();
        let series = format!(
            "gatehouse_cert_not_after_timestamp_seconds{{server=\"test.com\",kind=\"{kind}\",serial=\"{}\"}}",
            s.serial
        );
        proxy.expect_metric(&series, s.not_after as f64).await;
    }
}

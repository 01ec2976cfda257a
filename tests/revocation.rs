//! Revocation and expiry reach every connection (SPEC): a resumed TLS session is checked
//! like a full handshake, a reload that refuses a client closes its open connections, and
//! a connection ends at its client certificate's `notAfter`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gatehouse::dev::pki::LeafSpec;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// A client leaf for `spiffe://<name>` valid for `secs` more seconds, with `serial`.
fn short_lived(pki: &TestPki, name: &str, secs: i64, serial: u64) -> gatehouse::dev::pki::Leaf {
    let mut spec = LeafSpec::client_uri(&format!("spiffe://{name}"));
    spec.not_after = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    spec.serial = Some(serial);
    pki.issue(name, &spec)
}

/// The proxy for test.com with a CRL (`ca.crl`, revoking serial 0x5eed only) and `rest`.
async fn start_with_crl(pki: &TestPki, echo: std::net::SocketAddr, rest: &str) -> Proxy {
    pki.write("ca.crl", &pki.ca.crl(&[0x5eed]).unwrap());
    let crl = format!(r#"client_crl = ["{}"]"#, pki.path("ca.crl").display());
    let cfg = config(pki, &["test.com"], echo, &crl, rest);
    Proxy::start(pki.dir.path(), &cfg).await
}

/// A TLS connection with a given client config (sharing its session cache).
async fn connect_with(
    addr: std::net::SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("test.com").unwrap();
    tokio::time::timeout(STEP, TlsConnector::from(cfg.clone()).connect(name, tcp))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_resumed_session_of_an_expired_client_is_refused() {
    let (pki, _, echo) = test_com().await;
    let client = short_lived(&pki, "soon.expired", 3, 0x51);
    let cfg = config(&pki, &["test.com"], echo, "", "");
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    // One client config: its session cache is what resumption uses.
    let tls_cfg = ClientOpts::new(&pki, Some(&client)).h1().config();

    let first = connect_with(proxy.https, &tls_cfg).await;
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let r = request_on(first, get("test.com", "/status/200"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Before expiry a resumed session is served (resumption works at all).
    let second = connect_with(proxy.https, &tls_cfg).await;
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let r = request_on(second, get("test.com", "/status/200"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    tokio::time::sleep(Duration::from_millis(4200)).await;
    let third = connect_with(proxy.https, &tls_cfg).await;
    assert_eq!(
        third.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the client resumed"
    );
    let r = request_on(third, get("test.com", "/status/200")).await;
    assert!(
        r.is_err(),
        "an expired client was served on a resumed session: {r:?}"
    );
    proxy
        .expect_metric(&handshakes("test.com", "expired_client_cert"), 1.0)
        .await;
}

/// The handshake kind of a new connection with `cfg` (after one request on it, which is when
/// a TLS 1.3 client receives the session to resume next time).
async fn kind_of_next(proxy: &Proxy, cfg: &Arc<rustls::ClientConfig>) -> rustls::HandshakeKind {
    let tls = connect_with(proxy.https, cfg).await;
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    let r = request_on(tls, get("test.com", "/status/200"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    kind
}

#[tokio::test]
async fn sessions_are_forgotten_on_reload_and_not_kept_when_the_cache_is_off() {
    use rustls::HandshakeKind::{Full, Resumed};
    let (pki, client, echo) = test_com().await;
    let cfg = config(&pki, &["test.com"], echo, "", "");
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let tls_cfg = ClientOpts::new(&pki, Some(&client)).h1().config();
    assert_eq!(kind_of_next(&proxy, &tls_cfg).await, Full);
    assert_eq!(kind_of_next(&proxy, &tls_cfg).await, Resumed);
    // A reload (even of the same files) starts with an empty cache: whatever the new
    // configuration says about this client is checked in a full handshake.
    proxy.reloader.reload("test").unwrap();
    assert_eq!(
        kind_of_next(&proxy, &tls_cfg).await,
        Full,
        "resumed across a reload"
    );
    assert_eq!(kind_of_next(&proxy, &tls_cfg).await, Resumed);

    let off = TestPki::new();
    off.server("server", &["test.com"]);
    let client = off.client("spiffe://test.client");
    let cfg = config(
        &off,
        &["test.com"],
        echo,
        "",
        "[tls]\nsession_cache_size = 0\n",
    );
    let proxy = Proxy::start(off.dir.path(), &cfg).await;
    let tls_cfg = ClientOpts::new(&off, Some(&client)).h1().config();
    for _ in 0..3 {
        assert_eq!(
            kind_of_next(&proxy, &tls_cfg).await,
            Full,
            "session_cache_size = 0"
        );
    }
}

/// A client session store that counts the TLS 1.3 tickets the server sends.
#[derive(Debug)]
struct CountingTickets {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingTickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

#[tokio::test]
async fn each_handshake_full_or_resumed_gives_the_client_one_session() {
    use rustls::HandshakeKind::{Full, Resumed};
    use std::sync::atomic::Ordering::SeqCst;
    let (pki, client, echo) = test_com().await;
    let cfg = config(&pki, &["test.com"], echo, "", "");
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let store = Arc::new(CountingTickets {
        inner: rustls::client::ClientSessionMemoryCache::new(16),
        tickets: Default::default(),
    });
    let mut tls_cfg = (*ClientOpts::new(&pki, Some(&client)).h1().config()).clone();
    tls_cfg.resumption = rustls::client::Resumption::store(store.clone());
    let tls_cfg = Arc::new(tls_cfg);

    // One ticket per handshake: each is a server cache entry holding the client's chain.
    assert_eq!(kind_of_next(&proxy, &tls_cfg).await, Full);
    assert_eq!(
        store.tickets.load(SeqCst),
        1,
        "tickets after a full handshake"
    );
    // The resumed handshake uses that ticket and gives a new one, so the client resumes
    // again and again, one connection after another.
    for n in 2..=4 {
        assert_eq!(kind_of_next(&proxy, &tls_cfg).await, Resumed);
        assert_eq!(
            store.tickets.load(SeqCst),
            n,
            "tickets after resumed handshakes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_swap_closes_the_revoked_clients_open_connections() {
    let (pki, good, echo) = test_com().await;
    let revoked = short_lived(&pki, "to.revoke", 3600, 0xbad);
    let proxy = start_with_crl(&pki, echo, "").await;
    let bad = ClientOpts::new(&pki, Some(&revoked));
    let fine = ClientOpts::new(&pki, Some(&good));

    // The revoked client holds an HTTP/1.1 and an HTTP/2 connection; another client one.
    let mut h1 = connect(proxy.https, "test.com", &bad.clone().h1())
        .await
        .unwrap();
    h1.write_all(b"GET /status/200 HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(STEP, h1.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let tls = connect(proxy.https, "test.com", &bad.clone().h2())
        .await
        .unwrap();
    let (mut h2, h2_conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let h2_done = tokio::spawn(h2_conn);
    let r = h2
        .send_request(get_h2("test.com", "/status/200"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tls = connect(proxy.https, "test.com", &fine.clone().h1())
        .await
        .unwrap();
    let (mut other, other_conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(other_conn);
    assert_eq!(
        other
            .send_request(get("test.com", "/status/200"))
            .await
            .unwrap()
            .status(),
        200
    );

    // The new CRL lands the way a writer would put it: temp file, then rename.
    let swapped = Instant::now();
    let tmp = pki.write("ca.crl.tmp", &pki.ca.crl(&[0x5eed, 0xbad]).unwrap());
    std::fs::rename(tmp, pki.path("ca.crl")).unwrap();

    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), h1.read_to_end(&mut rest))
        .await
        .expect("the revoked client's HTTP/1.1 connection stayed open")
        .ok();
    let h1_closed = swapped.elapsed();
    tokio::time::timeout(Duration::from_secs(3), h2_done)
        .await
        .expect("the revoked client's HTTP/2 connection stayed open")
        .ok();
    let h2_closed = swapped.elapsed();
    // Within 2 s of the reload, which itself lands within ~1.3 s of the write (debounce).
    assert!(
        h1_closed < Duration::from_secs(3) && h2_closed < Duration::from_secs(3),
        "{h1_closed:?} {h2_closed:?}"
    );
    proxy
        .expect_metric(
            "gatehouse_connections_closed_total{reason=\"revoked\"}",
            2.0,
        )
        .await;
    // The other client's open connection keeps working.
    other.ready().await.unwrap();
    assert_eq!(
        other
            .send_request(get("test.com", "/status/200"))
            .await
            .unwrap()
            .status(),
        200
    );
    // And the revoked client cannot come back.
    let again = request(
        proxy.https,
        "test.com",
        &bad.clone().h1(),
        get("test.com", "/status/200"),
    )
    .await;
    assert!(again.is_err(), "{again:?}");
}

#[tokio::test]
async fn a_connection_ends_when_its_client_certificate_expires() {
    let (pki, _, echo) = test_com().await;
    let client = short_lived(&pki, "brief", 3, 0x77);
    let cfg = config(
        &pki,
        &["test.com"],
        echo,
        "",
        "[proxy]\nidle_timeout = \"5m\"",
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();
    let mut tls = connect(proxy.https, "test.com", &opts).await.unwrap();
    let opened = Instant::now();
    tls.write_all(b"GET /status/200 HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(STEP, tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest))
        .await
        .expect("the connection outlived its client certificate")
        .ok();
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_secs(2) && lived < Duration::from_secs(7),
        "closed after {lived:?}"
    );
    proxy
        .expect_metric(
            "gatehouse_connections_closed_total{reason=\"cert_expired\"}",
            1.0,
        )
        .await;
}

#[tokio::test]
async fn a_revoked_or_expired_clients_websocket_tunnel_is_closed() {
    let (pki, good, echo) = test_com().await;
    let revoked = short_lived(&pki, "to.revoke", 3600, 0xbad);
    let brief = short_lived(&pki, "brief", 4, 0x77);
    let proxy = start_with_crl(&pki, echo, "[proxy]\nidle_timeout = \"5m\"").await;
    let mut to_revoke = open_tunnel(&proxy, &ClientOpts::new(&pki, Some(&revoked))).await;
    let mut expiring = open_tunnel(&proxy, &ClientOpts::new(&pki, Some(&brief))).await;
    let opened = Instant::now();
    let mut fine = open_tunnel(&proxy, &ClientOpts::new(&pki, Some(&good))).await;

    let tmp = pki.write("ca.crl.tmp", &pki.ca.crl(&[0x5eed, 0xbad]).unwrap());
    std::fs::rename(tmp, pki.path("ca.crl")).unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(4), to_revoke.read_to_end(&mut rest))
        .await
        .expect("the revoked client's tunnel stayed open")
        .ok();
    proxy
        .expect_metric(
            "gatehouse_connections_closed_total{reason=\"revoked\"}",
            1.0,
        )
        .await;

    tokio::time::timeout(Duration::from_secs(8), expiring.read_to_end(&mut rest))
        .await
        .expect("the tunnel outlived its client certificate")
        .ok();
    assert!(
        opened.elapsed() >= Duration::from_secs(2),
        "{:?}",
        opened.elapsed()
    );
    proxy
        .expect_metric(
            "gatehouse_connections_closed_total{reason=\"cert_expired\"}",
            1.0,
        )
        .await;

    // The accepted client's tunnel still carries bytes.
    fine.write_all(b"pong").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(STEP, fine.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"pong");
}

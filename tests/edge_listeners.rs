//! Edge limits on the listeners (SPEC "Edge limits"): every listener is bounded in
//! connections and in time, and after each attack a good client is still served.
//! - plaintext and admin: silent and half-sent sockets are closed within their head timeout;
//!   their connection caps hold (the extra connections wait in the backlog);
//! - https: `max_connections_per_ip` rejects at accept (socket or PROXY-protocol address) and
//!   counts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::edge::*;
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

async fn plain_request(addr: SocketAddr, head: &str) -> String {
    let (closed, out) = time_to_close(addr, head.as_bytes(), STEP).await;
    assert!(
        closed.is_some(),
        "the connection stayed open after its response"
    );
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_closed_within(what: &str, closed: Option<Duration>, low: Duration, high: Duration) {
    let Some(t) = closed else {
        panic!("{what}: still open after {high:?}");
    };
    assert!(
        t >= low && t <= high,
        "{what}: closed after {t:?}, want {low:?}..{high:?}"
    );
}

#[tokio::test]
async fn plaintext_silent_and_half_sent_sockets_are_closed_after_request_header_timeout() {
    let (proxy, ..) = edge_proxy("http = \"127.0.0.1:0\"", "request_header_timeout = \"1s\"").await;
    let http = proxy.http.unwrap();
    let cases: [(&'static str, &'static [u8]); 4] = [
        ("silent", b""),
        (
            "half a request head",
            b"GET / HTTP/1.1\r\nHost: test.com\r\nX-Slow: ",
        ),
        ("half an HTTP/2 preface", &H2_PREFACE[..10]),
        ("a whole HTTP/2 preface", H2_PREFACE),
    ];
    for (what, closed) in attack(http, &cases, Duration::from_secs(5)).await {
        // An HTTP/2 preface is not HTTP/1: it may be refused at once.
        let low = if what.contains("whole") {
            Duration::ZERO
        } else {
            Duration::from_millis(900)
        };
        assert_closed_within(what, closed, low, Duration::from_secs(4));
    }
    let res = plain_request(http, "GET /a?b=1 HTTP/1.1\r\nHost: test.com\r\n\r\n").await;
    assert!(res.starts_with("HTTP/1.1 301"), "{res}");
    assert!(
        res.to_ascii_lowercase().contains("connection: close"),
        "{res}"
    );
}

#[tokio::test]
async fn admin_silent_and_half_sent_sockets_are_closed_within_10s() {
    let (proxy, ..) = edge_proxy("admin = \"127.0.0.1:0\"", "").await;
    let admin = proxy.admin.unwrap();
    let cases: [(&'static str, &'static [u8]); 3] = [
        ("silent", b""),
        (
            "half a request head",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n",
        ),
        ("half an HTTP/2 preface", &H2_PREFACE[..10]),
    ];
    for (what, closed) in attack(admin, &cases, Duration::from_secs(15)).await {
        assert_closed_within(
            what,
            closed,
            Duration::from_millis(9500),
            Duration::from_secs(14),
        );
    }
    let res = plain_request(
        admin,
        "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
}

#[tokio::test]
async fn plaintext_cap_holds_extra_connections_in_the_backlog() {
    let (proxy, ..) = edge_proxy(
        "http = \"127.0.0.1:0\"",
        "max_plaintext_connections = 10\nrequest_header_timeout = \"30s\"",
    )
    .await;
    let http = proxy.http.unwrap();
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(TcpStream::connect(http).await.unwrap());
    }
    let active = "gatehouse_connections_active{listener=\"http\"}";
    proxy.expect_metric(active, 10.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        proxy.metric(active),
        10.0,
        "more than the cap were accepted"
    );
    // A good client waits behind them...
    let mut good = TcpStream::connect(http).await.unwrap();
    good.write_all(b"GET / HTTP/1.1\r\nHost: test.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(500), good.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_plaintext_connections");
    // ...and is served once they are gone.
    drop(silent);
    let n = tokio::time::timeout(STEP, good.read(&mut buf))
        .await
        .expect("served after the others closed")
        .unwrap();
    let res = String::from_utf8_lossy(&buf[..n]);
    assert!(res.starts_with("HTTP/1.1 301"), "{res}");
}

#[tokio::test]
async fn admin_cap_is_64_connections() {
    let (proxy, ..) = edge_proxy("admin = \"127.0.0.1:0\"", "").await;
    let admin = proxy.admin.unwrap();
    let mut silent = Vec::new();
    for _ in 0..(64 + 50) {
        silent.push(TcpStream::connect(admin).await.unwrap());
    }
    // Give the accept loop time to take the first 64.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut good = TcpStream::connect(admin).await.unwrap();
    good.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(700), good.read(&mut buf)).await;
    assert!(early.is_err(), "served past the admin cap of 64");
    drop(silent);
    let n = tokio::time::timeout(STEP, good.read(&mut buf))
        .await
        .expect("served after the others closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

const REJECTED: &str =
    "gatehouse_connections_rejected_total{listener=\"https\",reason=\"per_ip_limit\"}";

#[tokio::test]
async fn max_connections_per_ip_closes_extra_connections_at_accept() {
    let (proxy, pki, client) = edge_proxy("", "max_connections_per_ip = 2").await;
    let opts = ClientOpts::new(&pki, Some(&client));
    assert_eq!(
        proxy.metric(REJECTED),
        0.0,
        "the series exists from the start"
    );
    let first = connect(proxy.https, "test.com", &opts).await.unwrap();
    let second = connect(proxy.https, "test.com", &opts).await.unwrap();
    // The third is closed before any TLS byte: the server sends nothing at all.
    let (closed, sent) = time_to_close(proxy.https, b"", Duration::from_secs(3)).await;
    assert!(
        closed.is_some(),
        "third connection from one address kept open"
    );
    assert!(
        sent.is_empty(),
        "the server spoke TLS to a rejected connection"
    );
    proxy.expect_metric(REJECTED, 1.0).await;
    // The two admitted connections still work, and a slot frees when one closes.
    assert_eq!(
        request_on(second, get("test.com", "/status/200"))
            .await
            .unwrap()
            .status,
        200
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200);
    assert_eq!(proxy.metric(REJECTED), 1.0);
}

/// A TLS connection that starts with a PROXY protocol v1 header naming `source`.
async fn connect_proxied(
    addr: SocketAddr,
    source: &str,
    opts: &ClientOpts,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(format!("PROXY TCP4 {source} 10.9.9.9 40000 443\r\n").as_bytes())
        .await?;
    let name = ServerName::try_from("test.com").unwrap();
    tokio::time::timeout(STEP, TlsConnector::from(opts.config()).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

#[tokio::test]
async fn behind_proxy_protocol_the_limit_counts_the_headers_address() {
    let (proxy, pki, client) =
        edge_proxy("", "max_connections_per_ip = 1\nproxy_protocol = true").await;
    let opts = ClientOpts::new(&pki, Some(&client));
    // Same socket address (127.0.0.1), two client addresses: both served.
    let a = connect_proxied(proxy.https, "10.0.0.1", &opts)
        .await
        .unwrap();
    let b = connect_proxied(proxy.https, "10.0.0.2", &opts)
        .await
        .unwrap();
    assert_eq!(
        request_on(a, get("test.com", "/status/200"))
            .await
            .unwrap()
            .status,
        200
    );
    let held = connect_proxied(proxy.https, "10.0.0.3", &opts)
        .await
        .unwrap();
    // A second connection from 10.0.0.3 is refused before the handshake.
    let again = connect_proxied(proxy.https, "10.0.0.3", &opts).await;
    let refused = match again {
        Err(_) => true,
        Ok(tls) => request_on(tls, get("test.com", "/status/200"))
            .await
            .is_err(),
    };
    assert!(refused, "a second connection from 10.0.0.3 was served");
    proxy.expect_metric(REJECTED, 1.0).await;
    assert_eq!(
        request_on(b, get("test.com", "/status/200"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        request_on(held, get("test.com", "/status/200"))
            .await
            .unwrap()
            .status,
        200
    );
}

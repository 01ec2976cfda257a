//! Edge limits on the listeners (SPEC "Edge limits"): every listener is bounded in
//! connections and in time, and after each attack a good client is still served.
//! - plaintext and admin: silent and half-sent sockets are closed within their head timeout;
//!   their connection caps hold (the extra connections wait in the backlog);
//! - https: `max_connections_per_ip` rejects at accept (socket or PROXY-protocol address) and
//!   counts; ALPN decides the protocol; a client ignoring GOAWAY is closed 10 s later.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// The test PKI's `test.com` setup with extra `[listen]` lines and a `[proxy]` table.
async fn start(listen: &str, proxy: &str) -> (Proxy, TestPki, gatehouse::dev::pki::Leaf) {
    let (pki, client, echo) = test_com().await;
    let rest =
        format!("[[route]]\npath_prefix = \"/\"\nupstream = \"http://{echo}\"\n\n[proxy]\n{proxy}");
    let cfg = test_com_config(&pki, listen, &rest);
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    (proxy, pki, client)
}

/// Connects, writes `bytes` (maybe none), and returns how long until the server closed the
/// socket (or `None` if it is still open after `wait`), with what it sent.
async fn time_to_close(
    addr: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut out)).await {
        Ok(_) => (Some(start.elapsed()), out),
        Err(_) => (None, out),
    }
}

async fn plain_request(addr: SocketAddr, head: &str) -> String {
    let (closed, out) = time_to_close(addr, head.as_bytes(), STEP).await;
    assert!(
        closed.is_some(),
        "the connection stayed open after its response"
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Each of `cases` on its own connection, all at once: how long until each was closed.
async fn attack(
    addr: SocketAddr,
    cases: &[(&'static str, &'static [u8])],
    wait: Duration,
) -> Vec<(&'static str, Option<Duration>)> {
    let tasks: Vec<_> = cases
        .iter()
        .map(|&(what, bytes)| {
            tokio::spawn(async move { (what, time_to_close(addr, bytes, wait).await.0) })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
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
    let (proxy, ..) = start("http = \"127.0.0.1:0\"", "request_header_timeout = \"1s\"").await;
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
    let (proxy, ..) = start("admin = \"127.0.0.1:0\"", "").await;
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
    let (proxy, ..) = start(
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
    let (proxy, ..) = start("admin = \"127.0.0.1:0\"", "").await;
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
    let (proxy, pki, client) = start("", "max_connections_per_ip = 2").await;
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
    let (proxy, pki, client) = start("", "max_connections_per_ip = 1\nproxy_protocol = true").await;
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

/// HTTP/2 frames in `bytes` as (type, flags, stream id); stops at a partial frame.
fn h2_frames(bytes: &[u8]) -> Vec<(u8, u8, u32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 9 {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        let stream =
            u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]])
                & 0x7fff_ffff;
        out.push((bytes[at + 3], bytes[at + 4], stream));
        at += 9 + len;
    }
    out
}

/// Over TLS with `alpn`, writes `bytes` and reads until the server closes (bounded).
async fn tls_exchange(proxy: &Proxy, opts: &ClientOpts, bytes: &[u8]) -> (bool, Vec<u8>) {
    let mut tls = connect(proxy.https, "test.com", opts).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    (closed.is_ok(), out)
}

#[tokio::test]
async fn the_protocol_is_the_one_alpn_chose() {
    let (proxy, pki, client) = start("", "").await;
    let base = ClientOpts::new(&pki, Some(&client));
    let h1_request = b"GET /status/200 HTTP/1.1\r\nHost: test.com\r\n\r\n";

    // ALPN h2, then HTTP/1.1 bytes: not served as HTTP/1.1, closed.
    let (closed, out) = tls_exchange(&proxy, &base.clone().h2(), h1_request).await;
    assert!(closed, "ALPN h2 + HTTP/1.1 bytes: connection left open");
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1"),
        "served HTTP/1.1 after ALPN h2"
    );

    // ALPN http/1.1 (or none), then the HTTP/2 preface: no HTTP/2 SETTINGS back, closed.
    let mut preface = H2_PREFACE.to_vec();
    preface.extend_from_slice(H2_SETTINGS);
    let mut no_alpn = base.clone();
    no_alpn.alpn.clear();
    for (what, opts) in [("http/1.1", base.clone().h1()), ("no ALPN", no_alpn)] {
        let (closed, out) = tls_exchange(&proxy, &opts, &preface).await;
        assert!(closed, "ALPN {what} + HTTP/2 preface: connection left open");
        let settings = h2_frames(&out).iter().any(|(t, _, _)| *t == 4);
        assert!(
            !settings || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 4"),
            "served HTTP/2 after ALPN {what}: {out:?}"
        );
    }

    // Each protocol is still served when spoken after its own ALPN.
    for opts in [base.clone().h1(), base.clone().h2()] {
        let r = request(
            proxy.https,
            "test.com",
            &opts,
            get_h2("test.com", "/status/200"),
        )
        .await;
        assert_eq!(r.unwrap().status, 200);
    }
}

#[tokio::test]
async fn a_client_that_ignores_goaway_is_closed_10s_after() {
    let (proxy, pki, client) = start("", "idle_timeout = \"1s\"").await;
    let opts = ClientOpts::new(&pki, Some(&client)).h2();
    let mut tls = connect(proxy.https, "test.com", &opts).await.unwrap();
    let start = Instant::now();
    // A client that speaks just enough HTTP/2 to get going, then acknowledges nothing.
    tls.write_all(H2_PREFACE).await.unwrap();
    tls.write_all(H2_SETTINGS).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut out)).await;
    let elapsed = start.elapsed();
    assert!(read.is_ok(), "still open after 20 s");
    let frames = h2_frames(&out);
    assert!(
        frames.iter().any(|(t, _, _)| *t == 7),
        "no GOAWAY was sent: {frames:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(10_500) && elapsed <= Duration::from_secs(15),
        "closed after {elapsed:?}: want idle_timeout (1 s) + 10 s"
    );
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get_h2("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200, "a good client is served afterwards");
}

/// An HTTP/2 frame: 9-byte header, then the payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `GET /` for `test.com`, HPACK-encoded from the static table (no dynamic table use).
const GET_TEST_COM: &[u8] = &[
    0x82, 0x84, 0x87, 0x01, 0x08, b't', b'e', b's', b't', b'.', b'c', b'o', b'm',
];

/// Sends `attack` after the HTTP/2 preface and reads until the server closes (bounded);
/// returns the GOAWAY error code seen, if any, and how long the server took to close.
async fn h2_attack(
    proxy: &Proxy,
    opts: &ClientOpts,
    attack: &[u8],
) -> (Option<u32>, Option<Duration>) {
    let mut tls = connect(proxy.https, "test.com", &opts.clone().h2())
        .await
        .unwrap();
    let start = Instant::now();
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend_from_slice(H2_SETTINGS);
    bytes.extend_from_slice(attack);
    // The server may stop reading once it has seen enough: a failed write is part of the test.
    let _ = tls.write_all(&bytes).await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let mut goaway = None;
    let mut at = 0;
    while out.len() >= at + 9 {
        let len =
            usize::from(out[at]) << 16 | usize::from(out[at + 1]) << 8 | usize::from(out[at + 2]);
        if out[at + 3] == 7 && out.len() >= at + 9 + 8 {
            let p = &out[at + 9..];
            goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
        at += 9 + len;
    }
    (goaway, closed.then(|| start.elapsed()))
}

#[tokio::test]
async fn http2_rapid_reset_gets_goaway_and_the_connection_closed() {
    let (proxy, pki, client) = start("", "").await;
    let opts = ClientOpts::new(&pki, Some(&client));
    // CVE-2023-44487: open a stream and cancel it at once, a thousand times.
    let mut attack = Vec::new();
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        attack.extend(h2_frame(1, 0x5, stream, GET_TEST_COM));
        attack.extend(h2_frame(3, 0, stream, &8u32.to_be_bytes()));
    }
    let (goaway, closed) = h2_attack(&proxy, &opts, &attack).await;
    assert_eq!(goaway, Some(0xb), "no GOAWAY(ENHANCE_YOUR_CALM)");
    assert!(closed.is_some(), "the connection was left open");
    let r = request(
        proxy.https,
        "test.com",
        &opts.clone().h2(),
        get_h2("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200, "a good client is served afterwards");
}

#[tokio::test]
async fn http2_continuation_flood_is_cut_off() {
    let (proxy, pki, client) = start("", "").await;
    let opts = ClientOpts::new(&pki, Some(&client));
    // CVE-2024-27316 class: a header block that never ends, far past max_request_header_bytes.
    let mut field = vec![0x00, 0x03, b'x', b'-', b'a', 0x7f, 0xe9, 0x06]; // value length 1000
    field.extend(std::iter::repeat_n(b'v', 1000));
    let mut attack = h2_frame(1, 0x1, 1, GET_TEST_COM);
    for _ in 0..2000 {
        attack.extend(h2_frame(9, 0, 1, &field));
    }
    let (goaway, closed) = h2_attack(&proxy, &opts, &attack).await;
    assert!(
        closed.is_some(),
        "the connection was left open (GOAWAY {goaway:?})"
    );
    let r = request(
        proxy.https,
        "test.com",
        &opts.clone().h2(),
        get_h2("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200, "a good client is served afterwards");
}

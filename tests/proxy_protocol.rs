//! `proxy.proxy_protocol = true` (SPEC §2): behind an L4 load balancer, a PROXY protocol v1
//! or v2 header precedes the TLS handshake and names the client; the upstream, the policies
//! and the metrics see that client. A connection without a valid header is closed, and the
//! wait for it is bounded by handshake_timeout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const PROXY_ON: &str = "[proxy]\nproxy_protocol = true";

/// TCP, then `header` (in pieces of `split` bytes, if given), then the TLS handshake.
async fn proxied(
    addr: SocketAddr,
    header: &[u8],
    split: Option<usize>,
    opts: &ClientOpts,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    match split {
        Some(n) => {
            for piece in header.chunks(n) {
                tcp.write_all(piece).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        None => tcp.write_all(header).await?,
    }
    let name = ServerName::try_from("test.com").map_err(std::io::Error::other)?;
    tokio::time::timeout(STEP, TlsConnector::from(opts.config()).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The `x-forwarded-for` the upstream saw for a request behind `header`.
async fn forwarded_for(
    proxy: &Proxy,
    opts: &ClientOpts,
    header: &[u8],
    split: Option<usize>,
) -> String {
    let tls = proxied(proxy.https, header, split, opts).await.unwrap();
    let reply = request_on(tls, get("test.com", "/headers")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["headers"]["x-forwarded-for"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.text()))
        .to_owned()
}

fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family | 0x01);
    h.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
    h.extend_from_slice(addresses);
    h
}

#[tokio::test]
async fn the_client_named_by_the_header_is_the_one_the_upstream_sees() {
    let (pki, client, echo) = test_com().await;
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["test.com"], echo, "", PROXY_ON),
    )
    .await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();

    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    assert_eq!(forwarded_for(&proxy, &opts, v1, None).await, "203.0.113.7");
    // A header that arrives in pieces is still read whole, and not a byte more.
    assert_eq!(
        forwarded_for(&proxy, &opts, v1, Some(7)).await,
        "203.0.113.7"
    );
    let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n";
    assert_eq!(
        forwarded_for(&proxy, &opts, v1_6, None).await,
        "2001:db8::7"
    );

    let mut v4 = vec![198, 51, 100, 9, 10, 0, 0, 1];
    v4.extend_from_slice(&40000u16.to_be_bytes());
    v4.extend_from_slice(&443u16.to_be_bytes());
    assert_eq!(
        forwarded_for(&proxy, &opts, &v2(1, 0x10, &v4), None).await,
        "198.51.100.9"
    );
    assert_eq!(
        forwarded_for(&proxy, &opts, &v2(1, 0x10, &v4), Some(5)).await,
        "198.51.100.9"
    );
    // LOCAL (the load balancer's own health check) and UNKNOWN keep the socket's peer.
    assert_eq!(
        forwarded_for(&proxy, &opts, &v2(0, 0x00, &[]), None).await,
        "127.0.0.1"
    );
    assert_eq!(
        forwarded_for(&proxy, &opts, b"PROXY UNKNOWN\r\n", None).await,
        "127.0.0.1"
    );
    assert_eq!(proxy.metric(&handshakes("test.com", "ok")), 7.0);
}

#[tokio::test]
async fn policies_match_the_address_from_the_header() {
    let (pki, client, echo) = test_com().await;
    let extra = format!(
        "{PROXY_ON}\n\n[[policy]]\nname = \"deny-doc-net\"\naction = \"deny\"\n  [[policy.rules]]\n  from.ip_blocks = [\"203.0.113.0/24\"]\n"
    );
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["test.com"], echo, "", &extra),
    )
    .await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();
    let status = |header: &'static [u8]| {
        let opts = opts.clone();
        let addr = proxy.https;
        async move {
            let tls = proxied(addr, header, None, &opts).await.unwrap();
            request_on(tls, get("test.com", "/status/200"))
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(
        status(b"PROXY TCP4 203.0.113.7 10.0.0.1 1 443\r\n").await,
        403
    );
    assert_eq!(
        status(b"PROXY TCP4 198.51.100.9 10.0.0.1 1 443\r\n").await,
        200
    );
}

#[tokio::test]
async fn a_connection_without_a_valid_header_is_closed_and_counted() {
    let (pki, client, echo) = test_com().await;
    let extra = format!("{PROXY_ON}\nhandshake_timeout = \"300ms\"");
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["test.com"], echo, "", &extra),
    )
    .await;
    let opts = ClientOpts::new(&pki, Some(&client)).h1();

    // Straight into TLS: the ClientHello is not a PROXY header.
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    proxy.expect_metric(&handshakes("none", "error"), 1.0).await;
    // Garbage shaped like a header.
    assert!(
        proxied(
            proxy.https,
            b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n",
            None,
            &opts
        )
        .await
        .is_err()
    );
    proxy.expect_metric(&handshakes("none", "error"), 2.0).await;

    // Half a header, then nothing: closed after handshake_timeout, counted as a timeout.
    let mut tcp = TcpStream::connect(proxy.https).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.").await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await
        .expect("the connection is closed within handshake_timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    proxy
        .expect_metric(&handshakes("none", "timeout"), 1.0)
        .await;
    assert_eq!(proxy.metric(&handshakes("test.com", "ok")), 0.0);
}

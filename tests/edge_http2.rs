//! Edge limits on HTTP/2 (SPEC "Edge limits"): ALPN alone decides the protocol, a client
//! ignoring GOAWAY is closed 10 s later, and rapid resets and CONTINUATION floods get a
//! GOAWAY and the connection closed; after each, a good client is still served.

mod common;

use std::time::Duration;

use common::edge::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

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
    let (proxy, pki, client) = edge_proxy("", "").await;
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
    let (proxy, pki, client) = edge_proxy("", "idle_timeout = \"1s\"").await;
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
    let (proxy, pki, client) = edge_proxy("", "").await;
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
    let (proxy, pki, client) = edge_proxy("", "").await;
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

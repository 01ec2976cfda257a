//! HTTP/1.1 over a raw connection, for the tests that must send bytes no client library
//! would or read a reply exactly as the proxy wrote it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ClientOpts, connect};

/// Writes raw bytes over TLS and reads until the server closes or `wait` passes.
pub async fn raw(
    addr: SocketAddr,
    sni: &str,
    opts: &ClientOpts,
    bytes: &[u8],
    wait: Duration,
) -> String {
    let mut tls = connect(addr, sni, opts).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw HTTP/1.1 reply, or 0.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

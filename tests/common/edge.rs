//! Attacks on the listeners: a `test.com` proxy with extra `[listen]` lines and a `[proxy]`
//! table, sockets timed from connect to the server's close, and the first bytes of HTTP/2.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse::dev::pki::Leaf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Proxy, TestPki, test_com, test_com_config};

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
pub const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// The test PKI's `test.com` setup with extra `[listen]` lines and a `[proxy]` table.
pub async fn edge_proxy(listen: &str, proxy: &str) -> (Proxy, TestPki, Leaf) {
    let (pki, client, echo) = test_com().await;
    let rest =
        format!("[[route]]\npath_prefix = \"/\"\nupstream = \"http://{echo}\"\n\n[proxy]\n{proxy}");
    let cfg = test_com_config(&pki, listen, &rest);
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    (proxy, pki, client)
}

/// Connects, writes `bytes` (maybe none), and returns how long until the server closed the
/// socket (or `None` if it is still open after `wait`), with what it sent.
pub async fn time_to_close(
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

/// Each of `cases` on its own connection, all at once: how long until each was closed.
pub async fn attack(
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

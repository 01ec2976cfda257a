//! Scripted upstreams for tests: each answers every connection the same way, and reports
//! what it saw (connections, request bytes, when the proxy closed on it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How a scripted upstream answers each connection.
#[derive(Clone, Copy)]
pub enum Script {
    /// A chunked 200 that never ends, written as fast as the proxy takes it.
    Endless,
    /// `content-length: 1000`, 10 bytes, then silence.
    StallBody,
    /// Reads the request body (counting bytes) and never answers.
    ReadBody,
    /// Answers `200 ok` with these extra header lines to every request on the connection,
    /// keeping it open (the proxy decides whether to reuse it).
    Answer(&'static str),
    /// Answers one request `200 ok`, then closes (without saying `connection: close`).
    CloseAfterEach,
    /// Answers the first request `200 ok` and keeps the connection; closes it, unanswered,
    /// when the next request arrives (a keep-alive timeout racing a request).
    DieOnSecond,
}

/// What the scripted upstream saw.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    /// Request heads received (all connections).
    pub requests: AtomicUsize,
    pub body_bytes: AtomicUsize,
    /// Request bodies received to their chunked terminator.
    pub complete_chunked: AtomicUsize,
    pub closed_at: Mutex<Option<Instant>>,
    closed: Notify,
}

impl Seen {
    /// Waits (bounded) until the proxy closed the upstream connection; returns when.
    pub async fn closed(&self) -> Instant {
        let wait = async {
            loop {
                let notified = self.closed.notified();
                if let Some(t) = *self.closed_at.lock().unwrap() {
                    return t;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the proxy never closed the upstream connection")
    }
}

pub async fn scripted_upstream(script: Script) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_script(tcp, script, s.clone()));
        }
    });
    (addr, seen)
}

/// Reads one request head into `buf` (which may hold bytes already); returns the offset of
/// its body, or `None` when the connection closed first.
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        match tcp.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n";

async fn serve_script(mut tcp: TcpStream, script: Script, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut answered = 0;
    loop {
        let Some(body_start) = read_head(&mut tcp, &mut buf).await else {
            break;
        };
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
        match script {
            Script::Endless => {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let piece = [b"4000\r\n".as_slice(), &[b'x'; 0x4000], b"\r\n"].concat();
                while tcp.write_all(&piece).await.is_ok() {}
                break;
            }
            Script::StallBody => {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                    .await;
                while matches!(tcp.read(&mut chunk).await, Ok(n) if n > 0) {}
                break;
            }
            Script::ReadBody => {
                let mut body = buf[body_start..].to_vec();
                seen.body_bytes.fetch_add(body.len(), Ordering::SeqCst);
                while let Ok(n) = tcp.read(&mut chunk).await
                    && n > 0
                {
                    seen.body_bytes.fetch_add(n, Ordering::SeqCst);
                    body.extend_from_slice(&chunk[..n]);
                    if head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n") {
                        seen.complete_chunked.fetch_add(1, Ordering::SeqCst);
                    }
                }
                break;
            }
            Script::Answer(extra) => {
                let _ = tcp
                    .write_all(&[OK, extra.as_bytes(), b"\r\nok"].concat())
                    .await;
            }
            Script::CloseAfterEach => {
                let _ = tcp.write_all(&[OK, b"\r\nok"].concat()).await;
                break;
            }
            Script::DieOnSecond if answered == 0 => {
                let _ = tcp.write_all(&[OK, b"\r\nok"].concat()).await;
            }
            Script::DieOnSecond => break,
        }
        answered += 1;
        // The next request on the connection (requests here have no body, except ReadBody's).
        buf.drain(..body_start);
    }
    drop(tcp);
    *seen.closed_at.lock().unwrap() = Some(Instant::now());
    seen.closed.notify_waiters();
}

//! A proxy for `test.com` in front of a tapped echo upstream: the tap records every byte the
//! proxy sends upstream, so "nothing is forwarded" is checked on the wire.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse::dev::pki::LeafSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ClientOpts, Proxy, Resp, STEP, TestPki, config, connect, read_response, start_echo};

/// A TCP relay in front of the echo upstream that keeps a copy of what the proxy sent.
#[derive(Clone, Default)]
pub struct Tap {
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    pub async fn start(echo: SocketAddr) -> (Self, SocketAddr) {
        let tap = Self::default();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let t = tap.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = l.accept().await {
                let t = t.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(echo).await else {
                        return;
                    };
                    let (mut down_r, mut down_w) = down.into_split();
                    let (mut up_r, mut up_w) = up.into_split();
                    let to_echo = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match down_r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    t.sent.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if up_w.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = up_w.shutdown().await;
                    };
                    let from_echo = async {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                        let _ = down_w.shutdown().await;
                    };
                    tokio::join!(to_echo, from_echo);
                });
            }
        });
        (tap, addr)
    }

    pub fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    /// The number of request heads the upstream was sent.
    pub fn requests(&self) -> usize {
        let sent = self.sent();
        [
            "GET ", "POST ", "PUT ", "OPTIONS ", "DELETE ", "HEAD ", "PATCH ",
        ]
        .iter()
        .map(|m| {
            sent.match_indices(m)
                .filter(|(i, _)| *i == 0 || sent[..*i].ends_with('\n'))
                .count()
        })
        .sum()
    }
}

/// A proxy for `test.com` in front of the tapped echo, and a client `spiffe://test.client`.
pub struct TappedProxy {
    _pki: TestPki,
    pub proxy: Proxy,
    pub tap: Tap,
    pub opts: ClientOpts,
}

impl TappedProxy {
    /// Starts the echo, its tap and the proxy, `extra` appended to the config.
    pub async fn start(extra: &str) -> Self {
        let pki = TestPki::new();
        pki.server("server", &["test.com"]);
        let (tap, upstream) = Tap::start(start_echo().await).await;
        let proxy = Proxy::start(
            pki.dir.path(),
            &config(&pki, &["test.com"], upstream, "", extra),
        )
        .await;
        let leaf = pki.issue("client", &LeafSpec::client_uri("spiffe://test.client"));
        let opts = ClientOpts::new(&pki, Some(&leaf));
        Self {
            _pki: pki,
            proxy,
            tap,
            opts,
        }
    }

    pub async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        connect(self.proxy.https, "test.com", &self.opts)
            .await
            .unwrap()
    }

    /// Sends `bytes` on a fresh connection and reads one response.
    pub async fn exchange(&self, bytes: &[u8]) -> Resp {
        let mut tls = self.connect().await;
        // The proxy may answer and close before it has read everything: ignore write errors.
        let _ = tokio::time::timeout(STEP, tls.write_all(bytes)).await;
        let mut buf = Vec::new();
        read_response(&mut tls, &mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET target` with `headers` (each `Name: value`), on a fresh connection.
    pub async fn get(&self, target: &str, headers: &[&str]) -> Resp {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: test.com\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("Connection: close\r\n\r\n");
        self.exchange(req.as_bytes()).await
    }

    /// Gives the proxy a moment to forward anything it was going to forward.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

//! The mTLS client (tokio-rustls + hyper): TLS settings, one request per connection or on an
//! open one, HTTP/1.1 or HTTP/2 by ALPN, every step bounded by [`STEP`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse::dev::pki::{Leaf, LeafSpec};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Proxy, STEP, TestPki};

/// Client TLS settings.
#[derive(Clone)]
pub struct ClientOpts {
    pub roots_pem: String,
    /// (chain PEM, key PEM)
    pub identity: Option<(String, String)>,
    pub alpn: Vec<Vec<u8>>,
    pub tls12_only: bool,
    /// The key-exchange groups offered, in order; `None`: the TLS library's defaults.
    pub kx_groups: Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>>,
}

impl ClientOpts {
    pub fn new(pki: &TestPki, identity: Option<&Leaf>) -> Self {
        Self {
            roots_pem: pki.ca.cert_pem.clone(),
            identity: identity.map(|l| (l.chain_pem.clone(), l.key_pem.clone())),
            alpn: vec![b"http/1.1".to_vec()],
            tls12_only: false,
            kx_groups: None,
        }
    }

    pub fn h1(mut self) -> Self {
        self.alpn = vec![b"http/1.1".to_vec()];
        self
    }

    pub fn h2(mut self) -> Self {
        self.alpn = vec![b"h2".to_vec()];
        self
    }

    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(groups) = &self.kx_groups {
            provider.kx_groups = groups.clone();
        }
        let provider = Arc::new(provider);
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.roots_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match &self.identity {
            Some((chain, key)) => {
                let chain: Vec<_> = CertificateDer::pem_slice_iter(chain.as_bytes())
                    .map(Result::unwrap)
                    .collect();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                let key = provider.key_provider.load_private_key(key).unwrap();
                // Presented as is (no parsing on our side): a test may present a certificate
                // rustls itself would not build a client identity from, such as X.509 v1.
                let presented = rustls::sign::CertifiedKey::new(chain, key);
                builder.with_client_cert_resolver(Arc::new(Presented(Arc::new(presented))))
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = self.alpn.clone();
        Arc::new(cfg)
    }
}

/// Options for a client with a new certificate `spiffe://<principal>` (written as
/// `<principal>.crt`/`.key`).
pub fn client_for(pki: &TestPki, principal: &str) -> ClientOpts {
    let leaf = pki.issue(
        principal,
        &LeafSpec::client_uri(&format!("spiffe://{principal}")),
    );
    ClientOpts::new(pki, Some(&leaf))
}

/// A client identity presented whatever the server asks.
#[derive(Debug)]
struct Presented(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Presented {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Connects and completes the TLS handshake (client side). In TLS 1.3 a rejected client
/// certificate only shows on the first read, so use [`request`] to see refusals.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    opts: &ClientOpts,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    tokio::time::timeout(STEP, TlsConnector::from(opts.config()).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// A response with its body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request on a fresh connection, HTTP/2 if the ALPN says so. `Err` carries why it failed
/// (handshake refused, connection closed...).
pub async fn request(
    addr: SocketAddr,
    sni: &str,
    opts: &ClientOpts,
    req: Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let tls = connect(addr, sni, opts)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    request_on(tls, req).await
}

/// One request on an established TLS connection, HTTP/2 if the ALPN says so.
pub async fn request_on(
    tls: TlsStream<TcpStream>,
    req: Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let fut = async move {
        let res = if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            send.send_request(req).await
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("h1 handshake: {e}"))?;
            tokio::spawn(conn);
            send.send_request(req).await
        };
        let res = res.map_err(|e| format!("request: {e:?}"))?;
        collect(res).await
    };
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

pub async fn collect(res: Response<hyper::body::Incoming>) -> Result<Reply, String> {
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// `GET path` with `Host: host`.
pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// `GET https://host/path` for HTTP/2 (the :authority comes from the URI).
pub fn get_h2(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://{host}{path}"))
        .version(http::Version::HTTP_2)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A `Stream` over an mpsc receiver (a request body a test feeds frame by frame;
/// tokio-stream is not a dependency).
pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// A WebSocket handshake through the proxy to the echo's `/upgrade`; returns the tunnel.
pub async fn open_tunnel(proxy: &Proxy, opts: &ClientOpts) -> TlsStream<TcpStream> {
    let mut tls = connect(proxy.https, "test.com", &opts.clone().h1())
        .await
        .unwrap();
    tls.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: test.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(STEP, tls.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed during the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Bytes go both ways.
    tls.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(STEP, tls.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping");
    tls
}

//! Test harness: a dev PKI in a temp dir, the echo upstream and the proxy in-process on
//! 127.0.0.1:0, and an mTLS client (tokio-rustls + hyper) with bounded timeouts.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse::dev::pki::{Ca, KeyType, Leaf, LeafSpec};
use gatehouse::runtime::{Published, Runtime};
use gatehouse::server::{self, Listeners};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The reference deny rule of SPEC §2.
pub const DENY_TEAPOT: &str = r#"
[[policy]]
name = "deny-test-client-teapot"
action = "deny"
  [[policy.rules]]
  from.principals = ["test.client"]
  to.paths = ["/status/418"]
"#;

/// Every network step of a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// A temp dir holding PEM files, with a CA to issue from.
pub struct TestPki {
    pub ca: Ca,
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> Self {
        Self::with_ca(Ca::new("Test CA", KeyType::EcdsaP256, 30).unwrap())
    }

    pub fn with_ca(ca: Ca) -> Self {
        let pki = Self {
            ca,
            dir: tempfile::tempdir().unwrap(),
        };
        pki.write("ca.crt", &pki.ca.cert_pem);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Issues a leaf and writes `<name>.crt` (chain) and `<name>.key`.
    pub fn issue(&self, name: &str, spec: &LeafSpec) -> Leaf {
        let leaf = self.ca.issue(spec).unwrap();
        self.write(&format!("{name}.crt"), &leaf.chain_pem);
        self.write(&format!("{name}.key"), &leaf.key_pem);
        leaf
    }

    pub fn server(&self, name: &str, dns: &[&str]) -> Leaf {
        self.issue(name, &LeafSpec::server(dns))
    }

    pub fn client(&self, uri: &str) -> Leaf {
        self.issue("client", &LeafSpec::client_uri(uri))
    }
}

/// The echo upstream on 127.0.0.1:0.
pub async fn start_echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(gatehouse::dev::echo::serve(l));
    addr
}

/// A running proxy. Dropping it stops it.
pub struct Proxy {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub runtime: Arc<Published>,
    pub metrics: Arc<gatehouse::metrics::Metrics>,
    /// The reloader SIGHUP and file changes drive; tests may call `reload()` directly.
    pub reloader: Arc<gatehouse::reload::Reloader>,
    reload_task: tokio::task::JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Proxy {
    /// Writes `config` to `dir/gatehouse.toml`, loads it with the production loader and runs
    /// the server. Listen addresses in the config should use port 0.
    pub async fn start(dir: &Path, config: &str) -> Self {
        Self::try_start(dir, config).await.unwrap()
    }

    pub async fn try_start(dir: &Path, config: &str) -> Result<Self, String> {
        Self::start_logged(dir, config, None).await
    }

    /// Like [`Proxy::start`], with the JSON access log written into the returned buffer.
    pub async fn start_with_log(dir: &Path, config: &str) -> (Self, LogBuffer) {
        Self::start_with_log_format(dir, config, gatehouse::config::LogFormat::Json).await
    }

    /// Like [`Proxy::start`], with the access log in `format` written into the returned buffer.
    pub async fn start_with_log_format(
        dir: &Path,
        config: &str,
        format: gatehouse::config::LogFormat,
    ) -> (Self, LogBuffer) {
        let buf = LogBuffer::default();
        let proxy = Self::start_logged(dir, config, Some((format, buf.clone())))
            .await
            .unwrap();
        (proxy, buf)
    }

    async fn start_logged(
        dir: &Path,
        config: &str,
        log: Option<(gatehouse::config::LogFormat, LogBuffer)>,
    ) -> Result<Self, String> {
        let metrics = gatehouse::metrics::Metrics::new();
        let log = log.map(|(format, buf)| {
            gatehouse::http::access_log::AccessLog::start(
                format,
                Box::new(buf),
                metrics.access_log_dropped.clone(),
            )
            .unwrap()
            .0
        });
        let path = dir.join("gatehouse.toml");
        std::fs::write(&path, config).unwrap();
        let rt = Runtime::load(&path).map_err(|e| e.to_string())?;
        let listeners = Listeners::bind(&rt.config.listen)
            .await
            .map_err(|e| e.to_string())?;
        let https = listeners.https.local_addr().unwrap();
        let http = listeners.http.as_ref().map(|l| l.local_addr().unwrap());
        let admin = listeners.admin.as_ref().map(|l| l.local_addr().unwrap());
        let runtime = Published::new(rt);
        let (stop, stopped) = oneshot::channel::<()>();
        let reloader = gatehouse::reload::Reloader::new(&path, runtime.clone(), metrics.clone());
        let watch = runtime.load().config.reload_watch;
        let reload_task = gatehouse::reload::spawn(reloader.clone(), watch);
        let task = tokio::spawn(server::run(
            listeners,
            runtime.clone(),
            log,
            metrics.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            https,
            http,
            admin,
            runtime,
            metrics,
            reloader,
            reload_task,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Triggers a graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(40), task)
            .await
            .expect("drain bounded")
            .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        self.reload_task.abort();
    }
}

/// A minimal config: one server for `hosts`, mTLS required with the pki's CA, one route to
/// `upstream`, plus `extra` appended (more tables).
pub fn config(
    pki: &TestPki,
    hosts: &[&str],
    upstream: SocketAddr,
    server_extra: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[listen]
https = "127.0.0.1:0"

[[server]]
hosts = {hosts:?}
cert = "{dir}/server.crt"
key = "{dir}/server.key"
client_ca = "{dir}/ca.crt"
{server_extra}

[[route]]
path_prefix = "/"
upstream = "http://{upstream}"
{extra}
"#,
        dir = pki.dir.path().display()
    )
}

/// The `test.com` server of [`test_com`]'s PKI (mTLS required), with `listen` lines added
/// to `[listen]` and `rest` (routes, a `[proxy]` table, ...) after the server.
pub fn test_com_config(pki: &TestPki, listen: &str, rest: &str) -> String {
    format!(
        r#"
[listen]
https = "127.0.0.1:0"
{listen}

[[server]]
hosts = ["test.com"]
cert = "{dir}/server.crt"
key = "{dir}/server.key"
client_ca = "{dir}/ca.crt"

{rest}
"#,
        dir = pki.dir.path().display()
    )
}

/// Client TLS settings.
#[derive(Clone)]
pub struct ClientOpts {
    pub roots_pem: String,
    /// (chain PEM, key PEM)
    pub identity: Option<(String, String)>,
    pub alpn: Vec<Vec<u8>>,
    pub tls12_only: bool,
}

impl ClientOpts {
    pub fn new(pki: &TestPki, identity: Option<&Leaf>) -> Self {
        Self {
            roots_pem: pki.ca.cert_pem.clone(),
            identity: identity.map(|l| (l.chain_pem.clone(), l.key_pem.clone())),
            alpn: vec![b"http/1.1".to_vec()],
            tls12_only: false,
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
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
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

impl Proxy {
    /// The value of one sample line of `/metrics` (`name{labels}`), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (up to 3 s: the server counts after the client has seen the outcome) until
    /// `series` equals `want`, then asserts it.
    pub async fn expect_metric(&self, series: &str, want: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.metric(series) != want && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            self.metric(series),
            want,
            "{series}\n{}",
            self.metrics.encode()
        );
    }
}

/// `gatehouse_tls_handshakes_total{server="..",result=".."}`
pub fn handshakes(server: &str, result: &str) -> String {
    format!("gatehouse_tls_handshakes_total{{server=\"{server}\",result=\"{result}\"}}")
}

/// An in-memory access-log sink.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Waits up to 3 s for `n` lines, then returns them.
    pub async fn lines(&self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n || tokio::time::Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The usual fixture: a PKI with a server certificate for `test.com` (`server.crt`/`.key`),
/// the client `spiffe://test.client`, and the echo upstream.
pub async fn test_com() -> (TestPki, Leaf, SocketAddr) {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let client = pki.client("spiffe://test.client");
    (pki, client, start_echo().await)
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

/// The real binary as a child process (`gatehouse cert`, `check`, `demo`, ...).
pub mod binary;
/// Scripted upstreams (stalls, closes, keep-alive headers).
pub mod upstream;

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

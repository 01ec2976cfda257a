//! The proxy in-process on 127.0.0.1:0 (the production loader, listeners and server), the
//! echo upstream, the config builders, the metrics and the in-memory access log.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gatehouse::dev::pki::Leaf;
use gatehouse::runtime::{Published, Runtime};
use gatehouse::server::{self, Listeners};
use tokio::sync::oneshot;

use super::{ClientOpts, TestPki};

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
            gatehouse::access_log::AccessLog::start(
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

/// A proxy for `test.com` (mTLS required) in front of the echo upstream, `server_extra` in
/// its `[[server]]` and `extra` (more tables) appended.
pub async fn echo_proxy(server_extra: &str, extra: &str) -> (TestPki, Proxy) {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let echo = start_echo().await;
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["test.com"], echo, server_extra, extra),
    )
    .await;
    (pki, proxy)
}

/// The `test.com` setup (mTLS required, the test client) forwarding to `upstream`.
pub async fn proxy_to(upstream: std::net::SocketAddr, extra: &str) -> (Proxy, ClientOpts, TestPki) {
    let (pki, client, _) = test_com().await;
    let cfg = config(&pki, &["test.com"], upstream, "", extra);
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    (proxy, opts, pki)
}

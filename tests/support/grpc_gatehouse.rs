//! The gatehouse side of tests/grpc.rs: the proxy in-process in front of the h2c echo server
//! (routes, the deny policy, a dead and a broken upstream), the mTLS tonic client, bounded
//! steps, the access log and metrics, and the grpcio client as a child process.

use std::future::Future;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse::dev::pki::Leaf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{LogBuffer, Proxy, STEP, TestPki, test_com_config};
use crate::grpc_echo::{EchoClient, EchoServer};

/// SPEC's example: a deny on one method path, whoever calls.
pub(crate) const DENY_FORBIDDEN: &str = r#"
[[policy]]
name = "deny-echo-forbidden"
action = "deny"
  [[policy.rules]]
  to.paths = ["/test.Echo/Forbidden"]
"#;

/// `test.Echo/Slow` with a 300 ms timeout, the rest of `test.Echo`, `test.Down` (a closed
/// port) and `test.Broken` (an upstream that does not speak HTTP/2), all h2c.
fn routes(echo: SocketAddr, dead: SocketAddr, broken: SocketAddr) -> String {
    format!(
        r#"
[[route]]
name = "slow"
path_prefix = "/test.Echo/Slow"
upstream = "http://{echo}"
upstream_protocol = "h2c"
timeout = "300ms"

[[route]]
name = "grpc"
path_prefix = "/test.Echo"
upstream = "http://{echo}"
upstream_protocol = "h2c"

[[route]]
name = "down"
path_prefix = "/test.Down"
upstream = "http://{dead}"
upstream_protocol = "h2c"

[[route]]
name = "broken"
path_prefix = "/test.Broken"
upstream = "http://{broken}"
upstream_protocol = "h2c"
"#
    )
}

/// A port nobody listens on: bound, read, closed.
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An upstream that answers anything with bytes that are not HTTP/2.
async fn start_broken() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"this is not HTTP/2\r\n\r\n").await;
        }
    });
    addr
}

/// Gatehouse for `test.com` (mTLS required) in front of an echo server, with its access log.
pub(crate) struct Gatehouse {
    pub(crate) pki: TestPki,
    /// The client `spiffe://test.client` (`client.crt`, `client.key`).
    pub(crate) leaf: Leaf,
    pub(crate) proxy: Proxy,
    pub(crate) log: LogBuffer,
}

impl Gatehouse {
    /// `proxy_table`: a `[proxy]` table or nothing.
    pub(crate) async fn start(echo: &EchoServer, proxy_table: &str) -> Self {
        let pki = TestPki::new();
        pki.server("server", &["test.com"]);
        let leaf = pki.client("spiffe://test.client");
        let routes = routes(echo.addr, closed_port(), start_broken().await);
        let rest = format!("{proxy_table}\n{DENY_FORBIDDEN}\n{routes}");
        let config = test_com_config(&pki, "", &rest);
        let (proxy, log) = Proxy::start_with_log(pki.dir.path(), &config).await;
        Self {
            pki,
            leaf,
            proxy,
            log,
        }
    }

    /// A tonic client on one TLS connection to gatehouse (ALPN h2, SNI and `:authority`
    /// `test.com`), presenting `spiffe://test.client`.
    pub(crate) async fn client(&self) -> EchoClient {
        let identity = (self.leaf.chain_pem.as_str(), self.leaf.key_pem.as_str());
        let ca = &self.pki.ca.cert_pem;
        EchoClient::tls(self.proxy.https, ca, identity, "test.com", STEP)
            .await
            .unwrap()
    }

    /// The access-log line of the request to `path`, waited for up to 3 s.
    pub(crate) async fn logged(&self, path: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let lines = self.log.lines(0).await;
            let found = lines
                .iter()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|l| l["path"] == path);
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no access-log line for {path}:\n{}",
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `fut`, bounded by [`STEP`].
pub(crate) async fn step<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("a network step took longer than STEP")
}

/// `gatehouse_requests_total` with `code`, summed over routes.
pub(crate) fn requests_with_code(proxy: &Proxy, code: u16) -> f64 {
    let label = format!("code=\"{code}\"}}");
    proxy
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("gatehouse_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits up to 3 s for [`requests_with_code`] to equal `want`, then asserts it.
pub(crate) async fn expect_requests_with_code(proxy: &Proxy, code: u16, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while requests_with_code(proxy, code) != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        requests_with_code(proxy, code),
        want,
        "requests counted with code {code}:\n{}",
        proxy.metrics.encode()
    );
}

/// Whether Python's grpcio is installed (CI installs it: `.ci/run`, "test tools").
fn grpcio_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `tests/support/grpc_client.py args...` (60 s at most) and returns the JSON it
/// prints; `None`, with a message, when grpcio is not installed.
pub(crate) async fn run_grpcio(args: &[&str]) -> Option<serde_json::Value> {
    if !grpcio_installed() {
        eprintln!("SKIPPED: python3 with grpcio is needed (pip install grpcio)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/grpc_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("grpc_client.py ran past 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "grpc_client.py: {}\n{stderr}",
        out.status
    );
    Some(
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("grpc_client.py printed no JSON ({e}): {stdout}\n{stderr}")),
    )
}

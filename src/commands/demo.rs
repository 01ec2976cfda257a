//! `gatehouse demo`: a dev PKI, the echo upstream and the proxy on 127.0.0.1, with the
//! reference deny rule, then four ready-to-paste curl commands on stdout (allowed, no client
//! certificate, denied path, metrics). Diagnostics and the access log go to stderr, so stdout
//! holds only the commands. Runs until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::access_log::AccessLog;
use crate::dev::pki::{Ca, KeyType, LeafSpec};
use crate::runtime::{Published, Runtime};
use crate::server::{self, Listeners};

/// Ports; 0 picks a free one.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: Option<PathBuf>,
    pub https_port: u16,
    pub http_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
}

pub fn run(opts: &DemoOptions) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string()),
    };
    match rt.block_on(demo(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &str) -> ExitCode {
    eprintln!("gatehouse demo: {e}");
    ExitCode::from(1)
}

async fn demo(opts: &DemoOptions) -> Result<(), String> {
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gatehouse-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    write_pki(&dir)?;

    let bind = |port: u16| async move {
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))
    };
    let upstream = bind(opts.upstream_port).await?;
    let upstream_addr = upstream.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(crate::dev::echo::serve(upstream));

    let config_path = dir.join("gatehouse.toml");
    let text = config(opts, upstream_addr);
    std::fs::write(&config_path, text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let runtime = Runtime::load(&config_path).map_err(|e| e.to_string())?;
    let listeners = Listeners::bind(&runtime.config.listen)
        .await
        .map_err(|e| e.to_string())?;
    let https = local(listeners.https.local_addr())?;
    let admin = listeners
        .admin
        .as_ref()
        .map(|l| local(l.local_addr()))
        .transpose()?;
    let http = listeners
        .http
        .as_ref()
        .map(|l| local(l.local_addr()))
        .transpose()?;

    eprintln!("gatehouse demo: PKI and config in {}", dir.display());
    eprintln!("  upstream (gatehouse echo) http://{upstream_addr}");
    if let Some(h) = http {
        eprintln!("  plaintext http://{h} redirects to https");
    }
    for line in commands(&dir, https.port(), admin.map_or(0, |a| a.port())) {
        println!("{line}");
    }
    eprintln!("Ctrl-C to stop.");

    let metrics = crate::metrics::Metrics::new();
    let (access_log, _) = AccessLog::start(
        runtime.config.log.format,
        Box::new(std::io::stderr()),
        metrics.access_log_dropped.clone(),
    )
    .map_err(|e| e.to_string())?;
    server::run(
        listeners,
        Published::new(runtime),
        Some(access_log),
        metrics,
        super::shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string())
}

fn local(addr: std::io::Result<SocketAddr>) -> Result<SocketAddr, String> {
    addr.map_err(|e| e.to_string())
}

/// CA, a server certificate for localhost, and the client `spiffe://test.client`.
fn write_pki(dir: &Path) -> Result<(), String> {
    let ca = Ca::new("gatehouse demo CA", KeyType::EcdsaP256, 30).map_err(|e| e.to_string())?;
    let mut server = LeafSpec::server(&["localhost"]);
    server.ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    let server = ca.issue(&server).map_err(|e| e.to_string())?;
    let client = ca
        .issue(&LeafSpec::client_uri("spiffe://test.client"))
        .map_err(|e| e.to_string())?;
    for (name, text, private) in [
        ("ca.crt", &ca.cert_pem, false),
        ("ca.key", &ca.key_pem, true),
        ("server.crt", &server.chain_pem, false),
        ("server.key", &server.key_pem, true),
        ("client.crt", &client.chain_pem, false),
        ("client.key", &client.key_pem, true),
    ] {
        crate::dev::write_pem(&dir.join(name), text, private)?;
    }
    Ok(())
}

fn config(opts: &DemoOptions, upstream: SocketAddr) -> String {
    format!(
        r#"# Written by `gatehouse demo`.
[listen]
https = "127.0.0.1:{https}"
http = "127.0.0.1:{http}"
admin = "127.0.0.1:{admin}"

[[server]]
hosts = ["localhost"]
cert = "server.crt"
key = "server.key"
client_auth = "required"
client_ca = "ca.crt"

[[route]]
name = "echo"
path_prefix = "/"
upstream = "http://{upstream}"

[[policy]]
name = "deny-test-client-teapot"
action = "deny"
  [[policy.rules]]
  from.principals = ["test.client"]
  to.paths = ["/status/418"]
"#,
        https = opts.https_port,
        http = opts.http_port,
        admin = opts.admin_port,
    )
}

/// The four commands: allowed, no client certificate, denied path, metrics.
pub(crate) fn commands(dir: &Path, https_port: u16, admin_port: u16) -> [String; 4] {
    let d = dir.display();
    let base = format!("curl --cacert {d}/ca.crt");
    let client = format!("{base} --cert {d}/client.crt --key {d}/client.key");
    [
        format!("{client} https://localhost:{https_port}/headers"),
        format!("{base} https://localhost:{https_port}/headers"),
        format!("{client} https://localhost:{https_port}/status/418"),
        format!("curl http://127.0.0.1:{admin_port}/metrics"),
    ]
}

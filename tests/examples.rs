//! Every `config/examples/*.toml` runs as its header says (issue #5). Each example opens with
//! a "Try it" block of shell lines; this file follows it:
//! - the `gatehouse cert` lines (with any `cp`/`mkdir` chained to them) run as written, with
//!   the real binary on PATH, in an empty temp dir;
//! - `gatehouse echo --listen ADDR &` becomes an in-process echo upstream (one per ADDR, and
//!   every upstream of the config must have one), `socat UNIX-LISTEN:PATH,... TCP:ADDR &` an
//!   in-process unix-socket bridge to it, and `gatehouse run -c FILE &` the in-process proxy
//!   (FILE must be the example's name);
//! - the `curl` lines run with the real curl, their ports pointed at the proxy.
//!
//! So that the examples run side by side on any machine, the config is rewritten before it
//! is loaded: listen addresses become `127.0.0.1:0`, upstream addresses those of the
//! in-process echoes, and the absolute paths below (`credential-dir.toml`'s secret mount,
//! `sidecar.toml`'s socket) move into the temp dir, in the config and in the shell lines
//! alike. Nothing else changes. Then each test checks what its example's comments promise,
//! refusals included, with the in-process client.
//!
//! curl is required: without it these tests fail (they do not skip).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use gatehouse::dev::pki::{Ca, KeyType, Leaf, LeafSpec, Usage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Absolute paths examples name, and where they go inside the temp dir.
const MOVED_PATHS: [(&str, &str); 2] = [
    ("/etc/gatehouse/tls", "etc/gatehouse/tls"),
    ("/run/app/http.sock", "run/app/http.sock"),
];

/// The examples this file tests; `every_example_is_tested` keeps it complete.
const TESTED: [&str; 10] = [
    "01-mtls-basic.toml",
    "02-rsa-spiffe.toml",
    "03-san-allow-list.toml",
    "04-wildcard-https-redirect.toml",
    "05-third-party-root.toml",
    "06-multi-sni-crl.toml",
    "07-xfcc.toml",
    "08-timeouts-and-bodies.toml",
    "credential-dir.toml",
    "sidecar.toml",
];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples")
}

// === the "Try it" block ===

/// The shell lines of an example's "Try it" block, sorted by what they do.
#[derive(Debug, Default)]
struct TryIt {
    /// `gatehouse cert ...` (and what is chained to it), in order.
    setup: Vec<String>,
    /// `gatehouse echo --listen ADDR &`: the ADDRs.
    echoes: Vec<String>,
    /// `socat UNIX-LISTEN:PATH,fork TCP:ADDR &`: (PATH, ADDR).
    bridges: Vec<(String, String)>,
    /// `gatehouse run -c FILE &`: the FILE.
    run: Option<String>,
    curls: Vec<String>,
}

impl TryIt {
    /// The `#   ` lines after the `# Try it` paragraph; `#   # ...` lines are notes.
    fn parse(name: &str, text: &str) -> Self {
        let mut lines = text.lines().skip_while(|l| !l.starts_with("# Try it"));
        assert!(lines.next().is_some(), "{name}: no \"# Try it\" block");
        let mut t = Self::default();
        let block = lines
            .skip_while(|l| l.starts_with("# ") && !l.starts_with("#   "))
            .map_while(|l| l.strip_prefix("#   "));
        for line in block {
            let line = line.trim_end();
            if line.starts_with('#') {
                continue;
            }
            let background = line.strip_suffix(" &");
            if let Some(addr) = background.and_then(|l| l.strip_prefix("gatehouse echo --listen "))
            {
                t.echoes.push(addr.to_owned());
            } else if let Some(file) = background.and_then(|l| l.strip_prefix("gatehouse run -c "))
            {
                t.run = Some(file.to_owned());
            } else if let Some(rest) = background.and_then(|l| l.strip_prefix("socat UNIX-LISTEN:"))
            {
                let (path, tcp) = rest
                    .split_once(",fork TCP:")
                    .unwrap_or_else(|| panic!("{name}: unexpected socat line {line:?}"));
                t.bridges.push((path.to_owned(), tcp.to_owned()));
            } else if line.starts_with("curl ") {
                t.curls.push(line.to_owned());
            } else {
                assert!(
                    line.starts_with("gatehouse cert "),
                    "{name}: a Try-it line this test does not know: {line:?}"
                );
                t.setup.push(line.to_owned());
            }
        }
        assert!(!t.setup.is_empty(), "{name}: no gatehouse cert lines");
        assert!(!t.curls.is_empty(), "{name}: no curl line");
        assert_eq!(
            t.run.as_deref(),
            Some(name),
            "{name}: the Try-it block must run `gatehouse run -c {name} &`"
        );
        t
    }
}

/// The value between the first pair of double quotes.
fn quoted(line: &str) -> &str {
    line.split('"').nth(1).unwrap_or_default()
}

/// Serves on a unix socket at `path` by copying bytes to and from the TCP `to` (socat).
fn bridge(path: &Path, to: SocketAddr) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut unix, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut tcp) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
                }
            });
        }
    });
}

/// A shell with the `gatehouse` under test first on PATH and no proxy variables.
fn sh(dir: &Path, line: &str) -> Command {
    let bin = Path::new(binary::BIN).parent().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", line])
        .current_dir(dir)
        .env("PATH", format!("{}:{path}", bin.display()))
        .stdin(Stdio::null());
    binary::without_proxy_env(&mut cmd);
    cmd
}

// === an example, running ===

struct Example {
    name: &'static str,
    dir: tempfile::TempDir,
    try_it: TryIt,
    proxy: Proxy,
}

/// What one curl line did.
#[derive(Debug)]
struct Curled {
    /// The `-o` file: the body, with the head first under `-i`.
    output: String,
}

impl Example {
    async fn start(name: &'static str) -> Self {
        Self::start_with(name, |_| {}).await
    }

    /// Follows the Try-it block up to `gatehouse run`; `before_run` may add files the block
    /// says the user brings (a CRL).
    async fn start_with(name: &'static str, before_run: impl FnOnce(&Path)) -> Self {
        let mut text = std::fs::read_to_string(examples_dir().join(name)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().to_str().expect("UTF-8 temp dir").to_owned();
        assert!(!here.contains([' ', '\'', '"']), "{here}");
        for (from, to) in MOVED_PATHS {
            text = text.replace(from, &format!("{here}/{to}"));
        }
        let try_it = TryIt::parse(name, &text);

        for line in &try_it.setup {
            let out = sh(dir.path(), line).output().expect("run sh");
            assert!(
                out.status.success(),
                "{name}: `{line}` failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        before_run(dir.path());

        // One echo per `gatehouse echo` line; every upstream must be one of them (or a
        // unix socket bridged to one).
        let mut echoes = BTreeMap::new();
        for addr in &try_it.echoes {
            echoes.insert(addr.clone(), start_echo().await);
        }
        for (path, tcp) in &try_it.bridges {
            let echo = echoes
                .get(tcp)
                .unwrap_or_else(|| panic!("{name}: socat to {tcp}, which no echo serves"));
            bridge(Path::new(path), *echo);
        }
        let mut config = String::new();
        for line in text.lines() {
            let key = line.split_whitespace().next().unwrap_or_default();
            let line = match key {
                "https" | "http" | "admin" => line.replacen(quoted(line), "127.0.0.1:0", 1),
                "upstream" => {
                    let up = quoted(line);
                    if let Some(path) = up.strip_prefix("unix:") {
                        assert!(
                            try_it.bridges.iter().any(|(p, _)| p == path),
                            "{name}: nothing in the Try-it block serves {up}"
                        );
                        line.to_owned()
                    } else {
                        let addr = up.strip_prefix("http://").unwrap();
                        let echo = echoes.get(addr).unwrap_or_else(|| {
                            panic!("{name}: no `gatehouse echo --listen {addr} &` for {up}")
                        });
                        line.replacen(addr, &echo.to_string(), 1)
                    }
                }
                _ => line.to_owned(),
            };
            config.push_str(&line);
            config.push('\n');
        }
        let proxy = Proxy::try_start(dir.path(), &config)
            .await
            .unwrap_or_else(|e| panic!("{name} does not start: {e}\n{config}"));
        Self {
            name,
            dir,
            try_it,
            proxy,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_else(|e| panic!("{}: {rel}: {e}", self.name))
    }

    /// Runs the Try-it curl lines against the proxy (8443 and 8080 become its ports) and
    /// asserts each exits 0 with the status in `want`.
    async fn curl(&self, want: &[u16]) -> Vec<Curled> {
        assert_eq!(self.try_it.curls.len(), want.len(), "{}", self.name);
        let mut out = Vec::new();
        for (line, want) in self.try_it.curls.iter().zip(want) {
            let mut cmd = line.replacen("curl ", "curl -q ", 1);
            cmd = cmd.replace(":8443", &format!(":{}", self.proxy.https.port()));
            if let Some(http) = self.proxy.http {
                cmd = cmd.replace(":8080", &format!(":{}", http.port()));
            }
            let output = if line.contains(" -o ") {
                None
            } else {
                cmd.push_str(" -o curl.out");
                Some(self.path("curl.out"))
            };
            cmd.push_str(" -sS -w '%{http_code}' --max-time 20");
            let mut sh = sh(self.dir.path(), &cmd);
            let run = tokio::task::spawn_blocking(move || sh.output())
                .await
                .unwrap()
                .expect("run curl (is it installed? these tests need it)");
            let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(
                run.status.success() && stdout == want.to_string(),
                "{}: `{line}`: want {want}, got exit {:?}, status {stdout:?}: {stderr}",
                self.name,
                run.status.code()
            );
            let output = output
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .unwrap_or_default();
            out.push(Curled { output });
        }
        out
    }

    /// Client settings trusting `ca` (a PEM file), presenting `<client>.crt`/`.key`.
    fn client(&self, ca: &str, client: Option<&str>) -> ClientOpts {
        ClientOpts {
            roots_pem: self.read(ca),
            identity: client.map(|c| {
                (
                    self.read(&format!("{c}.crt")),
                    self.read(&format!("{c}.key")),
                )
            }),
            alpn: vec![b"http/1.1".to_vec()],
            tls12_only: false,
        }
    }

    /// Issues another leaf from the CA in `ca_dir` (what a user would do with
    /// `gatehouse cert`), written as `<ca_dir>/<name>.crt` and `.key`.
    fn issue(&self, ca_dir: &str, name: &str, spec: &LeafSpec) -> Leaf {
        issue_in(&self.path(ca_dir), name, spec)
    }

    async fn status(&self, sni: &str, opts: &ClientOpts, host: &str, path: &str) -> u16 {
        match request(self.proxy.https, sni, opts, get(host, path)).await {
            Ok(r) => r.status,
            Err(e) => panic!("{}: {sni} {host}{path}: {e}", self.name),
        }
    }

    async fn refused(&self, sni: &str, opts: &ClientOpts, what: &str) {
        let r = request(self.proxy.https, sni, opts, get(sni, "/headers")).await;
        assert!(r.is_err(), "{}: {what} was not refused: {r:?}", self.name);
    }
}

fn issue_in(ca_dir: &Path, name: &str, spec: &LeafSpec) -> Leaf {
    let read = |f: &str| std::fs::read_to_string(ca_dir.join(f)).unwrap();
    let ca = Ca::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
    let leaf = ca.issue(spec).unwrap();
    std::fs::write(ca_dir.join(format!("{name}.crt")), &leaf.chain_pem).unwrap();
    std::fs::write(ca_dir.join(format!("{name}.key")), &leaf.key_pem).unwrap();
    leaf
}

/// The upstream's view of the request, from the echo's `/headers` JSON.
fn echoed_header(body: &str, name: &str) -> Option<String> {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {body}"));
    v["headers"][name].as_str().map(str::to_owned)
}

/// A raw HTTP/1.1 GET on the plaintext listener; the whole response as text.
async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut out))
        .await
        .expect("redirect answered")
        .unwrap();
    String::from_utf8_lossy(&out).to_lowercase()
}

fn spiffe_client(uri: &str, key_type: KeyType) -> LeafSpec {
    let mut spec = LeafSpec::client_uri(uri);
    spec.key_type = key_type;
    spec
}

// === the examples ===

#[test]
fn every_example_is_tested() {
    let mut found: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    found.sort();
    assert_eq!(found, TESTED, "add a test here for each new example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_01_mtls_basic_serves_clients_of_the_ca_only() {
    let ex = Example::start("01-mtls-basic.toml").await;
    let out = ex.curl(&[200]).await;
    let xfcc = echoed_header(&out[0].output, "x-forwarded-client-cert").unwrap();
    assert!(xfcc.contains("URI=spiffe://test.client"), "{xfcc}");

    ex.refused(
        "test.com",
        &ex.client("certs/ca.crt", None),
        "no client cert",
    )
    .await;
    ex.proxy
        .expect_metric(&handshakes("test.com", "no_client_cert"), 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_02_rsa_spiffe_allows_only_test_client() {
    let ex = Example::start("02-rsa-spiffe.toml").await;
    ex.curl(&[200]).await;
    ex.proxy
        .expect_metric(
            r#"gatehouse_requests_total{route="httpbin",code="200"}"#,
            1.0,
        )
        .await;

    ex.issue(
        "certs",
        "other",
        &spiffe_client("spiffe://other.client", KeyType::Rsa2048),
    );
    let other = ex.client("certs/ca.crt", Some("certs/other"));
    let r = request(
        ex.proxy.https,
        "test.com",
        &other,
        get("test.com", "/headers"),
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (403, "RBAC: access denied"));
    ex.proxy
        .expect_metric(
            r#"gatehouse_denied_requests_total{reason="no_allow_match"}"#,
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_03_san_allow_list_ignores_the_subject_cn() {
    let ex = Example::start("03-san-allow-list.toml").await;
    ex.curl(&[200]).await;

    let mut cn_only = LeafSpec::new(Usage::Client, 30);
    cn_only.common_name = Some("client.example.com".into());
    cn_only.uris = vec!["spiffe://test.client".into()];
    ex.issue("certs", "cn-only", &cn_only);
    let opts = ex.client("certs/ca.crt", Some("certs/cn-only"));
    ex.refused("test.com", &opts, "a client named only in its CN")
        .await;
    ex.proxy
        .expect_metric(&handshakes("test.com", "san_not_allowed"), 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_04_wildcard_tls13_only_and_redirect_to_https() {
    let ex = Example::start("04-wildcard-https-redirect.toml").await;
    let out = ex.curl(&[200, 301]).await;
    assert!(
        out[1]
            .output
            .to_lowercase()
            .contains("location: https://httpbin2.k.example.com/status/200?x=1\r\n"),
        "{}",
        out[1].output
    );

    let opts = ex.client("certs/ca.crt", Some("certs/client"));
    assert_eq!(
        ex.status(
            "other.k.example.com",
            &opts,
            "other.k.example.com",
            "/status/200"
        )
        .await,
        200
    );
    // "*.k.example.com" is one label: neither deeper names nor the bare domain.
    ex.refused("a.b.k.example.com", &opts, "two labels").await;
    ex.refused("k.example.com", &opts, "the bare domain").await;
    ex.proxy
        .expect_metric(&handshakes("none", "unknown_sni"), 2.0)
        .await;
    // TLS 1.3 only.
    let mut tls12 = opts.clone();
    tls12.tls12_only = true;
    ex.refused("httpbin2.k.example.com", &tls12, "a TLS 1.2 client")
        .await;
    // The redirect keeps the path and query; port 443 is left out.
    let reply = plain_get(
        ex.proxy.http.unwrap(),
        "Httpbin2.k.example.com:8080",
        "/a?b=1",
    )
    .await;
    assert!(reply.starts_with("http/1.1 301"), "{reply}");
    assert!(
        reply.contains("location: https://httpbin2.k.example.com/a?b=1\r\n"),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_05_third_party_root_signs_both_sides() {
    let ex = Example::start("05-third-party-root.toml").await;
    ex.curl(&[200]).await;

    // A client of another root is refused.
    let leaf = TestPki::new().client("spiffe://test.client");
    let mut opts = ex.client("certs/root-ca.crt", None);
    opts.identity = Some((leaf.chain_pem, leaf.key_pem));
    ex.refused("helloworld.example.io", &opts, "a client of another CA")
        .await;
    ex.proxy
        .expect_metric(
            &handshakes("helloworld.example.io", "untrusted_client_cert"),
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_06_multi_sni_crl_optional_clients_and_host_binding() {
    // The block says the user brings certs/ca.crl; here it revokes one extra client.
    let ex = Example::start_with("06-multi-sni-crl.toml", |dir| {
        let certs = dir.join("certs");
        let revoked = issue_in(&certs, "revoked", &LeafSpec::client_uri("spiffe://revoked"));
        let read = |f: &str| std::fs::read_to_string(certs.join(f)).unwrap();
        let ca = Ca::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
        std::fs::write(certs.join("ca.crl"), ca.crl(&[revoked.serial]).unwrap()).unwrap();
    })
    .await;
    ex.curl(&[200, 200]).await;
    // The two requests took the two routes (the second upstream serves the public names).
    for route in ["0", "1"] {
        ex.proxy
            .expect_metric(
                &format!(r#"gatehouse_requests_total{{route="{route}",code="200"}}"#),
                1.0,
            )
            .await;
    }

    let client = ex.client("certs/ca.crt", Some("certs/client"));
    ex.refused(
        "api.example.com",
        &ex.client("certs/ca.crt", Some("certs/revoked")),
        "a revoked client",
    )
    .await;
    ex.proxy
        .expect_metric(&handshakes("api.example.com", "revoked_client_cert"), 1.0)
        .await;
    ex.refused(
        "api.example.com",
        &ex.client("certs/ca.crt", None),
        "no client cert on the required server",
    )
    .await;
    ex.refused("other.example.com", &client, "an unknown SNI")
        .await;
    ex.proxy
        .expect_metric(&handshakes("none", "unknown_sni"), 1.0)
        .await;
    // Optional: a presented certificate is verified (and a good one passes).
    assert_eq!(
        ex.status(
            "www.public.example.com",
            &client,
            "www.public.example.com",
            "/status/200"
        )
        .await,
        200
    );
    let leaf = TestPki::new().client("spiffe://test.client");
    let mut opts = ex.client("certs/ca.crt", None);
    opts.identity = Some((leaf.chain_pem, leaf.key_pem));
    ex.refused(
        "www.public.example.com",
        &opts,
        "a presented cert of another CA",
    )
    .await;
    // SNI and Host are bound.
    assert_eq!(
        ex.status(
            "api.example.com",
            &client,
            "www.public.example.com",
            "/status/200"
        )
        .await,
        421
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_07_xfcc_replaces_what_the_client_sent() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let ex = Example::start("07-xfcc.toml").await;
    let out = ex.curl(&[200]).await;
    let xfcc = echoed_header(&out[0].output, "x-forwarded-client-cert").unwrap();
    let chain = ex.read("certs/client.crt");
    let leaf = CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let hash: String = sha2::Sha256::digest(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        xfcc,
        format!("Hash={hash};Subject=\"CN=client\";URI=spiffe://test.client"),
        "the server cert has no URI SAN, so no By="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_08_route_timeout_and_a_20_mib_body() {
    let ex = Example::start("08-timeouts-and-bodies.toml").await;
    ex.curl(&[200]).await;
    let big = std::fs::metadata(ex.path("big.bin")).unwrap().len();
    assert_eq!(big, 20 * 1024 * 1024);

    let opts = ex.client("certs/ca.crt", Some("certs/client"));
    assert_eq!(
        ex.status("test.com", &opts, "test.com", "/delay/1").await,
        200
    );
    let started = tokio::time::Instant::now();
    assert_eq!(
        ex.status("test.com", &opts, "test.com", "/delay/3").await,
        504
    );
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(1900),
        "504 after {took:?}, want the route's 2 s"
    );
    ex.proxy
        .expect_metric(r#"gatehouse_requests_total{route="slow",code="504"}"#, 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_credential_dir_reads_a_kubernetes_tls_secret() {
    let ex = Example::start("credential-dir.toml").await;
    let out = ex.curl(&[200, 301]).await;
    assert!(
        out[1]
            .output
            .to_lowercase()
            .contains("location: https://test.com/headers\r\n"),
        "{}",
        out[1].output
    );
    let opts = ex.client("ca/ca.crt", Some("ca/client"));
    assert_eq!(
        ex.status(
            "x.mtls.example.com",
            &opts,
            "x.mtls.example.com",
            "/status/200"
        )
        .await,
        200
    );
    ex.refused("test.com", &ex.client("ca/ca.crt", None), "no client cert")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_sidecar_unix_upstream_admits_only_the_frontend() {
    let ex = Example::start("sidecar.toml").await;
    let out = ex.curl(&[200]).await;
    let xfcc = echoed_header(&out[0].output, "x-forwarded-client-cert").unwrap();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/shop/sa/frontend"),
        "{xfcc}"
    );

    ex.issue(
        "certs",
        "other",
        &spiffe_client("spiffe://test.client", KeyType::EcdsaP256),
    );
    let other = ex.client("certs/ca.crt", Some("certs/other"));
    // An IP address as the server name: rustls sends no SNI, as curl does.
    let r = request(
        ex.proxy.https,
        "127.0.0.1",
        &other,
        get("127.0.0.1", "/headers"),
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (403, "RBAC: access denied"));
}

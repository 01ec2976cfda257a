//! The harness of `examples.rs`: an example's "Try it" block parsed into what it does, and
//! the example run as that block says (the `gatehouse cert` lines in a shell, echoes, unix
//! bridges and the proxy in-process, the config rewritten to free ports and the temp dir),
//! with its curl lines and the in-process client to check it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gatehouse::dev::pki::{Ca, KeyType, Leaf, LeafSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ClientOpts, Proxy, STEP, binary, get, request, start_echo};

/// Absolute paths examples name, and where they go inside the temp dir.
pub const MOVED_PATHS: [(&str, &str); 2] = [
    ("/etc/gatehouse/tls", "etc/gatehouse/tls"),
    ("/run/app/http.sock", "run/app/http.sock"),
];

/// The examples `examples.rs` tests; its `every_example_is_tested` keeps this complete.
pub const TESTED: [&str; 11] = [
    "01-mtls-basic.toml",
    "02-rsa-spiffe.toml",
    "03-san-allow-list.toml",
    "04-wildcard-https-redirect.toml",
    "05-third-party-root.toml",
    "06-multi-sni-crl.toml",
    "07-xfcc.toml",
    "08-timeouts-and-bodies.toml",
    "credential-dir.toml",
    "grpc.toml",
    "sidecar.toml",
];

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples")
}

// === the "Try it" block ===

/// The shell lines of an example's "Try it" block, sorted by what they do.
#[derive(Debug, Default)]
pub struct TryIt {
    /// `gatehouse cert ...` (and what is chained to it), in order.
    pub setup: Vec<String>,
    /// `gatehouse echo --listen ADDR &`: the ADDRs.
    pub echoes: Vec<String>,
    /// `socat UNIX-LISTEN:PATH,fork TCP:ADDR &`: (PATH, ADDR).
    pub bridges: Vec<(String, String)>,
    /// `gatehouse run -c FILE &`: the FILE.
    pub run: Option<String>,
    pub curls: Vec<String>,
}

impl TryIt {
    /// The `#   ` lines after the `# Try it` paragraph; `#   # ...` lines are notes.
    pub fn parse(name: &str, text: &str) -> Self {
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
pub fn quoted(line: &str) -> &str {
    line.split('"').nth(1).unwrap_or_default()
}

/// Serves on a unix socket at `path` by copying bytes to and from the TCP `to` (socat).
pub fn bridge(path: &Path, to: SocketAddr) {
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
pub fn sh(dir: &Path, line: &str) -> Command {
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

pub struct Example {
    pub name: &'static str,
    pub dir: tempfile::TempDir,
    pub try_it: TryIt,
    pub proxy: Proxy,
}

/// What one curl line did.
#[derive(Debug)]
pub struct Curled {
    /// The `-o` file: the body, with the head first under `-i`.
    pub output: String,
}

impl Example {
    pub async fn start(name: &'static str) -> Self {
        Self::start_with(name, |_| {}).await
    }

    /// Follows the Try-it block up to `gatehouse run`; `before_run` may add files the block
    /// says the user brings (a CRL).
    pub async fn start_with(name: &'static str, before_run: impl FnOnce(&Path)) -> Self {
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

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_else(|e| panic!("{}: {rel}: {e}", self.name))
    }

    /// Runs the Try-it curl lines against the proxy (8443 and 8080 become its ports) and
    /// asserts each exits 0 with the status in `want`.
    pub async fn curl(&self, want: &[u16]) -> Vec<Curled> {
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
    pub fn client(&self, ca: &str, client: Option<&str>) -> ClientOpts {
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
            kx_groups: None,
        }
    }

    /// Issues another leaf from the CA in `ca_dir` (what a user would do with
    /// `gatehouse cert`), written as `<ca_dir>/<name>.crt` and `.key`.
    pub fn issue(&self, ca_dir: &str, name: &str, spec: &LeafSpec) -> Leaf {
        issue_in(&self.path(ca_dir), name, spec)
    }

    pub async fn status(&self, sni: &str, opts: &ClientOpts, host: &str, path: &str) -> u16 {
        match request(self.proxy.https, sni, opts, get(host, path)).await {
            Ok(r) => r.status,
            Err(e) => panic!("{}: {sni} {host}{path}: {e}", self.name),
        }
    }

    pub async fn refused(&self, sni: &str, opts: &ClientOpts, what: &str) {
        let r = request(self.proxy.https, sni, opts, get(sni, "/headers")).await;
        assert!(r.is_err(), "{}: {what} was not refused: {r:?}", self.name);
    }
}

pub fn issue_in(ca_dir: &Path, name: &str, spec: &LeafSpec) -> Leaf {
    let read = |f: &str| std::fs::read_to_string(ca_dir.join(f)).unwrap();
    let ca = Ca::from_pem(&read("ca.crt"), &read("ca.key")).unwrap();
    let leaf = ca.issue(spec).unwrap();
    std::fs::write(ca_dir.join(format!("{name}.crt")), &leaf.chain_pem).unwrap();
    std::fs::write(ca_dir.join(format!("{name}.key")), &leaf.key_pem).unwrap();
    leaf
}

/// The upstream's view of the request, from the echo's `/headers` JSON.
pub fn echoed_header(body: &str, name: &str) -> Option<String> {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {body}"));
    v["headers"][name].as_str().map(str::to_owned)
}

/// A raw HTTP/1.1 GET on the plaintext listener; the whole response as text.
pub async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> String {
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

pub fn spiffe_client(uri: &str, key_type: KeyType) -> LeafSpec {
    let mut spec = LeafSpec::client_uri(uri);
    spec.key_type = key_type;
    spec
}

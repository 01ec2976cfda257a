//! `gatehouse demo` (SPEC §1) as a user meets it: the real binary in its own process, on
//! free ports, printing four curl commands on stdout; each command is then run with the real
//! `curl`, exactly as printed, and its outcome checked: the allowed request reaches the echo
//! upstream with the client's identity, the request without a client certificate is refused
//! at the handshake, the denied path gets 403, and the metrics count all three. SIGTERM then
//! stops the demo with exit 0.
//!
//! curl is required: without it this test fails (it does not skip).

mod common;

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::binary::{self, BIN, Reaper};

/// From spawn to the four commands on stdout (a PKI of three ECDSA keys, three binds).
const STARTUP: Duration = Duration::from_secs(30);

/// From SIGTERM to exit, with no connection open.
const SHUTDOWN: Duration = Duration::from_secs(10);

/// Per curl run.
const CURL_MAX_TIME: &str = "10";

/// The server counts a request or handshake after the client has seen its outcome, so the
/// metrics are polled for up to this long.
const METRICS_SETTLE: Duration = Duration::from_secs(3);

/// What one curl run left behind.
#[derive(Debug)]
struct Curl {
    /// curl's exit status.
    exit: Option<i32>,
    /// `%{http_code}`: `000` when no HTTP response was received.
    http_code: String,
    body: String,
    stderr: String,
}

/// Fails the test (does not skip it) when there is no curl.
fn require_curl() {
    match Command::new("curl").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`curl --version` failed: {out:?}"),
        Err(e) => panic!(
            "this test runs the curl commands `gatehouse demo` prints, so it needs curl on \
             PATH (CI installs it): {e}"
        ),
    }
}

/// Runs a printed command as a user would paste it, plus `-sS -o FILE -w %{http_code}
/// --max-time`. `-q` (first) ignores any ~/.curlrc; proxy variables are removed so the
/// request goes to 127.0.0.1 directly.
fn curl(line: &str, scratch: &Path) -> Curl {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"curl"), "{line}");
    let body = scratch.join("body");
    let _ = std::fs::remove_file(&body);
    let mut cmd = Command::new("curl");
    cmd.arg("-q")
        .args(&words[1..])
        .args([
            "-sS",
            "-w",
            "%{http_code}",
            "--max-time",
            CURL_MAX_TIME,
            "-o",
        ])
        .arg(&body)
        .stdin(Stdio::null());
    binary::without_proxy_env(&mut cmd);
    let out = cmd.output().unwrap_or_else(|e| panic!("run curl: {e}"));
    Curl {
        exit: out.status.code(),
        http_code: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A printed command: its options (flag -> value) and its URL.
#[derive(Debug)]
struct Printed {
    flags: Vec<(String, String)>,
    url: String,
}

impl Printed {
    /// `curl [--flag value]... URL`, each word of characters the shell leaves alone, so
    /// splitting on whitespace is what the shell does with the pasted line.
    fn parse(line: &str) -> Self {
        let safe = |w: &str| {
            w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._:-".contains(c))
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.iter().all(|w| safe(w)),
            "a word of {line:?} needs shell quoting"
        );
        let (url, rest) = words[1..].split_last().expect("a URL");
        assert!(
            rest.len() % 2 == 0,
            "options come in --flag value pairs: {line}"
        );
        let flags = rest
            .chunks(2)
            .map(|p| {
                assert!(p[0].starts_with("--"), "{line}");
                (p[0].to_owned(), p[1].to_owned())
            })
            .collect();
        Self {
            flags,
            url: (*url).to_owned(),
        }
    }

    fn names(&self) -> HashSet<&str> {
        self.flags.iter().map(|(f, _)| f.as_str()).collect()
    }

    fn flag(&self, name: &str) -> &str {
        self.flags
            .iter()
            .find(|(f, _)| f == name)
            .map_or_else(|| panic!("no {name} in {self:?}"), |(_, v)| v.as_str())
    }
}

/// The value of one sample line `series value` of a Prometheus text body, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn demo_prints_four_curl_commands_that_do_what_they_say() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().expect("UTF-8 temp dir").to_owned();
    let stderr_path = scratch.path().join("demo.stderr");
    let mut child = Reaper(
        Command::new(BIN)
            .args(["demo", "--dir", &d])
            .args(["--https-port", "0", "--http-port", "0"])
            .args(["--admin-port", "0", "--upstream-port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn gatehouse demo"),
    );
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // stdout, line by line, from a thread (the reads block); the thread ends at EOF.
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + STARTUP;
    let mut lines = Vec::new();
    while lines.len() < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => panic!(
                "want 4 curl commands on stdout within {STARTUP:?}, got {lines:?} ({e}); \
                 exit {:?}\n--- stderr\n{}",
                child.0.try_wait(),
                stderr()
            ),
        }
    }

    // The shape SPEC §1 promises: only commands, each beginning with `curl `, in order
    // allowed, no client certificate, denied path, metrics.
    for line in &lines {
        assert!(line.starts_with("curl "), "not a curl command: {line:?}");
    }
    let cmds: Vec<Printed> = lines.iter().map(|l| Printed::parse(l)).collect();
    let https = cmds[0]
        .url
        .strip_suffix("/headers")
        .expect("allowed: /headers");
    assert!(
        https.starts_with("https://localhost:") && !https.ends_with(":0"),
        "{https}"
    );
    let [allowed, anonymous, denied, metrics] = &cmds[..] else {
        unreachable!()
    };
    let with_cert = HashSet::from(["--cacert", "--cert", "--key"]);
    assert_eq!(allowed.names(), with_cert, "{allowed:?}");
    assert_eq!(
        anonymous.names(),
        HashSet::from(["--cacert"]),
        "{anonymous:?}"
    );
    assert_eq!(
        anonymous.url, allowed.url,
        "the same request, without a certificate"
    );
    assert_eq!(denied.names(), with_cert, "{denied:?}");
    assert_eq!(denied.url, format!("{https}/status/418"));
    assert!(metrics.flags.is_empty(), "{metrics:?}");
    assert!(
        metrics.url.starts_with("http://127.0.0.1:")
            && metrics.url.ends_with("/metrics")
            && !metrics.url.contains(":0/"),
        "{metrics:?}"
    );
    // The files the commands name are the PKI the demo wrote into --dir.
    for (flag, file) in [
        ("--cacert", "ca.crt"),
        ("--cert", "client.crt"),
        ("--key", "client.key"),
    ] {
        assert_eq!(allowed.flag(flag), format!("{d}/{file}"));
        assert_eq!(denied.flag(flag), format!("{d}/{file}"));
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    assert_eq!(anonymous.flag("--cacert"), format!("{d}/ca.crt"));

    // 1. Allowed: 200 from the echo upstream, which saw the client's identity in XFCC.
    let r = curl(&lines[0], scratch.path());
    assert!(
        r.exit == Some(0) && r.http_code == "200",
        "allowed request: {r:?}\n--- demo stderr\n{}",
        stderr()
    );
    let echoed: serde_json::Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {}", r.body));
    let header = |name: &str| {
        echoed["headers"][name]
            .as_str()
            .unwrap_or_else(|| panic!("upstream did not get {name}: {echoed}"))
            .to_owned()
    };
    let xfcc = header("x-forwarded-client-cert");
    assert!(xfcc.contains("URI=spiffe://test.client"), "{xfcc}");
    assert!(xfcc.contains("Hash="), "{xfcc}");
    assert_eq!(header("x-forwarded-proto"), "https");

    // 2. No client certificate: refused at the TLS handshake, so no HTTP status at all (the
    // metrics below show it was the handshake). In TLS 1.3 the server's alert follows the
    // client's Finished, and curl is already sending its request: gatehouse keeps reading
    // after the alert, so curl sees the alert (exit 56, "certificate required") rather than a
    // reset connection (exit 55, "getpeername() failed", before that fix).
    let r = curl(&lines[1], scratch.path());
    assert!(
        r.exit == Some(56) && r.http_code == "000",
        "want a TLS refusal (curl exit 56, no HTTP status): {r:?}\n--- demo stderr\n{}",
        stderr()
    );
    assert!(
        r.stderr.contains("certificate required"),
        "curl shows the alert: {r:?}"
    );

    // 3. The denied path: 403 from the policy, as SPEC words it.
    let r = curl(&lines[2], scratch.path());
    assert!(
        r.exit == Some(0) && r.http_code == "403",
        "denied path: {r:?}\n--- demo stderr\n{}",
        stderr()
    );
    assert_eq!(r.body, "RBAC: access denied");

    // 4. The metrics count the three: two good handshakes and a refused one, one 200 and one
    // 403 request (denied before routing, so route "none"), one denial by the reference rule.
    let want = [
        (
            r#"gatehouse_tls_handshakes_total{server="localhost",result="ok"}"#,
            2.0,
        ),
        (
            r#"gatehouse_tls_handshakes_total{server="localhost",result="no_client_cert"}"#,
            1.0,
        ),
        (r#"gatehouse_requests_total{route="echo",code="200"}"#, 1.0),
        (r#"gatehouse_requests_total{route="none",code="403"}"#, 1.0),
        (r#"gatehouse_denied_requests_total{reason="policy"}"#, 1.0),
        (
            r#"gatehouse_authz_decisions_total{policy="deny-test-client-teapot",action="deny",result="matched"}"#,
            1.0,
        ),
    ];
    let settle = Instant::now() + METRICS_SETTLE;
    let body = loop {
        let r = curl(&lines[3], scratch.path());
        assert!(
            r.exit == Some(0) && r.http_code == "200",
            "metrics: {r:?}\n--- demo stderr\n{}",
            stderr()
        );
        let all = want.iter().all(|(s, v)| sample(&r.body, s) == Some(*v));
        if all || Instant::now() >= settle {
            break r.body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (series, value) in want {
        assert_eq!(sample(&body, series), Some(value), "{series}\n{body}");
    }

    // SIGTERM: with no connection open there is nothing to drain, so a prompt, clean exit 0
    // (well within the default 30 s drain_timeout), and nothing more on stdout.
    let status = child.terminate(SHUTDOWN);
    assert!(
        status.is_some_and(|s| s.success()),
        "want exit 0 within {SHUTDOWN:?} of SIGTERM, got {status:?} (None: still running)\n\
         --- stderr\n{}",
        stderr()
    );
    reader.join().unwrap();
    let extra: Vec<String> = rx.try_iter().collect();
    assert!(
        extra.is_empty(),
        "stdout must hold only the commands: {extra:?}"
    );
}

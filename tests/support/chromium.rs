//! Headless Chromium driven as a person's browser, for `tests/browser.rs` (included with
//! `#[path]`): a temporary HOME whose NSS database (`$HOME/.pki/nssdb`, where Chromium on
//! Linux keeps certificates) is made with Debian's `libnss3-tools`, a fresh profile that
//! sends a client certificate without asking, one page load with `--dump-dom`, and the
//! NetLog that Chromium writes of it. Every child runs with a deadline in its own process
//! group, and is killed with that group (Chromium's helper processes) when it overstays.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::binary::{s, without_proxy_env};

/// One Chromium page load; past it the browser's whole process group is killed.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(60);
/// `certutil` and `pk12util`, each run.
const TOOL_DEADLINE: Duration = Duration::from_secs(30);

/// Why chromium, pk12util or certutil cannot be started; empty when all can.
pub(crate) fn tools_missing() -> Vec<String> {
    let tools = [
        ("chromium", "--version"),
        ("pk12util", "-h"),
        ("certutil", "-H"),
    ];
    let why = |(tool, arg): &(&str, &str)| {
        let out = Command::new(tool).arg(arg).stdin(Stdio::null()).output();
        match out {
            Err(e) => Some(format!("{tool}: {e}")),
            // `chromium --version` must succeed; the NSS tools print usage with any status.
            Ok(o) if *tool == "chromium" && !o.status.success() => Some(format!(
                "{tool} {arg}: {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            )),
            Ok(_) => None,
        }
    };
    tools.iter().filter_map(why).collect()
}

/// A child's run bounded by a deadline, in its own process group (so Chromium's helper
/// processes go with it), stdout and stderr into `<log>.out` and `<log>.err`.
struct Bounded {
    /// `None` when killed at the deadline.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn run_bounded(mut cmd: Command, limit: Duration, log: &Path) -> Bounded {
    let (out, err) = (log.with_extension("out"), log.with_extension("err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if start.elapsed() >= limit {
            // The group is the child's own PID, still unreaped here: only what it started.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Bounded {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        took: start.elapsed(),
    }
}

/// An NSS tool that must succeed.
fn nss(tool: &str, args: &[&str], log: &Path) {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    let r = run_bounded(cmd, TOOL_DEADLINE, log);
    assert!(
        r.status.is_some_and(|s| s.success()),
        "{tool} {args:?}: {:?} (None: killed after {TOOL_DEADLINE:?})\n{}{}",
        r.status,
        r.stdout,
        r.stderr
    );
}

/// What goes into a browser's NSS database and profile.
pub(crate) struct Setup<'a> {
    /// Trusted as a TLS issuer (`certutil -A -t C,,`).
    pub(crate) ca: &'a Path,
    /// The CA's CN: its nickname, and the issuer the certificate is auto-selected by.
    pub(crate) ca_cn: &'a str,
    /// A PKCS#12 file and its password, imported with `pk12util`.
    pub(crate) p12: Option<(&'a Path, &'a str)>,
    /// `https://host:port`, where a certificate of `ca_cn` is sent without asking.
    pub(crate) origin: &'a str,
}

/// One person's browser: a temporary HOME with its NSS database, and a fresh profile.
pub(crate) struct Browser {
    root: PathBuf,
}

impl Browser {
    /// Makes `root`/home/.pki/nssdb and `root`/profile as `setup` says.
    pub(crate) fn new(root: PathBuf, setup: &Setup) -> Self {
        let db_dir = root.join("home/.pki/nssdb");
        std::fs::create_dir_all(&db_dir).unwrap();
        let db = format!("sql:{}", db_dir.display());
        let log = |step: &str| root.join(step);
        nss(
            "certutil",
            &["-N", "-d", &db, "--empty-password"],
            &log("nss-new"),
        );
        if let Some((p12, password)) = setup.p12 {
            let args = ["-i", s(p12), "-d", &db, "-W", password, "-K", ""];
            nss("pk12util", &args, &log("nss-p12"));
        }
        let (ca, cn) = (s(setup.ca), setup.ca_cn);
        let args = ["-A", "-d", &db, "-n", cn, "-t", "C,,", "-a", "-i", ca];
        nss("certutil", &args, &log("nss-ca"));
        // The content setting that the AutoSelectCertificateForUrls policy sets, here in the
        // profile's own preferences: nothing outside `root` changes.
        let prefs = serde_json::json!({"profile": {"content_settings": {"exceptions": {
            "auto_select_certificate": {
                (format!("{},*", setup.origin)): {
                    "setting": {"filters": [{"ISSUER": {"CN": cn}}]}
                }
            }
        }}}});
        let profile = root.join("profile/Default");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(profile.join("Preferences"), prefs.to_string()).unwrap();
        Self { root }
    }

    /// Loads `url` in headless Chromium and returns the DOM it printed and its NetLog.
    pub(crate) fn open(&self, url: &str) -> Page {
        let home = self.root.join("home");
        let netlog = self.root.join("netlog.json");
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
        ])
        .args(["--no-first-run", "--disable-background-networking"])
        .args([
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
        ])
        .arg(format!(
            "--user-data-dir={}",
            self.root.join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(["--dump-dom", url])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"));
        without_proxy_env(&mut cmd);
        let r = run_bounded(cmd, CHROMIUM_DEADLINE, &self.root.join("chromium"));
        assert!(
            r.status.is_some(),
            "chromium still running after {CHROMIUM_DEADLINE:?} (waiting for a certificate \
             choice?): killed\n--- dom\n{}--- stderr\n{}",
            r.stdout,
            r.stderr
        );
        let net = NetLog::read(&netlog, &r.stderr);
        Page {
            dom: r.stdout,
            net,
            took: r.took,
        }
    }
}

pub(crate) struct Page {
    /// What `--dump-dom` printed: empty when the page failed to load.
    pub(crate) dom: String,
    pub(crate) net: NetLog,
    pub(crate) took: Duration,
}

impl Page {
    /// The echo's JSON, which Chromium shows as the text of a `<pre>`.
    pub(crate) fn echo_json(&self) -> Value {
        let text = self
            .dom
            .split_once("<pre>")
            .and_then(|(_, rest)| rest.split_once("</pre>"))
            .map(|(pre, _)| pre.replace("&lt;", "<").replace("&gt;", ">"))
            .unwrap_or_else(|| panic!("no <pre> in the page:\n{}", self.dom));
        serde_json::from_str(&text.replace("&amp;", "&"))
            .unwrap_or_else(|e| panic!("not the echo's JSON ({e}):\n{}", self.dom))
    }
}

/// An event of Chromium's NetLog: its type, its source (a socket, an HTTP/2 session) and
/// its parameters.
struct Event {
    kind: String,
    source: i64,
    params: Value,
}

pub(crate) struct NetLog {
    events: Vec<Event>,
}

impl NetLog {
    fn read(path: &Path, chromium_stderr: &str) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}\n--- chromium stderr\n{chromium_stderr}",
                path.display()
            )
        });
        let log: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let names: std::collections::HashMap<u64, &str> = log["constants"]["logEventTypes"]
            .as_object()
            .expect("NetLog constants")
            .iter()
            .map(|(name, id)| (id.as_u64().unwrap(), name.as_str()))
            .collect();
        let events = log["events"].as_array().expect("NetLog events");
        let events = events
            .iter()
            .map(|e| Event {
                kind: names[&e["type"].as_u64().unwrap()].to_owned(),
                source: e["source"]["id"].as_i64().unwrap(),
                params: e["params"].clone(),
            })
            .collect();
        Self { events }
    }

    /// The sources with an event of `kind` whose parameters satisfy `ok`.
    fn sources(&self, kind: &str, ok: impl Fn(&Value) -> bool) -> Vec<i64> {
        let matching = self
            .events
            .iter()
            .filter(|e| e.kind == kind && ok(&e.params));
        matching.map(|e| e.source).collect()
    }

    /// The TLS and HTTP/2 events, for failure messages.
    fn summary(&self) -> String {
        let shown = [
            "SSL_CONNECT",
            "SSL_CLIENT_CERT",
            "SSL_READ",
            "HTTP2_SESSION_",
        ];
        let shown = self
            .events
            .iter()
            .filter(|e| shown.iter().any(|k| e.kind.starts_with(k)) && !e.kind.contains("WINDOW"));
        let line = |e: &Event| format!("{} @{} {:.300}\n", e.kind, e.source, e.params);
        shown.map(line).collect()
    }

    /// One HTTP/2 session, on a TLS 1.3 connection that sent one client certificate and
    /// negotiated `h2`, carried `GET path` and got `:status: 200`.
    pub(crate) fn expect_h2_request_with_client_cert(&self, path: &str) {
        let with_cert = self.sources("SSL_CLIENT_CERT_PROVIDED", |p| p["cert_count"] == 1);
        let h2 = self.sources("SSL_CONNECT", |p| {
            p["next_proto"] == "h2" && p["version"] == "TLS 1.3"
        });
        let sessions = self.sources("HTTP2_SESSION_INITIALIZED", |p| {
            let socket = p["source_dependency"]["id"].as_i64();
            socket.is_some_and(|s| with_cert.contains(&s) && h2.contains(&s))
        });
        let sent = self.sources("HTTP2_SESSION_SEND_HEADERS", |p| {
            has_header(p, ":method: GET") && has_header(p, &format!(":path: {path}"))
        });
        let answered = self.sources("HTTP2_SESSION_RECV_HEADERS", |p| {
            has_header(p, ":status: 200")
        });
        assert!(
            sessions
                .iter()
                .any(|s| sent.contains(s) && answered.contains(s)),
            "no HTTP/2 GET {path} -> 200 over an h2 connection with the client certificate:\n{}",
            self.summary()
        );
    }

    /// Chromium offered no certificate, and the connection then failed with
    /// ERR_BAD_SSL_CLIENT_AUTH_CERT (-117): the server's `certificate_required` alert.
    pub(crate) fn expect_no_cert_and_refused(&self) {
        let sent = self.sources("SSL_CLIENT_CERT_PROVIDED", |p| p["cert_count"] != 0);
        let empty = self.sources("SSL_CLIENT_CERT_PROVIDED", |p| p["cert_count"] == 0);
        assert!(
            sent.is_empty() && !empty.is_empty(),
            "want only empty certificate answers:\n{}",
            self.summary()
        );
        let alerted = self
            .events
            .iter()
            .any(|e| e.params["net_error"] == -117 && empty.contains(&e.source));
        assert!(
            alerted,
            "no ERR_BAD_SSL_CLIENT_AUTH_CERT on the connection without a certificate:\n{}",
            self.summary()
        );
        let answered = self.sources("HTTP2_SESSION_RECV_HEADERS", |_| true);
        assert!(
            answered.is_empty(),
            "got an HTTP answer:\n{}",
            self.summary()
        );
    }
}

fn has_header(params: &Value, header: &str) -> bool {
    let headers = params["headers"].as_array();
    headers.is_some_and(|h| h.iter().any(|x| x == header))
}

//! The real `gatehouse` binary as a child process, for the black-box CLI tests: each run is
//! bounded by a deadline, and a child that overstays (or outlives a panicking test) is killed
//! by its own handle, never by name. Also a dev PKI made with `gatehouse cert`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// No command here should take more than a few seconds; RSA-4096 key generation on a busy
/// 2-core machine is the slowest. Past this the child is killed and the test fails.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The SPEC §2 reference config, as shipped.
pub fn reference_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gatehouse.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a finished `gatehouse` run left behind.
#[derive(Debug)]
pub struct Run {
    /// `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Run {
    pub fn first_line(&self) -> &str {
        self.stdout.lines().next().unwrap_or_default()
    }

    /// Panics with the whole run unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "gatehouse {:?}: want exit {code}\n--- stdout\n{}--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }
}

/// Kills the child if it is still running when dropped (a panicking test included), and
/// reaps it either way.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Reaper {
    /// Sends SIGTERM (with kill(1), by the child's PID) and waits up to `within` for the
    /// exit status; `None` if it is still running then.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill(1)");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for gatehouse") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `gatehouse ARGS...` in `cwd` (default: the test's) and waits for it, up to [`DEADLINE`].
pub fn gatehouse_in(cwd: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = Reaper(cmd.spawn().expect("spawn gatehouse"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.0.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.0.stderr.take().unwrap()));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for gatehouse") {
            break status;
        }
        if Instant::now() >= deadline {
            drop(child); // kills and reaps
            panic!("gatehouse {args:?} still running after {DEADLINE:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(child);
    Run {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

pub fn gatehouse(args: &[&str]) -> Run {
    gatehouse_in(None, args)
}

/// `gatehouse` with whitespace-separated arguments (temp paths have no spaces).
pub fn gh(line: &str) -> Run {
    gatehouse(&line.split_whitespace().collect::<Vec<_>>())
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A temp dir with `certs/` made by `gatehouse cert` (ca, server for test.com +
/// *.mtls.example.com + 127.0.0.1, client spiffe://test.client) and the reference config at
/// `gatehouse.toml`.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Self {
        Self::with_key_type("ecdsa-p256")
    }

    pub fn with_key_type(kt: &str) -> Self {
        let setup = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let c = setup.certs();
        let c = s(&c);
        gh(&format!("cert ca --out {c} --key-type {kt}")).ok();
        gh(&format!(
            "cert server --ca {c} --out {c} --key-type {kt} \
             --dns test.com --dns *.mtls.example.com --ip 127.0.0.1"
        ))
        .ok();
        gh(&format!(
            "cert client --ca {c} --out {c} --key-type {kt} --uri spiffe://test.client"
        ))
        .ok();
        setup.write("gatehouse.toml", &reference_config());
        setup
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn certs(&self) -> PathBuf {
        self.path("certs")
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn config(&self) -> PathBuf {
        self.path("gatehouse.toml")
    }

    /// The reference config with the first `from` replaced by `to` (`from` must occur).
    pub fn write_config_variant(&self, rel: &str, from: &str, to: &str) -> PathBuf {
        let text = reference_config();
        assert!(text.contains(from), "{from:?} not in the reference config");
        self.write(rel, &text.replacen(from, to, 1))
    }

    pub fn check(&self, config: &Path) -> Run {
        gatehouse(&["check", "-c", s(config)])
    }

    /// `gatehouse authz -c <reference config> ARGS...` (whitespace-separated).
    pub fn authz(&self, line: &str) -> Run {
        self.authz_with(&self.config(), line)
    }

    pub fn authz_with(&self, config: &Path, line: &str) -> Run {
        let mut args = vec!["authz", "-c", s(config)];
        args.extend(line.split_whitespace());
        gatehouse(&args)
    }
}

/// A port free on 127.0.0.1 a moment ago, for a child process that must be told its port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes the proxy variables, so curl talks to 127.0.0.1 directly.
pub fn without_proxy_env(cmd: &mut Command) {
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
}

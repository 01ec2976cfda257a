//! Signals to the real binary: SIGHUP reloads a changed config (and survives a broken one)
//! when file watching is off, and SIGTERM drains in-flight requests, exiting 0 at once when
//! nothing is in flight.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::binary::{Reaper, free_port};
use common::*;

/// Sends SIGTERM; `wait()` then waits (bounded) for the exit status.
fn terminate(gh: &mut Reaper) -> Exiting<'_> {
    let term = Command::new("kill")
        .args(["-TERM", &gh.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    Exiting(gh)
}

struct Exiting<'a>(&'a mut Reaper);

impl Exiting<'_> {
    fn wait(self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.0.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn sighup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn start_binary(pki: &TestPki, cfg: &str) -> (Reaper, std::net::SocketAddr) {
    let port = free_port();
    let cfg = cfg.replace(
        "https = \"127.0.0.1:0\"",
        &format!("https = \"127.0.0.1:{port}\"\n[reload]\nwatch = false"),
    );
    let cfg = cfg.replace("[[server]]", "[log]\naccess_log = false\n\n[[server]]");
    std::fs::write(pki.path("gatehouse.toml"), &cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "-c"])
        .arg(pki.path("gatehouse.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gatehouse did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Reaper(child), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_policy_and_survives_a_broken_config() {
    let (pki, client, echo) = test_com().await;
    let (mut gh, addr) = start_binary(&pki, &config(&pki, &["test.com"], echo, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let status = |path: &'static str| {
        let opts = opts.clone();
        async move {
            request(addr, "test.com", &opts, get("test.com", path))
                .await
                .map(|r| r.status)
        }
    };
    assert_eq!(status("/status/418").await, Ok(418));

    // A changed policy: with watch = false nothing happens until SIGHUP.
    let cfg = std::fs::read_to_string(pki.path("gatehouse.toml")).unwrap();
    replace(&pki.path("gatehouse.toml"), &format!("{cfg}{DENY_TEAPOT}"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        status("/status/418").await,
        Ok(418),
        "watch = false: files alone do not reload"
    );
    sighup(&gh.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while status("/status/418").await != Ok(403) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not apply the policy within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken config: SIGHUP is refused, the old config keeps serving.
    replace(&pki.path("gatehouse.toml"), "[listen\nhttps = ");
    sighup(&gh.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status("/status/418").await, Ok(403));
    assert_eq!(status("/status/200").await, Ok(200));
    assert!(
        gh.0.try_wait().unwrap().is_none(),
        "gatehouse exited on a broken config"
    );

    // SIGTERM drains and exits 0.
    let exited = terminate(&mut gh);
    let code = exited.wait();
    assert!(code.success(), "{code:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(gh.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("reload failed"), "{stderr}");
    assert!(
        stderr.contains("TOML parse error") || stderr.contains("line"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_and_exits_0() {
    let (pki, client, echo) = test_com().await;
    let (mut gh, addr) = start_binary(&pki, &config(&pki, &["test.com"], echo, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let slow =
        tokio::spawn(
            async move { request(addr, "test.com", &opts, get("test.com", "/delay/1")).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exited = terminate(&mut gh);
    assert_eq!(
        slow.await.unwrap().unwrap().status,
        200,
        "the in-flight request completes"
    );
    let code = exited.wait();
    assert!(code.success(), "{code:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_admin_listener_and_no_connections_exits_at_once() {
    let (pki, _client, echo) = test_com().await;
    let admin = free_port();
    let cfg = config(&pki, &["test.com"], echo, "", "").replace(
        "[[server]]",
        "[proxy]\ndrain_timeout = \"20s\"\n\n[[server]]",
    );
    let cfg = cfg.replace(
        "[listen]\n",
        &format!("[listen]\nadmin = \"127.0.0.1:{admin}\"\n"),
    );
    let (mut gh, _addr) = start_binary(&pki, &cfg).await;
    let started = std::time::Instant::now();
    // `wait` allows 10 s: far less than the 20 s drain_timeout a held-open drain would take.
    let code = terminate(&mut gh).wait();
    assert!(code.success(), "{code:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

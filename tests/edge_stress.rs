//! Exhaustion and soak runs on the real binary (SPEC "Edge limits"). Too long and too heavy
//! for the default suite, so they are `#[ignore]`d; run them on a release build:
//!
//! ```sh
//! cargo test --release --test edge_stress -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each prints its figures; the closing note of the issue that asked for them reports them.
//! - `exhaustion`: the binary under `ulimit -n 1024`, 5,000 silent sockets thrown at its
//!   plaintext and admin listeners; a real mTLS client must be served within 1 s of the
//!   attack stopping, and `Too many open files` must never appear in its log.
//! - `soak`: 2,000 concurrent mTLS keep-alive connections doing requests for 60 s, then all
//!   closed: RSS back within 10 % of its value after a warm-up round, open descriptors back
//!   to where they started, `gatehouse_connections_active` 0.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::binary::{BIN, Reaper, free_port};
use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The binary, running `test.com` against `echo`, with its stderr in a file.
struct Binary {
    child: Reaper,
    https: SocketAddr,
    http: SocketAddr,
    admin: SocketAddr,
    stderr: PathBuf,
}

impl Binary {
    async fn start(pki: &TestPki, echo: SocketAddr, nofile: Option<u64>, proxy: &str) -> Self {
        let addr = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let (https, http, admin) = (addr(free_port()), addr(free_port()), addr(free_port()));
        let rest = format!(
            "[[route]]\npath_prefix = \"/\"\nupstream = \"http://{echo}\"\n\n\
             [proxy]\n{proxy}\n\n[log]\naccess_log = false\n"
        );
        let listen = format!("http = \"{http}\"\nadmin = \"{admin}\"");
        let cfg = test_com_config(pki, &listen, &rest).replace("127.0.0.1:0", &https.to_string());
        let cfg_path = pki.write("gatehouse.toml", &cfg);
        let stderr = pki.path("gatehouse.stderr");
        let limit = nofile.map_or_else(String::new, |n| format!("ulimit -n {n} && "));
        // GATEHOUSE_BIN runs the same attack against another build (an older one, say).
        let bin = std::env::var("GATEHOUSE_BIN").unwrap_or_else(|_| BIN.to_owned());
        let script = format!("{limit}exec {bin} run -c {}", cfg_path.display());
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let binary = Self {
            child: Reaper(child),
            https,
            http,
            admin,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !binary
            .admin_get("/readyz")
            .await
            .starts_with("HTTP/1.1 200")
        {
            assert!(Instant::now() < deadline, "not ready: {}", binary.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        binary
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    async fn admin_get(&self, path: &str) -> String {
        let Ok(mut s) = TcpStream::connect(self.admin).await else {
            return String::new();
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(STEP, s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn metric(&self, series: &str) -> f64 {
        self.admin_get("/metrics")
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }
}

/// Throws `n` TCP connections at `addr` at once, none of which ever sends a byte; connects
/// the kernel has not completed within 3 s (its backlog is full) are given up.
async fn silent_sockets(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(3),
                TcpStream::connect(addr),
            ))
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Ok(Ok(s))) = t.await {
            out.push(s);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "exhaustion run on the release binary: see the file's header"]
async fn exhaustion() {
    // The attacker (this process) needs more than 5,000 descriptors.
    let own = gatehouse::conn::limits::raise_nofile_limit();
    assert!(own > 6000, "this process may open only {own} files");
    let (pki, client, echo) = test_com().await;
    let bin = Binary::start(&pki, echo, Some(1024), "").await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let fds_before = bin.fds();

    let attack_started = Instant::now();
    let (plain, admin) = tokio::join!(
        silent_sockets(bin.http, 2500),
        silent_sockets(bin.admin, 2500)
    );
    let opened = plain.len() + admin.len();
    let fds_under_attack = bin.fds();
    // During the attack the https listener keeps its own share of descriptors.
    let during = request(bin.https, "test.com", &opts, get("test.com", "/status/200")).await;
    println!(
        "exhaustion: {opened} of 5000 silent sockets thrown were connected by the kernel in {:?} ({} plaintext, {} admin); \
         gatehouse holds {fds_under_attack} fds (limit 1024, {fds_before} before); \
         mTLS request during the attack: {:?}",
        attack_started.elapsed(),
        plain.len(),
        admin.len(),
        during.as_ref().map(|r| r.status),
    );
    assert!(fds_under_attack <= 1024);
    tokio::time::sleep(Duration::from_secs(5)).await;

    drop((plain, admin));
    let stopped = Instant::now();
    let after = request(bin.https, "test.com", &opts, get("test.com", "/status/200")).await;
    let served_in = stopped.elapsed();
    println!(
        "exhaustion: after the attack stopped, an mTLS client was served in {served_in:?}: {:?}",
        after.as_ref().map(|r| r.status)
    );
    assert_eq!(after.map(|r| r.status), Ok(200));
    assert!(
        served_in < Duration::from_secs(1),
        "served after {served_in:?}"
    );
    let log = bin.log();
    assert!(
        !log.contains("Too many open files"),
        "EMFILE in the log:\n{log}"
    );
    println!(
        "exhaustion: log has {} lines, no `Too many open files`; first line: {}",
        log.lines().count(),
        log.lines().next().unwrap_or_default()
    );
}

/// One keep-alive mTLS connection doing `GET /status/200` until `until`.
async fn client_loop(
    addr: SocketAddr,
    opts: ClientOpts,
    until: Instant,
    done: Arc<AtomicU64>,
) -> Result<(), String> {
    let tls = connect(addr, "test.com", &opts)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    while Instant::now() < until {
        send.ready().await.map_err(|e| e.to_string())?;
        let res = send
            .send_request(get("test.com", "/status/200"))
            .await
            .map_err(|e| e.to_string())?;
        if res.status() != 200 {
            return Err(format!("status {}", res.status()));
        }
        res.into_body().collect().await.map_err(|e| e.to_string())?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `n` connections doing requests for `secs` seconds (connections opened 200 at a time);
/// returns (requests done, connections that failed).
async fn load(addr: SocketAddr, opts: &ClientOpts, n: usize, secs: u64) -> (u64, usize) {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tasks.push(tokio::spawn(client_loop(
            addr,
            opts.clone(),
            until,
            done.clone(),
        )));
    }
    let mut failed = 0;
    for t in tasks {
        if let Ok(Err(e)) | Err(e) = t.await.map_err(|e| e.to_string()) {
            if failed < 3 {
                println!("soak: a connection failed: {e}");
            }
            failed += 1;
        }
    }
    (done.load(Ordering::Relaxed), failed)
}

/// Waits until no https connection is open (at most 10 s), then 2 s more.
async fn settle(bin: &Binary, active: &str) {
    let started = Instant::now();
    while bin.metric(active).await != 0.0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Waits (at most 90 s) until the binary holds no more descriptors than `start`: the idle
/// upstream connections pooled by the load have expired. Then 20 s more, so the allocator
/// has returned what it frees after a delay (jemalloc's dirty-page decay is 10 s), and RSS
/// is read at rest. Returns how long the pool took to drain.
async fn drain_pool(bin: &Binary, start: usize) -> Duration {
    let began = Instant::now();
    while bin.fds() > start && began.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drained = began.elapsed();
    tokio::time::sleep(Duration::from_secs(20)).await;
    drained
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "60 s soak on the release binary: see the file's header"]
async fn soak() {
    gatehouse::conn::limits::raise_nofile_limit();
    let (pki, client, echo) = test_com().await;
    let bin = Binary::start(&pki, echo, None, "").await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let active = "gatehouse_connections_active{listener=\"https\"}";
    let fds_start = bin.fds();
    let rss_start = bin.rss_kib();

    let (warm_requests, warm_failed) = load(bin.https, &opts, 2000, 10).await;
    settle(&bin, active).await;
    let fds_warm = bin.fds();
    // Idle upstream connections stay pooled for up to 60 s (swept every 15 s): RSS is
    // compared with none left, after the warm-up as after the soak.
    let drained_in = drain_pool(&bin, fds_start).await;
    let rss_warm = bin.rss_kib();
    println!(
        "soak: warm-up 2000 connections x 10 s: {warm_requests} requests, {warm_failed} failed \
         connections; fds {fds_start} -> {fds_warm}, back to {} after {drained_in:?}; \
         RSS {rss_start} -> {rss_warm} KiB",
        bin.fds()
    );

    let started = Instant::now();
    let (requests, failed) = load(bin.https, &opts, 2000, 60).await;
    let took = started.elapsed();
    settle(&bin, active).await;
    let active_end = bin.metric(active).await;
    let fds_closed = bin.fds();
    let drained_in = drain_pool(&bin, fds_start).await;
    let fds_end = bin.fds();
    let rss_end = bin.rss_kib();
    println!(
        "soak: 2000 connections x 60 s: {requests} requests ({:.0}/s), {failed} failed \
         connections; after close: RSS {rss_end} KiB ({:+.1} % vs warm-up {rss_warm} KiB), \
         connections_active {active_end}; fds {fds_closed} right after, {fds_end} after \
         {drained_in:?} (start {fds_start})",
        requests as f64 / took.as_secs_f64(),
        (rss_end as f64 - rss_warm as f64) * 100.0 / rss_warm as f64,
    );
    assert_eq!(failed, 0, "connections failed during the soak");
    assert_eq!(active_end, 0.0);
    assert!(
        rss_end as f64 <= rss_warm as f64 * 1.10,
        "RSS grew from {rss_warm} to {rss_end} KiB"
    );
    assert!(
        fds_end <= fds_start,
        "descriptors: {fds_start} at start, {fds_end} at the end"
    );
}

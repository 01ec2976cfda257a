//! `gatehouse bench`, the real binary, against the real proxy in front of the echo upstream:
//! each mode loads it for a second and its JSON report is checked against what the proxy
//! itself saw (its access log) and against the TLS facts (full vs resumed handshakes, the
//! alert a client without a certificate gets).
//!
//! The URL's host (`test.com`) never resolves here: every run dials the proxy with
//! `--connect`, so every run also checks that the SNI and Host stay the URL's.

mod common;

use std::net::SocketAddr;

use common::binary::{Run, gatehouse};
use common::{LogBuffer, Proxy, TestPki, test_com, test_com_config};

struct Target {
    pki: TestPki,
    proxy: Proxy,
    log: LogBuffer,
}

async fn target(rest: &str) -> Target {
    let (pki, _client, upstream) = test_com().await;
    let config = test_com_config(
        &pki,
        "",
        &format!("{rest}\n[[route]]\npath_prefix = \"/\"\nupstream = \"http://{upstream}\"\n"),
    );
    let (proxy, log) = Proxy::start_with_log(pki.dir.path(), &config).await;
    Target { pki, proxy, log }
}

impl Target {
    /// `gatehouse bench` for one second (no warm-up) with the client certificate, plus `args`.
    async fn bench(&self, path: &str, args: &[&str]) -> (Run, serde_json::Value) {
        self.bench_as(path, true, args).await
    }

    async fn bench_as(
        &self,
        path: &str,
        with_cert: bool,
        args: &[&str],
    ) -> (Run, serde_json::Value) {
        let url = format!("https://test.com{path}");
        let connect = self.proxy.https.to_string();
        let cacert = self.pki.path("ca.crt");
        let cert = self.pki.path("client.crt");
        let key = self.pki.path("client.key");
        let mut argv: Vec<String> = [
            "bench",
            &url,
            "--connect",
            &connect,
            "--cacert",
            cacert.to_str().unwrap(),
            "-d",
            "1s",
            "--warmup",
            "0s",
            "--json",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if with_cert {
            argv.extend([
                "--cert".into(),
                cert.to_str().unwrap().into(),
                "--key".into(),
                key.to_str().unwrap().into(),
            ]);
        }
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        // The proxy runs on this test's runtime: wait for the child off it.
        let run = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            gatehouse(&refs)
        })
        .await
        .unwrap();
        let report = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("bench --json printed no JSON ({e}): {run:?}"));
        (run, report)
    }

    /// Access-log lines with this status, once there are at least `at_least` lines (or 3 s
    /// have passed: the log is written off the request path).
    async fn logged(&self, status: u64, at_least: u64) -> u64 {
        let lines = self.log.lines(at_least as usize).await;
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["status"] == status)
            .count() as u64
    }
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_http1_counts_what_the_proxy_served() {
    let t = target("").await;
    let (run, r) = t.bench("/status/200", &["-c", "2"]).await;
    run.ok();
    assert_eq!(r["mode"], "http1");
    let requests = n(&r["requests"]);
    assert!(requests > 20, "{r}");
    assert_eq!(r["status"]["200"], requests, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    // Two connections, opened once each, full handshakes.
    assert_eq!(r["handshakes"], 2, "{r}");
    assert_eq!(r["resumed"], 0, "{r}");
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["latency_ms"]["p99"].as_f64() >= r["latency_ms"]["p50"].as_f64());
    assert_eq!(r["connect"], t.proxy.https.to_string());
    // Every request bench counted was served by the proxy (it may have served a few more
    // that completed after the window closed).
    let served = t.logged(200, requests).await;
    assert!(
        served >= requests && served <= requests + 2,
        "{served} vs {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_runs_streams_on_few_connections() {
    let t = target("").await;
    let (run, r) = t
        .bench("/bytes/1000", &["-c", "2", "--http2", "--streams", "8"])
        .await;
    run.ok();
    assert_eq!(r["mode"], "http2");
    assert_eq!(r["streams"], 8);
    let requests = n(&r["requests"]);
    assert!(requests > 20, "{r}");
    assert_eq!(r["handshakes"], 2, "{r}");
    assert_eq!(n(&r["bytes_received"]), requests * 1000, "{r}");
    let served = t.logged(200, requests).await;
    assert!(
        served >= requests && served <= requests + 16,
        "{served} vs {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_per_request_is_a_full_handshake_each() {
    let t = target("").await;
    let (run, r) = t
        .bench("/status/200", &["-c", "2", "--new-connection"])
        .await;
    run.ok();
    assert_eq!(r["mode"], "new-connection");
    let requests = n(&r["requests"]);
    assert!(requests > 5, "{r}");
    assert_eq!(r["handshakes"], requests, "{r}");
    assert_eq!(r["resumed"], 0, "{r}");
    let handshakes = t.proxy.metric(&common::handshakes("test.com", "ok"));
    assert!(handshakes >= requests as f64, "{handshakes} vs {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_resumes_unless_the_server_keeps_no_sessions() {
    let t = target("").await;
    let (run, r) = t
        .bench("/status/200", &["-c", "2", "--new-connection", "--resume"])
        .await;
    run.ok();
    assert_eq!(r["resume"], true);
    let handshakes = n(&r["handshakes"]);
    assert!(handshakes > 5, "{r}");
    // Only the first connections can find no session to resume.
    assert!(n(&r["resumed"]) + 2 >= handshakes, "{r}");

    let off = target("[tls]\nsession_cache_size = 0\n").await;
    let (run, r) = off
        .bench("/status/200", &["-c", "2", "--new-connection", "--resume"])
        .await;
    run.ok();
    assert!(n(&r["handshakes"]) > 5, "{r}");
    assert_eq!(r["resumed"], 0, "session_cache_size = 0: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_body_headers_and_refusals_reach_the_report() {
    let t = target(common::DENY_TEAPOT).await;
    let (run, r) = t
        .bench(
            "/anything",
            &[
                "-c",
                "1",
                "--method",
                "POST",
                "--body-bytes",
                "1000",
                "--header",
                "x-bench=yes",
            ],
        )
        .await;
    run.ok();
    assert!(n(&r["requests"]) > 0, "{r}");
    assert_eq!(r["status"]["200"], r["requests"], "{r}");
    let lines = t.log.lines(1).await;
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["method"], "POST", "{first}");
    assert_eq!(first["host"], "test.com", "{first}");

    // The deny policy's 403 is a response, not a failure.
    let (run, r) = t.bench("/status/418", &["-c", "1"]).await;
    run.ok();
    assert_eq!(r["status"]["403"], r["requests"], "{r}");
    assert_eq!(r["failed"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_fails_with_the_tls_alert_and_exit_1() {
    let t = target("").await;
    let (run, r) = t.bench_as("/", false, &["-c", "1"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("every request failed"), "{run:?}");
    assert_eq!(r["requests"], 0, "{r}");
    assert_eq!(
        r["handshakes"], 0,
        "refused handshakes are not counted: {r}"
    );
    assert!(n(&r["errors"]["tls"]) > 0, "{r}");
    let first = r["first_errors"]["tls"].as_str().unwrap();
    assert!(first.contains("CertificateRequired"), "{first}");
    assert!(r["latency_ms"].is_null(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_a_connect_error() {
    let t = target("").await;
    // A port that was free a moment ago.
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = "https://test.com/";
    let closed = closed.to_string();
    let cacert = t.pki.path("ca.crt");
    let run = tokio::task::spawn_blocking(move || {
        gatehouse(&[
            "bench",
            url,
            "--connect",
            &closed,
            "--cacert",
            cacert.to_str().unwrap(),
            "-d",
            "500ms",
            "--warmup",
            "0s",
        ])
    })
    .await
    .unwrap();
    run.expect_code(1);
    assert!(run.stdout.contains("errors      connect "), "{run:?}");
    assert!(run.stdout.contains("Connection refused"), "{run:?}");
}

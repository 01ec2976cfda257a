//! Hot reload through real files and sockets: rename-replace, `..data` symlink swaps,
//! garbage on disk, CA bundles and CRLs that change, policies applied to open connections,
//! restart-only settings refused, files that are not the proxy's ignored, and load held
//! while the certificate is replaced again and again.

mod common;

use std::time::Duration;

use common::*;
use gatehouse::dev::pki::{Ca, KeyType, Leaf, LeafSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The leaf a fresh handshake is served.
async fn served_leaf(proxy: &Proxy, sni: &str, opts: &ClientOpts) -> Vec<u8> {
    let tls = connect(proxy.https, sni, opts).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Polls (up to `within`) until a fresh handshake is served `want`.
async fn wait_for_leaf(
    proxy: &Proxy,
    opts: &ClientOpts,
    want: &Leaf,
    within: Duration,
) -> Duration {
    let start = tokio::time::Instant::now();
    while served_leaf(proxy, "test.com", opts).await != want.der {
        assert!(
            start.elapsed() < within,
            "new certificate not served within {within:?}\n{}",
            proxy.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn keepalive_get(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
) -> u16 {
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: test.com\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(STEP, tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    status_of(&String::from_utf8_lossy(&buf[..n]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_replace_serves_the_new_certificate_and_open_connections_carry_on() {
    let pki = TestPki::new();
    let old = pki.server("server", &["test.com"]);
    let client = pki.client("spiffe://test.client");
    let echo = start_echo().await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], echo, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    assert_eq!(served_leaf(&proxy, "test.com", &opts).await, old.der);
    let mut open = connect(proxy.https, "test.com", &opts).await.unwrap();
    assert_eq!(keepalive_get(&mut open, "/status/200").await, 200);

    let new = pki.ca.issue(&LeafSpec::server(&["test.com"])).unwrap();
    replace(&pki.path("server.key"), &new.key_pem);
    replace(&pki.path("server.crt"), &new.chain_pem);
    let took = wait_for_leaf(&proxy, &opts, &new, Duration::from_secs(2)).await;
    eprintln!("new certificate served after {took:?}");
    assert_eq!(
        keepalive_get(&mut open, "/status/201").await,
        201,
        "the open connection keeps working"
    );
    assert!(proxy.metric("gatehouse_reloads_total{result=\"ok\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_data_symlink_swap() {
    let pki = TestPki::new();
    let secret = pki.path("secret");
    std::fs::create_dir(&secret).unwrap();
    // The kubelet layout: files are symlinks through `..data` to a timestamped directory.
    let write_version = |name: &str, leaf: &Leaf| {
        let dir = secret.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &leaf.chain_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
        std::fs::write(dir.join("ca.crt"), &pki.ca.cert_pem).unwrap();
    };
    let first = pki.ca.issue(&LeafSpec::server(&["test.com"])).unwrap();
    write_version("..2026_11_23_01", &first);
    std::os::unix::fs::symlink("..2026_11_23_01", secret.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key", "ca.crt"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), secret.join(f)).unwrap();
    }
    let echo = start_echo().await;
    let cfg = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[[server]]\nhosts = [\"test.com\"]\ncredential_dir = \"{}\"\n[[route]]\nupstream = \"http://{echo}\"\n",
        secret.display()
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let client = pki.client("spiffe://test.client");
    let opts = ClientOpts::new(&pki, Some(&client));
    assert_eq!(served_leaf(&proxy, "test.com", &opts).await, first.der);

    let second = pki.ca.issue(&LeafSpec::server(&["test.com"])).unwrap();
    write_version("..2026_11_23_02", &second);
    std::os::unix::fs::symlink("..2026_11_23_02", secret.join("..data_tmp")).unwrap();
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).unwrap();
    std::fs::remove_dir_all(secret.join("..2026_11_23_01")).unwrap();
    wait_for_leaf(&proxy, &opts, &second, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_disk_keeps_the_old_certificate_and_counts_an_error() {
    let pki = TestPki::new();
    let old = pki.server("server", &["test.com"]);
    let client = pki.client("spiffe://test.client");
    let echo = start_echo().await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], echo, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    // Written in place, half a PEM: what a crashed writer leaves behind.
    let half = &old.chain_pem[..old.chain_pem.len() / 2];
    std::fs::write(pki.path("server.crt"), half).unwrap();
    proxy
        .expect_metric("gatehouse_reloads_total{result=\"error\"}", 1.0)
        .await;
    assert_eq!(served_leaf(&proxy, "test.com", &opts).await, old.der);
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200);

    // A key that does not match the certificate is refused the same way.
    let other = pki.ca.issue(&LeafSpec::server(&["test.com"])).unwrap();
    replace(&pki.path("server.crt"), &old.chain_pem);
    proxy
        .expect_metric("gatehouse_reloads_total{result=\"ok\"}", 1.0)
        .await;
    replace(&pki.path("server.key"), &other.key_pem);
    proxy
        .expect_metric("gatehouse_reloads_total{result=\"error\"}", 2.0)
        .await;
    assert_eq!(served_leaf(&proxy, "test.com", &opts).await, old.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_bundle_gaining_a_second_ca() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let second_ca = Ca::new("Second CA", KeyType::EcdsaP256, 30).unwrap();
    let newcomer = second_ca
        .issue(&LeafSpec::client_uri("spiffe://newcomer"))
        .unwrap();
    let echo = start_echo().await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], echo, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&newcomer));
    assert!(
        request(proxy.https, "test.com", &opts, get("test.com", "/"))
            .await
            .is_err()
    );
    replace(
        &pki.path("ca.crt"),
        &format!("{}{}", pki.ca.cert_pem, second_ca.cert_pem),
    );
    proxy
        .expect_metric("gatehouse_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_gaining_a_revoked_serial() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let mut spec = LeafSpec::client_uri("spiffe://soon-revoked");
    spec.serial = Some(0xbad);
    let client = pki.issue("client", &spec);
    pki.write("ca.crl", &pki.ca.crl(&[]).unwrap());
    let echo = start_echo().await;
    let extra = format!("client_crl = [\"{}\"]", pki.path("ca.crl").display());
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["test.com"], echo, &extra, ""),
    )
    .await;
    let opts = ClientOpts::new(&pki, Some(&client));
    assert_eq!(
        request(
            proxy.https,
            "test.com",
            &opts,
            get("test.com", "/status/200")
        )
        .await
        .unwrap()
        .status,
        200
    );
    replace(&pki.path("ca.crl"), &pki.ca.crl(&[0xbad]).unwrap());
    proxy
        .expect_metric("gatehouse_reloads_total{result=\"ok\"}", 1.0)
        .await;
    assert!(
        request(proxy.https, "test.com", &opts, get("test.com", "/"))
            .await
            .is_err()
    );
    proxy
        .expect_metric(&handshakes("test.com", "revoked_client_cert"), 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_applies_to_connections_already_open() {
    let (pki, client, echo) = test_com().await;
    let base = config(&pki, &["test.com"], echo, "", "");
    let proxy = Proxy::start(pki.dir.path(), &base).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let mut open = connect(proxy.https, "test.com", &opts).await.unwrap();
    assert_eq!(keepalive_get(&mut open, "/status/418").await, 418);
    replace(&pki.path("gatehouse.toml"), &format!("{base}{DENY_TEAPOT}"));
    proxy
        .expect_metric("gatehouse_reloads_total{result=\"ok\"}", 1.0)
        .await;
    assert_eq!(
        keepalive_get(&mut open, "/status/418").await,
        403,
        "revocation by policy reaches open connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_settings_are_refused_on_reload() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let echo = start_echo().await;
    let base = config(&pki, &["test.com"], echo, "", "");
    let proxy = Proxy::start(pki.dir.path(), &base).await;
    std::fs::write(
        pki.path("gatehouse.toml"),
        format!("{base}[proxy]\nmax_connections = 5\n"),
    )
    .unwrap();
    let err = proxy.reloader.reload("test").unwrap_err();
    assert!(
        err.contains("proxy.max_connections") && err.contains("restart"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_held_while_the_certificate_is_replaced_twenty_times() {
    let (pki, client, echo) = test_com().await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], echo, "", "")).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    let addr = proxy.https;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Two clients: one opens a fresh connection per request, one keeps a connection.
    let fresh = {
        let (opts, stop) = (opts.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match request(addr, "test.com", &opts, get("test.com", "/status/200")).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };
    let kept = {
        let (opts, stop) = (opts.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tls = connect(addr, "test.com", &opts).await.unwrap();
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match keepalive_get(&mut tls, "/status/200").await {
                    200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    let mut last = None;
    for i in 0..20 {
        let leaf = pki.ca.issue(&LeafSpec::server(&["test.com"])).unwrap();
        replace(&pki.path("server.key"), &leaf.key_pem);
        replace(&pki.path("server.crt"), &leaf.chain_pem);
        // Half the swaps wait for the new certificate, half race the next write.
        if i % 2 == 0 {
            wait_for_leaf(&proxy, &opts, &leaf, Duration::from_secs(3)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last = Some(leaf);
    }
    wait_for_leaf(
        &proxy,
        &opts,
        last.as_ref().unwrap(),
        Duration::from_secs(3),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (fresh_ok, fresh_failed) = fresh.await.unwrap();
    let (kept_ok, kept_failed) = kept.await.unwrap();
    eprintln!("fresh connections: {fresh_ok} ok; kept connection: {kept_ok} ok");
    assert!(
        fresh_failed.is_empty(),
        "{} failed: {:?}",
        fresh_failed.len(),
        &fresh_failed[..fresh_failed.len().min(3)]
    );
    assert_eq!(kept_failed, 0);
    assert!(fresh_ok > 20 && kept_ok > 20, "{fresh_ok} {kept_ok}");
}

#[tokio::test]
async fn unrelated_files_next_to_the_config_do_not_trigger_reloads() {
    let (pki, client, echo) = test_com().await;
    let cfg = config(&pki, &["test.com"], echo, "", "");
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let opts = ClientOpts::new(&pki, Some(&client));
    // A log written next to the config and the certificates (`run > gatehouse.log` there) and
    // an editor's swap file: neither is a file gatehouse reads.
    for i in 0..10 {
        std::fs::write(pki.path("gatehouse.log"), format!("line {i}\n")).unwrap();
        std::fs::write(pki.path(".gatehouse.toml.swp"), "x").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Longer than the debounce's limit (1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(proxy.metric("gatehouse_reloads_total{result=\"ok\"}"), 0.0);
    assert_eq!(
        proxy.metric("gatehouse_reloads_total{result=\"error\"}"),
        0.0
    );
    // A file it reads still reloads.
    let renewed = pki.server("server", &["test.com"]);
    wait_for_leaf(&proxy, &opts, &renewed, Duration::from_secs(3)).await;
    assert!(proxy.metric("gatehouse_reloads_total{result=\"ok\"}") >= 1.0);
}

/// A `credential_dir` with `client_ca` beside it (ingress-nginx keeps the client CA in a
/// secret of its own): the explicit CA wins over the directory's `ca.crt`, and a change to
/// that file, outside the directory, is reloaded too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_beside_a_credential_dir_wins_and_reloads() {
    let pki = TestPki::new();
    let secret = pki.path("server-tls");
    std::fs::create_dir(&secret).unwrap();
    let server = pki.ca.issue(&LeafSpec::server(&["test.com"])).unwrap();
    std::fs::write(secret.join("tls.crt"), &server.chain_pem).unwrap();
    std::fs::write(secret.join("tls.key"), &server.key_pem).unwrap();
    std::fs::write(secret.join("ca.crt"), &pki.ca.cert_pem).unwrap();
    let client_ca = Ca::new("Client CA", KeyType::EcdsaP256, 30).unwrap();
    let ca_secret = pki.path("client-ca");
    std::fs::create_dir(&ca_secret).unwrap();
    std::fs::write(ca_secret.join("ca.crt"), &client_ca.cert_pem).unwrap();
    let echo = start_echo().await;
    let cfg = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[[server]]\nhosts = [\"test.com\"]\ncredential_dir = \"server-tls\"\nclient_ca = \"client-ca/ca.crt\"\n[[route]]\nupstream = \"http://{echo}\"\n"
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let status = |leaf: Leaf| {
        let opts = ClientOpts::new(&pki, Some(&leaf));
        let https = proxy.https;
        async move {
            request(https, "test.com", &opts, get("test.com", "/status/200"))
                .await
                .map(|r| r.status)
        }
    };
    let theirs = client_ca
        .issue(&LeafSpec::client_uri("spiffe://ingress.client"))
        .unwrap();
    let dirs = pki
        .ca
        .issue(&LeafSpec::client_uri("spiffe://dir.client"))
        .unwrap();
    assert_eq!(status(theirs.clone()).await, Ok(200), "client_ca's client");
    assert!(
        status(dirs.clone()).await.is_err(),
        "the directory's ca.crt must not be trusted when client_ca is set"
    );
    replace(&ca_secret.join("ca.crt"), &pki.ca.cert_pem);
    proxy
        .expect_metric("gatehouse_reloads_total{result=\"ok\"}", 1.0)
        .await;
    assert_eq!(status(dirs).await, Ok(200), "the new client_ca's client");
    assert!(status(theirs).await.is_err(), "the replaced CA's client");
}

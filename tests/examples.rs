//! Every `config/examples/*.toml` runs as its header says (issue #5). Each example opens with
//! a "Try it" block of shell lines; the harness in `common/example.rs` follows it:
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

use common::example::*;
use common::*;
use gatehouse::dev::pki::{Ca, KeyType, LeafSpec, Usage};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_grpc_forwards_over_h2c_and_answers_grpc_clients_in_grpc() {
    let ex = Example::start("grpc.toml").await;
    let out = ex.curl(&[200, 200]).await;
    assert!(out[0].output.contains("\"version\": \"HTTP/2.0\""), "{}", out[0].output);
    let denied = out[1].output.to_lowercase();
    assert!(denied.contains("grpc-status: 7"), "{denied}");
    assert!(denied.contains("grpc-message: rbac: access denied"), "{denied}");
    ex.proxy
        .expect_metric(r#"gatehouse_requests_total{route="none",code="403"}"#, 1.0)
        .await;
}

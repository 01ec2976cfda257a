//! Client-certificate and SNI behaviour through real sockets (issue scenarios 1, 2, 3, 5, 6).

mod common;

use common::*;
use gatehouse::dev::pki::{Ca, KeyType, LeafSpec, Usage};
use time::{Duration, OffsetDateTime};

#[tokio::test]
async fn no_client_cert_is_refused_and_a_client_cert_gets_the_teapot_over_h2() {
    let (pki, proxy) = echo_proxy("", "").await;
    let anon = ClientOpts::new(&pki, None);
    let err = request(
        proxy.https,
        "test.com",
        &anon,
        get("test.com", "/status/200"),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("CertificateRequired") || err.contains("alert") || err.contains("closed"),
        "{err}"
    );
    proxy
        .expect_metric(&handshakes("test.com", "no_client_cert"), 1.0)
        .await;

    let client = pki.client("spiffe://test.client");
    let opts = ClientOpts::new(&pki, Some(&client)).h2();
    let reply = request(
        proxy.https,
        "test.com",
        &opts,
        get_h2("test.com", "/status/418"),
    )
    .await
    .unwrap();
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.status, 418);
    assert!(reply.text().contains("teapot"), "{}", reply.text());
    proxy
        .expect_metric(&handshakes("test.com", "ok"), 1.0)
        .await;
}

#[tokio::test]
async fn rsa_pki_works_and_a_server_auth_only_cert_is_no_client_cert() {
    let pki = TestPki::with_ca(Ca::new("RSA Root", KeyType::Rsa4096, 30).unwrap());
    let mut server = LeafSpec::server(&["test.com"]);
    server.key_type = KeyType::Rsa2048;
    pki.issue("server", &server);
    let echo = start_echo().await;
    let proxy = Proxy::start(pki.dir.path(), &config(&pki, &["test.com"], echo, "", "")).await;

    let mut client = LeafSpec::client_uri("spiffe://test.client");
    client.key_type = KeyType::Rsa2048;
    let client = pki.issue("client", &client);
    let reply = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&client)),
        get("test.com", "/headers"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let xfcc = reply.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(xfcc.contains("URI=spiffe://test.client"), "{xfcc}");

    // A certificate without any EKU (like many server certs) is accepted as a client cert.
    let mut no_eku = LeafSpec::server(&["other.example.com"]);
    no_eku.usage = Usage::Any;
    let no_eku = pki.issue("noeku", &no_eku);
    let reply = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&no_eku)),
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(reply.unwrap().status, 200);

    // serverAuth-only EKU is not a client certificate.
    let server_only = pki.issue("serveronly", &LeafSpec::server(&["client.example.com"]));
    let err = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&server_only)),
        get("test.com", "/status/200"),
    )
    .await;
    assert!(err.is_err(), "serverAuth-only client cert was accepted");
    proxy
        .expect_metric(&handshakes("test.com", "invalid_client_cert"), 1.0)
        .await;
}

#[tokio::test]
async fn allowed_sans_match_dns_sans_case_insensitively_and_never_the_cn() {
    let (pki, proxy) = echo_proxy(r#"allowed_sans = ["client.example.com"]"#, "").await;
    let mut ok = LeafSpec::new(Usage::Client, 30);
    ok.dns = vec!["Client.Example.COM".into()];
    let ok = pki.issue("ok", &ok);
    let reply = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&ok)),
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(
        reply.unwrap().status,
        200,
        "DNS SANs compare case-insensitively"
    );

    let mut other = LeafSpec::new(Usage::Client, 30);
    other.dns = vec!["other.example.com".into()];
    let other = pki.issue("other", &other);
    assert!(
        request(
            proxy.https,
            "test.com",
            &ClientOpts::new(&pki, Some(&other)),
            get("test.com", "/")
        )
        .await
        .is_err()
    );
    proxy
        .expect_metric(&handshakes("test.com", "san_not_allowed"), 1.0)
        .await;

    let mut cn_only = LeafSpec::new(Usage::Client, 30);
    cn_only.common_name = Some("client.example.com".into());
    cn_only.uris = vec!["spiffe://x".into()];
    let cn_only = pki.issue("cn", &cn_only);
    assert!(
        request(
            proxy.https,
            "test.com",
            &ClientOpts::new(&pki, Some(&cn_only)),
            get("test.com", "/")
        )
        .await
        .is_err(),
        "the CN is not a SAN"
    );
    proxy
        .expect_metric(&handshakes("test.com", "san_not_allowed"), 2.0)
        .await;
}

#[tokio::test]
async fn one_third_party_root_trusted_by_both_sides() {
    let pki = TestPki::with_ca(Ca::new("Third Party Root", KeyType::EcdsaP384, 30).unwrap());
    pki.server("server", &["helloworld.example.io"]);
    let echo = start_echo().await;
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(&pki, &["helloworld.example.io"], echo, "", ""),
    )
    .await;
    let client = pki.client("spiffe://cluster.local/ns/default/sa/sleep");
    let reply = request(
        proxy.https,
        "helloworld.example.io",
        &ClientOpts::new(&pki, Some(&client)),
        get("helloworld.example.io", "/status/200"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn expired_future_wrong_ca_and_revoked_client_certs_are_refused() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let now = OffsetDateTime::now_utc();
    let mut revoked = LeafSpec::client_uri("spiffe://revoked");
    revoked.serial = Some(0x5eed);
    let revoked = pki.issue("revoked", &revoked);
    pki.write("ca.crl", &pki.ca.crl(&[0x5eed]).unwrap());
    let echo = start_echo().await;
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(
            &pki,
            &["test.com"],
            echo,
            &format!(r#"client_crl = ["{}"]"#, pki.path("ca.crl").display()),
            "",
        ),
    )
    .await;

    let good = pki.client("spiffe://good");
    let reply = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&good)),
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(reply.unwrap().status, 200, "a client not on the CRL passes");

    let mut expired = LeafSpec::client_uri("spiffe://expired");
    expired.not_before = now - Duration::days(10);
    expired.not_after = now - Duration::days(1);
    let expired = pki.issue("expired", &expired);
    let mut future = LeafSpec::client_uri("spiffe://future");
    future.not_before = now + Duration::days(1);
    future.not_after = now + Duration::days(10);
    let future = pki.issue("future", &future);
    let stranger = TestPki::with_ca(Ca::new("Stranger CA", KeyType::EcdsaP256, 30).unwrap())
        .client("spiffe://stranger");
    // A CA that copies the trusted CA's name: found by name, refused on the signature.
    let impostor = TestPki::new().client("spiffe://impostor");
    let cases = [
        ("expired", &expired, "expired_client_cert", 1.0),
        ("not yet valid", &future, "expired_client_cert", 2.0),
        ("wrong CA", &stranger, "untrusted_client_cert", 1.0),
        ("revoked", &revoked, "revoked_client_cert", 1.0),
        (
            "same-name impostor CA",
            &impostor,
            "invalid_client_cert",
            1.0,
        ),
    ];
    for (what, leaf, result, count) in cases {
        let r = request(
            proxy.https,
            "test.com",
            &ClientOpts::new(&pki, Some(leaf)),
            get("test.com", "/status/200"),
        )
        .await;
        assert!(r.is_err(), "{what} client certificate was accepted: {r:?}");
        proxy
            .expect_metric(&handshakes("test.com", result), count)
            .await;
    }
}

#[tokio::test]
async fn optional_client_auth_lets_anonymous_clients_through_but_verifies_presented_certs() {
    let (pki, proxy) = echo_proxy(r#"client_auth = "optional""#, "").await;
    let anon = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, None),
        get("test.com", "/headers"),
    )
    .await
    .unwrap();
    assert_eq!(anon.status, 200);
    assert!(
        anon.json()["headers"]
            .get("x-forwarded-client-cert")
            .is_none(),
        "no identity, no XFCC"
    );
    let stranger = TestPki::new().client("spiffe://stranger");
    let r = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&stranger)),
        get("test.com", "/"),
    )
    .await;
    assert!(r.is_err(), "a presented certificate must still verify");
}

#[tokio::test]
async fn servers_are_chosen_by_sni_unknown_sni_is_refused_and_host_is_bound_to_it() {
    let pki = TestPki::new();
    let a = pki.server("a", &["a.example.com"]);
    let b = pki.server("b", &["*.b.example.com"]);
    let echo = start_echo().await;
    let dir = pki.dir.path().display();
    let cfg = format!(
        r#"
[listen]
https = "127.0.0.1:0"
[[server]]
hosts = ["a.example.com"]
cert = "{dir}/a.crt"
key = "{dir}/a.key"
client_ca = "{dir}/ca.crt"
[[server]]
hosts = ["*.b.example.com"]
cert = "{dir}/b.crt"
key = "{dir}/b.key"
client_ca = "{dir}/ca.crt"
[[route]]
upstream = "http://{echo}"
"#
    );
    let proxy = Proxy::start(pki.dir.path(), &cfg).await;
    let client = pki.client("spiffe://c");
    let opts = ClientOpts::new(&pki, Some(&client));

    for (sni, leaf) in [("a.example.com", &a), ("x.b.example.com", &b)] {
        let tls = connect(proxy.https, sni, &opts).await.unwrap();
        let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        assert_eq!(served, leaf.der, "{sni} got the wrong certificate");
        assert_eq!(
            request(proxy.https, sni, &opts, get(sni, "/status/204"))
                .await
                .unwrap()
                .status,
            204
        );
    }
    for unknown in ["c.example.com", "x.y.b.example.com"] {
        assert!(
            connect(proxy.https, unknown, &opts).await.is_err(),
            "{unknown} must fail the handshake"
        );
    }
    proxy
        .expect_metric(&handshakes("none", "unknown_sni"), 2.0)
        .await;
    // Handshake for one name, then ask for the other: 421.
    let r = request(
        proxy.https,
        "a.example.com",
        &opts,
        get("x.b.example.com", "/status/200"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 421);
    // The port and the case of Host do not matter.
    let r = request(
        proxy.https,
        "a.example.com",
        &opts,
        get("A.Example.com:8443", "/status/200"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn pinned_client_certificates() {
    let pki = TestPki::new();
    pki.server("server", &["test.com"]);
    let pinned = pki.client("spiffe://pinned");
    let hash = gatehouse::identity::from_leaf(&pinned.der)
        .unwrap()
        .cert_sha256;
    let hex_colons: Vec<String> = hash.iter().map(|b| format!("{b:02X}")).collect();
    let echo = start_echo().await;
    let proxy = Proxy::start(
        pki.dir.path(),
        &config(
            &pki,
            &["test.com"],
            echo,
            &format!(r#"allowed_cert_sha256 = ["{}"]"#, hex_colons.join(":")),
            "",
        ),
    )
    .await;
    let r = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&pinned)),
        get("test.com", "/status/200"),
    )
    .await;
    assert_eq!(r.unwrap().status, 200);
    let other = pki.issue("other", &LeafSpec::client_uri("spiffe://other"));
    assert!(
        request(
            proxy.https,
            "test.com",
            &ClientOpts::new(&pki, Some(&other)),
            get("test.com", "/")
        )
        .await
        .is_err()
    );
    proxy
        .expect_metric(&handshakes("test.com", "pin_not_allowed"), 1.0)
        .await;
}

//! Every refused client is explained (SPEC `verify`, "Access log"): `gatehouse verify` and a
//! real handshake agree, reason for reason, on a catalog of certificates; a refused handshake
//! writes one access-log line with the presented certificate's identity, at most one per
//! second per client address and result, the rest counted in `suppressed`.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::binary::{gatehouse, s};
use common::*;
use gatehouse::config::LogFormat;
use gatehouse::dev::pki::{Ca, KeyType, Leaf, LeafSpec, Usage};
use rustls::pki_types::ServerName;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

/// A client certificate in the catalog: the file `verify` reads, what the client presents.
struct Case {
    name: &'static str,
    sni: &'static str,
    chain_pem: String,
    key_pem: String,
    /// The handshake result word both must report (`ok` for ACCEPT).
    expect: &'static str,
}

fn case(name: &'static str, sni: &'static str, leaf: &Leaf, expect: &'static str) -> Case {
    Case {
        name,
        sni,
        chain_pem: leaf.chain_pem.clone(),
        key_pem: leaf.key_pem.clone(),
        expect,
    }
}

fn dated(uri: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> LeafSpec {
    let mut spec = LeafSpec::client_uri(uri);
    spec.not_before = not_before;
    spec.not_after = not_after;
    spec
}

/// DER: one tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    match len {
        0..=127 => out.push(len as u8),
        128..=255 => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// An X.509 version 1 client certificate (no version field, no extensions) issued by `ca`:
/// rcgen writes only version 3, so it is put together here, DER by hand.
fn v1_client(ca: &Ca) -> (String, String) {
    use rcgen::{PublicKeyData as _, SigningKey as _};
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
    let (_, ca_cert) = x509_parser::certificate::X509Certificate::from_der(&ca_der).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ecdsa_sha256 = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let utc = |t: OffsetDateTime| {
        let text = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            t.year() % 100,
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        tlv(0x17, text.as_bytes())
    };
    let now = OffsetDateTime::now_utc();
    let validity = tlv(
        0x30,
        &[
            utc(now - time::Duration::hours(1)),
            utc(now + time::Duration::days(1)),
        ]
        .concat(),
    );
    let cn = tlv(
        0x30,
        &[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, b"v1.client")].concat(),
    );
    let subject = tlv(0x30, &tlv(0x31, &cn));
    let tbs = tlv(
        0x30,
        &[
            tlv(0x02, &[0x01, 0x23]),
            ecdsa_sha256.clone(),
            ca_cert.subject().as_raw().to_vec(),
            validity,
            subject,
            key.subject_public_key_info(),
        ]
        .concat(),
    );
    let signature = ca_key.sign(&tbs).unwrap();
    let cert = tlv(
        0x30,
        &[
            tbs,
            ecdsa_sha256,
            tlv(0x03, &[&[0u8][..], &signature].concat()),
        ]
        .concat(),
    );
    let pem = rustls::pki_types::CertificateDer::from(cert);
    let pem = pem_encode(&pem);
    (format!("{pem}{}", ca.cert_pem), key.serialize_pem())
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A TLS connection from 127.0.0.`host`, presenting `case`'s certificate; then one request.
/// Returns the response status, or `None` when the server refused the client.
async fn try_client(proxy: &Proxy, pki: &TestPki, host: u8, c: &Case) -> Option<u16> {
    let mut opts = ClientOpts::new(pki, None);
    opts.identity = Some((c.chain_pem.clone(), c.key_pem.clone()));
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))
        .unwrap();
    let tcp = socket.connect(proxy.https).await.unwrap();
    let name = ServerName::try_from(c.sni).unwrap();
    let connecting = TlsConnector::from(opts.config()).connect(name, tcp);
    let Ok(mut tls) = tokio::time::timeout(STEP, connecting).await.unwrap() else {
        return None;
    };
    let head = format!(
        "GET /status/200 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        c.sni
    );
    if tls.write_all(head.as_bytes()).await.is_err() {
        return None;
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn verify_and_the_handshake_agree_for_every_certificate_in_the_catalog() {
    let (pki, good, echo) = test_com().await;
    pki.server("others", &["sans.test.com", "pins.test.com"]);
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let expired = pki.issue(
        "expired",
        &dated("spiffe://expired", now - 10 * day, now - day),
    );
    let early = pki.issue("early", &dated("spiffe://early", now + day, now + 10 * day));
    let mut revoked_spec = LeafSpec::client_uri("spiffe://revoked");
    revoked_spec.serial = Some(0xbad);
    let revoked = pki.issue("revoked", &revoked_spec);
    let server_only = pki.issue("server-only", &LeafSpec::new(Usage::Server, 30));
    let other_ca = Ca::new("Other CA", KeyType::EcdsaP256, 30).unwrap();
    let stranger = other_ca
        .issue(&LeafSpec::client_uri("spiffe://stranger"))
        .unwrap();
    let (v1_chain, v1_key) = v1_client(&pki.ca);
    pki.write("ca.crl", &pki.ca.crl(&[0xbad]).unwrap());

    let cases = vec![
        case("good", "test.com", &good, "ok"),
        case("expired", "test.com", &expired, "expired_client_cert"),
        case("not yet valid", "test.com", &early, "expired_client_cert"),
        case("other CA", "test.com", &stranger, "untrusted_client_cert"),
        case(
            "revoked by CRL",
            "test.com",
            &revoked,
            "revoked_client_cert",
        ),
        case("SAN not allowed", "sans.test.com", &good, "san_not_allowed"),
        case("pin not matched", "pins.test.com", &good, "pin_not_allowed"),
        case(
            "server-only EKU",
            "test.com",
            &server_only,
            "invalid_client_cert",
        ),
        Case {
            name: "X.509 v1",
            sni: "test.com",
            chain_pem: v1_chain,
            key_pem: v1_key,
            expect: "invalid_client_cert",
        },
    ];
    let dir = pki.dir.path().display();
    let cfg = format!(
        r#"
[listen]
https = "127.0.0.1:0"

[[server]]
hosts = ["test.com"]
cert = "{dir}/server.crt"
key = "{dir}/server.key"
client_ca = "{dir}/ca.crt"
client_crl = ["{dir}/ca.crl"]

[[server]]
hosts = ["sans.test.com"]
cert = "{dir}/others.crt"
key = "{dir}/others.key"
client_ca = "{dir}/ca.crt"
allowed_sans = ["spiffe://someone.else"]

[[server]]
hosts = ["pins.test.com"]
cert = "{dir}/others.crt"
key = "{dir}/others.key"
client_ca = "{dir}/ca.crt"
allowed_cert_sha256 = ["{zeros}"]

[[route]]
path_prefix = "/"
upstream = "http://{echo}"
"#,
        zeros = "00".repeat(32)
    );
    let (proxy, log) = Proxy::start_with_log(pki.dir.path(), &cfg).await;
    let config = pki.path("gatehouse.toml");

    // Lines written so far: one per refused handshake, one for the accepted client's request.
    let mut written = 0;
    for (i, c) in cases.iter().enumerate() {
        let file = pki.write(&format!("case{i}.pem"), &c.chain_pem);
        let run = gatehouse(&[
            "verify",
            "-c",
            s(&config),
            "--cert",
            s(&file),
            "--sni",
            c.sni,
        ]);
        assert_eq!(run.code, Some(0), "{}: {}", c.name, run.stderr);
        let headline = run.stdout.lines().next().unwrap_or_default().to_owned();
        let verdict = match headline.strip_prefix("REFUSE ") {
            Some(result) => result.to_owned(),
            None => {
                assert_eq!(headline, "ACCEPT", "{}: {}", c.name, run.stdout);
                "ok".to_owned()
            }
        };
        assert_eq!(verdict, c.expect, "{}: verify said\n{}", c.name, run.stdout);
        assert!(
            run.stdout.contains("  subject: "),
            "{}: {}",
            c.name,
            run.stdout
        );
        if c.expect != "ok" {
            assert!(run.stdout.contains("  why: "), "{}: {}", c.name, run.stdout);
        }

        // The same certificate in a real handshake, from an address of its own.
        let host = 10 + i as u8;
        let status = try_client(&proxy, &pki, host, c).await;
        written += 1;
        if c.expect == "ok" {
            assert_eq!(status, Some(200), "{}", c.name);
            continue;
        }
        assert_eq!(status, None, "{}: the handshake was not refused", c.name);
        let lines = log.lines(written).await;
        let line = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["peer"] == format!("127.0.0.{host}"))
            .unwrap_or_else(|| panic!("{}: no handshake line in {lines:?}", c.name));
        assert_eq!(line["event"], "handshake", "{}", c.name);
        assert_eq!(
            line["result"], c.expect,
            "{}: handshake and verify disagree",
            c.name
        );
        assert_eq!(line["sni"], c.sni, "{}", c.name);
        assert!(line["subject"].is_string(), "{}: {line}", c.name);
    }
    // Spot checks of the explanations.
    let why = |name: &str, sni: &str| {
        let file = pki.path(name);
        gatehouse(&["verify", "-c", s(&config), "--cert", s(&file), "--sni", sni]).stdout
    };
    pki.write("expired.pem", &expired.chain_pem);
    assert!(why("expired.pem", "test.com").contains("why: it expired at "));
    pki.write("good.pem", &good.chain_pem);
    let sans = why("good.pem", "sans.test.com");
    assert!(
        sans.contains("\"spiffe://test.client\"") && sans.contains("\"spiffe://someone.else\""),
        "{sans}"
    );
    let v1 = why("case8.pem", "test.com");
    assert!(v1.contains("X.509 version 1"), "{v1}");
    let unknown = gatehouse(&[
        "verify",
        "-c",
        s(&config),
        "--cert",
        s(&pki.path("good.pem")),
        "--sni",
        "nope.example",
    ]);
    assert!(
        unknown.stdout.starts_with("REFUSE unknown_sni\n"),
        "{}",
        unknown.stdout
    );
    let unreadable = gatehouse(&[
        "verify",
        "-c",
        s(&config),
        "--cert",
        s(&pki.path("missing.pem")),
    ]);
    assert_eq!(unreadable.code, Some(1), "{}", unreadable.stdout);
}

/// Connects from 127.0.0.1 without a client certificate; the server refuses it.
async fn anonymous(proxy: &Proxy, pki: &TestPki) {
    let opts = ClientOpts::new(pki, None);
    let r = request(
        proxy.https,
        "test.com",
        &opts,
        get("test.com", "/status/200"),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test]
async fn a_refused_handshake_is_logged_once_per_second_per_address_and_result() {
    let (pki, _, echo) = test_com().await;
    let now = OffsetDateTime::now_utc();
    let expired = pki.issue(
        "expired",
        &dated(
            "spiffe://expired",
            now - time::Duration::days(9),
            now - time::Duration::days(2),
        ),
    );
    let cfg = config(&pki, &["test.com"], echo, "", "");
    let (proxy, log) = Proxy::start_with_log(pki.dir.path(), &cfg).await;
    let c = case("expired", "test.com", &expired, "expired_client_cert");
    for _ in 0..3 {
        assert_eq!(try_client(&proxy, &pki, 1, &c).await, None);
    }
    // A second without this line; the next one carries the two left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(try_client(&proxy, &pki, 1, &c).await, None);
    let lines = log.lines(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines_later = log.lines(3).await;
    assert_eq!(lines, lines_later, "more lines than expected");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    let not_after = expired.not_after.unix_timestamp();
    let want = gatehouse::access_log::rfc3339(not_after);
    assert_eq!(first["event"], "handshake");
    assert_eq!(first["peer"], "127.0.0.1");
    assert_eq!(first["sni"], "test.com");
    assert_eq!(first["result"], "expired_client_cert");
    assert_eq!(first["subject"], "CN=client");
    assert_eq!(first["issuer"], "CN=Test CA");
    assert_eq!(first["serial"], format!("{:x}", expired.serial));
    assert_eq!(first["sans"], serde_json::json!(["URI:spiffe://expired"]));
    assert_eq!(first["not_after"], want);
    assert_eq!(first["suppressed"], 0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(second["result"], "expired_client_cert");
    assert_eq!(second["suppressed"], 2);
}

#[tokio::test]
async fn the_text_handshake_line_carries_the_same_fields() {
    let (pki, good, echo) = test_com().await;
    let cfg = config(&pki, &["test.com"], echo, "", "");
    let (proxy, log) = Proxy::start_with_log_format(pki.dir.path(), &cfg, LogFormat::Text).await;
    anonymous(&proxy, &pki).await;
    anonymous(&proxy, &pki).await;
    let ok = request(
        proxy.https,
        "test.com",
        &ClientOpts::new(&pki, Some(&good)),
        get("test.com", "/status/200"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    let lines = log.lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let handshake = &lines[0];
    assert!(
        handshake.starts_with("event=handshake time="),
        "{handshake}"
    );
    for field in [
        " peer=127.0.0.1 ",
        " sni=test.com ",
        " result=no_client_cert ",
        " subject=- ",
        " issuer=- ",
        " serial=- ",
        " sans=- ",
        " not_after=- ",
    ] {
        assert!(handshake.contains(field), "{field} in {handshake}");
    }
    assert!(handshake.ends_with(" suppressed=0"), "{handshake}");
    assert!(lines[1].starts_with("event=request "), "{}", lines[1]);
}

//! `gatehouse cert ca|server|client` (SPEC §1), black-box: the real binary writes the files,
//! then this file reads them back with independent code. webpki (the rustls verifiers)
//! checks the chains, names and purposes; x509-parser reads the SANs, key usage, extended key
//! usage and basic constraints; p12-keystore opens the PKCS#12 with its password (and the
//! system openssl too, when there is one).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::binary::{Setup, gatehouse, gh, s};
use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, Error as TlsError};
use x509_parser::prelude::*;

// === reading what `gatehouse cert` wrote ===

fn read_chain(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

fn leaf_identity(path: &Path) -> gatehouse::identity::PeerIdentity {
    gatehouse::identity::from_leaf(&read_chain(path)[0]).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn x509(der: &[u8]) -> X509Certificate<'_> {
    parse_x509_certificate(der).expect("X.509 DER").1
}

/// Whole days from now to the certificate's not_after.
fn days_left(der: &[u8]) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (x509(der).validity().not_after.timestamp() - i64::try_from(now).unwrap()) / 86_400
}

/// The subjectAltName entries, in certificate order, as `DNS:x`, `IP:x`, `URI:x`, `email:x`.
fn sans(der: &[u8]) -> Vec<String> {
    let cert = x509(der);
    let Some(ext) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::RFC822Name(e) => format!("email:{e}"),
            GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
                Ok(v4) => format!("IP:{}", std::net::Ipv4Addr::from(v4)),
                Err(_) => format!(
                    "IP:{}",
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap())
                ),
            },
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// A leaf's extensions fit its role: not a CA; keyUsage digitalSignature (TLS 1.3 signs
/// with the key), plus keyEncipherment for RSA only (TLS 1.2 RSA key exchange; RFC 5480
/// and RFC 8410 rule it out for ECDSA and Ed25519); exactly one
/// extended key usage, serverAuth or clientAuth, and no anyExtendedKeyUsage.
#[track_caller]
fn assert_leaf_usages(der: &[u8], role: Role, key_type: &str) {
    let cert = x509(der);
    let what = format!("{role:?} leaf ({key_type})");
    if let Some(bc) = cert.basic_constraints().unwrap() {
        assert!(!bc.value.ca, "{what}: a leaf must not be a CA");
    }
    let ku = cert
        .key_usage()
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: no keyUsage"));
    assert!(ku.value.digital_signature(), "{what}: no digitalSignature");
    assert_eq!(
        ku.value.key_encipherment(),
        key_type.starts_with("rsa"),
        "{what}: keyEncipherment only for RSA"
    );
    assert!(
        !ku.value.key_cert_sign() && !ku.value.crl_sign(),
        "{what}: a leaf must not sign certificates or CRLs"
    );
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: no extendedKeyUsage"))
        .value;
    let want = (role == Role::Server, role == Role::Client);
    assert_eq!((eku.server_auth, eku.client_auth), want, "{what}: EKU");
    assert!(
        !eku.any && eku.other.is_empty() && !eku.code_signing && !eku.email_protection,
        "{what}: extra EKUs {eku:?}"
    );
}

// === verifying with webpki, as a TLS peer would ===

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(roots)
}

/// What a TLS client trusting only `ca` says of `leaf` presented by the server `name`
/// (chain, signature, validity, name and EKU serverAuth).
fn server_verdict(
    ca: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    name: &str,
) -> Result<(), TlsError> {
    use rustls::client::danger::ServerCertVerifier;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

/// What a TLS server trusting only `ca` for client certificates says of `leaf` (chain,
/// signature, validity and EKU clientAuth).
fn client_verdict(
    ca: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
) -> Result<(), TlsError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
            .build()
            .unwrap();
    verifier
        .verify_client_cert(leaf, &[], UnixTime::now())
        .map(|_| ())
}

#[track_caller]
fn verify_server(ca: &CertificateDer<'static>, leaf: &CertificateDer<'static>, name: &str) {
    if let Err(e) = server_verdict(ca, leaf, name) {
        panic!("server cert for {name:?} does not verify: {e}");
    }
}

#[track_caller]
fn verify_client(ca: &CertificateDer<'static>, leaf: &CertificateDer<'static>) {
    if let Err(e) = client_verdict(ca, leaf) {
        panic!("client cert does not verify: {e}");
    }
}

fn is_invalid_purpose(r: &Result<(), TlsError>) -> bool {
    matches!(
        r,
        Err(TlsError::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ))
    )
}

// === files, modes, chains ===

#[test]
fn cert_writes_ca_server_and_client_with_private_keys_0600() {
    let setup = Setup::new();
    let certs = setup.certs();
    for f in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        assert!(certs.join(f).is_file(), "{f} missing");
    }
    for f in ["ca.key", "server.key", "client.key"] {
        assert_eq!(mode(&certs.join(f)), 0o600, "{f} mode");
    }
    // No PKCS#12 without a password.
    assert!(!certs.join("client.p12").exists());

    let ca = read_chain(&certs.join("ca.crt"));
    assert_eq!(ca.len(), 1);
    let ca_cert = x509(&ca[0]);
    assert!((3648..=3650).contains(&days_left(&ca[0])), "CA: 3650 days");

    // server.crt: leaf then CA, the SANs asked for, verifies against the CA.
    let server = read_chain(&certs.join("server.crt"));
    assert_eq!(server.len(), 2, "server.crt must hold the leaf then the CA");
    assert_eq!(
        server[1], ca[0],
        "the second certificate of server.crt is the CA"
    );
    assert_eq!(
        sans(&server[0]),
        ["DNS:test.com", "DNS:*.mtls.example.com", "IP:127.0.0.1"]
    );
    let id = gatehouse::identity::from_leaf(&server[0]).unwrap();
    assert_eq!(id.dns_sans, ["test.com", "*.mtls.example.com"]);
    assert_eq!(id.ip_sans, ["127.0.0.1"]);
    assert!(id.principals.is_empty());
    assert_eq!(
        id.common_name.as_deref(),
        Some("test.com"),
        "CN = first DNS"
    );
    assert_eq!(
        x509(&server[0]).issuer().as_raw(),
        ca_cert.subject().as_raw()
    );
    assert!(
        (363..=365).contains(&days_left(&server[0])),
        "leaf: 365 days"
    );
    verify_server(&ca[0], &server[0], "test.com");
    verify_server(&ca[0], &server[0], "x.mtls.example.com");
    verify_server(&ca[0], &server[0], "127.0.0.1");

    // client.crt: leaf then CA, URI SAN -> principal, CN = the name.
    let client = read_chain(&certs.join("client.crt"));
    assert_eq!(client.len(), 2, "client.crt must hold the leaf then the CA");
    assert_eq!(client[1], ca[0]);
    assert_eq!(sans(&client[0]), ["URI:spiffe://test.client"]);
    let id = gatehouse::identity::from_leaf(&client[0]).unwrap();
    assert_eq!(id.principals, ["test.client"]);
    assert_eq!(id.common_name.as_deref(), Some("client"));
    assert_eq!(
        x509(&client[0]).issuer().as_raw(),
        ca_cert.subject().as_raw()
    );
    assert!(
        (363..=365).contains(&days_left(&client[0])),
        "leaf: 365 days"
    );
    verify_client(&ca[0], &client[0]);
}

/// The CA is a self-signed CA certificate (basicConstraints critical, CA:TRUE) allowed to
/// sign certificates and CRLs.
#[test]
fn cert_ca_is_a_self_signed_ca_for_certificates_and_crls() {
    let setup = Setup::new();
    let ca = read_chain(&setup.certs().join("ca.crt"));
    let cert = x509(&ca[0]);
    assert_eq!(
        cert.subject().as_raw(),
        cert.issuer().as_raw(),
        "self-signed"
    );
    assert_eq!(cert.subject().to_string(), "CN=gatehouse dev CA");
    assert_eq!(cert.version(), X509Version::V3);
    let bc = cert.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.value.ca, "ca.crt is not a CA");
    assert!(bc.critical, "basicConstraints must be critical on a CA");
    let ku = cert.key_usage().unwrap().expect("keyUsage");
    assert!(ku.value.key_cert_sign(), "CA lacks keyCertSign");
    assert!(ku.value.crl_sign(), "CA lacks cRLSign");
    // Trusted as a root by webpki: the leaves it issued verify (the other tests), and it is
    // not usable as a TLS leaf itself.
    assert!(client_verdict(&ca[0], &ca[0]).is_err());
}

/// Each leaf carries the key usage and the one extended key usage of its role.
#[test]
fn cert_leaves_have_the_key_usage_and_eku_of_their_role() {
    let setup = Setup::new();
    let certs = setup.certs();
    assert_leaf_usages(
        &read_chain(&certs.join("server.crt"))[0],
        Role::Server,
        "ecdsa-p256",
    );
    assert_leaf_usages(
        &read_chain(&certs.join("client.crt"))[0],
        Role::Client,
        "ecdsa-p256",
    );
}

/// EKU is enforced, not decorative: webpki refuses a server certificate offered as a client
/// certificate and a client certificate offered as a server certificate (even for a name
/// it carries).
#[test]
fn cert_server_and_client_certificates_are_not_interchangeable() {
    let setup = Setup::new();
    let c = setup.certs();
    gh(&format!(
        "cert client --ca {d} --out {d} --name named-client --dns test.com",
        d = s(&c)
    ))
    .ok();
    let ca = read_chain(&c.join("ca.crt"));
    let server = read_chain(&c.join("server.crt"));
    let client = read_chain(&c.join("named-client.crt"));
    verify_client(&ca[0], &client[0]);

    let r = client_verdict(&ca[0], &server[0]);
    assert!(
        is_invalid_purpose(&r),
        "server cert as a client cert: {r:?}"
    );
    let r = server_verdict(&ca[0], &client[0], "test.com");
    assert!(
        is_invalid_purpose(&r),
        "client cert as a server cert: {r:?}"
    );
}

/// The chain is checked: a leaf verifies against its own CA only, and a server certificate
/// only for the names and addresses it carries.
#[test]
fn cert_leaves_verify_only_against_their_ca_and_for_their_names() {
    let setup = Setup::new();
    let certs = setup.certs();
    let ca = read_chain(&certs.join("ca.crt"));
    let server = read_chain(&certs.join("server.crt"));
    let client = read_chain(&certs.join("client.crt"));

    // Other CAs do not vouch for them. One with the same (default) name is found by name and
    // its signature does not match; one with another name is not even a candidate.
    let other = tempfile::tempdir().unwrap();
    let o = s(other.path());
    gh(&format!("cert ca --out {o}/same-name")).ok();
    gatehouse(&[
        "cert",
        "ca",
        "--out",
        &format!("{o}/other-name"),
        "--cn",
        "Other CA",
    ])
    .ok();
    for (dir, want) in [
        ("same-name", CertificateError::BadSignature),
        ("other-name", CertificateError::UnknownIssuer),
    ] {
        let other_ca = read_chain(&other.path().join(dir).join("ca.crt"));
        for r in [
            server_verdict(&other_ca[0], &server[0], "test.com"),
            client_verdict(&other_ca[0], &client[0]),
        ] {
            assert_eq!(r, Err(TlsError::InvalidCertificate(want.clone())), "{dir}");
        }
    }

    for name in [
        "other.com",
        "mtls.example.com",
        "a.b.mtls.example.com",
        "127.0.0.2",
    ] {
        let r = server_verdict(&ca[0], &server[0], name);
        assert!(
            matches!(
                r,
                Err(TlsError::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn cert_flags_name_cn_days_and_repeated_sans() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let run = gatehouse(&[
        "cert",
        "ca",
        "--out",
        d,
        "--cn",
        "Acme Dev Root",
        "--days",
        "30",
    ]);
    run.ok();
    assert!(
        run.stdout.contains("ca.crt"),
        "say what was written: {}",
        run.stdout
    );
    gh(&format!(
        "cert server --ca {d} --out {d} --name api --dns api.example.com \
         --dns API2.example.com --ip ::1 --ip 10.0.0.1 --days 10"
    ))
    .ok();
    gatehouse(&[
        "cert",
        "client",
        "--ca",
        d,
        "--out",
        d,
        "--name",
        "alice",
        "--cn",
        "Alice Example",
        "--uri",
        "spiffe://example.org/alice",
        "--uri",
        "https://alice.example.org/",
        "--dns",
        "alice.example.com",
        "--email",
        "alice@example.com",
    ])
    .ok();
    let ca = read_chain(&dir.path().join("ca.crt"));
    assert_eq!(x509(&ca[0]).subject().to_string(), "CN=Acme Dev Root");
    assert!((28..=30).contains(&days_left(&ca[0])), "--days 30");

    let api = read_chain(&dir.path().join("api.crt"));
    assert_eq!(mode(&dir.path().join("api.key")), 0o600);
    assert_eq!(
        sans(&api[0]),
        [
            "DNS:api.example.com",
            "DNS:API2.example.com",
            "IP:::1",
            "IP:10.0.0.1"
        ]
    );
    let id = gatehouse::identity::from_leaf(&api[0]).unwrap();
    assert_eq!(id.dns_sans, ["api.example.com", "API2.example.com"]);
    assert_eq!(id.ip_sans, ["::1", "10.0.0.1"]);
    assert!((8..=10).contains(&days_left(&api[0])), "--days 10");
    for name in ["api.example.com", "10.0.0.1", "::1"] {
        verify_server(&ca[0], &api[0], name);
    }
    assert_leaf_usages(&api[0], Role::Server, "ecdsa-p256");

    let alice = read_chain(&dir.path().join("alice.crt"));
    assert_eq!(mode(&dir.path().join("alice.key")), 0o600);
    assert_eq!(
        sans(&alice[0]),
        [
            "DNS:alice.example.com",
            "URI:spiffe://example.org/alice",
            "URI:https://alice.example.org/",
            "email:alice@example.com",
        ]
    );
    assert_eq!(x509(&alice[0]).subject().to_string(), "CN=Alice Example");
    let id = gatehouse::identity::from_leaf(&alice[0]).unwrap();
    assert_eq!(id.common_name.as_deref(), Some("Alice Example"));
    assert_eq!(
        id.uri_sans,
        ["spiffe://example.org/alice", "https://alice.example.org/"]
    );
    assert_eq!(id.principals, ["example.org/alice"]);
    assert_eq!(id.dns_sans, ["alice.example.com"]);
    assert_eq!(id.email_sans, ["alice@example.com"]);
    verify_client(&ca[0], &alice[0]);
    assert_leaf_usages(&alice[0], Role::Client, "ecdsa-p256");
}

#[test]
fn cert_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let ca_crt = dir.path().join("ca.crt");
    let ca_key = dir.path().join("ca.key");
    gh(&format!("cert ca --out {d}")).ok();
    let before = std::fs::read(&ca_crt).unwrap();

    let run = gh(&format!("cert ca --out {d}"));
    run.expect_code(1);
    assert!(
        run.stderr.contains(s(&ca_crt)),
        "must name the file: {}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&ca_crt).unwrap(),
        before,
        "ca.crt was modified"
    );

    // Only the key exists: still refused, naming the key, and nothing is written.
    std::fs::remove_file(&ca_crt).unwrap();
    let run = gh(&format!("cert ca --out {d}"));
    run.expect_code(1);
    assert!(run.stderr.contains(s(&ca_key)), "{}", run.stderr);
    assert!(!ca_crt.exists(), "nothing may be written when refusing");

    // --force overwrites; the key is 0600 afterwards even if it was not before.
    let old_key = std::fs::read(&ca_key).unwrap();
    std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    gh(&format!("cert ca --out {d} --force")).ok();
    assert_ne!(
        std::fs::read(&ca_key).unwrap(),
        old_key,
        "--force writes a new key"
    );
    assert_ne!(std::fs::read(&ca_crt).unwrap(), before);
    assert_eq!(
        mode(&ca_key),
        0o600,
        "a key rewritten with --force must be 0600"
    );

    // Leaves too.
    let server = dir.path().join("server.crt");
    gh(&format!("cert server --ca {d} --out {d} --dns a.com")).ok();
    let run = gh(&format!("cert server --ca {d} --out {d} --dns b.com"));
    run.expect_code(1);
    assert!(run.stderr.contains(s(&server)), "{}", run.stderr);
    assert_eq!(leaf_identity(&server).dns_sans, ["a.com"]);
    gh(&format!(
        "cert server --ca {d} --out {d} --dns b.com --force"
    ))
    .ok();
    assert_eq!(leaf_identity(&server).dns_sans, ["b.com"]);
}

#[test]
fn cert_leaf_without_a_ca_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let run = gh(&format!("cert client --ca {d} --out {d} --uri spiffe://x"));
    run.expect_code(1);
    assert!(run.stderr.contains("ca.crt"), "{}", run.stderr);
    assert!(!dir.path().join("client.crt").exists());
}

/// A leaf never outlives its CA: `cert ca --days 10` then `cert server` (365 days by
/// default) gives a server certificate that ends with the CA, and says so.
#[test]
fn cert_leaves_never_outlive_their_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    gh(&format!("cert ca --out {d} --days 10")).ok();
    let run = gh(&format!("cert server --ca {d} --out {d} --dns test.com"));
    run.ok();
    assert!(run.stderr.contains("when its CA expires"), "{}", run.stderr);
    let ca = read_chain(&dir.path().join("ca.crt"));
    let server = read_chain(&dir.path().join("server.crt"));
    assert_eq!(
        x509(&server[0]).validity().not_after,
        x509(&ca[0]).validity().not_after
    );
    // A leaf shorter than its CA is issued as asked, without a note.
    let run = gh(&format!(
        "cert client --ca {d} --out {d} --uri spiffe://x --days 5"
    ));
    run.ok();
    assert!(!run.stderr.contains("expires"), "{}", run.stderr);
    let client = read_chain(&dir.path().join("client.crt"));
    assert!((4..=5).contains(&days_left(&client[0])));
}

/// Every `--key-type` makes a PKI whose certificates verify, carry the usages of their role,
/// and whose server cert + key pass `gatehouse check` (key matches cert, rustls can sign
/// with it).
#[test]
fn cert_every_key_type_makes_a_usable_pki() {
    for key_type in ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa2048", "rsa4096"] {
        let setup = Setup::with_key_type(key_type);
        let certs = setup.certs();
        let ca = read_chain(&certs.join("ca.crt"));
        let server = read_chain(&certs.join("server.crt"));
        let client = read_chain(&certs.join("client.crt"));
        verify_server(&ca[0], &server[0], "test.com");
        verify_client(&ca[0], &client[0]);
        assert_leaf_usages(&server[0], Role::Server, key_type);
        assert_leaf_usages(&client[0], Role::Client, key_type);
        let run = setup.check(&setup.config());
        assert_eq!(
            run.code,
            Some(0),
            "--key-type {key_type}: check failed\n{}{}",
            run.stdout,
            run.stderr
        );
    }
}

// === PKCS#12 ===

/// DER encodings of the algorithm OIDs OpenSSL 3 writes by default (SPEC §1: AES-256-CBC +
/// PBKDF2), which sit in the clear in the PFX.
const PBES2: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 13];
const PBKDF2: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 12];
const AES_256_CBC: &[u8] = &[6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 1, 42];
const HMAC_SHA256: &[u8] = &[6, 8, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 2, 9];
/// The prefix of the legacy PKCS#12 PBE OIDs (1.2.840.113549.1.12.1.x: RC2, RC4, 3DES).
const LEGACY_PBE: &[u8] = &[6, 10, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 12, 1];

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// SPEC §1: `cert client --p12-password PW` also writes `<name>.p12`, mode 0600, holding the
/// key and the chain of the PEM files, readable with that password only, encrypted with
/// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) as OpenSSL 3 does.
#[test]
fn cert_client_with_p12_password_writes_a_pkcs12_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    gh(&format!("cert ca --out {d}")).ok();
    for key_type in ["ecdsa-p256", "ed25519", "rsa2048"] {
        let name = format!("client-{key_type}");
        gh(&format!(
            "cert client --ca {d} --out {d} --name {name} --key-type {key_type} \
             --uri spiffe://test.client --p12-password s3cret"
        ))
        .ok();
        let p12 = dir.path().join(format!("{name}.p12"));
        assert!(p12.is_file(), "{name}.p12 missing");
        assert_eq!(mode(&p12), 0o600, "{name}.p12 mode");
        let der = std::fs::read(&p12).unwrap();

        // In process: the right password gives back the key and the chain of the PEM files.
        let store = KeyStore::from_pkcs12(&der, "s3cret", Pkcs12ImportPolicy::Strict)
            .unwrap_or_else(|e| panic!("{name}.p12 with its password: {e}"));
        let (alias, chain) = store
            .private_key_chain()
            .unwrap_or_else(|| panic!("{name}.p12 holds no key with a chain"));
        assert_eq!(alias, name, "the friendly name is the --name");
        let key = PrivateKeyDer::from_pem_file(dir.path().join(format!("{name}.key"))).unwrap();
        assert_eq!(
            chain.key().as_der(),
            key.secret_der(),
            "{name}.p12: not the key of {name}.key"
        );
        let pem_chain = read_chain(&dir.path().join(format!("{name}.crt")));
        let p12_chain: Vec<&[u8]> = chain.certs().iter().map(|c| c.as_der()).collect();
        let pem_chain: Vec<&[u8]> = pem_chain.iter().map(|c| c.as_ref()).collect();
        assert_eq!(
            p12_chain, pem_chain,
            "{name}.p12: not the chain of {name}.crt"
        );

        // A wrong password is an error, not garbage.
        for wrong in ["s3cret ", "S3cret", ""] {
            assert!(
                KeyStore::from_pkcs12(&der, wrong, Pkcs12ImportPolicy::Relaxed).is_err(),
                "{name}.p12 opened with {wrong:?}"
            );
        }

        // The algorithms, read from the DER.
        for (what, oid) in [
            ("PBES2", PBES2),
            ("PBKDF2", PBKDF2),
            ("AES-256-CBC", AES_256_CBC),
            ("HMAC-SHA256", HMAC_SHA256),
        ] {
            assert!(has(&der, oid), "{name}.p12 does not use {what}");
        }
        assert!(
            !has(&der, LEGACY_PBE),
            "{name}.p12 uses a legacy PKCS#12 PBE"
        );

        openssl_reads_p12(&p12, pem_chain[0]);
    }
}

/// The system openssl (when installed; CI does not rely on it) opens the file with the
/// password, reports PBKDF2 + AES-256-CBC, extracts the leaf, and refuses a wrong password.
fn openssl_reads_p12(p12: &Path, leaf_der: &[u8]) {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .arg("pkcs12")
            .args(args)
            .arg("-in")
            .arg(p12)
            .stdin(Stdio::null())
            .output()
    };
    let Ok(info) = openssl(&["-info", "-noout", "-passin", "pass:s3cret"]) else {
        eprintln!("no openssl: skipping the openssl cross-check");
        return;
    };
    let text =
        String::from_utf8_lossy(&info.stderr).into_owned() + &String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "openssl pkcs12 failed: {text}");
    assert!(
        text.contains("PBKDF2") && text.contains("AES-256-CBC"),
        "{text}"
    );
    let certs = openssl(&["-nokeys", "-clcerts", "-passin", "pass:s3cret"]).unwrap();
    assert!(certs.status.success());
    let leaf = CertificateDer::pem_slice_iter(&certs.stdout)
        .next()
        .expect("openssl printed the leaf")
        .unwrap();
    assert_eq!(leaf.as_ref(), leaf_der, "openssl: the leaf differs");
    let wrong = openssl(&["-info", "-noout", "-passin", "pass:wrong"]).unwrap();
    assert!(
        !wrong.status.success(),
        "openssl opened it with a wrong password"
    );
}

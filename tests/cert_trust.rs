//! The certificates `gatehouse cert` makes are trusted as a TLS peer would trust them
//! (webpki, the rustls verifiers, via `common::x509`): the CA is a CA, each leaf carries the
//! key usage and the one EKU of its role, server and client certificates are not
//! interchangeable, a leaf verifies only against its CA and for its names, never outlives
//! its CA, and every `--key-type` makes a usable PKI.

mod common;

use common::binary::{Setup, gatehouse, gh, s};
use common::x509::*;
use rustls::{CertificateError, Error as TlsError};
use x509_parser::prelude::*;

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

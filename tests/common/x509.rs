//! Reading back what `gatehouse cert` wrote with code independent of it: x509-parser for
//! the SANs, key usage, extended key usage and basic constraints; webpki (the rustls
//! verifiers) for chains, names and purposes, as a TLS peer would check them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, Error as TlsError};
use x509_parser::prelude::*;

// === reading what `gatehouse cert` wrote ===

pub fn read_chain(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

pub fn leaf_identity(path: &Path) -> gatehouse::identity::PeerIdentity {
    gatehouse::identity::from_leaf(&read_chain(path)[0]).unwrap()
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

pub fn x509(der: &[u8]) -> X509Certificate<'_> {
    parse_x509_certificate(der).expect("X.509 DER").1
}

/// Whole days from now to the certificate's not_after.
pub fn days_left(der: &[u8]) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (x509(der).validity().not_after.timestamp() - i64::try_from(now).unwrap()) / 86_400
}

/// The subjectAltName entries, in certificate order, as `DNS:x`, `IP:x`, `URI:x`, `email:x`.
pub fn sans(der: &[u8]) -> Vec<String> {
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
pub enum Role {
    Server,
    Client,
}

/// A leaf's extensions fit its role: not a CA; keyUsage digitalSignature (TLS 1.3 signs
/// with the key), plus keyEncipherment for RSA only (TLS 1.2 RSA key exchange; RFC 5480
/// and RFC 8410 rule it out for ECDSA and Ed25519); exactly one
/// extended key usage, serverAuth or clientAuth, and no anyExtendedKeyUsage.
#[track_caller]
pub fn assert_leaf_usages(der: &[u8], role: Role, key_type: &str) {
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

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn roots(ca: &CertificateDer<'static>) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(roots)
}

/// What a TLS client trusting only `ca` says of `leaf` presented by the server `name`
/// (chain, signature, validity, name and EKU serverAuth).
pub fn server_verdict(
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
pub fn client_verdict(
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
pub fn verify_server(ca: &CertificateDer<'static>, leaf: &CertificateDer<'static>, name: &str) {
    if let Err(e) = server_verdict(ca, leaf, name) {
        panic!("server cert for {name:?} does not verify: {e}");
    }
}

#[track_caller]
pub fn verify_client(ca: &CertificateDer<'static>, leaf: &CertificateDer<'static>) {
    if let Err(e) = client_verdict(ca, leaf) {
        panic!("client cert does not verify: {e}");
    }
}

pub fn is_invalid_purpose(r: &Result<(), TlsError>) -> bool {
    matches!(
        r,
        Err(TlsError::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ))
    )
}

// === files, modes, chains ===

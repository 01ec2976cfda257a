//! Reading TLS material from disk: certificate chains, private keys (PKCS#8, SEC1, PKCS#1),
//! CA bundles and CRLs (PEM or DER), from explicit paths or a Kubernetes secret mount; and
//! the certificate summaries shown by `gatehouse check` and `/certs`.
//!
//! Everything is validated here so a bad file is reported with its path at load time and
//! never breaks a handshake later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::prelude::*;

use crate::config::Credentials;

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct CredentialError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> CredentialError {
    CredentialError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The TLS material of one `[[server]]`, read and checked.
#[derive(Debug)]
pub(crate) struct Material {
    /// Leaf first, with the key checked against it.
    pub certified: Arc<CertifiedKey>,
    /// Trusted client-certificate CAs; empty when none was configured.
    pub client_ca: Vec<CertificateDer<'static>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Every file read, for `check` and reload.
    pub files: Vec<PathBuf>,
}

/// Reads a server's credentials and checks that they fit together.
pub(crate) fn load(
    creds: &Credentials,
    provider: &CryptoProvider,
) -> Result<Material, CredentialError> {
    let (cert, key, ca, crls) = match creds {
        Credentials::Files {
            cert,
            key,
            client_ca,
            client_crl,
        } => (
            cert.clone(),
            key.clone(),
            client_ca.clone(),
            client_crl.clone(),
        ),
        Credentials::Dir {
            dir,
            client_ca,
            client_crl,
        } => {
            let (cert, key, dir_ca, dir_crls) = resolve_dir(dir)?;
            let crls = match client_crl.is_empty() {
                true => dir_crls,
                false => client_crl.clone(),
            };
            (cert, key, client_ca.clone().or(dir_ca), crls)
        }
    };
    let chain = read_chain(&cert)?;
    let key_der = read_key(&key)?;
    let certified = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => err(
            &key,
            format!("does not match the certificate in {}", cert.display()),
        ),
        other => err(&key, format!("unusable private key: {other}")),
    })?;
    let mut files = vec![cert, key];
    let client_ca = match ca {
        Some(path) => {
            let bundle = read_chain(&path)?;
            let mut roots = rustls::RootCertStore::empty();
            for (i, c) in bundle.iter().enumerate() {
                roots.add(c.clone()).map_err(|e| {
                    err(
                        &path,
                        format!("certificate #{} is not a usable CA: {e}", i + 1),
                    )
                })?;
            }
            files.push(path);
            bundle
        }
        None => Vec::new(),
    };
    let mut crl_list = Vec::new();
    for path in crls {
        crl_list.push(read_crl(&path)?);
        files.push(path);
    }
    Ok(Material {
        certified: Arc::new(certified),
        client_ca,
        crls: crl_list,
        files,
    })
}

type Resolved = (PathBuf, PathBuf, Option<PathBuf>, Vec<PathBuf>);

/// Every file name a `credential_dir` is read for (in [`resolve_dir`]'s order of preference).
pub(crate) const CREDENTIAL_DIR_NAMES: [&str; 8] = [
    "cert", "tls.crt", "key", "tls.key", "cacert", "ca.crt", "crl", "ca.crl",
];

/// The Kubernetes/Istio secret layout: `cert|tls.crt`, `key|tls.key`, `cacert|ca.crt`,
/// `crl|ca.crl`, the first name that exists winning.
fn resolve_dir(dir: &Path) -> Result<Resolved, CredentialError> {
    if !dir.is_dir() {
        return Err(err(dir, "credential_dir is not a readable directory"));
    }
    let first = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.exists());
    let cert =
        first(&["cert", "tls.crt"]).ok_or_else(|| err(dir, "has neither `cert` nor `tls.crt`"))?;
    let key =
        first(&["key", "tls.key"]).ok_or_else(|| err(dir, "has neither `key` nor `tls.key`"))?;
    Ok((
        cert,
        key,
        first(&["cacert", "ca.crt"]),
        first(&["crl", "ca.crl"]).into_iter().collect(),
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|e| err(path, e.to_string()))
}

/// A PEM file of certificates, in file order.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(err(path, "no PEM \"CERTIFICATE\" block found"));
    }
    for (i, c) in chain.iter().enumerate() {
        X509Certificate::from_der(c)
            .map_err(|e| err(path, format!("certificate #{} does not parse: {e}", i + 1)))?;
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CredentialError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => err(
            path,
            "no PEM private key found (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
        ),
        other => err(path, format!("bad PEM: {other}")),
    })
}

/// A CRL in PEM (`X509 CRL`) or DER.
fn read_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>, CredentialError> {
    let bytes = read(path)?;
    let crl = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(&bytes)
            .map_err(|e| err(path, format!("bad PEM CRL: {e}")))?
    } else {
        CertificateRevocationListDer::from(bytes)
    };
    x509_parser::revocation_list::CertificateRevocationList::from_der(&crl)
        .map_err(|e| err(path, format!("not a valid CRL: {e}")))?;
    Ok(crl)
}

/// What `check` and `/certs` say about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// `DNS:x`, `URI:x`, `email:x`, `IP:x`.
    pub sans: Vec<String>,
    /// Lowercase hex of the serial's value, no leading zeros.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertSummary {
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let id = crate::identity::from_leaf(der).ok()?;
        let sans = (id.dns_sans.iter().map(|s| format!("DNS:{s}")))
            .chain(id.uri_sans.iter().map(|s| format!("URI:{s}")))
            .chain(id.email_sans.iter().map(|s| format!("email:{s}")))
            .chain(id.ip_sans.iter().map(|s| format!("IP:{s}")))
            .collect();
        let serial = cert.serial.to_str_radix(16);
        Some(Self {
            subject: id.subject,
            issuer: crate::identity::rfc2253(cert.issuer()),
            sans,
            serial,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Whole days until `not_after` (negative once expired).
    pub(crate) fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after - now_unix).div_euclid(86_400)
    }
}

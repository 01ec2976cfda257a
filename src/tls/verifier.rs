//! Client-certificate verification: webpki (chain to `client_ca`, validity, EKU, CRLs) first,
//! then the server's `allowed_sans` and key/cert pins. A failure ends the handshake with a TLS
//! alert; [`classify`] turns the rustls error into the `result` label SPEC defines.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use crate::config::{ClientAuth, ServerConfig};
use crate::identity;

/// How a handshake ended: the `result` label of `gatehouse_tls_handshakes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeOutcome {
    Ok,
    NoClientCert,
    UntrustedClientCert,
    ExpiredClientCert,
    RevokedClientCert,
    InvalidClientCert,
    SanNotAllowed,
    PinNotAllowed,
    UnknownSni,
    Timeout,
    Error,
}

impl HandshakeOutcome {
    pub const ALL: [Self; 11] = [
        Self::Ok,
        Self::NoClientCert,
        Self::UntrustedClientCert,
        Self::ExpiredClientCert,
        Self::RevokedClientCert,
        Self::InvalidClientCert,
        Self::SanNotAllowed,
        Self::PinNotAllowed,
        Self::UnknownSni,
        Self::Timeout,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoClientCert => "no_client_cert",
            Self::UntrustedClientCert => "untrusted_client_cert",
            Self::ExpiredClientCert => "expired_client_cert",
            Self::RevokedClientCert => "revoked_client_cert",
            Self::InvalidClientCert => "invalid_client_cert",
            Self::SanNotAllowed => "san_not_allowed",
            Self::PinNotAllowed => "pin_not_allowed",
            Self::UnknownSni => "unknown_sni",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// Why our own checks (after webpki) refused a certificate. Carried inside
/// `CertificateError::Other` and recovered by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRejection {
    SanNotAllowed,
    PinNotAllowed,
}

impl fmt::Display for PolicyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SanNotAllowed => "no SAN of the client certificate is in allowed_sans",
            Self::PinNotAllowed => "the client certificate matches none of the configured pins",
        })
    }
}

impl std::error::Error for PolicyRejection {}

/// Maps a handshake error to its metric label.
pub fn classify(err: &Error) -> HandshakeOutcome {
    match err {
        Error::NoCertificatesPresented => HandshakeOutcome::NoClientCert,
        Error::InvalidCertificate(cert_err) => match cert_err {
            CertificateError::UnknownIssuer => HandshakeOutcome::UntrustedClientCert,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => HandshakeOutcome::ExpiredClientCert,
            CertificateError::Revoked => HandshakeOutcome::RevokedClientCert,
            CertificateError::Other(OtherError(inner)) => {
                match inner.downcast_ref::<PolicyRejection>() {
                    Some(PolicyRejection::SanNotAllowed) => HandshakeOutcome::SanNotAllowed,
                    Some(PolicyRejection::PinNotAllowed) => HandshakeOutcome::PinNotAllowed,
                    None => HandshakeOutcome::InvalidClientCert,
                }
            }
            _ => HandshakeOutcome::InvalidClientCert,
        },
        _ => HandshakeOutcome::Error,
    }
}

/// Pulls the rustls error out of the `io::Error` tokio-rustls returns.
pub fn classify_io(err: &std::io::Error) -> HandshakeOutcome {
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(tls) => classify(tls),
        None if err.kind() == std::io::ErrorKind::TimedOut => HandshakeOutcome::Timeout,
        None => HandshakeOutcome::Error,
    }
}

/// Re-runs a server's client-certificate checks, at `now`, on certificates it accepted
/// earlier: a resumed TLS session (rustls does not verify again), or an open connection after
/// a reload changed the CAs, CRLs, allow-list or pins. `chain` is leaf first.
pub fn recheck(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), HandshakeOutcome> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return match verifier.client_auth_mandatory() {
            true => Err(HandshakeOutcome::NoClientCert),
            false => Ok(()),
        };
    };
    verifier
        .verify_client_cert(leaf, intermediates, now)
        .map(|_| ())
        .map_err(|e| classify(&e))
}

/// Builds the client verifier of one server, or `None` for `client_auth = "none"`.
pub fn build(
    server: &ServerConfig,
    client_ca: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
    if server.client_auth == ClientAuth::None {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in client_ca {
        roots
            .add(ca.clone())
            .map_err(|e| format!("client CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no client CA certificate configured (client_ca or cacert/ca.crt)".into());
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status();
    if server.client_auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    if server.allowed_sans.is_empty()
        && server.allowed_spki_sha256.is_empty()
        && server.allowed_cert_sha256.is_empty()
    {
        return Ok(Some(inner));
    }
    Ok(Some(Arc::new(AllowListVerifier {
        inner,
        allowed_sans: server.allowed_sans.clone(),
        spki: server.allowed_spki_sha256.clone(),
        certs: server.allowed_cert_sha256.clone(),
    })))
}

/// webpki, then SAN allow-list and pins. Fails closed: a leaf that cannot be parsed is refused.
#[derive(Debug)]
struct AllowListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed_sans: Vec<String>,
    spki: Vec<[u8; 32]>,
    certs: Vec<[u8; 32]>,
}

fn rejected(why: PolicyRejection) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(why))))
}

/// Does any SAN of the leaf equal one of `allowed`? DNS names compare case-insensitively.
pub fn san_allowed(id: &identity::PeerIdentity, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        id.dns_sans.iter().any(|d| d.eq_ignore_ascii_case(a))
            || id
                .uri_sans
                .iter()
                .chain(&id.email_sans)
                .chain(&id.ip_sans)
                .any(|v| v == a)
    })
}

impl ClientCertVerifier for AllowListVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        // Parsed once for both checks; an unparsable leaf fails closed.
        let id = identity::from_leaf(end_entity).ok();
        if !self.allowed_sans.is_empty()
            && !id
                .as_ref()
                .is_some_and(|id| san_allowed(id, &self.allowed_sans))
        {
            return Err(rejected(PolicyRejection::SanNotAllowed));
        }
        if !self.certs.is_empty() || !self.spki.is_empty() {
            let pinned = id.as_ref().is_some_and(|id| {
                self.certs.contains(&id.cert_sha256) || self.spki.contains(&id.spki_sha256)
            });
            if !pinned {
                return Err(rejected(PolicyRejection::PinNotAllowed));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

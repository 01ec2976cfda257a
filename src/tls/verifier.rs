//! Client-certificate verification: webpki (chain to `client_ca`, validity, EKU, CRLs) first,
//! then the server's `allowed_sans` and key/cert pins. A failure ends the handshake with a TLS
//! alert; [`classify`] turns the rustls error into the `result` label SPEC defines, and the
//! refused leaf is kept for the refused-handshake log line ([`take_refused`]). [`check`] runs
//! the same verifier on certificates outside a handshake: resumed sessions, open connections
//! after a reload, and `gatehouse verify`.

use std::cell::Cell;
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
pub(crate) enum HandshakeOutcome {
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
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) enum PolicyRejection {
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
pub(crate) fn classify(err: &Error) -> HandshakeOutcome {
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
pub(crate) fn classify_io(err: &std::io::Error) -> HandshakeOutcome {
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(tls) => classify(tls),
        None if err.kind() == std::io::ErrorKind::TimedOut => HandshakeOutcome::Timeout,
        None => HandshakeOutcome::Error,
    }
}

thread_local! {
    /// The leaf the last refused `verify_client_cert` on this thread was given. rustls calls
    /// the verifier inside the poll that then fails the handshake, so the task whose
    /// handshake failed takes it ([`take_refused`]) before another task runs on the thread.
    static REFUSED: Cell<Option<CertificateDer<'static>>> = const { Cell::new(None) };
}

/// The leaf certificate this thread's verifier refused last, if any; forgets it.
pub(crate) fn take_refused() -> Option<CertificateDer<'static>> {
    REFUSED.take()
}

/// Runs a server's client-certificate checks, at `now`, on a chain (leaf first) outside a
/// handshake: a resumed TLS session (rustls does not verify again), an open connection after
/// a reload changed the CAs, CRLs, allow-list or pins, or `gatehouse verify`.
pub(crate) fn check(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), Error> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return match verifier.client_auth_mandatory() {
            true => Err(Error::NoCertificatesPresented),
            false => Ok(()),
        };
    };
    let checked = verifier.verify_client_cert(leaf, intermediates, now);
    // Not a handshake: nobody logs this refusal's leaf.
    REFUSED.take();
    checked.map(|_| ())
}

/// [`check`], with the failure as its handshake result.
pub(crate) fn recheck(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), HandshakeOutcome> {
    check(verifier, chain, now).map_err(|e| classify(&e))
}

/// Builds the client verifier of one server, or `None` for `client_auth = "none"`.
pub(crate) fn build(
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
    Ok(Some(Arc::new(ClientVerifier {
        inner,
        allowed_sans: server.allowed_sans.clone(),
        spki: server.allowed_spki_sha256.clone(),
        certs: server.allowed_cert_sha256.clone(),
    })))
}

/// webpki, then SAN allow-list and pins (when set); a refused leaf is kept in [`REFUSED`].
/// Fails closed: a leaf that cannot be parsed is refused by an allow-list or pin.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed_sans: Vec<String>,
    spki: Vec<[u8; 32]>,
    certs: Vec<[u8; 32]>,
}

fn rejected(why: PolicyRejection) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(why))))
}

/// Does any SAN of the leaf equal one of `allowed`? DNS names compare case-insensitively.
pub(crate) fn san_allowed(id: &identity::PeerIdentity, allowed: &[String]) -> bool {
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

impl ClientVerifier {
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed_sans.is_empty() && self.spki.is_empty() && self.certs.is_empty() {
            return Ok(verified);
        }
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
}

impl ClientCertVerifier for ClientVerifier {
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
        let verified = self.verify(end_entity, intermediates, now);
        if verified.is_err() {
            REFUSED.set(Some(end_entity.clone().into_owned()));
        }
        verified
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

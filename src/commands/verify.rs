//! `gatehouse verify`: would this client certificate be accepted? The config is read by the
//! same loader as `run`, the server is chosen by SNI as in a handshake, and the certificate
//! goes through that server's own verifier ([`verifier::check`], the code a handshake runs).
//! The answer is `ACCEPT`, or `REFUSE <result>` with the handshake result word and the check
//! that failed spelled out for a person, then the certificate's subject, issuer, serial,
//! validity and SANs.

use std::fmt::Write as _;
use std::process::ExitCode;

use rustls::{CertificateError, Error};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use super::fail;
use crate::access_log::rfc3339;
use crate::cli::VerifyArgs;
use crate::config::ClientAuth;
use crate::host;
use crate::identity;
use crate::runtime::{CertKind, Runtime, Server};
use crate::tls::credentials::{self, CertSummary};
use crate::tls::{HandshakeOutcome, verifier};

/// What `verify` found.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// `Ok` for ACCEPT.
    pub outcome: HandshakeOutcome,
    /// Why, for a person (empty for a plain ACCEPT).
    pub why: Vec<String>,
    /// `server[i]` and its first host, when one was chosen.
    pub server: Option<String>,
}

impl Verdict {
    /// The first line: `ACCEPT` or `REFUSE <result>`.
    pub(crate) fn headline(&self) -> String {
        match self.outcome {
            HandshakeOutcome::Ok => "ACCEPT".to_owned(),
            refused => format!("REFUSE {}", refused.as_str()),
        }
    }
}

/// `gatehouse verify -c FILE --cert PEM [--sni NAME]`: exit 0 with the verdict, 1 on a bad
/// config or an unreadable certificate.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let rt = match Runtime::load(&args.config) {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let chain = match credentials::read_chain(&args.cert) {
        Ok(chain) => chain,
        Err(e) => return fail(&e),
    };
    let Some(summary) = CertSummary::parse(&chain[0]) else {
        let why = "the first certificate cannot be parsed as X.509";
        return fail(&format!("{}: {why}", args.cert.display()));
    };
    let verdict = verify(&rt, &chain, args.sni.as_deref(), UnixTime::now());
    let mut out = verdict.headline();
    out.push('\n');
    for line in &verdict.why {
        let _ = writeln!(out, "  why: {line}");
    }
    if let Some(server) = &verdict.server {
        let _ = writeln!(out, "  server: {server}");
    }
    describe(&summary, &mut out);
    print!("{out}");
    ExitCode::SUCCESS
}

/// The certificate's identity lines.
fn describe(c: &CertSummary, out: &mut String) {
    let _ = writeln!(out, "  subject: {}", c.subject);
    let _ = writeln!(out, "  issuer: {}", c.issuer);
    let _ = writeln!(out, "  serial: {}", c.serial);
    let _ = writeln!(
        out,
        "  valid: {} to {}",
        rfc3339(c.not_before),
        rfc3339(c.not_after)
    );
    let sans = match c.sans.is_empty() {
        true => "(none)".to_owned(),
        false => c.sans.join(", "),
    };
    let _ = writeln!(out, "  sans: {sans}");
}

/// Runs the checks of the server `sni` chooses (without SNI: the first `[[server]]`) on
/// `chain` (leaf first, not empty) at `now`.
pub(crate) fn verify(
    rt: &Runtime,
    chain: &[CertificateDer<'_>],
    sni_name: Option<&str>,
    now: UnixTime,
) -> Verdict {
    let lowered = sni_name.map(str::to_ascii_lowercase);
    let chosen = match &lowered {
        Some(name) => host::select(&rt.servers, |s| &s.config.hosts, Some(name.as_str())),
        None => rt.servers.first().map(|s| (0, s)),
    };
    let Some((index, server)) = chosen else {
        return Verdict {
            outcome: HandshakeOutcome::UnknownSni,
            why: vec![format!(
                "no [[server]] takes the SNI {:?}",
                sni_name.unwrap_or_default()
            )],
            server: None,
        };
    };
    let label = Some(format!("server[{index}] ({})", server.config.name()));
    let Some(verifier) = &server.verifier else {
        return Verdict {
            outcome: HandshakeOutcome::Ok,
            why: vec![
                "this server does not ask for a client certificate (client_auth = \"none\")".into(),
            ],
            server: label,
        };
    };
    let (outcome, why) = match verifier::check(verifier.as_ref(), chain, now) {
        Ok(()) => {
            let why = match server.config.client_auth {
                ClientAuth::Optional => vec![
                    "client_auth = \"optional\": a client without a certificate is accepted too"
                        .into(),
                ],
                _ => Vec::new(),
            };
            (HandshakeOutcome::Ok, why)
        }
        Err(e) => {
            let outcome = verifier::classify(&e);
            (outcome, vec![explain(outcome, &e, server, chain, now)])
        }
    };
    Verdict {
        outcome,
        why,
        server: label,
    }
}

/// The failed check, for a person.
fn explain(
    outcome: HandshakeOutcome,
    err: &Error,
    server: &Server,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> String {
    let leaf = CertSummary::parse(&chain[0]);
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    match outcome {
        HandshakeOutcome::UntrustedClientCert => {
            let cas: Vec<&str> = server
                .certs
                .iter()
                .filter(|(kind, _)| *kind == CertKind::ClientCa)
                .map(|(_, c)| c.subject.as_str())
                .collect();
            format!(
                "its issuer {:?} is not one of this server's client CAs ({}), and the file holds no intermediate that chains to one",
                leaf.map(|c| c.issuer).unwrap_or_default(),
                quoted(&cas)
            )
        }
        HandshakeOutcome::ExpiredClientCert => match leaf {
            Some(c) if now > c.not_after => format!(
                "it expired at {} ({} ago)",
                rfc3339(c.not_after),
                ago(now - c.not_after)
            ),
            Some(c) if now < c.not_before => format!(
                "it is not valid before {} (in {})",
                rfc3339(c.not_before),
                ago(c.not_before - now)
            ),
            _ => "a CA certificate in its chain is outside its validity period".into(),
        },
        HandshakeOutcome::RevokedClientCert => format!(
            "its serial {} is revoked by this server's CRL (client_crl)",
            leaf.map(|c| c.serial).unwrap_or_default()
        ),
        HandshakeOutcome::SanNotAllowed => {
            let sans = identity::from_leaf(&chain[0])
                .map(|id| id.san_values().map(str::to_owned).collect::<Vec<_>>())
                .unwrap_or_default();
            let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
            let allowed: Vec<&str> = server
                .config
                .allowed_sans
                .iter()
                .map(String::as_str)
                .collect();
            format!(
                "none of its SANs ({}) is in allowed_sans ({})",
                quoted(&sans),
                quoted(&allowed)
            )
        }
        HandshakeOutcome::PinNotAllowed => match identity::from_leaf(&chain[0]) {
            Ok(id) => {
                use base64::Engine as _;
                format!(
                    "its key (SPKI SHA-256 {}) is not in allowed_spki_sha256 ({} pins) and the certificate (SHA-256 {}) is not in allowed_cert_sha256 ({} pins)",
                    base64::engine::general_purpose::STANDARD.encode(id.spki_sha256),
                    server.config.allowed_spki_sha256.len(),
                    id.cert_sha256_hex(),
                    server.config.allowed_cert_sha256.len()
                )
            }
            Err(e) => format!("it cannot be parsed, so no pin can match: {e}"),
        },
        _ => invalid(err, &chain[0]),
    }
}

/// Why webpki found the certificate invalid.
fn invalid(err: &Error, leaf: &CertificateDer<'_>) -> String {
    if let Ok((_, cert)) = X509Certificate::from_der(leaf)
        && cert.version() != X509Version::V3
    {
        return format!(
            "it is an X.509 version {} certificate; only version 3 is accepted",
            cert.version().0 + 1
        );
    }
    match err {
        Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ) => "its extended key usage does not allow TLS client authentication (clientAuth)".into(),
        Error::InvalidCertificate(CertificateError::BadSignature) => {
            "its signature does not verify with the key of the CA it names as issuer".into()
        }
        Error::InvalidCertificate(CertificateError::BadEncoding) => {
            "it is not a well-formed certificate".into()
        }
        other => format!("it is not acceptable: {other}"),
    }
}

fn quoted(items: &[&str]) -> String {
    match items.is_empty() {
        true => "none".to_owned(),
        false => items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A duration in seconds, roughly, for a person.
fn ago(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}

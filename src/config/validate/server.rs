//! `[[server]]`: host patterns, client authentication, credentials (files or a
//! `credential_dir`), `allowed_sans` and the certificate pins; hosts served twice.

use std::path::Path;

use super::Errors;
use crate::config::raw::*;
use crate::config::*;
use crate::host::HostPattern;

pub(super) fn validate(
    raw: RawServer,
    at: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<ServerConfig> {
    let RawServer {
        hosts,
        cert,
        key,
        credential_dir,
        client_auth,
        client_ca,
        client_crl,
        allowed_sans,
        allowed_spki_sha256,
        allowed_cert_sha256,
    } = raw;
    let before = errs.0.len();
    let patterns = host_patterns(&hosts, at, errs);
    let client_auth = client_auth_mode(client_auth.as_deref(), at, errs);
    let files = CredentialFields {
        credential_dir,
        cert,
        key,
        client_ca,
        client_crl,
    };
    let credentials = credentials(files, client_auth, at, base, errs)?;
    if client_auth == ClientAuth::None {
        let pins = [
            (allowed_sans.is_some(), "allowed_sans"),
            (allowed_spki_sha256.is_some(), "allowed_spki_sha256"),
            (allowed_cert_sha256.is_some(), "allowed_cert_sha256"),
        ];
        unused_without_client_auth(&credentials, pins, at, errs);
    }
    let allowed_sans = allowed_sans.unwrap_or_default();
    for (i, s) in allowed_sans.iter().enumerate() {
        if s.is_empty() {
            errs.push(format!("{at}.allowed_sans[{i}]"), "must not be empty");
        }
    }
    let spki = digests(
        allowed_spki_sha256,
        &format!("{at}.allowed_spki_sha256"),
        decode_base64,
        errs,
    );
    let certs = digests(
        allowed_cert_sha256,
        &format!("{at}.allowed_cert_sha256"),
        decode_hex,
        errs,
    );
    if errs.0.len() > before {
        return None;
    }
    Some(ServerConfig {
        names: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        hosts: patterns,
        credentials,
        client_auth,
        allowed_sans,
        allowed_spki_sha256: spki,
        allowed_cert_sha256: certs,
    })
}

/// `hosts`: at least one, each a valid pattern.
fn host_patterns(hosts: &[String], at: &str, errs: &mut Errors) -> Vec<HostPattern> {
    if hosts.is_empty() {
        errs.push(
            format!("{at}.hosts"),
            "at least one host is required (\"*\" takes any SNI)",
        );
    }
    let mut patterns = Vec::with_capacity(hosts.len());
    for (i, h) in hosts.iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) => patterns.push(p),
            Err(msg) => errs.push(format!("{at}.hosts[{i}]"), format!("{h:?}: {msg}")),
        }
    }
    patterns
}

fn client_auth_mode(value: Option<&str>, at: &str, errs: &mut Errors) -> ClientAuth {
    match value {
        None | Some("required") => ClientAuth::Required,
        Some("optional") => ClientAuth::Optional,
        Some("none") => ClientAuth::None,
        Some(other) => {
            errs.push(
                format!("{at}.client_auth"),
                format!("{other:?}: expected \"none\", \"optional\" or \"required\""),
            );
            ClientAuth::Required
        }
    }
}

/// The credential keys of a `[[server]]`, read together.
struct CredentialFields {
    credential_dir: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    client_crl: Option<Vec<String>>,
}

/// `cert` + `key` (+ `client_ca`, `client_crl`), or a `credential_dir`, relative to `base`.
fn credentials(
    fields: CredentialFields,
    client_auth: ClientAuth,
    at: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<Credentials> {
    let CredentialFields {
        credential_dir,
        cert,
        key,
        client_ca,
        client_crl,
    } = fields;
    let credentials = match (credential_dir, cert, key) {
        (Some(dir), None, None) => Credentials::Dir {
            dir: base.join(dir),
            client_ca: client_ca.map(|p| base.join(p)),
            client_crl: client_crl
                .unwrap_or_default()
                .into_iter()
                .map(|p| base.join(p))
                .collect(),
        },
        (Some(_), _, _) => {
            errs.push(
                format!("{at}.credential_dir"),
                "credential_dir replaces cert and key: set one or the other",
            );
            return None;
        }
        (None, Some(cert), Some(key)) => {
            let client_ca = client_ca.map(|p| base.join(p));
            if client_auth != ClientAuth::None && client_ca.is_none() {
                errs.push(
                    format!("{at}.client_ca"),
                    "required when client_auth is \"optional\" or \"required\" (the CA bundle that signs client certificates)",
                );
            }
            Credentials::Files {
                cert: base.join(cert),
                key: base.join(key),
                client_ca,
                client_crl: client_crl
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| base.join(p))
                    .collect(),
            }
        }
        (None, cert, _) => {
            let missing = if cert.is_none() { "cert" } else { "key" };
            errs.push(
                format!("{at}.{missing}"),
                "required (or set credential_dir)",
            );
            return None;
        }
    };
    Some(credentials)
}

/// With `client_auth = "none"`, every client-certificate key is an error: it would do nothing.
fn unused_without_client_auth(
    credentials: &Credentials,
    pins: [(bool, &str); 3],
    at: &str,
    errs: &mut Errors,
) {
    let (ca, crl) = match &credentials {
        Credentials::Files {
            client_ca,
            client_crl,
            ..
        }
        | Credentials::Dir {
            client_ca,
            client_crl,
            ..
        } => (client_ca.is_some(), !client_crl.is_empty()),
    };
    for (set, name) in [(ca, "client_ca"), (crl, "client_crl")]
        .into_iter()
        .chain(pins)
    {
        if set {
            errs.push(
                format!("{at}.{name}"),
                "has no effect with client_auth = \"none\": remove it or set client_auth",
            );
        }
    }
}

fn digests(
    list: Option<Vec<String>>,
    at: &str,
    decode: fn(&str) -> Option<Vec<u8>>,
    errs: &mut Errors,
) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for (i, text) in list.unwrap_or_default().iter().enumerate() {
        match decode(text).and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()) {
            Some(d) => out.push(d),
            None => errs.push(
                format!("{at}[{i}]"),
                format!("{text:?}: not a SHA-256 digest"),
            ),
        }
    }
    out
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// Hex with or without colons, any case (Istio's verifyCertificateHash).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

pub(super) fn check_duplicate_hosts(servers: &[ServerConfig], errs: &mut Errors) {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (si, s) in servers.iter().enumerate() {
        for (hi, name) in s.names.iter().enumerate() {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name.as_str()) {
                errs.push(
                    format!("server[{si}].hosts[{hi}]"),
                    format!("{name:?} is already served by server[{first}]"),
                );
            } else {
                seen.push((name, si));
            }
        }
    }
}

//! The identity of a verified client certificate, extracted once per connection from the
//! leaf's DER by a pure function. Everything the policy engine, the XFCC header and the
//! access log need is here, precomputed, so no request re-parses the certificate.

use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// What a client certificate says about its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// URI SANs starting with `spiffe://`, without that prefix (`spiffe://test.client` → `test.client`).
    pub principals: Vec<String>,
    /// DNS SANs as written in the certificate.
    pub dns_sans: Vec<String>,
    /// All URI SANs, `spiffe://` ones included.
    pub uri_sans: Vec<String>,
    pub email_sans: Vec<String>,
    /// IP SANs in their textual form (`10.0.0.1`, `::1`).
    pub ip_sans: Vec<String>,
    /// The subject's first CN, if any.
    pub common_name: Option<String>,
    /// The subject as an RFC 2253 string (`CN=client,O=Example`).
    pub subject: String,
    /// SHA-256 of the leaf certificate's DER.
    pub cert_sha256: [u8; 32],
    /// SHA-256 of the leaf's SubjectPublicKeyInfo DER.
    pub spki_sha256: [u8; 32],
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot parse the client certificate: {0}")]
pub struct IdentityError(String);

impl PeerIdentity {
    /// Every SAN value as text, DNS first, then URI, email, IP.
    pub(crate) fn san_values(&self) -> impl Iterator<Item = &str> {
        self.dns_sans
            .iter()
            .chain(&self.uri_sans)
            .chain(&self.email_sans)
            .chain(&self.ip_sans)
            .map(String::as_str)
    }

    /// `cert_sha256` as lowercase hex.
    pub(crate) fn cert_sha256_hex(&self) -> String {
        hex(&self.cert_sha256)
    }
}

/// Parses a leaf certificate's DER into a [`PeerIdentity`].
pub fn from_leaf(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError(e.to_string()))?;
    let mut id = PeerIdentity {
        cert_sha256: Sha256::digest(der).into(),
        spki_sha256: Sha256::digest(cert.public_key().raw).into(),
        subject: rfc2253(cert.subject()),
        not_after: cert.validity().not_after.timestamp(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        ..PeerIdentity::default()
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => id.dns_sans.push((*d).to_owned()),
                GeneralName::URI(u) => {
                    if let Some(p) = u.strip_prefix("spiffe://") {
                        id.principals.push(p.to_owned());
                    }
                    id.uri_sans.push((*u).to_owned());
                }
                GeneralName::RFC822Name(e) => id.email_sans.push((*e).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        id.ip_sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(id)
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// RFC 2253: RDNs in reverse order, `,` between them, `+` inside a multi-valued RDN,
/// special characters escaped.
pub(crate) fn rfc2253(name: &X509Name<'_>) -> String {
    let forward: Vec<_> = name.iter().collect();
    let rdns: Vec<String> = forward
        .into_iter()
        .rev()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let key = oid_short_name(atv.attr_type());
                    let value = atv
                        .as_str()
                        .map(escape_rfc2253)
                        .unwrap_or_else(|_| format!("#{}", hex(atv.attr_value().data)));
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.join(",")
}

fn oid_short_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    match oid.to_id_string().as_str() {
        "2.5.4.3" => "CN".into(),
        "2.5.4.6" => "C".into(),
        "2.5.4.7" => "L".into(),
        "2.5.4.8" => "ST".into(),
        "2.5.4.10" => "O".into(),
        "2.5.4.11" => "OU".into(),
        "2.5.4.9" => "STREET".into(),
        "0.9.2342.19200300.100.1.25" => "DC".into(),
        "0.9.2342.19200300.100.1.1" => "UID".into(),
        other => other.to_owned(),
    }
}

fn escape_rfc2253(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

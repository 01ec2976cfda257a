//! The identity of a verified client certificate, extracted from the leaf's DER by a pure
//! function, once per client while it has connections open ([`Clients`]). Everything the
//! policy engine, the XFCC header and the access log need is here, precomputed, so no request
//! re-parses the certificate.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustls::pki_types::CertificateDer;
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

/// A verified client as its connections hold it: its identity and its certificate chain as
/// presented, leaf first.
pub(crate) type Client = (Arc<PeerIdentity>, Arc<[CertificateDer<'static>]>);

/// The clients with a connection open, by their exact certificate chain, so that one client's
/// connections share its identity and one copy of its chain: a handshake from a client seen
/// before parses nothing and copies nothing. Nothing here is kept alive by the cache (it holds
/// weak references), a chain is matched byte for byte, and the map is bounded.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    /// By a hash of the chain; a collision only costs a parse.
    seen: Mutex<HashMap<u64, Seen>>,
    hasher: std::collections::hash_map::RandomState,
}

/// A client's identity and chain, not kept alive by the cache.
type Seen = (Weak<PeerIdentity>, Weak<[CertificateDer<'static>]>);

/// Entries kept before the dead ones are swept (and, if all are alive, the map emptied).
const CLIENTS_MAX: usize = 1024;

impl Clients {
    /// The identity and shared chain of the client that presented `chain` (leaf first,
    /// already verified).
    pub(crate) fn client(
        &self,
        chain: &[CertificateDer<'static>],
    ) -> Result<Client, IdentityError> {
        let leaf = chain
            .first()
            .ok_or_else(|| IdentityError("no certificate".into()))?;
        let hash = self.hasher.hash_one(chain);
        let seen = |seen: &HashMap<u64, Seen>| {
            let (identity, known) = seen.get(&hash)?;
            let known = known.upgrade().filter(|known| **known == *chain)?;
            Some((identity.upgrade()?, known))
        };
        if let Some(client) = seen(&self.lock()) {
            return Ok(client);
        }
        let identity = Arc::new(from_leaf(leaf)?);
        let chain: Arc<[CertificateDer<'static>]> = Arc::from(chain);
        let mut map = self.lock();
        if map.len() >= CLIENTS_MAX {
            map.retain(|_, (identity, _)| identity.strong_count() > 0);
            if map.len() >= CLIENTS_MAX {
                map.clear();
            }
        }
        map.insert(hash, (Arc::downgrade(&identity), Arc::downgrade(&chain)));
        Ok((identity, chain))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Seen>> {
        // Every update leaves the map whole, so a panic elsewhere cannot leave it torn.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
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

#[cfg(test)]
mod clients_tests {
    use super::*;

    /// A self-signed certificate with one URI SAN (the cache does not verify chains).
    fn leaf(uri: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec())
    }

    #[test]
    fn a_clients_connections_share_its_identity_and_chain() {
        let (a, b) = (leaf("spiffe://a"), leaf("spiffe://b"));
        let clients = Clients::default();
        let first = clients.client(std::slice::from_ref(&a)).unwrap();
        let again = clients.client(std::slice::from_ref(&a)).unwrap();
        assert!(Arc::ptr_eq(&first.0, &again.0) && Arc::ptr_eq(&first.1, &again.1));
        assert_eq!(first.0.principals, vec!["a"]);

        // Another client, and the same leaf with another chain, are other entries.
        let other = clients.client(std::slice::from_ref(&b)).unwrap();
        assert_eq!(other.0.principals, vec!["b"]);
        let longer = clients.client(&[a.clone(), b.clone()]).unwrap();
        assert!(!Arc::ptr_eq(&longer.1, &first.1));
        assert_eq!(&longer.1[..], &[a.clone(), b.clone()][..]);
        assert_eq!(longer.0.principals, vec!["a"]);
        // The chain [a] is still known (its slot was not the longer chain's).
        let third = clients.client(std::slice::from_ref(&a)).unwrap();
        assert!(Arc::ptr_eq(&first.0, &third.0));
    }

    #[test]
    fn the_cache_keeps_nothing_alive_and_stays_bounded() {
        let a = leaf("spiffe://a");
        let clients = Clients::default();
        let (identity, chain) = clients.client(std::slice::from_ref(&a)).unwrap();
        let weak = Arc::downgrade(&identity);
        drop((identity, chain));
        assert!(
            weak.upgrade().is_none(),
            "the cache holds no strong reference"
        );
        let fresh = clients.client(std::slice::from_ref(&a)).unwrap();
        assert_eq!(Arc::strong_count(&fresh.0), 1);

        // Distinct live clients beyond the bound: the map never grows past it.
        let der = a.as_ref();
        let mut live = Vec::new();
        for i in 0..CLIENTS_MAX + 10 {
            // The same leaf followed by a distinct second certificate: a distinct chain.
            let extra = CertificateDer::from(i.to_be_bytes().to_vec());
            live.push(
                clients
                    .client(&[CertificateDer::from(der.to_vec()), extra])
                    .unwrap(),
            );
            assert!(clients.lock().len() <= CLIENTS_MAX);
        }
        assert!(
            clients
                .client(&[CertificateDer::from(vec![0x30, 0x00])])
                .is_err()
        );
    }
}

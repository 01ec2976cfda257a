//! A development PKI on rcgen: CAs, server and client leaves with every SAN kind, chosen key
//! types and validity, and CRLs. `gatehouse cert`, `gatehouse demo` and the test suite all
//! use this module, so the certificates users make are the ones the tests exercise.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

pub(crate) use rcgen::Error;

/// Key algorithms `gatehouse cert --key-type` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
    Rsa4096,
}

impl KeyType {
    pub(crate) const NAMES: [(&'static str, Self); 5] = [
        ("ecdsa-p256", Self::EcdsaP256),
        ("ecdsa-p384", Self::EcdsaP384),
        ("ed25519", Self::Ed25519),
        ("rsa2048", Self::Rsa2048),
        ("rsa4096", Self::Rsa4096),
    ];

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }

    fn generate(self) -> Result<KeyPair, Error> {
        match self {
            Self::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Self::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Self::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            Self::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            Self::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
            }
        }
    }
}

/// What a leaf certificate is for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// No EKU extension at all (any usage, as webpki reads it).
    Any,
}

/// A leaf to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub usage: Usage,
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub key_type: KeyType,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: Option<u64>,
}

impl LeafSpec {
    /// A leaf valid from an hour ago for `days` days.
    pub fn new(usage: Usage, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            usage,
            common_name: None,
            dns: Vec::new(),
            ips: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            key_type: KeyType::default(),
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
            serial: None,
        }
    }

    pub fn server(dns: &[&str]) -> Self {
        let mut s = Self::new(Usage::Server, 365);
        s.dns = dns.iter().map(|d| (*d).to_owned()).collect();
        s.common_name = dns.first().map(|d| (*d).to_owned());
        s
    }

    pub fn client_uri(uri: &str) -> Self {
        let mut s = Self::new(Usage::Client, 365);
        s.uris = vec![uri.to_owned()];
        s.common_name = Some("client".to_owned());
        s
    }
}

/// A certificate authority that can issue leaves and CRLs. A leaf never outlives it: its
/// `notAfter` is clamped to the CA's (as step-ca and cert-manager do).
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA certificate's `notAfter`.
    pub not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

/// An issued leaf.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The leaf alone.
    pub cert_pem: String,
    /// Leaf then CA: what a server or client presents.
    pub chain_pem: String,
    pub key_pem: String,
    /// The private key as PKCS#8 DER.
    pub key_der: Vec<u8>,
    pub der: Vec<u8>,
    /// The CA certificate's DER (the rest of the chain).
    pub ca_der: Vec<u8>,
    pub serial: u64,
    /// The leaf's `notAfter`: the one asked for, or the CA's when that came first.
    pub not_after: OffsetDateTime,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn random_serial() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // Positive and non-zero, as RFC 5280 asks.
    (RandomState::new().hash_one(OffsetDateTime::now_utc().unix_timestamp_nanos()) >> 2) | 1
}

impl Ca {
    pub fn new(common_name: &str, key_type: KeyType, days: i64) -> Result<Self, Error> {
        let key = key_type.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days);
        params.serial_number = Some(SerialNumber::from(random_serial()));
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: params.not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA written by `gatehouse cert ca` (or any PEM CA certificate and its key).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let not_after = {
            use rustls_pki_types::pem::PemObject;
            let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
                .map_err(|_| Error::CouldNotParseCertificate)?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|_| Error::CouldNotParseCertificate)?;
            cert.validity().not_after.to_datetime()
        };
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            not_after,
            issuer,
        })
    }

    pub fn issue(&self, spec: &LeafSpec) -> Result<Leaf, Error> {
        let key = spec.key_type.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = spec.common_name.as_deref().map(name).unwrap_or_default();
        let mut sans = Vec::new();
        for d in &spec.dns {
            sans.push(SanType::DnsName(d.clone().try_into()?));
        }
        for ip in &spec.ips {
            sans.push(SanType::IpAddress(*ip));
        }
        for u in &spec.uris {
            sans.push(SanType::URI(u.clone().try_into()?));
        }
        for e in &spec.emails {
            sans.push(SanType::Rfc822Name(e.clone().try_into()?));
        }
        params.subject_alt_names = sans;
        // keyEncipherment only where the key can encipher (RSA); RFC 5480 and RFC 8410 rule
        // it out for ECDSA and Ed25519 keys.
        params.key_usages = match spec.key_type {
            KeyType::Rsa2048 | KeyType::Rsa4096 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Ed25519 => {
                vec![KeyUsagePurpose::DigitalSignature]
            }
        };
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Any => Vec::new(),
        };
        params.not_before = spec.not_before;
        params.not_after = spec.not_after.min(self.not_after);
        let serial = spec.serial.unwrap_or_else(random_serial);
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_pem = cert.pem();
        Ok(Leaf {
            chain_pem: format!("{cert_pem}{}", self.cert_pem),
            cert_pem,
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            der: cert.der().to_vec(),
            ca_der: self.ca_der()?,
            serial,
            not_after: params.not_after,
        })
    }

    fn ca_der(&self) -> Result<Vec<u8>, Error> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map(|c| c.to_vec())
            .map_err(|_| Error::CouldNotParseCertificate)
    }

    /// A CRL revoking `serials`, valid for a week.
    pub fn crl(&self, serials: &[u64]) -> Result<String, Error> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer)?.pem()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity;

    #[test]
    fn leaves_carry_their_sans_and_chain() {
        let ca = Ca::new("Test CA", KeyType::EcdsaP256, 30).unwrap();
        let mut spec = LeafSpec::client_uri("spiffe://test.client");
        spec.dns = vec!["Client.Example.com".into()];
        spec.emails = vec!["a@example.com".into()];
        spec.ips = vec!["10.0.0.1".parse().unwrap()];
        let leaf = ca.issue(&spec).unwrap();
        let id = identity::from_leaf(&leaf.der).unwrap();
        assert_eq!(id.principals, vec!["test.client"]);
        assert_eq!(id.dns_sans, vec!["Client.Example.com"]);
        assert_eq!(id.email_sans, vec!["a@example.com"]);
        assert_eq!(id.ip_sans, vec!["10.0.0.1"]);
        assert_eq!(id.common_name.as_deref(), Some("client"));
        assert_eq!(id.subject, "CN=client");
        assert_eq!(leaf.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        let again = Ca::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        assert!(again.issue(&LeafSpec::server(&["a.test"])).is_ok());
        assert!(ca.crl(&[leaf.serial]).unwrap().contains("BEGIN X509 CRL"));
    }
}

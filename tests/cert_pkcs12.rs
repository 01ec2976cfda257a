//! `gatehouse cert client --p12-password` (SPEC §1) also writes a PKCS#12 file: opened with
//! p12-keystore (and the system openssl too, when there is one), it holds the key and chain
//! of the PEM files, opens with its password only, and uses OpenSSL 3's default algorithms.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::binary::{gh, s};
use common::x509::*;
use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// DER encodings of the algorithm OIDs OpenSSL 3 writes by default (SPEC §1: AES-256-CBC +
/// PBKDF2), which sit in the clear in the PFX.
const PBES2: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 13];
const PBKDF2: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 12];
const AES_256_CBC: &[u8] = &[6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 1, 42];
const HMAC_SHA256: &[u8] = &[6, 8, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 2, 9];
/// The prefix of the legacy PKCS#12 PBE OIDs (1.2.840.113549.1.12.1.x: RC2, RC4, 3DES).
const LEGACY_PBE: &[u8] = &[6, 10, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 12, 1];

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// SPEC §1: `cert client --p12-password PW` also writes `<name>.p12`, mode 0600, holding the
/// key and the chain of the PEM files, readable with that password only, encrypted with
/// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) as OpenSSL 3 does.
#[test]
fn cert_client_with_p12_password_writes_a_pkcs12_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    gh(&format!("cert ca --out {d}")).ok();
    for key_type in ["ecdsa-p256", "ed25519", "rsa2048"] {
        let name = format!("client-{key_type}");
        gh(&format!(
            "cert client --ca {d} --out {d} --name {name} --key-type {key_type} \
             --uri spiffe://test.client --p12-password s3cret"
        ))
        .ok();
        let p12 = dir.path().join(format!("{name}.p12"));
        assert!(p12.is_file(), "{name}.p12 missing");
        assert_eq!(mode(&p12), 0o600, "{name}.p12 mode");
        let der = std::fs::read(&p12).unwrap();

        // In process: the right password gives back the key and the chain of the PEM files.
        let store = KeyStore::from_pkcs12(&der, "s3cret", Pkcs12ImportPolicy::Strict)
            .unwrap_or_else(|e| panic!("{name}.p12 with its password: {e}"));
        let (alias, chain) = store
            .private_key_chain()
            .unwrap_or_else(|| panic!("{name}.p12 holds no key with a chain"));
        assert_eq!(alias, name, "the friendly name is the --name");
        let key = PrivateKeyDer::from_pem_file(dir.path().join(format!("{name}.key"))).unwrap();
        assert_eq!(
            chain.key().as_der(),
            key.secret_der(),
            "{name}.p12: not the key of {name}.key"
        );
        let pem_chain = read_chain(&dir.path().join(format!("{name}.crt")));
        let p12_chain: Vec<&[u8]> = chain.certs().iter().map(|c| c.as_der()).collect();
        let pem_chain: Vec<&[u8]> = pem_chain.iter().map(|c| c.as_ref()).collect();
        assert_eq!(
            p12_chain, pem_chain,
            "{name}.p12: not the chain of {name}.crt"
        );

        // A wrong password is an error, not garbage.
        for wrong in ["s3cret ", "S3cret", ""] {
            assert!(
                KeyStore::from_pkcs12(&der, wrong, Pkcs12ImportPolicy::Relaxed).is_err(),
                "{name}.p12 opened with {wrong:?}"
            );
        }

        // The algorithms, read from the DER.
        for (what, oid) in [
            ("PBES2", PBES2),
            ("PBKDF2", PBKDF2),
            ("AES-256-CBC", AES_256_CBC),
            ("HMAC-SHA256", HMAC_SHA256),
        ] {
            assert!(has(&der, oid), "{name}.p12 does not use {what}");
        }
        assert!(
            !has(&der, LEGACY_PBE),
            "{name}.p12 uses a legacy PKCS#12 PBE"
        );

        openssl_reads_p12(&p12, pem_chain[0]);
    }
}

/// The system openssl (when installed; CI does not rely on it) opens the file with the
/// password, reports PBKDF2 + AES-256-CBC, extracts the leaf, and refuses a wrong password.
fn openssl_reads_p12(p12: &Path, leaf_der: &[u8]) {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .arg("pkcs12")
            .args(args)
            .arg("-in")
            .arg(p12)
            .stdin(Stdio::null())
            .output()
    };
    let Ok(info) = openssl(&["-info", "-noout", "-passin", "pass:s3cret"]) else {
        eprintln!("no openssl: skipping the openssl cross-check");
        return;
    };
    let text =
        String::from_utf8_lossy(&info.stderr).into_owned() + &String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "openssl pkcs12 failed: {text}");
    assert!(
        text.contains("PBKDF2") && text.contains("AES-256-CBC"),
        "{text}"
    );
    let certs = openssl(&["-nokeys", "-clcerts", "-passin", "pass:s3cret"]).unwrap();
    assert!(certs.status.success());
    let leaf = CertificateDer::pem_slice_iter(&certs.stdout)
        .next()
        .expect("openssl printed the leaf")
        .unwrap();
    assert_eq!(leaf.as_ref(), leaf_der, "openssl: the leaf differs");
    let wrong = openssl(&["-info", "-noout", "-passin", "pass:wrong"]).unwrap();
    assert!(
        !wrong.status.success(),
        "openssl opened it with a wrong password"
    );
}

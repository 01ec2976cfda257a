//! `gatehouse cert ca|server|client`: the dev PKI written to disk. Keys get mode 0600;
//! existing files are never overwritten without `--force` (exit 1 naming the file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{CertCommand, CertCommon};
use crate::dev::pki::{Ca, LeafSpec, Usage};

/// Runs one `cert` subcommand; prints the files written.
pub fn run(cmd: &CertCommand) -> ExitCode {
    match write(cmd) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse cert: {e}");
            ExitCode::from(1)
        }
    }
}

fn write(cmd: &CertCommand) -> Result<Vec<PathBuf>, String> {
    match cmd {
        CertCommand::Ca { cn, common } => {
            let targets = targets(common, &["ca.crt", "ca.key"])?;
            let ca = Ca::new(cn, common.key_type, i64::from(common.days.unwrap_or(3650)))
                .map_err(|e| e.to_string())?;
            save(&targets, &[&ca.cert_pem, &ca.key_pem])
        }
        CertCommand::Server {
            ca,
            name,
            dns,
            ip,
            common,
        } => {
            let mut spec = LeafSpec::new(Usage::Server, i64::from(common.days.unwrap_or(365)));
            spec.dns.clone_from(dns);
            spec.ips.clone_from(ip);
            spec.common_name = dns.first().cloned();
            issue(ca, name, spec, common, None)
        }
        CertCommand::Client {
            ca,
            name,
            uri,
            dns,
            email,
            cn,
            p12_password,
            common,
        } => {
            let mut spec = LeafSpec::new(Usage::Client, i64::from(common.days.unwrap_or(365)));
            spec.uris.clone_from(uri);
            spec.dns.clone_from(dns);
            spec.emails.clone_from(email);
            spec.common_name = Some(cn.clone().unwrap_or_else(|| name.clone()));
            issue(ca, name, spec, common, p12_password.as_deref())
        }
    }
}

fn issue(
    ca_dir: &Path,
    name: &str,
    mut spec: LeafSpec,
    common: &CertCommon,
    p12_password: Option<&str>,
) -> Result<Vec<PathBuf>, String> {
    spec.key_type = common.key_type;
    let read = |f: &str| {
        let p = ca_dir.join(f);
        std::fs::read_to_string(&p).map_err(|e| {
            format!(
                "{}: {e} (make a CA first: gatehouse cert ca --out {})",
                p.display(),
                ca_dir.display()
            )
        })
    };
    let ca = Ca::from_pem(&read("ca.crt")?, &read("ca.key")?)
        .map_err(|e| format!("{}: {e}", ca_dir.display()))?;
    let mut names = vec![format!("{name}.crt"), format!("{name}.key")];
    if p12_password.is_some() {
        names.push(format!("{name}.p12"));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let targets = targets(common, &names)?;
    let leaf = ca.issue(&spec).map_err(|e| e.to_string())?;
    if leaf.not_after < spec.not_after {
        eprintln!(
            "gatehouse cert: {name}: valid until {} only, when its CA expires (a certificate cannot outlive its issuer)",
            leaf.not_after.date()
        );
    }
    let mut written = save(&targets[..2], &[&leaf.chain_pem, &leaf.key_pem])?;
    if let (Some(password), Some(path)) = (p12_password, targets.get(2)) {
        let p12 = pkcs12(&leaf, name, password)?;
        crate::dev::write_private(path, &p12)?;
        written.push(path.clone());
    }
    Ok(written)
}

/// The output paths, refusing existing ones unless `--force`.
fn targets(common: &CertCommon, names: &[&str]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(&common.out).map_err(|e| format!("{}: {e}", common.out.display()))?;
    let paths: Vec<PathBuf> = names.iter().map(|n| common.out.join(n)).collect();
    if !common.force
        && let Some(existing) = paths.iter().find(|p| p.exists())
    {
        return Err(format!(
            "{} exists; not overwriting it (use --force)",
            existing.display()
        ));
    }
    Ok(paths)
}

/// Writes each file; `.key` files get mode 0600 from the start.
fn save(paths: &[PathBuf], contents: &[&String]) -> Result<Vec<PathBuf>, String> {
    for (path, text) in paths.iter().zip(contents) {
        crate::dev::write_pem(path, text, path.extension().is_some_and(|e| e == "key"))?;
    }
    Ok(paths.to_vec())
}

/// A PKCS#12 file with the key and the chain, encrypted as OpenSSL 3 does by default
/// (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC, HMAC-SHA256 MAC).
fn pkcs12(leaf: &crate::dev::pki::Leaf, name: &str, password: &str) -> Result<Vec<u8>, String> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    use sha2::Digest;
    let err = |e: p12_keystore::error::Error| format!("PKCS#12: {e}");
    let key = PrivateKey::from_der(&leaf.key_der).map_err(err)?;
    let certs = [
        Certificate::from_der(&leaf.der).map_err(err)?,
        Certificate::from_der(&leaf.ca_der).map_err(err)?,
    ];
    let local_key_id = sha2::Sha256::digest(&leaf.der).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    store.writer(password).write().map_err(err)
}

//! `gatehouse cert ca|server|client`: the dev PKI written to disk. Keys get mode 0600;
//! existing files are never overwritten without `--force` (exit 1 naming the file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::pki::{Ca, LeafSpec, Usage};
use crate::cli::{CertCommand, CertCommon};

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
            issue(ca, name, spec, common)
        }
        CertCommand::Client {
            ca,
            name,
            uri,
            dns,
            email,
            cn,
            common,
        } => {
            let mut spec = LeafSpec::new(Usage::Client, i64::from(common.days.unwrap_or(365)));
            spec.uris.clone_from(uri);
            spec.dns.clone_from(dns);
            spec.emails.clone_from(email);
            spec.common_name = Some(cn.clone().unwrap_or_else(|| name.clone()));
            issue(ca, name, spec, common)
        }
    }
}

fn issue(
    ca_dir: &Path,
    name: &str,
    mut spec: LeafSpec,
    common: &CertCommon,
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
    let targets = targets(common, &[&format!("{name}.crt"), &format!("{name}.key")])?;
    let leaf = ca.issue(&spec).map_err(|e| e.to_string())?;
    save(&targets, &[&leaf.chain_pem, &leaf.key_pem])
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
        super::write_pem(path, text, path.extension().is_some_and(|e| e == "key"))?;
    }
    Ok(paths.to_vec())
}

//! Developer tools off the request path: the dev PKI (`gatehouse cert`), the echo upstream
//! (`gatehouse echo`) and the quickstart (`gatehouse demo`).

pub mod cert_cmd;
pub mod demo;
pub mod echo;
pub mod pki;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes a PEM file; private keys are created with mode 0600 (never briefly world-readable).
pub fn write_pem(path: &Path, text: &str, private: bool) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

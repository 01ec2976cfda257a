//! Developer tools off the request path: the dev PKI behind `gatehouse cert` and
//! `gatehouse demo` (and the test PKI), and the echo upstream of `gatehouse echo`.

pub mod echo;
pub mod pki;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes a PEM file; private keys get mode 0600 (created so, and set so when overwritten).
pub(crate) fn write_pem(path: &Path, text: &str, private: bool) -> Result<(), String> {
    write_mode(path, text.as_bytes(), if private { 0o600 } else { 0o644 })
}

/// Writes secret bytes (a PKCS#12 file) with mode 0600.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_mode(path, bytes, 0o600)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(at)?;
    // `mode` only applies when the file is created: an existing file keeps its bits otherwise.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(at)?;
    f.write_all(bytes).map_err(at)
}

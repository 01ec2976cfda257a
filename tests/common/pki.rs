//! The dev PKI of a test: a temp dir holding PEM files, with a CA to issue from.

use std::path::{Path, PathBuf};

use gatehouse::dev::pki::{Ca, KeyType, Leaf, LeafSpec};

/// A temp dir holding PEM files, with a CA to issue from.
pub struct TestPki {
    pub ca: Ca,
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> Self {
        Self::with_ca(Ca::new("Test CA", KeyType::EcdsaP256, 30).unwrap())
    }

    pub fn with_ca(ca: Ca) -> Self {
        let pki = Self {
            ca,
            dir: tempfile::tempdir().unwrap(),
        };
        pki.write("ca.crt", &pki.ca.cert_pem);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Issues a leaf and writes `<name>.crt` (chain) and `<name>.key`.
    pub fn issue(&self, name: &str, spec: &LeafSpec) -> Leaf {
        let leaf = self.ca.issue(spec).unwrap();
        self.write(&format!("{name}.crt"), &leaf.chain_pem);
        self.write(&format!("{name}.key"), &leaf.key_pem);
        leaf
    }

    pub fn server(&self, name: &str, dns: &[&str]) -> Leaf {
        self.issue(name, &LeafSpec::server(dns))
    }

    pub fn client(&self, uri: &str) -> Leaf {
        self.issue("client", &LeafSpec::client_uri(uri))
    }
}

/// Writes `text` to `path` the safe way: temp file in the same directory, then rename.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

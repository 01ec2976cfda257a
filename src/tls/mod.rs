//! TLS material and the client-certificate checks, built at load time: [`credentials`] reads
//! the server's key and chain, the client CAs and CRLs; [`verifier`] is the client-certificate
//! verifier every handshake, resumed session and open connection goes through; [`sessions`]
//! is the resumption cache. The handshake itself runs in [`crate::conn::handshake`].

pub mod credentials;
pub(crate) mod sessions;
pub(crate) mod verifier;

pub(crate) use verifier::HandshakeOutcome;

//! Developer tools off the request path: the dev PKI and the echo upstream.

pub mod cert_cmd;
pub mod echo;
pub mod pki;

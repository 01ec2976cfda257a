//! The request as the decisions see it: [`ConnInfo`], fixed for a connection, and
//! [`RequestView`], borrowed per request, plus [`normalize`], the path pipeline they
//! run on. Plain data and pure functions, no I/O: the bottom layer that `authz`, `config`
//! and `http` build on. `ConnInfo` is made once per connection by `conn::handshake`.

pub mod normalize;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method};
use rustls_pki_types::CertificateDer;

use crate::identity::PeerIdentity;

/// What is known about a downstream connection once its TLS handshake is done.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address (from the socket, or from PROXY protocol).
    pub peer: SocketAddr,
    /// The port of the listener that accepted the connection.
    pub listener_port: u16,
    /// The SNI the client sent, lower-cased.
    pub sni: Option<String>,
    /// Index of the `[[server]]` chosen by SNI.
    pub server: usize,
    /// The verified client certificate's identity; `None` when no certificate was presented.
    pub identity: Option<Arc<PeerIdentity>>,
    /// The client's certificates as presented, leaf first (for RFC 9440 headers and for
    /// re-checking the connection after a reload); `None` without a certificate.
    pub chain: Option<Arc<[CertificateDer<'static>]>>,
}

/// One request as the policy engine and the router see it. Borrowed; building it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Host / :authority without the port, in the case the client sent (compare case-insensitively).
    pub host: Option<&'a str>,
    /// The normalized path, without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub conn: &'a ConnInfo,
}

//! gatehouse: a standalone mTLS ingress proxy.
//!
//! # The life of a request
//!
//! 1. [`server`] accepts a TCP connection (after taking a `max_connections` permit, within
//!    the caps [`limits`] fits into the open-file limit, and `max_connections_per_ip`).
//! 2. [`tls`] reads the ClientHello, picks the `[[server]]` by SNI ([`tls::sni`]) and finishes
//!    the handshake; [`tls::verifier`] checks the client certificate (chain, validity, CRL,
//!    `allowed_sans`, pins) and classifies failures (a resumed session is checked again);
//!    a refused handshake writes a rate-limited line ([`http::handshake_log`]), and
//!    [`verify`] runs the same checks on a certificate file.
//! 3. [`identity`] extracts the client's principals, SANs, CN and hashes once per connection.
//! 4. hyper serves HTTP/1.1 or HTTP/2, as ALPN chose, under the [`watchdog`] (head, idle and
//!    stream-idle timeouts); the connection's client is checked again after each reload and
//!    at its certificate's expiry. Each request goes
//!    through [`http::service`]: [`http::admission`] (host rules and SNI binding 400/421,
//!    underscores, header sanitizing, [`http::normalize`] 400/307) → [`authz::evaluate`]
//!    (403) → [`routing::select`] (404) → [`http::headers`] for this hop → [`http::forward`]
//!    to a pooled HTTP/1.1 upstream (502/503/504; a stalled or malformed client body
//!    408/400) → access log. An upgrade becomes an [`http::tunnel`].
//!
//! Configuration is read by [`config`] (raw TOML → validated types) and turned into a
//! [`runtime::Runtime`] (TLS configs, compiled policies and routes) by one loader shared by
//! `run`, `check` and `authz`, and published whole on reload ([`runtime::Published`]). The
//! plaintext listener ([`http::redirect`]) answers 301 to
//! https; [`admin`] serves health and certificate endpoints. [`dev`] holds the dev PKI and
//! the echo upstream used by tests and demos; [`bench`] is the mTLS load generator.

pub mod authz;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod conn;
pub mod dev;
pub mod host;
pub mod http;
pub mod identity;
pub mod log;
pub mod metrics;
pub mod reload;
pub mod request;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod upstream;

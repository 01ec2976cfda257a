//! gatehouse: a standalone mTLS ingress proxy.
//!
//! # The life of a request, one module per stage
//!
//! 1. [`server`] accepts a TCP connection on the HTTPS listener under `max_connections`
//!    (fitted into the open-file limit by [`conn::limits`], which also counts
//!    `max_connections_per_ip`).
//! 2. [`conn`] turns the socket into a verified TLS connection: a [`conn::proxy_protocol`]
//!    header when configured, then [`conn::handshake`], which picks the `[[server]]` by SNI
//!    ([`host::select`]) and runs its client-certificate verifier ([`tls::verifier`]: chain,
//!    validity, CRL, `allowed_sans`, pins). [`identity`] reads the client's principals, SANs
//!    and hashes once, into the connection's [`request::ConnInfo`]. A refused handshake
//!    writes a rate-limited line ([`access_log::handshake`]).
//! 3. hyper serves HTTP/1.1 or HTTP/2 under the [`conn::watchdog`] (head, idle and
//!    stream-idle timeouts; [`conn::head_scan`] watches HTTP/1 heads on the wire). The
//!    connection's client is checked again after each reload
//!    ([`runtime::Published::until_revoked`]), and the connection ends at its certificate's
//!    expiry (one timer, [`conn::watchdog::Activity::deadline`], keeps every deadline).
//! 4. [`http::service`] runs each request through its phases: [`http::admission`] (the Host
//!    rules of [`host`], SNI binding, underscores, header sanitizing, [`request::normalize`])
//!    → [`authz::evaluate`] over a [`request::RequestView`] → [`routing::select`] →
//!    [`http::headers`] for this hop → [`upstream`], the pooled HTTP/1.1 client → the
//!    response body, counted by [`http::logged`], which writes the [`access_log`] line when
//!    it ends. An upgrade becomes an [`http::tunnel`].
//!
//! # Around the request
//!
//! - [`config`] reads the TOML (raw serde types, then validation with field paths; the
//!   policies are compiled by [`authz`] during validation); [`runtime`] loads the TLS
//!   material and builds each server's rustls config and the routes, with one loader shared
//!   by `run`, `check`, `authz`, `verify` and [`reload`], which publishes new snapshots whole.
//! - [`tls::credentials`] reads keys, chains, CAs and CRLs; [`metrics`] holds the Prometheus
//!   families; [`server::admin`] serves `/metrics`, health and `/certs`; the plaintext
//!   listener answers with [`http::redirect`].
//! - [`commands`] is each CLI command ([`cli`] parses them); [`bench`](mod@bench) is the mTLS load
//!   generator; [`dev`] holds the dev PKI and the echo upstream used by demos and tests;
//!   [`import`] translates Istio and ingress-nginx YAML into a config.
//!
//! Dependencies point one way, from the bottom up: `host`, `identity`, `request` → `authz`
//! → `config` → `metrics`, `tls`, `upstream` → `runtime` → `conn`, `routing` →
//! `access_log` → `http` → `server`, `reload` → `dev`, `import` → `cli` → `bench` → `commands`.
//! `tests/structure.rs` checks that no module imports one above it, and that no two modules
//! import each other.

// The map above is for contributors: it names crate-private stages too (build the docs with
// `cargo doc --document-private-items`).
#![allow(rustdoc::private_intra_doc_links)]

// The request's stages, bottom up.
pub(crate) mod host;
pub mod identity;
pub mod request;

pub mod authz;
pub mod config;

pub mod metrics;
pub mod tls;
pub(crate) mod upstream;

pub mod runtime;

pub mod conn;
pub(crate) mod routing;

pub mod access_log;

pub(crate) mod http;

pub mod reload;
pub mod server;

// The tools around the proxy and the command line.
pub mod dev;
pub mod import;

pub mod cli;

pub mod bench;

pub mod commands;

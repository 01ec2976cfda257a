//! Test harness: a dev PKI in a temp dir, the echo upstream and the proxy in-process on
//! 127.0.0.1:0, and an mTLS client (tokio-rustls + hyper) with bounded timeouts. Each test
//! file includes it with `mod common;` and uses what it needs (hence `dead_code` allowed).
//!
//! - [`pki`]: the temp-dir PKI;
//! - [`proxy`]: the proxy, the echo upstream, config builders, metrics, the access log;
//! - [`client`]: the mTLS client, one request at a time, HTTP/1.1 or HTTP/2;
//! - [`raw_http`]: raw bytes over TLS and the one HTTP/1.1 response parser;
//! - [`edge`]: attacks on the listeners (timed closes, HTTP/2 preface bytes);
//! - [`tap`]: a proxy in front of a tapped echo (what was sent upstream, on the wire);
//! - [`upstream`]: scripted upstreams (stalls, closes, keep-alive headers);
//! - [`binary`]: the real binary as a child process;
//! - [`x509`]: reading certificates back and verifying them as a TLS peer would;
//! - [`policies`]: policy sets and requests for `authz::evaluate` without the proxy;
//! - [`example`]: the harness that runs `config/examples/*.toml` as their headers say.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

pub mod binary;
pub mod client;
pub mod edge;
pub mod example;
pub mod pki;
pub mod policies;
pub mod proxy;
pub mod raw_http;
pub mod tap;
pub mod upstream;
pub mod x509;

// What `use common::*` brings in; each test file uses some of it, so an unused part is no
// mistake (like `dead_code` above).
#[allow(unused_imports)]
pub use {client::*, pki::*, proxy::*, raw_http::*, tap::*};

/// The reference deny rule of SPEC §2.
pub const DENY_TEAPOT: &str = r#"
[[policy]]
name = "deny-test-client-teapot"
action = "deny"
  [[policy.rules]]
  from.principals = ["test.client"]
  to.paths = ["/status/418"]
"#;

/// Every network step of a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

//! The upstream side: HTTP/1.1 keep-alive connections (hyper's `client::conn::http1`), pooled
//! per upstream. The pools outlive config snapshots, so a reload never drops pooled
//! connections. Upstreams are `http://host:port` or `unix:/path`; failures are classified
//! ([`UpstreamError`]) into 502 / 503 / 504, and a target that is not origin-form into 400.
//!
//! The pool is ours rather than hyper-util's legacy client because the proxy's needs are
//! narrow: one upstream per pool (no URI keying), a connection goes back when its response
//! body has been read to the end (no task spawned per request to wait for readiness), and a
//! request that never left a stale pooled connection is retried once on another one.
//!
//! Each pool holds at most `upstream_max_connections` connections, busy and idle together
//! (SPEC "Edge limits"): every connection owns one of the pool's slots for its whole life.
//! A request that finds no idle connection and no free slot waits, first come first served,
//! for either a connection handed back or a slot freed by a closed connection; the route
//! timeout bounds the wait (then 504).

//!
//! [`pool`] holds the connections; [`exchange`] connects, sends and retries
//! ([`Pool::send`]), and its [`UpstreamBody`] hands a connection back when the response body
//! ends; [`stream`] is the socket; [`ClientBody`] is the client's request body on its way up,
//! and blames the client for a stalled or malformed one.

mod body;
mod client_body;
mod exchange;
mod h2c;
#[cfg(test)]
mod h2c_tests;
mod pool;
mod replay;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::{Either, Empty};

pub(crate) use self::body::UpstreamBody;
pub(crate) use self::client_body::{BodyOutcome, BodyState, ClientBody};
pub(crate) use self::pool::Pool;
use crate::config::{Upstream, UpstreamProtocol};

/// Why an exchange with an upstream failed, classified by the status the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// Refused or unreachable (503).
    Unavailable(String),
    /// No connection and response head within the route timeout (504).
    Timeout,
    /// Closed before a response, or an answer that is not HTTP/1.1 (502).
    BadResponse(String),
    /// The request target is not a valid origin-form: the client's fault (400).
    BadTarget,
}

/// A request body sent upstream: the client's, or none (a request without a body, or one
/// the proxy makes itself).
pub(crate) type RequestBody = Either<ClientBody, Empty<Bytes>>;

/// The pools of every upstream seen so far, shared by all snapshots.
pub(crate) struct Upstreams {
    pools: Mutex<HashMap<(Upstream, UpstreamProtocol), Arc<Pool>>>,
    /// `upstream_max_connections`: fixed at startup.
    max_per_upstream: usize,
}

/// A snapshot's handle on the pool of one of its routes, resolved on the route's first request.
pub(crate) type PoolSlot = OnceLock<Arc<Pool>>;

impl Upstreams {
    pub(crate) fn new(max_per_upstream: usize) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            max_per_upstream,
        }
    }

    /// The pool for `upstream`; `slot` caches it, so the registry is locked once per route
    /// and snapshot, not per request.
    pub(crate) fn pool<'a>(
        &self,
        slot: &'a PoolSlot,
        upstream: &Upstream,
        protocol: UpstreamProtocol,
    ) -> &'a Arc<Pool> {
        slot.get_or_init(|| {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .entry((upstream.clone(), protocol))
                .or_insert_with(|| Pool::new(upstream.clone(), protocol, self.max_per_upstream))
                .clone()
        })
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

//! What the HTTP service holds: [`Shared`], the proxy-wide state every connection uses, and
//! [`Conn`], one connection's facts fixed at the end of its handshake.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use super::headers;
use crate::access_log::AccessLog;
use crate::conn::limits::Lease;
use crate::metrics::{Metrics, Name, RouteSeries};
use crate::request::ConnInfo;
use crate::runtime::{Published, Runtime};
use crate::upstream::Upstreams;

/// Long-lived state shared by every connection: outlives any one config snapshot.
pub(crate) struct Shared {
    /// The current snapshot; policies and routes are read from it per request.
    pub runtime: Arc<Published>,
    pub upstreams: Upstreams,
    pub access_log: Option<AccessLog>,
    /// The refused-handshake lines (in the access log, rate-limited).
    pub refused: crate::access_log::handshake::RefusedHandshakes,
    pub metrics: Arc<Metrics>,
    /// The `route` label of requests that matched no route, and its series.
    pub unrouted: Name,
    pub unrouted_series: OnceLock<Arc<RouteSeries>>,
}

/// Per-connection state, fixed at the end of the handshake.
pub(crate) struct Conn {
    pub info: ConnInfo,
    /// The snapshot the connection's TLS was negotiated with (its server's hosts bind Host).
    pub tls_runtime: Arc<Runtime>,
    /// This hop's XFCC element, computed once when a client certificate was verified.
    pub xfcc: Option<HeaderValue>,
    /// The peer's address as an `x-forwarded-for` element.
    pub peer: HeaderValue,
    /// What the connection holds (permit, gauge, drain receiver) until it and its tunnel end.
    pub lease: Lease,
    /// RFC 9440 `client-cert` and `client-cert-chain`, made on first use.
    client_cert: OnceLock<(Option<HeaderValue>, Option<HeaderValue>)>,
}

impl Conn {
    pub(crate) fn new(info: ConnInfo, tls_runtime: Arc<Runtime>, lease: Lease) -> Self {
        let xfcc = info
            .identity
            .as_ref()
            .map(|id| headers::xfcc_element(&tls_runtime.servers[info.server].uri_sans, id))
            .and_then(|e| HeaderValue::from_str(&e).ok());
        Self {
            peer: headers::peer_value(info.peer.ip()),
            info,
            tls_runtime,
            xfcc,
            lease,
            client_cert: OnceLock::new(),
        }
    }

    /// This connection's RFC 9440 headers (both `None` without a client certificate).
    pub(crate) fn client_cert_headers(&self) -> &(Option<HeaderValue>, Option<HeaderValue>) {
        self.client_cert.get_or_init(|| match &self.info.chain {
            Some(chain) => headers::client_cert_values(chain),
            None => (None, None),
        })
    }
}

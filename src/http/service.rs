//! One request through its phases: SNI/Host binding → headers with underscores → normalize →
//! authorize → route → forward, then the access-log line when the response body is done.
//! The decisions are pure calls (`normalize`, `authz::evaluate`, `routing::select`,
//! `headers::*`); this file only sequences them and applies their results.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Incoming};
use tokio::time::Instant;

use super::admission::{self, Refused};
use super::connection::{Conn, Shared};
use super::logged::{LoggedBody, Pending};
use super::{ProxyBody, ProxyError, grpc, headers, text_response, tunnel};
use crate::access_log::{self, Record};
use crate::authz::{self, Decision, DenyReason, Verdict};
use crate::config::{ClientCertHeaders, ProxySettings, Upstream, UpstreamProtocol};
use crate::metrics::{AuthzLabels, DeniedLabels, Metrics, RouteSeries};
use crate::request::RequestView;
use crate::runtime::{Route, Runtime};
use crate::upstream::{BodyOutcome, BodyState, ClientBody};
use crate::{host, routing};

/// What the access log and the metrics need to know about a request, filled in as the
/// phases run. The `String` fields are only filled when the access log is on.
#[derive(Default)]
struct Facts {
    logging: bool,
    /// The request's content type is gRPC's (whatever its HTTP version).
    grpc_content: bool,
    host: Option<String>,
    path: Option<String>,
    route: Option<Arc<RouteSeries>>,
    upstream: Option<String>,
    decision: Option<&'static str>,
    policy: Option<String>,
}

impl Facts {
    /// The host and path as authorized, when the access log is on.
    fn note_admitted(&mut self, host: &str, path: &str) {
        if self.logging {
            self.host = Some(host.to_owned());
            self.path = Some(path.to_owned());
        }
    }
}

/// The hyper service function for the HTTPS listener.
pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    ambiguous_length: bool,
) -> Result<Response<LoggedBody>, Infallible> {
    let start = Instant::now();
    let rt = shared.runtime.load_full();
    let method = shared
        .access_log
        .is_some()
        .then(|| req.method().as_str().to_owned());
    let mut facts = Facts {
        logging: method.is_some(),
        grpc_content: grpc::is_grpc(req.headers()),
        ..Facts::default()
    };
    let http1 = req.version() < http::Version::HTTP_2;
    let grpc = !http1 && facts.grpc_content;
    let served = match ambiguous_length {
        // The body is never read: hyper closes the connection after this response.
        true => Err(ProxyError::AmbiguousLength),
        false => serve(req, &conn, &rt, &shared, &mut facts).await,
    };
    // The status the proxy decided, for the log and metrics, even when a gRPC client is
    // told in gRPC's terms.
    let (res, code) = match served {
        Ok(res) => {
            let code = res.status().as_u16();
            (res, code)
        }
        Err(e) => (refusal(&e, http1, grpc, &conn), e.status().as_u16()),
    };
    let record = method.map(|method| Record {
        event: "request",
        time: access_log::now_rfc3339(),
        peer: conn.info.peer.ip().to_canonical(),
        sni: conn.info.sni.clone(),
        principal: conn
            .info
            .identity
            .as_ref()
            .and_then(|id| id.principals.first().cloned()),
        method,
        host: facts.host,
        path: facts.path.unwrap_or_default(),
        status: code,
        bytes: 0,
        duration_ms: 0.0,
        route: facts.route.as_ref().map(|r| r.route.as_str().to_owned()),
        upstream: facts.upstream,
        decision: facts.decision,
        policy: facts.policy,
    });
    let pending = Pending {
        shared: shared.clone(),
        start,
        series: facts.route.unwrap_or_else(|| {
            shared
                .unrouted_series
                .get_or_init(|| Arc::new(shared.metrics.route_series(&shared.unrouted, false)))
                .clone()
        }),
        code,
        record,
    };
    Ok(res.map(|body| LoggedBody {
        inner: body,
        bytes: 0,
        pending: Some(Box::new(pending)),
        guard: None,
    }))
}

async fn serve(
    req: Request<Incoming>,
    conn: &Arc<Conn>,
    rt: &Runtime,
    shared: &Shared,
    facts: &mut Facts,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let proxy = &rt.config.proxy;
    if facts.logging {
        note_received(&parts, facts);
    }
    let server = &conn.tls_runtime.servers[conn.info.server];
    let admitted = match admission::admit(
        &parts.method,
        &parts.uri,
        parts.version,
        &mut parts.headers,
        &conn.info,
        &server.config.hosts,
        proxy,
    ) {
        Ok(admitted) => admitted,
        Err(Refused::OptionsStar) => return Ok(empty(StatusCode::NO_CONTENT)),
        Err(Refused::Redirect(location)) => return Ok(redirect_307(&location)),
        Err(Refused::Error(e)) => return Err(e),
    };
    let (host, path) = (admitted.host_name(), &admitted.path);
    facts.note_admitted(host, path);

    let view = RequestView {
        method: &parts.method,
        host: Some(host),
        path,
        headers: &parts.headers,
        conn: &conn.info,
    };
    authorize(&view, rt, conn, shared, facts)?;
    let route = routing::select(&rt.routes, Some(host), path).ok_or(ProxyError::NoRoute)?;
    let series = route_series(route, shared, facts);

    // The upstream request: normalized path + untouched query, this hop's headers added.
    let target = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => admitted.path.into_owned(),
    };
    let upgrade = admitted.upgrade;
    let te_trailers = route.config.protocol == UpstreamProtocol::H2c && facts.grpc_content;
    this_hop_headers(&mut parts.headers, conn, proxy, te_trailers);

    // A body is watched on its way up (stall → 408, bad framing → 400); none is sent as none.
    let (body, body_state) = if body.is_end_stream() {
        (Either::Right(Empty::new()), None)
    } else {
        let (body, state) = ClientBody::new(body, proxy.stream_idle_timeout);
        (Either::Left(body), Some(state))
    };
    let mut up_req = Request::from_parts(parts, body);
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut up_req));
    let sent = Instant::now();
    let pool = shared
        .upstreams
        .pool(&route.pool, &route.config.upstream, route.config.protocol);
    let mut res = pool
        .send(route.config.timeout, target, up_req, &series.retries)
        .await
        .map_err(|e| blame(e.into(), body_state.as_deref()))?;
    series
        .upstream_duration
        .observe(sent.elapsed().as_secs_f64());

    if res.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(down) = downstream_upgrade
    {
        return Ok(start_tunnel(down, res, conn, proxy, shared));
    }
    headers::remove_hop_by_hop(res.headers_mut(), false);
    Ok(res.map(Either::Left))
}

/// The host and path as received: a request refused before normalization is logged with
/// what it sent.
fn note_received(parts: &http::request::Parts, facts: &mut Facts) {
    facts.host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .map(|h| host::strip_port(h).to_owned());
    facts.path = Some(parts.uri.path().to_owned());
}

/// The proxy's own answer to a request it refused (in gRPC's terms to a gRPC client).
fn refusal(e: &ProxyError, http1: bool, grpc: bool, conn: &Conn) -> Response<ProxyBody> {
    if !matches!(e, ProxyError::Denied | ProxyError::NoRoute) {
        tracing::debug!(peer = %conn.info.peer, error = ?e, "request refused");
    }
    if grpc {
        return grpc::local_reply(e.status(), e.body());
    }
    let mut res = e.response();
    // The rest of a broken or abandoned body is unread: the connection cannot go on.
    if http1
        && matches!(
            e,
            ProxyError::BadRequestBody | ProxyError::RequestTimeout | ProxyError::AmbiguousLength
        )
    {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// The authorization phase: the decision is counted (and logged for audits); a denial is 403.
fn authorize(
    view: &RequestView<'_>,
    rt: &Runtime,
    conn: &Conn,
    shared: &Shared,
    facts: &mut Facts,
) -> Result<(), ProxyError> {
    let decision = authz::evaluate(&rt.config.policies, view);
    record_decision(&decision, rt, conn, &shared.metrics);
    if facts.logging {
        facts.decision = Some(if decision.is_allowed() {
            "allow"
        } else {
            "deny"
        });
        facts.policy = decision
            .deciding_policy(&rt.config.policies)
            .map(str::to_owned);
    }
    match decision.is_allowed() {
        true => Ok(()),
        false => Err(ProxyError::Denied),
    }
}

/// The chosen route's metric series (made on its first request), noted in the facts.
fn route_series(route: &Route, shared: &Shared, facts: &mut Facts) -> Arc<RouteSeries> {
    let series = route
        .series
        .get_or_init(|| Arc::new(shared.metrics.route_series(&route.config.name, true)))
        .clone();
    facts.route = Some(series.clone());
    if facts.logging {
        facts.upstream = Some(match &route.config.upstream {
            // The common case without `core::fmt`, which costs more than the copy.
            Upstream::Tcp { authority } => ["http://", authority].concat(),
            unix => unix.to_string(),
        });
    }
    series
}

/// The headers this hop adds: forwarding headers, XFCC, RFC 9440 client-certificate headers,
/// and with `te_trailers` (gRPC to an h2c upstream) `te: trailers` (the one TE value HTTP/2
/// allows, which gRPC servers expect; hop-by-hop, so removed from the client's request with
/// the others).
fn this_hop_headers(
    headers: &mut http::HeaderMap,
    conn: &Conn,
    proxy: &ProxySettings,
    te_trailers: bool,
) {
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers::set_forwarded(headers, &conn.peer, request_id);
    headers::apply_xfcc(headers, proxy.forward_client_cert, conn.xfcc.as_ref());
    if proxy.client_cert_headers == ClientCertHeaders::Rfc9440 {
        let (leaf, chain) = conn.client_cert_headers();
        if let Some(leaf) = leaf {
            headers.insert(&headers::CLIENT_CERT, leaf.clone());
        }
        if let Some(chain) = chain {
            headers.insert(&headers::CLIENT_CERT_CHAIN, chain.clone());
        }
    }
}

/// A `101` from the upstream: the two upgraded connections become a tunnel of their own.
fn start_tunnel(
    down: hyper::upgrade::OnUpgrade,
    mut res: Response<crate::upstream::UpstreamBody>,
    conn: &Arc<Conn>,
    proxy: &ProxySettings,
    shared: &Shared,
) -> Response<ProxyBody> {
    let up = hyper::upgrade::on(&mut res);
    let (parts, body) = res.into_parts();
    let limits = tunnel::Limits {
        idle: proxy.idle_timeout,
        drain: proxy.drain_timeout,
    };
    tokio::spawn(tunnel::run(
        down,
        up,
        conn.clone(),
        body.upgraded(),
        limits,
        shared.runtime.clone(),
        shared.metrics.clone(),
    ));
    Response::from_parts(parts, Either::Right(Full::new(Bytes::new())))
}

/// An upstream exchange that failed because of the client's body is the client's fault.
fn blame(e: ProxyError, body: Option<&BodyState>) -> ProxyError {
    match body.map(BodyState::outcome) {
        Some(BodyOutcome::Malformed) => ProxyError::BadRequestBody,
        Some(BodyOutcome::Stalled) => ProxyError::RequestTimeout,
        _ => e,
    }
}

/// Counts the deciding policy and every matched audit policy; logs audits.
fn record_decision(decision: &Decision, rt: &Runtime, conn: &Conn, metrics: &Metrics) {
    let matched = |index: usize| {
        metrics
            .authz_decisions
            .get_or_create(&AuthzLabels {
                policy: rt.config.policies.label(index).clone(),
                action: rt.config.policies.action(index).as_str(),
                result: "matched",
            })
            .inc();
    };
    match decision.verdict {
        Verdict::Allow {
            policy: Some((index, _)),
        } => matched(index),
        Verdict::Allow { policy: None } => {}
        Verdict::Deny(reason) => {
            if let DenyReason::Policy { policy, .. } = reason {
                matched(policy);
            }
            metrics
                .denied
                .get_or_create(&DeniedLabels {
                    reason: reason.label(),
                })
                .inc();
        }
    }
    for index in decision.audits.iter() {
        matched(index);
        tracing::info!(
            target: "gatehouse::audit",
            policy = rt.config.policies.name(index),
            peer = %conn.info.peer,
            principal = conn.info.identity.as_ref().and_then(|id| id.principals.first()).map(String::as_str),
            "audit policy matched"
        );
    }
}

fn empty(status: StatusCode) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::new())));
    *res.status_mut() = status;
    res
}

/// `escaped_slashes = "redirect"`: 307 to the canonical path (query kept).
fn redirect_307(location: &str) -> Response<ProxyBody> {
    let mut res = text_response(StatusCode::TEMPORARY_REDIRECT, "");
    match HeaderValue::from_str(location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
            res
        }
        Err(_) => {
            ProxyError::BadPath(crate::request::normalize::BadPath::ControlOrSpace).response()
        }
    }
}

/// A random UUIDv4 (RFC 9562) for `x-request-id`: wyrand, per thread, seeded from the
/// process's random SipHash keys. Unique and unguessable enough for tracing, not a secret.
fn request_id() -> HeaderValue {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local!(static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u8)));
    let next = || {
        STATE.with(|s| {
            let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
            s.set(x);
            let m = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
            (m as u64) ^ ((m >> 64) as u64)
        })
    };
    let v = (u128::from(next()) << 64) | u128::from(next());
    // Version 4 in bits 76..80, variant 0b10 in bits 62..64.
    let v = (v & !(0xf << 76)) | (0x4 << 76);
    let v = (v & !(0x3 << 62)) | (0x2 << 62);
    HeaderValue::from_bytes(&uuid_text(v)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `8-4-4-4-12` lowercase hex.
fn uuid_text(v: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in v.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_places_every_nibble() {
        let v = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(&uuid_text(v), b"01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(&uuid_text(0), b"00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| request_id().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let b = id.as_bytes();
            assert_eq!(b.len(), 36, "{id}");
            assert_eq!(b[14], b'4', "version: {id}");
            assert!(b"89ab".contains(&b[19]), "variant: {id}");
        }
    }
}

//! Prometheus metrics (SPEC "Metrics"): one registry for the process, outside any config
//! snapshot so a reload never resets counters. Labels are bounded: server, route and policy
//! names from the config, status codes and fixed reason words — never paths or principals.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A shared label value: cloning it is a reference-count increment, not an allocation.
pub(crate) type Name = Arc<String>;

/// Handles on one route's series: the same series as the families', without their lookup.
#[derive(Debug, Clone)]
pub(crate) struct RouteSeries {
    pub route: Name,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    /// `gatehouse_requests_total{code="200"}`, the common case; other codes are looked up.
    pub ok: Option<Counter>,
    /// `gatehouse_upstream_retries_total`.
    pub retries: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HandshakeLabels {
    pub server: Name,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: Name,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthzLabels {
    pub policy: Name,
    pub action: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeniedLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectedLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClosedLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CertLabels {
    pub server: String,
    pub kind: &'static str,
    pub serial: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub result: &'static str,
}

/// Latency buckets from 0.5 ms to ~65 s (x2 each): fine enough for a proxy hop, wide
/// enough for slow upstreams.
#[derive(Clone)]
pub(crate) struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0005, 2.0, 18))
    }
}

/// Every metric of SPEC's table.
pub struct Metrics {
    pub(crate) handshakes: Family<HandshakeLabels, Counter>,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) request_duration: Family<RouteLabels, Histogram, Buckets>,
    pub(crate) upstream_duration: Family<RouteLabels, Histogram, Buckets>,
    pub(crate) authz_decisions: Family<AuthzLabels, Counter>,
    pub(crate) denied: Family<DeniedLabels, Counter>,
    pub(crate) connections_active: Family<ListenerLabels, Gauge>,
    pub(crate) cert_not_after: Family<CertLabels, Gauge>,
    pub(crate) reloads: Family<ReloadLabels, Counter>,
    pub(crate) connections_rejected: Family<RejectedLabels, Counter>,
    pub(crate) connections_closed: Family<ClosedLabels, Counter>,
    pub(crate) upstream_retries: Family<RouteLabels, Counter>,
    pub access_log_dropped: Counter,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let m = Self {
            handshakes: Family::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(Buckets),
            upstream_duration: Family::new_with_constructor(Buckets),
            authz_decisions: Family::default(),
            denied: Family::default(),
            connections_active: Family::default(),
            cert_not_after: Family::default(),
            reloads: Family::default(),
            connections_rejected: Family::default(),
            connections_closed: Family::default(),
            upstream_retries: Family::default(),
            access_log_dropped: Counter::default(),
            registry: Registry::default(),
        };
        m.register_connections(&mut registry);
        m.register_requests(&mut registry);
        Arc::new(Self { registry, ..m })
    }

    /// The connection-level families: handshakes, open, rejected and closed connections,
    /// certificate expiry, reloads.
    fn register_connections(&self, registry: &mut Registry) {
        registry.register(
            "gatehouse_tls_handshakes",
            "TLS handshakes by server and result",
            self.handshakes.clone(),
        );
        registry.register(
            "gatehouse_connections_active",
            "Open downstream connections",
            self.connections_active.clone(),
        );
        registry.register(
            "gatehouse_cert_not_after_timestamp_seconds",
            "Expiry (Unix time) of each loaded certificate",
            self.cert_not_after.clone(),
        );
        registry.register(
            "gatehouse_reloads",
            "Config and certificate reloads by result",
            self.reloads.clone(),
        );
        registry.register(
            "gatehouse_connections_rejected",
            "Connections closed at accept, by listener and reason",
            self.connections_rejected.clone(),
        );
        registry.register(
            "gatehouse_connections_closed",
            "Open connections closed because their client certificate is no longer accepted",
            self.connections_closed.clone(),
        );
    }

    /// The request-level families: requests, durations, authorization, retries, the log.
    fn register_requests(&self, registry: &mut Registry) {
        registry.register(
            "gatehouse_requests",
            "HTTP requests by route and status code",
            self.requests.clone(),
        );
        registry.register(
            "gatehouse_request_duration_seconds",
            "Time from request head to the end of the response body",
            self.request_duration.clone(),
        );
        registry.register(
            "gatehouse_upstream_duration_seconds",
            "Time from sending upstream to the upstream's response head",
            self.upstream_duration.clone(),
        );
        registry.register(
            "gatehouse_authz_decisions",
            "Policies that matched a request",
            self.authz_decisions.clone(),
        );
        registry.register(
            "gatehouse_denied_requests",
            "Requests denied by authorization",
            self.denied.clone(),
        );
        registry.register(
            "gatehouse_upstream_retries",
            "Requests retried on a new upstream connection after a pooled one failed",
            self.upstream_retries.clone(),
        );
        registry.register(
            "gatehouse_access_log_dropped",
            "Access-log lines dropped because stdout fell behind",
            self.access_log_dropped.clone(),
        );
    }

    /// One route's series, looked up once (each family lookup takes a lock and hashes).
    /// `ok` is made for routes that forward; the `none` route of unrouted requests never
    /// answers 200 itself, so it gets no such series.
    pub(crate) fn route_series(&self, route: &Name, ok: bool) -> RouteSeries {
        let labels = RouteLabels {
            route: route.clone(),
        };
        RouteSeries {
            route: route.clone(),
            request_duration: self.request_duration.get_or_create(&labels).clone(),
            upstream_duration: self.upstream_duration.get_or_create(&labels).clone(),
            retries: self.upstream_retries.get_or_create(&labels).clone(),
            ok: ok.then(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        route: route.clone(),
                        code: 200,
                    })
                    .clone()
            }),
        }
    }

    /// Counts a finished request of `series`'s route.
    pub(crate) fn count_request(&self, series: &RouteSeries, code: u16, seconds: f64) {
        match &series.ok {
            Some(ok) if code == 200 => ok.inc(),
            _ => self
                .requests
                .get_or_create(&RequestLabels {
                    route: series.route.clone(),
                    code,
                })
                .inc(),
        };
        series.request_duration.observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Creates the series a dashboard expects to see from the start, at zero: handshakes `ok`
    /// per server, open connections per listener, both denial reasons, both reload results.
    /// `servers` are the server labels; `plaintext` says whether the `http` listener is on.
    pub(crate) fn init_series<'a>(
        &self,
        servers: impl IntoIterator<Item = &'a Name>,
        plaintext: bool,
    ) {
        for server in servers {
            let _ = self.handshakes.get_or_create(&HandshakeLabels {
                server: server.clone(),
                result: "ok",
            });
        }
        let _ = self
            .connections_active
            .get_or_create(&ListenerLabels { listener: "https" });
        if plaintext {
            let _ = self
                .connections_active
                .get_or_create(&ListenerLabels { listener: "http" });
        }
        for reason in ["policy", "no_allow_match"] {
            let _ = self.denied.get_or_create(&DeniedLabels { reason });
        }
        for result in ["ok", "error"] {
            let _ = self.reloads.get_or_create(&ReloadLabels { result });
        }
        let _ = self.connections_rejected.get_or_create(&RejectedLabels {
            listener: "https",
            reason: "per_ip_limit",
        });
        for reason in ["revoked", "cert_expired"] {
            let _ = self
                .connections_closed
                .get_or_create(&ClosedLabels { reason });
        }
    }

    /// Counts an open connection closed for `reason` (`revoked` | `cert_expired`).
    pub(crate) fn closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ClosedLabels { reason })
            .inc();
    }

    /// Counts one open connection of `listener` until the guard is dropped.
    pub(crate) fn active(&self, listener: &'static str) -> ActiveGuard {
        let gauge = self
            .connections_active
            .get_or_create_owned(&ListenerLabels { listener });
        gauge.inc();
        ActiveGuard(gauge)
    }

    /// Sets the expiry gauges to `certs`: (server name, `server` | `client_ca`, serial,
    /// notAfter in Unix seconds), dropping the series of certificates no longer loaded.
    pub(crate) fn set_certs<'a>(
        &self,
        certs: impl IntoIterator<Item = (&'a str, &'static str, &'a str, i64)>,
    ) {
        self.cert_not_after.clear();
        for (server, kind, serial, not_after) in certs {
            self.cert_not_after
                .get_or_create(&CertLabels {
                    server: server.to_owned(),
                    kind,
                    serial: serial.to_owned(),
                })
                .set(not_after);
        }
    }
}

/// One open connection in `gatehouse_connections_active`, while it lives.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

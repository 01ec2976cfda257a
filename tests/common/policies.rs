//! Authorization without the proxy: a policy set compiled from TOML `[[policy]]` tables, and
//! a request to ask [`evaluate`](gatehouse::authz::evaluate) about. Self-contained (nothing
//! from the rest of `common`), so that a bench could include it with `#[path]` too.

use std::sync::Arc;

use gatehouse::authz::Policies;
use gatehouse::authz::raw::RawPolicy;
use gatehouse::identity::PeerIdentity;
use gatehouse::request::{ConnInfo, RequestView};
use http::{HeaderMap, HeaderValue, Method};

#[derive(serde::Deserialize)]
struct Wrapper {
    policy: Vec<RawPolicy>,
}

/// Compiles the `[[policy]]` tables of `toml_text`.
pub fn policies(toml_text: &str) -> Policies {
    let w: Wrapper =
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("bad TOML {toml_text}: {e}"));
    Policies::compile(&w.policy).unwrap_or_else(|e| panic!("bad policies {toml_text}: {e:?}"))
}

/// Owns a request's parts and lends a [`RequestView`].
pub struct Req {
    method: Method,
    host: Option<String>,
    path: String,
    headers: HeaderMap,
    conn: ConnInfo,
}

impl Req {
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.path,
            headers: &self.headers,
            conn: &self.conn,
        }
    }
}

/// `GET https://a.test.com<path>` from `peer` on listener port 8443, with `headers`.
pub fn req(
    path: &str,
    peer: &str,
    headers: &[(&str, &str)],
    id: Option<PeerIdentity>,
    sni: Option<&str>,
) -> Req {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Req {
        method: Method::GET,
        host: Some("a.test.com".into()),
        path: path.into(),
        headers: map,
        conn: ConnInfo {
            peer: std::net::SocketAddr::new(peer.parse().unwrap(), 40000),
            listener_port: 8443,
            sni: sni.map(str::to_owned),
            server: 0,
            identity: id.map(Arc::new),
            chain: None,
        },
    }
}

/// A verified client: `spiffe://<principal>`, DNS SANs and a CN.
pub fn identity(principal: Option<&str>, dns: &[&str], cn: Option<&str>) -> PeerIdentity {
    PeerIdentity {
        principals: principal.map(str::to_owned).into_iter().collect(),
        uri_sans: principal
            .map(|p| format!("spiffe://{p}"))
            .into_iter()
            .collect(),
        dns_sans: dns.iter().map(|d| (*d).to_owned()).collect(),
        common_name: cn.map(str::to_owned),
        ..PeerIdentity::default()
    }
}

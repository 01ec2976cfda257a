//! Admission: every step the proxy takes before authorization, as one function that both the
//! proxy ([`super::service`]) and `gatehouse authz` call, so the dry-run runs the production
//! code by construction. The steps, in order:
//! 1. `OPTIONS *` is answered by the proxy (`204`), over HTTP/1.1 and HTTP/2;
//! 2. an authority-form target (`GET host:443`) is `400` (CONNECT is not proxied);
//! 3. the host: `:authority` (HTTP/2, absolute-form) or the one `Host` header — more than
//!    one is `400` — checked and stripped of one trailing dot ([`crate::host`]), then bound to
//!    the TLS server of the connection (`421`);
//! 4. headers with underscores are dropped (or `400`);
//! 5. the headers are sanitized as they will be forwarded ([`headers::sanitize`]): hop-by-hop
//!    and `Connection`-named headers, `Upgrade` tokens outside `allowed_upgrades`, client-sent
//!    certificate headers and (unless trusted) forwarding headers; `host` is set to the
//!    effective authority. So no policy condition can be satisfied by a header gatehouse is
//!    about to remove or replace;
//! 6. the path is normalized (`400`, or `307` for escaped slashes under `redirect`).
//!
//! Pure: no I/O, and on a clean request no allocation beyond an HTTP/2 authority's header value.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri, Version};

use super::{ProxyError, headers};
use crate::config::{ForwardClientCert, ProxySettings};
use crate::host::{self, BadHost, HostPattern};
use crate::request::ConnInfo;
use crate::request::normalize::{self, Normalized};

/// A request that may go on to authorization.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    /// The effective authority, as forwarded in `host` (also set in the headers).
    pub host: HeaderValue,
    /// Length of the name (without `:port`) at the start of `host`.
    name_len: usize,
    /// The normalized path, without the query.
    pub path: Cow<'a, str>,
    /// An HTTP/1.1 upgrade with an allowed token: `Upgrade`/`Connection` were kept.
    pub upgrade: bool,
}

impl Admitted<'_> {
    /// The host without its port, as policies and routes see it.
    pub(crate) fn host_name(&self) -> &str {
        // `host` came from a `&str` checked by `host::parse`: always visible ASCII.
        self.host
            .to_str()
            .map(|h| &h[..self.name_len])
            .unwrap_or_default()
    }
}

/// Why the proxy answers a request before authorization.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `OPTIONS *`: `204` from the proxy.
    OptionsStar,
    /// `escaped_slashes = "redirect"`: `307` to this location (query included).
    Redirect(String),
    /// `400` / `421`.
    Error(ProxyError),
}

impl From<ProxyError> for Refused {
    fn from(e: ProxyError) -> Self {
        Self::Error(e)
    }
}

/// Runs the admission steps on a request's parts (see the module doc). `server_hosts` are
/// the hosts of the `[[server]]` the connection's TLS handshake chose.
pub(crate) fn admit<'a>(
    method: &Method,
    uri: &'a Uri,
    version: Version,
    headers: &mut HeaderMap,
    conn: &ConnInfo,
    server_hosts: &[HostPattern],
    proxy: &ProxySettings,
) -> Result<Admitted<'a>, Refused> {
    if method == Method::OPTIONS && uri.path() == "*" {
        return Err(Refused::OptionsStar);
    }
    // Authority-form (`GET host HTTP/1.1`) is only for CONNECT, which a reverse proxy does not do.
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(ProxyError::BadPath(normalize::BadPath::NotAbsolute).into());
    }

    // The host: :authority (HTTP/2, absolute-form) wins over the Host header (RFC 9112 §3.2.2).
    let mut host_headers = headers.get_all(header::HOST).iter();
    let host_header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(ProxyError::BadHost(BadHost::Multiple).into());
    }
    let raw = match (uri.authority(), host_header) {
        (Some(a), _) => a.as_str(),
        (None, Some(h)) => h
            .to_str()
            .map_err(|_| ProxyError::BadHost(BadHost::BadName))?,
        (None, None) => return Err(ProxyError::MissingHost.into()),
    };
    let authority = host::parse(raw).map_err(ProxyError::BadHost)?;
    let name_len = authority.name().len();
    if !host::any_matches(server_hosts, authority.name()) {
        return Err(ProxyError::Misdirected.into());
    }
    let host = match (&authority.full, host_header) {
        // The client's own header, unchanged: no copy.
        (Cow::Borrowed(_), Some(h)) if uri.authority().is_none() => h.clone(),
        (full, _) => {
            HeaderValue::from_str(full).map_err(|_| ProxyError::BadHost(BadHost::BadName))?
        }
    };

    headers::apply_underscores(headers, proxy.headers_with_underscores)
        .map_err(ProxyError::UnderscoreHeader)?;
    let upgrade = version == Version::HTTP_11
        && headers::filter_upgrade(headers, |t| proxy.upgrade_allowed(t));
    headers::remove_hop_by_hop(headers, upgrade);
    headers::sanitize(
        headers,
        headers::Sanitize {
            // append_forward keeps the client's XFCC only behind a verified certificate.
            xfcc: proxy.forward_client_cert != ForwardClientCert::AppendForward
                || conn.identity.is_none(),
            forwarded: !proxy.trust_forwarded_headers,
        },
    );
    headers.insert(header::HOST, host.clone());

    let path =
        match normalize::normalize(proxy.normalization, uri.path()).map_err(ProxyError::BadPath)? {
            Normalized::Path(p) => p,
            Normalized::Redirect(location) => {
                return Err(Refused::Redirect(match uri.query() {
                    Some(q) => format!("{location}?{q}"),
                    None => location,
                }));
            }
        };
    Ok(Admitted {
        host,
        name_len,
        path,
        upgrade,
    })
}

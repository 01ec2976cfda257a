//! `[[route]]`: hosts, path prefix, upstream (`http://host:port` or `unix:/path`), timeout.

use std::time::Duration;

use super::{Errors, duration};
use std::path::Path;

use crate::config::raw::*;
use crate::config::*;
use crate::host::HostPattern;

pub(super) fn validate(
    raw: RawRoute,
    index: usize,
    base: &Path,
    errs: &mut Errors,
) -> Option<RouteConfig> {
    let RawRoute {
        name,
        hosts,
        path_prefix,
        upstream,
        timeout,
        upstream_protocol,
    } = raw;
    let at = format!("route[{index}]");
    let before = errs.0.len();
    let mut patterns = Vec::new();
    for (i, h) in hosts.unwrap_or_default().iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) => patterns.push(p),
            Err(msg) => errs.push(format!("{at}.hosts[{i}]"), format!("{h:?}: {msg}")),
        }
    }
    let prefix = path_prefix.unwrap_or_else(|| "/".to_owned());
    if !prefix.starts_with('/') {
        errs.push(
            format!("{at}.path_prefix"),
            format!("{prefix:?}: must start with '/'"),
        );
    }
    let prefix = match prefix.trim_end_matches('/') {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    let upstream = parse_upstream(&upstream, base)
        .map_err(|msg| errs.push(format!("{at}.upstream"), format!("{upstream:?}: {msg}")))
        .ok();
    let timeout = match timeout {
        Some(t) => duration(&t, &format!("{at}.timeout"), errs),
        None => Some(DEFAULT_ROUTE_TIMEOUT),
    };
    if let Some(n) = &name
        && (n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()))
    {
        errs.push(
            format!("{at}.name"),
            format!("{n:?}: must be non-empty, printable, without spaces"),
        );
    }
    let protocol = match upstream_protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2c") => UpstreamProtocol::H2c,
        Some(other) => {
            errs.push(
                format!("{at}.upstream_protocol"),
                format!("{other:?}: expected \"http1\" or \"h2c\""),
            );
            UpstreamProtocol::Http1
        }
    };
    if errs.0.len() > before {
        return None;
    }
    Some(RouteConfig {
        name: std::sync::Arc::new(name.unwrap_or_else(|| index.to_string())),
        hosts: patterns,
        path_prefix: prefix,
        upstream: upstream?,
        timeout: timeout?,
        protocol,
    })
}

/// Envoy's default route timeout is 15 s, nginx's proxy_read_timeout 60 s; SPEC's example shows 30 s.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

fn parse_upstream(text: &str, base: &Path) -> Result<Upstream, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("expected unix:/path/to.sock".into());
        }
        return Ok(Upstream::Unix(base.join(path)));
    }
    let Some(rest) = text.strip_prefix("http://") else {
        return Err("expected http://host:port or unix:/path (upstreams speak plain HTTP)".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err("expected http://host[:port] without a path".into());
    }
    let uri: http::uri::Authority = authority
        .parse()
        .map_err(|_| "not a valid host[:port]".to_owned())?;
    let authority = match uri.port_u16() {
        Some(_) => uri.as_str().to_owned(),
        None => format!("{}:80", uri.host()),
    };
    Ok(Upstream::Tcp { authority })
}

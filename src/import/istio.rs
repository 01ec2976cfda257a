//! Istio `Gateway` servers → `[listen]`, `[tls]` and `[[server]]`; `VirtualService` http
//! routes → `[[route]]`. Policies are in `istio_policy`.

use super::doc::{Fields, Object, Reports};
use super::model::{Config, Route, Server};
use super::{Options, bare_host, istio_policy};

/// Translates every object, in input order within each kind.
pub(super) fn translate(objs: &[Object], opts: &Options, cfg: &mut Config, r: &mut Reports) {
    let mut https_port: Option<String> = None;
    for o in objs {
        r.object = o.label();
        let mut top = Fields::new(&o.value, "", r);
        top.skip(&["apiVersion", "kind", "metadata", "status"]);
        if let Some(mut spec) = top.object("spec", r) {
            match o.kind.as_str() {
                "Gateway" => gateway(o, &mut spec, opts, cfg, r, &mut https_port),
                "VirtualService" => virtual_service(o, &mut spec, opts, cfg, r),
                _ => istio_policy::policy(o, &mut spec, cfg, r),
            }
            spec.finish(r);
        }
        top.finish(r);
    }
    cfg.notes.push(
        "Istio's uri.prefix is a string prefix; gatehouse's path_prefix matches whole segments \
         (\"/status\" matches /status and /status/x, not /statusx)."
            .to_owned(),
    );
    if cfg.min_version.is_none() && !cfg.servers.is_empty() {
        cfg.notes.push(
            "Istio gateways accept TLS 1.2 by default; gatehouse's default minimum is 1.3. \
             Add [tls] min_version = \"1.2\" if your clients need it."
                .to_owned(),
        );
    }
}

fn gateway(
    o: &Object,
    spec: &mut Fields<'_>,
    opts: &Options,
    cfg: &mut Config,
    r: &mut Reports,
    https_port: &mut Option<String>,
) {
    spec.skip(&["selector"]);
    for (at, v) in spec.list("servers", r) {
        let mut s = Fields::new(v, at.clone(), r);
        s.skip(&["name"]);
        let (number, protocol) = match s.object("port", r) {
            Some(mut port) => {
                port.skip(&["name", "targetPort"]);
                let number = port.str("number", r).unwrap_or_default();
                let protocol = port.str("protocol", r).unwrap_or_default();
                port.finish(r);
                (number, protocol.to_ascii_uppercase())
            }
            None => (String::new(), String::new()),
        };
        let hosts: Vec<String> = s
            .strings("hosts", r)
            .iter()
            .map(|h| bare_host(h).to_owned())
            .collect();
        let origin = format!("{} spec.servers[{}]", o.label(), index_of(&at));
        match protocol.as_str() {
            "HTTPS" => {
                if https_port.get_or_insert_with(|| number.clone()) != &number {
                    r.push(
                        s.at("port.number"),
                        "a second HTTPS port: gatehouse has one https listener, which serves this server too",
                    );
                }
                https_server(&mut s, hosts, origin, opts, cfg, r);
            }
            "HTTP" => plain_server(&mut s, origin, cfg, r),
            other => {
                r.push(
                    s.at("port.protocol"),
                    format!("{other:?}: gatehouse terminates HTTPS only; this server is left out"),
                );
                s.skip(&["tls", "bind", "defaultEndpoint"]);
            }
        }
        s.finish(r);
    }
}

/// `[0]` of a path ending in `[0]`.
fn index_of(at: &str) -> &str {
    at.rsplit_once('[')
        .map_or("", |(_, i)| i.trim_end_matches(']'))
}

/// A port-80 server: only `tls.httpsRedirect` has a gatehouse equivalent.
fn plain_server(s: &mut Fields<'_>, origin: String, cfg: &mut Config, r: &mut Reports) {
    let redirect = match s.object("tls", r) {
        Some(mut tls) => {
            let on = tls.str("httpsRedirect", r).is_some_and(|v| v == "true");
            tls.finish(r);
            on
        }
        None => false,
    };
    if redirect {
        cfg.redirect
            .get_or_insert(format!("{origin}: httpsRedirect"));
    } else {
        r.push(
            s.at("port"),
            "a plain-HTTP server: gatehouse's http listener only redirects to HTTPS",
        );
    }
}

fn https_server(
    s: &mut Fields<'_>,
    hosts: Vec<String>,
    origin: String,
    opts: &Options,
    cfg: &mut Config,
    r: &mut Reports,
) {
    let tls_at = s.at("tls");
    let Some(mut tls) = s.object("tls", r) else {
        r.push(tls_at, "an HTTPS server without tls settings is left out");
        return;
    };
    let mode = tls.str("mode", r).unwrap_or_else(|| "PASSTHROUGH".into());
    let client_auth = match mode.as_str() {
        "SIMPLE" => "none",
        "MUTUAL" => "required",
        "OPTIONAL_MUTUAL" => "optional",
        other => {
            r.push(
                tls.at("mode"),
                format!("{other:?}: gatehouse terminates TLS itself; this server is left out"),
            );
            tls.skip(ALL_TLS_KEYS);
            tls.finish(r);
            return;
        }
    };
    let mut server = Server {
        origin,
        client_auth,
        ..Server::default()
    };
    server_credentials(&mut tls, &mut server, opts, r);
    versions(&mut tls, cfg, r);
    tls.finish(r);
    let mut seen = cfg.servers.iter().flat_map(|s| s.hosts.iter());
    let (twice, hosts): (Vec<_>, Vec<_>) = hosts
        .into_iter()
        .partition(|h| seen.any(|old| old.eq_ignore_ascii_case(h)));
    for h in twice {
        r.push(
            s.at("hosts"),
            format!("{h:?} is served by an earlier server: the first one wins"),
        );
    }
    if server.credential_dir.is_none() && server.cert.is_none() {
        r.push(
            tls_at,
            "no credentialName nor serverCertificate: this server is left out",
        );
    } else if !hosts.is_empty() {
        server.hosts = hosts;
        cfg.servers.push(server);
    }
}

const ALL_TLS_KEYS: &[&str] = &[
    "mode",
    "credentialName",
    "serverCertificate",
    "privateKey",
    "caCertificates",
    "caCrl",
    "subjectAltNames",
    "verifyCertificateSpki",
    "verifyCertificateHash",
    "minProtocolVersion",
    "maxProtocolVersion",
    "cipherSuites",
    "httpsRedirect",
];

fn server_credentials(tls: &mut Fields<'_>, s: &mut Server, opts: &Options, r: &mut Reports) {
    if let Some(name) = tls.str("credentialName", r) {
        s.credential_dir = Some(opts.secret(&name));
        if s.client_auth != "none" {
            s.comments.push(format!(
                "The client CA is the secret's ca.crt (or cacert). Istio also reads a separate \
                 \"{name}-cacert\" secret: if yours is there, set client_ca to its file."
            ));
        }
    }
    let cert = tls.str("serverCertificate", r);
    let key = tls.str("privateKey", r);
    if s.credential_dir.is_some() {
        for (name, v) in [("serverCertificate", &cert), ("privateKey", &key)] {
            if v.is_some() {
                r.push(tls.at(name), "credentialName wins: this file is not used");
            }
        }
    } else {
        s.cert = cert;
        s.key = key;
    }
    let mut client = |key: &'static str, r: &mut Reports| -> Vec<String> {
        let at = tls.at(key);
        let v = match key {
            "caCertificates" => tls.str(key, r).into_iter().collect(),
            _ => tls.strings(key, r),
        };
        if !v.is_empty() && s.client_auth == "none" {
            r.push(
                at,
                "has no effect in SIMPLE mode (no client certificate is asked for)",
            );
            return Vec::new();
        }
        v
    };
    s.client_ca = client("caCertificates", r).pop();
    s.client_crl = client("caCrl", r);
    s.allowed_sans = client("subjectAltNames", r);
    s.allowed_spki_sha256 = client("verifyCertificateSpki", r);
    s.allowed_cert_sha256 = client("verifyCertificateHash", r);
    if s.client_auth != "none" && s.credential_dir.is_none() && s.client_ca.is_none() {
        r.push(
            tls.at("caCertificates"),
            "MUTUAL without credentialName nor caCertificates: set client_ca by hand",
        );
    }
}

/// `minProtocolVersion` / `maxProtocolVersion`: one `[tls]` for every server in gatehouse.
fn versions(tls: &mut Fields<'_>, cfg: &mut Config, r: &mut Reports) {
    for (key, min) in [("minProtocolVersion", true), ("maxProtocolVersion", false)] {
        let at = tls.at(key);
        let Some(v) = tls.str(key, r) else { continue };
        let version = match v.as_str() {
            "TLS_AUTO" => continue,
            "TLSV1_2" => "1.2",
            "TLSV1_3" => "1.3",
            "TLSV1_0" | "TLSV1_1" => {
                r.push(&at, format!("{v}: gatehouse speaks TLS 1.2 and 1.3 only"));
                "1.2"
            }
            other => {
                r.push(&at, format!("{other:?}: not an Istio TLS version"));
                continue;
            }
        };
        let slot = match min {
            true => &mut cfg.min_version,
            false => &mut cfg.max_version,
        };
        match slot {
            Some((old, _)) if *old != version => r.push(
                at,
                format!("{v}: [tls] is shared by every server, and an earlier server set {old}"),
            ),
            Some(_) => {}
            None => *slot = Some((version, format!("{} {at}", r.object))),
        }
    }
}

fn virtual_service(
    o: &Object,
    spec: &mut Fields<'_>,
    opts: &Options,
    cfg: &mut Config,
    r: &mut Reports,
) {
    spec.skip(&["gateways", "exportTo"]);
    let hosts: Vec<String> = spec
        .strings("hosts", r)
        .into_iter()
        .filter(|h| h != "*")
        .collect();
    let http = spec.list("http", r);
    let many = http.len() > 1;
    for (i, (at, v)) in http.into_iter().enumerate() {
        let mut h = Fields::new(v, at.clone(), r);
        let name = h.str("name", r).unwrap_or_else(|| match many {
            true => format!("{}-{i}", o.name),
            false => o.name.clone(),
        });
        let prefixes = prefixes(&mut h, r);
        let timeout = h
            .str("timeout", r)
            .and_then(|t| timeout(&t, &h.at("timeout"), r));
        let upstream = destination(&mut h, o, opts, r);
        h.finish(r);
        let Some(upstream) = upstream else { continue };
        for (path_prefix, origin) in prefixes {
            cfg.routes.push(Route {
                origin: format!("{} {origin}", o.label()),
                name: name.clone(),
                hosts: hosts.clone(),
                path_prefix,
                upstream: upstream.clone(),
                timeout: timeout.clone(),
            });
        }
    }
}

/// The `uri.prefix` of each match (with its path), `/` when there is no match at all.
fn prefixes(h: &mut Fields<'_>, r: &mut Reports) -> Vec<(String, String)> {
    let matches = h.list("match", r);
    if matches.is_empty() {
        return vec![("/".to_owned(), h.path().to_owned())];
    }
    let mut out = Vec::new();
    for (at, v) in matches {
        let mut m = Fields::new(v, at.clone(), r);
        m.skip(&["name"]);
        if let Some(mut uri) = m.object("uri", r) {
            if let Some(p) = uri.str("prefix", r) {
                if !whole_segment(&p) {
                    r.push(
                        uri.at("prefix"),
                        format!("{p:?} does not end at a segment boundary: gatehouse matches {p} and {p}/... only, Istio every path starting with it"),
                    );
                }
                out.push((p, at.clone()));
            }
            for kind in ["exact", "regex"] {
                if uri.str(kind, r).is_some() {
                    r.push(
                        uri.at(kind),
                        "gatehouse routes on path prefixes only: this match is left out",
                    );
                }
            }
            uri.finish(r);
        }
        m.finish(r);
    }
    out
}

/// Is `prefix` meant as whole segments? `/` and prefixes whose last segment is a word of two
/// or more letters or digits (`/status`, `/v1`) are; `/api/v`, `/img-` and `/api/` are not
/// (Istio's string prefix and gatehouse's segment prefix then differ on ordinary paths).
pub(super) fn whole_segment(prefix: &str) -> bool {
    let last = prefix.rsplit('/').next().unwrap_or_default();
    prefix == "/" || last.len() >= 2 && last.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The first `route[].destination` as an upstream URL.
fn destination(h: &mut Fields<'_>, o: &Object, opts: &Options, r: &mut Reports) -> Option<String> {
    let routes = h.list("route", r);
    let Some((at, first)) = routes.first() else {
        r.push(
            h.path().to_owned(),
            "no route destination: this http route is left out",
        );
        return None;
    };
    for (at, _) in routes.iter().skip(1) {
        r.push(
            at,
            "gatehouse sends a route to one upstream: the first destination takes all traffic",
        );
    }
    let mut d = Fields::new(first, at.clone(), r);
    d.skip(&["weight"]);
    let mut dest = d.object("destination", r)?;
    let host = dest.str("host", r)?;
    let port = match dest.object("port", r) {
        Some(mut p) => {
            let n = p.str("number", r);
            p.finish(r);
            n
        }
        None => None,
    };
    let port = port.unwrap_or_else(|| {
        r.push(dest.at("port"), "no port: 80 is assumed");
        "80".to_owned()
    });
    dest.finish(r);
    d.finish(r);
    Some(service_url(&host, &o.namespace, &port, opts))
}

/// A destination host: `svc`, `svc.ns`, `svc.ns.svc[.cluster.local]` are Kubernetes
/// services; any other name with dots is taken as a host name.
pub(super) fn service_url(host: &str, namespace: &str, port: &str, opts: &Options) -> String {
    let (service, rest) = host.split_once('.').unwrap_or((host, ""));
    let ns = rest
        .strip_suffix(".svc.cluster.local")
        .or_else(|| rest.strip_suffix(".svc"))
        .unwrap_or(rest);
    match (rest.is_empty(), ns.contains('.')) {
        (true, _) => opts.upstream(service, namespace, port),
        (false, false) => opts.upstream(service, ns, port),
        (false, true) => format!("http://{host}:{port}"),
    }
}

/// An Istio duration (`5s`, `1.5s`, `100ms`) in gatehouse's syntax.
pub(super) fn timeout(t: &str, at: &str, r: &mut Reports) -> Option<String> {
    if crate::config::parse_duration(t).is_some_and(|d| !d.is_zero()) {
        return Some(t.to_owned());
    }
    let seconds = t.strip_suffix('s').and_then(|s| s.parse::<f64>().ok());
    match seconds {
        Some(s) if s > 0.0 && s < 1e9 => Some(format!("{}ms", (s * 1000.0).round() as u64)),
        _ => {
            r.push(
                at,
                format!("{t:?}: gatehouse routes always have a timeout; the default (30s) applies"),
            );
            None
        }
    }
}

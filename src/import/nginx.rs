//! ingress-nginx `Ingress` objects and their `nginx.ingress.kubernetes.io/*` annotations.
//!
//! `spec.tls` entries become servers, `spec.rules` paths become routes (ordered as
//! ingress-nginx orders locations: the longest path first, the default backend last), and the
//! annotations that guard an Ingress become server settings or deny policies scoped to its
//! hosts with `to.hosts` (gatehouse's policies are global, ingress-nginx's are per Ingress).

use std::collections::BTreeMap;

use super::Options;
use super::doc::{Fields, Object, Reports};
use super::model::{Config, Policy, Route, Rule, Server};

const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// ingress-nginx's default `proxy-read-timeout`.
const DEFAULT_TIMEOUT: &str = "60s";

pub(super) fn translate(objs: &[Object], opts: &Options, cfg: &mut Config, r: &mut Reports) {
    let mut routes = Vec::new();
    let mut defaults = Vec::new();
    for o in objs {
        r.object = o.label();
        let mut a = Annotations::read(o);
        let mut top = Fields::new(&o.value, "", r);
        top.skip(&["apiVersion", "kind", "metadata", "status"]);
        let Some(mut spec) = top.object("spec", r) else {
            top.finish(r);
            continue;
        };
        spec.skip(&["ingressClassName"]);
        let timeout = a.timeout(r);
        let mut hosts = Vec::new();
        for (at, v) in spec.list("rules", r) {
            rules(o, &at, v, opts, &timeout, &mut hosts, &mut routes, r);
        }
        let servers = tls(o, &mut spec, &a, opts, cfg, r);
        for h in servers.iter().flat_map(|s| s.hosts.iter()) {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
        if let Some(mut d) = spec.object("defaultBackend", r) {
            if let Some(upstream) = backend(&mut d, o, opts, r) {
                defaults.push(Route {
                    origin: format!("{} spec.defaultBackend", o.label()),
                    name: format!("{}-default", o.name),
                    hosts: Vec::new(),
                    path_prefix: "/".into(),
                    upstream,
                    timeout: timeout.clone(),
                });
            }
            d.finish(r);
        }
        let has_tls = o
            .value
            .pointer("/spec/tls")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|t| !t.is_empty());
        cfg.servers.extend(servers);
        a.guard(o, &hosts, has_tls, cfg, r);
        spec.finish(r);
        top.finish(r);
        a.finish(r);
    }
    if !cfg.servers.is_empty() {
        cfg.notes.push(
            "ingress-nginx accepts TLS 1.2 and 1.3 by default; gatehouse's default minimum is 1.3. \
             Add [tls] min_version = \"1.2\" if your clients need it."
                .to_owned(),
        );
    }
    routes.sort_by_key(|route: &Route| std::cmp::Reverse(route.path_prefix.len()));
    cfg.routes.extend(routes);
    cfg.routes.extend(defaults);
}

/// `spec.tls[]` → servers, with the Ingress's client-certificate annotations.
fn tls(
    o: &Object,
    spec: &mut Fields<'_>,
    a: &Annotations,
    opts: &Options,
    cfg: &mut Config,
    r: &mut Reports,
) -> Vec<Server> {
    let mut out: Vec<Server> = Vec::new();
    for (at, v) in spec.list("tls", r) {
        let mut t = Fields::new(v, at.clone(), r);
        let hosts = t.strings("hosts", r);
        let secret = t.str("secretName", r);
        t.finish(r);
        let Some(secret) = secret else {
            r.push(
                at,
                "no secretName (ingress-nginx's default certificate): this entry is left out",
            );
            continue;
        };
        let mut hosts_left = Vec::new();
        for h in hosts {
            let served = cfg.servers.iter().chain(&out).flat_map(|s| s.hosts.iter());
            match served.clone().any(|old| old.eq_ignore_ascii_case(&h)) {
                true => r.push(
                    format!("{at}.hosts"),
                    format!("{h:?} is served by an earlier tls entry: the first one wins"),
                ),
                false => hosts_left.push(h),
            }
        }
        if hosts_left.is_empty() {
            continue;
        }
        let mut server = Server {
            origin: format!("{} {at}", o.label()),
            hosts: hosts_left,
            credential_dir: Some(opts.secret(&secret)),
            ..Server::default()
        };
        a.client_auth(&mut server, opts);
        out.push(server);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn rules(
    o: &Object,
    at: &str,
    v: &serde_json::Value,
    opts: &Options,
    timeout: &Option<String>,
    hosts: &mut Vec<String>,
    routes: &mut Vec<Route>,
    r: &mut Reports,
) {
    let mut rule = Fields::new(v, at, r);
    let host = rule.str("host", r);
    if let Some(h) = &host
        && !hosts.contains(h)
    {
        hosts.push(h.clone());
    }
    if let Some(mut http) = rule.object("http", r) {
        for (at, v) in http.list("paths", r) {
            let mut p = Fields::new(v, at.clone(), r);
            let path = p.str("path", r).unwrap_or_else(|| "/".into());
            let kind = p.str("pathType", r).unwrap_or_default();
            let upstream = p.object("backend", r).and_then(|mut b| {
                let u = backend(&mut b, o, opts, r);
                b.finish(r);
                u
            });
            if kind == "Exact" {
                r.push(
                    p.at("pathType"),
                    "Exact: gatehouse routes on path prefixes only; this path is left out",
                );
            } else if let Some(upstream) = upstream {
                routes.push(Route {
                    origin: format!("{} {at}", o.label()),
                    name: o.name.clone(),
                    hosts: host.iter().cloned().collect(),
                    path_prefix: path,
                    upstream,
                    timeout: timeout.clone(),
                });
            }
            p.finish(r);
        }
        http.finish(r);
    }
    rule.finish(r);
}

/// `backend.service` (name, port number) as an upstream URL.
fn backend(b: &mut Fields<'_>, o: &Object, opts: &Options, r: &mut Reports) -> Option<String> {
    let mut s = b.object("service", r)?;
    let name = s.str("name", r)?;
    let port = s.object("port", r).and_then(|mut p| {
        let number = p.str("number", r);
        if let Some(n) = p.str("name", r) {
            r.push(
                p.at("name"),
                format!("port {n:?} by name: gatehouse needs its number; 80 is assumed"),
            );
        }
        p.finish(r);
        number
    });
    s.finish(r);
    Some(opts.upstream(&name, &o.namespace, port.as_deref().unwrap_or("80")))
}

/// The Ingress's `nginx.ingress.kubernetes.io/*` annotations, each marked when read.
struct Annotations {
    values: BTreeMap<String, String>,
    used: Vec<&'static str>,
}

impl Annotations {
    fn read(o: &Object) -> Self {
        let mut values = BTreeMap::new();
        let all = o.value.get("metadata").and_then(|m| m.get("annotations"));
        if let Some(serde_json::Value::Object(map)) = all {
            for (k, v) in map {
                let Some(name) = k.strip_prefix(PREFIX) else {
                    continue;
                };
                match v.as_str() {
                    Some(s) => values.insert(name.to_owned(), s.to_owned()),
                    None => values.insert(name.to_owned(), v.to_string()),
                };
            }
        }
        Self {
            values,
            used: Vec::new(),
        }
    }

    fn at(name: &str) -> String {
        format!("metadata.annotations[{PREFIX}{name}]")
    }

    fn get(&mut self, name: &'static str) -> Option<String> {
        self.used.push(name);
        self.values.get(name).cloned()
    }

    fn peek(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `proxy-read-timeout` (seconds) as the route timeout; ingress-nginx's default otherwise.
    fn timeout(&mut self, r: &mut Reports) -> Option<String> {
        let Some(t) = self.get("proxy-read-timeout") else {
            return Some(DEFAULT_TIMEOUT.to_owned());
        };
        match t.trim().parse::<u64>() {
            Ok(n) if n > 0 => Some(format!("{n}s")),
            _ => {
                r.push(
                    Self::at("proxy-read-timeout"),
                    format!("{t:?}: expected whole seconds; the default (60s) applies"),
                );
                Some(DEFAULT_TIMEOUT.to_owned())
            }
        }
    }

    /// `auth-tls-secret` and `auth-tls-verify-client` on a server.
    fn client_auth(&self, s: &mut Server, opts: &Options) {
        let Some(secret) = self.peek("auth-tls-secret") else {
            s.client_auth = "none";
            return;
        };
        s.client_auth = match self.peek("auth-tls-verify-client").unwrap_or("on") {
            "off" => "none",
            "optional" | "optional_no_ca" => "optional",
            _ => "required",
        };
        if s.client_auth == "none" {
            return;
        }
        let name = secret.rsplit_once('/').map_or(secret, |(_, n)| n);
        let ca = format!("{}/ca.crt", opts.secret(name));
        s.comments.push(format!(
            "client_ca is the ca.crt of auth-tls-secret {secret}; if that secret has a ca.crl, \
             add client_crl = [\"{}/ca.crl\"]",
            opts.secret(name)
        ));
        s.client_ca = Some(ca);
    }
}

impl Annotations {
    /// The annotations that guard the Ingress's hosts: client auth checks, the CN match and
    /// the source allow-list (as deny policies), the redirect, the certificate header.
    fn guard(
        &mut self,
        o: &Object,
        hosts: &[String],
        tls: bool,
        cfg: &mut Config,
        r: &mut Reports,
    ) {
        self.verify_client(tls, r);
        if let Some(cn) = self.get("auth-tls-match-cn") {
            cfg.policies.push(match_cn(o, &cn, hosts, r));
        }
        for key in ["whitelist-source-range", "allowlist-source-range"] {
            let Some(ranges) = self.get(key) else {
                continue;
            };
            let blocks: Vec<String> = ranges
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            cfg.policies.push(Policy {
                origin: format!("{} {}", o.label(), Self::at(key)),
                name: format!("{}-{key}", o.name),
                action: "deny",
                rules: vec![scoped(hosts, ("not_ip_blocks", blocks))],
            });
        }
        let redirect = self.get("ssl-redirect");
        let force = self.get("force-ssl-redirect").is_some_and(|v| v == "true");
        if force || tls && redirect.as_deref() != Some("false") {
            let why = match force {
                true => Self::at("force-ssl-redirect"),
                false => "spec.tls (ssl-redirect is on by default)".to_owned(),
            };
            cfg.redirect.get_or_insert(format!("{} {why}", o.label()));
        } else if redirect.as_deref() == Some("false") {
            r.push(
                Self::at("ssl-redirect"),
                "\"false\": gatehouse does not serve plain HTTP; its http listener only redirects",
            );
        }
        if self.get("auth-tls-pass-certificate-to-upstream").as_deref() == Some("true") {
            cfg.client_cert_headers.get_or_insert(format!(
                "{} {}",
                o.label(),
                Self::at("auth-tls-pass-certificate-to-upstream")
            ));
            r.push(
                Self::at("auth-tls-pass-certificate-to-upstream"),
                "sent as RFC 9440 client-cert (base64 DER), not as ingress-nginx's ssl-client-cert (URL-encoded PEM): check what the upstream reads",
            );
        }
    }

    fn verify_client(&mut self, tls: bool, r: &mut Reports) {
        let secret = self.get("auth-tls-secret");
        let verify = self.get("auth-tls-verify-client");
        let at = Self::at("auth-tls-verify-client");
        match verify.as_deref() {
            Some("optional_no_ca") => r.push(
                &at,
                "optional_no_ca: gatehouse verifies every certificate it accepts; \"optional\" is used",
            ),
            None | Some("on" | "off" | "optional") => {}
            Some(other) => r.push(&at, format!("{other:?}: not an ingress-nginx value; \"on\" is used")),
        }
        if verify.is_some() && secret.is_none() {
            r.push(
                at,
                "without auth-tls-secret there is no client CA: no client certificate is asked for",
            );
        } else if secret.is_some() && !tls {
            r.push(
                Self::at("auth-tls-secret"),
                "the Ingress has no spec.tls entry (with a secretName) to ask for client certificates on",
            );
        }
    }

    /// Reports every annotation not read.
    fn finish(self, r: &mut Reports) {
        for name in self.values.keys() {
            if !self.used.contains(&name.as_str()) {
                r.push(
                    Self::at(name),
                    "not translated: gatehouse has no equivalent",
                );
            }
        }
    }
}

/// A rule that matches the Ingress's hosts (every host when it names none) and `field`.
fn scoped(hosts: &[String], field: (&'static str, Vec<String>)) -> Rule {
    let mut rule = Rule::default();
    rule.from.push(field);
    if !hosts.is_empty() {
        rule.to.push(("hosts", hosts.to_vec()));
    }
    rule
}

/// `auth-tls-match-cn` is a regular expression over the subject DN. An exact name, or a
/// `CN=name` anchor, is a deny policy on `not_common_names` (exact, so stricter than the
/// unanchored regex); anything else is reported and denies every request (fails closed).
fn match_cn(o: &Object, pattern: &str, hosts: &[String], r: &mut Reports) -> Policy {
    let at = Annotations::at("auth-tls-match-cn");
    let rule = match cn_name(pattern) {
        Some(cn) => scoped(hosts, ("not_common_names", vec![cn.to_owned()])),
        None => {
            r.push(
                &at,
                format!("{pattern:?}: a regular expression; gatehouse matches exact names (common_names, sans): every request to these hosts is denied until you write one"),
            );
            let mut rule = Rule::default();
            if !hosts.is_empty() {
                rule.to.push(("hosts", hosts.to_vec()));
            }
            rule.comments.push(
                "add from.not_common_names = [...] here: until then this denies every request"
                    .into(),
            );
            rule
        }
    };
    Policy {
        origin: format!("{} {at}", o.label()),
        name: format!("{}-match-cn", o.name),
        action: "deny",
        rules: vec![rule],
    }
}

/// `client`, `CN=client`, `^CN=client$`: the name; a regular expression: `None`.
pub(super) fn cn_name(pattern: &str) -> Option<&str> {
    let p = pattern.strip_prefix('^').unwrap_or(pattern);
    let p = p.strip_suffix('$').unwrap_or(p);
    let p = p.strip_prefix("CN=").unwrap_or(p);
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '@');
    (!p.is_empty() && p.chars().all(plain)).then_some(p)
}

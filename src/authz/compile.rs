//! `[[policy]]` tables in, compiled rules out. Every pattern, CIDR, port and `when` key is
//! parsed here, once, at load; a problem becomes a [`PolicyError`] whose path names the exact
//! value (`policy[1].rules[0].to.paths[2]`) and whose message says what is allowed. All
//! problems are reported, not just the first.
//!
//! A rule compiles to a flat list of [`Check`]s (one per non-empty field, `not_*` fields and
//! `not_values` negated); the rule matches when every check passes. Matching lives in
//! `authz/mod.rs`; this module owns the compiled shapes and the validation.

use std::collections::HashMap;
use std::net::IpAddr;

use http::HeaderName;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::pattern::{PathPattern, StrPattern};
use super::raw::{RawCondition, RawFrom, RawPolicy, RawPort, RawRule, RawTo};
use super::{Action, AuditSet};
use crate::host::strip_port;

/// The `when` keys, in the order error messages list them.
const SUPPORTED_KEYS: &str =
    "request.headers[NAME], source.ip, source.principal, connection.sni, destination.port";

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// Shared: it is also the `policy` metric label.
    pub(crate) name: std::sync::Arc<String>,
    pub(crate) action: Action,
    pub(crate) rules: Box<[Rule]>,
}

/// A rule matches when every check passes; no checks match every request.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) checks: Box<[Check]>,
}

/// One field of a rule: it passes when `test` matches, or, for `not_*` fields and
/// `not_values`, when it does not.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) negated: bool,
    pub(crate) test: Test,
}

/// What a check looks at. Each list is non-empty; any element may match.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// `from.principals`, `source.principal`; `*` = any verified client certificate.
    Principals(Box<[StrPattern]>),
    /// `from.sans`: any SAN; DNS SANs ignore ASCII case.
    Sans(Box<[StrPattern]>),
    /// `from.common_names`: the subject CN.
    CommonNames(Box<[StrPattern]>),
    /// `from.ip_blocks`, `source.ip`: the peer IP, IPv4-mapped IPv6 seen as IPv4.
    PeerIp(Box<[IpNet]>),
    /// `to.hosts`: lower-cased, port stripped, compared ignoring ASCII case.
    Hosts(Box<[StrPattern]>),
    /// `to.methods`, case-sensitive.
    Methods(Box<[StrPattern]>),
    /// `to.paths`: the normalized path.
    Paths(Box<[PathPattern]>),
    /// `to.ports`, `destination.port`: the listener port.
    Ports(Box<[u16]>),
    /// `request.headers[NAME]`: the values joined with `,`.
    Header(HeaderName, Box<[StrPattern]>),
    /// `connection.sni`, compared ignoring ASCII case.
    Sni(Box<[StrPattern]>),
}

/// Compiles and validates all policies, in file order.
pub(crate) fn policies(raw: &[RawPolicy]) -> Result<Vec<Policy>, Vec<PolicyError>> {
    let mut errs = Errors::default();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, policy) in raw.iter().enumerate() {
        let RawPolicy {
            name,
            action,
            rules,
        } = policy;
        let at = format!("policy[{i}]");
        if name.trim().is_empty() {
            errs.push(format!("{at}.name"), "a policy needs a non-empty name");
        } else if let Some(&first) = names.get(name.as_str()) {
            errs.push(
                format!("{at}.name"),
                format!("{name:?}: duplicate policy name (first used by policy[{first}])"),
            );
        } else {
            names.insert(name, i);
        }
        let action = match action.as_str() {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            "audit" => Some(Action::Audit),
            other => {
                errs.push(
                    format!("{at}.action"),
                    format!("{other:?}: must be \"allow\", \"deny\" or \"audit\""),
                );
                None
            }
        };
        if action == Some(Action::Audit) && i >= AuditSet::CAPACITY {
            let max = AuditSet::CAPACITY;
            errs.push(
                format!("{at}.action"),
                format!("audit policies must be among the first {max} policies; move it up"),
            );
        }
        if rules.is_empty() && matches!(action, Some(Action::Deny | Action::Audit)) {
            let kind = if action == Some(Action::Deny) {
                "a deny"
            } else {
                "an audit"
            };
            errs.push(
                format!("{at}.rules"),
                format!("{kind} policy with no rules never matches; add an empty [[policy.rules]] to match every request"),
            );
        }
        let rules: Vec<Rule> = rules
            .iter()
            .enumerate()
            .map(|(r, rule)| compile_rule(&mut errs, &format!("{at}.rules[{r}]"), rule))
            .collect();
        if let Some(action) = action {
            out.push(Policy {
                name: std::sync::Arc::new(name.clone()),
                action,
                rules: rules.into(),
            });
        }
    }
    errs.finish(out)
}

fn compile_rule(errs: &mut Errors, at: &str, rule: &RawRule) -> Rule {
    let RawRule { from, to, when } = rule;
    let mut checks = Vec::new();
    if let Some(from) = from {
        compile_from(errs, &mut checks, &format!("{at}.from"), from);
    }
    if let Some(to) = to {
        compile_to(errs, &mut checks, &format!("{at}.to"), to);
    }
    for (c, condition) in when.iter().flatten().enumerate() {
        compile_condition(errs, &mut checks, &format!("{at}.when[{c}]"), condition);
    }
    Rule {
        checks: checks.into(),
    }
}

fn compile_from(errs: &mut Errors, checks: &mut Vec<Check>, at: &str, from: &RawFrom) {
    let RawFrom {
        principals,
        not_principals,
        sans,
        not_sans,
        common_names,
        not_common_names,
        ip_blocks,
        not_ip_blocks,
    } = from;
    let mut add = |field: &str, negated: bool, values: &Option<Vec<String>>, kind: Kind| {
        if let Some(test) = kind.compile(errs, &format!("{at}.{field}"), values) {
            checks.push(Check { negated, test });
        }
    };
    add("principals", false, principals, Kind::Principals);
    add("not_principals", true, not_principals, Kind::Principals);
    add("sans", false, sans, Kind::Sans);
    add("not_sans", true, not_sans, Kind::Sans);
    add("common_names", false, common_names, Kind::CommonNames);
    add(
        "not_common_names",
        true,
        not_common_names,
        Kind::CommonNames,
    );
    add("ip_blocks", false, ip_blocks, Kind::PeerIp);
    add("not_ip_blocks", true, not_ip_blocks, Kind::PeerIp);
}

fn compile_to(errs: &mut Errors, checks: &mut Vec<Check>, at: &str, to: &RawTo) {
    let RawTo {
        hosts,
        not_hosts,
        methods,
        not_methods,
        paths,
        not_paths,
        ports,
        not_ports,
    } = to;
    let mut add = |field: &str, negated: bool, values: &Option<Vec<String>>, kind: Kind| {
        if let Some(test) = kind.compile(errs, &format!("{at}.{field}"), values) {
            checks.push(Check { negated, test });
        }
    };
    add("hosts", false, hosts, Kind::Hosts);
    add("not_hosts", true, not_hosts, Kind::Hosts);
    add("methods", false, methods, Kind::Methods);
    add("not_methods", true, not_methods, Kind::Methods);
    add("paths", false, paths, Kind::Paths);
    add("not_paths", true, not_paths, Kind::Paths);
    for (field, negated, values) in [("ports", false, ports), ("not_ports", true, not_ports)] {
        let ports = list(
            errs,
            &format!("{at}.{field}"),
            values.as_deref(),
            |p| match p {
                RawPort::Number(n) => port_number(*n).ok_or_else(|| format!("{n}: {PORT_RANGE}")),
                RawPort::Text(s) => port_text(s).ok_or_else(|| format!("{s:?}: {PORT_RANGE}")),
            },
        );
        if let Some(ports) = ports {
            checks.push(Check {
                negated,
                test: Test::Ports(ports),
            });
        }
    }
}

fn compile_condition(
    errs: &mut Errors,
    checks: &mut Vec<Check>,
    at: &str,
    condition: &RawCondition,
) {
    let RawCondition {
        key,
        values,
        not_values,
    } = condition;
    let kind = if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Some(Kind::Header(name)),
            Err(_) => {
                errs.push(
                    format!("{at}.key"),
                    format!("{key:?}: {name:?} is not a valid HTTP header name"),
                );
                None
            }
        }
    } else {
        match key.as_str() {
            "source.ip" => Some(Kind::PeerIp),
            "source.principal" => Some(Kind::Principals),
            "connection.sni" => Some(Kind::Sni),
            "destination.port" => Some(Kind::Ports),
            _ => {
                errs.push(
                    format!("{at}.key"),
                    format!("{key:?}: unsupported key; supported keys: {SUPPORTED_KEYS}"),
                );
                None
            }
        }
    };
    let is_set = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if !is_set(values) && !is_set(not_values) {
        errs.push(
            at.to_owned(),
            format!("condition on {key:?} needs values or not_values"),
        );
        return;
    }
    let Some(kind) = kind else { return };
    for (field, negated, values) in [("values", false, values), ("not_values", true, not_values)] {
        if let Some(test) = kind.clone().compile(errs, &format!("{at}.{field}"), values) {
            checks.push(Check { negated, test });
        }
    }
}

/// A field's value type: decides how its strings are parsed and which [`Test`] they build.
#[derive(Clone)]
enum Kind {
    Principals,
    Sans,
    CommonNames,
    PeerIp,
    Hosts,
    Methods,
    Paths,
    Ports,
    Header(HeaderName),
    Sni,
}

impl Kind {
    /// Compiles a string list; `None` when it is absent, empty (Istio treats an empty
    /// repeated field as unset) or has errors (recorded in `errs`).
    fn compile(self, errs: &mut Errors, at: &str, values: &Option<Vec<String>>) -> Option<Test> {
        let values = values.as_deref();
        let pattern = |v: &String| StrPattern::parse(v).map_err(|m| format!("{v:?}: {m}"));
        // Hosts and SNI compare ignoring case: store them lower-cased (hosts without a port).
        let lower = |v: &String| {
            StrPattern::parse(&strip_port(v).to_ascii_lowercase())
                .map_err(|m| format!("{v:?}: {m}"))
        };
        let path = |v: &String| PathPattern::parse(v).map_err(|m| format!("{v:?}: {m}"));
        let ip = |v: &String| ip_block(v).ok_or_else(|| format!("{v:?}: {IP_BLOCK}"));
        let port = |v: &String| port_text(v).ok_or_else(|| format!("{v:?}: {PORT_RANGE}"));
        Some(match self {
            Self::Principals => Test::Principals(list(errs, at, values, pattern)?),
            Self::Sans => Test::Sans(list(errs, at, values, pattern)?),
            Self::CommonNames => Test::CommonNames(list(errs, at, values, pattern)?),
            Self::Methods => Test::Methods(list(errs, at, values, pattern)?),
            Self::Header(name) => Test::Header(name, list(errs, at, values, pattern)?),
            Self::Hosts => Test::Hosts(list(errs, at, values, lower)?),
            Self::Sni => Test::Sni(list(errs, at, values, lower)?),
            Self::Paths => Test::Paths(list(errs, at, values, path)?),
            Self::PeerIp => Test::PeerIp(list(errs, at, values, ip)?),
            Self::Ports => Test::Ports(list(errs, at, values, port)?),
        })
    }
}

/// Compiles each element, recording errors at `at[index]`. `None` if absent, empty or bad.
fn list<R, T>(
    errs: &mut Errors,
    at: &str,
    values: Option<&[R]>,
    parse: impl Fn(&R) -> Result<T, String>,
) -> Option<Box<[T]>> {
    let values = values.filter(|v| !v.is_empty())?;
    let before = errs.0.len();
    let out: Vec<T> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            parse(v)
                .map_err(|m| errs.push(format!("{at}[{i}]"), m))
                .ok()
        })
        .collect();
    (errs.0.len() == before).then(|| out.into())
}

const PORT_RANGE: &str = "a port must be an integer in 1..=65535 (or a string of digits)";
const IP_BLOCK: &str =
    "expected an IP address or a CIDR, e.g. \"192.0.2.1\", \"10.0.0.0/8\", \"2001:db8::/32\"";

fn port_number(n: i64) -> Option<u16> {
    u16::try_from(n).ok().filter(|&p| p != 0)
}

fn port_text(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

/// An IP (a /32 or /128) or a CIDR, host bits cleared. An IPv4-mapped IPv6 block
/// (`::ffff:10.0.0.0/104`) becomes the IPv4 block it denotes, since peers are compared in
/// canonical form.
fn ip_block(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    let net = match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).ok()?),
            None => IpNet::V6(Ipv6Net::new(v6.addr(), v6.prefix_len()).ok()?),
        },
        other => other,
    };
    Some(net.trunc())
}

/// One problem in a `[[policy]]` table: the field path
/// (`policy[1].rules[0].to.paths[2]`) and what is allowed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Errors(Vec<PolicyError>);

impl Errors {
    fn push(&mut self, path: String, message: impl Into<String>) {
        self.0.push(PolicyError {
            path,
            message: message.into(),
        });
    }

    fn finish<T>(self, ok: T) -> Result<T, Vec<PolicyError>> {
        if self.0.is_empty() {
            Ok(ok)
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests;

//! Istio `AuthorizationPolicy` → `[[policy]]`.
//!
//! Istio's rule holds lists of sources and operations (any may match); a gatehouse rule holds
//! one of each, so a rule becomes one rule per (source, operation) pair. Within a source,
//! fields must all match, as in gatehouse, except that principals and namespaces are both
//! about the principal: with both, the namespaces become a `source.principal` condition.
//!
//! A constraint gatehouse cannot check is never silently dropped: the rule is left out of an
//! ALLOW policy (allowing less) and kept without it in a DENY or AUDIT policy (denying more),
//! and the report says which.

use serde_json::Value;

use super::doc::{Fields, Object, Reports};
use super::model::{Condition, Config, Matches, Policy, Rule};

pub(super) fn policy(o: &Object, spec: &mut Fields<'_>, cfg: &mut Config, r: &mut Reports) {
    spec.skip(&["selector", "targetRef", "targetRefs"]);
    let action_at = spec.at("action");
    let action = match spec.str("action", r).as_deref() {
        None | Some("ALLOW") => "allow",
        Some("DENY") => "deny",
        Some("AUDIT") => "audit",
        Some(other) => {
            r.push(
                action_at,
                format!(
                    "{other:?}: external authorization is not supported; this policy is left out"
                ),
            );
            spec.skip(&["rules", "provider"]);
            return;
        }
    };
    let mut rules = Vec::new();
    for (at, v) in spec.list("rules", r) {
        rules.extend(rule(&at, v, action, r));
    }
    let origin = o.label();
    if rules.is_empty() && action != "allow" {
        cfg.notes.push(format!(
            "{origin} ({action}) has no rule it can apply: it never matches, so it is left out."
        ));
        return;
    }
    let name = match cfg.policies.iter().any(|p| p.name == o.name) {
        true => format!("{}.{}", o.name, o.namespace),
        false => o.name.clone(),
    };
    let mut origin = origin;
    if rules.is_empty() {
        origin.push_str("\n# Its every rule was left out (see the list at the top): an allow policy without rules allows nothing.");
    }
    cfg.policies.push(Policy {
        origin,
        name,
        action,
        rules,
    });
}

/// What a source, an operation or a condition asks that gatehouse cannot check.
type Lost = Vec<(String, &'static str)>;

fn rule(at: &str, v: &Value, action: &str, r: &mut Reports) -> Vec<Rule> {
    let mut f = Fields::new(v, at, r);
    let mut lost = Lost::new();
    let sources: Vec<(Matches, Vec<Condition>)> = f
        .list("from", r)
        .into_iter()
        .map(|(at, v)| source(&at, v, &mut lost, r))
        .collect();
    let operations: Vec<Matches> = f
        .list("to", r)
        .into_iter()
        .map(|(at, v)| operation(&at, v, &mut lost, r))
        .collect();
    let mut when = Vec::new();
    for (at, v) in f.list("when", r) {
        when.extend(condition(&at, v, &mut lost, r));
    }
    lost.extend(f.unread().into_iter().map(|at| (at, "not a rule field")));
    f.skip(&["from", "to", "when"]);
    let keep = action != "allow";
    for (at, what) in &lost {
        r.push(
            at,
            match keep {
                true => format!(
                    "{what}: the {action} rule is kept without it (fails closed: it matches more)"
                ),
                false => format!(
                    "{what}: this allow rule is left out (fails closed: what it allowed is denied)"
                ),
            },
        );
    }
    if !lost.is_empty() && !keep {
        return Vec::new();
    }
    let sources = match sources.is_empty() {
        true => vec![Default::default()],
        false => sources,
    };
    let operations = match operations.is_empty() {
        true => vec![Vec::new()],
        false => operations,
    };
    let mut out = Vec::new();
    for (from, conditions) in &sources {
        for to in &operations {
            let mut rule = Rule {
                from: from.clone(),
                to: to.clone(),
                when: conditions.iter().chain(&when).cloned().collect(),
                ..Rule::default()
            };
            if out.is_empty() && sources.len() * operations.len() > 1 {
                rule.comments.push(format!(
                    "{at}: {} sources x {} operations",
                    sources.len(),
                    operations.len()
                ));
            }
            out.push(rule);
        }
    }
    out
}

/// `from[].source`: the fields and the conditions (namespaces beside principals).
fn source(at: &str, v: &Value, lost: &mut Lost, r: &mut Reports) -> (Matches, Vec<Condition>) {
    let mut item = Fields::new(v, at, r);
    let Some(mut s) = item.object("source", r) else {
        lost.extend(item.unread().into_iter().map(|at| (at, "not a source")));
        return Default::default();
    };
    let mut fields = Vec::new();
    let mut conditions = Vec::new();
    let namespaces = |list: Vec<String>| -> Vec<String> {
        list.iter()
            .map(|ns| format!("cluster.local/ns/{ns}/*"))
            .collect()
    };
    let principals = s.strings("principals", r);
    let ns = namespaces(s.strings("namespaces", r));
    let mut not_principals = s.strings("notPrincipals", r);
    not_principals.extend(namespaces(s.strings("notNamespaces", r)));
    match (principals.is_empty(), ns.is_empty()) {
        (false, false) => {
            fields.push(("principals", principals));
            conditions.push(Condition {
                key: "source.principal".into(),
                values: ns,
                ..Condition::default()
            });
        }
        (false, true) => fields.push(("principals", principals)),
        (true, false) => fields.push(("principals", ns)),
        (true, true) => {}
    }
    push(&mut fields, "not_principals", not_principals);
    push(&mut fields, "ip_blocks", s.strings("ipBlocks", r));
    push(&mut fields, "not_ip_blocks", s.strings("notIpBlocks", r));
    for (key, what) in [
        (
            "requestPrincipals",
            "requestPrincipals (JWT): gatehouse does not validate JWTs",
        ),
        (
            "notRequestPrincipals",
            "notRequestPrincipals (JWT): gatehouse does not validate JWTs",
        ),
        (
            "remoteIpBlocks",
            "remoteIpBlocks: gatehouse matches the peer address (ipBlocks)",
        ),
        (
            "notRemoteIpBlocks",
            "notRemoteIpBlocks: gatehouse matches the peer address (notIpBlocks)",
        ),
    ] {
        if s.get(key).is_some() {
            lost.push((s.at(key), what));
        }
    }
    lost.extend(s.unread().into_iter().map(|at| (at, "not a source field")));
    lost.extend(item.unread().into_iter().map(|at| (at, "not a source")));
    (fields, conditions)
}

fn push(fields: &mut Matches, key: &'static str, v: Vec<String>) {
    if !v.is_empty() {
        fields.push((key, v));
    }
}

/// `to[].operation`: the same fields, snake_case.
fn operation(at: &str, v: &Value, lost: &mut Lost, r: &mut Reports) -> Matches {
    let mut item = Fields::new(v, at, r);
    let mut fields = Vec::new();
    if let Some(mut op) = item.object("operation", r) {
        for (key, ours) in [
            ("hosts", "hosts"),
            ("notHosts", "not_hosts"),
            ("ports", "ports"),
            ("notPorts", "not_ports"),
            ("methods", "methods"),
            ("notMethods", "not_methods"),
            ("paths", "paths"),
            ("notPaths", "not_paths"),
        ] {
            push(&mut fields, ours, op.strings(key, r));
        }
        lost.extend(
            op.unread()
                .into_iter()
                .map(|at| (at, "not an operation field")),
        );
    }
    lost.extend(item.unread().into_iter().map(|at| (at, "not an operation")));
    fields
}

/// Keys gatehouse evaluates in `when`, as Istio names them.
const WHEN_KEYS: &[&str] = &[
    "source.ip",
    "source.principal",
    "connection.sni",
    "destination.port",
];

fn condition(at: &str, v: &Value, lost: &mut Lost, r: &mut Reports) -> Option<Condition> {
    let mut c = Fields::new(v, at, r);
    let key = c.str("key", r).unwrap_or_default();
    let mut values = c.strings("values", r);
    let mut not_values = c.strings("notValues", r);
    lost.extend(
        c.unread()
            .into_iter()
            .map(|at| (at, "not a condition field")),
    );
    let key = if key == "source.namespace" {
        for v in values.iter_mut().chain(not_values.iter_mut()) {
            *v = format!("cluster.local/ns/{v}/*");
        }
        "source.principal".to_owned()
    } else if key.starts_with("request.headers[") || WHEN_KEYS.contains(&key.as_str()) {
        key
    } else {
        lost.push((
            format!("{at}.key"),
            "a condition key gatehouse does not evaluate (request.auth.*, destination.ip, ...)",
        ));
        return None;
    };
    Some(Condition {
        key,
        values,
        not_values,
    })
}

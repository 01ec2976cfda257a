//! The authorization policy engine: Istio AuthorizationPolicy semantics over a
//! [`RequestView`], as a pure function.
//!
//! [`Policies::compile`] validates the `[[policy]]` tables once, at load, into flat compiled
//! rules (patterns parsed, hosts lower-cased, CIDRs parsed); [`evaluate`] then decides a
//! request without allocating and returns a [`Decision`] that carries *why*: the deciding
//! policy and rule, or that no ALLOW policy matched, plus the AUDIT policies that matched.
//! The metrics, the access log and `gatehouse authz` all read that one value.
//!
//! Order (SPEC §3): any DENY policy matches → deny (the first in file order, with its first
//! matching rule); else no ALLOW policy exists → allow; else allow iff an ALLOW policy
//! matches. AUDIT policies never change the verdict and are all evaluated.
//!
//! Where SPEC is silent (Istio's behaviour unless noted; the README lists these too):
//! - an empty list (`paths = []`) is an absent field, as for proto3 repeated fields;
//! - a missing fact (no client cert, Host, SNI or header) never matches a positive field and
//!   always passes a `not_*` field or `not_values`;
//! - principal `*` is any verified certificate; elsewhere `*` is a non-empty value (a SAN, the
//!   CN) or, for a header, presence even with an empty value;
//! - host patterns are lower-cased and lose their `:port` at compile time; `connection.sni`
//!   also ignores case; methods take string patterns, case-sensitive;
//! - IPv4-mapped IPv6 peers (and `::ffff:a.b.c.d/n` blocks) compare as IPv4; host bits of a
//!   CIDR are ignored;
//! - [`AuditSet`] holds policy indices below [`AuditSet::CAPACITY`] (1024); an audit policy
//!   further down the file is a config error.
//!
//! Not here: extracting the identity (`identity.rs`), normalizing the path
//! (`request/normalize.rs`), turning a deny into a 403 or a metric (`http/service.rs`).

mod compile;
mod pattern;
pub mod raw;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::net::IpAddr;

pub(crate) use self::compile::PolicyError;
use self::compile::{Policy, Test};
use self::pattern::Case;
use self::raw::RawPolicy;
use crate::host::strip_port;
use crate::identity::PeerIdentity;
use crate::request::RequestView;

/// What a policy does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Allow,
    Deny,
    Audit,
}

impl Action {
    /// The config spelling, also the `action` metric label: `allow`, `deny`, `audit`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

/// Compiled, validated policies in file order; immutable, cheap to share inside an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    policies: Box<[Policy]>,
    /// Indices into `policies`, per action, in file order.
    deny: Box<[usize]>,
    allow: Box<[usize]>,
    audit: Box<[usize]>,
}

impl Policies {
    /// Compiles and validates `[[policy]]` tables. Errors carry field paths like
    /// `policy[1].rules[0].to.paths[2]` and say what is allowed, e.g.
    /// `policy[1].rules[0].to.paths[2]: "*a*": '*' is allowed only at the start or end`.
    /// Every problem is reported, in file order.
    pub fn compile(raw: &[RawPolicy]) -> Result<Self, Vec<PolicyError>> {
        let policies = compile::policies(raw)?;
        let indices = |action: Action| -> Box<[usize]> {
            policies
                .iter()
                .enumerate()
                .filter(|(_, p)| p.action == action)
                .map(|(i, _)| i)
                .collect()
        };
        Ok(Self {
            deny: indices(Action::Deny),
            allow: indices(Action::Allow),
            audit: indices(Action::Audit),
            policies: policies.into(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// The name of policy `index` (file order). Panics if `index >= len()`, like slice indexing;
    /// every index in a [`Decision`] from these policies is in range.
    pub fn name(&self, index: usize) -> &str {
        &self.policies[index].name
    }

    /// The name of policy `index`, shared (a metric label). Panics if `index >= len()`.
    pub(crate) fn label(&self, index: usize) -> &std::sync::Arc<String> {
        &self.policies[index].name
    }

    /// The action of policy `index`. Panics if `index >= len()`.
    pub(crate) fn action(&self, index: usize) -> Action {
        self.policies[index].action
    }

    /// The first rule of policy `index` that matches, if any. `index` comes from `deny`,
    /// `allow` or `audit`, which only hold indices into `policies`.
    fn first_match(&self, index: usize, facts: &Facts<'_>) -> Option<usize> {
        self.policies[index].rules.iter().position(|rule| {
            rule.checks
                .iter()
                .all(|check| check.test.matches(facts) != check.negated)
        })
    }
}

/// Decides one request. Never allocates.
pub fn evaluate(policies: &Policies, req: &RequestView<'_>) -> Decision {
    let facts = Facts::new(req);
    let mut audits = AuditSet::default();
    for &index in &policies.audit {
        if policies.first_match(index, &facts).is_some() {
            audits.insert(index);
        }
    }
    let deny = policies
        .deny
        .iter()
        .find_map(|&policy| Some((policy, policies.first_match(policy, &facts)?)));
    let verdict = if let Some((policy, rule)) = deny {
        Verdict::Deny(DenyReason::Policy { policy, rule })
    } else if policies.allow.is_empty() {
        Verdict::Allow { policy: None }
    } else {
        match policies
            .allow
            .iter()
            .find_map(|&policy| Some((policy, policies.first_match(policy, &facts)?)))
        {
            Some(hit) => Verdict::Allow { policy: Some(hit) },
            None => Verdict::Deny(DenyReason::NoAllowMatch),
        }
    };
    Decision { verdict, audits }
}

/// The outcome of [`evaluate`], with the reason. Indices refer to the [`Policies`] it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub(crate) verdict: Verdict,
    /// The AUDIT policies that matched; they never change the verdict.
    pub audits: AuditSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `policy` is `(policy index, rule index)` of the first ALLOW policy (file order) that
    /// matched, and its first matching rule; `None` when no ALLOW policy exists.
    Allow {
        policy: Option<(usize, usize)>,
    },
    Deny(DenyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DenyReason {
    /// The first DENY policy (file order) that matched, and its first matching rule.
    Policy { policy: usize, rule: usize },
    /// ALLOW policies exist and none matched.
    NoAllowMatch,
}

impl DenyReason {
    /// The `reason` label of `gatehouse_denied_requests_total`: `policy` | `no_allow_match`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Policy { .. } => "policy",
            Self::NoAllowMatch => "no_allow_match",
        }
    }
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allow { .. })
    }

    /// `(policy, rule)` of the ALLOW or DENY policy that decided, if one did.
    pub(crate) fn deciding_rule(&self) -> Option<(usize, usize)> {
        match self.verdict {
            Verdict::Allow { policy } => policy,
            Verdict::Deny(DenyReason::Policy { policy, rule }) => Some((policy, rule)),
            Verdict::Deny(DenyReason::NoAllowMatch) => None,
        }
    }

    /// The name of the deciding policy (the access log's `policy` field), if one decided.
    pub fn deciding_policy<'p>(&self, p: &'p Policies) -> Option<&'p str> {
        self.deciding_rule().map(|(policy, _)| p.name(policy))
    }

    /// Names of the AUDIT policies that matched, in file order.
    pub(crate) fn audit_policies<'p>(&self, p: &'p Policies) -> impl Iterator<Item = &'p str> + 'p {
        self.audits.iter().map(|index| p.name(index))
    }

    /// A human explanation for `gatehouse authz`: the first line starts with `ALLOW` or
    /// `DENY`, then one `AUDIT` line per matched audit policy.
    pub(crate) fn explain(&self, p: &Policies) -> String {
        let mut out = match self.verdict {
            Verdict::Allow { policy: None } => "ALLOW (no allow policies)".to_owned(),
            Verdict::Allow {
                policy: Some((policy, rule)),
            } => {
                format!("ALLOW by policy {:?} rule {rule}", p.name(policy))
            }
            Verdict::Deny(DenyReason::Policy { policy, rule }) => {
                format!("DENY by policy {:?} rule {rule}", p.name(policy))
            }
            Verdict::Deny(DenyReason::NoAllowMatch) => "DENY: no ALLOW policy matched".to_owned(),
        };
        for name in self.audit_policies(p) {
            let _ = write!(out, "\nAUDIT policy {name:?} matched");
        }
        out
    }
}

/// 16 words: 1024 policy indices, 128 bytes per decision.
const AUDIT_WORDS: usize = 16;

/// The AUDIT policies that matched: a fixed bitset of policy indices, so a [`Decision`]
/// stays `Copy` and `evaluate` never allocates. It holds indices below
/// [`AuditSet::CAPACITY`]; compile refuses an audit policy at a higher index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditSet {
    words: [u64; AUDIT_WORDS],
}

impl AuditSet {
    /// Audit policies must be among the first 1024 policies of the file: far past any real
    /// policy set, and 128 bytes per decision.
    pub const CAPACITY: usize = AUDIT_WORDS * 64;

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The number of audit policies that matched.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether policy `index` is in the set.
    pub fn contains(&self, index: usize) -> bool {
        self.words
            .get(index / 64)
            .is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    /// The matched audit policies' indices, in file order. The iterator owns a copy of the
    /// set, so it borrows nothing.
    pub fn iter(&self) -> AuditIter {
        AuditIter {
            words: self.words,
            word: 0,
        }
    }

    fn insert(&mut self, index: usize) {
        // Always in range: compile refuses audit policies at index >= CAPACITY.
        if let Some(word) = self.words.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }
}

impl IntoIterator for &AuditSet {
    type Item = usize;
    type IntoIter = AuditIter;

    fn into_iter(self) -> AuditIter {
        self.iter()
    }
}

/// Iterator over the policy indices of an [`AuditSet`], ascending.
#[derive(Debug, Clone)]
pub struct AuditIter {
    words: [u64; AUDIT_WORDS],
    word: usize,
}

impl Iterator for AuditIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while let Some(bits) = self.words.get_mut(self.word) {
            if *bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                *bits &= *bits - 1;
                return Some(self.word * 64 + bit);
            }
            self.word += 1;
        }
        None
    }
}

// === matching ===

/// The request facts every check reads, derived once per evaluation.
struct Facts<'a> {
    req: &'a RequestView<'a>,
    identity: Option<&'a PeerIdentity>,
    /// The peer IP with IPv4-mapped IPv6 turned into IPv4.
    peer_ip: IpAddr,
    /// Host without a port (the view's already has none; stripped again defensively).
    host: Option<&'a str>,
}

impl<'a> Facts<'a> {
    fn new(req: &'a RequestView<'a>) -> Self {
        Self {
            req,
            identity: req.conn.identity.as_deref(),
            peer_ip: req.conn.peer.ip().to_canonical(),
            host: req.host.map(strip_port),
        }
    }
}

impl Test {
    fn matches(&self, f: &Facts<'_>) -> bool {
        use pattern::StrPattern as P;
        let any = |patterns: &[P], value: &str, case: Case| {
            patterns.iter().any(|p| p.matches(value, case))
        };
        match self {
            // `*` means "any verified client certificate", even one without a principal.
            Self::Principals(ps) => f.identity.is_some_and(|id| {
                ps.iter().any(|p| {
                    matches!(p, P::Presence)
                        || id.principals.iter().any(|v| p.matches(v, Case::Sensitive))
                })
            }),
            Self::Sans(ps) => f.identity.is_some_and(|id| {
                id.dns_sans.iter().any(|v| any(ps, v, Case::Insensitive))
                    || id
                        .uri_sans
                        .iter()
                        .chain(&id.email_sans)
                        .chain(&id.ip_sans)
                        .any(|v| any(ps, v, Case::Sensitive))
            }),
            Self::CommonNames(ps) => f
                .identity
                .and_then(|id| id.common_name.as_deref())
                .is_some_and(|cn| any(ps, cn, Case::Sensitive)),
            Self::PeerIp(nets) => nets.iter().any(|net| net.contains(&f.peer_ip)),
            Self::Hosts(ps) => f.host.is_some_and(|h| any(ps, h, Case::Insensitive)),
            Self::Methods(ps) => any(ps, f.req.method.as_str(), Case::Sensitive),
            Self::Paths(ps) => ps.iter().any(|p| p.matches(f.req.path)),
            Self::Ports(ports) => ports.contains(&f.req.conn.listener_port),
            Self::Header(name, ps) => {
                let values = || {
                    f.req
                        .headers
                        .get_all(name)
                        .into_iter()
                        .map(|v| v.as_bytes())
                };
                ps.iter().any(|p| p.matches_joined(values))
            }
            Self::Sni(ps) => f
                .req
                .conn
                .sni
                .as_deref()
                .is_some_and(|sni| any(ps, sni, Case::Insensitive)),
        }
    }
}

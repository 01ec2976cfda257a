#![allow(unsafe_code)]
//! What does one authorization decision cost as the policy set grows, and does it allocate?
//!
//! `authz::evaluate` runs on every request, after normalization and before routing. This
//! bench compiles generated policy sets of 1, 10, 100 and 1000 `[[policy]]` tables (a
//! repeating mix of ALLOW and DENY policies using principals, SANs, CNs, ip_blocks, hosts,
//! methods, exact/prefix/suffix paths, `{*}`/`{**}` templates, ports, and `when` on headers)
//! and times `evaluate()` on three requests per size:
//!
//! - `deny`: matched by the first DENY policy (index 1), the cheapest decision (not run for
//!   1 policy, which has no DENY);
//! - `hit`: allowed by the ALLOW policy at index 0 (1 and 10 policies), 50 or 500, i.e. about
//!   halfway down the file, after every DENY policy was checked (DENY wins, so all of them
//!   are walked first);
//! - `miss`: an authenticated client that no policy matches: every policy is walked, then
//!   "no ALLOW policy matched". This is the worst case for a given size.
//!
//! How to read it: ids are `evaluate/<case>/<policies>`; the middle number of criterion's
//! `time: [low mid high]` is the cost of one decision. Expect cost to grow about linearly
//! with the number of policies walked (`miss` ≈ n × per-policy cost); a step between sizes
//! far from 10× means something other than the walk dominates (fixed per-call overhead at
//! small sizes, cache misses on the compiled policies at large ones). Before timing, each
//! (size, case) runs 10,000 evaluations under a counting global allocator and panics if any
//! allocation happened on this thread: `evaluate` promises to be allocation-free, and a
//! failure here is a regression, not noise. The `authz: N allocations ...` lines on stderr
//! are that check.
//!
//! Run: `cargo bench --bench authz` (add `-- hit` to filter by id).

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::authz::raw::RawPolicy;
use gatehouse::authz::{Policies, evaluate};
use gatehouse::identity::PeerIdentity;
use gatehouse::request::{ConnInfo, RequestView};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

// === policy sets ===

/// Policy set sizes. 1000 is past any hand-written config, and still under
/// `AuditSet::CAPACITY`.
const SIZES: [usize; 4] = [1, 10, 100, 1000];

/// Evaluations per allocation check.
const CHECK_ITERATIONS: usize = 10_000;

#[derive(serde::Deserialize)]
struct Wrapper {
    policy: Vec<RawPolicy>,
}

/// Policy `i` as TOML. Kinds repeat every 10 policies (7 ALLOW, 3 DENY), each naming its own
/// namespace, host or prefix so that requests match at most the one policy aimed at them.
fn policy(i: usize) -> String {
    let octet = i % 256;
    match i % 10 {
        0 => format!(
            r#"[[policy]]
name = "allow-api-{i}"
action = "allow"
  [[policy.rules]]
  from.principals = ["cluster.local/ns/team-{i}/sa/api"]
  to.methods = ["GET", "HEAD"]
  to.paths = ["/api/v{i}/*", "/api/v{i}"]
"#
        ),
        1 => format!(
            r#"[[policy]]
name = "deny-quarantine-{i}"
action = "deny"
  [[policy.rules]]
  from.principals = ["cluster.local/ns/quarantine-{i}/*"]
"#
        ),
        2 => format!(
            r#"[[policy]]
name = "allow-files-{i}"
action = "allow"
  [[policy.rules]]
  from.sans = ["*.svc-{i}.example.com"]
  to.hosts = ["files-{i}.example.com"]
  to.paths = ["/files/{i}/{{**}}"]
"#
        ),
        3 => format!(
            r#"[[policy]]
name = "allow-health-{i}"
action = "allow"
  [[policy.rules]]
  from.ip_blocks = ["10.{octet}.0.0/16", "fd00:{i:x}::/32"]
  to.methods = ["GET"]
  to.paths = ["/status/{i}/{{*}}/health"]
"#
        ),
        4 => format!(
            r#"[[policy]]
name = "allow-reports-{i}"
action = "allow"
  [[policy.rules]]
  from.common_names = ["batch-{i}"]
  to.paths = ["*/report-{i}.json"]
"#
        ),
        5 => format!(
            r#"[[policy]]
name = "deny-debug-{i}"
action = "deny"
  [[policy.rules]]
  to.hosts = ["*.internal-{i}.example.com"]
  when = [{{ key = "request.headers[x-debug]", values = ["on-{i}"] }}]
"#
        ),
        6 => format!(
            r#"[[policy]]
name = "allow-public-{i}"
action = "allow"
  [[policy.rules]]
  from.principals = ["*"]
  to.methods = ["GET"]
  to.paths = ["/public/{i}"]
"#
        ),
        7 => format!(
            r#"[[policy]]
name = "allow-env-{i}"
action = "allow"
  [[policy.rules]]
  to.hosts = ["env-{i}.example.com"]
  to.methods = ["GET", "POST"]
  when = [{{ key = "request.headers[x-env]", values = ["prod-{i}*"], not_values = ["*,canary"] }}]
"#
        ),
        8 => format!(
            r#"[[policy]]
name = "deny-blocked-{i}"
action = "deny"
  [[policy.rules]]
  from.ip_blocks = ["203.0.{octet}.0/24", "2001:db8:{i:x}::/48"]
  to.paths = ["/admin/*"]
"#
        ),
        _ => format!(
            r#"[[policy]]
name = "allow-team-{i}"
action = "allow"
  [[policy.rules]]
  from.principals = ["cluster.local/ns/team-{i}/*"]
  to.ports = [8443]
  to.not_paths = ["/admin/*"]
"#
        ),
    }
}

fn policies(n: usize) -> Policies {
    let mut text = String::new();
    for i in 0..n {
        let _ = writeln!(text, "{}", policy(i));
    }
    let raw: Wrapper = toml::from_str(&text).expect("generated policies parse");
    let policies = Policies::compile(&raw.policy).expect("generated policies compile");
    assert_eq!(policies.len(), n);
    policies
}

/// The ALLOW policy the `hit` request is aimed at: kind 0, halfway down the file.
fn hit_target(n: usize) -> usize {
    n / 2 / 10 * 10
}

// === requests ===

/// Owns the parts of a request and lends a [`RequestView`].
struct Req {
    method: Method,
    host: String,
    path: String,
    headers: HeaderMap,
    conn: ConnInfo,
}

impl Req {
    fn new(method: Method, host: &str, path: &str, peer: &str, identity: PeerIdentity) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("user-agent", "curl/8.5.0"),
            ("accept", "application/json"),
            ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("x-env", "staging"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        Self {
            method,
            host: host.to_owned(),
            path: path.to_owned(),
            headers,
            conn: ConnInfo {
                peer: SocketAddr::new(peer.parse().expect("peer ip"), 51234),
                listener_port: 8443,
                sni: Some(host.to_owned()),
                server: 0,
                identity: Some(Arc::new(identity)),
                chain: None,
            },
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: Some(&self.host),
            path: &self.path,
            headers: &self.headers,
            conn: &self.conn,
        }
    }
}

fn identity(principal: &str, dns_san: &str, cn: &str) -> PeerIdentity {
    PeerIdentity {
        principals: vec![principal.to_owned()],
        uri_sans: vec![format!("spiffe://{principal}")],
        dns_sans: vec![dns_san.to_owned()],
        common_name: Some(cn.to_owned()),
        subject: format!("CN={cn},O=Example"),
        ..PeerIdentity::default()
    }
}

/// A benchmarked case: its id, the request, and the decision it must get.
struct Case {
    name: &'static str,
    req: Req,
    /// `(allowed, deciding policy)`; `(false, None)` is "no ALLOW policy matched".
    expect: (bool, Option<String>),
}

fn cases(n: usize) -> Vec<Case> {
    let h = hit_target(n);
    let mut cases = Vec::new();
    if n > 1 {
        cases.push(Case {
            name: "deny",
            req: Req::new(
                Method::POST,
                "api.example.com",
                "/api/v1/users",
                "10.20.30.40",
                identity(
                    "cluster.local/ns/quarantine-1/sa/worker",
                    "worker.quarantine.example.com",
                    "worker",
                ),
            ),
            expect: (false, Some("deny-quarantine-1".to_owned())),
        });
    }
    cases.push(Case {
        name: "hit",
        req: Req::new(
            Method::GET,
            "api.example.com",
            &format!("/api/v{h}/users/42"),
            "10.20.30.40",
            identity(
                &format!("cluster.local/ns/team-{h}/sa/api"),
                "api.team.example.com",
                "api",
            ),
        ),
        expect: (true, Some(format!("allow-api-{h}"))),
    });
    cases.push(Case {
        name: "miss",
        req: Req::new(
            Method::GET,
            "api.example.com",
            "/api/v1/users/42",
            "192.0.2.7",
            identity(
                "cluster.local/ns/unknown/sa/default",
                "client.unknown.org",
                "unknown",
            ),
        ),
        expect: (false, None),
    });
    cases
}

// === benches ===

fn bench_evaluate(c: &mut Criterion) {
    // Control: the counter sees an allocation on this thread.
    let control = allocations_in(|| drop(black_box(Box::new(1u64))));
    assert_eq!(control, 1, "the counting allocator is not counting");

    let mut group = c.benchmark_group("evaluate");
    for n in SIZES {
        let policies = policies(n);
        for case in cases(n) {
            let view = case.req.view();
            let decision = evaluate(&policies, &view);
            let got = (
                decision.is_allowed(),
                decision.deciding_policy(&policies).map(str::to_owned),
            );
            assert_eq!(got, case.expect, "{n} policies, {}", case.name);

            let allocations = allocations_in(|| {
                for _ in 0..CHECK_ITERATIONS {
                    black_box(evaluate(black_box(&policies), black_box(&view)));
                }
            });
            eprintln!(
                "authz: {allocations} allocations in {CHECK_ITERATIONS} evaluations ({n} policies, {})",
                case.name
            );
            assert_eq!(
                allocations, 0,
                "REGRESSION: authz::evaluate allocated ({n} policies, {})",
                case.name
            );

            group.bench_with_input(BenchmarkId::new(case.name, n), &view, |b, view| {
                b.iter(|| evaluate(black_box(&policies), black_box(view)));
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the bench machine is small and shared.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_evaluate
}
criterion_main!(benches);

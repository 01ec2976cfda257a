#![allow(unsafe_code)]
//! `authz::evaluate` must not allocate: it runs on every request. A counting global
//! allocator (this test binary only) counts allocations made on this thread while
//! `evaluate` runs, for 10 policies, on requests that hit and miss every kind of field.
//!
//! Needs `[lints.rust] unsafe_code = "deny"` rather than `"forbid"`: a global allocator is an
//! `unsafe impl`, and `forbid` cannot be lifted by the `allow` above.

mod common;

use std::hint::black_box;

use common::policies::{Req, identity, policies, req};
use gatehouse::authz::evaluate;
use gatehouse::request::RequestView;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

const POLICIES: &str = r#"
[[policy]]
name = "audit-admin"
action = "audit"
  [[policy.rules]]
  to.paths = ["/admin/*"]
[[policy]]
name = "audit-all"
action = "audit"
  [[policy.rules]]
[[policy]]
name = "deny-teapot"
action = "deny"
  [[policy.rules]]
  from.principals = ["test.client"]
  to.paths = ["/status/418"]
[[policy]]
name = "deny-outside"
action = "deny"
  [[policy.rules]]
  from.not_ip_blocks = ["10.0.0.0/8", "2001:db8::/32"]
[[policy]]
name = "deny-debug-header"
action = "deny"
  [[policy.rules]]
  when = [{ key = "request.headers[x-debug]", values = ["on,*"] }]
[[policy]]
name = "allow-api"
action = "allow"
  [[policy.rules]]
  from.sans = ["*.example.com"]
  to.hosts = ["*.test.com"]
  to.paths = ["/api/{*}/status", "/files/{**}"]
  to.methods = ["GET", "HEAD"]
[[policy]]
name = "allow-cn"
action = "allow"
  [[policy.rules]]
  from.common_names = ["svc-*"]
  to.ports = [8443, "9443"]
  to.not_paths = ["/admin/*"]
[[policy]]
name = "allow-sni"
action = "allow"
  [[policy.rules]]
  when = [{ key = "connection.sni", values = ["*.internal"] }, { key = "destination.port", not_values = ["80"] }]
[[policy]]
name = "allow-principal"
action = "allow"
  [[policy.rules]]
  when = [{ key = "source.principal", values = ["ops/*"] }, { key = "source.ip", values = ["10.1.0.0/16"] }]
[[policy]]
name = "allow-header"
action = "allow"
  [[policy.rules]]
  from.principals = ["*"]
  when = [{ key = "request.headers[x-env]", values = ["prod*"], not_values = ["*,dev"] }]
"#;

#[test]
fn evaluate_does_not_allocate() {
    let policies = policies(POLICIES);
    assert_eq!(policies.len(), 10);

    let requests = [
        req(
            "/status/418",
            "10.0.0.1",
            &[],
            Some(identity(Some("test.client"), &[], None)),
            Some("a.test.com"),
        ),
        req("/", "192.0.2.1", &[], None, None),
        req(
            "/",
            "::ffff:10.0.0.1",
            &[("x-debug", "on"), ("x-debug", "1")],
            None,
            None,
        ),
        req(
            "/api/v1/status",
            "2001:db8::1",
            &[],
            Some(identity(None, &["Client.Example.COM"], None)),
            None,
        ),
        req(
            "/files/a/b",
            "10.0.0.1",
            &[],
            Some(identity(None, &["c.example.com"], None)),
            None,
        ),
        req(
            "/admin/x",
            "10.0.0.1",
            &[],
            Some(identity(None, &[], Some("svc-a"))),
            None,
        ),
        req("/x", "10.0.0.1", &[], None, Some("db.internal")),
        req(
            "/x",
            "10.1.2.3",
            &[],
            Some(identity(Some("ops/alice"), &[], None)),
            None,
        ),
        req(
            "/x",
            "10.0.0.1",
            &[("x-env", "prod")],
            Some(identity(None, &[], None)),
            None,
        ),
        req(
            "/x",
            "10.0.0.1",
            &[("x-env", "prod"), ("x-env", "dev")],
            Some(identity(None, &[], None)),
            None,
        ),
        req(
            "/nothing",
            "10.0.0.1",
            &[("x-env", "dev")],
            Some(identity(Some("nobody"), &["n.other.org"], Some("nobody"))),
            Some("a.test.com"),
        ),
    ];
    let views: Vec<RequestView<'_>> = requests.iter().map(Req::view).collect();
    let mut decisions = Vec::with_capacity(views.len() * 100);

    let allocations = allocations_in(|| {
        for _ in 0..100 {
            for view in &views {
                let d = evaluate(black_box(&policies), black_box(view));
                decisions.push(d);
            }
        }
    });
    assert_eq!(allocations, 0, "evaluate allocated");

    // Control: the counter does see an allocation on this thread.
    let mut control = None;
    let seen = allocations_in(|| control = Some(black_box(Box::new(decisions.len()))));
    assert_eq!(seen, 1, "the counting allocator is not counting");
    drop(control);

    // The requests above exercise the intended paths: deny, allow by each policy, no match.
    let got: Vec<(bool, Option<&str>)> = decisions[..views.len()]
        .iter()
        .map(|d| (d.is_allowed(), d.deciding_policy(&policies)))
        .collect();
    let want = [
        (false, Some("deny-teapot")),
        (false, Some("deny-outside")),
        (false, Some("deny-debug-header")),
        (true, Some("allow-api")),
        (true, Some("allow-api")),
        (false, None),
        (true, Some("allow-sni")),
        (true, Some("allow-principal")),
        (true, Some("allow-header")),
        (false, None),
        (false, None),
    ];
    assert_eq!(got, want);
    assert!(decisions.iter().all(|d| !d.audits.is_empty()));
}

//! The semantics matrix: one row per behaviour, each a policy set in TOML, a request and
//! the expected decision (verdict, deciding policy and rule, matched audit policies).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::raw::RawPolicy;
use super::*;
use crate::request::ConnInfo;

#[derive(serde::Deserialize)]
struct Wrapper {
    #[serde(default)]
    policy: Vec<RawPolicy>,
}

pub(super) fn policies(toml_text: &str) -> Policies {
    let w: Wrapper =
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("bad TOML {toml_text}: {e}"));
    Policies::compile(&w.policy).unwrap_or_else(|e| panic!("bad policies {toml_text}: {e:?}"))
}

/// Owns a request's parts and lends a [`RequestView`]. Defaults: `GET https://test.com/` from
/// 10.0.0.1 on listener port 8443, SNI `test.com`, no client certificate.
struct Req {
    method: Method,
    host: Option<String>,
    path: String,
    headers: HeaderMap,
    conn: ConnInfo,
}

fn req() -> Req {
    Req {
        method: Method::GET,
        host: Some("test.com".into()),
        path: "/".into(),
        headers: HeaderMap::new(),
        conn: ConnInfo {
            peer: "10.0.0.1:40000".parse().unwrap(),
            listener_port: 8443,
            sni: Some("test.com".into()),
            server: 0,
            identity: None,
            chain: None,
        },
    }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.path,
            headers: &self.headers,
            conn: &self.conn,
        }
    }
    fn method(mut self, m: &str) -> Self {
        self.method = Method::from_bytes(m.as_bytes()).unwrap();
        self
    }
    fn host(mut self, h: Option<&str>) -> Self {
        self.host = h.map(str::to_owned);
        self
    }
    fn path(mut self, p: &str) -> Self {
        self.path = p.into();
        self
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
        self.headers.append(name, HeaderValue::from_str(v).unwrap());
        self
    }
    fn peer(mut self, ip: &str) -> Self {
        self.conn.peer = SocketAddr::new(ip.parse().unwrap(), 40000);
        self
    }
    fn port(mut self, p: u16) -> Self {
        self.conn.listener_port = p;
        self
    }
    fn sni(mut self, s: Option<&str>) -> Self {
        self.conn.sni = s.map(str::to_owned);
        self
    }
    /// A verified client certificate (with no SAN and no CN unless added).
    fn id(&mut self) -> &mut PeerIdentity {
        Arc::make_mut(self.conn.identity.get_or_insert_with(Default::default))
    }
    fn cert(mut self) -> Self {
        self.id();
        self
    }
    /// `spiffe://p` URI SAN, hence principal `p`.
    fn principal(mut self, p: &str) -> Self {
        let id = self.id();
        id.principals.push(p.into());
        id.uri_sans.push(format!("spiffe://{p}"));
        self
    }
    fn dns(mut self, d: &str) -> Self {
        self.id().dns_sans.push(d.into());
        self
    }
    fn uri(mut self, u: &str) -> Self {
        self.id().uri_sans.push(u.into());
        self
    }
    fn email(mut self, e: &str) -> Self {
        self.id().email_sans.push(e.into());
        self
    }
    fn ip_san(mut self, ip: &str) -> Self {
        self.id().ip_sans.push(ip.into());
        self
    }
    fn cn(mut self, cn: &str) -> Self {
        self.id().common_name = Some(cn.into());
        self
    }
}

/// One allow policy `a` with one rule.
fn allow(rule: &str) -> String {
    format!("[[policy]]\nname = \"a\"\naction = \"allow\"\n[[policy.rules]]\n{rule}\n")
}

/// One deny policy `d` with one rule.
fn deny(rule: &str) -> String {
    format!("[[policy]]\nname = \"d\"\naction = \"deny\"\n[[policy.rules]]\n{rule}\n")
}

fn policy(name: &str, action: &str, rules: &[&str]) -> String {
    let mut s = format!("[[policy]]\nname = \"{name}\"\naction = \"{action}\"\n");
    for rule in rules {
        s.push_str(&format!("[[policy.rules]]\n{rule}\n"));
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Allowed because no allow policy exists.
    Open,
    AllowBy(&'static str, usize),
    DenyBy(&'static str, usize),
    NoMatch,
}
use Want::*;

/// The allow policy `a` of [`allow`] matched / did not.
const HIT: Want = AllowBy("a", 0);
const MISS: Want = NoMatch;
/// The deny policy `d` of [`deny`] matched.
const DENIED: Want = DenyBy("d", 0);

struct Case {
    name: &'static str,
    policies: String,
    req: Req,
    want: Want,
    audits: &'static [&'static str],
}

fn case(name: &'static str, policies: impl Into<String>, req: Req, want: Want) -> Case {
    Case {
        name,
        policies: policies.into(),
        req,
        want,
        audits: &[],
    }
}

impl Case {
    fn audits(mut self, audits: &'static [&'static str]) -> Self {
        self.audits = audits;
        self
    }
}

fn outcome(p: &Policies, d: &Decision) -> Want {
    match d.verdict {
        Verdict::Allow { policy: None } => Open,
        Verdict::Allow {
            policy: Some((i, r)),
        } => AllowBy(leak(p.name(i)), r),
        Verdict::Deny(DenyReason::Policy { policy, rule }) => DenyBy(leak(p.name(policy)), rule),
        Verdict::Deny(DenyReason::NoAllowMatch) => NoMatch,
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

#[test]
fn semantics_matrix() {
    let hdr = |k: &str, values: &str| {
        format!("when = [{{ key = \"request.headers[{k}]\", values = [{values}] }}]")
    };
    let not_hdr = |k: &str, values: &str| {
        format!("when = [{{ key = \"request.headers[{k}]\", not_values = [{values}] }}]")
    };
    let when = |key: &str, field: &str, values: &str| {
        format!("when = [{{ key = \"{key}\", {field} = [{values}] }}]")
    };
    let audit_all = policy("au", "audit", &[""]);

    #[rustfmt::skip]
    let cases = vec![
        // --- from.principals / not_principals
        case("principals exact", allow(r#"from.principals = ["test.client"]"#), req().principal("test.client"), HIT),
        case("principals exact, other principal", allow(r#"from.principals = ["test.client"]"#), req().principal("other"), MISS),
        case("principals, anonymous", allow(r#"from.principals = ["test.client"]"#), req(), MISS),
        case("principals prefix", allow(r#"from.principals = ["test.*"]"#), req().principal("test.client"), HIT),
        case("principals suffix", allow(r#"from.principals = ["*.client"]"#), req().principal("test.client"), HIT),
        case("principals * = any cert, even without principal", allow(r#"from.principals = ["*"]"#), req().cert(), HIT),
        case("principals *, anonymous", allow(r#"from.principals = ["*"]"#), req(), MISS),
        case("principals, any principal may match", allow(r#"from.principals = ["b"]"#), req().principal("a").principal("b"), HIT),
        case("principals case-sensitive", allow(r#"from.principals = ["Test.Client"]"#), req().principal("test.client"), MISS),
        case("principals, any listed value", allow(r#"from.principals = ["x", "y", "test.client"]"#), req().principal("test.client"), HIT),
        case("not_principals, anonymous passes", allow(r#"from.not_principals = ["bad"]"#), req(), HIT),
        case("not_principals, listed principal", allow(r#"from.not_principals = ["bad"]"#), req().principal("bad"), MISS),
        case("not_principals, other principal", allow(r#"from.not_principals = ["bad"]"#), req().principal("good"), HIT),
        case("not_principals *, anonymous", allow(r#"from.not_principals = ["*"]"#), req(), HIT),
        case("not_principals *, authenticated", allow(r#"from.not_principals = ["*"]"#), req().cert(), MISS),
        case("principals and not_principals, excluded", allow("from.principals = [\"test.*\"]\nfrom.not_principals = [\"test.bad\"]"), req().principal("test.bad"), MISS),
        case("principals and not_principals, included", allow("from.principals = [\"test.*\"]\nfrom.not_principals = [\"test.bad\"]"), req().principal("test.good"), HIT),
        // --- from.sans / not_sans
        case("sans DNS ignore case", allow(r#"from.sans = ["client.example.com"]"#), req().dns("Client.Example.COM"), HIT),
        case("sans URI case-sensitive", allow(r#"from.sans = ["spiffe://test"]"#), req().uri("spiffe://Test"), MISS),
        case("sans URI exact", allow(r#"from.sans = ["spiffe://test.client"]"#), req().principal("test.client"), HIT),
        case("sans email", allow(r#"from.sans = ["ops@example.com"]"#), req().email("ops@example.com"), HIT),
        case("sans email case-sensitive", allow(r#"from.sans = ["ops@example.com"]"#), req().email("OPS@example.com"), MISS),
        case("sans IP as text", allow(r#"from.sans = ["10.1.2.3"]"#), req().ip_san("10.1.2.3"), HIT),
        case("sans DNS suffix", allow(r#"from.sans = ["*.example.com"]"#), req().dns("a.EXAMPLE.com"), HIT),
        case("sans, anonymous", allow(r#"from.sans = ["*"]"#), req(), MISS),
        case("sans *, cert without SANs", allow(r#"from.sans = ["*"]"#), req().cert().cn("c"), MISS),
        case("not_sans DNS ignore case", allow(r#"from.not_sans = ["bad.example.com"]"#), req().dns("BAD.example.com"), MISS),
        case("not_sans, anonymous passes", allow(r#"from.not_sans = ["bad.example.com"]"#), req(), HIT),
        // --- from.common_names / not_common_names
        case("common_names exact", allow(r#"from.common_names = ["client"]"#), req().cn("client"), HIT),
        case("common_names case-sensitive", allow(r#"from.common_names = ["client"]"#), req().cn("Client"), MISS),
        case("common_names prefix", allow(r#"from.common_names = ["svc-*"]"#), req().cn("svc-a"), HIT),
        case("common_names, cert without CN", allow(r#"from.common_names = ["*"]"#), req().cert(), MISS),
        case("not_common_names, listed", allow(r#"from.not_common_names = ["bad"]"#), req().cn("bad"), MISS),
        case("not_common_names, other", allow(r#"from.not_common_names = ["bad"]"#), req().cn("good"), HIT),
        // --- from.ip_blocks / not_ip_blocks
        case("ip_blocks single IP", allow(r#"from.ip_blocks = ["10.0.0.1"]"#), req(), HIT),
        case("ip_blocks v4 CIDR", allow(r#"from.ip_blocks = ["10.0.0.0/8"]"#), req().peer("10.200.3.4"), HIT),
        case("ip_blocks v4 CIDR miss", allow(r#"from.ip_blocks = ["10.0.0.0/8"]"#), req().peer("192.168.1.1"), MISS),
        case("ip_blocks v6 CIDR", allow(r#"from.ip_blocks = ["2001:db8::/32"]"#), req().peer("2001:db8::1"), HIT),
        case("ip_blocks v6 CIDR miss", allow(r#"from.ip_blocks = ["2001:db8::/32"]"#), req().peer("2001:db9::1"), MISS),
        case("ip_blocks v6 single", allow(r#"from.ip_blocks = ["::1"]"#), req().peer("::1"), HIT),
        case("ip_blocks, mapped peer vs v4 CIDR", allow(r#"from.ip_blocks = ["10.0.0.0/8"]"#), req().peer("::ffff:10.1.2.3"), HIT),
        case("ip_blocks, mapped CIDR vs v4 peer", allow(r#"from.ip_blocks = ["::ffff:10.0.0.0/104"]"#), req().peer("10.1.2.3"), HIT),
        case("ip_blocks, v4 CIDR vs v6 peer", allow(r#"from.ip_blocks = ["0.0.0.0/0"]"#), req().peer("2001:db8::1"), MISS),
        case("ip_blocks, host bits set", allow(r#"from.ip_blocks = ["10.1.2.3/8"]"#), req().peer("10.9.9.9"), HIT),
        case("not_ip_blocks, inside", allow(r#"from.not_ip_blocks = ["10.0.0.0/8"]"#), req(), MISS),
        case("not_ip_blocks, outside", allow(r#"from.not_ip_blocks = ["10.0.0.0/8"]"#), req().peer("192.0.2.1"), HIT),
        // --- to.hosts / not_hosts
        case("hosts ignore case", allow(r#"to.hosts = ["Test.COM"]"#), req().host(Some("test.com")), HIT),
        case("hosts, request port ignored", allow(r#"to.hosts = ["test.com"]"#), req().host(Some("TEST.com:8443")), HIT),
        case("hosts, pattern port ignored", allow(r#"to.hosts = ["test.com:443"]"#), req(), HIT),
        case("hosts suffix any depth", allow(r#"to.hosts = ["*.example.com"]"#), req().host(Some("a.b.example.com")), HIT),
        case("hosts suffix not apex", allow(r#"to.hosts = ["*.example.com"]"#), req().host(Some("example.com")), MISS),
        case("hosts prefix", allow(r#"to.hosts = ["api.*"]"#), req().host(Some("api.test.com")), HIT),
        case("hosts *, no host", allow(r#"to.hosts = ["*"]"#), req().host(None), MISS),
        case("hosts *, any host", allow(r#"to.hosts = ["*"]"#), req(), HIT),
        case("hosts exact miss", allow(r#"to.hosts = ["other.com"]"#), req(), MISS),
        case("hosts IPv6 literal with port", allow(r#"to.hosts = ["[::1]"]"#), req().host(Some("[::1]:8443")), HIT),
        case("not_hosts, listed", allow(r#"to.not_hosts = ["admin.*"]"#), req().host(Some("Admin.test.com")), MISS),
        case("not_hosts, other", allow(r#"to.not_hosts = ["admin.*"]"#), req(), HIT),
        case("not_hosts, no host passes", allow(r#"to.not_hosts = ["*"]"#), req().host(None), HIT),
        // --- to.methods / not_methods
        case("methods exact", allow(r#"to.methods = ["GET", "HEAD"]"#), req(), HIT),
        case("methods case-sensitive", allow(r#"to.methods = ["get"]"#), req(), MISS),
        case("methods prefix", allow(r#"to.methods = ["P*"]"#), req().method("PATCH"), HIT),
        case("not_methods, listed", allow(r#"to.not_methods = ["DELETE"]"#), req().method("DELETE"), MISS),
        case("not_methods, other", allow(r#"to.not_methods = ["DELETE"]"#), req(), HIT),
        // --- to.paths / not_paths
        case("paths exact", allow(r#"to.paths = ["/status/418"]"#), req().path("/status/418"), HIT),
        case("paths case-sensitive", allow(r#"to.paths = ["/status/418"]"#), req().path("/Status/418"), MISS),
        case("paths prefix", allow(r#"to.paths = ["/api/*"]"#), req().path("/api/v1/x"), HIT),
        case("paths prefix needs its slash", allow(r#"to.paths = ["/api/*"]"#), req().path("/api"), MISS),
        case("paths suffix", allow(r#"to.paths = ["*.png"]"#), req().path("/img/a.png"), HIT),
        case("paths presence", allow(r#"to.paths = ["*"]"#), req().path("/anything"), HIT),
        case("paths template {*}", allow(r#"to.paths = ["/api/{*}/status"]"#), req().path("/api/v1/status"), HIT),
        case("paths template {*} is one segment", allow(r#"to.paths = ["/api/{*}/status"]"#), req().path("/api/v1/v2/status"), MISS),
        case("paths template {**} trailing slash", allow(r#"to.paths = ["/files/{**}"]"#), req().path("/files/"), HIT),
        case("paths template {**} deep", allow(r#"to.paths = ["/files/{**}"]"#), req().path("/files/a/b"), HIT),
        case("paths template {**} not the parent", allow(r#"to.paths = ["/files/{**}"]"#), req().path("/files"), MISS),
        case("paths with braces but no operator are literal", allow(r#"to.paths = ["/a/{id}"]"#), req().path("/a/{id}"), HIT),
        case("not_paths, listed", allow(r#"to.not_paths = ["/admin/*"]"#), req().path("/admin/users"), MISS),
        case("not_paths, other", allow(r#"to.not_paths = ["/admin/*"]"#), req().path("/public"), HIT),
        case("not_paths template", deny(r#"to.not_paths = ["/public/{**}"]"#), req().path("/private"), DENIED),
        // --- to.ports / not_ports
        case("ports integer", allow("to.ports = [8443]"), req(), HIT),
        case("ports digit string", allow(r#"to.ports = ["8443"]"#), req(), HIT),
        case("ports miss", allow("to.ports = [9443]"), req(), MISS),
        case("not_ports, listed", allow("to.not_ports = [8443]"), req(), MISS),
        case("not_ports, other", allow(r#"to.not_ports = ["9443"]"#), req().port(8443), HIT),
        // --- when: request.headers[NAME]
        case("header exact, name case-insensitive", allow(&hdr("X-Env", r#""prod""#)), req().header("x-env", "prod"), HIT),
        case("header absent", allow(&hdr("x-env", r#""prod""#)), req(), MISS),
        case("header value case-sensitive", allow(&hdr("x-env", r#""prod""#)), req().header("x-env", "Prod"), MISS),
        case("header presence, empty value", allow(&hdr("x-env", r#""*""#)), req().header("x-env", ""), HIT),
        case("header prefix", allow(&hdr("x-env", r#""prod-*""#)), req().header("x-env", "prod-eu"), HIT),
        case("header suffix", allow(&hdr("x-env", r#""*-eu""#)), req().header("x-env", "prod-eu"), HIT),
        case("header repeated, joined with ','", allow(&hdr("x-env", r#""a,b""#)), req().header("x-env", "a").header("x-env", "b"), HIT),
        case("header repeated, one value is not the whole", allow(&hdr("x-env", r#""a""#)), req().header("x-env", "a").header("x-env", "b"), MISS),
        case("header repeated, prefix across values", allow(&hdr("x-env", r#""a,b*""#)), req().header("x-env", "a").header("x-env", "bc"), HIT),
        case("header repeated, suffix across values", allow(&hdr("x-env", r#""*a,b""#)), req().header("x-env", "xa").header("x-env", "b"), HIT),
        case("header not_values, listed", allow(&not_hdr("x-env", r#""prod""#)), req().header("x-env", "prod"), MISS),
        case("header not_values, absent passes", allow(&not_hdr("x-env", r#""prod""#)), req(), HIT),
        case("header values and not_values", allow(r#"when = [{ key = "request.headers[x-env]", values = ["prod*"], not_values = ["prod-eu"] }]"#), req().header("x-env", "prod-us"), HIT),
        case("header values and not_values, excluded", allow(r#"when = [{ key = "request.headers[x-env]", values = ["prod*"], not_values = ["prod-eu"] }]"#), req().header("x-env", "prod-eu"), MISS),
        case("two conditions, both must hold", allow(r#"when = [{ key = "request.headers[a]", values = ["1"] }, { key = "request.headers[b]", values = ["2"] }]"#), req().header("a", "1"), MISS),
        // --- when: source.ip, source.principal, connection.sni, destination.port
        case("source.ip CIDR", allow(&when("source.ip", "values", r#""10.0.0.0/24""#)), req(), HIT),
        case("source.ip v6", allow(&when("source.ip", "values", r#""fd00::/8""#)), req().peer("fd00::5"), HIT),
        case("source.ip not_values", allow(&when("source.ip", "not_values", r#""10.0.0.1""#)), req(), MISS),
        case("source.principal any principal", allow(&when("source.principal", "values", r#""b""#)), req().principal("a").principal("b"), HIT),
        case("source.principal not_values, one matches", allow(&when("source.principal", "not_values", r#""b""#)), req().principal("a").principal("b"), MISS),
        case("source.principal not_values, none matches", allow(&when("source.principal", "not_values", r#""x""#)), req().principal("a"), HIT),
        case("source.principal not_values, anonymous", allow(&when("source.principal", "not_values", r#""x""#)), req(), HIT),
        case("source.principal *, anonymous", allow(&when("source.principal", "values", r#""*""#)), req(), MISS),
        case("connection.sni exact", allow(&when("connection.sni", "values", r#""test.com""#)), req(), HIT),
        case("connection.sni ignore case", allow(&when("connection.sni", "values", r#""TEST.com""#)), req(), HIT),
        case("connection.sni suffix", allow(&when("connection.sni", "values", r#""*.example.com""#)), req().sni(Some("a.example.com")), HIT),
        case("connection.sni absent", allow(&when("connection.sni", "values", r#""*""#)), req().sni(None), MISS),
        case("connection.sni not_values absent passes", allow(&when("connection.sni", "not_values", r#""test.com""#)), req().sni(None), HIT),
        case("destination.port", allow(&when("destination.port", "values", r#""8443""#)), req(), HIT),
        case("destination.port not_values", allow(&when("destination.port", "not_values", r#""8443""#)), req(), MISS),
        // --- rule and policy structure
        case("no policies: allow", "", req(), Open),
        case("only deny, not matching: allow", deny(r#"to.paths = ["/x"]"#), req(), Open),
        case("empty rule matches everything", deny(""), req().path("/anything"), DENIED),
        case("empty from table matches everything", allow("from = {}"), req(), HIT),
        case("empty list is unset", allow("to.paths = []"), req().path("/x"), HIT),
        case("allow policy with no rules matches nothing", policy("a", "allow", &[]), req(), MISS),
        case("from and to must both match", allow("from.principals = [\"p\"]\nto.paths = [\"/x\"]"), req().principal("p").path("/y"), MISS),
        case("from and to both match", allow("from.principals = [\"p\"]\nto.paths = [\"/x\"]"), req().principal("p").path("/x"), HIT),
        case("deny beats allow", policy("a", "allow", &[""]) + &deny(r#"from.principals = ["test.client"]"#), req().principal("test.client"), DENIED),
        case("first deny policy in file order", policy("d1", "deny", &[r#"to.paths = ["/x"]"#]) + &policy("d2", "deny", &[""]), req().path("/x"), DenyBy("d1", 0)),
        case("later deny policy when the first misses", policy("d1", "deny", &[r#"to.paths = ["/x"]"#]) + &policy("d2", "deny", &[""]), req().path("/y"), DenyBy("d2", 0)),
        case("first matching rule of the deny policy", policy("d", "deny", &[r#"to.paths = ["/x"]"#, r#"to.paths = ["/y"]"#, ""]), req().path("/y"), DenyBy("d", 1)),
        case("first matching rule of the allow policy", policy("a", "allow", &[r#"to.paths = ["/x"]"#, r#"to.methods = ["GET"]"#]), req(), AllowBy("a", 1)),
        case("second allow policy", policy("a1", "allow", &[r#"to.paths = ["/x"]"#]) + &policy("a2", "allow", &[r#"to.paths = ["/y"]"#]), req().path("/y"), AllowBy("a2", 0)),
        case("reference config: teapot denied", policy("deny-test-client-teapot", "deny", &["from.principals = [\"test.client\"]\nto.paths = [\"/status/418\"]"]), req().principal("test.client").path("/status/418"), DenyBy("deny-test-client-teapot", 0)),
        case("reference config: other path open", policy("deny-test-client-teapot", "deny", &["from.principals = [\"test.client\"]\nto.paths = [\"/status/418\"]"]), req().principal("test.client").path("/status/200"), Open),
        // --- audit
        case("audit recorded, verdict unchanged (open)", audit_all.clone(), req(), Open).audits(&["au"]),
        case("audit recorded on deny", audit_all.clone() + &deny(""), req(), DENIED).audits(&["au"]),
        case("audit recorded on no allow match", audit_all.clone() + &policy("a", "allow", &[]), req(), MISS).audits(&["au"]),
        case("audit not matching", policy("au", "audit", &[r#"to.paths = ["/x"]"#]), req(), Open),
        case("audits, several, file order", policy("au1", "audit", &[""]) + &policy("au2", "audit", &[r#"to.paths = ["/x"]"#]) + &policy("au3", "audit", &[r#"to.methods = ["GET"]"#]) + &allow(""), req(), HIT).audits(&["au1", "au3"]),
        case("audit alone is not an allow policy", policy("au", "audit", &[r#"to.paths = ["/x"]"#]) + &deny(r#"to.paths = ["/y"]"#), req().path("/x"), Open).audits(&["au"]),
    ];

    assert!(cases.len() >= 90, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let p = policies(&c.policies);
        let d = evaluate(&p, &c.req.view());
        let got = outcome(&p, &d);
        let audits: Vec<&str> = d.audit_policies(&p).collect();
        if got != c.want || audits != c.audits {
            failures.push(format!(
                "{}: want {:?} {:?}, got {:?} {:?}",
                c.name, c.want, c.audits, got, audits
            ));
        }
        assert_eq!(
            d.is_allowed(),
            matches!(c.want, Open | AllowBy(..)),
            "{}",
            c.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn explain_lines() {
    let p = policies(
        &(policy("au", "audit", &[""])
            + &deny(r#"to.paths = ["/x"]"#)
            + &allow(r#"to.paths = ["/y"]"#)),
    );
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("/x", "DENY by policy \"d\" rule 0\nAUDIT policy \"au\" matched"),
        ("/y", "ALLOW by policy \"a\" rule 0\nAUDIT policy \"au\" matched"),
        ("/z", "DENY: no ALLOW policy matched\nAUDIT policy \"au\" matched"),
    ];
    for (path, want) in cases {
        let d = evaluate(&p, &req().path(path).view());
        assert_eq!(d.explain(&p), *want, "{path}");
    }
    let open = Policies::default();
    assert_eq!(
        evaluate(&open, &req().view()).explain(&open),
        "ALLOW (no allow policies)"
    );
}

#[test]
fn decision_accessors() {
    let p = policies(&(deny(r#"to.paths = ["/x"]"#) + &allow("")));
    let denied = evaluate(&p, &req().path("/x").view());
    assert!(!denied.is_allowed());
    assert_eq!(denied.deciding_policy(&p), Some("d"));
    assert_eq!(denied.deciding_rule(), Some((0, 0)));
    assert_eq!(
        denied.verdict,
        Verdict::Deny(DenyReason::Policy { policy: 0, rule: 0 })
    );
    let allowed = evaluate(&p, &req().view());
    assert!(allowed.is_allowed());
    assert_eq!(allowed.deciding_policy(&p), Some("a"));
    assert!(allowed.audits.is_empty());
    assert_eq!(
        (p.len(), p.is_empty(), p.name(1), p.action(0)),
        (2, false, "a", Action::Deny)
    );
    assert_eq!(DenyReason::NoAllowMatch.label(), "no_allow_match");
    let empty = Policies::compile(&[]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(
        evaluate(&empty, &req().view()).deciding_policy(&empty),
        None
    );
}

#[test]
fn audit_set_holds_every_index() {
    let n = AuditSet::CAPACITY;
    let text: String = (0..n)
        .map(|i| policy(&format!("p{i}"), "audit", &[""]))
        .collect();
    let p = policies(&text);
    let d = evaluate(&p, &req().view());
    assert_eq!(d.audits.len(), n);
    assert!(d.audits.iter().eq(0..n));
    assert!(d.audits.contains(n - 1) && !d.audits.contains(n));

    let text = policy("a", "allow", &[""])
        + &policy("x", "audit", &[""])
        + &policy("y", "audit", &["to.paths = [\"/x\"]"]);
    let p = policies(&(text + &policy("z", "audit", &[""])));
    let d = evaluate(&p, &req().view());
    assert_eq!((&d.audits).into_iter().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(d.audit_policies(&p).collect::<Vec<_>>(), ["x", "z"]);
}

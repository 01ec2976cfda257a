use super::*;

fn opts() -> Options {
    Options {
        secrets_dir: "/s".into(),
        upstream_template: None,
    }
}

fn run(importer: Importer, yaml: &str) -> Outcome {
    import(
        importer,
        &[Input {
            name: "in.yaml".into(),
            text: yaml.into(),
        }],
        &opts(),
    )
    .unwrap()
}

fn paths(o: &Outcome) -> Vec<String> {
    o.reports
        .iter()
        .map(|r| format!("{}: {}", r.object, r.path))
        .collect()
}

#[test]
fn upstream_templates_are_checked() {
    for (t, ok) in [
        ("http://{service}.{namespace}:{port}", true),
        ("http://127.0.0.1:8000", true),
        ("unix:/run/{service}.sock", true),
        ("https://{service}:{port}", false),
        ("http://{service}.{ns}:{port}", false),
        ("http://{service", false),
        ("{service}:{port}", false),
    ] {
        assert_eq!(check_template(t).is_ok(), ok, "{t}");
    }
}

#[test]
fn destination_hosts_become_service_urls() {
    let o = opts();
    for (host, want) in [
        ("httpbin", "http://httpbin.ns.svc.cluster.local:80"),
        ("httpbin.other", "http://httpbin.other.svc.cluster.local:80"),
        (
            "httpbin.other.svc",
            "http://httpbin.other.svc.cluster.local:80",
        ),
        (
            "httpbin.other.svc.cluster.local",
            "http://httpbin.other.svc.cluster.local:80",
        ),
        ("api.example.com", "http://api.example.com:80"),
    ] {
        assert_eq!(istio::service_url(host, "ns", "80", &o), want, "{host}");
    }
    let t = Options {
        upstream_template: Some("http://{service}-{namespace}.local:{port}".into()),
        ..opts()
    };
    assert_eq!(
        istio::service_url("web.shop", "ns", "8080", &t),
        "http://web-shop.local:8080"
    );
}

#[test]
fn istio_durations_become_gatehouse_durations() {
    for (t, want) in [
        ("5s", Some("5s")),
        ("250ms", Some("250ms")),
        ("1.5s", Some("1500ms")),
        ("0.25s", Some("250ms")),
        ("2m", Some("2m")),
        ("0s", None),
        ("soon", None),
    ] {
        let mut r = doc::Reports::default();
        assert_eq!(istio::timeout(t, "t", &mut r).as_deref(), want, "{t}");
        assert_eq!(r.items.is_empty(), want.is_some(), "{t}: reported");
    }
}

#[test]
fn prefixes_that_are_whole_segments() {
    for (p, whole) in [
        ("/", true),
        ("/status", true),
        ("/api/v1", true),
        ("/static_files", true),
        ("/api/v", false),
        ("/img-", false),
        ("/api/", false),
        ("/a", false),
    ] {
        assert_eq!(istio::whole_segment(p), whole, "{p}");
    }
}

#[test]
fn match_cn_names_and_regexes() {
    for (pattern, want) in [
        ("CN=client", Some("client")),
        ("client", Some("client")),
        ("^CN=client.example.com$", Some("client.example.com")),
        ("CN=My Client", Some("My Client")),
        ("CN=(alice|bob)", None),
        ("CN=.*", None),
        ("CN=client[0-9]", None),
        ("", None),
    ] {
        assert_eq!(nginx::cn_name(pattern), want, "{pattern}");
    }
}

/// Every field not read is reported with its path, at any depth; structure is not.
#[test]
fn unread_fields_are_reported_with_their_paths() {
    let o = run(
        Importer::Istio,
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns, labels: {a: b}}
status: {}
spec:
  selector: {istio: ingressgateway}
  surprise: 1
  servers:
  - port: {number: 443, name: https, protocol: HTTPS, extra: x}
    hosts: [a.example.com]
    defaultEndpoint: 127.0.0.1:8080
    tls: {mode: SIMPLE, credentialName: a, cipherSuites: [X]}
"#,
    );
    assert_eq!(
        paths(&o),
        [
            "Gateway ns/gw: spec.servers[0].port.extra",
            "Gateway ns/gw: spec.servers[0].tls.cipherSuites",
            "Gateway ns/gw: spec.servers[0].defaultEndpoint",
            "Gateway ns/gw: spec.surprise",
            "output: ",
        ]
    );
    assert!(o.toml.contains("credential_dir = \"/s/a\""), "{}", o.toml);
}

/// Istio's sources × operations become one gatehouse rule per pair; namespaces beside
/// principals become a condition; an ALLOW rule with a JWT requirement is left out and a
/// DENY rule with one is kept without it.
#[test]
fn authorization_policies_fail_closed() {
    let o = run(
        Importer::Istio,
        r#"
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from:
    - source: {principals: [a], namespaces: [shop]}
    - source: {ipBlocks: [10.0.0.0/8]}
    to:
    - operation: {paths: [/x]}
  - from:
    - source: {requestPrincipals: ["*"]}
---
kind: AuthorizationPolicy
metadata: {name: d, namespace: ns}
spec:
  action: DENY
  rules:
  - from:
    - source: {notRequestPrincipals: ["*"]}
    to:
    - operation: {paths: [/admin/*]}
"#,
    );
    let t = &o.toml;
    assert_eq!(t.matches("[[policy.rules]]").count(), 3, "{t}");
    assert!(t.contains(
        "from.principals = [\"a\"]\n  to.paths = [\"/x\"]\n  when = [{ key = \"source.principal\", values = [\"cluster.local/ns/shop/*\"] }]"
    ), "{t}");
    assert!(
        t.contains("from.ip_blocks = [\"10.0.0.0/8\"]\n  to.paths = [\"/x\"]"),
        "{t}"
    );
    assert!(
        t.contains("action = \"deny\"\n  [[policy.rules]]\n  to.paths = [\"/admin/*\"]"),
        "{t}"
    );
    let why: Vec<&str> = o.reports.iter().map(|r| r.why.as_str()).collect();
    assert!(why[0].contains("allow rule is left out"), "{why:?}");
    assert!(why[1].contains("deny rule is kept without it"), "{why:?}");
}

#[test]
fn nothing_to_translate_and_bad_yaml_are_errors() {
    let i = |text: &str| Input {
        name: "f.yaml".into(),
        text: text.into(),
    };
    let nothing = import(Importer::IngressNginx, &[i("kind: Service\n")], &opts());
    assert!(matches!(nothing, Err(ImportError::Nothing { .. })));
    let bad = import(Importer::Istio, &[i("kind: [\n")], &opts());
    assert!(matches!(bad, Err(ImportError::Yaml { .. })), "{bad:?}");
}

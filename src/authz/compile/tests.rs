use super::*;

#[derive(serde::Deserialize)]
struct Wrapper {
    policy: Vec<RawPolicy>,
}

fn errors(toml_text: &str) -> Vec<PolicyError> {
    let w: Wrapper =
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("bad TOML {toml_text}: {e}"));
    match policies(&w.policy) {
        Ok(_) => panic!("compiled, want an error:\n{toml_text}"),
        Err(errs) => errs,
    }
}

/// `[[policy]] name = "p" action = "allow"` with one rule.
fn rule(rule: &str) -> String {
    format!("[[policy]]\nname = \"p\"\naction = \"allow\"\n[[policy.rules]]\n{rule}\n")
}

#[test]
fn config_errors() {
    let p = "policy[0].rules[0]";
    #[rustfmt::skip]
    let cases: Vec<(String, String, &str)> = vec![
        (
            "[[policy]]\nname = \"ok\"\naction = \"allow\"\n[[policy]]\nname = \"p\"\naction = \"deny\"\n[[policy.rules]]\nto.paths = [\"/a\", \"/b*\", \"*a*\"]".into(),
            "policy[1].rules[0].to.paths[2]".into(),
            "\"*a*\": '*' is allowed only at the start or end",
        ),
        ("[[policy]]\nname = \"\"\naction = \"allow\"".into(), "policy[0].name".into(), "non-empty name"),
        ("[[policy]]\nname = \"x\"\naction = \"allow\"\n[[policy]]\nname = \"x\"\naction = \"allow\"".into(), "policy[1].name".into(), "\"x\": duplicate policy name (first used by policy[0])"),
        ("[[policy]]\nname = \"x\"\naction = \"ALLOW\"".into(), "policy[0].action".into(), "\"ALLOW\": must be \"allow\", \"deny\" or \"audit\""),
        ("[[policy]]\nname = \"x\"\naction = \"custom\"".into(), "policy[0].action".into(), "must be \"allow\", \"deny\" or \"audit\""),
        ("[[policy]]\nname = \"x\"\naction = \"deny\"".into(), "policy[0].rules".into(), "add an empty [[policy.rules]] to match every request"),
        ("[[policy]]\nname = \"x\"\naction = \"audit\"\nrules = []".into(), "policy[0].rules".into(), "an audit policy with no rules never matches"),
        (rule(r#"from.principals = [""]"#), format!("{p}.from.principals[0]"), "\"\": empty value is not allowed"),
        (rule(r#"from.not_principals = ["a", "*b*"]"#), format!("{p}.from.not_principals[1]"), "'*' is allowed only at the start or end"),
        (rule(r#"from.sans = ["a*b"]"#), format!("{p}.from.sans[0]"), "'*' is allowed only at the start or end"),
        (rule(r#"from.not_common_names = ["**"]"#), format!("{p}.from.not_common_names[0]"), "'*' is allowed only at the start or end"),
        (rule(r#"from.ip_blocks = ["10.0.0.0/8", "10.0.0.0/33"]"#), format!("{p}.from.ip_blocks[1]"), "\"10.0.0.0/33\": expected an IP address or a CIDR"),
        (rule(r#"from.not_ip_blocks = ["example.com"]"#), format!("{p}.from.not_ip_blocks[0]"), "expected an IP address or a CIDR"),
        (rule(r#"to.hosts = ["a*.example.com"]"#), format!("{p}.to.hosts[0]"), "\"a*.example.com\": '*' is allowed only at the start or end"),
        (rule(r#"to.not_methods = ["G*T"]"#), format!("{p}.to.not_methods[0]"), "'*' is allowed only at the start or end"),
        (rule(r#"to.paths = ["/a{*}"]"#), format!("{p}.to.paths[0]"), "\"/a{*}\": a template operator ({*} or {**}) must fill a whole path segment"),
        (rule(r#"to.paths = ["/{*}{*}"]"#), format!("{p}.to.paths[0]"), "must fill a whole path segment"),
        (rule(r#"to.not_paths = ["/{**}/a"]"#), format!("{p}.to.not_paths[0]"), "{**} is allowed only as the last segment"),
        (rule(r#"to.paths = ["/a/{*}/b*"]"#), format!("{p}.to.paths[0]"), "must not also use '*'"),
        (rule(r#"to.paths = ["{*}/a"]"#), format!("{p}.to.paths[0]"), "must start with '/'"),
        (rule("to.ports = [0]"), format!("{p}.to.ports[0]"), "0: a port must be an integer in 1..=65535"),
        (rule("to.ports = [443, 70000]"), format!("{p}.to.ports[1]"), "70000: a port must be an integer in 1..=65535"),
        (rule("to.not_ports = [-1]"), format!("{p}.to.not_ports[0]"), "-1: a port must be"),
        (rule(r#"to.ports = ["80a"]"#), format!("{p}.to.ports[0]"), "\"80a\": a port must be"),
        (rule(r#"to.ports = ["+80"]"#), format!("{p}.to.ports[0]"), "a port must be"),
        (rule(r#"when = [{ key = "request.auth.claims[iss]", values = ["x"] }]"#), format!("{p}.when[0].key"), "unsupported key; supported keys: request.headers[NAME], source.ip, source.principal, connection.sni, destination.port"),
        (rule(r#"when = [{ key = "request.headers[bad name]", values = ["x"] }]"#), format!("{p}.when[0].key"), "\"bad name\" is not a valid HTTP header name"),
        (rule(r#"when = [{ key = "request.headers[]", values = ["x"] }]"#), format!("{p}.when[0].key"), "is not a valid HTTP header name"),
        (rule(r#"when = [{ key = "source.ip" }]"#), format!("{p}.when[0]"), "condition on \"source.ip\" needs values or not_values"),
        (rule(r#"when = [{ key = "source.ip", values = [], not_values = [] }]"#), format!("{p}.when[0]"), "needs values or not_values"),
        (rule(r#"when = [{ key = "source.ip", values = ["10.0.0.0/8"] }, { key = "source.ip", values = ["nope"] }]"#), format!("{p}.when[1].values[0]"), "\"nope\": expected an IP address or a CIDR"),
        (rule(r#"when = [{ key = "destination.port", not_values = ["65536"] }]"#), format!("{p}.when[0].not_values[0]"), "\"65536\": a port must be"),
        (rule(r#"when = [{ key = "request.headers[x]", values = ["*x*"] }]"#), format!("{p}.when[0].values[0]"), "'*' is allowed only at the start or end"),
        (rule(r#"when = [{ key = "connection.sni", not_values = ["a*b"] }]"#), format!("{p}.when[0].not_values[0]"), "\"a*b\": '*' is allowed only at the start or end"),
    ];
    assert!(cases.len() >= 20);
    for (toml_text, path, fragment) in &cases {
        let errs = errors(toml_text);
        assert!(
            errs.iter()
                .any(|e| &e.path == path && e.message.contains(fragment)),
            "want {path}: ...{fragment}...\ngot {errs:#?}\nfor {toml_text}"
        );
    }
}

#[test]
fn spec_example_error_renders_exactly() {
    let text = "[[policy]]\nname = \"a\"\naction = \"allow\"\n[[policy]]\nname = \"b\"\naction = \"allow\"\n[[policy.rules]]\nto.paths = [\"/a\", \"/b\", \"*a*\"]";
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].to_string(),
        "policy[1].rules[0].to.paths[2]: \"*a*\": '*' is allowed only at the start or end"
    );
}

#[test]
fn every_error_is_reported() {
    let text = "[[policy]]\nname = \"x\"\naction = \"nope\"\n[[policy.rules]]\nto.paths = [\"*a*\"]\nto.ports = [0]\n\
                [[policy]]\nname = \"x\"\naction = \"deny\"";
    let paths: Vec<String> = errors(text).into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        [
            "policy[0].action",
            "policy[0].rules[0].to.paths[0]",
            "policy[0].rules[0].to.ports[0]",
            "policy[1].name",
            "policy[1].rules"
        ]
    );
}

#[test]
fn audit_policy_past_the_audit_set() {
    let policy = |i: usize, action: &str| {
        format!("[[policy]]\nname = \"p{i}\"\naction = \"{action}\"\n[[policy.rules]]\n")
    };
    let mut text: String = (0..AuditSet::CAPACITY)
        .map(|i| policy(i, "allow"))
        .collect();
    text += &policy(AuditSet::CAPACITY, "audit");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].path,
        format!("policy[{}].action", AuditSet::CAPACITY)
    );
    assert!(errs[0].message.contains("among the first 1024 policies"));
}

#[test]
fn compiled_shapes() {
    assert_eq!(strip_port("a.com:8443"), "a.com");
    assert_eq!(strip_port("a.com:"), "a.com");
    assert_eq!(strip_port("a.com"), "a.com");
    assert_eq!(strip_port("[::1]:80"), "[::1]");
    assert_eq!(strip_port("::1"), "::1");
    assert_eq!(strip_port("a:b"), "a:b");
    assert_eq!(ip_block("10.1.2.3/8"), "10.0.0.0/8".parse().ok());
    assert_eq!(ip_block("::ffff:10.0.0.0/104"), "10.0.0.0/8".parse().ok());
    assert_eq!(ip_block("192.0.2.1"), "192.0.2.1/32".parse().ok());
    assert_eq!(ip_block("2001:db8::1"), "2001:db8::1/128".parse().ok());
    assert_eq!(ip_block("10.0.0.0/33"), None);
    assert_eq!(port_text("08443"), Some(8443));
}

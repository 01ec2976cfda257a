//! Host patterns of `[[server]]` and `[[route]]`, and SNI → server selection.
//! Exact names beat `*.x` (exactly one label), which beats `*` (any name, and no SNI).
//! Everything is compared case-insensitively; patterns are lower-cased when parsed.

/// One entry of a `hosts` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `test.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: matches `a.example.com`, not `a.b.example.com`.
    Wildcard(String),
    /// `*`
    Any,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let lower = text.to_ascii_lowercase();
        if lower == "*" {
            return Ok(Self::Any);
        }
        let (is_wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty()
            || name.contains('*')
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err("expected a host name, \"*.\" followed by a name, or \"*\"");
        }
        Ok(if is_wild {
            Self::Wildcard(format!(".{name}"))
        } else {
            Self::Exact(name.to_owned())
        })
    }

    /// Precedence: exact 2, wildcard 1, any 0.
    fn rank(&self) -> u8 {
        match self {
            Self::Exact(_) => 2,
            Self::Wildcard(_) => 1,
            Self::Any => 0,
        }
    }

    /// Does `host` (no port, any case) match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host.eq_ignore_ascii_case(name),
            Self::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && !host[..host.len() - suffix.len()].contains('.')
            }
            Self::Any => true,
        }
    }
}

/// Does any of `patterns` match `host`?
pub fn any_matches(patterns: &[HostPattern], host: &str) -> bool {
    patterns.iter().any(|p| p.matches(host))
}

/// Picks the server for a ClientHello's SNI: the best-ranked match across all servers,
/// the first server in file order on a tie. No SNI matches only `*`.
pub fn select<'s, S>(
    servers: &'s [S],
    hosts: impl Fn(&S) -> &[HostPattern],
    sni: Option<&str>,
) -> Option<(usize, &'s S)> {
    let mut best: Option<(u8, usize)> = None;
    for (i, s) in servers.iter().enumerate() {
        for p in hosts(s) {
            let hit = match sni {
                Some(name) => p.matches(name),
                None => *p == HostPattern::Any,
            };
            if hit && best.is_none_or(|(rank, _)| p.rank() > rank) {
                best = Some((p.rank(), i));
            }
        }
    }
    best.map(|(_, i)| (i, &servers[i]))
}

/// The host part of a Host header or :authority (`[::1]:8443` → `[::1]`, `a.com:443` → `a.com`).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Vec<HostPattern> {
        list.iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect()
    }

    #[test]
    fn pattern_matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("test.com", "test.com", true),
            ("test.com", "TEST.com", true),
            ("Test.Com", "test.com", true),
            ("test.com", "www.test.com", false),
            ("test.com", "test.co", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "A.EXAMPLE.COM", true),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.k.example.com", "httpbin2.k.example.com", true),
            ("*", "anything.at.all", true),
            ("*", "", true),
        ];
        for (pat, host, want) in cases {
            assert_eq!(
                HostPattern::parse(pat).unwrap().matches(host),
                *want,
                "{pat} vs {host}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in [
            "", "*.", "a.*.com", "*a.com", "a..com", ".a.com", "a.com.", "a b.com", "*.*.com",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn selection_prefers_exact_then_wildcard_then_any() {
        let servers = vec![
            p(&["*"]),
            p(&["*.example.com"]),
            p(&["api.example.com"]),
            p(&["other.com"]),
        ];
        let pick = |sni: Option<&str>| select(&servers, |s| s, sni).map(|(i, _)| i);
        assert_eq!(pick(Some("api.example.com")), Some(2));
        assert_eq!(pick(Some("API.example.com")), Some(2));
        assert_eq!(pick(Some("www.example.com")), Some(1));
        assert_eq!(pick(Some("other.com")), Some(3));
        assert_eq!(pick(Some("unknown.net")), Some(0));
        assert_eq!(pick(None), Some(0));
        let no_any = vec![p(&["a.com"]), p(&["*.b.com"])];
        assert_eq!(
            select(&no_any, |s| s, Some("x.a.com")).map(|(i, _)| i),
            None
        );
        assert_eq!(select(&no_any, |s| s, None).map(|(i, _)| i), None);
        assert_eq!(
            select(&no_any, |s| s, Some("x.b.com")).map(|(i, _)| i),
            Some(1)
        );
    }

    #[test]
    fn strip_port_table() {
        for (input, want) in [
            ("a.com", "a.com"),
            ("a.com:8443", "a.com"),
            ("[::1]:8443", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("a.com:", "a.com"),
        ] {
            assert_eq!(strip_port(input), want);
        }
    }
}

//! Every Host rule in one place, pure:
//! - [`parse`]: a `Host` header or `:authority` must be `name[:port]`, where the name is a
//!   reg-name, an IPv4 address or a bracketed IPv6 address, and the port is digits only; one
//!   trailing `.` of the name is removed (`test.com.` is `test.com`) before SNI binding,
//!   routing and authorization, and the upstream gets the host without it. The common case
//!   (valid, no trailing dot) borrows and allocates nothing.
//! - [`HostPattern`]: an entry of a `hosts` list of `[[server]]` or `[[route]]`. Exact names
//!   beat `*.x` (exactly one label), which beats `*` (any name, and no SNI); [`select`] picks
//!   the server for a ClientHello's SNI by that rank. Compared case-insensitively.
//! - [`strip_port`]: the name part of an authority, for logs and policy `hosts`.

use std::borrow::Cow;
use std::fmt;

/// A valid authority, as it will be forwarded: `name[:port]`, trailing dot removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authority<'a> {
    /// The authority to forward (`Host`), port included when the client sent one.
    pub full: Cow<'a, str>,
    /// Length of the name (without `:port`) at the start of `full`.
    name_len: usize,
}

impl Authority<'_> {
    /// The name without the port (`[::1]` keeps its brackets), in the client's case.
    pub(crate) fn name(&self) -> &str {
        &self.full[..self.name_len]
    }
}

/// Why a host is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHost {
    /// No name at all (`""`, `":80"`, `"."`).
    Empty,
    /// A character no reg-name, IPv4 or IPv6 literal may hold (`a.com:1:2`, `a b`, `u@h`).
    BadName,
    /// A port that is not 1-5 digits up to 65535.
    BadPort,
    /// More than one `Host` header.
    Multiple,
}

impl BadHost {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Empty => "empty host",
            Self::BadName => "host is not a name, an IPv4 address or a bracketed IPv6 address",
            Self::BadPort => "host port is not a number from 0 to 65535",
            Self::Multiple => "more than one Host header",
        }
    }
}

impl fmt::Display for BadHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// RFC 3986 reg-name characters (unreserved, sub-delims, and `%` of pct-encoded).
fn reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
}

/// Parses a `Host` / `:authority` value.
pub(crate) fn parse(text: &str) -> Result<Authority<'_>, BadHost> {
    let bytes = text.as_bytes();
    let name_end = if bytes.first() == Some(&b'[') {
        let close = memchr::memchr(b']', bytes).ok_or(BadHost::BadName)?;
        let inner = &bytes[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            || text[1..close].parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(BadHost::BadName);
        }
        close + 1
    } else {
        bytes.iter().position(|&b| b == b':').unwrap_or(bytes.len())
    };
    let (name, rest) = bytes.split_at(name_end);
    if let Some(port) = rest.strip_prefix(b":") {
        // `a.com:1:2` is a bad name (a second colon), not a bad port.
        if port.contains(&b':') {
            return Err(BadHost::BadName);
        }
        let digits = !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit);
        if !digits
            || text[name_end + 1..]
                .parse::<u32>()
                .map_or(true, |p| p > 65535)
        {
            return Err(BadHost::BadPort);
        }
    } else if !rest.is_empty() {
        // Something after `]` that is not a port.
        return Err(BadHost::BadName);
    }
    if name.first() != Some(&b'[') {
        if !name.iter().all(|&b| reg_name_byte(b)) {
            return Err(BadHost::BadName);
        }
        if let Some(dotless) = name.strip_suffix(b".") {
            if dotless.is_empty() {
                return Err(BadHost::Empty);
            }
            let mut full = String::with_capacity(text.len() - 1);
            full.push_str(&text[..name_end - 1]);
            full.push_str(&text[name_end..]);
            return Ok(Authority {
                full: Cow::Owned(full),
                name_len: name_end - 1,
            });
        }
    }
    if name.is_empty() {
        return Err(BadHost::Empty);
    }
    Ok(Authority {
        full: Cow::Borrowed(text),
        name_len: name_end,
    })
}

/// One entry of a `hosts` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// `test.com`
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: matches `a.example.com`, not `a.b.example.com`.
    Wildcard(String),
    /// `*`
    Any,
}

impl HostPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, &'static str> {
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
    pub(crate) fn matches(&self, host: &str) -> bool {
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
pub(crate) fn any_matches(patterns: &[HostPattern], host: &str) -> bool {
    patterns.iter().any(|p| p.matches(host))
}

/// Picks the server for a ClientHello's SNI: the best-ranked match across all servers,
/// the first server in file order on a tie. No SNI matches only `*`.
pub(crate) fn select<'s, S>(
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

/// `host:port` → `host`, `[v6]:port` → `[v6]`; a bare IPv6 address is left alone. For a
/// Host header or `:authority` (and the `to.hosts` patterns of a policy: the port is ignored).
#[inline]
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        /// (forwarded, name) or why not.
        type Want = Result<(&'static str, &'static str), BadHost>;
        let cases: &[(&str, Want)] = &[
            ("test.com", Ok(("test.com", "test.com"))),
            ("TEST.com:8443", Ok(("TEST.com:8443", "TEST.com"))),
            ("test.com.", Ok(("test.com", "test.com"))),
            ("test.com.:8443", Ok(("test.com:8443", "test.com"))),
            (
                "admin.example.com.",
                Ok(("admin.example.com", "admin.example.com")),
            ),
            ("127.0.0.1:80", Ok(("127.0.0.1:80", "127.0.0.1"))),
            ("[::1]", Ok(("[::1]", "[::1]"))),
            ("[::1]:8443", Ok(("[::1]:8443", "[::1]"))),
            (
                "[2001:db8::1]:443",
                Ok(("[2001:db8::1]:443", "[2001:db8::1]")),
            ),
            ("a-b_c~d", Ok(("a-b_c~d", "a-b_c~d"))),
            (
                "xn--bcher-kva.example",
                Ok(("xn--bcher-kva.example", "xn--bcher-kva.example")),
            ),
            ("test.com:0", Ok(("test.com:0", "test.com"))),
            // Only one trailing dot goes: the rest is still a name (and binds to no server).
            ("test.com..", Ok(("test.com.", "test.com."))),
            ("", Err(BadHost::Empty)),
            (":8443", Err(BadHost::Empty)),
            (".", Err(BadHost::Empty)),
            (".:80", Err(BadHost::Empty)),
            ("a.com:1:2", Err(BadHost::BadName)),
            ("a.com:", Err(BadHost::BadPort)),
            ("a.com:65536", Err(BadHost::BadPort)),
            ("a.com:123456", Err(BadHost::BadPort)),
            ("a.com:-1", Err(BadHost::BadPort)),
            ("a.com:8o", Err(BadHost::BadPort)),
            ("a b", Err(BadHost::BadName)),
            ("user@evil.com", Err(BadHost::BadName)),
            ("evil.com/x", Err(BadHost::BadName)),
            ("evil.com\\x", Err(BadHost::BadName)),
            ("a.com\t", Err(BadHost::BadName)),
            ("[::1", Err(BadHost::BadName)),
            ("[]", Err(BadHost::BadName)),
            ("[::1]x", Err(BadHost::BadName)),
            ("[not-ipv6]", Err(BadHost::BadName)),
            ("::1", Err(BadHost::BadName)),
            ("[::1]:99999", Err(BadHost::BadPort)),
            ("ex\u{e4}mple.com", Err(BadHost::BadName)),
        ];
        for (input, want) in cases {
            let got = parse(input).map(|a| (a.full.to_string(), a.name().to_owned()));
            let want = want.map(|(f, n)| (f.to_owned(), n.to_owned()));
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn a_valid_host_without_a_trailing_dot_is_borrowed() {
        assert!(matches!(
            parse("test.com:8443").unwrap().full,
            Cow::Borrowed(_)
        ));
        assert!(matches!(parse("test.com.").unwrap().full, Cow::Owned(_)));
    }

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

    #[test]
    fn strip_port_leaves_a_bare_ipv6_address_alone() {
        for (input, want) in [("::1", "::1"), ("a:b", "a:b"), ("[::1]:80", "[::1]")] {
            assert_eq!(strip_port(input), want);
        }
    }
}

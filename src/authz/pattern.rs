//! Istio string patterns and path templates, compiled once when the config is loaded and
//! matched on the request path without allocating.
//!
//! A string pattern is exact `abc`, prefix `abc*`, suffix `*abc` or presence `*` (a non-empty
//! value; for a header, the header being present). A `*` anywhere else is refused at compile
//! time. Path patterns also take Istio/Envoy URI templates: `{*}` is exactly one non-empty
//! segment, `{**}` is the rest of the path (zero or more segments, may be empty) and only the
//! last segment; an operator fills its whole segment and a templated path uses no `*` glob.
//!
//! This module knows nothing about requests or policies: `authz` decides *what* a pattern is
//! matched against, and whether case matters.

/// The message for a `*` in the middle of a pattern (SPEC §2 quotes it).
pub(crate) const STAR_ONLY_AT_ENDS: &str = "'*' is allowed only at the start or end";

/// Whether a comparison folds ASCII case (hosts, DNS names, SNI) or not (everything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    Sensitive,
    Insensitive,
}

/// A compiled Istio string pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrPattern {
    Exact(Box<str>),
    /// `abc*`: the stored text is what must come first.
    Prefix(Box<str>),
    /// `*abc`: the stored text is what must come last.
    Suffix(Box<str>),
    /// `*`: any non-empty value (for a header: present, even if empty).
    Presence,
}

impl StrPattern {
    /// Compiles `raw`, refusing an empty pattern and a `*` that is not a whole prefix or
    /// suffix marker (`*a*`, `a*b`, `**` are errors, as SPEC §3 requires).
    pub(crate) fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() {
            return Err("empty value is not allowed");
        }
        if raw == "*" {
            return Ok(Self::Presence);
        }
        let (pattern, text) = if let Some(rest) = raw.strip_prefix('*') {
            (Self::Suffix as fn(Box<str>) -> Self, rest)
        } else if let Some(rest) = raw.strip_suffix('*') {
            (Self::Prefix as fn(Box<str>) -> Self, rest)
        } else {
            (Self::Exact as fn(Box<str>) -> Self, raw)
        };
        if text.contains('*') {
            return Err(STAR_ONLY_AT_ENDS);
        }
        Ok(pattern(text.into()))
    }

    /// Matches one value.
    pub(crate) fn matches(&self, value: &str, case: Case) -> bool {
        let value = value.as_bytes();
        match self {
            Self::Exact(s) => bytes_eq(value, s.as_bytes(), case),
            Self::Prefix(p) => value
                .get(..p.len())
                .is_some_and(|head| bytes_eq(head, p.as_bytes(), case)),
            // `start` <= value.len() by `checked_sub`, so the slice is in range.
            Self::Suffix(s) => value
                .len()
                .checked_sub(s.len())
                .is_some_and(|start| bytes_eq(&value[start..], s.as_bytes(), case)),
            Self::Presence => !value.is_empty(),
        }
    }

    /// Matches the values of a repeated header as if they were joined with `,` (as Envoy
    /// does), without building the joined string. `values` yields a fresh iterator over the
    /// values each time it is called. No value at all (the header is absent) matches nothing.
    /// Header values compare case-sensitively, byte for byte.
    pub(crate) fn matches_joined<'v, I, F>(&self, values: F) -> bool
    where
        F: Fn() -> I,
        I: Iterator<Item = &'v [u8]>,
    {
        let (count, bytes) = values().fold((0usize, 0usize), |(n, len), v| (n + 1, len + v.len()));
        if count == 0 {
            return false;
        }
        let total = bytes + (count - 1);
        match self {
            Self::Presence => true,
            Self::Exact(s) => total == s.len() && joined_region_eq(values(), 0, s.as_bytes()),
            Self::Prefix(p) => total >= p.len() && joined_region_eq(values(), 0, p.as_bytes()),
            Self::Suffix(s) => {
                total >= s.len() && joined_region_eq(values(), total - s.len(), s.as_bytes())
            }
        }
    }
}

fn bytes_eq(a: &[u8], b: &[u8], case: Case) -> bool {
    match case {
        Case::Sensitive => a == b,
        Case::Insensitive => a.eq_ignore_ascii_case(b),
    }
}

/// Whether `needle` occurs at byte offset `start` of the virtual string `v0,v1,...,vn`.
/// The caller has checked that `start + needle.len()` is within the joined length.
fn joined_region_eq<'v>(
    values: impl Iterator<Item = &'v [u8]>,
    start: usize,
    needle: &[u8],
) -> bool {
    let end = start + needle.len();
    let mut pos = 0usize;
    for (i, value) in values.enumerate() {
        let separator: &[u8] = if i == 0 { b"" } else { b"," };
        for chunk in [separator, value] {
            let (lo, hi) = (pos.max(start), (pos + chunk.len()).min(end));
            // In range: pos <= lo < hi <= pos + chunk.len() and start <= lo < hi <= end.
            if lo < hi && chunk[lo - pos..hi - pos] != needle[lo - start..hi - start] {
                return false;
            }
            pos += chunk.len();
            if pos >= end {
                return true;
            }
        }
    }
    pos >= end
}

/// A compiled `to.paths` entry: a string pattern, or a URI template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPattern {
    Str(StrPattern),
    Template(Template),
}

/// `/api/{*}/status`, `/files/{**}`: literal segments and `{*}`, optionally ending in `{**}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// The segments after the leading `/`, without a final `{**}`.
    segments: Box<[Segment]>,
    /// The template ends in `{**}`: any remainder (after one more `/`) matches.
    rest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `{*}`: one non-empty segment.
    One,
}

const ONE: &str = "{*}";
const REST: &str = "{**}";

impl PathPattern {
    /// Compiles a path pattern. A path containing `{*}` or `{**}` is a template and is
    /// validated as Istio does; any other path is a string pattern (so `/a/{id}` is literal).
    pub(crate) fn parse(raw: &str) -> Result<Self, &'static str> {
        if !(raw.contains(ONE) || raw.contains(REST)) {
            return StrPattern::parse(raw).map(Self::Str);
        }
        let Some(body) = raw.strip_prefix('/') else {
            return Err("a path template must start with '/'");
        };
        let parts: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut rest = false;
        for (i, part) in parts.iter().enumerate() {
            match *part {
                ONE => segments.push(Segment::One),
                REST if i + 1 == parts.len() => rest = true,
                REST => return Err("{**} is allowed only as the last segment"),
                p if p.contains(ONE) || p.contains(REST) => {
                    return Err("a template operator ({*} or {**}) must fill a whole path segment");
                }
                p if p.contains(['{', '}']) => {
                    return Err("'{' and '}' are allowed only in the operators {*} and {**}");
                }
                p if p.contains('*') => {
                    return Err("a path with {*} or {**} templates must not also use '*'");
                }
                p => segments.push(Segment::Literal(p.into())),
            }
        }
        Ok(Self::Template(Template {
            segments: segments.into(),
            rest,
        }))
    }

    /// Matches a normalized path (no query). Paths compare case-sensitively.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Str(p) => p.matches(path, Case::Sensitive),
            Self::Template(t) => t.matches(path),
        }
    }
}

impl Template {
    fn matches(&self, path: &str) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = body.split('/');
        for segment in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            let ok = match segment {
                Segment::Literal(lit) => part == &**lit,
                Segment::One => !part.is_empty(),
            };
            if !ok {
                return false;
            }
        }
        // `{**}` needs its own `/` (so `/files/{**}` is not `/files`), then takes anything.
        parts.next().is_some() == self.rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_patterns() {
        use Case::{Insensitive as I, Sensitive as S};
        #[rustfmt::skip]
        let cases: &[(&str, &str, Case, bool)] = &[
            ("abc", "abc", S, true),
            ("abc", "ABC", S, false),
            ("abc", "ABC", I, true),
            ("abc", "abcd", S, false),
            ("abc*", "abc", S, true),
            ("abc*", "abcdef", S, true),
            ("abc*", "ab", S, false),
            ("abc*", "ABCx", I, true),
            ("*abc", "xabc", S, true),
            ("*abc", "abc", S, true),
            ("*abc", "bc", S, false),
            ("*abc", "xABC", S, false),
            ("*.example.com", "a.b.example.com", I, true),
            ("*.example.com", "example.com", I, false),
            ("*", "x", S, true),
            ("*", "", S, false),
            ("é*", "é!", S, true),
            ("*é", "aé", S, true),
            ("ab*", "aé", S, false),
        ];
        for (pattern, value, case, want) in cases {
            let p = StrPattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(value, *case),
                *want,
                "{pattern:?} vs {value:?} ({case:?})"
            );
        }
    }

    #[test]
    fn string_pattern_errors() {
        for bad in ["*a*", "a*b", "**", "***", "a**", "**a", "*a*b"] {
            assert_eq!(StrPattern::parse(bad), Err(STAR_ONLY_AT_ENDS), "{bad:?}");
        }
        assert!(StrPattern::parse("").is_err());
    }

    #[test]
    fn joined_header_values() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], bool)] = &[
            ("a,b", &["a", "b"], true),
            ("a,b", &["a,b"], true),
            ("a", &["a", "b"], false),
            ("a,b,c", &["a", "b", "c"], true),
            ("a,", &["a", ""], true),
            ("a*", &["a", "b"], true),
            ("a,b*", &["a", "bc"], true),
            ("a,c*", &["a", "bc"], false),
            ("*,b", &["a", "b"], true),
            ("*c,d", &["ab", "c", "d"], true),
            ("*b,c", &["ab", "c", "d"], false),
            ("*", &[""], true),
            ("*", &[], false),
            ("x", &[], false),
            ("abcdef*", &["abc", "def"], false),
            ("abc,def*", &["abc", "def"], true),
            ("*abc,def", &["abc", "def"], true),
            ("*xabc,def", &["abc", "def"], false),
        ];
        for (pattern, values, want) in cases {
            let p = StrPattern::parse(pattern).unwrap();
            let got = p.matches_joined(|| values.iter().map(|v| v.as_bytes()));
            assert_eq!(got, *want, "{pattern:?} vs {values:?}");
        }
    }

    #[test]
    fn path_patterns() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("/a", "/a", true),
            ("/a", "/A", false),
            ("/api/*", "/api/x/y", true),
            ("/api/*", "/api", false),
            ("*/status", "/x/status", true),
            ("/api/{*}/status", "/api/v1/status", true),
            ("/api/{*}/status", "/api//status", false),
            ("/api/{*}/status", "/api/v1/v2/status", false),
            ("/api/{*}/status", "/api/v1/status/", false),
            ("/api/{*}", "/api/v1", true),
            ("/api/{*}", "/api/", false),
            ("/files/{**}", "/files/", true),
            ("/files/{**}", "/files/a", true),
            ("/files/{**}", "/files/a/b", true),
            ("/files/{**}", "/files", false),
            ("/files/{**}", "/filesx/a", false),
            ("/{**}", "/", true),
            ("/{**}", "/a/b", true),
            ("/{*}/{**}", "/a", false),
            ("/{*}/{**}", "/a/", true),
            ("/a/{id}", "/a/{id}", true),
            ("/a/{*}/", "/a/b/", true),
            ("/a/{*}/", "/a/b", false),
        ];
        for (pattern, path, want) in cases {
            let p = PathPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(path), *want, "{pattern:?} vs {path:?}");
        }
    }

    #[test]
    fn path_template_errors() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("/a{*}", "whole path segment"),
            ("/{*}{*}", "whole path segment"),
            ("/{*}x", "whole path segment"),
            ("/{**}/a", "only as the last segment"),
            ("/{**}/", "only as the last segment"),
            ("/a/{*}/b*", "must not also use '*'"),
            ("{*}/a", "must start with '/'"),
            ("/{id}/{*}", "'{' and '}'"),
        ];
        for (pattern, fragment) in cases {
            let err = PathPattern::parse(pattern).unwrap_err();
            assert!(err.contains(fragment), "{pattern:?}: {err}");
        }
    }
}

//! Path normalization (SPEC §3 "Path normalization"): turns the request path into the one
//! path that authorization, routing and the upstream all see, or refuses it with a [`BadPath`].
//!
//! Owns: the always-400 checks, `escaped_slashes` (`keep | reject | redirect | decode`) and the
//! modes `none | base | merge_slashes`. Does not own: cutting the query (the caller passes the
//! path only and re-appends `?query`, also to a redirect `location`), `OPTIONS *` (the caller
//! answers it; here `*` is [`BadPath::NotAbsolute`]), or building the 400/307 responses.
//!
//! The pipeline, in order:
//! 1. drop a `#fragment`;
//! 2. always-400 checks, in every mode: the path must start with `/`; every `%` must be
//!    followed by two hex digits; `%00` is refused; raw bytes 0x00-0x1F, 0x7F and space are
//!    refused. Raw bytes >= 0x80 (UTF-8) and other printable ASCII are allowed: hyper never
//!    hands us the former, and rejecting the latter is the HTTP parser's job. Encoded control
//!    characters other than `%00` (`%0a`) are allowed and stay encoded. When a path has several
//!    problems, the first one from the left is reported (the leading `/` is checked first);
//! 3. `none` stops here: the path is used exactly as received, and `escaped_slashes` is not
//!    applied at all (SPEC: "`escaped_slashes` included");
//! 4. `escaped_slashes` for `%2F %2f %5C %5c`: `reject` → [`BadPath::EscapedSlash`];
//!    `redirect` → [`Normalized::Redirect`] to the path normalized as if `decode` had been
//!    chosen (only when such an escape is present); `decode` → `%2F` and `%5C` both become `/`
//!    (a decoded `\` would become `/` in the next step anyway). A raw `\` is not an escaped
//!    slash: it is never rejected nor redirected, `base` turns it into `/`;
//! 5. `base`: decode escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) exactly once,
//!    `\` → `/`, then remove dot segments (RFC 3986 §5.2.4) where `.;x` and `..;x` count as
//!    `.` and `..`; `..` never climbs above `/`, and a final `.` or `..` leaves a trailing `/`.
//!    Other escapes (`%252e`, `%c0%af`, `%3B`, and `%2F` under `keep`) stay, in their case;
//! 6. `merge_slashes`: collapse runs of `/`, *after* removing dot segments (Envoy's classic
//!    order), so `/a//..` is `/a/` before merging.
//!
//! A path needing none of this is returned borrowed: the common case does not allocate.
//! Output is idempotent: normalizing a result again (same options) returns it unchanged.

use std::borrow::Cow;
use std::fmt;

/// The `path_normalization` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathNormalization {
    /// Match and forward the path as received (after the always-400 checks).
    None,
    /// Envoy's `normalize_path`: unreserved escapes, `\`, dot segments.
    Base,
    /// `Base`, then collapse runs of `/`.
    MergeSlashes,
}

/// The `escaped_slashes` setting: what to do with `%2F %2f %5C %5c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Leave them encoded (as received, in their case).
    Keep,
    /// Answer 400.
    Reject,
    /// Answer 307 to the decoded and normalized path.
    Redirect,
    /// Decode them to `/` and go on.
    Decode,
}

/// Both settings, as the proxy holds them per listener/server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub mode: PathNormalization,
    pub escaped_slashes: EscapedSlashes,
}

/// What to do with a request whose path passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub enum Normalized<'a> {
    /// Go on with this path (borrowed when nothing changed: the common case must not allocate).
    Path(Cow<'a, str>),
    /// escaped_slashes = redirect and the path contained %2F/%2f/%5C/%5c: answer 307 with
    /// `location` = this path (escaped slashes decoded, then normalized per `mode`), the caller appends `?query`.
    Redirect(String),
}

/// Why a path is refused with 400, in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// A `%` not followed by two hex digits (`%zz`, `%4`, `%` at the end).
    MalformedEscape,
    /// `%00`.
    EncodedNul,
    /// A raw byte 0x00-0x1F, 0x7F or a space.
    ControlOrSpace,
    /// The path does not start with `/` (this includes `*` and the empty path).
    NotAbsolute,
    /// `%2F %2f %5C %5c` under `escaped_slashes = reject`.
    EscapedSlash,
}

// === impl BadPath ===

impl BadPath {
    /// Short text for logs and the 400 body.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::MalformedEscape => "malformed percent-escape in path",
            Self::EncodedNul => "encoded NUL (%00) in path",
            Self::ControlOrSpace => "control character or space in path",
            Self::NotAbsolute => "path does not start with '/'",
            Self::EscapedSlash => "escaped slash (%2F or %5C) in path",
        }
    }
}

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for BadPath {}

// === normalize ===

/// Normalizes a request path (no query) per `opts`; see the module doc for the pipeline.
///
/// `path` is the request path only: the caller already cut at `?`. A `#` and everything after
/// it are dropped first. The caller handles `OPTIONS *` itself; here `*` is `NotAbsolute`.
pub fn normalize(opts: Options, path: &str) -> Result<Normalized<'_>, BadPath> {
    let path = path
        .split_once('#')
        .map_or(path, |(before, _fragment)| before);
    let found = Scan::of(path)?;
    let mode = opts.mode;
    if mode == PathNormalization::None {
        return Ok(Normalized::Path(Cow::Borrowed(path)));
    }
    let decode_slashes = match (opts.escaped_slashes, found.escaped_slash) {
        (EscapedSlashes::Keep, _) | (_, false) => false,
        (EscapedSlashes::Decode, true) => true,
        (EscapedSlashes::Reject, true) => return Err(BadPath::EscapedSlash),
        (EscapedSlashes::Redirect, true) => {
            return Ok(Normalized::Redirect(one_leading_slash(rewrite(
                mode, path, true,
            ))));
        }
    };
    let normalized = if found.needs_rewrite(mode, decode_slashes) {
        Cow::Owned(rewrite(mode, path, decode_slashes))
    } else {
        Cow::Borrowed(path)
    };
    Ok(Normalized::Path(normalized))
}

/// A redirect `location` starts with exactly one `/` in every mode: under `base`,
/// `/%2Fevil.com` decodes to `//evil.com`, which a browser reads as another host.
fn one_leading_slash(mut location: String) -> String {
    let slashes = location.len() - location.trim_start_matches('/').len();
    if slashes > 1 {
        location.drain(..slashes - 1);
    }
    location
}

/// What one pass over the raw path found, once it passed the always-400 checks.
#[derive(Debug, Default)]
struct Scan {
    /// `%2F %2f %5C %5c`.
    escaped_slash: bool,
    /// An escape of an unreserved character (`%41`, `%2e`, `%7E`, ...).
    unreserved_escape: bool,
    /// A raw `\`.
    backslash: bool,
    /// A segment `.`, `..`, `.;x` or `..;x` between raw `/`s.
    dot_segment: bool,
    /// `//`.
    double_slash: bool,
}

impl Scan {
    /// The always-400 checks, and what `base`/`merge_slashes` would have to change.
    fn of(path: &str) -> Result<Self, BadPath> {
        let bytes = path.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(BadPath::NotAbsolute);
        }
        let mut found = Self::default();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    match escape_at(bytes, i) {
                        None => return Err(BadPath::MalformedEscape),
                        Some(0) => return Err(BadPath::EncodedNul),
                        Some(b'/' | b'\\') => found.escaped_slash = true,
                        Some(b) if is_unreserved(b) => found.unreserved_escape = true,
                        Some(_) => {}
                    }
                    i += 3;
                    continue;
                }
                b'/' => {
                    let rest = &bytes[i + 1..];
                    found.double_slash |= rest.first() == Some(&b'/');
                    found.dot_segment |= starts_with_dot_segment(rest);
                }
                b'\\' => found.backslash = true,
                0x00..=0x20 | 0x7f => return Err(BadPath::ControlOrSpace),
                _ => {}
            }
            i += 1;
        }
        Ok(found)
    }

    /// Whether [`rewrite`] would change the path (otherwise it is returned borrowed).
    fn needs_rewrite(&self, mode: PathNormalization, decode_slashes: bool) -> bool {
        self.unreserved_escape
            || self.backslash
            || self.dot_segment
            || (decode_slashes && self.escaped_slash)
            || (mode == PathNormalization::MergeSlashes && self.double_slash)
    }
}

/// Steps 4-6 of the pipeline on a path that passed [`Scan::of`].
fn rewrite(mode: PathNormalization, path: &str, decode_slashes: bool) -> String {
    let decoded = decode(path, decode_slashes);
    remove_dot_segments(&decoded, mode == PathNormalization::MergeSlashes)
}

/// One left-to-right pass: unreserved escapes are decoded, `\` becomes `/`, and with
/// `decode_slashes` so do `%2F` and `%5C`. Every other byte and escape is copied as it is, so
/// nothing is decoded twice (`%252e` stays `%252e`).
fn decode(path: &str, decode_slashes: bool) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut copied = 0; // bytes before this index are already in `out`
    let mut i = 0;
    while i < bytes.len() {
        let (replacement, width) = match bytes[i] {
            b'\\' => ('/', 1),
            b'%' => match escape_at(bytes, i) {
                Some(b) if is_unreserved(b) => (char::from(b), 3),
                Some(b'/' | b'\\') if decode_slashes => ('/', 3),
                Some(_) => {
                    i += 3;
                    continue;
                }
                None => {
                    i += 1; // unreachable after Scan::of; copy the `%` as it is
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        // `i` is at an ASCII byte (`\` or `%`), hence on a char boundary.
        out.push_str(&path[copied..i]);
        out.push(replacement);
        i += width;
        copied = i;
    }
    out.push_str(&path[copied..]);
    out
}

/// RFC 3986 §5.2.4 on the segments of an absolute path, with `.;x`/`..;x` as `.`/`..`;
/// with `merge`, empty segments are then dropped (runs of `/` collapsed).
fn remove_dot_segments(path: &str, merge: bool) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let relative = path.strip_prefix('/').unwrap_or(path);
    let mut segments = relative.split('/').peekable();
    while let Some(segment) = segments.next() {
        match dot_segment(segment) {
            None => {
                kept.push(segment);
                continue;
            }
            Some(Dot::Current) => {}
            Some(Dot::Parent) => {
                kept.pop(); // at the root, `..` stays at the root
            }
        }
        if segments.peek().is_none() {
            kept.push(""); // `/a/.` is `/a/`, `/a/b/..` is `/a/`
        }
    }
    let mut out = String::with_capacity(path.len());
    let last = kept.len().saturating_sub(1);
    for (n, segment) in kept.iter().enumerate() {
        // An empty segment other than the last one is what a `//` is made of.
        if merge && segment.is_empty() && n != last {
            continue;
        }
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// A dot segment, after the `;params` of `.;x` and `..;x` are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dot {
    Current,
    Parent,
}

fn dot_segment(segment: &str) -> Option<Dot> {
    let name = segment
        .split_once(';')
        .map_or(segment, |(name, _params)| name);
    match name {
        "." => Some(Dot::Current),
        ".." => Some(Dot::Parent),
        _ => None,
    }
}

/// Whether `rest` (the bytes after a `/`) starts with a dot segment, given the raw bytes.
fn starts_with_dot_segment(rest: &[u8]) -> bool {
    let after = rest.strip_prefix(b"..").or_else(|| rest.strip_prefix(b"."));
    after.is_some_and(|after| matches!(after.first(), None | Some(b'/' | b';')))
}

/// The byte encoded by the escape whose `%` is at `bytes[i]`, or `None` if it is malformed.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    match bytes.get(i + 1..i + 3)? {
        &[hi, lo] => Some((hex_value(hi)? << 4) | hex_value(lo)?),
        _ => None,
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved: `A-Z a-z 0-9 - . _ ~`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests;

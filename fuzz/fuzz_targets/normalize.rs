//! Path normalization, checked by its properties rather than for crashes alone:
//! 1. any input, every mode: no panic; a normalized path normalizes to itself (idempotence);
//! 2. under `merge_slashes` (the default) the output starts with one `/`, has no `//`, no dot
//!    segment, no `\` and no percent-escape of an unreserved character; a redirect location
//!    starts with exactly one `/` (it never names another host);
//! 3. spellings: a clean path and a respelling of it (escaped unreserved characters in any
//!    case, `./` and `x/../` segments, doubled slashes, `\` for `/`, `.;x` parameters)
//!    normalize to the same path, so every policy decides them alike.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::request::normalize::{EscapedSlashes, Normalized, Options, PathNormalization, normalize};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    raw: Vec<u8>,
    /// A clean path, as segments of [a-z0-9-._~] (empty, `.` and `..` segments dropped).
    segments: Vec<Vec<u8>>,
    trailing_slash: bool,
    /// How to respell it.
    edits: Vec<Edit>,
}

#[derive(Debug, Arbitrary)]
enum Edit {
    /// Percent-escape the byte at this position (if unreserved), upper or lower hex.
    Escape(u16, bool),
    /// Insert `./` after the slash at this position.
    Dot(u16),
    /// Insert `zz/../` after the slash at this position.
    Up(u16),
    /// Double the slash at this position.
    Double(u16),
    /// Write the slash at this position as `\`.
    Backslash(u16),
    /// Insert `.;p=1/` after the slash at this position.
    DotParam(u16),
}

const MODES: [PathNormalization; 3] = [
    PathNormalization::None,
    PathNormalization::Base,
    PathNormalization::MergeSlashes,
];
const ESCAPED: [EscapedSlashes; 4] = [
    EscapedSlashes::Keep,
    EscapedSlashes::Reject,
    EscapedSlashes::Redirect,
    EscapedSlashes::Decode,
];

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn check_merged(out: &str, input: &str) {
    assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    assert!(!out.contains("//"), "{input:?} -> {out:?}");
    assert!(!out.contains('\\'), "{input:?} -> {out:?}");
    for seg in out.split('/') {
        assert!(seg != "." && seg != "..", "dot segment: {input:?} -> {out:?}");
        assert!(!seg.starts_with(".;") && !seg.starts_with("..;"), "{input:?} -> {out:?}");
    }
    let bytes = out.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                assert!(!unreserved(v), "escaped unreserved {hex}: {input:?} -> {out:?}");
            }
        }
    }
}

fuzz_target!(|input: Input| {
    // 1 and 2: arbitrary bytes (as a path hyper could hand over: visible ASCII mostly).
    if let Ok(raw) = std::str::from_utf8(&input.raw) {
        for mode in MODES {
            for escaped_slashes in ESCAPED {
                let opts = Options { mode, escaped_slashes };
                match normalize(opts, raw) {
                    Ok(Normalized::Path(p)) => {
                        let again = normalize(opts, &p);
                        assert_eq!(again, Ok(Normalized::Path(p.clone())), "not idempotent: {raw:?}");
                        if mode == PathNormalization::MergeSlashes {
                            check_merged(&p, raw);
                        }
                    }
                    Ok(Normalized::Redirect(location)) => {
                        assert!(location.starts_with('/') && !location.starts_with("//"), "{raw:?} -> {location:?}");
                        if mode == PathNormalization::MergeSlashes {
                            check_merged(&location, raw);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }

    // 3: a clean path and a respelling of it.
    let mut clean = String::from("/");
    let segments: Vec<String> = input
        .segments
        .iter()
        .take(16)
        .map(|s| {
            s.iter()
                .take(12)
                .map(|b| b"abcdefghijklmnopqrstuvwxyz0123456789-._~"[usize::from(*b) % 40] as char)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty() && s != "." && s != "..")
        .collect();
    clean.push_str(&segments.join("/"));
    if input.trailing_slash && !segments.is_empty() {
        clean.push('/');
    }
    let mut spelled: Vec<u8> = clean.clone().into_bytes();
    // Doubled slashes first: an empty segment next to an inserted `..` would be what that
    // `..` removes (RFC 3986 dot removal runs before merging, as in Envoy).
    let edits = input.edits.iter().take(16);
    let (doubles, others): (Vec<&Edit>, Vec<&Edit>) =
        edits.partition(|e| matches!(e, Edit::Double(_)));
    for edit in doubles.into_iter().chain(others) {
        let at = |p: u16, len: usize| usize::from(p) % len.max(1);
        let slashes: Vec<usize> = spelled
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| i)
            .collect();
        match edit {
            &Edit::Escape(p, upper) => {
                let i = at(p, spelled.len());
                let b = spelled[i];
                // Only a raw unreserved byte (not one inside an earlier escape).
                let inside_escape = (i >= 1 && spelled[i - 1] == b'%') || (i >= 2 && spelled[i - 2] == b'%');
                if unreserved(b) && !inside_escape {
                    let hex = if upper { format!("%{b:02X}") } else { format!("%{b:02x}") };
                    spelled.splice(i..=i, hex.into_bytes());
                }
            }
            &Edit::Dot(p) => {
                let i = slashes[at(p, slashes.len())];
                spelled.splice(i + 1..i + 1, b"./".iter().copied());
            }
            &Edit::Up(p) => {
                let i = slashes[at(p, slashes.len())];
                spelled.splice(i + 1..i + 1, b"zz/../".iter().copied());
            }
            &Edit::Double(p) => {
                let i = slashes[at(p, slashes.len())];
                spelled.insert(i, b'/');
            }
            &Edit::Backslash(p) => {
                let i = slashes[at(p, slashes.len())];
                if i > 0 {
                    spelled[i] = b'\\';
                }
            }
            &Edit::DotParam(p) => {
                let i = slashes[at(p, slashes.len())];
                spelled.splice(i + 1..i + 1, b".;p=1/".iter().copied());
            }
        }
    }
    let spelled = String::from_utf8(spelled).expect("ASCII edits of an ASCII path");
    let opts = Options {
        mode: PathNormalization::MergeSlashes,
        escaped_slashes: EscapedSlashes::Decode,
    };
    let want = normalize(opts, &clean).expect("a clean path normalizes");
    let got = normalize(opts, &spelled).expect("a respelled clean path normalizes");
    assert_eq!(got, want, "{clean:?} respelled as {spelled:?}");
});

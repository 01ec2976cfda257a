use super::*;

const NONE: PathNormalization = PathNormalization::None;
const BASE: PathNormalization = PathNormalization::Base;
const MERGE: PathNormalization = PathNormalization::MergeSlashes;
const KEEP: EscapedSlashes = EscapedSlashes::Keep;
const REJECT: EscapedSlashes = EscapedSlashes::Reject;
const REDIRECT: EscapedSlashes = EscapedSlashes::Redirect;
const DECODE: EscapedSlashes = EscapedSlashes::Decode;
const MODES: [PathNormalization; 3] = [NONE, BASE, MERGE];
const ESCAPED: [EscapedSlashes; 4] = [KEEP, REJECT, REDIRECT, DECODE];

#[derive(Debug, Clone, Copy)]
enum Want {
    Ok(&'static str),
    Redirect(&'static str),
    Bad(BadPath),
}
use BadPath::{ControlOrSpace, EncodedNul, EscapedSlash, MalformedEscape, NotAbsolute};
use Want::{Bad, Ok as Go, Redirect as To};

fn run(mode: PathNormalization, escaped_slashes: EscapedSlashes, path: &str) -> Want2 {
    let opts = Options {
        mode,
        escaped_slashes,
    };
    match normalize(opts, path) {
        Ok(Normalized::Path(p)) => Want2::Ok(p.into_owned()),
        Ok(Normalized::Redirect(l)) => Want2::Redirect(l),
        Err(e) => Want2::Bad(e),
    }
}

/// An owned [`Want`], to compare results.
#[derive(Debug, PartialEq, Eq)]
enum Want2 {
    Ok(String),
    Redirect(String),
    Bad(BadPath),
}

impl From<Want> for Want2 {
    fn from(want: Want) -> Self {
        match want {
            Want::Ok(p) => Self::Ok(p.to_owned()),
            Want::Redirect(p) => Self::Redirect(p.to_owned()),
            Want::Bad(e) => Self::Bad(e),
        }
    }
}

/// `(mode, escaped_slashes, input, expected)`. "row N" cites normalization-cases.md.
#[rustfmt::skip]
const CASES: &[(PathNormalization, EscapedSlashes, &str, Want)] = &[
    // --- normalization-cases.md, `normalize_path` ---
    (BASE, KEEP, "/xyz", Go("/xyz")),                                   // row 1
    (BASE, KEEP, "/x/y/z", Go("/x/y/z")),                               // row 2
    (BASE, KEEP, "/a/b/../c", Go("/a/c")),                              // row 3
    (BASE, KEEP, "/a/b/./c", Go("/a/b/c")),                             // row 4
    (BASE, KEEP, "a/b/../c", Bad(NotAbsolute)),                         // row 5: 400 in gatehouse
    (BASE, KEEP, "/a/b/../../../../c", Go("/c")),                       // row 6
    (BASE, KEEP, "/a/..\\c", Go("/c")),                                 // row 7
    (BASE, KEEP, "/%c0%af", Go("/%c0%af")),                             // row 8
    (BASE, KEEP, "/%5c%25", Go("/%5c%25")),                             // row 9
    (BASE, DECODE, "/%5c%25", Go("//%25")),                             // row 9, %5c decoded: `\` → `/`
    (MERGE, DECODE, "/%5c%25", Go("/%25")),                             // row 9
    (BASE, REJECT, "/%5c%25", Bad(EscapedSlash)),                       // row 9
    (BASE, KEEP, "/a/b/%2E%2E/c", Go("/a/c")),                          // row 10 (also a SPEC example)
    (BASE, KEEP, "/a/b/%2e%2e/c", Go("/a/c")),                          // row 11
    (BASE, KEEP, "/a/b/%2E./c", Go("/a/c")),                            // row 12
    (BASE, KEEP, "/a/b/%2E/c", Go("/a/b/c")),                           // row 13
    (BASE, KEEP, "..", Bad(NotAbsolute)),                               // row 14: relative, 400 (the note omits it)
    (BASE, KEEP, "/../a/b", Go("/a/b")),                                // row 15
    (BASE, KEEP, "/./a/b", Go("/a/b")),                                 // row 16
    (BASE, KEEP, "/A/B/C", Go("/A/B/C")),                               // row 17
    (BASE, KEEP, "/a/%2F%2f/c", Go("/a/%2F%2f/c")),                     // row 18
    (MERGE, KEEP, "/a/%2F%2f/c", Go("/a/%2F%2f/c")),                    // row 18
    (BASE, DECODE, "/a/%2F%2f/c", Go("/a////c")),                       // row 18
    (MERGE, DECODE, "/a/%2F%2f/c", Go("/a/c")),                         // row 18
    (MERGE, REDIRECT, "/a/%2F%2f/c", To("/a/c")),                       // row 18
    (MERGE, REJECT, "/a/%2F%2f/c", Bad(EscapedSlash)),                  // row 18
    (BASE, KEEP, "/xyz/..;foo=bar/abc", Go("/abc")),                    // row 19 (and 66, 31)
    (BASE, KEEP, "/..;foo=bar/abc", Go("/abc")),                        // row 20
    (BASE, KEEP, "/xyz/..;foo=bar", Go("/")),                           // row 21
    (BASE, KEEP, "/xyz/.;foo=bar/abc", Go("/xyz/abc")),                 // row 22
    (BASE, KEEP, "/.;foo=bar/abc", Go("/abc")),                         // row 23
    (BASE, KEEP, "/xyz/.;foo=bar", Go("/xyz/")),                        // row 24
    (BASE, KEEP, "/xyz/..;foo=bar/.;v1=2,v2=3/abc", Go("/abc")),        // row 25
    (BASE, KEEP, "/..;foo=bar/abc/.;mmm", Go("/abc/")),                 // row 26
    (BASE, KEEP, "/.;aaa/..;foo=bar/abc/.;mmm", Go("/abc/")),           // row 27
    (BASE, KEEP, "/xyz/..;foo=bar/.;fff=zzz", Go("/")),                 // row 28 (and 29, query cut by the caller)
    (BASE, KEEP, "/xyz/..;foo=bar/.;fff=zzz/remain;blah-bluh", Go("/remain;blah-bluh")), // row 30
    (BASE, KEEP, "/xyz/.%00../abc", Bad(EncodedNul)),                   // row 32
    (BASE, KEEP, "/xyz/%00.%00./abc", Bad(EncodedNul)),                 // row 33
    (BASE, KEEP, "/xyz/AAAAA%%0000/abc", Bad(MalformedEscape)),         // row 34
    // --- `merge_slashes` ---
    (MERGE, KEEP, "", Bad(NotAbsolute)),                                // row 35: 400 in gatehouse
    (MERGE, KEEP, "a//b/c", Bad(NotAbsolute)),                          // row 36: 400 in gatehouse
    (MERGE, KEEP, "/a//b/c/", Go("/a/b/c/")),                           // row 37 (absolute: applies, unlike the note says)
    (MERGE, KEEP, "a//b/c/", Bad(NotAbsolute)),                         // row 38: 400 in gatehouse
    (MERGE, KEEP, "/a", Go("/a")),                                      // row 39
    (MERGE, KEEP, "//a/b/c", Go("/a/b/c")),                             // row 40
    (MERGE, KEEP, "/a//b/c", Go("/a/b/c")),                             // row 41
    (MERGE, KEEP, "/a/b/c//", Go("/a/b/c/")),                           // row 42
    (MERGE, KEEP, "/a///b/c", Go("/a/b/c")),                            // row 43
    (MERGE, KEEP, "/a////b/c", Go("/a/b/c")),                           // row 44
    (MERGE, KEEP, "/a//b", Go("/a/b")),                                 // rows 45, 46: path part
    (MERGE, KEEP, "//a/", Go("/a/")),                                   // row 47: path part
    (BASE, KEEP, "//a/", Go("//a/")),                                   // row 47 without merging
    // --- escaped-slash unescaping (no leading `/` in Envoy's helper tests: 400 here) ---
    (BASE, DECODE, "%2f%2F", Bad(NotAbsolute)),                         // row 48
    (BASE, DECODE, "/%2f%2F", Go("///")),                               // row 48 with a leading `/`
    (MERGE, DECODE, "/%2f%2F", Go("/")),                                // row 48
    (BASE, DECODE, "/a%2Fb%2fc/", Go("/a/b/c/")),                       // row 49
    (BASE, DECODE, "/%2b", Go("/%2b")),                                 // row 50 (`+` is reserved)
    (BASE, DECODE, "/abc%2", Bad(MalformedEscape)),                     // row 51
    (BASE, DECODE, "%2", Bad(NotAbsolute)),                             // row 51
    (BASE, DECODE, "/%", Bad(MalformedEscape)),                         // row 51
    (BASE, DECODE, "/foo%", Bad(MalformedEscape)),                      // row 51
    (BASE, DECODE, "/a%2F", Go("/a/")),                                 // row 52
    (BASE, DECODE, "/%2fa/", Go("//a/")),                               // row 53 with a leading `/`
    (BASE, DECODE, "/%%2fa/", Bad(MalformedEscape)),                    // row 54: `%%` is malformed here
    (BASE, DECODE, "/%2%2fa/", Bad(MalformedEscape)),                   // row 55
    (BASE, DECODE, "/%5c%5C", Go("///")),                               // row 56 with a leading `/`, `\` → `/`
    (BASE, DECODE, "/a%5Cb%5cc/", Go("/a/b/c/")),                       // row 57, `\` → `/`
    (BASE, DECODE, "/x/%2E%2e/z%2f%2Fabc%5C../def", Go("/z//def")),     // row 58, then base
    (MERGE, DECODE, "/x/%2E%2e/z%2f%2Fabc%5C../def", Go("/z/def")),     // row 58
    (BASE, KEEP, "/x/%2E%2e/z%2f%2Fabc%5C../def", Go("/z%2f%2Fabc%5C../def")), // row 58 under keep
    (MERGE, DECODE, "/%2fa%5Cb%2fc%5c", Go("/a/b/c/")),                 // row 59: path part, leading `/`
    // --- end to end ---
    (BASE, DECODE, "/private/..%2Fpublic%5c%2e%2Fabc", Go("/public/abc")),  // row 60
    (MERGE, DECODE, "/private/..%2Fpublic%5c%2e%2Fabc", Go("/public/abc")), // row 60
    (MERGE, REDIRECT, "/private/..%2Fpublic%5c%2e%2Fabc", To("/public/abc")), // row 60
    (BASE, KEEP, "/private/..%2Fpublic%5c%2e%2Fabc", Go("/private/..%2Fpublic%5c.%2Fabc")), // row 60 under keep
    // --- fragments (rows 61, 62, 64 and the `?` forms of 65 are query-only: the caller's job) ---
    (BASE, KEEP, "/abc#fragment?param=value", Go("/abc")),             // row 63
    (NONE, KEEP, "/abc#fragment?param=value", Go("/abc")),             // row 63
    (BASE, KEEP, "/abc#", Go("/abc")),                                  // row 65
    (BASE, KEEP, "/abc##", Go("/abc")),                                 // row 65
    // --- path-parameter helpers ---
    (NONE, KEEP, "/xyz/..;foo=bar/abc", Go("/xyz/..;foo=bar/abc")),     // row 66 under none
    (BASE, KEEP, "/xyz/...;foo", Go("/xyz/...;foo")),                   // row 67
    (BASE, KEEP, "/xyz/remove/..;foo", Go("/xyz/")),                    // row 68: path part
    (BASE, KEEP, "/abc;p1=1/def;p2=2", Go("/abc;p1=1/def;p2=2")),       // row 69: params kept (row 30)
    (MERGE, KEEP, "/abc/;p=1/def", Go("/abc/;p=1/def")),                // row 70: params kept
    (BASE, KEEP, "/foo;param=1/bar;param=2#frag", Go("/foo;param=1/bar;param=2")), // row 71
    // --- UHV normalizer ---
    (MERGE, KEEP, "/dir1/../dir2", Go("/dir2")),                        // row 72
    (MERGE, KEEP, "/dir1/./dir2", Go("/dir1/dir2")),                    // row 73
    (MERGE, KEEP, "/dir1/..", Go("/")),                                 // row 74
    (MERGE, KEEP, "/dir1/%2e./dir2", Go("/dir2")),                      // row 75
    (MERGE, KEEP, "/dir1/.", Go("/dir1/")),                             // row 76
    (MERGE, KEEP, "/dir1/.dir2/..dir3/dir.4/dir..5", Go("/dir1/.dir2/..dir3/dir.4/dir..5")), // row 77
    (MERGE, KEEP, "///root///child//", Go("/root/child/")),             // row 78
    (BASE, KEEP, "///root///child//", Go("///root///child//")),         // row 78 without merging
    (MERGE, KEEP, "/%7e/dir1", Go("/~/dir1")),                          // row 79
    (MERGE, KEEP, "/%ff", Go("/%ff")),                                  // row 80: case kept
    (MERGE, KEEP, "/dir1%2fdir2%5cdir3", Go("/dir1%2fdir2%5cdir3")),    // row 81: case kept
    (BASE, KEEP, "//root//child//", Go("//root//child//")),             // row 82
    (BASE, DECODE, "/root%2f/child/%2f", Go("/root//child//")),         // row 83
    (MERGE, DECODE, "/dir1%2fdir2%2f/dir3%5Cdeleted%5C%2F..%2F%5cdir4", Go("/dir1/dir2/dir3/deleted/dir4")), // row 84, per the note
    (MERGE, REJECT, "/dir1%2fdir2", Bad(EscapedSlash)),                 // row 85
    (MERGE, REJECT, "/dir1%5Cdir2", Bad(EscapedSlash)),                 // row 85
    (MERGE, REDIRECT, "/dir1%2fdir2%5cdir3", To("/dir1/dir2/dir3")),    // row 86
    (BASE, REDIRECT, "/dir1%2fdir2%5cdir3", To("/dir1/dir2/dir3")),     // row 86
    (MERGE, KEEP, "/..", Go("/")),                                      // row 87: `/` here, not 400
    (MERGE, KEEP, "./", Bad(NotAbsolute)),                              // row 88
    (MERGE, KEEP, "/path%Z%30with%xYbad%7Jencoding%A", Bad(MalformedEscape)), // row 89
    // --- SPEC examples ---
    (BASE, KEEP, "/status/%2e/418", Go("/status/418")),
    (BASE, KEEP, "/status/418/.", Go("/status/418/")),
    (BASE, KEEP, "/some%2fdata/%61%62%63", Go("/some%2fdata/abc")),
    (MERGE, KEEP, "/a//b///c", Go("/a/b/c")),
    (MERGE, KEEP, "/a%0ab", Go("/a%0ab")),                              // encoded control stays
    (MERGE, KEEP, "/a%20b%7F", Go("/a%20b%7F")),
    (NONE, REJECT, "/a%2Fb/../c", Go("/a%2Fb/../c")),                   // none: escaped_slashes not applied
    (NONE, REDIRECT, "/a%2Fb", Go("/a%2Fb")),
    (NONE, DECODE, "/a%5cb//c", Go("/a%5cb//c")),
    (MERGE, REDIRECT, "/a//b/../c", Go("/a/c")),                        // redirect only with an escaped slash
    (MERGE, DECODE, "/a//b/../c", Go("/a/c")),
    // --- CVE-2021-31920: `//`, %2F, %5C, mixed case ---
    (MERGE, KEEP, "//admin", Go("/admin")),
    (MERGE, KEEP, "/public//../admin", Go("/public/admin")),            // `..` eats the empty segment first
    (BASE, DECODE, "/public/..%2Fadmin", Go("/admin")),
    (BASE, DECODE, "/public/..%2fadmin", Go("/admin")),
    (BASE, DECODE, "/public/..%5Cadmin", Go("/admin")),
    (BASE, REDIRECT, "/public/..%5cadmin", To("/admin")),
    (BASE, REJECT, "/public/..%2fadmin", Bad(EscapedSlash)),
    (BASE, KEEP, "/public/..%2Fadmin", Go("/public/..%2Fadmin")),
    (MERGE, DECODE, "/a%2fb%2Fc%5cd%5Ce", Go("/a/b/c/d/e")),
    (MERGE, REDIRECT, "/a%2fb%2Fc%5cd%5Ce", To("/a/b/c/d/e")),
    // The location never names another host, in any mode (`//evil.com` would).
    (BASE, REDIRECT, "/%2Fevil.com", To("/evil.com")),
    (BASE, REDIRECT, "/%2F%2f%5Cevil.com/x", To("/evil.com/x")),
    (BASE, REDIRECT, "/%5Cevil.com", To("/evil.com")),
    (MERGE, REDIRECT, "/%2Fevil.com", To("/evil.com")),
    (MERGE, REDIRECT, "/a/..%2f..%2fadmin", To("/admin")),
    // --- CVE-2021-39156: fragment ---
    (MERGE, KEEP, "/public#/../admin", Go("/public")),
    (BASE, KEEP, "/admin#", Go("/admin")),
    (BASE, KEEP, "#/admin", Bad(NotAbsolute)),
    (BASE, KEEP, "/a#%zz b", Go("/a")),                                 // dropped before the checks
    (NONE, KEEP, "/a#/../b", Go("/a")),
    // --- CVE-2019-9901: dot-dot, encoded or not ---
    (BASE, KEEP, "/public/../admin", Go("/admin")),
    (BASE, KEEP, "/public/%2e%2e/admin", Go("/admin")),
    (BASE, KEEP, "/public/%2E./admin", Go("/admin")),
    (BASE, KEEP, "/public/.%2e/admin", Go("/admin")),
    (MERGE, KEEP, "/public/%2E%2e/admin", Go("/admin")),
    (NONE, KEEP, "/public/%2e%2e/admin", Go("/public/%2e%2e/admin")),
    (BASE, KEEP, "/public/..", Go("/")),
    (BASE, KEEP, "/public/%2e%2e", Go("/")),
    // --- `..;` and `.;` segments ---
    (BASE, KEEP, "/public/..;/admin", Go("/admin")),
    (BASE, KEEP, "/admin/.;/secret", Go("/admin/secret")),
    (BASE, KEEP, "/public/..;jsessionid=1/admin", Go("/admin")),
    (BASE, KEEP, "/public/%2e%2e;x/admin", Go("/admin")),
    (BASE, KEEP, "/public/...;x/admin", Go("/public/...;x/admin")),
    (BASE, KEEP, "/public/..%3bx/admin", Go("/public/..%3bx/admin")),   // `;` encoded: not a parameter
    // --- percent-encoded unreserved characters ---
    (BASE, KEEP, "/%61dmin", Go("/admin")),
    (BASE, KEEP, "/%7euser", Go("/~user")),
    (BASE, KEEP, "/%7Euser", Go("/~user")),
    (BASE, KEEP, "/a%2Db%5fc", Go("/a-b_c")),
    (BASE, KEEP, "/%41%5A%30%39", Go("/AZ09")),
    (BASE, KEEP, "/a%3Bb%3fc%23d", Go("/a%3Bb%3fc%23d")),               // reserved: stay, case kept
    (NONE, KEEP, "/%61dmin", Go("/%61dmin")),
    // --- double encoding: decoded once at most ---
    (BASE, KEEP, "/%252e%252e/admin", Go("/%252e%252e/admin")),
    (MERGE, DECODE, "/public/%252e%252e/admin", Go("/public/%252e%252e/admin")),
    (MERGE, REJECT, "/a%252Fb%255cc", Go("/a%252Fb%255cc")),            // `%25` + `2F`: no escaped slash
    (MERGE, KEEP, "/%2561dmin", Go("/%2561dmin")),
    // --- overlong UTF-8 ---
    (BASE, KEEP, "/%c0%ae%c0%ae/admin", Go("/%c0%ae%c0%ae/admin")),
    (MERGE, DECODE, "/x/%e0%80%af../admin", Go("/x/%e0%80%af../admin")),
    // --- backslashes ---
    (BASE, KEEP, "/a\\b", Go("/a/b")),
    (BASE, KEEP, "/a\\\\b", Go("/a//b")),
    (MERGE, KEEP, "/a\\\\b", Go("/a/b")),
    (BASE, KEEP, "/public\\..\\admin", Go("/admin")),
    (BASE, REJECT, "/a\\b", Go("/a/b")),                                // raw `\` is not an escaped slash
    (NONE, KEEP, "/a\\b", Go("/a\\b")),
    (BASE, KEEP, "\\a", Bad(NotAbsolute)),
    // --- raw UTF-8 is allowed ---
    (BASE, KEEP, "/caf\u{e9}/../x\u{2603}", Go("/x\u{2603}")),
    (NONE, KEEP, "/caf\u{e9}", Go("/caf\u{e9}")),
    // --- always 400, in each mode ---
    (NONE, KEEP, "/a%zz", Bad(MalformedEscape)),
    (BASE, KEEP, "/a%zz", Bad(MalformedEscape)),
    (MERGE, KEEP, "/a%zz", Bad(MalformedEscape)),
    (NONE, KEEP, "/a%4", Bad(MalformedEscape)),
    (BASE, KEEP, "/a%4", Bad(MalformedEscape)),
    (MERGE, KEEP, "/a%4", Bad(MalformedEscape)),
    (NONE, KEEP, "/a%4g/b", Bad(MalformedEscape)),
    (BASE, DECODE, "/a%g4/b", Bad(MalformedEscape)),
    (MERGE, REDIRECT, "/a%", Bad(MalformedEscape)),
    (NONE, KEEP, "/a%00", Bad(EncodedNul)),
    (BASE, KEEP, "/a%00", Bad(EncodedNul)),
    (MERGE, REDIRECT, "/a%2F%00", Bad(EncodedNul)),
    (NONE, KEEP, "/a b", Bad(ControlOrSpace)),
    (BASE, KEEP, "/a b", Bad(ControlOrSpace)),
    (MERGE, KEEP, "/a b", Bad(ControlOrSpace)),
    (NONE, KEEP, "/a\tb", Bad(ControlOrSpace)),
    (BASE, KEEP, "/a\r\nb", Bad(ControlOrSpace)),
    (MERGE, KEEP, "/a\x7fb", Bad(ControlOrSpace)),
    (MERGE, DECODE, "/a\0b", Bad(ControlOrSpace)),
    (NONE, KEEP, "a", Bad(NotAbsolute)),
    (BASE, KEEP, "a", Bad(NotAbsolute)),
    (MERGE, KEEP, "a", Bad(NotAbsolute)),
    (NONE, KEEP, "*", Bad(NotAbsolute)),                                // `OPTIONS *` is the caller's
    (BASE, KEEP, "", Bad(NotAbsolute)),
    (MERGE, REJECT, "/a%2F%zz", Bad(MalformedEscape)),                  // 400 checks come before reject
    (MERGE, KEEP, "/a b%zz", Bad(ControlOrSpace)),                      // first problem from the left
    (MERGE, KEEP, "a%zz", Bad(NotAbsolute)),                            // leading `/` checked first
];

#[test]
fn cases() {
    assert!(CASES.len() >= 100, "{} rows", CASES.len());
    let mut failures = Vec::new();
    for &(mode, escaped, input, want) in CASES {
        let got = run(mode, escaped, input);
        if got != Want2::from(want) {
            failures.push(format!(
                "{mode:?}/{escaped:?} {input:?}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn always_400_in_every_mode_and_escaped_slashes_setting() {
    let bad = [
        ("/%zz", MalformedEscape),
        ("/%4", MalformedEscape),
        ("/x%", MalformedEscape),
        ("/%00", EncodedNul),
        ("/a b", ControlOrSpace),
        ("/\x01", ControlOrSpace),
        ("/\x7f", ControlOrSpace),
        ("x/", NotAbsolute),
        ("*", NotAbsolute),
        ("", NotAbsolute),
    ];
    for (input, err) in bad {
        for mode in MODES {
            for escaped in ESCAPED {
                assert_eq!(
                    run(mode, escaped, input),
                    Want2::Bad(err),
                    "{mode:?}/{escaped:?} {input:?}"
                );
            }
        }
    }
}

#[test]
fn clean_paths_are_borrowed() {
    let clean = [
        "/",
        "/status/418",
        "/api/v1/users;id=3/",
        "/.well-known/acme-challenge/token",
        "/a/.../b..c/.d",
        "/files/a%20b%3F",
        "/caf\u{e9}",
    ];
    for path in clean {
        for mode in MODES {
            for escaped in ESCAPED {
                let got = normalize(
                    Options {
                        mode,
                        escaped_slashes: escaped,
                    },
                    path,
                );
                assert!(
                    matches!(got, Ok(Normalized::Path(Cow::Borrowed(p))) if p == path),
                    "{mode:?}/{escaped:?} {path:?}: {got:?}"
                );
            }
        }
    }
    let opts = |mode, escaped_slashes| Options {
        mode,
        escaped_slashes,
    };
    // Unchanged by the chosen options: still borrowed.
    for (o, path) in [
        (opts(BASE, KEEP), "/a//b%2Fc"),
        (opts(NONE, DECODE), "/a/../%2e/b\\c"),
        (opts(BASE, KEEP), "/with#fragment"),
    ] {
        assert!(
            matches!(normalize(o, path), Ok(Normalized::Path(Cow::Borrowed(_)))),
            "{o:?} {path:?}"
        );
    }
}

#[test]
fn bad_path_reasons() {
    for e in [
        MalformedEscape,
        EncodedNul,
        ControlOrSpace,
        NotAbsolute,
        EscapedSlash,
    ] {
        assert!(!e.reason().is_empty());
        assert_eq!(e.to_string(), e.reason());
    }
    assert_eq!(MalformedEscape.reason(), "malformed percent-escape in path");
}

/// Deterministic hostile paths: every sequence of up to 3 tokens, then longer ones from an LCG.
fn hostile_paths() -> Vec<String> {
    const ALPHABET: [&str; 11] = [
        "/", ".", "..", "%2e", "%2F", "%5c", "\\", ";x", "a", "%41", "//",
    ];
    let mut paths = vec![String::from("/")];
    let mut frontier = vec![String::from("/")];
    for _ in 0..3 {
        let next: Vec<String> = frontier
            .iter()
            .flat_map(|p| ALPHABET.iter().map(move |t| format!("{p}{t}")))
            .collect();
        paths.extend(next.iter().cloned());
        frontier = next;
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..500 {
        let mut p = String::from("/");
        for _ in 0..8 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let index = usize::try_from(state >> 33).unwrap_or(0) % ALPHABET.len();
            p.push_str(ALPHABET[index]);
        }
        paths.push(p);
    }
    paths
}

fn path_of(result: Result<Normalized<'_>, BadPath>, input: &str) -> String {
    match result {
        Ok(Normalized::Path(p)) => p.into_owned(),
        other => panic!("{input:?}: {other:?}"),
    }
}

#[test]
fn hostile_paths_normalize_to_a_fixed_point() {
    let merge_decode = Options {
        mode: MERGE,
        escaped_slashes: DECODE,
    };
    let paths = hostile_paths();
    assert!(paths.len() > 1500);
    for input in &paths {
        let out = path_of(normalize(merge_decode, input), input);
        assert!(out.starts_with('/'), "{input:?} -> {out:?}");
        for bad in ["/./", "/../", "//", "\\"] {
            assert!(!out.contains(bad), "{input:?} -> {out:?} contains {bad:?}");
        }
        assert!(
            !out.ends_with("/..") && !out.ends_with("/."),
            "{input:?} -> {out:?}"
        );
        let lower = out.to_ascii_lowercase();
        for escape in ["%2f", "%5c", "%2e", "%41"] {
            assert!(!lower.contains(escape), "{input:?} -> {out:?}");
        }
        let again = path_of(normalize(merge_decode, &out), &out);
        assert_eq!(again, out, "not idempotent for {input:?}");
        assert!(matches!(
            normalize(merge_decode, &out),
            Ok(Normalized::Path(Cow::Borrowed(_)))
        ));

        // Other settings are idempotent too, and a redirect target never redirects again.
        for mode in [BASE, MERGE] {
            for escaped in [KEEP, DECODE] {
                let o = Options {
                    mode,
                    escaped_slashes: escaped,
                };
                let once = path_of(normalize(o, input), input);
                assert_eq!(path_of(normalize(o, &once), &once), once, "{o:?} {input:?}");
                // The quick scan agrees with the slow path: borrowed exactly when unchanged.
                let slow = rewrite(mode, input, escaped == DECODE);
                assert_eq!(slow, once, "{o:?} {input:?}");
                let borrowed =
                    matches!(normalize(o, input), Ok(Normalized::Path(Cow::Borrowed(_))));
                assert_eq!(borrowed, once == *input, "{o:?} {input:?}");
            }
            let o = Options {
                mode,
                escaped_slashes: REDIRECT,
            };
            if let Ok(Normalized::Redirect(location)) = normalize(o, input) {
                let decoded = Options {
                    mode,
                    escaped_slashes: DECODE,
                };
                assert_eq!(
                    one_leading_slash(path_of(normalize(decoded, input), input)),
                    location,
                    "{input:?}"
                );
                assert_eq!(
                    path_of(normalize(o, &location), &location),
                    location,
                    "{input:?}"
                );
            }
        }
    }
}

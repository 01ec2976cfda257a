#![allow(unsafe_code)]
//! What does path normalization cost per request, for clean paths (the common case, which
//! must not allocate) and for hostile ones?
//!
//! `request::normalize::normalize` runs on every request before authorization. Two groups:
//!
//! - `default/<input>`: the default settings (`path_normalization = "merge_slashes"`,
//!   `escaped_slashes = "redirect"`) on every input below;
//! - `modes/<mode>+<escaped_slashes>/hostile_mixed`: each mode (`none`, `base`,
//!   `merge_slashes`) × `keep | decode | redirect` on one hostile path, to show what each
//!   setting adds.
//!
//! Inputs: `clean_short` (`/api/v1/users/42`), `clean_long` (a ~200-byte realistic path),
//! `hostile_mixed` (dot segments, `//`, encoded dots, `%2F`, `%5c`, `..;x`), `dotdot_run`
//! (64 × `%2e%2e/`), `unreserved` (a path spelled entirely in escapes of unreserved
//! characters).
//!
//! How to read it: the middle number of criterion's `time: [low mid high]` is the cost of
//! one call. Clean paths only pay for one scan (returned borrowed), so they should cost a
//! few ns per 10 bytes; hostile paths pay for a decode and a dot-segment pass with up to
//! three allocations (the decoded copy, the segment list, the output). `none` is the scan
//! alone. Before timing, clean paths are normalized 10,000 times each under a counting global
//! allocator and the bench panics if any allocation happened: a clean path that allocates
//! is a regression. The `normalize: N allocations ...` lines on stderr are that check; the
//! hostile inputs' allocation counts are printed too, for information only.
//!
//! Run: `cargo bench --bench normalize` (add `-- default` to filter by id).

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::request::normalize::{
    EscapedSlashes, Normalized, Options, PathNormalization, normalize,
};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

// === inputs ===

const CLEAN_SHORT: &str = "/api/v1/users/42";

/// 200 bytes: a deep REST path with long ids, the kind object stores and CI APIs serve.
const CLEAN_LONG: &str = "/api/v2/organizations/acme-corporation/projects/gatehouse-ingress/\
environments/production/deployments/2024-06-01T12-00-00Z/artifacts/linux-x86_64/\
release/checksums/sha256/index-0123456789abcdef01.json";

const HOSTILE_MIXED: &str = "/a/./b/../../c//d%2e%2e/%2F%5c..;x/e";

/// `/api/%41%50%49/v1/users/42` style: a path spelled in escapes of unreserved characters.
const UNRESERVED: &str = "/%61%70%69/%76%31/%75%73%65%72%73/%34%32/%7Eadmin/%2D%5F%2E%7E";

/// Evaluations per allocation check.
const CHECK_ITERATIONS: usize = 10_000;

/// `/` then 64 × `%2e%2e/`: 449 bytes that all climb above the root.
fn dotdot_run() -> String {
    format!("/{}", "%2e%2e/".repeat(64))
}

/// The defaults a config without `[proxy]` gets.
const DEFAULT: Options = Options {
    mode: PathNormalization::MergeSlashes,
    escaped_slashes: EscapedSlashes::Redirect,
};

const MODES: [(&str, PathNormalization); 3] = [
    ("none", PathNormalization::None),
    ("base", PathNormalization::Base),
    ("merge_slashes", PathNormalization::MergeSlashes),
];

const ESCAPED: [(&str, EscapedSlashes); 3] = [
    ("keep", EscapedSlashes::Keep),
    ("decode", EscapedSlashes::Decode),
    ("redirect", EscapedSlashes::Redirect),
];

// === checks ===

/// What each input becomes under the defaults: pins the inputs to the path they exercise.
fn check_default_results(dotdot: &str) {
    fn path(input: &str) -> Cow<'_, str> {
        match normalize(DEFAULT, input) {
            Ok(Normalized::Path(p)) => p,
            other => panic!("{input:?}: expected a path, got {other:?}"),
        }
    }
    assert!(matches!(path(CLEAN_SHORT), Cow::Borrowed(CLEAN_SHORT)));
    assert!(matches!(path(CLEAN_LONG), Cow::Borrowed(CLEAN_LONG)));
    assert_eq!(path(dotdot), "/");
    assert_eq!(path(UNRESERVED), "/api/v1/users/42/~admin/-_.~");
    assert_eq!(
        normalize(DEFAULT, HOSTILE_MIXED),
        Ok(Normalized::Redirect("/c/d../e".to_owned())),
        "hostile_mixed under the defaults"
    );
}

/// Allocation check: clean paths must not allocate (panics otherwise); hostile counts are
/// printed for information.
fn check_allocations(inputs: &[(&str, &str)]) {
    let control = allocations_in(|| drop(black_box(Box::new(1u64))));
    assert_eq!(control, 1, "the counting allocator is not counting");
    for &(name, input) in inputs {
        let allocations = allocations_in(|| {
            for _ in 0..CHECK_ITERATIONS {
                drop(black_box(normalize(black_box(DEFAULT), black_box(input))));
            }
        });
        let clean = name.starts_with("clean");
        eprintln!(
            "normalize: {allocations} allocations in {CHECK_ITERATIONS} normalizations \
             ({name}, merge_slashes+redirect){}",
            if clean {
                ""
            } else {
                " [hostile: informational]"
            }
        );
        if clean {
            assert_eq!(
                allocations, 0,
                "REGRESSION: normalizing a clean path allocated ({name})"
            );
        }
    }
}

// === benches ===

fn bench_normalize(c: &mut Criterion) {
    let dotdot = dotdot_run();
    let inputs: [(&str, &str); 5] = [
        ("clean_short", CLEAN_SHORT),
        ("clean_long", CLEAN_LONG),
        ("hostile_mixed", HOSTILE_MIXED),
        ("dotdot_run", &dotdot),
        ("unreserved", UNRESERVED),
    ];
    assert_eq!(CLEAN_LONG.len(), 200);
    check_default_results(&dotdot);
    check_allocations(&inputs);

    let mut group = c.benchmark_group("default");
    for (name, input) in inputs {
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| normalize(black_box(DEFAULT), black_box(input)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("modes");
    for (mode_name, mode) in MODES {
        for (escaped_name, escaped_slashes) in ESCAPED {
            let opts = Options {
                mode,
                escaped_slashes,
            };
            let id = BenchmarkId::new(format!("{mode_name}+{escaped_name}"), "hostile_mixed");
            group.bench_with_input(id, HOSTILE_MIXED, |b, input| {
                b.iter(|| normalize(black_box(opts), black_box(input)));
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the bench machine is small and shared.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_normalize
}
criterion_main!(benches);

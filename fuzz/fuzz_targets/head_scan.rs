//! The HTTP/1 request-stream scanner (the check for `Content-Length` + `Transfer-Encoding`
//! on every request head, pipelined ones included), checked by its properties:
//! 1. any bytes: no panic, and the verdict does not depend on how the bytes are split into
//!    reads;
//! 2. a pipeline of well-formed requests (bodies by `Content-Length` or chunked, whose bytes
//!    may look like request heads) is never refused and every head is counted; the same
//!    pipeline with one smuggling head (both framing headers) inserted is refused from exactly
//!    that request on.
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::conn::head_scan::HeadScan;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    raw: Vec<u8>,
    splits: Vec<u16>,
    requests: Vec<Request>,
    smuggle_at: u8,
}

#[derive(Debug, Arbitrary)]
struct Request {
    method: u8,
    extra_headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    chunked: bool,
    chunk_sizes: Vec<u8>,
    lowercase: bool,
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const NAMES: [&str; 6] = ["x-a", "content-type", "accept", "x-content-length", "transfer-encodings", "cookie"];

fn serialize(r: &Request, out: &mut Vec<u8>) {
    out.extend_from_slice(METHODS[usize::from(r.method) % METHODS.len()].as_bytes());
    out.extend_from_slice(b" /p HTTP/1.1\r\nHost: a\r\n");
    for (name, value) in r.extra_headers.iter().take(8) {
        let name = NAMES[usize::from(*name) % NAMES.len()];
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        // Header values: visible ASCII only.
        out.extend(value.iter().take(40).map(|b| b'!' + b % 94));
        out.extend_from_slice(b"\r\n");
    }
    let (cl, te) = if r.lowercase {
        ("content-length", "transfer-encoding")
    } else {
        ("Content-Length", "Transfer-Encoding")
    };
    let body: &[u8] = &r.body[..r.body.len().min(300)];
    if r.chunked {
        out.extend_from_slice(format!("{te}: chunked\r\n\r\n").as_bytes());
        let mut rest = body;
        let mut sizes = r.chunk_sizes.iter().cycle();
        while !rest.is_empty() {
            let n = usize::from(*sizes.next().unwrap_or(&7)).clamp(1, rest.len());
            out.extend_from_slice(format!("{n:x};ext=1\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
    } else if !body.is_empty() {
        out.extend_from_slice(format!("{cl}: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

fn scan_whole(bytes: &[u8]) -> (Option<u64>, u64) {
    let mut s = HeadScan::default();
    s.feed(bytes);
    (s.refuse_from(), s.heads())
}

fn scan_split(bytes: &[u8], splits: &[u16]) -> (Option<u64>, u64) {
    let mut s = HeadScan::default();
    let mut rest = bytes;
    for &cut in splits {
        if rest.is_empty() {
            break;
        }
        let n = usize::from(cut) % (rest.len() + 1);
        s.feed(&rest[..n]);
        rest = &rest[n..];
    }
    s.feed(rest);
    (s.refuse_from(), s.heads())
}

fuzz_target!(|input: Input| {
    // 1: any bytes, any split.
    assert_eq!(scan_whole(&input.raw), scan_split(&input.raw, &input.splits), "{:?}", input.raw);

    // 2: well-formed pipelines.
    let requests = &input.requests[..input.requests.len().min(8)];
    let mut clean = Vec::new();
    for r in requests {
        serialize(r, &mut clean);
    }
    let n = requests.len() as u64;
    assert_eq!(scan_whole(&clean), (None, n), "{}", String::from_utf8_lossy(&clean));
    assert_eq!(scan_split(&clean, &input.splits), (None, n));

    let k = usize::from(input.smuggle_at) % (requests.len() + 1);
    let mut smuggled = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if i == k {
            smuggled.extend_from_slice(
                b"POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            );
        }
        serialize(r, &mut smuggled);
    }
    if k == requests.len() {
        smuggled.extend_from_slice(
            b"POST /s HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
        );
    }
    let want = Some(k as u64);
    assert_eq!(scan_whole(&smuggled).0, want, "{}", String::from_utf8_lossy(&smuggled));
    assert_eq!(scan_split(&smuggled, &input.splits).0, want);
});

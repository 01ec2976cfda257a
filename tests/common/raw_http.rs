//! HTTP/1.1 over a raw connection, for the tests that must send bytes no client library
//! would (bad framing, odd request targets) or read responses exactly as the proxy wrote
//! them: [`raw`] exchanges bytes, [`read_response`] is the one response parser.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{ClientOpts, Proxy, STEP, connect};

/// Writes raw bytes over TLS and reads until the server closes or `wait` passes.
pub async fn raw(
    addr: SocketAddr,
    sni: &str,
    opts: &ClientOpts,
    bytes: &[u8],
    wait: Duration,
) -> String {
    let mut tls = connect(addr, sni, opts).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Raw bytes over one TLS connection (HTTP/1.1); everything the server sends until it closes.
pub async fn raw_h1(proxy: &Proxy, opts: &ClientOpts, bytes: &[u8]) -> String {
    raw(proxy.https, "test.com", &opts.clone().h1(), bytes, STEP).await
}

/// The status code of the first response in a raw HTTP/1.1 reply, or 0.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One HTTP/1.1 response, read by [`read_response`].
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Names lowercased, values trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The response as it came off the wire: the head, then the body with its framing.
    pub raw: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} not JSON ({e}): {}", self.status, self.raw))
    }

    /// The request headers the echo upstream saw (`/anything` and `/headers` answers).
    pub fn upstream_headers(&self) -> serde_json::Map<String, serde_json::Value> {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()["headers"].as_object().cloned().unwrap()
    }
}

/// Reads one response from `s` (bounded by [`STEP`]); `buf` carries bytes already read past
/// a previous response, and keeps those read past this one.
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Resp, String> {
    tokio::time::timeout(STEP, read_response_unbounded(s, buf))
        .await
        .map_err(|_| "timed out reading a response".to_owned())?
}

/// Reads more of `s` into `buf`; `false` at the end of the stream.
async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut chunk = [0u8; 8192];
    match s.read(&mut chunk).await {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) => Err(format!(
            "read: {e} (after {:?})",
            String::from_utf8_lossy(buf)
        )),
    }
}

async fn read_response_unbounded<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Resp, String> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if !fill(s, buf).await? {
            return Err(format!(
                "closed before a response head: {:?}",
                String::from_utf8_lossy(buf)
            ));
        }
    };
    let mut wire: Vec<u8> = buf.drain(..head_end).collect();
    let head = String::from_utf8_lossy(&wire).into_owned();
    let mut lines = head.split("\r\n");
    let status = status_of(lines.next().unwrap_or_default());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        raw: String::new(),
    };
    if status == 204 || status == 304 || (100..200).contains(&status) {
        resp.raw = head;
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !fill(s, buf).await? {
                    return Err("closed inside a chunk size".into());
                }
            };
            let size_line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap_or_default().trim(), 16)
                    .map_err(|e| format!("bad chunk size {size_line:?}: {e}"))?;
            while buf.len() < line_end + 2 + size + 2 {
                if !fill(s, buf).await? {
                    return Err("closed inside a chunk".into());
                }
            }
            resp.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            wire.extend(buf.drain(..line_end + 2 + size + 2));
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = resp
        .header("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        while buf.len() < n {
            if !fill(s, buf).await? {
                return Err("closed inside a body".into());
            }
        }
        resp.body = buf.drain(..n).collect();
        wire.extend_from_slice(&resp.body);
    } else {
        while fill(s, buf).await? {}
        resp.body = std::mem::take(buf);
        wire.extend_from_slice(&resp.body);
    }
    resp.raw = String::from_utf8_lossy(&wire).into_owned();
    Ok(resp)
}

/// Whether the server closes the connection within `within` (EOF or a reset), reading and
/// discarding anything it sends first.
pub async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut sink = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// `GET <target>` exactly as written, on a fresh connection to `test.com` with
/// `Connection: close`; everything until the close, parsed as one response.
pub async fn get_raw(proxy: &Proxy, opts: &ClientOpts, target: &str) -> Resp {
    let req = format!("GET {target} HTTP/1.1\r\nHost: test.com\r\nConnection: close\r\n\r\n");
    let reply = raw(proxy.https, "test.com", opts, req.as_bytes(), STEP).await;
    read_response(&mut reply.as_bytes(), &mut Vec::new())
        .await
        .unwrap_or_else(|e| panic!("GET {target}: no response ({e}): {reply:?}"))
}

/// The proxy's own RBAC refusal: 403, `text/plain`, `RBAC: access denied`.
#[track_caller]
pub fn assert_denied(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 403, "{what}: {}", resp.raw);
    assert_eq!(resp.text(), "RBAC: access denied", "{what}");
    assert_eq!(resp.header("content-type"), Some("text/plain"), "{what}");
}

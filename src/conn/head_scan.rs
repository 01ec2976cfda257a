//! A streaming follower of an HTTP/1 connection's request bytes, for the one thing hyper hides
//! from the service: a request carrying both `Content-Length` and `Transfer-Encoding`. hyper
//! frames such a request by `Transfer-Encoding` and drops `Content-Length` (as RFC 9112
//! allows), but SPEC asks for `400` and nothing forwarded, as a request-smuggling attempt —
//! for every request head of the connection, pipelined ones included.
//!
//! So the scanner follows the framing, byte-wise, across any split into reads: a head (its
//! lines, remembering `Content-Length` and `Transfer-Encoding`), then a body of
//! `Content-Length` bytes, or a chunked body (sizes, data, trailers), then the next head.
//! Heads are numbered from 0 in arrival order, the order hyper hands requests to the service,
//! so [`HeadScan::refuse_from`] tells which request is the first to refuse.
//!
//! It fails closed: whatever it cannot follow (a framing header value longer than it keeps,
//! a chunk size that is not hex, differing `Content-Length`s, a non-chunked
//! `Transfer-Encoding`) makes that head and every later one refused. hyper rejects all of
//! those itself, so no valid request is refused for it. Pure, allocation-free, and cheap on
//! bodies: `Content-Length` bodies are skipped in O(1) per read, chunk data likewise.

/// The longest framing header value kept (`Transfer-Encoding: gzip, chunked` and any
/// `Content-Length` fit many times over).
const VALUE_MAX: usize = 64;

/// Header names the scanner looks for, with the colon.
const CONTENT_LENGTH: &[u8] = b"content-length:";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding:";
const NAME_MAX: usize = TRANSFER_ENCODING.len();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request head (lines up to an empty one).
    Head,
    /// `n` more body bytes.
    Body(u64),
    /// A chunk-size line: the size so far, hex digits seen, and whether the digits ended
    /// (an extension or whitespace follows).
    ChunkSize { size: u64, digits: u8, ended: bool },
    /// `n` more bytes of chunk data, then its line end.
    ChunkData(u64),
    /// The line end after chunk data.
    ChunkDataEnd,
    /// Trailer lines after the last chunk, up to an empty one.
    Trailers,
    /// Following the stream is no longer possible: every later head is refused.
    Lost,
}

/// Which framing header the current line is, once its name is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Unknown,
    Other,
    ContentLength,
    TransferEncoding,
}

#[derive(Debug, Clone)]
pub struct HeadScan {
    state: State,
    /// Heads completed so far (the index of the head being read).
    heads: u64,
    /// The first head to refuse (`u64::MAX`: none).
    refuse_from: u64,
    // The current line.
    name: [u8; NAME_MAX],
    name_len: usize,
    /// Bytes of the line seen (CR excluded), saturating.
    line_len: usize,
    field: Field,
    value: [u8; VALUE_MAX],
    value_len: usize,
    value_overflow: bool,
    // The current head.
    lines: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    bad_framing: bool,
}

impl Default for HeadScan {
    fn default() -> Self {
        Self {
            state: State::Head,
            heads: 0,
            refuse_from: u64::MAX,
            name: [0; NAME_MAX],
            name_len: 0,
            line_len: 0,
            field: Field::Unknown,
            value: [0; VALUE_MAX],
            value_len: 0,
            value_overflow: false,
            lines: 0,
            content_length: None,
            transfer_encoding: false,
            chunked: false,
            bad_framing: false,
        }
    }
}

impl HeadScan {
    /// The index of the first request head to refuse (0 = the connection's first request),
    /// or `None` while every head seen can be framed unambiguously.
    pub fn refuse_from(&self) -> Option<u64> {
        (self.refuse_from != u64::MAX).then_some(self.refuse_from)
    }

    /// Heads fully read so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    fn lose(&mut self) {
        self.refuse_from = self.refuse_from.min(self.heads);
        self.state = State::Lost;
    }

    /// Feeds bytes read from the connection, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Lost => return,
                State::Body(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = match n - take {
                        0 => State::Head,
                        left => State::Body(left),
                    };
                }
                State::ChunkData(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = match n - take {
                        0 => State::ChunkDataEnd,
                        left => State::ChunkData(left),
                    };
                }
                State::ChunkDataEnd => {
                    // CR LF; hyper rejects anything else, so skipping to LF is enough.
                    match memchr::memchr(b'\n', bytes) {
                        Some(i) => {
                            bytes = &bytes[i + 1..];
                            self.state = State::ChunkSize {
                                size: 0,
                                digits: 0,
                                ended: false,
                            };
                        }
                        None => return,
                    }
                }
                State::ChunkSize { .. } => {
                    let used = self.chunk_size(bytes);
                    bytes = &bytes[used..];
                }
                State::Head | State::Trailers => {
                    let end = memchr::memchr(b'\n', bytes);
                    let line = &bytes[..end.unwrap_or(bytes.len())];
                    self.line_bytes(line);
                    let Some(end) = end else { return };
                    bytes = &bytes[end + 1..];
                    self.end_line();
                }
            }
        }
    }

    /// A chunk-size line: hex digits, then anything (extensions, whitespace) up to LF.
    /// Returns how many bytes it used.
    fn chunk_size(&mut self, bytes: &[u8]) -> usize {
        let State::ChunkSize {
            mut size,
            mut digits,
            mut ended,
        } = self.state
        else {
            return bytes.len();
        };
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                if digits == 0 {
                    self.lose();
                    return bytes.len();
                }
                self.state = match size {
                    0 => State::Trailers,
                    n => State::ChunkData(n),
                };
                return i + 1;
            }
            if ended {
                continue;
            }
            match (b as char).to_digit(16) {
                // 16 hex digits hold any u64; hyper refuses more.
                Some(d) if digits < 16 => {
                    size = size * 16 + u64::from(d);
                    digits += 1;
                }
                Some(_) => {
                    self.lose();
                    return bytes.len();
                }
                None if digits == 0 => {
                    self.lose();
                    return bytes.len();
                }
                None => ended = true,
            }
        }
        self.state = State::ChunkSize {
            size,
            digits,
            ended,
        };
        bytes.len()
    }

    /// Bytes of the current line (no LF).
    fn line_bytes(&mut self, line: &[u8]) {
        for &b in line {
            if b == b'\r' {
                continue;
            }
            self.line_len = self.line_len.saturating_add(1);
            if self.state == State::Trailers || self.lines == 0 {
                // Trailers and the request line never frame anything.
                continue;
            }
            match self.field {
                Field::Unknown => {
                    let b = b.to_ascii_lowercase();
                    self.name[self.name_len] = b;
                    self.name_len += 1;
                    let name = &self.name[..self.name_len];
                    self.field = if name == CONTENT_LENGTH {
                        Field::ContentLength
                    } else if name == TRANSFER_ENCODING {
                        Field::TransferEncoding
                    } else if CONTENT_LENGTH.starts_with(name)
                        || TRANSFER_ENCODING.starts_with(name)
                    {
                        Field::Unknown
                    } else {
                        Field::Other
                    };
                }
                Field::Other => {}
                Field::ContentLength | Field::TransferEncoding => {
                    if self.value_len < VALUE_MAX {
                        self.value[self.value_len] = b;
                        self.value_len += 1;
                    } else {
                        self.value_overflow = true;
                    }
                }
            }
        }
    }

    fn end_line(&mut self) {
        let empty = self.line_len == 0;
        let field = self.field;
        self.line_len = 0;
        self.name_len = 0;
        self.field = Field::Unknown;
        if self.state == State::Trailers {
            if empty {
                self.state = State::Head;
            }
            return;
        }
        if empty {
            // Empty lines before a request line are skipped (RFC 9112 §2.2).
            if self.lines > 0 {
                self.end_head();
            }
            return;
        }
        self.lines += 1;
        let value = &self.value[..self.value_len];
        let value = value.trim_ascii();
        match field {
            _ if self.value_overflow && field != Field::Other => self.bad_framing = true,
            Field::ContentLength => match parse_decimal(value) {
                Some(n) if self.content_length.is_none_or(|m| m == n) => {
                    self.content_length = Some(n);
                }
                _ => self.bad_framing = true,
            },
            Field::TransferEncoding => {
                self.transfer_encoding = true;
                // hyper: chunked must be the last coding of the last Transfer-Encoding line.
                self.chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            _ => {}
        }
        self.value_len = 0;
        self.value_overflow = false;
    }

    fn end_head(&mut self) {
        let ambiguous = self.content_length.is_some() && self.transfer_encoding;
        let next = if ambiguous || self.bad_framing || (self.transfer_encoding && !self.chunked) {
            None
        } else if self.transfer_encoding {
            Some(State::ChunkSize {
                size: 0,
                digits: 0,
                ended: false,
            })
        } else {
            match self.content_length {
                Some(0) | None => Some(State::Head),
                Some(n) => Some(State::Body(n)),
            }
        };
        match next {
            Some(state) => {
                self.heads += 1;
                self.state = state;
            }
            None => self.lose(),
        }
        self.lines = 0;
        self.content_length = None;
        self.transfer_encoding = false;
        self.chunked = false;
        self.bad_framing = false;
    }
}

/// `Content-Length`: ASCII digits only (hyper refuses signs, spaces inside, lists).
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first refused head when `chunks` are fed in order.
    fn scan(chunks: &[&str]) -> Option<u64> {
        let mut s = HeadScan::default();
        for c in chunks {
            s.feed(c.as_bytes());
        }
        s.refuse_from()
    }

    const CLTE: &str =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const POST5: &str = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &str =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

    #[test]
    fn table() {
        let chunked_ext = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhello\r\na \r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        let cases: Vec<(Vec<String>, Option<u64>)> = vec![
            (vec![CLTE.into()], Some(0)),
            (vec!["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n".into()], Some(0)),
            (vec!["POST / HTTP/1.1\r\ncontent-LENGTH: 0\r\ntransfer-encoding: chunked\r\n\r\n".into()], Some(0)),
            (vec!["POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n".into()], Some(0)),
            (vec!["\r\n".to_owned() + CLTE], Some(0)),
            (vec![POST5.into()], None),
            (vec![CHUNKED.into()], None),
            (vec![chunked_ext.into(), GET.into()], None),
            // Pipelined: the second or third head is the smuggler.
            (vec![GET.into(), CLTE.into()], Some(1)),
            (vec![POST5.into(), GET.into(), CLTE.into()], Some(2)),
            (vec![CHUNKED.into(), CLTE.into()], Some(1)),
            (vec![chunked_ext.into(), POST5.into(), CLTE.into()], Some(2)),
            // Body bytes are never heads.
            (vec!["POST / HTTP/1.1\r\nContent-Length: 51\r\n\r\n".to_owned() + &CLTE[..51]], None),
            (vec!["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n33\r\n".to_owned() + &CLTE[..51] + "\r\n0\r\n\r\n" + GET], None),
            // Names that only start like the real ones, and pieces of earlier lines.
            (vec!["POST / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encodings: x\r\n\r\n".into()], None),
            (vec!["POST / HTTP/1.1\r\nCxxxxxxxxength: 1\r\ncontent-l\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into()], None),
            // The request line is not a header.
            (vec!["content-length: / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into()], None),
            // What the scanner cannot follow is refused from that head on (hyper refuses it too).
            (vec![GET.into(), "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into()], Some(1)),
            (vec!["POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n".into()], Some(0)),
            (vec!["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".into()], Some(0)),
            (vec![format!("POST / HTTP/1.1\r\nTransfer-Encoding: {}chunked\r\n\r\n", "x, ".repeat(30))], Some(0)),
            (vec!["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), GET.into()], Some(1)),
            (vec!["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n".into()], Some(1)),
            // Equal repeated lengths are one length; the last TE line decides chunked.
            (vec!["POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".to_owned() + GET], None),
            (vec!["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned() + GET], None),
        ];
        for (chunks, want) in &cases {
            let parts: Vec<&str> = chunks.iter().map(String::as_str).collect();
            assert_eq!(scan(&parts), *want, "{chunks:?}");
            // Any split, and byte by byte, gives the same answer.
            let whole = chunks.concat();
            for i in 0..=whole.len() {
                let (a, b) = whole.split_at(i);
                assert_eq!(scan(&[a, b]), *want, "split at {i}: {whole:?}");
            }
            let mut s = HeadScan::default();
            for b in whole.as_bytes() {
                s.feed(std::slice::from_ref(b));
            }
            assert_eq!(s.refuse_from(), *want, "byte by byte: {whole:?}");
        }
    }

    #[test]
    fn heads_are_counted_in_order() {
        let mut s = HeadScan::default();
        s.feed(POST5.as_bytes());
        s.feed(CHUNKED.as_bytes());
        s.feed(GET.as_bytes());
        assert_eq!(s.heads(), 3);
        assert_eq!(s.refuse_from(), None);
        s.feed(b"GET / HTTP/1.1\r\nHost:");
        assert_eq!(s.heads(), 3, "a head counts once it is complete");
    }

    #[test]
    fn a_long_content_length_body_costs_one_step_per_read() {
        let mut s = HeadScan::default();
        s.feed(b"PUT / HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n");
        let body = vec![b'\n'; 1 << 20];
        for _ in 0..10 {
            s.feed(&body);
        }
        assert_eq!(s.state, State::Body(1_000_000_000 - 10 * (1 << 20)));
    }
}

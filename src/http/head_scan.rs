//! A streaming scan of HTTP/1 request heads for the one thing hyper hides from the service:
//! a request carrying both `Content-Length` and `Transfer-Encoding`. hyper frames such a
//! request by `Transfer-Encoding` and drops `Content-Length` (as RFC 9112 allows), but SPEC
//! asks for `400` and nothing forwarded, as a request-smuggling attempt. Pure and byte-wise, so
//! a header split across reads is still seen; it stops at the blank line ending the head.

/// The longest header name we look for, `transfer-encoding:`.
const NAME_MAX: usize = 18;

#[derive(Debug, Default, Clone)]
pub struct HeadScan {
    name: [u8; NAME_MAX],
    /// Bytes of the current line in `name`; they stop at `NAME_MAX` or at a first byte that
    /// no wanted name starts with.
    name_len: usize,
    /// Non-CR bytes seen in the current line, counted up to `NAME_MAX + 1`.
    line_len: usize,
    lines: usize,
    ended: bool,
    content_length: bool,
    transfer_encoding: bool,
}

impl HeadScan {
    /// Starts over for a new request head.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Feeds bytes read from the connection; bytes after the end of the head are ignored.
    /// Only the first `NAME_MAX` bytes of a line are looked at one by one; the rest of the
    /// line is skipped to its `\n` with `memchr`.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !self.ended && !bytes.is_empty() {
            let end = memchr::memchr(b'\n', bytes);
            let line = &bytes[..end.unwrap_or(bytes.len())];
            for &b in line {
                if self.line_len > NAME_MAX {
                    break;
                }
                if b == b'\r' {
                    continue;
                }
                let b = b.to_ascii_lowercase();
                // Only `content-length:` and `transfer-encoding:` matter.
                let wanted = self.name_len == self.line_len
                    && self.name_len < NAME_MAX
                    && (self.name_len > 0 || b == b'c' || b == b't');
                if wanted {
                    self.name[self.name_len] = b;
                    self.name_len += 1;
                    self.line_len += 1;
                } else {
                    // Past the name, or not a wanted one: skip the rest of the line.
                    self.line_len = NAME_MAX + 1;
                }
            }
            let Some(end) = end else { return };
            self.end_line();
            bytes = &bytes[end + 1..];
        }
    }

    fn end_line(&mut self) {
        // An empty line ends the head (empty lines before the request line are skipped).
        if self.line_len == 0 {
            self.ended = self.lines > 0;
            return;
        }
        if self.lines > 0 {
            let name = &self.name[..self.name_len];
            self.content_length |= name.starts_with(b"content-length:");
            self.transfer_encoding |= name.starts_with(b"transfer-encoding:");
        }
        self.lines += 1;
        self.line_len = 0;
        self.name_len = 0;
    }

    /// Did the head carry both framing headers?
    pub fn ambiguous_length(&self) -> bool {
        self.content_length && self.transfer_encoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&str]) -> bool {
        let mut s = HeadScan::default();
        for c in chunks {
            s.feed(c.as_bytes());
        }
        s.ambiguous_length()
    }

    #[test]
    fn table() {
        let cases: &[(&[&str], bool)] = &[
            (
                &[
                    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                ],
                true,
            ),
            (
                &["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"],
                true,
            ),
            (
                &["POST / HTTP/1.1\r\ncontent-LENGTH: 0\r\ntransfer-encoding: chunked\r\n\r\n"],
                true,
            ),
            (
                &[
                    "POST / HTTP/1.1\r\nContent-Le",
                    "ngth: 5\r\nTransfer-",
                    "Encoding: chunked\r\n\r\n",
                ],
                true,
            ),
            (
                &["POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n"],
                true,
            ),
            (
                &["POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"],
                false,
            ),
            (
                &["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
                false,
            ),
            // Body bytes after the head never count.
            (
                &[
                    "POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nTransfer-Encoding: chunked\r\n\r\n",
                ],
                false,
            ),
            // Names that only start like the real ones.
            (
                &["POST / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encodings: x\r\n\r\n"],
                false,
            ),
            // Pieces of earlier lines never combine into a name.
            (
                &[
                    "POST / HTTP/1.1\r\nCxxxxxxxxength: 1\r\ncontent-l\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                ],
                false,
            ),
            // The request line is not a header.
            (
                &["content-length: / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"],
                false,
            ),
            (
                &["\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"],
                true,
            ),
        ];
        for (chunks, want) in cases {
            assert_eq!(scan(chunks), *want, "{chunks:?}");
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
            assert_eq!(s.ambiguous_length(), *want, "byte by byte: {whole:?}");
        }
    }

    #[test]
    fn reset_starts_a_new_head() {
        let mut s = HeadScan::default();
        s.feed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(s.ambiguous_length());
        s.reset();
        s.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!s.ambiguous_length());
    }
}

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
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.ended {
                return;
            }
            match b {
                b'\r' => {}
                b'\n' => {
                    // An empty line ends the head (empty lines before the request line are skipped).
                    if self.line_len == 0 && self.lines > 0 {
                        self.ended = true;
                    } else if self.line_len > 0 {
                        self.lines += 1;
                    }
                    self.line_len = 0;
                }
                _ => {
                    if self.line_len < NAME_MAX {
                        self.name[self.line_len] = b.to_ascii_lowercase();
                    }
                    self.line_len += 1;
                    if self.lines > 0 {
                        match &self.name[..self.line_len.min(NAME_MAX)] {
                            b"content-length:" if self.line_len == 15 => self.content_length = true,
                            b"transfer-encoding:" if self.line_len == 18 => {
                                self.transfer_encoding = true
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
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

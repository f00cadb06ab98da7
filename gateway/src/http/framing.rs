//! Request framing checks on the raw HTTP/1.x header bytes, before anything is routed or
//! forwarded (RFC 9112 §6.3, §11.2: request smuggling).
//!
//! pingora's parser accepts bare-LF line endings and, when `Transfer-Encoding` is present,
//! drops `Content-Length` before our filters run, so the parsed header map cannot show
//! the ambiguous cases. This module reads the bytes pingora kept, allocation-free, and
//! refuses: both `Content-Length` and `Transfer-Encoding`; more than one
//! `Content-Length`, or one that is not digits; a `Transfer-Encoding` other than exactly
//! `chunked`, or more than one; whitespace before a colon; obsolete line folding; bare
//! LF or bare CR; and too many or too large headers.

/// Why the framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    BareLineEnding,
    WhitespaceBeforeColon,
    ObsoleteFold,
    MalformedHeaderLine,
    BothLengthAndChunked,
    DuplicateContentLength,
    InvalidContentLength,
    UnsupportedTransferEncoding,
    TooManyHeaders,
    HeaderTooLarge,
    /// The request line alone is over the header limit.
    RequestLineTooLong,
}

impl FramingError {
    /// 414 for a request line over the limit, 431 for the headers, 400 for everything
    /// ambiguous.
    pub fn status(self) -> u16 {
        match self {
            FramingError::RequestLineTooLong => 414,
            FramingError::TooManyHeaders | FramingError::HeaderTooLarge => 431,
            _ => 400,
        }
    }
}

/// Checks `raw` (request line, headers, and the terminating empty line).
pub fn check(raw: &[u8], max_header_bytes: usize, max_headers: usize) -> Result<(), FramingError> {
    if raw.len() > max_header_bytes {
        // The request line by itself too long: it is the target that is (RFC 9112 §3).
        let line = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
        return Err(if line > max_header_bytes {
            FramingError::RequestLineTooLong
        } else {
            FramingError::HeaderTooLarge
        });
    }
    let mut content_length = 0u32;
    let mut transfer_encoding = 0u32;
    let mut headers = 0usize;
    let mut first = true;
    let mut rest = raw;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // Header bytes always end in a line ending; anything else is not ours to guess.
            return Err(FramingError::BareLineEnding);
        };
        if nl == 0 || rest[nl - 1] != b'\r' {
            return Err(FramingError::BareLineEnding);
        }
        let line = &rest[..nl - 1];
        rest = &rest[nl + 1..];
        if line.contains(&b'\r') {
            return Err(FramingError::BareLineEnding);
        }
        if first {
            first = false;
            continue;
        }
        if line.is_empty() {
            // End of the header section: nothing may follow inside the header bytes.
            if !rest.is_empty() {
                return Err(FramingError::MalformedHeaderLine);
            }
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(FramingError::ObsoleteFold);
        }
        headers += 1;
        if headers > max_headers {
            return Err(FramingError::TooManyHeaders);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(FramingError::MalformedHeaderLine);
        };
        let name = &line[..colon];
        if name.is_empty() {
            return Err(FramingError::MalformedHeaderLine);
        }
        if matches!(name[name.len() - 1], b' ' | b'\t') {
            return Err(FramingError::WhitespaceBeforeColon);
        }
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length += 1;
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::InvalidContentLength);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding += 1;
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(FramingError::UnsupportedTransferEncoding);
            }
        }
    }
    match (content_length, transfer_encoding) {
        (c, t) if c > 0 && t > 0 => Err(FramingError::BothLengthAndChunked),
        (c, _) if c > 1 => Err(FramingError::DuplicateContentLength),
        (_, t) if t > 1 => Err(FramingError::UnsupportedTransferEncoding),
        _ => Ok(()),
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use FramingError::*;

    fn c(s: &str) -> Result<(), FramingError> {
        check(s.as_bytes(), 16384, 100)
    }

    #[test]
    fn accepts_plain_requests() {
        assert_eq!(c("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(c("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"), Ok(()));
        assert_eq!(c("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n"), Ok(()));
    }

    #[test]
    fn refuses_ambiguous_framing() {
        let cases = [
            ("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", BothLengthAndChunked),
            ("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", DuplicateContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n", InvalidContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", InvalidContentLength),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                UnsupportedTransferEncoding,
            ),
            ("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", WhitespaceBeforeColon),
            ("GET / HTTP/1.1\nHost: a\n\n", BareLineEnding),
            ("GET / HTTP/1.1\r\nHost: a\n\r\n", BareLineEnding),
            ("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", BareLineEnding),
            ("GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n", ObsoleteFold),
        ];
        for (raw, want) in cases {
            assert_eq!(c(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn limits() {
        let many: String = (0..5).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(check(raw.as_bytes(), 16384, 4), Err(TooManyHeaders));
        assert_eq!(check(raw.as_bytes(), 20, 100), Err(HeaderTooLarge));
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(30));
        assert_eq!(check(long.as_bytes(), 30, 100), Err(RequestLineTooLong));
        assert_eq!(RequestLineTooLong.status(), 414);
        assert_eq!(check(raw.as_bytes(), 16384, 5), Ok(()));
    }
}

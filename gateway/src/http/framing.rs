//! Request framing checks on the raw HTTP/1.x header bytes, before anything is routed or
//! forwarded (RFC 9112 §6.3, §11.2: request smuggling).
//!
//! pingora's parser accepts bare-LF line endings and, when `Transfer-Encoding` is present,
//! drops `Content-Length` before our filters run, so the parsed header map cannot show
//! the ambiguous cases. This module reads the bytes pingora kept, allocation-free, and
//! refuses: both `Content-Length` and `Transfer-Encoding`; more than one
//! `Content-Length`, or one that is not digits; a `Transfer-Encoding` other than exactly
//! `chunked`, or more than one; whitespace before a colon; obsolete line folding; bare
//! LF or bare CR; and too many or too large headers. `Content-Length` is digits without
//! a leading zero (`05` is refused, not forwarded as read). An HTTP/1.1 request has
//! exactly one `Host`, an HTTP/1.0 one at most one, and its value is an authority
//! (RFC 9112 §3.2, RFC 3986 §3.2.2): no userinfo, path, spaces or bytes beyond ASCII.

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
    MissingHost,
    DuplicateHost,
    InvalidHost,
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
    let mut hosts = 0u32;
    // Host is required from HTTP/1.1 on; pingora parses no other versions than 1.0 and 1.1.
    let mut host_required = true;
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
            host_required = !line.ends_with(b" HTTP/1.0");
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
            // Digits only, no leading zero (one reading, the one the upstream gets), and
            // no more than fit in a u64.
            if value.is_empty()
                || !value.iter().all(u8::is_ascii_digit)
                || (value.len() > 1 && value[0] == b'0')
                || value.len() > 19
            {
                return Err(FramingError::InvalidContentLength);
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if !is_authority(value) {
                return Err(FramingError::InvalidHost);
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
        _ => match hosts {
            0 if host_required => Err(FramingError::MissingHost),
            0 | 1 => Ok(()),
            _ => Err(FramingError::DuplicateHost),
        },
    }
}

/// The same rule for HTTP/2, whose frames carry their own lengths: `:authority` (or, without
/// it, one `host`) is an authority, and a `host` sent as well names the same one
/// (RFC 9113 §8.3.1), so routing and the upstream cannot read different hosts.
pub fn check_h2(req: &pingora::http::RequestHeader) -> Result<(), FramingError> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(FramingError::DuplicateHost);
    }
    let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
    match (host.map(|h| h.as_bytes()), authority) {
        (None, None) => Err(FramingError::MissingHost),
        (Some(v), _) | (None, Some(v)) if !is_authority(v) => Err(FramingError::InvalidHost),
        (Some(h), Some(a)) if !is_authority(a) || !h.eq_ignore_ascii_case(a) => Err(FramingError::InvalidHost),
        _ => Ok(()),
    }
}

/// Reads the first piece of a chunked HTTP/1.1 request body before anything is sent
/// upstream, so that a bad chunk line that came with the head (a request written at
/// once, as attacks are) is refused with nothing forwarded, not even the head. pingora
/// sends the piece upstream from its retry buffer (as for a retried request, through
/// `request_body_filter`) and streams the rest. Skipped with `Expect: 100-continue`,
/// where the client waits for the upstream's `100` before it sends the body.
pub async fn read_first_chunk(session: &mut pingora::proxy::Session) -> pingora::Result<()> {
    let req = session.req_header();
    let chunked = req.headers.contains_key(http::header::TRANSFER_ENCODING);
    if !chunked || req.headers.contains_key(http::header::EXPECT) {
        return Ok(());
    }
    let down = session.as_downstream_mut();
    if !matches!(down, pingora::protocols::http::ServerSession::H1(_)) {
        return Ok(());
    }
    // At most one read of 64 KiB of the body: within the retry buffer's 64 KiB, so
    // nothing read here can be lost to a truncated buffer.
    down.enable_retry_buffering();
    down.read_request_body().await.map(|_| ()).map_err(|e| e.into_down())
}

/// Whether `v` is a `Host` value: `uri-host [ ":" port ]` (RFC 9110 §7.2), where
/// `uri-host` is an IP literal in brackets or a reg-name / IPv4 address of unreserved
/// characters, sub-delims and percent-escapes (RFC 3986 §3.2.2). The empty value is
/// valid (RFC 9112 §3.2). Anything else — `a@b`, `a/x`, a space, a byte beyond ASCII —
/// would be read as different hosts by different parsers.
pub fn is_authority(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(end) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &v[1..end];
        if inside.is_empty() || !inside.iter().all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.')) {
            return false;
        }
        (&v[..0], &v[end + 1..])
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &v[..0]),
        }
    };
    let port_ok = port.is_empty() || (port[0] == b':' && port.len() <= 6 && port[1..].iter().all(u8::is_ascii_digit));
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                if !host.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    port_ok
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
    fn host_is_one_authority() {
        assert_eq!(c("GET / HTTP/1.0\r\n\r\n"), Ok(()));
        for host in ["a", "a.example:8080", "127.0.0.1", "[::1]:80", "[2001:db8::1]", "xn--caf-dma.example", "", "a:"] {
            assert_eq!(c(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")), Ok(()), "{host:?}");
        }
        assert_eq!(c("GET / HTTP/1.1\r\n\r\n"), Err(MissingHost));
        assert_eq!(c("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), Err(DuplicateHost));
        assert_eq!(c("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), Err(DuplicateHost));
        for host in
            ["admin.example/x", "a@b", "a b", "a:80x", "a:1234567", "[::1", "[zz]", "a?b", "a#b", "caf\u{e9}", "%4"]
        {
            assert_eq!(c(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")), Err(InvalidHost), "{host:?}");
        }
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\xff\r\n\r\n", 16384, 100), Err(InvalidHost));
    }

    #[test]
    fn h2_host_matches_authority() {
        let req = |uri: &str, hosts: &[&str]| {
            let mut r = pingora::http::RequestHeader::build("GET", b"/", None).unwrap();
            r.set_uri(uri.parse().unwrap());
            r.set_version(http::Version::HTTP_2);
            for h in hosts {
                r.append_header("host", *h).unwrap();
            }
            r
        };
        assert_eq!(check_h2(&req("https://a.example/x", &[])), Ok(()));
        assert_eq!(check_h2(&req("https://a.example/x", &["A.example"])), Ok(()));
        assert_eq!(check_h2(&req("/x", &["a.example"])), Ok(()));
        assert_eq!(check_h2(&req("/x", &[])), Err(MissingHost));
        assert_eq!(check_h2(&req("https://a.example/x", &["admin.example"])), Err(InvalidHost));
        assert_eq!(check_h2(&req("https://u@a.example/x", &[])), Err(InvalidHost));
        assert_eq!(check_h2(&req("/x", &["a/b"])), Err(InvalidHost));
        assert_eq!(check_h2(&req("/x", &["a", "a"])), Err(DuplicateHost));
    }

    #[test]
    fn content_length_has_one_spelling() {
        assert_eq!(c("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), Ok(()));
        for v in ["05", "00", "012", "99999999999999999999"] {
            assert_eq!(
                c(&format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n")),
                Err(InvalidContentLength),
                "{v}"
            );
        }
    }

    #[test]
    fn limits() {
        let many: String = (0..4).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(check(raw.as_bytes(), 16384, 4), Err(TooManyHeaders));
        assert_eq!(check(raw.as_bytes(), 20, 100), Err(HeaderTooLarge));
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(30));
        assert_eq!(check(long.as_bytes(), 30, 100), Err(RequestLineTooLong));
        assert_eq!(RequestLineTooLong.status(), 414);
        assert_eq!(check(raw.as_bytes(), 16384, 5), Ok(()));
    }
}

//! W3C Trace Context (`traceparent`): each request continues the caller's trace when it
//! sent a valid `traceparent`, or starts one, and gets a span of its own, which is sent
//! upstream as the parent. The ids go into the audit records, and the OTLP sink exports
//! the request's span from its completion record.

use pingora::http::RequestHeader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// This request's span: 16 lower-case hex digits.
    pub span_id: String,
    /// The caller's span, when it sent a `traceparent`.
    pub parent_span_id: Option<String>,
    pub sampled: bool,
}

/// Looked up on every request: made once, not parsed from a `&str` each time.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// `version-traceid-parentid-flags`, version 00 (or a later one, read the same way).
fn parse(v: &str) -> Option<(String, String, bool)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !lower_hex(trace, 32) || !lower_hex(parent, 16) || flags.len() != 2 {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_string(), parent.to_string(), flags & 1 == 1))
}

/// `len` random lower-case hex digits (at most 32): a v4 UUID's, encoded without `fmt`
/// or a `char` iterator (both showed in the per-request profile).
fn random_hex(len: usize) -> String {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    let hex = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
    hex[..len].to_string()
}

impl TraceContext {
    pub fn from_request(req: &RequestHeader) -> TraceContext {
        let incoming = req.headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(parse);
        match incoming {
            Some((trace_id, parent, sampled)) => {
                TraceContext { trace_id, span_id: random_hex(16), parent_span_id: Some(parent), sampled }
            }
            None => {
                TraceContext { trace_id: random_hex(32), span_id: random_hex(16), parent_span_id: None, sampled: true }
            }
        }
    }

    /// The `traceparent` for the upstream request: this request's span as the parent.
    pub fn traceparent(&self) -> String {
        let mut v = String::with_capacity(55);
        for part in ["00-", &self.trace_id, "-", &self.span_id, if self.sampled { "-01" } else { "-00" }] {
            v.push_str(part);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(ok).map(|p| p.2), Some(true));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("traceparent", ok).unwrap();
        let t = TraceContext::from_request(&req);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        assert!(t.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn new_traces_round_trip() {
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let t = TraceContext::from_request(&req);
        let (a, b) = (TraceContext::from_request(&req), TraceContext::from_request(&req));
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        let sent = t.traceparent();
        assert_eq!(sent.len(), 55);
        assert_eq!(parse(&sent), Some((t.trace_id.clone(), t.span_id.clone(), true)));
        let unsampled = TraceContext { sampled: false, ..t };
        assert!(unsampled.traceparent().ends_with("-00"));
    }
}

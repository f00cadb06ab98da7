//! Why the gateway refused or failed a request, and the one table that maps each reason
//! to a status and a plain page. Pages never echo request input and never carry a stack
//! trace. Responses the gateway makes itself carry their own security headers, because
//! pingora skips `response_filter` for them.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// A reason the gateway answers instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadFraming,
    BadPath,
    HeaderTooLarge,
    NoRoute,
    BodyTooLarge,
    UpstreamUnavailable,
    UpstreamTimeout,
    ClientTimeout,
    AuditUnavailable,
    Internal,
}

impl Refusal {
    /// The table: status and page text.
    pub fn page(self) -> (u16, &'static str) {
        match self {
            Refusal::BadFraming => (400, "400 Bad Request\n\nThe request's framing is ambiguous and was not forwarded.\n"),
            Refusal::BadPath => (400, "400 Bad Request\n\nThe request path cannot be read one way only and was not forwarded.\n"),
            Refusal::HeaderTooLarge => (431, "431 Request Header Fields Too Large\n"),
            Refusal::NoRoute => (404, "404 Not Found\n\nNo service is configured for this address.\n"),
            Refusal::BodyTooLarge => (413, "413 Content Too Large\n"),
            Refusal::UpstreamUnavailable => (502, "502 Bad Gateway\n\nThe service behind the gateway is not reachable.\n"),
            Refusal::UpstreamTimeout => (504, "504 Gateway Timeout\n\nThe service behind the gateway did not answer in time.\n"),
            Refusal::ClientTimeout => (408, "408 Request Timeout\n"),
            Refusal::AuditUnavailable => {
                (503, "503 Service Unavailable\n\nAccess is refused because it cannot be recorded in the audit trail.\n")
            }
            Refusal::Internal => (500, "500 Internal Server Error\n"),
        }
    }

    /// The reason as written in audit records.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BadFraming => "bad_framing",
            Refusal::BadPath => "bad_path",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::NoRoute => "no_route",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::UpstreamUnavailable => "upstream_unavailable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::ClientTimeout => "client_timeout",
            Refusal::AuditUnavailable => "audit_unavailable",
            Refusal::Internal => "internal",
        }
    }

    pub fn status(self) -> u16 {
        self.page().0
    }
}

/// Headers every gateway-made response carries.
pub fn security_headers(resp: &mut ResponseHeader) -> Result<()> {
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-content-type-options", "nosniff")?;
    resp.insert_header("content-security-policy", "default-src 'none'; frame-ancestors 'none'")?;
    resp.insert_header("referrer-policy", "no-referrer")?;
    Ok(())
}

/// Writes a complete gateway response. `close` ends the connection afterwards, as it
/// must after a framing error (the rest of the bytes cannot be trusted).
pub async fn write(session: &mut Session, status: u16, body: &'static str, close: bool) -> Result<()> {
    if close {
        session.set_keepalive(None);
    }
    let mut resp = ResponseHeader::build(status, Some(6))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len())?;
    security_headers(&mut resp)?;
    if close {
        resp.insert_header("connection", "close")?;
    }
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(resp), head).await?;
    if !head {
        session.write_response_body(Some(Bytes::from_static(body.as_bytes())), true).await?;
    }
    Ok(())
}

/// Writes the page for `r`.
pub async fn refuse(session: &mut Session, r: Refusal) -> Result<()> {
    let (status, body) = r.page();
    let close = matches!(r, Refusal::BadFraming | Refusal::HeaderTooLarge | Refusal::BodyTooLarge);
    write(session, status, body, close).await
}

//! Why the gateway refused or failed a request, and the one table that maps each reason
//! to a status and a plain page; the access core's [`Denial`]s map into it
//! ([`refusal_of`]). Pages never echo request input and never carry a stack
//! trace. Responses the gateway makes itself carry their own security headers, because
//! pingora skips `response_filter` for them.

use crate::access;
use crate::audit::Code;
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
    /// The request line alone is over `max_header_bytes`.
    UriTooLong,
    NoRoute,
    BodyTooLarge,
    UpstreamUnavailable,
    UpstreamTimeout,
    ClientTimeout,
    AuditUnavailable,
    Internal,
    /// No session (non-browser request): 401 with `WWW-Authenticate`.
    Unauthenticated,
    /// A session without the multi-factor sign-in this route needs (non-browser).
    StepUpRequired,
    /// Redis cannot be reached: nothing protected is served.
    SessionStoreUnavailable,
    /// The identity provider cannot be reached: no new sign-ins.
    IdpUnavailable,
    /// The sign-in callback was refused (state, binding, token checks…).
    LoginFailed,
    /// The sign-in did not use the multi-factor authentication the site requires.
    MfaNotSatisfied,
    /// Too many sign-ins started from one client address this minute.
    TooManySignIns,
    /// A bearer token was refused (the audit record says why; the client does not).
    InvalidToken,
    /// The policy denies this action (the page names the route and action: [`forbidden`]).
    PolicyDenied,
    /// A method outside `server.methods` (or the route's `methods`): 501, as RFC 9110
    /// §9.1 has a server answer a method it does not implement.
    MethodNotAllowed,
    /// A `_method` query parameter on a route with a policy: the policy judged the
    /// method sent, not the one a framework would run.
    MethodOverride,
    /// A protocol upgrade this route does not accept (any but `websocket` on a route
    /// with `websocket = true`; `h2c` always).
    UpgradeRefused,
}

impl Refusal {
    /// The table: status and page text.
    pub fn page(self) -> (u16, &'static str) {
        match self {
            Refusal::BadFraming => (400, "400 Bad Request\n\nThe request's framing is ambiguous and was not forwarded.\n"),
            Refusal::BadPath => (400, "400 Bad Request\n\nThe request path cannot be read one way only and was not forwarded.\n"),
            Refusal::HeaderTooLarge => (431, "431 Request Header Fields Too Large\n"),
            Refusal::UriTooLong => (414, "414 URI Too Long\n"),
            Refusal::NoRoute => (404, "404 Not Found\n\nNo service is configured for this address.\n"),
            Refusal::BodyTooLarge => (413, "413 Content Too Large\n"),
            Refusal::UpstreamUnavailable => (502, "502 Bad Gateway\n\nThe service behind the gateway is not reachable.\n"),
            Refusal::UpstreamTimeout => (504, "504 Gateway Timeout\n\nThe service behind the gateway did not answer in time.\n"),
            Refusal::ClientTimeout => (408, "408 Request Timeout\n"),
            Refusal::AuditUnavailable => {
                (503, "503 Service Unavailable\n\nAccess is refused because it cannot be recorded in the audit trail.\n")
            }
            Refusal::Internal => (500, "500 Internal Server Error\n"),
            Refusal::Unauthenticated => (
                401,
                "401 Unauthorized\n\nSign in first: open this address in a browser, or go to /.custos/login.\n",
            ),
            Refusal::StepUpRequired => (
                401,
                "401 Unauthorized\n\nThis service needs a multi-factor sign-in. Sign in again at /.custos/login with your second factor.\n",
            ),
            Refusal::SessionStoreUnavailable => (
                503,
                "503 Service Unavailable\n\nSign-in cannot be checked right now (the session store is unreachable), so nothing was forwarded. Try again in a moment.\n",
            ),
            Refusal::IdpUnavailable => (
                503,
                "503 Service Unavailable\n\nThe identity provider cannot be reached, so you cannot sign in right now. People already signed in are not affected. Try again in a moment.\n",
            ),
            Refusal::LoginFailed => (
                403,
                "403 Forbidden\n\nThe sign-in could not be completed (it expired, was already used, or was started in another browser). Go back to the page you wanted and sign in again.\n",
            ),
            Refusal::InvalidToken => (401, "401 Unauthorized\n\nThe bearer token was not accepted.\n"),
            Refusal::PolicyDenied => (403, "403 Forbidden\n"),
            Refusal::MethodNotAllowed => (501, "501 Not Implemented\n\nThis request method is not served here.\n"),
            Refusal::MethodOverride => (
                400,
                "400 Bad Request\n\nA method override (`_method`) is refused here: send the request with its real method.\n",
            ),
            Refusal::UpgradeRefused => {
                (400, "400 Bad Request\n\nThis address does not accept this protocol upgrade. Nothing was forwarded.\n")
            }
            Refusal::TooManySignIns => (429, "429 Too Many Requests\n\nToo many sign-ins were started from your address. Wait a minute and try again.\n"),
            Refusal::MfaNotSatisfied => (
                403,
                "403 Forbidden\n\nThis page requires a multi-factor sign-in, and this sign-in used only one factor. Sign in again with your second factor.\n",
            ),
        }
    }

    /// The reason its audit record gives.
    pub fn code(self) -> Code {
        match self {
            Refusal::BadFraming => Code::BadFraming,
            Refusal::BadPath => Code::BadPath,
            Refusal::HeaderTooLarge => Code::HeaderTooLarge,
            Refusal::UriTooLong => Code::UriTooLong,
            Refusal::NoRoute => Code::NoRoute,
            Refusal::BodyTooLarge => Code::BodyTooLarge,
            Refusal::UpstreamUnavailable => Code::UpstreamUnavailable,
            Refusal::UpstreamTimeout => Code::UpstreamTimeout,
            Refusal::ClientTimeout => Code::ClientTimeout,
            Refusal::AuditUnavailable => Code::AuditUnavailable,
            Refusal::Internal => Code::Internal,
            Refusal::Unauthenticated => Code::Unauthenticated,
            Refusal::StepUpRequired => Code::MfaRequired,
            Refusal::SessionStoreUnavailable => Code::SessionStoreUnavailable,
            Refusal::IdpUnavailable => Code::IdpUnavailable,
            Refusal::LoginFailed => Code::LoginFailed,
            Refusal::MfaNotSatisfied => Code::Mfa,
            Refusal::TooManySignIns => Code::LoginRate,
            Refusal::InvalidToken => Code::Bearer,
            Refusal::PolicyDenied => Code::Policy,
            Refusal::MethodNotAllowed => Code::MethodNotAllowed,
            Refusal::MethodOverride => Code::MethodOverride,
            Refusal::UpgradeRefused => Code::UpgradeRefused,
        }
    }

    /// The reason as written in audit records.
    pub fn reason(self) -> &'static str {
        self.code().as_str()
    }

    pub fn status(self) -> u16 {
        self.page().0
    }
}

/// How HTTP answers a denial of the access core. A sign-in to start is a redirect for a
/// browser; this is its answer to anything else.
pub fn refusal_of(d: &access::Denial) -> Refusal {
    match d {
        access::Denial::Internal => Refusal::Internal,
        access::Denial::SessionStoreUnavailable => Refusal::SessionStoreUnavailable,
        access::Denial::IdpUnavailable => Refusal::IdpUnavailable,
        access::Denial::InvalidToken(_) => Refusal::InvalidToken,
        access::Denial::MfaRequired(_) => Refusal::StepUpRequired,
        access::Denial::SignIn(s) if s.step_up => Refusal::StepUpRequired,
        access::Denial::SignIn(_) => Refusal::Unauthenticated,
        access::Denial::PathParameters => Refusal::BadPath,
        access::Denial::MethodOverride => Refusal::MethodOverride,
        access::Denial::Policy { .. } => Refusal::PolicyDenied,
        access::Denial::AuditUnavailable => Refusal::AuditUnavailable,
        // Database refusals: never made for an HTTP request.
        access::Denial::UserMismatch | access::Denial::NoDatabaseRole | access::Denial::RoleNotHeld => {
            Refusal::Internal
        }
    }
}

/// The status a denial is answered with (for its audit record).
pub fn denial_status(d: &access::Denial) -> u16 {
    refusal_of(d).status()
}

/// The policy's 403: names the route and the action, never the rule; the method only
/// when it is a standard one (the page echoes no client input).
pub async fn forbidden(session: &mut Session, route: &str) -> Result<()> {
    let req = session.req_header();
    let shown = match req.method.as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "this action",
    };
    let (body, ctype) = if super::auth::accepts_html(req) {
        (format!("403 Forbidden\n\nYour account may not do {shown} on {route}. Ask your security team if you need this access.\n"), "text/plain; charset=utf-8")
    } else {
        (serde_json::json!({ "error": "forbidden", "route": route, "action": shown }).to_string(), "application/json")
    };
    write_full(session, 403, Bytes::from(body), false, &[("content-type", ctype.to_string())]).await
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
    write_full(session, status, Bytes::from_static(body.as_bytes()), close, &[]).await
}

/// [`write`] with extra headers (`Location`, `Set-Cookie`, `WWW-Authenticate`).
pub async fn write_full(
    session: &mut Session,
    status: u16,
    body: Bytes,
    close: bool,
    extra: &[(&'static str, String)],
) -> Result<()> {
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
    for (k, v) in extra {
        if *k == "content-type" {
            resp.insert_header(*k, v.as_str())?;
        } else {
            resp.append_header(*k, v.as_str())?;
        }
    }
    let head = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(resp), head).await?;
    if !head {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// A `302 Found` to `location`, with cookies to set.
pub async fn redirect(session: &mut Session, location: &str, cookies: Vec<String>) -> Result<()> {
    let mut extra: Vec<(&'static str, String)> = vec![("location", location.to_string())];
    extra.extend(cookies.into_iter().map(|c| ("set-cookie", c)));
    write_full(session, 302, Bytes::from_static(b"302 Found\n"), false, &extra).await
}

/// Writes the page for `r`.
pub async fn refuse(session: &mut Session, r: Refusal) -> Result<()> {
    refuse_with(session, r, Vec::new()).await
}

/// Writes the page for `r` with extra headers; 401s carry their `WWW-Authenticate`.
pub async fn refuse_with(session: &mut Session, r: Refusal, mut extra: Vec<(&'static str, String)>) -> Result<()> {
    let (status, body) = r.page();
    // A client that asked to switch protocols may speak the new one next: closed.
    let close = matches!(
        r,
        Refusal::BadFraming
            | Refusal::HeaderTooLarge
            | Refusal::UriTooLong
            | Refusal::BodyTooLarge
            | Refusal::UpgradeRefused
    );
    match r {
        Refusal::Unauthenticated => extra.push(("www-authenticate", "Bearer realm=\"custos\"".into())),
        Refusal::InvalidToken => extra.push(("www-authenticate", "Bearer realm=\"custos\", error=\"invalid_token\"".into())),
        // RFC 9470: the step-up challenge.
        Refusal::StepUpRequired => extra.push((
            "www-authenticate",
            "Bearer realm=\"custos\", error=\"insufficient_user_authentication\", error_description=\"multi-factor sign-in required\"".into(),
        )),
        _ => {}
    }
    write_full(session, status, Bytes::from_static(body.as_bytes()), close, &extra).await
}

/// Why a gateway endpoint refused. Each kind is recorded its own way (an access decision,
/// a refused sign-in, a refused break-glass step, a refused back-channel logout); this is
/// their one table of statuses and audit reasons.
#[derive(Debug)]
pub enum Denial {
    /// A page of [`Refusal`]'s table, recorded as an access decision.
    Refused(Refusal),
    /// A sign-in refused at the callback: why, who tried (when known), and the page shown.
    LoginFailed { reason: crate::audit::Reason, actor: Option<crate::audit::Actor>, page: Refusal },
    /// A break-glass step refused: a page saying what to do instead.
    Breakglass(super::breakglass::BreakglassDenial),
    /// A back-channel logout refused: a JSON error for the provider.
    Backchannel(super::endpoints::BackchannelDenial),
    /// The sign-in step answered (a redirect to the provider, or a 401) and recorded it.
    Answered,
    /// The connection failed: nothing more can be answered.
    Io(Box<pingora::Error>),
}

impl Denial {
    /// The status answered (`None`: answered already, or not at all).
    pub fn status(&self) -> Option<u16> {
        match self {
            Denial::Refused(r) | Denial::LoginFailed { page: r, .. } => Some(r.status()),
            Denial::Breakglass(b) => Some(b.status()),
            Denial::Backchannel(b) => Some(b.status()),
            Denial::Answered | Denial::Io(_) => None,
        }
    }

    /// The reason in the audit record.
    pub fn reason(&self) -> Option<crate::audit::Reason> {
        match self {
            Denial::Refused(r) => Some(r.code().into()),
            Denial::LoginFailed { reason, .. } => Some(reason.clone()),
            Denial::Breakglass(b) => Some(b.reason().into()),
            Denial::Backchannel(b) => Some(b.reason()),
            Denial::Answered | Denial::Io(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Denial;

    #[test]
    fn denials_are_answered_from_the_table() {
        assert_eq!(refusal_of(&Denial::InvalidToken(crate::audit::Code::BearerExpired)), Refusal::InvalidToken);
        assert_eq!(denial_status(&Denial::PathParameters), 400);
        assert_eq!(refusal_of(&Denial::PathParameters).reason(), "bad_path");
        assert_eq!(denial_status(&Denial::MethodOverride), 400);
        assert_eq!(denial_status(&Denial::Policy { rule: None }), 403);
        assert_eq!(denial_status(&Denial::SessionStoreUnavailable), 503);
        assert_eq!(denial_status(&Denial::AuditUnavailable), 503);
        assert_eq!(denial_status(&Denial::Internal), 500);
    }
}

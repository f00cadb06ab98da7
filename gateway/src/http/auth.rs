//! Sign-in on HTTP: without a usable session (the access core checks it) a browser is
//! sent to the identity provider (with a pre-login cookie that binds the sign-in to it)
//! and anything else gets 401; the identity headers and assertion for the upstream. The
//! sign-in endpoints that finish it are in `endpoints`. Every outcome is an audit record;
//! tokens and cookie values never are.

use super::cookies;
use super::respond::{self, Refusal};
use super::{Gateway, RequestCtx};
use crate::audit::{Actor, Decision, Event, Kind};
use crate::identity::{redirect::safe_return, LoginError};
use crate::session::{Session as UserSession, SessionId};
use pingora::proxy::Session;
use pingora::Result;
use std::time::Duration;

/// The sign-in bundle lives in the access core now.
pub use crate::access::Auth;

/// The request accepts an HTML page.
pub(super) fn accepts_html(req: &pingora::http::RequestHeader) -> bool {
    req.headers.get_all(http::header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
}

/// A browser navigation (it can follow a redirect to the sign-in page).
fn is_browser(session: &Session) -> bool {
    let req = session.req_header();
    matches!(req.method, http::Method::GET | http::Method::HEAD) && accepts_html(req)
}

/// The request's authority (`Host`, or the HTTP/2 `:authority`).
pub(super) fn authority(req: &pingora::http::RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Whether `authority` names the gateway's origin (`scheme://host[:port]`), default
/// ports included: sign-in cookies live there only.
fn is_origin(authority: &str, origin: &str) -> bool {
    let (scheme, host) = origin.split_once("://").unwrap_or(("https", origin));
    let default = if scheme == "https" { "443" } else { "80" };
    let split = |a: &str| -> (String, String) {
        let a = a.to_ascii_lowercase();
        match a.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with('[') => {
                (h.to_string(), p.to_string())
            }
            _ => (a, default.to_string()),
        }
    };
    split(authority) == split(host)
}

/// A name as a header value: percent-encoded except RFC 3986 unreserved characters and
/// `@`, so any name fits in a header and a comma inside a group name cannot split it.
/// Appended to `out`: the groups are written into one buffer.
fn push_header_safe(out: &mut String, v: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            for c in [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]] {
                out.push(c as char);
            }
        }
    }
}

fn header_safe(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    push_header_safe(&mut out, v);
    out
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
pub(super) fn bearer_token(req: &pingora::http::RequestHeader) -> Option<&str> {
    let v = req.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    Some(token.trim()).filter(|t| scheme.eq_ignore_ascii_case("bearer") && !t.is_empty())
}

pub(super) fn actor_of(s: &UserSession) -> Actor {
    Actor { subject: s.subject.clone(), groups: s.groups.clone() }
}

impl Gateway {
    pub(super) fn auth(&self) -> Option<&Auth> {
        self.auth.as_deref()
    }

    /// Strips the gateway's cookies from a request about to go upstream.
    pub(super) fn strip_own_cookies(&self, upstream: &mut pingora::http::RequestHeader) -> Result<()> {
        match self.auth() {
            Some(a) => cookies::strip(upstream, &a.cookie_names()),
            None => Ok(()),
        }
    }

    /// The signed identity (and, per route, plain identity headers) for the upstream.
    pub(super) fn assert_identity(&self, upstream: &mut pingora::http::RequestHeader, ctx: &RequestCtx) -> Result<()> {
        let (Some(auth), Some(p), Some(route)) = (self.auth(), ctx.principal.as_ref(), ctx.route.as_ref()) else {
            return Ok(());
        };
        let user = &p.user;
        if let (Some(a), Some(u)) = (&auth.asserter, &auth.settings.upstream_identity) {
            // The credential's hash: the session id's, or the bearer token's.
            let sid = p.credential_hash();
            let who = crate::identity::assertion::Subject {
                subject: &user.subject,
                email: user.email.as_deref(),
                groups: &user.groups,
                amr: &user.amr,
                sid,
            };
            if let Some(v) = a.assertion(&who, &route.name) {
                upstream.insert_header(u.header.clone(), v)?;
            }
        }
        if route.identity_headers {
            // Percent-encoded (RFC 3986 unreserved kept): any name fits in a header, and a
            // comma inside a group name cannot split it in two.
            upstream.insert_header("x-custos-user", header_safe(&user.subject))?;
            let max = auth.settings.upstream_identity.as_ref().map_or(50, |u| u.max_groups);
            let mut groups = String::with_capacity(user.groups.iter().take(max).map(|g| g.len() + 1).sum());
            for (i, g) in user.groups.iter().take(max).enumerate() {
                if i > 0 {
                    groups.push(',');
                }
                push_header_safe(&mut groups, g);
            }
            upstream.insert_header("x-custos-groups", groups)?;
            if user.groups.len() > max {
                upstream.insert_header("x-custos-groups-truncated", http::HeaderValue::from_static("true"))?;
            }
        }
        Ok(())
    }

    /// Takes the gateway's cookies out of an upstream response's `Set-Cookie`.
    pub(super) fn strip_own_set_cookies(&self, resp: &mut pingora::http::ResponseHeader) -> Result<()> {
        match self.auth() {
            Some(a) => cookies::strip_set_cookie(resp, &a.cookie_names()),
            None => Ok(()),
        }
    }

    pub(super) fn secure(&self, session: &Session) -> bool {
        self.auth().is_some_and(|a| a.settings.oidc.secure_cookies) || self.is_tls(session)
    }

    /// An audit record about sign-in or a session, with this request's metadata.
    pub(super) fn auth_event(&self, session: &Session, ctx: &RequestCtx, kind: Kind) -> Event {
        let mut ev = self.access_event(session, ctx, kind);
        ev.route = None;
        ev.upstream = None;
        ev
    }

    /// No usable session: a browser goes to sign in, anything else gets 401.
    pub(super) async fn challenge(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        need_mfa: bool,
        step_up: bool,
        reauth: Option<Duration>,
    ) -> Result<bool> {
        if !is_browser(session) {
            let r = if step_up { Refusal::StepUpRequired } else { Refusal::Unauthenticated };
            return self.refuse(session, ctx, r).await;
        }
        let target = String::from_utf8_lossy(session.req_header().raw_path()).into_owned();
        let reason = if step_up { "mfa_step_up" } else { "unauthenticated" };
        self.begin_login(session, ctx, safe_return(&target), need_mfa, reauth, Some(reason)).await
    }

    /// Starts a sign-in and redirects the browser to the provider. `deny_reason`: the
    /// request was for a protected page, recorded as a deny decision.
    pub(super) async fn begin_login(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        return_to: String,
        require_mfa: bool,
        reauth: Option<Duration>,
        deny_reason: Option<&'static str>,
    ) -> Result<bool> {
        let Some(auth) = self.auth() else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        let names = &auth.settings.session;
        let origin = &auth.settings.oidc.origin;
        // Sessions live on the origin of the redirect URL: a sign-in that starts on any
        // other name for the gateway (`localhost` for `127.0.0.1`) starts over there, or
        // its cookies would never meet.
        if !is_origin(authority(session.req_header()), origin) {
            let rd: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
            respond::redirect(session, &format!("{origin}{}?rd={rd}", crate::identity::LOGIN_PATH), Vec::new()).await?;
            return Ok(true);
        }
        // Each started sign-in is a record in Redis: bounded per client address.
        let client =
            session.client_addr().and_then(|a| a.as_inet()).map_or_else(|| "-".to_string(), |a| a.ip().to_string());
        match auth.store.count_login(&client).await {
            Ok(n) if n > auth.settings.oidc.max_logins_per_minute => {
                tracing::warn!(client, "too many sign-ins started from one address");
                return self.refuse(session, ctx, Refusal::TooManySignIns).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; cannot start a sign-in");
                return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
            }
        }
        // The pre-login cookie: kept if the browser has one (sign-ins in two tabs), made
        // otherwise, and sent again with a fresh lifetime. Only its hash is stored with
        // the pending sign-in.
        let existing = cookies::get(session.req_header(), &names.login_cookie_name).and_then(SessionId::parse);
        let binding = match existing {
            Some(b) => b,
            None => match SessionId::generate() {
                Ok(b) => b,
                Err(_) => return self.refuse(session, ctx, Refusal::Internal).await,
            },
        };
        let started = match auth.identity.start(binding.hash(), return_to, require_mfa, reauth).await {
            Ok(s) => s,
            Err(LoginError::IdpUnavailable(e)) => {
                tracing::warn!(error = %e, "identity provider unavailable; cannot start a sign-in");
                return self.refuse(session, ctx, Refusal::IdpUnavailable).await;
            }
            Err(LoginError::Failed { reason, detail }) => {
                tracing::error!(reason, detail, "cannot start a sign-in");
                return self.refuse(session, ctx, Refusal::Internal).await;
            }
        };
        if let Err(e) = auth.store.put_login(&started.state, &started.pending, auth.settings.oidc.login_timeout).await {
            tracing::warn!(error = %e, "session store unavailable; cannot start a sign-in");
            return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
        }
        if let (Some(audit), Some(reason)) = (&self.audit, deny_reason) {
            let mut ev = self.access_event(session, ctx, Kind::AccessDecision);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(crate::audit::Reason::named(reason));
            ev.status = Some(302);
            audit.append_refusal(ev);
            crate::metrics::DENIED.inc();
        }
        let ttl = auth.settings.oidc.login_timeout.as_secs();
        let set = vec![cookies::set(&names.login_cookie_name, binding.cookie_value(), Some(ttl), self.secure(session))];
        respond::redirect(session, &started.auth_url, set).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_header_values_cannot_be_split_or_break() {
        assert_eq!(super::header_safe("alice@example.test"), "alice@example.test");
        assert_eq!(super::header_safe("x,admins"), "x%2Cadmins");
        assert_eq!(super::header_safe("Ärzte"), "%C3%84rzte");
        assert!(http::HeaderValue::from_str(&super::header_safe("a\r\nb: c")).is_ok());
        assert_eq!(super::header_safe("a b\u{7f}%"), "a%20b%7F%25");
    }
}

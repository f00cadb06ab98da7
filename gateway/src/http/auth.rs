//! Authentication on the request path: the session cookie → Redis session → the route's
//! MFA rule; otherwise a browser is sent to the identity provider (with a pre-login cookie
//! that binds the sign-in to it) and anything else gets 401. The sign-in endpoints that
//! finish it are in `endpoints`. Every outcome is an audit record; tokens and cookie
//! values never are.

use super::cookies;
use super::respond::{self, Refusal};
use super::{Gateway, RequestCtx};
use crate::audit::{Actor, Decision, Event, Kind};
use crate::config::AuthSettings;
use crate::identity::{bearer::BearerError, redirect::safe_return, Identity, LoginError};
use crate::session::{Lookup, Session as UserSession, SessionId, SessionStore};
use pingora::proxy::Session;
use pingora::Result;
use std::sync::Arc;
use std::time::Duration;

/// What the gateway needs to sign users in.
pub struct Auth {
    pub settings: AuthSettings,
    pub identity: Arc<Identity>,
    pub store: SessionStore,
    pub asserter: Option<crate::identity::assertion::Asserter>,
}

impl Auth {
    pub fn new(settings: AuthSettings) -> std::result::Result<Auth, String> {
        let s = &settings.session;
        let store = SessionStore::new(
            crate::session::StoreConfig {
                url: s.redis_url.clone(),
                username: s.redis_username.clone(),
                password: s.redis_password.clone(),
                ca: s.redis_ca.clone(),
                timeout: s.redis_timeout,
                prefix: s.key_prefix.clone(),
            },
            s.timeouts,
        )
        .map_err(|e| format!("`session.redis_url`: {e}"))?;
        let identity = Arc::new(Identity::new(settings.oidc.clone()).map_err(|e| e.to_string())?);
        let asserter = match &settings.upstream_identity {
            None => None,
            Some(u) => {
                if u.signing_key.is_none() {
                    tracing::warn!("upstream_identity.signing_key is not set: assertions are signed with a key made at start (several gateway instances need one shared key)");
                }
                Some(
                    crate::identity::assertion::Asserter::new(
                        u.signing_key.as_ref(),
                        &settings.oidc.origin,
                        u.ttl,
                        u.max_groups,
                    )
                    .map_err(|e| format!("`upstream_identity.signing_key`: {e}"))?,
                )
            }
        };
        Ok(Auth { settings, identity, store, asserter })
    }

    fn cookie_names(&self) -> [&str; 2] {
        [&self.settings.session.cookie_name, &self.settings.session.login_cookie_name]
    }
}

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
fn header_safe(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
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
        let (Some(auth), Some(user), Some(route)) = (self.auth(), ctx.user.as_ref(), ctx.route.as_ref()) else {
            return Ok(());
        };
        if let (Some(a), Some(u)) = (&auth.asserter, &auth.settings.upstream_identity) {
            // The credential's hash: the session id's, or the bearer token's.
            let Some(sid) = ctx.session_hash.as_deref().or(ctx.credential_hash.as_deref()) else { return Ok(()) };
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
            let groups: Vec<String> = user.groups.iter().take(max).map(|g| header_safe(g)).collect();
            upstream.insert_header("x-custos-groups", groups.join(","))?;
            if user.groups.len() > max {
                upstream.insert_header("x-custos-groups-truncated", "true")?;
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

    /// Checks the request's session for a non-public route. `Ok(true)`: answered here.
    pub(super) async fn authenticate(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(auth) = self.auth() else {
            // Config validation refuses non-public routes without [oidc]; never forward.
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        let need_mfa = ctx.route.as_ref().and_then(|r| r.require_mfa).unwrap_or(auth.settings.oidc.require_mfa);
        if auth.settings.oidc.api_audience.is_some() {
            if let Some(token) = bearer_token(session.req_header()).map(str::to_string) {
                return self.authenticate_bearer(session, ctx, token, need_mfa).await;
            }
        }
        let presented = cookies::get(session.req_header(), &auth.settings.session.cookie_name);
        // A browser that had a session and lost it (timeout, logout) must authenticate
        // at the provider again, not be signed back in silently by the provider's session.
        let reauth = presented.is_some().then_some(Duration::ZERO);
        if let Some(id) = presented.and_then(SessionId::parse) {
            let hash = id.hash();
            match auth.store.load_by_hash(&hash).await {
                Err(crate::session::SessionError::Corrupt) => {
                    tracing::warn!("unreadable session record; signing in again")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable; refusing protected request");
                    return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
                }
                Ok(Lookup::Active(s))
                    if s.sealed && s.breakglass.as_ref().is_none_or(|g| g.expires <= crate::session::now_secs()) =>
                {
                    // A sealed link's session exists for its grant only: it ends with it.
                    let _ = auth.store.end_by_hash_for(&hash, None, crate::session::EndReason::Expired).await;
                    ctx.session_hash = Some(hash.clone());
                    ctx.user = Some(Arc::from(s.clone()));
                    if let Some(g) = &s.breakglass {
                        self.grant_ended(session, ctx, g, crate::breakglass::GrantEnd::Expired);
                    }
                    ctx.user = None;
                    ctx.session_hash = None;
                }
                Ok(Lookup::Active(mut s)) => {
                    if !self.revalidate(session, ctx, &hash, &mut s).await {
                        return Box::pin(self.challenge(session, ctx, need_mfa, false, Some(Duration::ZERO))).await;
                    }
                    let mfa = auth.settings.oidc.mfa.satisfied(&s.amr, s.acr.as_deref());
                    ctx.session_hash = Some(hash);
                    ctx.mfa = Some(mfa);
                    ctx.user = Some(Arc::from(s));
                    if need_mfa && !mfa {
                        let max_age = auth.settings.oidc.mfa.step_up_max_age.unwrap_or(Duration::ZERO);
                        return Box::pin(self.challenge(session, ctx, need_mfa, true, Some(max_age))).await;
                    }
                    return Ok(false);
                }
                Ok(Lookup::Missing) => {}
                Ok(Lookup::IdleTimeout(s)) => self.session_ended(session, ctx, Kind::SessionIdleTimeout, &s, hash),
                Ok(Lookup::Expired(s)) => self.session_ended(session, ctx, Kind::SessionExpired, &s, hash),
            }
        }
        // Boxed: the sign-in path's state is large and rare; the signed-in request's
        // future stays small (it is moved and polled on every request).
        Box::pin(self.challenge(session, ctx, need_mfa, false, reauth)).await
    }

    /// `Authorization: Bearer`: an access token instead of a session.
    async fn authenticate_bearer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        token: String,
        need_mfa: bool,
    ) -> Result<bool> {
        let Some(auth) = self.auth() else { return self.refuse(session, ctx, Refusal::Internal).await };
        match auth.identity.verify_bearer(&token).await {
            Ok(c) => {
                let mfa = auth.settings.oidc.mfa.satisfied(&c.amr, c.acr.as_deref());
                ctx.bearer = true;
                ctx.credential_hash = Some(c.token_hash.clone());
                ctx.credential_expires = Some(c.exp);
                ctx.mfa = Some(mfa);
                ctx.user = Some(c.session.clone());
                if need_mfa && !mfa {
                    return self.refuse(session, ctx, Refusal::StepUpRequired).await;
                }
                Ok(false)
            }
            Err(BearerError::Invalid(reason)) => {
                tracing::info!(reason, "bearer token refused");
                self.refuse_as(session, ctx, Refusal::InvalidToken, &format!("bearer_{reason}")).await
            }
            Err(BearerError::IdpUnavailable) => self.refuse(session, ctx, Refusal::IdpUnavailable).await,
        }
    }

    /// Every `revalidate_secs`, one gateway asks the provider (refresh-token grant) whether
    /// the session still stands. False: the provider refused it (the user is disabled or
    /// signed out there) and the session is ended. The provider being unreachable leaves
    /// the session alone: fail closed is for Redis, not for an IdP outage.
    async fn revalidate(&self, session: &Session, ctx: &RequestCtx, hash: &str, s: &mut UserSession) -> bool {
        let Some(auth) = self.auth() else { return true };
        let Some(every) = auth.settings.session.revalidate else { return true };
        let now = crate::session::now_secs();
        let last = if s.validated == 0 { s.created } else { s.validated };
        if now < last + every.as_secs() {
            return true;
        }
        let lock = format!("rv:{hash}");
        let timeout = auth.settings.oidc.timeout.as_secs() + 5;
        if !auth.store.lock(&lock, Duration::from_secs(timeout)).await.unwrap_or(false) {
            return true; // Another request or gateway is asking right now.
        }
        // Read again under the lock: another gateway may have just done it.
        let state = match auth.store.revalidation(hash).await {
            Ok(state) => state,
            Err(_) => {
                auth.store.unlock(&lock).await;
                return true; // Redis trouble is judged on the next load.
            }
        };
        let Some(mut state) = state.filter(|st| st.validated + every.as_secs() <= now) else {
            // Done by someone else (or nothing to check with): next due from there.
            s.validated = now;
            let _ = auth.store.save(hash, s).await;
            auth.store.unlock(&lock).await;
            return true;
        };
        let outcome = auth.identity.revalidate(&state.refresh_token).await;
        let keep = match outcome {
            crate::identity::Revalidation::Valid(rotated) => {
                state.validated = now;
                if let Some(r) = rotated {
                    state.refresh_token = r;
                }
                if let Err(e) = auth.store.set_revalidation(hash, &state).await {
                    tracing::warn!(error = %e, "could not record a session's re-validation");
                }
                s.validated = now;
                true
            }
            crate::identity::Revalidation::Unavailable | crate::identity::Revalidation::Misconfigured(_) => {
                if let crate::identity::Revalidation::Misconfigured(e) = &outcome {
                    tracing::error!(error = %e, "the identity provider refused this client's refresh-token grant: check oidc.client_id/client_secret and the client's grants");
                } else {
                    tracing::warn!("identity provider unreachable; session kept until it can be re-validated");
                }
                // Try again in at most 30 s, not on every request.
                s.validated = now.saturating_sub(every.as_secs()) + every.as_secs().min(30);
                true
            }
            crate::identity::Revalidation::Refused => false,
        };
        if keep {
            let _ = auth.store.save(hash, s).await;
            auth.store.unlock(&lock).await;
            return true;
        }
        let _ = auth.store.end_by_hash_for(hash, None, crate::session::EndReason::RevokedByIdp).await;
        auth.store.unlock(&lock).await;
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::SessionRevokedByIdp);
            ev.actor = Some(actor_of(s));
            ev.session = Some(hash.to_string());
            audit.append(ev);
        }
        tracing::info!("the identity provider refused a session; ended");
        false
    }

    /// Records the end of a session found timed out (it is already deleted).
    fn session_ended(&self, session: &Session, ctx: &RequestCtx, kind: Kind, s: &UserSession, hash: String) {
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, kind);
            ev.actor = Some(actor_of(s));
            ev.session = Some(hash);
            audit.append(ev);
        }
        // A grant still on the session ends with it (its end was not recorded yet).
        if let Some(g) = &s.breakglass {
            use crate::breakglass::GrantEnd;
            let why =
                if kind == Kind::SessionIdleTimeout { GrantEnd::SessionIdleTimeout } else { GrantEnd::SessionExpired };
            self.grant_ended(session, ctx, g, why);
        }
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
            super::metrics::DECISIONS.with_label_values(&["deny"]).inc();
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
    }
}

//! Sign-in on HTTP and the sign-in endpoints: without a usable session (the access core
//! checks it) a browser is sent to the identity provider (with a pre-login cookie that
//! binds the sign-in to it) and anything else gets 401; the identity headers and
//! assertion for the upstream. `/.custos/login`, `/.custos/callback` and `/.custos/logout` live here.
//! Every outcome is an audit record; tokens and cookie values never are.

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

/// One query parameter, decoded.
fn query_param(session: &Session, name: &str) -> Option<String> {
    let q = session.req_header().uri.query()?;
    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn actor_of(s: &UserSession) -> Actor {
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
            let groups: Vec<String> = user.groups.iter().take(max).map(|g| header_safe(g)).collect();
            upstream.insert_header("x-custos-groups", groups.join(","))?;
            if user.groups.len() > max {
                upstream.insert_header("x-custos-groups-truncated", "true")?;
            }
        }
        Ok(())
    }

    /// `/.custos/jwks.json`: the keys upstreams verify assertions with.
    pub(super) async fn jwks_endpoint(&self, session: &mut Session) -> Result<bool> {
        match self.auth().and_then(|a| a.asserter.as_ref()) {
            Some(a) => {
                let extra = vec![("content-type", "application/jwk-set+json".to_string())];
                respond::write_full(session, 200, bytes::Bytes::copy_from_slice(a.jwks().as_bytes()), false, &extra)
                    .await?
            }
            None => respond::refuse(session, Refusal::NoRoute).await?,
        }
        Ok(true)
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
    fn auth_event(&self, session: &Session, ctx: &RequestCtx, kind: Kind) -> Event {
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
    async fn begin_login(
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

    /// `/.custos/login?rd=PATH`: sign in, then go to PATH (same origin only, else `/`).
    pub(super) async fn login_endpoint(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(auth) = self.auth() else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        let return_to = safe_return(&query_param(session, "rd").unwrap_or_else(|| "/".into()));
        // The MFA need of the page the user is going to, so the first sign-in asks for it.
        let host = authority(session.req_header()).to_string();
        let target_path = return_to.split(['?', '#']).next().unwrap_or("/");
        let route_mfa = super::path::NormPath::parse(target_path.as_bytes())
            .ok()
            .and_then(|p| self.router.find(&super::routes::host_of(&host), &p).and_then(|r| r.require_mfa));
        let need_mfa = route_mfa.unwrap_or(auth.settings.oidc.require_mfa);
        let reauth = cookies::get(session.req_header(), &auth.settings.session.cookie_name).map(|_| Duration::ZERO);
        self.begin_login(session, ctx, return_to, need_mfa, reauth, None).await
    }

    /// A refused sign-in: audited with its reason, a plain page for the user.
    async fn login_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        reason: &'static str,
        actor: Option<Actor>,
        page: Refusal,
    ) -> Result<bool> {
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::AuthLoginFailed);
            ev.reason = Some(crate::audit::Reason::named(reason));
            ev.actor = actor;
            ev.status = Some(page.status());
            audit.append(ev);
        }
        tracing::info!(reason, "sign-in refused");
        ctx.refusal = Some(page);
        respond::refuse(session, page).await?;
        Ok(true)
    }

    /// `/.custos/callback`: the provider sends the browser back here.
    pub(super) async fn callback_endpoint(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(auth) = self.auth() else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        let fail = Refusal::LoginFailed;
        let Some(state) = query_param(session, "state").filter(|s| !s.is_empty() && s.len() <= 512) else {
            return self.login_failed(session, ctx, "state", None, fail).await;
        };
        let pending = match auth.store.peek_login(&state).await {
            Ok(Some(p)) => p,
            Ok(None) => return self.login_failed(session, ctx, "state", None, fail).await,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable at sign-in callback");
                return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
            }
        };
        // Bound to the browser that started it: a callback URL replayed elsewhere (login
        // CSRF) fails, and does not use up the sign-in of the browser it belongs to.
        let binding = cookies::get(session.req_header(), &auth.settings.session.login_cookie_name)
            .and_then(SessionId::parse)
            .map(|b| b.hash());
        // Both sides are SHA-256 digests of a secret: comparing them leaks nothing usable.
        if binding.as_deref() != Some(pending.binding.as_str()) {
            return self.login_failed(session, ctx, "browser_binding", None, fail).await;
        }
        match auth.store.consume_login(&state).await {
            Ok(true) => {}
            Ok(false) => return self.login_failed(session, ctx, "state", None, fail).await,
            Err(_) => return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await,
        }
        if query_param(session, "error").is_some() {
            return self.login_failed(session, ctx, "idp_error", None, fail).await;
        }
        let Some(code) = query_param(session, "code").filter(|c| !c.is_empty()) else {
            return self.login_failed(session, ctx, "code", None, fail).await;
        };
        let claims = match auth.identity.finish(&code, &pending).await {
            Ok(c) => c,
            Err(LoginError::IdpUnavailable(e)) => {
                tracing::warn!(error = %e, "identity provider unavailable at sign-in callback");
                return self.login_failed(session, ctx, "idp_unavailable", None, Refusal::IdpUnavailable).await;
            }
            Err(LoginError::Failed { reason, detail }) => {
                tracing::info!(reason, detail, "ID token refused");
                return self.login_failed(session, ctx, reason, None, fail).await;
            }
        };
        let actor = Actor { subject: claims.subject.clone(), groups: claims.groups.clone() };
        let mfa = auth.settings.oidc.mfa.satisfied(&claims.amr, claims.acr.as_deref());
        if pending.require_mfa && !mfa {
            return self.login_failed(session, ctx, "mfa", Some(actor), Refusal::MfaNotSatisfied).await;
        }
        let claims_rt = claims.refresh_token.clone();
        let record = UserSession {
            subject: claims.subject,
            email: claims.email,
            name: claims.name,
            groups: claims.groups,
            amr: claims.amr,
            acr: claims.acr,
            auth_time: claims.auth_time,
            created: 0,
            last_seen: 0,
            client: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
            sid: claims.sid,
            idp_sub: claims.idp_sub,
            validated: 0,
            breakglass: None,
            sealed: false,
        };
        let id = match auth.store.create(record, auth.settings.session.max_per_user, claims_rt).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; cannot create the session");
                return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
            }
        };
        // A session the browser held before (a step-up, or one planted by someone else)
        // is ended: the new sign-in gets a fresh id, never the old one.
        if let Some(old) =
            cookies::get(session.req_header(), &auth.settings.session.cookie_name).and_then(SessionId::parse)
        {
            let _ = auth.store.delete_for(&old, crate::session::EndReason::Replaced).await;
        }
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::AuthLogin);
            ev.actor = Some(actor);
            ev.session = Some(id.hash());
            ev.mfa = Some(mfa);
            audit.append(ev);
        }
        let secure = self.secure(session);
        let names = &auth.settings.session;
        let set = vec![
            cookies::set(&names.cookie_name, id.cookie_value(), None, secure),
            cookies::set(&names.login_cookie_name, "", Some(0), secure),
        ];
        respond::redirect(session, &safe_return(&pending.return_to), set).await?;
        Ok(true)
    }

    /// `/.custos/logout`: ends the session in Redis, clears the cookie, and continues at
    /// the provider's logout when it offers one.
    pub(super) async fn logout_endpoint(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(auth) = self.auth() else { return self.refuse(session, ctx, Refusal::NoRoute).await };
        let req = session.req_header();
        // A cross-site link cannot sign users out: it gets a page with a button (a POST
        // from another site carries no `SameSite=Lax` cookie, so it ends nothing).
        let cross_site = req.headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
        if req.method != http::Method::POST && cross_site {
            let page = "<!doctype html><title>Sign out</title><form method=\"post\" action=\"/.custos/logout\"><button>Sign out</button></form>\n";
            let extra = vec![("content-type", "text/html; charset=utf-8".to_string())];
            respond::write_full(session, 200, bytes::Bytes::from_static(page.as_bytes()), false, &extra).await?;
            return Ok(true);
        }
        let secure = self.secure(session);
        // The cookie is replaced by a marker that is no session: the next sign-in in this
        // browser makes the provider authenticate the user again.
        let clear = vec![cookies::set(&auth.settings.session.cookie_name, "signed-out", None, secure)];
        let id = cookies::get(session.req_header(), &auth.settings.session.cookie_name).and_then(SessionId::parse);
        let mut ended = true;
        if let Some(id) = id {
            let (who, grant) = match auth.store.peek(&id).await {
                Ok(Some(s)) => (Some(actor_of(&s)), s.breakglass.clone()),
                _ => (None, None),
            };
            if let Some(g) = grant.filter(|g| g.expires > crate::session::now_secs()) {
                self.grant_ended(session, ctx, &g, crate::breakglass::GrantEnd::Logout);
            }
            ended = auth.store.delete(&id).await.is_ok();
            if let Some(audit) = &self.audit {
                let mut ev = self.auth_event(session, ctx, Kind::AuthLogout);
                ev.actor = who;
                ev.session = Some(id.hash());
                if !ended {
                    ev.reason = Some(crate::audit::Code::SessionStoreUnavailable.into());
                }
                audit.append(ev);
            }
        }
        if !ended {
            let extra = clear.into_iter().map(|c| ("set-cookie", c)).collect();
            return respond::refuse_with(session, Refusal::SessionStoreUnavailable, extra).await.map(|_| true);
        }
        match auth.identity.logout_url() {
            Some(url) => respond::redirect(session, &url, clear).await?,
            None => {
                let extra: Vec<(&'static str, String)> = clear.into_iter().map(|c| ("set-cookie", c)).collect();
                respond::write_full(session, 200, bytes::Bytes::from_static(b"You are signed out.\n"), false, &extra)
                    .await?
            }
        }
        Ok(true)
    }

    /// `/.custos/backchannel-logout`: the provider ends sessions (OpenID Connect
    /// Back-Channel Logout). 200 when done, 400 for a token that is not valid.
    pub(super) async fn backchannel_logout_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(auth) = self.auth() else { return self.refuse(session, ctx, Refusal::NoRoute).await };
        let json = |v: serde_json::Value| bytes::Bytes::from(v.to_string());
        let ctype = vec![("content-type", "application/json".to_string())];
        if session.req_header().method != http::Method::POST {
            respond::write_full(session, 405, json(serde_json::json!({"error": "invalid_request"})), false, &ctype)
                .await?;
            return Ok(true);
        }
        // The form body, bounded.
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > 16 * 1024 {
                respond::write_full(session, 413, json(serde_json::json!({"error": "invalid_request"})), true, &ctype)
                    .await?;
                return Ok(true);
            }
        }
        let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned());
        let verified = match token {
            None => Err("no_token"),
            Some(t) => auth.identity.verify_logout_token(&t).await,
        };
        let ended = match verified {
            Err(reason) => Err(reason),
            Ok(t) => match auth.store.first_use(&t.jti, Duration::from_secs(600)).await {
                Ok(false) => Err("replay"),
                Ok(true) => match auth.store.end_provider_session(t.sid.as_deref(), t.sub.as_deref()).await {
                    Ok(ended) => Ok(ended),
                    Err(_) => {
                        // Not done: the provider retries with the same jti, which must work.
                        auth.store.forget_use(&t.jti).await;
                        Err("store")
                    }
                },
                Err(_) => Err("store"),
            },
        };
        let (status, body) = match ended {
            Ok(ended) => {
                if let Some(audit) = &self.audit {
                    for (h, s) in &ended {
                        let mut ev = self.auth_event(session, ctx, Kind::AuthBackchannelLogout);
                        ev.decision = Some(Decision::Allow);
                        ev.actor = Some(actor_of(s));
                        ev.session = Some(h.clone());
                        audit.append(ev);
                        // An emergency grant ends with its session.
                        if let Some(g) = s.breakglass.as_ref().filter(|g| g.expires > crate::session::now_secs()) {
                            self.grant_ended(session, ctx, g, crate::breakglass::GrantEnd::BackchannelLogout);
                        }
                    }
                }
                tracing::info!(ended = ended.len(), "back-channel logout");
                (200, serde_json::json!({ "ended": ended.len() }))
            }
            Err(reason) => {
                if let Some(audit) = &self.audit {
                    let mut ev = self.auth_event(session, ctx, Kind::AuthBackchannelLogout);
                    ev.decision = Some(Decision::Deny);
                    ev.reason = Some(crate::audit::Reason::named(reason));
                    audit.append(ev);
                }
                tracing::info!(reason, "back-channel logout refused");
                let status = if matches!(reason, "idp_unavailable" | "store") { 503 } else { 400 };
                (status, serde_json::json!({ "error": "invalid_request" }))
            }
        };
        respond::write_full(session, status, json(body), false, &ctype).await?;
        Ok(true)
    }

    /// `/.custos/readyz`: each dependency, and 503 when protected routes cannot be served.
    pub(super) async fn readyz(&self, session: &mut Session) -> Result<bool> {
        let mut body = String::new();
        let mut ready = true;
        if let Some(auth) = self.auth() {
            let (redis, idp) = tokio::join!(auth.store.ping(), auth.identity.probe());
            match redis {
                Ok(()) => body.push_str("redis: ok\n"),
                Err(_) => {
                    ready = false;
                    body.push_str("redis: down (protected routes answer 503)\n");
                }
            }
            // The provider being down stops new sign-ins only; sessions go on, so the
            // instance stays in its load balancer.
            body.push_str(if idp {
                "idp: ok\n"
            } else {
                "idp: down (new sign-ins fail; existing sessions continue)\n"
            });
        }
        body.insert_str(0, if ready { "ready\n" } else { "not ready\n" });
        respond::write_full(session, if ready { 200 } else { 503 }, bytes::Bytes::from(body), false, &[]).await?;
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

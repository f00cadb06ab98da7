//! The break-glass pages: `/.custos/breakglass?route=NAME[&path=/…]` (declare an
//! emergency: a signed-in user with MFA whose policy allows `custos:breakglass` on the route's
//! object states why and gets a time-bound grant) and `/.custos/breakglass/link?t=…` (a
//! sealed link, for when the identity provider is down). Every step is audited and
//! alerted; the justification stays in the review record. A declaration covers the record
//! at the path given unless the person chooses the whole route on the form.

use super::cookies;
use super::respond::{self, Refusal};
use super::{Gateway, RequestCtx};
use crate::audit::{Actor, Decision, Event, Kind};
use crate::breakglass::{self as bg, rfc3339, AlertEvent, AlertKind, Grant, GrantEnd, LinkState, Record, Store};
use crate::session::{now_secs, sha256_hex, Session as UserSession};
use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;
use std::collections::HashMap;
use std::sync::Arc;

pub const PATH: &str = "/.custos/breakglass";
pub const LINK_PATH: &str = "/.custos/breakglass/link";
pub const REVIEWS_PATH: &str = "/.custos/breakglass/reviews";
/// What the review page asks the policy about: the gateway action `custos:review` on this object.
pub const REVIEWS_OBJECT: &str = "custos:/breakglass/reviews";
/// The most a break-glass form may send.
const MAX_FORM: usize = 16 * 1024;
/// Wrong TOTP codes that spend a sealed link.
const CODE_TRIES: u64 = 5;

/// What a sealed link's grant covers: `route`, or the path it was issued for.
fn link_scope(l: &bg::Link) -> String {
    match &l.path {
        Some(p) if !l.whole_route => p.clone(),
        _ => bg::WHOLE_ROUTE.to_string(),
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

async fn page(session: &mut Session, status: u16, title: &str, body: &str) -> Result<bool> {
    let html =
        format!("<!doctype html><meta charset=\"utf-8\"><title>{t}</title><h1>{t}</h1>\n{body}\n", t = esc(title));
    let extra = vec![("content-type", "text/html; charset=utf-8".to_string())];
    respond::write_full(session, status, Bytes::from(html), false, &extra).await?;
    Ok(true)
}

/// A request's query string, decoded (the pages here and the admin listener).
pub(super) fn query(req: &pingora::http::RequestHeader) -> HashMap<String, String> {
    req.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Reads an `application/x-www-form-urlencoded` body, at most `MAX_FORM` bytes.
async fn form(session: &mut Session) -> Option<HashMap<String, String>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_FORM {
                    return None;
                }
            }
            Ok(None) => break,
            // A body cut off is not a form.
            Err(_) => return None,
        }
    }
    Some(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// A case reference: short, plain.
fn case_ref(raw: Option<&String>) -> Result<Option<String>, ()> {
    match raw.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        // Letters, digits and a little punctuation: nothing that formats or links in a
        // Slack message or a page.
        Some(s) if s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || " ._:/#-".contains(c)) => {
            Ok(Some(s.to_string()))
        }
        Some(_) => Err(()),
    }
}

/// Whether `policy` lets `sub` (with `groups`) declare an emergency on `route` for `path`:
/// the gateway action `custos:breakglass` on the object as the access core makes it (the path the upstream
/// receives). A path outside the route never.
pub fn may_declare(
    policy: &crate::policy::Policy,
    route: &crate::config::Route,
    path: &str,
    sub: &str,
    groups: &[String],
    mfa: bool,
) -> bool {
    let inside =
        route.path == "/" || path == route.path || path.starts_with(&format!("{}/", route.path.trim_end_matches('/')));
    let Ok(norm) = super::path::NormPath::parse(path.as_bytes()) else { return false };
    if !inside || norm.as_str() != path || path.starts_with("/.custos") {
        return false;
    }
    let obj = crate::access::object(route, &norm);
    let ask = crate::access::policy_request(route, sub, groups, &obj, crate::policy::actions::BREAKGLASS);
    policy.decide(&crate::policy::Request { mfa, ..ask }).allow
}

impl Gateway {
    fn bg_event(&self, session: &Session, ctx: &RequestCtx, kind: Kind) -> Event {
        let mut ev = self.access_event(session, ctx, kind);
        ev.upstream = None;
        ev.breakglass = Some(true);
        ev
    }

    async fn bg_denied(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        status: u16,
        reason: &str,
        msg: &str,
    ) -> Result<bool> {
        if let Some(a) = &self.audit {
            let mut ev = self.bg_event(session, ctx, Kind::BreakglassDenied);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(crate::audit::Reason::named(reason));
            ev.status = Some(status);
            a.append(ev);
        }
        page(session, status, "Emergency access refused", &format!("<p>{}</p>", esc(msg))).await
    }

    /// Signed in with MFA, else sent to sign in (or step up) and back: `Some` when the
    /// request was answered here.
    async fn signed_in_with_mfa(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        auth: &super::auth::Auth,
    ) -> Result<Option<bool>> {
        if self.authenticate(session, ctx).await? {
            return Ok(Some(true));
        }
        if ctx.mfa() != Some(true) {
            let max_age = auth.settings.oidc.mfa.step_up_max_age.unwrap_or(std::time::Duration::ZERO);
            return Box::pin(self.challenge(session, ctx, true, true, Some(max_age))).await.map(Some);
        }
        Ok(None)
    }

    /// The justification and case reference of a form; `None` when refused (answered).
    async fn statement(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        params: &HashMap<String, String>,
        max: usize,
    ) -> Result<Option<(String, Option<String>)>> {
        let Some(why) = params.get("justification").and_then(|j| bg::plain_text(j, max)) else {
            let msg = format!("Say why you need emergency access (1 to {max} characters).");
            self.bg_denied(session, ctx, 400, "justification", &msg).await?;
            return Ok(None);
        };
        let Ok(case) = case_ref(params.get("case_ref")) else {
            let msg = "A case reference is at most 64 letters, digits, spaces and . _ : / # -";
            self.bg_denied(session, ctx, 400, "case_ref", msg).await?;
            return Ok(None);
        };
        Ok(Some((why, case)))
    }

    /// Whether the policy lets the signed-in user declare an emergency on `route` for
    /// `path`.
    fn may_declare(&self, ctx: &RequestCtx, route: &crate::config::Route, path: &str) -> bool {
        let (Some(policy), Some(user)) = (&self.policy, ctx.user()) else { return false };
        may_declare(policy, route, path, &user.subject, &user.groups, ctx.mfa().unwrap_or(false))
    }

    /// `/.custos/breakglass`: the declaration form (GET) and the declaration (POST).
    pub(super) async fn breakglass_endpoint(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (Some(settings), Some(auth)) = (self.breakglass.clone(), self.auth.clone()) else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        // Signed in, with MFA: a browser without a session is sent to sign in and back.
        if let Some(answered) = self.signed_in_with_mfa(session, ctx, &auth).await? {
            return Ok(answered);
        }
        let post = session.req_header().method == http::Method::POST;
        let Some(params) = (if post { form(session).await } else { Some(query(session.req_header())) }) else {
            return self.bg_denied(session, ctx, 413, "form_too_large", "The form is too large.").await;
        };
        let route_name = params.get("route").cloned().unwrap_or_default();
        let Some(route) = self.router.by_name(&route_name).map(|r| r.route.clone()) else {
            return self.bg_denied(session, ctx, 404, "no_route", "There is no such route.").await;
        };
        ctx.route = self.router.by_name(&route_name).cloned();
        if ctx.user().is_some_and(|u| u.sealed) {
            let msg = "A sealed emergency session cannot declare another emergency.";
            return self.bg_denied(session, ctx, 403, "sealed_session", msg).await;
        }
        // A path inside the route (the page the user lands on, and the object the
        // declaration is checked for), never one of the gateway's own.
        let inside = |p: &str| {
            route.path == "/" || p == route.path || p.starts_with(&format!("{}/", route.path.trim_end_matches('/')))
        };
        let path = params
            .get("path")
            .filter(|p| p.starts_with('/') && !p.contains(['?', '#', '\\']) && !p.contains("//"))
            .and_then(|p| super::path::NormPath::parse(p.as_bytes()).ok())
            .map(|p| p.as_str().to_string())
            .filter(|p| inside(p) && !p.starts_with("/.custos"))
            .unwrap_or_else(|| route.path.clone());
        if !self.may_declare(ctx, &route, &path) {
            return self
                .bg_denied(session, ctx, 403, "policy", "Your account may not declare an emergency on this route.")
                .await;
        }
        let cookie = cookies::get(session.req_header(), &auth.settings.session.cookie_name).unwrap_or("").to_string();
        let csrf = bg::csrf_token(&cookie);
        // A record (the default) or, when the person says so, the whole route. A path that
        // is the route's own covers the route anyway.
        let whole = path == route.path || params.get("scope").is_some_and(|v| v == bg::WHOLE_ROUTE);
        if !post {
            let max_min = settings.max.as_secs().div_ceil(60);
            let scope = if path == route.path {
                format!("<input type=\"hidden\" name=\"scope\" value=\"{}\">", bg::WHOLE_ROUTE)
            } else {
                format!(
                    "<fieldset><legend>What do you need to open?</legend>\
                     <label><input type=\"radio\" name=\"scope\" value=\"path\" checked> This record only: <code>{p}</code></label><br>\
                     <label><input type=\"radio\" name=\"scope\" value=\"{w}\"> The whole route <code>{r}</code></label></fieldset>",
                    p = esc(&path),
                    w = bg::WHOLE_ROUTE,
                    r = esc(&route.name),
                )
            };
            let body = format!(
                "<p><strong>Emergency access is recorded, alerted to the security team at once, and reviewed.</strong> Use it only when a patient's care cannot wait for normal access.</p>\
                 <form method=\"post\" action=\"{PATH}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"route\" value=\"{r}\"><input type=\"hidden\" name=\"path\" value=\"{p}\">{scope}\
                 <p><label>Why do you need this access now? (required)<br><textarea name=\"justification\" required maxlength=\"{max}\" rows=\"5\" cols=\"60\"></textarea></label></p>\
                 <p><label>Case or ticket reference (optional) <input name=\"case_ref\" maxlength=\"64\"></label></p>\
                 <p><label>Minutes <input name=\"minutes\" type=\"number\" min=\"1\" max=\"{max_min}\" value=\"{d}\"></label></p>\
                 <p><button>Declare emergency and open {r}</button></p></form>",
                r = esc(&route.name),
                p = esc(&path),
                max = settings.justification_max,
                d = settings.default.as_secs().div_ceil(60).min(max_min),
            );
            return page(session, 200, "Emergency access", &body).await;
        }
        // The form: its token (bound to this session), and from this origin.
        if !params.get("csrf").is_some_and(|t| bg::same_token(t, &csrf)) || cookie.is_empty() {
            return self
                .bg_denied(session, ctx, 403, "csrf", "The form has expired; open the emergency link again.")
                .await;
        }
        if let Some(origin) = session.req_header().headers.get("origin").and_then(|o| o.to_str().ok()) {
            if origin != auth.settings.oidc.origin {
                return self.bg_denied(session, ctx, 403, "csrf", "The form was sent from another site.").await;
            }
        }
        let Some((why, case)) = self.statement(session, ctx, &params, settings.justification_max).await? else {
            return Ok(true);
        };
        let secs = params
            .get("minutes")
            .and_then(|m| m.trim().parse::<u64>().ok())
            .map_or(settings.default, |m| std::time::Duration::from_secs(m.clamp(1, 1 << 32).saturating_mul(60)))
            .min(settings.max);
        let store = Store(&auth.store);
        let (Some(user), Some(hash)) = (ctx.user().cloned(), ctx.session_hash().map(str::to_string)) else {
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        match store.count_today(&user.subject).await {
            Ok(n) if n > settings.max_per_day => {
                let msg = "You have declared the most emergencies allowed today. Call the security team.";
                return self.bg_denied(session, ctx, 429, "daily_limit", msg).await;
            }
            Ok(_) => {}
            Err(_) => return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await,
        }
        let now = now_secs();
        let grant = Grant {
            id: uuid::Uuid::new_v4().to_string(),
            route: route.name.clone(),
            expires: now + secs.as_secs(),
            sealed: false,
            scope: (!whole).then(|| path.clone()),
        };
        let record = Record {
            id: grant.id.clone(),
            subject: user.subject.clone(),
            route: route.name.clone(),
            kind: bg::GrantKind::Declared,
            started: now,
            expires: grant.expires,
            scope: grant.scope_name(),
            case_ref: case.clone(),
            justification_sha256: sha256_hex(why.as_bytes()),
            justification_len: why.chars().count(),
            justification: why,
            session: Some(hash.clone()),
            issued_by: None,
            review: None,
        };
        let mut s: UserSession = (*user).clone();
        let old = s.breakglass.replace(grant.clone()).filter(|g| g.expires > now);
        // Its end on the schedule before the grant is given: every end is recorded.
        let scheduled = bg::Scheduled::of(&grant, &user.subject, Some(&hash));
        if store.schedule_end(&scheduled).await.is_err()
            || store.put_record(&record, settings.retention).await.is_err()
            || auth.store.save(&hash, &s).await.is_err()
        {
            // Not given: nothing to end later (best effort; Redis is failing).
            store.unschedule(&grant.id).await;
            return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
        }
        if let Some(old) = &old {
            self.grant_ended(session, ctx, old, GrantEnd::Replaced);
        }
        bg::end_on_time(auth.store.clone(), self.audit.clone(), grant.id.clone(), grant.expires);
        self.started(session, ctx, &settings, &record, "declared", &user.subject).await;
        let location = path.clone();
        respond::write_full(session, 303, Bytes::from_static(b"303 See Other\n"), false, &[("location", location)])
            .await?;
        Ok(true)
    }

    /// Audits and alerts a grant's start.
    async fn started(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        settings: &Arc<bg::Settings>,
        r: &Record,
        how: &str,
        who: &str,
    ) {
        let text = settings.audit_justification.then(|| r.justification.clone());
        if let Some(a) = &self.audit {
            let mut ev = self.bg_event(session, ctx, Kind::BreakglassStarted);
            ev.actor.get_or_insert_with(|| Actor { subject: who.to_string(), groups: Vec::new() });
            ev.route = Some(r.route.clone());
            ev.grant = Some(r.id.clone());
            ev.scope = Some(r.scope.clone());
            ev.case_ref.clone_from(&r.case_ref);
            ev.justification_sha256 = Some(r.justification_sha256.clone());
            ev.justification_len = Some(r.justification_len);
            ev.justification.clone_from(&text);
            ev.reason = Some(crate::audit::Reason::named(how));
            ev.session.clone_from(&r.session);
            // Durable before the user is sent on, like an access decision.
            if let Err(e) = a.append_durable(ev).await {
                tracing::error!(error = %e, grant = %r.id, "ALERT: the start of a break-glass grant is not durable in the audit trail");
            }
        }
        tracing::warn!(user = who, route = %r.route, grant = %r.id, how, "break-glass emergency access started");
        let event = if how == "sealed_link" { AlertKind::LinkUsed } else { AlertKind::Started };
        let alert = AlertEvent {
            scope: Some(r.scope.clone()),
            when: rfc3339(r.started),
            grant: Some(r.id.clone()),
            case_ref: r.case_ref.clone(),
            expires: Some(r.expires),
            justification_sha256: Some(r.justification_sha256.clone()),
            justification_len: Some(r.justification_len),
            justification: text,
            ..AlertEvent::new(event, who, &r.route)
        };
        bg::alert(settings, alert, self.audit.clone());
    }

    /// `/.custos/breakglass/link?t=…`: a sealed link. GET shows the form (nothing is used
    /// up by a link scanner); POST with the justification (and the TOTP code when the link
    /// has one) uses it, once.
    pub(super) async fn breakglass_link_endpoint(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (Some(settings), Some(auth)) = (self.breakglass.clone(), self.auth.clone()) else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        let post = session.req_header().method == http::Method::POST;
        let Some(params) = (if post { form(session).await } else { Some(query(session.req_header())) }) else {
            return self.bg_denied(session, ctx, 413, "form_too_large", "The form is too large.").await;
        };
        let token = params.get("t").cloned().unwrap_or_default();
        let hash = sha256_hex(token.as_bytes());
        let store = Store(&auth.store);
        let link = match store.link(&hash).await {
            Ok(LinkState::Valid(l)) => l,
            Ok(LinkState::Used(used)) => {
                if let Some(a) = &self.audit {
                    let mut ev = self.bg_event(session, ctx, Kind::BreakglassDenied);
                    ev.reason = Some(crate::audit::Code::LinkUsed.into());
                    ev.decision = Some(Decision::Deny);
                    a.append(ev);
                }
                // Alerted once per link, and only for a real attempt (a POST), not for
                // a link scanner fetching the page.
                if post && store.first_reuse(&hash).await.unwrap_or(false) {
                    tracing::error!(user = %used.user, route = %used.route, "ALERT: a used sealed emergency link was presented again");
                    let alert = AlertEvent {
                        scope: Some(link_scope(&used)),
                        ..AlertEvent::new(AlertKind::LinkReused, &used.user, &used.route)
                    };
                    bg::alert(&settings, alert, self.audit.clone());
                }
                return page(
                    session,
                    410,
                    "Emergency link already used",
                    "<p>This link has been used. It works once. The security team has been alerted.</p>",
                )
                .await;
            }
            Ok(LinkState::SpentByCodes(_)) => {
                // Its spending was alerted; this is someone holding the link afterwards.
                let msg = "This emergency link was spent by failed codes: too many wrong authenticator codes were entered with it. The security team has been alerted. Ask the on-call administrator for a new one.";
                return self.bg_denied(session, ctx, 410, "link_spent_by_failed_codes", msg).await;
            }
            Ok(LinkState::Expired) => {
                return self
                    .bg_denied(
                        session,
                        ctx,
                        410,
                        "link_expired",
                        "This emergency link has expired. Ask the on-call administrator for a new one.",
                    )
                    .await
            }
            Ok(LinkState::Unknown) => {
                return self.bg_denied(session, ctx, 404, "link_unknown", "This is not a valid emergency link.").await
            }
            Err(_) => return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await,
        };
        let Some(route) = self.router.by_name(&link.route).cloned() else {
            return self.bg_denied(session, ctx, 404, "no_route", "The link's route no longer exists.").await;
        };
        ctx.route = Some(route.clone());
        if !post {
            let code = if link.totp.is_some() {
                "<p><label>Code from your authenticator <input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required></label></p>"
            } else {
                ""
            };
            let body = format!(
                "<p>Emergency access to <strong>{r}</strong> ({scope}) as <strong>{u}</strong>, once, until {end}. It is recorded, alerted and reviewed.</p>\
                 <form method=\"post\" action=\"{LINK_PATH}\"><input type=\"hidden\" name=\"t\" value=\"{t}\">{code}\
                 <p><label>Why do you need this access now? (required)<br><textarea name=\"justification\" required maxlength=\"{max}\" rows=\"5\" cols=\"60\"></textarea></label></p>\
                 <p><label>Case or ticket reference (optional) <input name=\"case_ref\" maxlength=\"64\"></label></p>\
                 <p><button>Open {r}</button></p></form>",
                r = esc(&route.name),
                scope = match link_scope(&link).as_str() {
                    bg::WHOLE_ROUTE => "the whole route".to_string(),
                    p => format!("the record <code>{}</code>", esc(p)),
                },
                end = rfc3339(link.expires),
                u = esc(&link.user),
                t = esc(&token),
                max = settings.justification_max,
            );
            return page(session, 200, "Sealed emergency access", &body).await;
        }
        if let Some(secret) = &link.totp {
            // Every try is counted before the code is looked at: the fifth wrong one
            // spends the link (parallel guesses cannot get past the count), loudly.
            let tries = match store.code_try(&hash).await {
                Ok(n) => n,
                Err(_) => return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await,
            };
            let right = tries <= CODE_TRIES && params.get("code").is_some_and(|c| bg::totp_ok(secret, c));
            if !right && tries >= CODE_TRIES {
                match store.spend_link(&hash).await {
                    Ok(true) => {
                        tracing::error!(user = %link.user, route = %link.route, "ALERT: a sealed emergency link was spent by wrong codes");
                        let alert = AlertEvent {
                            scope: Some(link_scope(&link)),
                            expires: Some(link.expires),
                            ..AlertEvent::new(AlertKind::LinkSpent, &link.user, &link.route)
                        };
                        bg::alert(&settings, alert, self.audit.clone());
                    }
                    // Spent or used meanwhile by another try: that one said so.
                    Ok(false) => {}
                    Err(_) => return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await,
                }
                let msg = "Too many wrong codes: this link is spent. The security team has been alerted.";
                return self.bg_denied(session, ctx, 403, "totp_tries", msg).await;
            }
            if !right {
                return self.bg_denied(session, ctx, 403, "totp", "The code is not right.").await;
            }
        }
        let Some((why, case)) = self.statement(session, ctx, &params, settings.justification_max).await? else {
            return Ok(true);
        };
        match store.consume_link(&hash).await {
            Ok(true) => {}
            Ok(false) => {
                return page(
                    session,
                    410,
                    "Emergency link already used",
                    "<p>This link has been used. It works once.</p>",
                )
                .await
            }
            Err(_) => return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await,
        }
        let now = now_secs();
        // The end printed at issue is the end of access, however late the link is used
        // (and never past the longest grant from now, should the maximum have dropped).
        let grant = Grant {
            id: uuid::Uuid::new_v4().to_string(),
            route: link.route.clone(),
            expires: link.expires.min(now + settings.max.as_secs()),
            sealed: true,
            scope: (link_scope(&link) != bg::WHOLE_ROUTE).then(|| link_scope(&link)),
        };
        // Roles come from the policy's `g` lines only: no groups without the provider.
        let s = UserSession {
            subject: link.user.clone(),
            email: None,
            name: None,
            groups: Vec::new(),
            amr: if link.totp.is_some() { vec!["mfa".into()] } else { vec!["breakglass_link".into()] },
            acr: None,
            auth_time: Some(now),
            created: now,
            last_seen: now,
            client: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
            sid: None,
            idp_sub: None,
            validated: now,
            breakglass: Some(grant.clone()),
            sealed: true,
        };
        let id = match auth.store.create(s, None, None).await {
            Ok(id) => id,
            Err(_) => return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await,
        };
        if store.schedule_end(&bg::Scheduled::of(&grant, &link.user, Some(&id.hash()))).await.is_err() {
            // Not given unless its end is scheduled.
            store.unschedule(&grant.id).await;
            let _ = auth.store.end_by_hash(&id.hash(), None).await;
            return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
        }
        let record = Record {
            id: grant.id.clone(),
            subject: link.user.clone(),
            route: link.route.clone(),
            kind: bg::GrantKind::Sealed,
            started: now,
            expires: grant.expires,
            scope: grant.scope_name(),
            case_ref: case,
            justification_sha256: sha256_hex(why.as_bytes()),
            justification_len: why.chars().count(),
            justification: why,
            session: Some(id.hash()),
            issued_by: Some(link.issued_by.clone()),
            review: None,
        };
        if store.put_record(&record, settings.retention).await.is_err() {
            store.unschedule(&grant.id).await;
            let _ = auth.store.end_by_hash(&id.hash(), None).await;
            return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
        }
        bg::end_on_time(auth.store.clone(), self.audit.clone(), grant.id.clone(), grant.expires);
        if let Some(a) = &self.audit {
            let mut ev = self.bg_event(session, ctx, Kind::BreakglassLinkUsed);
            ev.actor = Some(Actor { subject: link.user.clone(), groups: Vec::new() });
            ev.grant = Some(grant.id.clone());
            ev.target = Some(format!("admin:{}", link.issued_by));
            ev.session = Some(id.hash());
            ev.scope = Some(grant.scope_name());
            a.append(ev);
        }
        self.started(session, ctx, &settings, &record, "sealed_link", &link.user).await;
        let secure = self.secure(session);
        let cookie = cookies::set(&auth.settings.session.cookie_name, id.cookie_value(), None, secure);
        let extra = vec![("location", link.path.clone().unwrap_or_else(|| route.path.clone())), ("set-cookie", cookie)];
        respond::write_full(session, 303, Bytes::from_static(b"303 See Other\n"), false, &extra).await?;
        Ok(true)
    }

    /// `/.custos/breakglass/reviews`: the review queue for auditors (signed in with MFA,
    /// and the policy allows them `custos:review` on `custos:/breakglass/reviews`). GET lists
    /// every kept emergency with its justification; POST records a verdict.
    pub(super) async fn breakglass_reviews_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let (Some(settings), Some(auth), Some(policy)) =
            (self.breakglass.clone(), self.auth.clone(), self.policy.clone())
        else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        if let Some(answered) = self.signed_in_with_mfa(session, ctx, &auth).await? {
            return Ok(answered);
        }
        let Some(user) = ctx.user().cloned() else { return self.refuse(session, ctx, Refusal::Internal).await };
        // A sealed link's session is for its emergency only: it neither reads the
        // justifications nor judges them, whatever roles its user holds.
        if user.sealed {
            let msg = "A sealed emergency session cannot review emergency access.";
            return self.bg_denied(session, ctx, 403, "sealed_session", msg).await;
        }
        let may = policy
            .decide(&crate::policy::Request {
                sub: &user.subject,
                groups: &user.groups,
                dom: &settings.review_domain,
                obj: REVIEWS_OBJECT,
                act: crate::policy::actions::REVIEW,
                mfa: true,
                breakglass: false,
                client: "",
                hour: (now_secs() / 3600 % 24) as i64,
                route: "",
            })
            .allow;
        if !may {
            return self.bg_denied(session, ctx, 403, "not_auditor", "Only auditors review emergency access.").await;
        }
        let cookie = cookies::get(session.req_header(), &auth.settings.session.cookie_name).unwrap_or("").to_string();
        let csrf = bg::csrf_token(&cookie);
        let store = Store(&auth.store);
        if session.req_header().method == http::Method::POST {
            let Some(f) = form(session).await else {
                return self.bg_denied(session, ctx, 413, "form_too_large", "The form is too large.").await;
            };
            let origin_ok = session
                .req_header()
                .headers
                .get("origin")
                .and_then(|o| o.to_str().ok())
                .is_none_or(|o| o == auth.settings.oidc.origin);
            if cookie.is_empty() || !origin_ok || !f.get("csrf").is_some_and(|t| bg::same_token(t, &csrf)) {
                return self
                    .bg_denied(session, ctx, 403, "csrf", "The form has expired; open the review page again.")
                    .await;
            }
            let id = f.get("id").map(String::as_str).unwrap_or("");
            let verdict = f.get("verdict").map(String::as_str).unwrap_or("");
            let note = f.get("note").map(String::as_str).unwrap_or("");
            return match bg::review(&store, id, &user.subject, verdict, note).await {
                Ok(r) => {
                    if let Some(a) = &self.audit {
                        let mut ev = self.bg_event(session, ctx, Kind::BreakglassReviewed);
                        ev.grant = Some(r.id.clone());
                        ev.target = Some(r.subject.clone());
                        ev.route = Some(r.route.clone());
                        ev.reason = Some(crate::audit::Reason::named(&verdict.to_string()));
                        a.append(ev);
                    }
                    let extra = [("location", REVIEWS_PATH.to_string())];
                    respond::write_full(session, 303, Bytes::from_static(b"303 See Other\n"), false, &extra).await?;
                    Ok(true)
                }
                Err(e) => {
                    let reason = if e == bg::ReviewError::OwnUse { "self_review" } else { "review_refused" };
                    self.bg_denied(session, ctx, e.status(), reason, e.message()).await
                }
            };
        }
        let Ok(mut list) = store.records().await else {
            return self.refuse(session, ctx, Refusal::SessionStoreUnavailable).await;
        };
        if let Some(a) = &self.audit {
            a.append(self.bg_event(session, ctx, Kind::BreakglassReviewsRead));
        }
        list.reverse();
        let mut body = String::from("<p>Every emergency access Custos has kept, newest first. The justification may hold PHI: this page is for auditors, and reading it is recorded.</p>");
        for r in &list {
            body.push_str(&format!(
                "<section><h2>{route}: {who}</h2><p>{kind}, {scope}, {start} to {end}, grant <code>{id}</code>{case}{by}</p><blockquote>{why}</blockquote>",
                route = esc(&r.route),
                scope = if r.scope == bg::WHOLE_ROUTE {
                    "the whole route".to_string()
                } else {
                    format!("the record <code>{}</code>", esc(&r.scope))
                },
                who = esc(&r.subject),
                kind = esc(r.kind.as_str()),
                start = rfc3339(r.started),
                end = rfc3339(r.expires),
                id = esc(&r.id),
                case = r.case_ref.as_ref().map(|c| format!(", case {}", esc(c))).unwrap_or_default(),
                by = r.issued_by.as_ref().map(|b| format!(", link issued by {}", esc(b))).unwrap_or_default(),
                why = esc(&r.justification),
            ));
            match &r.review {
                Some(v) => body.push_str(&format!(
                    "<p>Reviewed: <strong>{}</strong> by {} at {}: {}</p></section>",
                    esc(v.verdict.as_str()),
                    esc(&v.reviewer),
                    rfc3339(v.at),
                    esc(&v.note)
                )),
                None => body.push_str(&format!(
                    "<form method=\"post\" action=\"{REVIEWS_PATH}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
                     <select name=\"verdict\"><option>justified</option><option>unjustified</option></select> \
                     <input name=\"note\" required maxlength=\"{max}\" placeholder=\"note\"> <button>Record review</button></form></section>",
                    id = esc(&r.id),
                    max = bg::NOTE_MAX,
                )),
            }
        }
        page(session, 200, "Emergency access reviews", &body).await
    }

    /// Records the end of `g` for `why`, unless another end of it was recorded first
    /// (on any gateway).
    pub(super) fn grant_ended(&self, session: &Session, ctx: &RequestCtx, g: &Grant, why: GrantEnd) {
        self.access().grant_ended(self.access_event(session, ctx, Kind::BreakglassEnded), g, why);
    }
}

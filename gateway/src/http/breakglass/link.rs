//! `/.custos/breakglass/link?t=…`: a sealed link, for when the identity provider is down.
//! GET shows the form (nothing is used up by a link scanner); POST with the justification
//! (and the TOTP code when the link has one) uses it, once.

use super::page;
use super::{fields, link_scope, statement, BreakglassDenial as D};
use crate::access::breakglass::{self as bg, AlertEvent, AlertKind, Grant, LinkState, Record, Store};
use crate::audit::{Actor, Code, Decision, Kind};
use crate::http::endpoints::{Denial, Reply};
use crate::http::respond::Refusal;
use crate::http::{cookies, Gateway, RequestCtx};
use crate::session::{now_secs, sha256_hex, Session as UserSession};
use pingora::proxy::Session;

/// Wrong TOTP codes that spend a sealed link.
const CODE_TRIES: u64 = 5;

impl Gateway {
    pub(in crate::http) async fn breakglass_link_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let (settings, auth) = self.breakglass_configured()?;
        let (post, params) = fields(session).await?;
        let token = params.get("t").cloned().unwrap_or_default();
        let hash = sha256_hex(token.as_bytes());
        let store = Store(&auth.store);
        let link = match store.link(&hash).await {
            Ok(LinkState::Valid(l)) => l,
            Ok(LinkState::Used(used)) => {
                if let Some(a) = &self.audit {
                    let mut ev = self.bg_event(session, ctx, Kind::BreakglassDenied);
                    ev.reason = Some(Code::LinkUsed.into());
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
                return Ok(page::link_used(true));
            }
            Ok(LinkState::SpentByCodes(_)) => {
                // Its spending was alerted; this is someone holding the link afterwards.
                return Err(D::SpentByCodes.into());
            }
            Ok(LinkState::Expired) => return Err(D::LinkExpired.into()),
            Ok(LinkState::Unknown) => return Err(D::LinkUnknown.into()),
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        };
        let Some(route) = self.router.by_name(&link.route).cloned() else {
            return Err(D::LinkRouteGone.into());
        };
        ctx.route = Some(route.clone());
        if !post {
            return Ok(page::link_form(&link, &route.name, &token, settings.justification_max));
        }
        if let Some(secret) = &link.totp {
            // Every try is counted before the code is looked at: the fifth wrong one
            // spends the link (parallel guesses cannot get past the count), loudly.
            let tries = match store.code_try(&hash).await {
                Ok(n) => n,
                Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
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
                    Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
                }
                return Err(D::CodeTriesSpent.into());
            }
            if !right {
                return Err(D::WrongCode.into());
            }
        }
        let (why, case) = statement(&params, settings.justification_max)?;
        match store.consume_link(&hash).await {
            Ok(true) => {}
            Ok(false) => return Ok(page::link_used(false)),
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
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
            db: None,
            lifetime: None,
        };
        let id = match auth.store.create(s, None, None).await {
            Ok(id) => id,
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        };
        if store.schedule_end(&bg::Scheduled::of(&grant, &link.user, Some(&id.hash()))).await.is_err() {
            // Not given unless its end is scheduled.
            store.unschedule(&grant.id).await;
            let _ = auth.store.end_by_hash(&id.hash(), None).await;
            return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
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
            return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
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
        Ok(Reply::see_other(link.path.clone().unwrap_or_else(|| route.path.clone())).cookie(cookie))
    }
}

//! A grant's start (audited durably and alerted), the grant a request runs under, and a
//! grant's end, recorded once.

use crate::access::breakglass::{self as bg, rfc3339, AlertEvent, AlertKind, Grant, GrantEnd, Record};
use crate::audit::{Actor, Kind};
use crate::http::{Gateway, RequestCtx};
use crate::session::{now_secs, Session as UserSession};
use pingora::proxy::Session;
use std::sync::Arc;

impl Gateway {
    /// Audits and alerts a grant's start.
    pub(super) async fn started(
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

    /// The grant a request runs under: the session's, for this route, while it lasts. An
    /// ended one is taken off the session and its end audited (once).
    pub(in crate::http) async fn active_grant(&self, session: &Session, ctx: &RequestCtx) -> Option<Grant> {
        let (Some(user), Some(route), Some(auth)) = (&ctx.user, &ctx.route, &self.auth) else { return None };
        let g = user.breakglass.as_ref()?;
        if g.expires > now_secs() {
            // Only what was declared: another record on the route is decided as usual.
            let path = ctx.path.as_ref()?;
            return g.covers(&route.name, path.as_str()).then(|| g.clone());
        }
        if let Some(hash) = &ctx.session_hash {
            if user.sealed {
                // A sealed link's session ends with its grant (checked again here: the
                // grant may have run out since the session was read).
                let _ = auth.store.end_by_hash(hash, None).await;
            } else {
                let mut s: UserSession = (**user).clone();
                s.breakglass = None;
                let _ = auth.store.save(hash, &s).await;
            }
            self.grant_ended(session, ctx, g, GrantEnd::Expired);
        }
        None
    }

    /// Records the end of `g` for `why`, unless another end of it was recorded first
    /// (on any gateway).
    pub(in crate::http) fn grant_ended(&self, session: &Session, ctx: &RequestCtx, g: &Grant, why: GrantEnd) {
        let mut ev = self.bg_event(session, ctx, Kind::BreakglassEnded);
        ev.route = Some(g.route.clone());
        ev.grant = Some(g.id.clone());
        ev.scope = Some(g.scope_name());
        bg::record_end(self.auth.as_ref().map(|a| a.store.clone()), self.audit.clone(), ev, why);
    }
}

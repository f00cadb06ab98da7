//! A grant's start (audited durably and alerted), and a grant's end, recorded once (by
//! the access core, which also looks up the grant a request runs under).

use crate::access::breakglass::{self as bg, rfc3339, AlertEvent, AlertKind, Grant, GrantEnd, Record};
use crate::audit::{Actor, Kind};
use crate::http::{Gateway, RequestCtx};
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

    /// Records the end of `g` for `why`, unless another end of it was recorded first
    /// (on any gateway).
    pub(in crate::http) fn grant_ended(&self, session: &Session, ctx: &RequestCtx, g: &Grant, why: GrantEnd) {
        self.access().grant_ended(self.access_event(session, ctx, Kind::BreakglassEnded), g, why);
    }
}

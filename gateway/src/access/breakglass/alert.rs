//! Queueing break-glass alerts. What an alert says ([`AlertEvent`]) and how a receiver
//! gets it (the body, the signature, retries) are the audit trail's
//! ([`crate::audit::sinks::alert`]); here, the alert is put on the spool.

use super::{AlertEvent, Settings};
use crate::audit::{Audit, Event, Kind};
use std::sync::Arc;

/// Queues `e` for every configured receiver, durably: a `breakglass.alert` record on
/// the audit spool (written with the next group commit), which each receiver's alert
/// sink ([`crate::audit::sinks::alert`]) delivers, signed, retried until taken, across
/// restarts and receiver outages.
pub fn alert(settings: &Arc<Settings>, e: AlertEvent, audit: Option<Audit>) {
    if settings.alerts.is_empty() {
        return;
    }
    let Some(audit) = audit else {
        // Config refuses [breakglass] without the audit trail; never silently.
        tracing::error!(grant = ?e.grant, "ALERT: a break-glass alert cannot be queued: the audit trail is off");
        return;
    };
    let mut ev = Event::new(Kind::BreakglassAlert);
    ev.target = Some(e.who.clone());
    ev.route = Some(e.route.clone());
    ev.grant = e.grant.clone();
    ev.scope = e.scope.clone();
    ev.case_ref = e.case_ref.clone();
    ev.reason = Some(e.event.code().into());
    ev.alert = serde_json::to_value(&e).ok();
    audit.append(ev);
}

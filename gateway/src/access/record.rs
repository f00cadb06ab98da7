//! The records of a decision: the deny record, the allow record made durable before
//! anything is served (with `audit.on_failure`), and the completion record. Who asked
//! is stamped on the front end's metadata here, in one place.

use super::{auth::actor_of, Access, Denial, Permit, Principal, Request, Verdict};
use crate::audit::{Decision, Event, Kind, Phase, Reason};
use crate::metrics;
use std::time::Duration;

/// Who asked and the grant they ran under, on a record.
pub(super) fn stamp(ev: &mut Event, p: Option<&Principal>, grant: Option<&str>) {
    if let Some(p) = p {
        ev.actor = Some(actor_of(&p.user));
        ev.session = p.session_hash().map(str::to_string);
        ev.mfa = Some(p.mfa);
    }
    if let Some(g) = grant {
        ev.breakglass = Some(true);
        ev.grant = Some(g.to_string());
    }
}

/// How a permitted request ended, for its completion record.
#[derive(Debug, Clone)]
pub struct Completion {
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    /// Why it did not complete normally (a refusal after the decision, a tunnel's end).
    pub reason: Option<Reason>,
    /// Since the request's start: the durable decision record, and the upstream until
    /// its response header.
    pub audit_phase: Option<(Duration, Duration)>,
    pub upstream_phase: Option<(Duration, Duration)>,
}

impl Access<'_> {
    /// A record of `kind` about the request, stamped with who asked.
    pub fn event(meta: &dyn super::Meta, kind: Kind, p: Option<&Principal>, grant: Option<&str>) -> Event {
        let mut ev = meta.event(kind);
        stamp(&mut ev, p, grant);
        ev
    }

    /// Records `d` (who asked: `p`, or the one the denial carries) and counts it; a
    /// sign-in to start and an audit failure are the front end's to answer and record.
    pub(super) fn deny(&self, req: &Request<'_>, d: Denial, p: Option<&Principal>, grant: Option<&str>) -> Denial {
        if matches!(d, Denial::SignIn(_) | Denial::AuditUnavailable) {
            return d;
        }
        if let Some(audit) = self.audit {
            let mut ev = Self::event(req.meta, Kind::AccessDecision, p.or(d.principal()), grant);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(d.reason());
            if let Denial::Policy { rule } = &d {
                ev.rule = Some(rule.as_deref().unwrap_or("default deny").to_string());
            }
            ev.status = Some((req.status)(&d));
            audit.append_refusal(ev);
        }
        metrics::DENIED.inc();
        d
    }

    /// Records the allow decision before anything is forwarded: no access without a
    /// record. [`Denial::AuditUnavailable`] when it cannot be made durable and
    /// `audit.on_failure = deny`.
    pub(super) async fn allow(
        &self,
        req: &Request<'_>,
        principal: Option<Principal>,
        verdict: Verdict,
    ) -> Result<Permit, Denial> {
        metrics::ALLOWED.inc();
        let mut permit = Permit { principal, verdict, recorded: false, audit_phase: None };
        let Some(audit) = self.audit else {
            return Ok(permit);
        };
        let mut ev =
            Self::event(req.meta, Kind::AccessDecision, permit.principal.as_ref(), permit.verdict.grant.as_deref());
        ev.decision = Some(Decision::Allow);
        // The policy rule that allowed it; without [policy], the matched route.
        ev.rule = permit
            .verdict
            .rule
            .as_deref()
            .map(str::to_string)
            .or_else(|| req.route.map(|r| format!("route:{}", r.name)));
        let began = req.start.elapsed();
        let result = audit.append_durable(ev).await;
        permit.audit_phase = Some((began, req.start.elapsed() - began));
        match result {
            Ok(_) => {
                permit.recorded = true;
                Ok(permit)
            }
            Err(e) => match audit.on_failure {
                crate::audit::OnFailure::Deny => {
                    tracing::error!(error = %e, "audit record not durable; refusing access");
                    Err(Denial::AuditUnavailable)
                }
                crate::audit::OnFailure::Allow => {
                    tracing::error!(error = %e, "ALERT: audit record not durable; serving anyway (audit.on_failure = allow)");
                    Ok(permit)
                }
            },
        }
    }

    /// Appends the completion record of a permitted request whose decision record is
    /// durable.
    pub fn complete(&self, meta: &dyn super::Meta, permit: (Option<&Principal>, &Verdict), done: Completion) {
        let Some(audit) = self.audit else { return };
        let mut ev = Self::event(meta, Kind::AccessCompleted, permit.0, permit.1.grant.as_deref());
        ev.status = Some(done.status);
        ev.bytes_in = Some(done.bytes_in);
        ev.bytes_out = Some(done.bytes_out);
        ev.duration_ms = Some(done.duration.as_secs_f64() * 1000.0);
        ev.reason = done.reason;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        if let Some((s, d)) = done.audit_phase {
            ev.phases.push(Phase { name: "audit".into(), start_ms: ms(s), duration_ms: ms(d) });
        }
        if let Some((s, d)) = done.upstream_phase {
            ev.phases.push(Phase { name: "upstream".into(), start_ms: ms(s), duration_ms: ms(d) });
        }
        audit.append(ev);
    }
}

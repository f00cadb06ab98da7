//! The records of a decision: the deny record, the allow record made durable before
//! anything is served (with `audit.on_failure`), and the completion record. Who asked
//! is stamped on the front end's metadata here, in one place.

use super::{auth::actor_of, Access, Denial, Permit, Principal, Request, Verdict};
use crate::audit::{Decision, Event, Kind, Phase, Reason};
use crate::config::Database;
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
    /// The HTTP status (`None` for a protocol without them).
    pub status: Option<u16>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    /// Why it did not complete normally (a refusal after the decision, a tunnel's end).
    pub reason: Option<Reason>,
    /// Since the request's start: the durable decision record, and the upstream until
    /// its response header.
    pub audit_phase: Option<(Duration, Duration)>,
    pub upstream_phase: Option<(Duration, Duration)>,
    /// A database statement's rows returned or affected, and its SQLSTATE.
    pub rows: Option<u64>,
    pub sqlstate: Option<String>,
}

impl Access<'_> {
    /// A record of `kind` about the request, stamped with who asked.
    pub fn event(meta: &dyn super::Meta, kind: Kind, p: Option<&Principal>, grant: Option<&str>) -> Event {
        let mut ev = meta.event(kind);
        stamp(&mut ev, p, grant);
        ev
    }

    /// Records a front end's own refusal of a request (a rule of its protocol: a
    /// statement that does not parse, a plaintext connection), with who asked when known,
    /// and counts it.
    pub fn refused(&self, meta: &dyn super::Meta, p: Option<&Principal>, reason: Reason) {
        if let Some(audit) = self.audit {
            let mut ev = Self::event(meta, Kind::AccessDecision, p, None);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(reason);
            audit.append_refusal(ev);
        }
        metrics::DENIED.inc();
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
            let status = (req.status)(&d);
            ev.status = (status != 0).then_some(status);
            if let Some(db) = req.database {
                ev.database = Some(db.name.clone());
            }
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
        let db_role = match req.database {
            Some(db) if req.held.is_none() => match self.pick_role(db, req.role, principal.as_ref()) {
                Ok(i) => Some(i),
                Err(d) => return Err(self.deny(req, d, principal.as_ref(), None)),
            },
            _ => None,
        };
        let mut permit = Permit { principal, verdict, recorded: false, audit_phase: None, db_role };
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
            .or_else(|| req.route.map(|r| format!("route:{}", r.name)))
            .or_else(|| req.database.map(|d| format!("database:{}", d.name)));
        if let Some(db) = req.database {
            ev.database = Some(db.name.clone());
            ev.db_role = permit.db_role.and_then(|i| db.roles.get(i)).map(|r| r.role.clone());
        }
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

    /// The database role a connection runs as: the one asked for, if the person holds
    /// it; else the first of the database's roles (least privileged first) they hold.
    /// Who holds a role is the policy's role graph; without a policy, only the first
    /// role is anyone's.
    fn pick_role(&self, db: &Database, asked: Option<&str>, p: Option<&Principal>) -> Result<usize, Denial> {
        let holds = |role: &str| match (self.policy, p) {
            (Some(policy), Some(p)) => policy.holds_role(&p.user.subject, &p.user.groups, role, &db.domain),
            (None, _) => db.roles.first().is_some_and(|r| r.role == role),
            (Some(_), None) => false,
        };
        match asked {
            Some(name) => db
                .roles
                .iter()
                .position(|r| r.role == name)
                .filter(|&i| holds(&db.roles[i].role))
                .ok_or(Denial::RoleNotHeld),
            None => db.roles.iter().position(|r| holds(&r.role)).ok_or(Denial::NoDatabaseRole),
        }
    }

    /// Appends the completion record of a permitted request whose decision record is
    /// durable.
    pub fn complete(&self, meta: &dyn super::Meta, permit: (Option<&Principal>, &Verdict), done: Completion) {
        let Some(audit) = self.audit else { return };
        let mut ev = Self::event(meta, Kind::AccessCompleted, permit.0, permit.1.grant.as_deref());
        ev.status = done.status;
        ev.rows = done.rows;
        ev.sqlstate = done.sqlstate;
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

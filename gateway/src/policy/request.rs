//! Deciding one request: the request tuple, the decision with the rule that made it, and
//! `PolicySet::decide*` (the fast evaluator where it covers the model, casbin otherwise;
//! gateway actions by their own policy; IdP groups tried as `group:X` and as roles).

use super::*;
use casbin::rhai::Dynamic;
use casbin::CoreApi;

/// Why an engine could not decide a request (the request is then denied).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("a request value the policy cannot match")]
    Unmatchable,
    #[error("the fast evaluator does not cover this model: {0}")]
    NotCovered(String),
    #[error("{0}")]
    Casbin(#[from] casbin::Error),
    #[error("casbin panicked")]
    Panicked,
}

/// What a request is, for the policy.
pub struct Request<'a> {
    pub sub: &'a str,
    pub groups: &'a [String],
    pub dom: &'a str,
    pub obj: &'a str,
    pub act: &'a str,
    pub mfa: bool,
    pub breakglass: bool,
    pub client: &'a str,
    pub hour: i64,
    pub route: &'a str,
}

/// The decision, and the rule that made it (casbin's explain), as `p, a, b, c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub rule: Option<Arc<str>>,
    /// The identity the deciding rule applied to.
    pub via: Option<Via>,
}

/// Which of a request's identities a rule applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Subject,
    /// The request's `groups[i]`.
    Group(usize),
}

impl PolicySet {
    fn args(&self, r: &Request<'_>, sub: &str) -> Vec<Dynamic> {
        self.fields
            .iter()
            .map(|f| match f {
                Field::Sub => Dynamic::from(sub.to_string()),
                Field::Dom => Dynamic::from(r.dom.to_string()),
                Field::Obj => Dynamic::from(r.obj.to_string()),
                Field::Act => Dynamic::from(r.act.to_string()),
                Field::Mfa => Dynamic::from(r.mfa),
                Field::Breakglass => Dynamic::from(r.breakglass),
                Field::Client => Dynamic::from(r.client.to_string()),
                // rhai's own integer type (casbin builds it with i32): an i64 would be a
                // foreign value that `r.hour >= 8` never matches.
                Field::Hour => Dynamic::from(r.hour as casbin::rhai::INT),
                Field::Route => Dynamic::from(r.route.to_string()),
            })
            .collect()
    }

    pub(super) fn enforce_one(&self, r: &Request<'_>, sub: &str) -> Result<(bool, Vec<Vec<String>>), EvalError> {
        Ok(self.enforcer.enforce_ex(self.args(r, sub))?)
    }

    /// The engine that decides requests.
    pub fn engine(&self) -> Engine {
        if self.fast.is_some() {
            Engine::Fast
        } else {
            Engine::Casbin
        }
    }

    /// One identity through one engine: the decision and the rule that made it, `rule`
    /// being `Some` on a deny only when a deny rule matched.
    fn outcome(&self, engine: Engine, r: &Request<'_>, who: &str) -> Result<fast::Outcome, EvalError> {
        match (engine, &self.fast) {
            (Engine::Fast, Some(f)) => {
                let mut vals = [fast::Val::B(false); MAX_FIELDS];
                for (v, field) in vals.iter_mut().zip(&self.fields) {
                    *v = match field {
                        Field::Sub => fast::Val::S(who),
                        Field::Dom => fast::Val::S(r.dom),
                        Field::Obj => fast::Val::S(r.obj),
                        Field::Act => fast::Val::S(r.act),
                        Field::Mfa => fast::Val::B(r.mfa),
                        Field::Breakglass => fast::Val::B(r.breakglass),
                        Field::Client => fast::Val::S(r.client),
                        Field::Hour => fast::Val::I(r.hour),
                        Field::Route => fast::Val::S(r.route),
                    };
                }
                f.enforce(&vals[..self.fields.len()]).map_err(|_| EvalError::Unmatchable)
            }
            (Engine::Fast, None) => Err(EvalError::NotCovered(self.fallback.as_deref().unwrap_or("?").to_string())),
            (Engine::Casbin, _) => {
                let (allow, rules) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.enforce_one(r, who)))
                        .unwrap_or_else(|_| Err(EvalError::Panicked))?;
                // Explain lists the allows that matched before the deny that stopped the
                // evaluation, last; with priority, the one deciding rule.
                let rule = if allow { rules.first() } else { rules.last() };
                Ok(fast::Outcome { allow, rule: rule.map(|p| Arc::from(fast::rule_text(p))) })
            }
        }
    }

    /// Decides `r`: the subject, then each of its groups as `group:<name>`. An explicit
    /// deny for any of them wins; otherwise any allow allows; otherwise deny.
    pub fn decide(&self, r: &Request<'_>) -> Decision {
        self.decide_as(r, &Default::default())
    }

    /// [`PolicySet::decide`] with IdP groups mapped to roles by `group_roles` (the rest
    /// are `group:<name>`).
    pub fn decide_as(&self, r: &Request<'_>, group_roles: &std::collections::BTreeMap<String, String>) -> Decision {
        match self.part(r.act) {
            Some(part) => part.decide_here(part.engine(), r, group_roles),
            None => Decision { allow: false, rule: None, via: None },
        }
    }

    /// Whether `sub` or one of its groups (as [`PolicySet::decide_as`] names them) holds
    /// `role` in `dom`. A user named like a role holds nothing.
    pub fn holds_role(
        &self,
        sub: &str,
        groups: &[String],
        role: &str,
        dom: &str,
        group_roles: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        if sub.starts_with(GROUP_PREFIX) || sub == BREAKGLASS_SUBJECT || self.roles.contains(sub) {
            return false;
        }
        let rm = self.enforcer.get_role_manager();
        let rm = rm.read();
        let linked = |who: &str| who == role || rm.has_link(who, role, Some(dom)) || rm.has_link(who, role, None);
        linked(sub)
            || groups.iter().any(|g| match group_roles.get(g) {
                Some(r) => linked(r),
                None => linked(&format!("{GROUP_PREFIX}{g}")),
            })
    }

    /// The part of the policy that decides `act`: itself for a request's method, the
    /// action's own part for a gateway action (`None`, denied, when no rule names it).
    fn part(&self, act: &str) -> Option<&PolicySet> {
        if !actions::is_gateway_action(act) {
            return Some(self);
        }
        self.actions.get(act)
    }

    /// [`PolicySet::decide_as`] through a chosen engine (`policy test --engine`, the
    /// differential tests). The fast engine on a model it does not cover denies.
    pub fn decide_with(
        &self,
        engine: Engine,
        r: &Request<'_>,
        group_roles: &std::collections::BTreeMap<String, String>,
    ) -> Decision {
        match self.part(r.act) {
            Some(part) => part.decide_here(engine, r, group_roles),
            None => Decision { allow: false, rule: None, via: None },
        }
    }

    /// [`PolicySet::decide_with`] within this part of the policy.
    fn decide_here(
        &self,
        engine: Engine,
        r: &Request<'_>,
        group_roles: &std::collections::BTreeMap<String, String>,
    ) -> Decision {
        // A user whose name is a role's (or looks like a group identity) would hold it.
        if r.sub.starts_with(GROUP_PREFIX)
            || r.sub == BREAKGLASS_SUBJECT
            || self.roles.contains(r.sub)
            || group_roles.values().any(|v| v == r.sub)
        {
            return Decision { allow: false, rule: Some("subject is a role name".into()), via: None };
        }
        let mut allowed: Option<Decision> = None;
        // `group:<name>` spelled in a stack buffer: no allocation per request.
        let mut buf = [0u8; 256];
        for i in 0..=r.groups.len() {
            let (via, spelled);
            let who: &str = if i == 0 {
                via = Via::Subject;
                r.sub
            } else {
                via = Via::Group(i - 1);
                let g = &r.groups[i - 1];
                match group_roles.get(g) {
                    Some(role) => role,
                    None if GROUP_PREFIX.len() + g.len() <= buf.len() => {
                        let n = GROUP_PREFIX.len() + g.len();
                        buf[..GROUP_PREFIX.len()].copy_from_slice(GROUP_PREFIX.as_bytes());
                        buf[GROUP_PREFIX.len()..n].copy_from_slice(g.as_bytes());
                        std::str::from_utf8(&buf[..n]).unwrap_or_default()
                    }
                    None => {
                        spelled = format!("{GROUP_PREFIX}{g}");
                        &spelled
                    }
                }
            };
            match self.outcome(engine, r, who) {
                Ok(o) if o.allow => {
                    if allowed.is_none() {
                        allowed = Some(Decision { allow: true, rule: o.rule, via: Some(via) });
                    }
                }
                // A matching rule and still a deny: an explicit deny. It wins.
                Ok(o) if o.rule.is_some() => return Decision { allow: false, rule: o.rule, via: Some(via) },
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "policy evaluation failed; denying");
                    return Decision { allow: false, rule: Some("error".into()), via: None };
                }
            }
        }
        allowed.unwrap_or(Decision { allow: false, rule: None, via: None })
    }
}

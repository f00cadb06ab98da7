//! The decision, in order: authentication (`auth`), the front end's objection, the
//! grant, the policy, the durable record (`record`). The policy's question about a route
//! is made in one place, [`policy_request`], with the object from [`object`].

use super::{Access, Denial, Permit, Principal, Request, SignIn, Verdict};
use crate::config::path::NormPath;
use crate::config::Route;

/// The policy's object for a request: `<resource>:<path as the upstream gets it>`.
pub fn object(route: &Route, path: &NormPath) -> String {
    let forwarded = route.strip_prefix.as_deref().map_or(path.as_str(), |p| path.strip_segments(p));
    format!("{}:{}", route.resource, forwarded)
}

/// The policy's question: may `sub` (with `groups`) do `act` on `obj` of `route`, now
/// (the hour of day, UTC). Without MFA, a grant or a client address; set those with
/// `..` where known.
pub fn policy_request<'a>(
    route: &'a Route,
    sub: &'a str,
    groups: &'a [String],
    obj: &'a str,
    act: &'a str,
) -> crate::policy::Request<'a> {
    question(&route.domain, &route.name, sub, groups, obj, act)
}

/// The policy's question in a domain, about a route or a database by name.
fn question<'a>(
    dom: &'a str,
    name: &'a str,
    sub: &'a str,
    groups: &'a [String],
    obj: &'a str,
    act: &'a str,
) -> crate::policy::Request<'a> {
    crate::policy::Request {
        sub,
        groups,
        dom,
        obj,
        act,
        mfa: false,
        breakglass: false,
        client: "",
        hour: (crate::session::now_secs() / 3600 % 24) as i64,
        route: name,
    }
}

impl Access<'_> {
    /// Decides `req`: a [`Permit`] with its decision record durable, or why not (recorded,
    /// but for [`Denial::SignIn`] and [`Denial::AuditUnavailable`]).
    pub async fn decide(&self, req: &Request<'_>) -> Result<Permit, Denial> {
        if req.route.is_some_and(|r| r.public) {
            return self.allow(req, None, Verdict::default()).await;
        }
        if let Some((held, verdict)) = req.held {
            let p = self.recheck(req, held).await?;
            return self.allow(req, Some(p), verdict.clone()).await;
        }
        let p = self.authenticate(req).await?;
        let (p, verdict) = self.authorize(req, p).await?;
        self.allow(req, Some(p), verdict).await
    }

    /// The policy: may this person do this action on this object? Without [policy],
    /// anyone signed in may.
    async fn authorize(&self, req: &Request<'_>, p: Principal) -> Result<(Principal, Verdict), Denial> {
        let Some(policy) = self.policy else { return Ok((p, Verdict::default())) };
        if let Some(o) = req.objection {
            return Err(self.deny(req, o.into(), Some(&p), None));
        }
        if let Some(db) = req.database {
            let obj = db.object();
            let ask = crate::policy::Request {
                mfa: p.mfa,
                client: req.client,
                ..question(&db.domain, &db.name, &p.user.subject, &p.user.groups, &obj, req.action)
            };
            let d = policy.decide(&ask);
            if d.allow {
                return Ok((p, Verdict { rule: d.rule, grant: None }));
            }
            return Err(self.deny(req, Denial::Policy { rule: d.rule }, Some(&p), None));
        }
        let (Some(route), Some(path)) = (req.route, req.path) else {
            // With a policy, a request nobody decided is never forwarded.
            tracing::error!("no user or route at the policy decision; refusing");
            return Err(self.deny(req, Denial::Internal, Some(&p), None));
        };
        let obj = object(route, path);
        let grant = if self.breakglass { self.active_grant(req, &p).await } else { None };
        let ask = crate::policy::Request {
            mfa: p.mfa,
            breakglass: grant.is_some(),
            client: req.client,
            ..policy_request(route, &p.user.subject, &p.user.groups, &obj, req.action)
        };
        let grant = grant.map(|g| g.id);
        let d = policy.decide(&ask);
        if d.allow {
            return Ok((p, Verdict { rule: d.rule, grant }));
        }
        // Refused only for want of a second factor (the same request with MFA would be
        // allowed, e.g. a write to a record): ask for the step-up rather than forbid.
        // Looked at on denials only.
        if !ask.mfa && policy.decide(&crate::policy::Request { mfa: true, ..ask }).allow {
            let max_age = self.auth.and_then(|a| a.settings.oidc.mfa.step_up_max_age).unwrap_or_default();
            let s = SignIn { principal: Some(p), grant, need_mfa: true, step_up: true, reauth: Some(max_age) };
            return Err(Denial::SignIn(Box::new(s)));
        }
        Err(self.deny(req, Denial::Policy { rule: d.rule }, Some(&p), grant.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(extra: &str) -> Route {
        let toml = format!(
            "listen.http = \"127.0.0.1:1\"\n[[routes]]\nname = \"chart\"\npath = \"/chart\"\nupstream = \"http://127.0.0.1:1\"\npublic = true\nresource = \"ehr\"\n{extra}\n"
        );
        let cfg = crate::config::Config::from_toml(std::path::Path::new("t.toml"), &toml).unwrap();
        cfg.routes[0].clone()
    }

    #[test]
    fn the_object_is_the_path_the_upstream_gets() {
        let p = NormPath::parse(b"/chart/patients/7").unwrap();
        assert_eq!(object(&route(""), &p), "ehr:/chart/patients/7");
        assert_eq!(object(&route("strip_prefix = \"/chart\""), &p), "ehr:/patients/7");
    }

    #[test]
    fn the_policy_question_names_the_route() {
        let r = route("");
        let groups = vec!["nurses".to_string()];
        let ask = policy_request(&r, "alice", &groups, "ehr:/x", "GET");
        assert_eq!((ask.dom, ask.route, ask.sub, ask.act), (r.domain.as_str(), "chart", "alice", "GET"));
        assert!(!ask.mfa && !ask.breakglass && ask.client.is_empty());
        assert!((0..24).contains(&ask.hour));
    }
}

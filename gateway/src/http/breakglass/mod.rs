//! The break-glass pages: `/.custos/breakglass?route=NAME[&path=/…]` (declare an
//! emergency: a signed-in user with MFA whose policy allows `custos:breakglass` on the route's
//! object states why and gets a time-bound grant, `declare`) and `/.custos/breakglass/link?t=…`
//! (a sealed link, for when the identity provider is down, `link`), and the auditors' review
//! queue (`reviews`). Every step is audited and alerted (`grant`); the justification stays in
//! the review record. A declaration covers the record at the path given unless the person
//! chooses the whole route on the form. Every refusal is one row of `denial`'s table.

mod declare;
mod denial;
mod grant;
mod link;
pub(in crate::http) mod page;
mod reviews;

pub use denial::BreakglassDenial;

use super::endpoints::Denial;
use super::{Gateway, RequestCtx};
use crate::access::breakglass as bg;
use crate::audit::{Event, Kind};
use pingora::proxy::Session;
use std::sync::Arc;

pub const PATH: &str = "/.custos/breakglass";
pub const LINK_PATH: &str = "/.custos/breakglass/link";
pub const REVIEWS_PATH: &str = "/.custos/breakglass/reviews";
/// What the review page asks the policy about: the gateway action `custos:review` on this object.
pub const REVIEWS_OBJECT: &str = "custos:/breakglass/reviews";

/// What a sealed link's grant covers: `route`, or the path it was issued for.
fn link_scope(l: &bg::Link) -> String {
    match &l.path {
        Some(p) if !l.whole_route => p.clone(),
        _ => bg::WHOLE_ROUTE.to_string(),
    }
}

/// A case reference: short, plain.
fn case_ref(raw: Option<&String>) -> Result<Option<String>, BreakglassDenial> {
    match raw.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        // Letters, digits and a little punctuation: nothing that formats or links in a
        // Slack message or a page.
        Some(s) if s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || " ._:/#-".contains(c)) => {
            Ok(Some(s.to_string()))
        }
        Some(_) => Err(BreakglassDenial::CaseRef),
    }
}

/// Whether the request is a POST, and its fields: the form of a POST, else the query.
async fn fields(session: &mut Session) -> Result<(bool, super::form::Fields), BreakglassDenial> {
    if session.req_header().method == http::Method::POST {
        let form = super::form::read(session).await.map_err(|_| BreakglassDenial::FormTooLarge)?;
        Ok((true, form))
    } else {
        Ok((false, super::form::query(session.req_header())))
    }
}

/// The justification and case reference of a form.
fn statement(params: &super::form::Fields, max: usize) -> Result<(String, Option<String>), BreakglassDenial> {
    let why = params
        .get("justification")
        .and_then(|j| bg::plain_text(j, max))
        .ok_or(BreakglassDenial::Justification { max })?;
    Ok((why, case_ref(params.get("case_ref"))?))
}

/// Whether `policy` lets `sub` (with `groups`) declare an emergency on `route` for `path`:
/// the gateway action `custos:breakglass` on the object as `authorize` makes it (the path the upstream
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

    /// Records a refused break-glass step and answers with its page.
    pub(in crate::http) fn breakglass_denied(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        d: &BreakglassDenial,
    ) -> super::endpoints::Reply {
        let (status, reason, msg) = d.parts();
        if let Some(a) = &self.audit {
            let mut ev = self.bg_event(session, ctx, Kind::BreakglassDenied);
            ev.decision = Some(crate::audit::Decision::Deny);
            ev.reason = Some(reason.into());
            ev.status = Some(status);
            a.append(ev);
        }
        page::refused(status, &msg)
    }

    /// The break-glass settings and the sign-in bundle, which its pages need (the table
    /// has them only with both; anything else is no route).
    fn breakglass_configured(&self) -> Result<(Arc<bg::Settings>, Arc<super::auth::Auth>), Denial> {
        match (&self.breakglass, &self.auth) {
            (Some(s), Some(a)) => Ok((s.clone(), a.clone())),
            _ => Err(Denial::Refused(super::respond::Refusal::NoRoute)),
        }
    }

    /// Signed in with MFA, else sent to sign in (or step up) and back
    /// ([`Denial::Answered`]).
    async fn signed_in_with_mfa(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        auth: &super::auth::Auth,
    ) -> Result<(), Denial> {
        if self.authenticate(session, ctx).await? {
            return Err(Denial::Answered);
        }
        if ctx.mfa() != Some(true) {
            let max_age = auth.settings.oidc.mfa.step_up_max_age.unwrap_or(std::time::Duration::ZERO);
            Box::pin(self.challenge(session, ctx, true, true, Some(max_age))).await?;
            return Err(Denial::Answered);
        }
        Ok(())
    }

    /// Whether the policy lets the signed-in user declare an emergency on `route` for
    /// `path`.
    fn may_declare(&self, ctx: &RequestCtx, route: &crate::config::Route, path: &str) -> bool {
        let (Some(policy), Some(user)) = (&self.policy, ctx.user()) else { return false };
        may_declare(policy, route, path, &user.subject, &user.groups, ctx.mfa().unwrap_or(false))
    }
}

//! `/.custos/breakglass`: the declaration form (GET) and the declaration (POST).

use super::page::DeclareForm;
use super::{fields, statement, BreakglassDenial as D};
use crate::access::breakglass::{self as bg, Grant, Record, Store};
use crate::http::endpoints::{Denial, Reply};
use crate::http::form::{self, CsrfError};
use crate::http::respond::Refusal;
use crate::http::{cookies, Gateway, RequestCtx};
use crate::session::{now_secs, sha256_hex, Session as UserSession};
use pingora::proxy::Session;

impl Gateway {
    pub(in crate::http) async fn breakglass_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let (settings, auth) = self.breakglass_configured()?;
        // Signed in, with MFA: a browser without a session is sent to sign in and back.
        self.signed_in_with_mfa(session, ctx, &auth).await?;
        let (post, params) = fields(session).await?;
        let route_name = params.get("route").cloned().unwrap_or_default();
        let Some(route) = self.router.by_name(&route_name).map(|r| r.route.clone()) else {
            return Err(D::NoRoute.into());
        };
        ctx.route = self.router.by_name(&route_name).cloned();
        if ctx.user().is_some_and(|u| u.sealed) {
            return Err(D::SealedDeclare.into());
        }
        // A path inside the route (the page the user lands on, and the object the
        // declaration is checked for), never one of the gateway's own.
        let inside = |p: &str| {
            route.path == "/" || p == route.path || p.starts_with(&format!("{}/", route.path.trim_end_matches('/')))
        };
        let path = params
            .get("path")
            .filter(|p| p.starts_with('/') && !p.contains(['?', '#', '\\']) && !p.contains("//"))
            .and_then(|p| crate::http::path::NormPath::parse(p.as_bytes()).ok())
            .map(|p| p.as_str().to_string())
            .filter(|p| inside(p) && !p.starts_with("/.custos"))
            .unwrap_or_else(|| route.path.clone());
        if !self.may_declare(ctx, &route, &path) {
            return Err(D::Policy.into());
        }
        let cookie = cookies::get(session.req_header(), &auth.settings.session.cookie_name).unwrap_or("").to_string();
        let csrf = bg::csrf_token(&cookie);
        // A record (the default) or, when the person says so, the whole route. A path that
        // is the route's own covers the route anyway.
        let whole = path == route.path || params.get("scope").is_some_and(|v| v == bg::WHOLE_ROUTE);
        if !post {
            let form = DeclareForm {
                route: &route.name,
                route_path: &route.path,
                path: &path,
                csrf: &csrf,
                settings: &settings,
            };
            return Ok(form.reply());
        }
        // The form: its token (bound to this session), and from this origin.
        match form::check_csrf(session.req_header(), &params, &cookie, &csrf, &auth.settings.oidc.origin) {
            Ok(()) => {}
            Err(CsrfError::Token) => return Err(D::DeclareFormExpired.into()),
            Err(CsrfError::Origin) => return Err(D::OtherSite.into()),
        }
        let (why, case) = statement(&params, settings.justification_max)?;
        let secs = params
            .get("minutes")
            .and_then(|m| m.trim().parse::<u64>().ok())
            .map_or(settings.default, |m| std::time::Duration::from_secs(m.clamp(1, 1 << 32).saturating_mul(60)))
            .min(settings.max);
        let store = Store(&auth.store);
        let (Some(user), Some(hash)) = (ctx.user().cloned(), ctx.session_hash().map(str::to_string)) else {
            return Err(Denial::Refused(Refusal::Internal));
        };
        match store.count_today(&user.subject).await {
            Ok(n) if n > settings.max_per_day => return Err(D::DailyLimit.into()),
            Ok(_) => {}
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
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
            return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
        }
        if let Some(old) = &old {
            self.grant_ended(session, ctx, old, bg::GrantEnd::Replaced);
        }
        bg::end_on_time(auth.store.clone(), self.audit.clone(), grant.id.clone(), grant.expires);
        self.started(session, ctx, &settings, &record, "declared", &user.subject).await;
        Ok(Reply::see_other(path))
    }
}

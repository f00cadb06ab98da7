//! `/.custos/login?rd=PATH`: sign in, then go to PATH (same origin only, else `/`).

use super::{Denial, Reply};
use crate::http::path::NormPath;
use crate::http::respond::Refusal;
use crate::http::{auth, cookies, form, routes, Gateway, RequestCtx};
use crate::identity::redirect::safe_return;
use pingora::proxy::Session;
use std::time::Duration;

impl Gateway {
    pub(in crate::http) async fn login_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        let return_to = safe_return(&form::query_param(session.req_header(), "rd").unwrap_or_else(|| "/".into()));
        // The MFA need of the page the user is going to, so the first sign-in asks for it.
        let host = auth::authority(session.req_header()).to_string();
        let target_path = return_to.split(['?', '#']).next().unwrap_or("/");
        let route_mfa = NormPath::parse(target_path.as_bytes())
            .ok()
            .and_then(|p| self.router.find(&routes::host_of(&host), &p).and_then(|r| r.require_mfa));
        let need_mfa = route_mfa.unwrap_or(auth.settings.oidc.require_mfa);
        let reauth = cookies::get(session.req_header(), &auth.settings.session.cookie_name).map(|_| Duration::ZERO);
        self.begin_login(session, ctx, return_to, need_mfa, reauth, None).await?;
        Ok(Reply::sent())
    }
}

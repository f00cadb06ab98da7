//! `/.custos/callback`: the provider sends the browser back here. The sign-in must be
//! one this browser started (state and pre-login cookie); then the session is made.

use super::{Denial, Reply};
use crate::audit::{Actor, Code, Kind, Reason};
use crate::http::respond::Refusal;
use crate::http::{cookies, form, Gateway, RequestCtx};
use crate::identity::{redirect::safe_return, LoginError};
use crate::session::{Session as UserSession, SessionId};
use pingora::proxy::Session;

/// A sign-in refused at the callback for `reason`, with the generic page.
fn failed(reason: impl Into<Reason>) -> Denial {
    Denial::LoginFailed { reason: reason.into(), actor: None, page: Refusal::LoginFailed }
}

impl Gateway {
    pub(in crate::http) async fn callback_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        let Some(state) = form::query_param(session.req_header(), "state").filter(|s| !s.is_empty() && s.len() <= 512)
        else {
            return Err(failed(Code::State));
        };
        let pending = match auth.store.peek_login(&state).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(failed(Code::State)),
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable at sign-in callback");
                return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
            }
        };
        // Bound to the browser that started it: a callback URL replayed elsewhere (login
        // CSRF) fails, and does not use up the sign-in of the browser it belongs to.
        let binding = cookies::get(session.req_header(), &auth.settings.session.login_cookie_name)
            .and_then(SessionId::parse)
            .map(|b| b.hash());
        // Both sides are SHA-256 digests of a secret: comparing them leaks nothing usable.
        if binding.as_deref() != Some(pending.binding.as_str()) {
            return Err(failed(Code::BrowserBinding));
        }
        match auth.store.consume_login(&state).await {
            Ok(true) => {}
            Ok(false) => return Err(failed(Code::State)),
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        }
        if form::query_param(session.req_header(), "error").is_some() {
            return Err(failed(Code::IdpError));
        }
        let Some(code) = form::query_param(session.req_header(), "code").filter(|c| !c.is_empty()) else {
            return Err(failed(Code::AuthCode));
        };
        let claims = match auth.identity.finish(&code, &pending).await {
            Ok(c) => c,
            Err(LoginError::IdpUnavailable(e)) => {
                tracing::warn!(error = %e, "identity provider unavailable at sign-in callback");
                return Err(Denial::LoginFailed {
                    reason: Code::IdpUnavailable.into(),
                    actor: None,
                    page: Refusal::IdpUnavailable,
                });
            }
            Err(LoginError::Failed { reason, detail }) => {
                tracing::info!(reason, detail, "ID token refused");
                return Err(failed(Reason::named(reason)));
            }
        };
        let actor = Actor { subject: claims.subject.clone(), groups: claims.groups.clone() };
        let mfa = auth.settings.oidc.mfa.satisfied(&claims.amr, claims.acr.as_deref());
        if pending.require_mfa && !mfa {
            return Err(Denial::LoginFailed {
                reason: Code::Mfa.into(),
                actor: Some(actor),
                page: Refusal::MfaNotSatisfied,
            });
        }
        let claims_rt = claims.refresh_token.clone();
        let record = UserSession {
            subject: claims.subject,
            email: claims.email,
            name: claims.name,
            groups: claims.groups,
            amr: claims.amr,
            acr: claims.acr,
            auth_time: claims.auth_time,
            created: 0,
            last_seen: 0,
            client: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()),
            sid: claims.sid,
            idp_sub: claims.idp_sub,
            validated: 0,
            breakglass: None,
            sealed: false,
            db: None,
            lifetime: None,
        };
        let id = match auth.store.create(record, auth.settings.session.max_per_user, claims_rt).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; cannot create the session");
                return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
            }
        };
        // A session the browser held before (a step-up, or one planted by someone else)
        // is ended: the new sign-in gets a fresh id, never the old one.
        if let Some(old) =
            cookies::get(session.req_header(), &auth.settings.session.cookie_name).and_then(SessionId::parse)
        {
            let _ = auth.store.delete_for(&old, crate::session::EndReason::Replaced).await;
        }
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::AuthLogin);
            ev.actor = Some(actor);
            ev.session = Some(id.hash());
            ev.mfa = Some(mfa);
            audit.append(ev);
        }
        let secure = self.secure(session);
        let names = &auth.settings.session;
        Ok(Reply::redirect(safe_return(&pending.return_to))
            .cookie(cookies::set(&names.cookie_name, id.cookie_value(), None, secure))
            .cookie(cookies::set(&names.login_cookie_name, "", Some(0), secure)))
    }
}

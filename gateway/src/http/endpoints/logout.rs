//! `/.custos/logout`: ends the session in Redis, clears the cookie, and continues at
//! the provider's logout when it offers one.

use super::{Denial, Reply};
use crate::audit::Kind;
use crate::http::auth::actor_of;
use crate::http::respond::Refusal;
use crate::http::{cookies, form, Gateway, RequestCtx};
use crate::session::SessionId;
use pingora::proxy::Session;

/// What a cross-site link to sign out gets: a button, so that only the user signs out.
const CONFIRM: &str = "<!doctype html><title>Sign out</title><form method=\"post\" action=\"/.custos/logout\"><button>Sign out</button></form>\n";

impl Gateway {
    pub(in crate::http) async fn logout_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        let req = session.req_header();
        // A cross-site link cannot sign users out: it gets a page with a button (a POST
        // from another site carries no `SameSite=Lax` cookie, so it ends nothing).
        if req.method != http::Method::POST && form::cross_site(req) {
            return Ok(Reply::html(200, bytes::Bytes::from_static(CONFIRM.as_bytes())));
        }
        let secure = self.secure(session);
        // The cookie is replaced by a marker that is no session: the next sign-in in this
        // browser makes the provider authenticate the user again.
        let clear = cookies::set(&auth.settings.session.cookie_name, "signed-out", None, secure);
        let id = cookies::get(session.req_header(), &auth.settings.session.cookie_name).and_then(SessionId::parse);
        let mut ended = true;
        if let Some(id) = id {
            let (who, grant) = match auth.store.peek(&id).await {
                Ok(Some(s)) => (Some(actor_of(&s)), s.breakglass.clone()),
                _ => (None, None),
            };
            if let Some(g) = grant.filter(|g| g.expires > crate::session::now_secs()) {
                self.grant_ended(session, ctx, &g, crate::access::breakglass::GrantEnd::Logout);
            }
            ended = auth.store.delete(&id).await.is_ok();
            if let Some(audit) = &self.audit {
                let mut ev = self.auth_event(session, ctx, Kind::AuthLogout);
                ev.actor = who;
                ev.session = Some(id.hash());
                if !ended {
                    ev.reason = Some(crate::audit::Code::SessionStoreUnavailable.into());
                }
                audit.append(ev);
            }
        }
        // Not ended: said so (the session's own record says why), the cookie cleared anyway.
        if !ended {
            return Ok(Reply::refusal(Refusal::SessionStoreUnavailable).cookie(clear));
        }
        Ok(match auth.identity.logout_url() {
            Some(url) => Reply::redirect(url),
            None => Reply::text(200, bytes::Bytes::from_static(b"You are signed out.\n")),
        }
        .cookie(clear))
    }
}

//! `POST /.custos/db/token`: the database token, for the holder of the verifier. A
//! one-time code is taken before its verifier is checked (one try); a device login is
//! handed over once, after its confirmation; the browser session must still stand with
//! the MFA the database needs. Refused requests are counted per client address.

use super::{client_of, DbRefusal, POLL_SECS};
use crate::audit::{Code, Kind};
use crate::http::endpoints::{Denial, Reply};
use crate::http::respond::Refusal;
use crate::http::{form, Gateway, RequestCtx};
use crate::session::dbtoken;
use crate::session::{Lookup, SessionId};
use pingora::proxy::Session;

impl Gateway {
    /// `POST /.custos/db/token`: the token, for the verifier's holder.
    pub(in crate::http) async fn db_token_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        if session.req_header().method != http::Method::POST {
            return Err(Denial::Refused(Refusal::MethodNotAllowed));
        }
        let client = client_of(session).unwrap_or_else(|| "-".into());
        // Codes and verifiers cannot be guessed, but refusals are bounded anyway.
        match auth.store.db_refusals(&client).await {
            Ok(n) if n >= auth.settings.oidc.max_logins_per_minute => {
                return Ok(self.db_refused(session, ctx, None, DbRefusal::Rate, false));
            }
            Ok(_) => {}
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        }
        let Ok(params) = form::read(session).await else {
            return Ok(self.db_refused(session, ctx, None, DbRefusal::Malformed, false));
        };
        match self.db_token(session, ctx, &params).await {
            Ok(reply) => Ok(reply),
            Err(TokenError::Denial(d)) => Err(d),
            Err(TokenError::Refused(r, db)) => {
                let _ = auth.store.count_db_refusal(&client).await;
                Ok(self.db_refused(session, ctx, db.as_deref(), r, false))
            }
        }
    }

    async fn db_token(&self, session: &Session, ctx: &RequestCtx, params: &form::Fields) -> Result<Reply, TokenError> {
        let Some(auth) = self.auth() else { return Err(TokenError::Denial(Denial::Refused(Refusal::NoRoute))) };
        let unavailable = || TokenError::Denial(Denial::Refused(Refusal::SessionStoreUnavailable));
        let verifier = params.get("verifier").map(String::as_str).unwrap_or("");
        let (db_name, browser, how) = if let Some(code) = params.get("code") {
            let code = SessionId::parse(code).ok_or(TokenError::Refused(DbRefusal::Code, None))?;
            // Taken before the verifier is checked: a code has one try.
            let c = auth.store.take_db_code(&code).await.map_err(|_| unavailable())?;
            let c = c.ok_or(TokenError::Refused(DbRefusal::Code, None))?;
            if !dbtoken::verifier_matches(verifier, &c.challenge) {
                return Err(TokenError::Refused(DbRefusal::Verifier, Some(c.db)));
            }
            (c.db, c.browser, Code::Loopback)
        } else if let Some(device) = params.get("device") {
            let id = SessionId::parse(device).ok_or(TokenError::Refused(DbRefusal::Device, None))?;
            let (d, confirmed) = auth
                .store
                .device(&id)
                .await
                .map_err(|_| unavailable())?
                .ok_or(TokenError::Refused(DbRefusal::Device, None))?;
            if !dbtoken::verifier_matches(verifier, &d.challenge) {
                // Whoever holds the URL but not the verifier ends the login: it was sent
                // somewhere it should not have been.
                let _ = auth.store.take_device(&id).await;
                return Err(TokenError::Refused(DbRefusal::Verifier, Some(d.db)));
            }
            let Some(browser) = confirmed else {
                return Ok(Reply::json(
                    400,
                    &serde_json::json!({ "error": "authorization_pending", "interval": POLL_SECS }),
                ));
            };
            if !auth.store.take_device(&id).await.map_err(|_| unavailable())? {
                return Err(TokenError::Refused(DbRefusal::Device, Some(d.db)));
            }
            (d.db, browser, Code::Device)
        } else {
            return Err(TokenError::Refused(DbRefusal::Malformed, None));
        };
        let Some(db) = self.endpoints.databases.iter().find(|d| d.name == db_name) else {
            return Err(TokenError::Refused(DbRefusal::Database, Some(db_name)));
        };
        let refuse = |r| TokenError::Refused(r, Some(db.name.clone()));
        let person = match auth.store.load_by_hash(&browser).await.map_err(|_| unavailable())? {
            Lookup::Active(s) if s.sealed => return Err(refuse(DbRefusal::Sealed)),
            Lookup::Active(s) if s.db.is_none() => s,
            _ => return Err(refuse(DbRefusal::SessionEnded)),
        };
        let mfa = auth.settings.oidc.mfa.satisfied(&person.amr, person.acr.as_deref());
        if self.db_needs_mfa(db) && !mfa {
            return Err(refuse(DbRefusal::Mfa));
        }
        let client = client_of(session);
        let max = auth.settings.session.max_per_user;
        let token = match auth.store.create_db_token(&person, &db.name, db.lifetime, client, max).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; cannot make a database token");
                return Err(unavailable());
            }
        };
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::DbTokenIssued);
            ev.actor = Some(crate::http::auth::actor_of(&person));
            ev.session = Some(token.hash());
            ev.from_session = Some(browser.clone());
            ev.database = Some(db.name.clone());
            ev.mfa = Some(mfa);
            ev.reason = Some(how.into());
            ev.status = Some(200);
            audit.append(ev);
        }
        let now = crate::session::now_secs();
        Ok(Reply::json(
            200,
            &serde_json::json!({
                "token": token.cookie_value(),
                "user": person.subject,
                "database": db.name,
                "session": token.hash(),
                "idle_timeout_secs": db.lifetime.idle_secs,
                "expires_at": now + db.lifetime.absolute_secs,
            }),
        ))
    }
}

/// Why a token request got no token.
enum TokenError {
    /// A refusal of this flow, about this database when known.
    Refused(DbRefusal, Option<String>),
    /// The gateway cannot answer it (the session store is down).
    Denial(Denial),
}

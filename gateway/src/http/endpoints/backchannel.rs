//! `/.custos/backchannel-logout`: the provider ends sessions (OpenID Connect Back-Channel
//! Logout). 200 when done, 400 for a token that is not valid, 503 when it could not be
//! done now (the provider retries).

use super::{Denial, Reply};
use crate::audit::{Code, Decision, Kind, Reason};
use crate::http::auth::actor_of;
use crate::http::form::{self, FormError};
use crate::http::respond::Refusal;
use crate::http::{Gateway, RequestCtx};
use pingora::proxy::Session;
use std::time::Duration;

/// Why a back-channel logout was refused: its audit reason and status in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackchannelDenial {
    NoToken,
    /// The logout token failed the check named.
    Token(Reason),
    /// The provider's keys could not be fetched.
    IdpUnavailable,
    /// The token's `jti` was seen before.
    Replay,
    /// The session store failed.
    Store,
}

impl BackchannelDenial {
    /// A refusal of the logout token's verification.
    fn of_token(reason: Code) -> BackchannelDenial {
        match reason {
            Code::IdpUnavailable => BackchannelDenial::IdpUnavailable,
            r => BackchannelDenial::Token(r.into()),
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            BackchannelDenial::NoToken => Code::NoToken.into(),
            BackchannelDenial::Token(r) => r.clone(),
            BackchannelDenial::IdpUnavailable => Code::IdpUnavailable.into(),
            BackchannelDenial::Replay => Code::Replay.into(),
            BackchannelDenial::Store => Code::Store.into(),
        }
    }

    /// 503 when the provider should try again; 400 for a token that will never do.
    pub fn status(&self) -> u16 {
        match self {
            BackchannelDenial::IdpUnavailable | BackchannelDenial::Store => 503,
            BackchannelDenial::NoToken | BackchannelDenial::Token(_) | BackchannelDenial::Replay => 400,
        }
    }
}

/// The error body the provider gets, whatever the reason (the record says which).
pub(super) fn invalid_request(status: u16) -> Reply {
    Reply::json(status, &serde_json::json!({ "error": "invalid_request" }))
}

impl Gateway {
    pub(in crate::http) async fn backchannel_logout_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        if session.req_header().method != http::Method::POST {
            return Ok(invalid_request(405));
        }
        let fields = match form::read(session).await {
            Ok(f) => f,
            Err(FormError::TooLarge) => return Ok(invalid_request(413).close()),
            Err(FormError::Cut(e)) => return Err(Denial::Io(e)),
        };
        let Some(token) = fields.get("logout_token") else { return Err(BackchannelDenial::NoToken.into()) };
        let t = auth.identity.verify_logout_token(token).await.map_err(BackchannelDenial::of_token)?;
        match auth.store.first_use(&t.jti, Duration::from_secs(600)).await {
            Ok(true) => {}
            Ok(false) => return Err(BackchannelDenial::Replay.into()),
            Err(_) => return Err(BackchannelDenial::Store.into()),
        }
        let ended = match auth.store.end_provider_session(t.sid.as_deref(), t.sub.as_deref()).await {
            Ok(ended) => ended,
            Err(_) => {
                // Not done: the provider retries with the same jti, which must work.
                auth.store.forget_use(&t.jti).await;
                return Err(BackchannelDenial::Store.into());
            }
        };
        if let Some(audit) = &self.audit {
            for (h, s) in &ended {
                let mut ev = self.auth_event(session, ctx, Kind::AuthBackchannelLogout);
                ev.decision = Some(Decision::Allow);
                ev.actor = Some(actor_of(s));
                ev.session = Some(h.clone());
                audit.append(ev);
                // An emergency grant ends with its session.
                if let Some(g) = s.breakglass.as_ref().filter(|g| g.expires > crate::session::now_secs()) {
                    self.grant_ended(session, ctx, g, crate::access::breakglass::GrantEnd::BackchannelLogout);
                }
            }
        }
        tracing::info!(ended = ended.len(), "back-channel logout");
        Ok(Reply::json(200, &serde_json::json!({ "ended": ended.len() })))
    }

    /// Records a refused back-channel logout and answers the provider.
    pub(super) fn backchannel_denied(&self, session: &Session, ctx: &RequestCtx, d: BackchannelDenial) -> Reply {
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::AuthBackchannelLogout);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(d.reason());
            audit.append(ev);
        }
        tracing::info!(reason = %d.reason(), "back-channel logout refused");
        invalid_request(d.status())
    }
}

#[cfg(test)]
mod tests {
    use super::BackchannelDenial as D;
    use crate::audit::{Code, Reason};

    #[test]
    fn retry_only_when_it_may_work() {
        assert_eq!(D::of_token(Code::IdpUnavailable), D::IdpUnavailable);
        assert_eq!((D::IdpUnavailable.status(), D::IdpUnavailable.reason()), (503, Code::IdpUnavailable.into()));
        assert_eq!((D::Store.status(), D::Store.reason()), (503, Code::Store.into()));
        let alg = D::of_token(Code::Algorithm);
        assert_eq!(alg, D::Token(Reason::Code(Code::Algorithm)));
        assert_eq!((alg.status(), alg.reason()), (400, Code::Algorithm.into()));
        assert_eq!((D::NoToken.status(), D::NoToken.reason()), (400, Code::NoToken.into()));
        assert_eq!((D::Replay.status(), D::Replay.reason()), (400, Code::Replay.into()));
    }
}

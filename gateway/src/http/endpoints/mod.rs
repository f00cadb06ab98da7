//! The gateway's own endpoints under `/.custos/`. Each is a handler with one shape,
//! `Result<Reply, Denial>`: it says what to answer, and the dispatcher here writes it (a
//! [`Reply`]) or records and writes the refusal (a [`Denial`], whose status, page and audit
//! reason sit in `respond`'s table). Which endpoints exist is decided once, from config
//! ([`Table::new`]): a path not in the table is answered as no route.

mod backchannel;
mod callback;
pub mod dblogin;
mod health;
mod jwks;
mod login;
mod logout;
mod reply;

pub use super::respond::Denial;
pub use backchannel::BackchannelDenial;
pub use reply::Reply;

use super::breakglass;
use super::respond::{self, Refusal};
use super::{Gateway, RequestCtx};
use crate::audit::Kind;
use pingora::proxy::Session;
use pingora::Result;

/// A gateway endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Healthz,
    Readyz,
    Jwks,
    Login,
    Callback,
    Logout,
    BackchannelLogout,
    Breakglass,
    BreakglassLink,
    BreakglassReviews,
    DbLogin,
    DbDevice,
    DbToken,
}

/// The endpoints this configuration serves, by path, and the databases `custos db login`
/// hands out tokens for.
#[derive(Debug)]
pub struct Table {
    paths: Vec<(&'static str, Endpoint)>,
    databases: Vec<dblogin::DbTarget>,
}

impl Table {
    /// Health always; sign-in with `[oidc]`; the keys with `[upstream_identity]`; the
    /// break-glass pages with `[breakglass]` (which needs `[oidc]` and `[policy]`); the
    /// database sign-in with `[oidc]` and `databases`.
    pub fn new(
        auth: Option<&super::auth::Auth>,
        breakglass: bool,
        policy: bool,
        databases: Vec<dblogin::DbTarget>,
    ) -> Table {
        let mut t = vec![("/.custos/healthz", Endpoint::Healthz), ("/.custos/readyz", Endpoint::Readyz)];
        if let Some(a) = auth {
            t.extend([
                (crate::identity::LOGIN_PATH, Endpoint::Login),
                (crate::identity::CALLBACK_PATH, Endpoint::Callback),
                (crate::identity::LOGOUT_PATH, Endpoint::Logout),
                (crate::identity::BACKCHANNEL_LOGOUT_PATH, Endpoint::BackchannelLogout),
            ]);
            if a.asserter.is_some() {
                t.push(("/.custos/jwks.json", Endpoint::Jwks));
            }
            if breakglass && policy {
                t.extend([
                    (breakglass::PATH, Endpoint::Breakglass),
                    (breakglass::LINK_PATH, Endpoint::BreakglassLink),
                    (breakglass::REVIEWS_PATH, Endpoint::BreakglassReviews),
                ]);
            }
            if !databases.is_empty() {
                t.extend([
                    (dblogin::LOGIN_PATH, Endpoint::DbLogin),
                    (dblogin::DEVICE_PATH, Endpoint::DbDevice),
                    (dblogin::TOKEN_PATH, Endpoint::DbToken),
                ]);
            }
        }
        Table { paths: t, databases }
    }

    fn find(&self, path: &str) -> Option<Endpoint> {
        self.paths.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
    }
}

impl From<Box<pingora::Error>> for Denial {
    fn from(e: Box<pingora::Error>) -> Denial {
        Denial::Io(e)
    }
}

impl From<breakglass::BreakglassDenial> for Denial {
    fn from(d: breakglass::BreakglassDenial) -> Denial {
        Denial::Breakglass(d)
    }
}

impl From<BackchannelDenial> for Denial {
    fn from(d: BackchannelDenial) -> Denial {
        Denial::Backchannel(d)
    }
}

impl Gateway {
    /// `/.custos/…`: the endpoint at `path`, answered.
    pub(super) async fn endpoint(&self, session: &mut Session, ctx: &mut RequestCtx, path: &str) -> Result<()> {
        let Some(e) = self.endpoints.find(path) else { return respond::refuse(session, Refusal::NoRoute).await };
        let outcome = match e {
            Endpoint::Healthz => self.healthz(),
            Endpoint::Readyz => self.readyz().await,
            Endpoint::Jwks => self.jwks_endpoint(),
            Endpoint::Login => self.login_endpoint(session, ctx).await,
            Endpoint::Callback => self.callback_endpoint(session, ctx).await,
            Endpoint::Logout => self.logout_endpoint(session, ctx).await,
            Endpoint::BackchannelLogout => self.backchannel_logout_endpoint(session, ctx).await,
            Endpoint::Breakglass => self.breakglass_endpoint(session, ctx).await,
            Endpoint::BreakglassLink => self.breakglass_link_endpoint(session, ctx).await,
            Endpoint::BreakglassReviews => self.breakglass_reviews_endpoint(session, ctx).await,
            Endpoint::DbLogin => self.db_login_endpoint(session, ctx).await,
            Endpoint::DbDevice => self.db_device_endpoint(session, ctx).await,
            Endpoint::DbToken => self.db_token_endpoint(session, ctx).await,
        };
        match outcome {
            Ok(reply) => reply.send(session).await,
            Err(d) => self.deny(session, ctx, d).await,
        }
    }

    /// Records a refused endpoint request as its kind of refusal asks, and answers it.
    async fn deny(&self, session: &mut Session, ctx: &mut RequestCtx, d: Denial) -> Result<()> {
        let reply = match d {
            Denial::Refused(r) => return self.refuse(session, ctx, r).await.map(|_| ()),
            Denial::LoginFailed { reason, actor, page } => {
                if let Some(audit) = &self.audit {
                    let mut ev = self.auth_event(session, ctx, Kind::AuthLoginFailed);
                    ev.reason = Some(reason.clone());
                    ev.actor = actor;
                    ev.status = Some(page.status());
                    audit.append(ev);
                }
                tracing::info!(reason = %reason, "sign-in refused");
                ctx.refusal = Some(page);
                Reply::refusal(page)
            }
            Denial::Breakglass(b) => self.breakglass_denied(session, ctx, &b),
            Denial::Backchannel(b) => self.backchannel_denied(session, ctx, b),
            Denial::Answered => return Ok(()),
            Denial::Io(e) => return Err(e),
        };
        reply.send(session).await
    }
}

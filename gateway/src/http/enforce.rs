//! HTTP's side of the access core: it reads the credentials from the request (the
//! bearer token, the session cookie), supplies the request's metadata for the records,
//! asks [`crate::access`] to decide, and answers a [`Denial`] the HTTP way — a browser is
//! sent to sign in, anything else gets the 401 challenge, the rest are pages from the
//! table in `respond`. Path parameters and method overrides are refused here (the
//! core judges them in order, after authentication).

use super::respond::{self, Refusal};
use super::{cookies, headers, Gateway, RequestCtx};
use crate::access::{self, Access, Denial, Objection, Presented};
use crate::audit::{Event, Kind};
use pingora::proxy::Session;
use pingora::Result;

/// The metadata of a request, for its audit records. Never the body, cookies or tokens;
/// the query only when the route opts in.
pub(super) fn base_event(session: &Session, ctx: &RequestCtx, kind: Kind) -> Event {
    let req = session.req_header();
    let mut ev = Event::new(kind);
    ev.client = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string());
    ev.method = Some(req.method.as_str().to_string());
    ev.path = ctx.path.as_ref().map(|p| p.as_str().to_string());
    if let Some(route) = &ctx.route {
        ev.route = Some(route.name.clone());
        ev.upstream = Some(route.upstream.url.clone());
        if route.audit_query {
            ev.query = req.uri.query().map(str::to_string);
        }
    }
    ev.request_id = ctx.forwarding.as_ref().and_then(|f| f.request_id.to_str().ok()).map(str::to_string);
    if let Some(t) = &ctx.trace {
        ev.trace_id = Some(t.trace_id.clone());
        ev.span_id = Some(t.span_id.clone());
        ev.parent_span_id.clone_from(&t.parent_span_id);
    }
    ev
}

/// A request's metadata as the access core asks for it.
pub(super) struct Meta<'a> {
    pub session: &'a Session,
    pub ctx: &'a RequestCtx,
}

impl access::Meta for Meta<'_> {
    fn event(&self, kind: Kind) -> Event {
        base_event(self.session, self.ctx, kind)
    }
}

/// The client's address, as the policy sees it (`""` when unknown).
fn client_of(session: &Session) -> String {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()).unwrap_or_default()
}

impl Gateway {
    /// The access core over this gateway's parts (borrowed: nothing is copied).
    pub(super) fn access(&self) -> Access<'_> {
        Access {
            auth: self.auth.as_deref(),
            policy: self.policy.as_deref(),
            audit: self.audit.as_ref(),
            breakglass: self.breakglass.is_some(),
        }
    }

    /// The metadata of this request with who asked and the grant, for an audit record.
    pub(super) fn access_event(&self, session: &Session, ctx: &RequestCtx, kind: Kind) -> Event {
        Access::event(&Meta { session, ctx }, kind, ctx.principal.as_ref(), ctx.verdict.grant.as_deref())
    }

    /// The credentials the request presents.
    fn presented<'a>(&self, req: &'a pingora::http::RequestHeader) -> Presented<'a> {
        let Some(auth) = self.auth() else { return Presented::default() };
        Presented {
            bearer: super::auth::bearer_token(req),
            session: cookies::get(req, &auth.settings.session.cookie_name),
            password: None,
        }
    }

    /// Steps 7 to 9: who is asking and the route's MFA rule, the grant, the policy, and
    /// the decision record, durable before anything is forwarded. `Ok(true)`: answered.
    pub(super) async fn decide(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let outcome = {
            let head = session.req_header();
            let public = ctx.route.as_ref().is_some_and(|r| r.route.public);
            // Only with a policy on a protected route (the core judges them after
            // authentication); a public route reads no credential either.
            let (objection, client) = match self.policy {
                _ if public => (None, String::new()),
                None => (None, String::new()),
                Some(_) => {
                    let objection = if ctx.path.as_ref().is_some_and(|p| p.as_str().contains(';')) {
                        Some(Objection::PathParameters)
                    } else if head.uri.query().is_some_and(headers::method_override) {
                        // Override headers are stripped; a form field is the upstream's
                        // to ignore (see README).
                        Some(Objection::MethodOverride)
                    } else {
                        None
                    };
                    (objection, client_of(session))
                }
            };
            let meta = Meta { session, ctx };
            let req = access::Request {
                credentials: if public { Presented::default() } else { self.presented(head) },
                route: ctx.route.as_deref().map(|r| &r.route),
                path: ctx.path.as_ref(),
                database: None,
                held: None,
                claimed_user: None,
                role: None,
                action: head.method.as_str(),
                client: &client,
                objection,
                start: ctx.timings.start,
                status: respond::denial_status,
                meta: &meta,
            };
            self.access().decide(&req).await
        };
        match outcome {
            Ok(permit) => {
                ctx.principal = permit.principal;
                ctx.verdict = permit.verdict;
                ctx.allowed = permit.recorded;
                ctx.timings.audit = permit.audit_phase;
                Ok(false)
            }
            Err(d) => self.denied(session, ctx, d).await,
        }
    }

    /// The session (or bearer token) and the MFA rule, for the gateway's own pages.
    /// `Ok(true)`: answered here.
    pub(super) async fn authenticate(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let outcome = {
            let head = session.req_header();
            let meta = Meta { session, ctx };
            let req = access::Request {
                credentials: self.presented(head),
                route: ctx.route.as_deref().map(|r| &r.route),
                path: ctx.path.as_ref(),
                database: None,
                held: None,
                claimed_user: None,
                role: None,
                action: head.method.as_str(),
                client: "",
                objection: None,
                start: ctx.timings.start,
                status: respond::denial_status,
                meta: &meta,
            };
            self.access().authenticate(&req).await
        };
        match outcome {
            Ok(p) => {
                ctx.principal = Some(p);
                Ok(false)
            }
            Err(d) => self.denied(session, ctx, d).await,
        }
    }

    /// Answers a denial (recorded by the core, but a sign-in to start).
    async fn denied(&self, session: &mut Session, ctx: &mut RequestCtx, d: Denial) -> Result<bool> {
        let r = match d {
            Denial::SignIn(s) => {
                let s = *s;
                ctx.principal = s.principal;
                ctx.verdict.grant = s.grant;
                // Boxed: the sign-in path's state is large and rare; the signed-in
                // request's future stays small (it is moved and polled on every request).
                return Box::pin(self.challenge(session, ctx, s.need_mfa, s.step_up, s.reauth)).await;
            }
            Denial::Policy { .. } => {
                ctx.refusal = Some(Refusal::PolicyDenied);
                let route = ctx.route.as_ref().map_or("", |r| r.name.as_str()).to_string();
                respond::forbidden(session, &route).await?;
                return Ok(true);
            }
            d => respond::refusal_of(&d),
        };
        ctx.refusal = Some(r);
        respond::refuse(session, r).await?;
        Ok(true)
    }
}

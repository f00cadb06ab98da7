//! The pingora `ProxyHttp` service. `request_filter` reads like the request path in
//! DESIGN.md, one call per step: refuse ambiguous framing → normalise the path once →
//! gateway endpoints → strip identity headers → match the route → its methods, underscored
//! headers → limits → protocol upgrades (refused, or a WebSocket tunnel once allowed:
//! `tunnel`) → the session and the route's MFA rule (`auth`) → decision record made
//! durable in the audit spool → a chunked body's first chunk framed. Then `upstream_peer` picks the route's
//! upstream, `upstream_request_filter` writes the normalised path and the forwarding
//! headers and removes the gateway's cookies, and `logging` appends the completion record and counts metrics. Every
//! refusal is recorded too (health endpoints excepted).

pub mod admin;
pub mod auth;
pub mod breakglass;
pub mod cookies;
pub mod endpoints;
pub mod form;
pub mod framing;
pub mod headers;
pub use crate::config::path;
pub use crate::metrics;
pub mod respond;
pub mod routes;
pub mod trace;
pub mod tunnel;

use crate::audit::{Audit, Decision, Event, Kind};
use crate::config::{Config, Limits};
use async_trait::async_trait;
use bytes::Bytes;
use headers::Forwarding;
use path::NormPath;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use respond::Refusal;
use routes::Router;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The gateway's reserved path prefix: its own endpoints, never forwarded.
pub const RESERVED_PREFIX: &str = "/.custos";

/// Requests in progress, for draining on SIGTERM.
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

struct InFlight;
impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight
    }
}
impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-request state, built up phase by phase.
pub struct RequestCtx {
    start: Instant,
    route: Option<Arc<routes::RouteEntry>>,
    path: Option<NormPath>,
    forwarding: Option<Forwarding>,
    trace: Option<trace::TraceContext>,
    refusal: Option<Refusal>,
    /// An allow decision was recorded: `logging` owes a completion record.
    allowed: bool,
    /// Timed phases (start, duration) since `start`: the durable decision record, and
    /// the upstream until its response header.
    audit_phase: Option<(std::time::Duration, std::time::Duration)>,
    upstream_phase: Option<(std::time::Duration, Option<std::time::Duration>)>,
    body_bytes: u64,
    /// The signed-in user, once the session is checked.
    user: Option<Arc<crate::session::Session>>,
    /// SHA-256 of the session id (for audit records).
    session_hash: Option<String>,
    /// Whether the session's sign-in satisfies the MFA rule.
    mfa: Option<bool>,
    /// The request was authenticated by its `Authorization: Bearer` token.
    bearer: bool,
    /// SHA-256 of the bearer token (keys the identity assertion it gets).
    credential_hash: Option<String>,
    /// The bearer token's `exp` (unix seconds): a tunnel it opened ends then.
    credential_expires: Option<u64>,
    /// This request became a WebSocket tunnel, now closed for this reason.
    tunnel_closed: Option<&'static str>,
    /// The policy rule that allowed the request.
    rule: Option<std::sync::Arc<str>>,
    /// The emergency grant the request runs under.
    grant: Option<String>,
    _in_flight: InFlight,
}

impl RequestCtx {
    fn limits<'a>(&'a self, site: &'a Limits) -> &'a Limits {
        self.route.as_ref().map_or(site, |r| &r.limits)
    }
}

/// The proxy service.
pub struct Gateway {
    router: Router,
    limits: Limits,
    headers: crate::config::HeaderSettings,
    tls_listener: Option<std::net::SocketAddr>,
    audit: Option<Audit>,
    auth: Option<Arc<auth::Auth>>,
    policy: Option<Arc<crate::policy::Policy>>,
    breakglass: Option<Arc<crate::breakglass::Settings>>,
    /// `server.methods`, for the gateway's own endpoints (routes carry their own).
    methods: Arc<[http::Method]>,
    /// The gateway's own endpoints this config enables.
    endpoints: endpoints::Table,
    /// Upstream connections for WebSocket tunnels (`tunnel`), never pooled.
    tunnels: pingora::connectors::TransportConnector,
}

/// The policy's object for a request: `<resource>:<path as the upstream gets it>`.
fn policy_object(route: &routes::RouteEntry, path: &NormPath) -> String {
    let forwarded = route.strip_prefix.as_deref().map_or(path.as_str(), |p| path.strip_segments(p));
    format!("{}:{}", route.resource, forwarded)
}

impl Gateway {
    pub fn new(
        cfg: &Config,
        audit: Option<Audit>,
        auth: Option<Arc<auth::Auth>>,
        policy: Option<Arc<crate::policy::Policy>>,
    ) -> Gateway {
        metrics::init();
        if let Some(a) = auth.as_ref().filter(|_| cfg.routes.iter().any(|r| r.websocket)) {
            // Tunnels hold sessions: be subscribed to their ends before the first opens.
            a.store.start_subscriber();
        }
        Gateway {
            endpoints: endpoints::Table::new(auth.as_deref(), cfg.breakglass.is_some(), policy.is_some()),
            router: Router::new(&cfg.routes),
            limits: cfg.limits,
            headers: cfg.headers.clone(),
            tls_listener: cfg.listen_tls.as_ref().map(|t| t.addr),
            audit,
            auth,
            policy,
            breakglass: cfg.breakglass.clone(),
            methods: cfg.server.methods.clone(),
            tunnels: pingora::connectors::TransportConnector::new(None),
        }
    }

    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, r: Refusal) -> Result<bool> {
        self.refuse_as(session, ctx, r, r.reason()).await
    }

    /// [`Gateway::refuse`] with a more precise reason for the audit record than the
    /// page's (the client sees only the page).
    async fn refuse_as(&self, session: &mut Session, ctx: &mut RequestCtx, r: Refusal, reason: &str) -> Result<bool> {
        ctx.refusal = Some(r);
        if let Some(audit) = &self.audit {
            let mut ev = self.access_event(session, ctx, Kind::AccessDecision);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(crate::audit::Reason::named(reason));
            ev.status = Some(r.status());
            audit.append_refusal(ev);
        }
        metrics::DECISIONS.with_label_values(&["deny"]).inc();
        respond::refuse(session, r).await?;
        Ok(true)
    }

    /// The metadata of this request, for an audit record. Never the body, cookies or
    /// tokens; the query only when the route opts in.
    fn access_event(&self, session: &Session, ctx: &RequestCtx, kind: Kind) -> Event {
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
        if let Some(u) = &ctx.user {
            ev.actor = Some(crate::audit::Actor { subject: u.subject.clone(), groups: u.groups.clone() });
        }
        ev.session.clone_from(&ctx.session_hash);
        ev.mfa = ctx.mfa;
        if ctx.grant.is_some() {
            ev.breakglass = Some(true);
            ev.grant.clone_from(&ctx.grant);
        }
        ev.request_id = ctx.forwarding.as_ref().and_then(|f| f.request_id.to_str().ok()).map(str::to_string);
        if let Some(t) = &ctx.trace {
            ev.trace_id = Some(t.trace_id.clone());
            ev.span_id = Some(t.span_id.clone());
            ev.parent_span_id.clone_from(&t.parent_span_id);
        }
        ev
    }

    /// Records the allow decision before anything is forwarded: no access without a
    /// record. Returns false when the request must be refused instead.
    async fn record_allow(&self, session: &Session, ctx: &mut RequestCtx) -> bool {
        metrics::DECISIONS.with_label_values(&["allow"]).inc();
        let Some(audit) = &self.audit else {
            return true;
        };
        let mut ev = self.access_event(session, ctx, Kind::AccessDecision);
        ev.decision = Some(Decision::Allow);
        // The policy rule that allowed it; without [policy], the matched route.
        ev.rule =
            ctx.rule.as_deref().map(str::to_string).or_else(|| ctx.route.as_ref().map(|r| format!("route:{}", r.name)));
        let began = ctx.start.elapsed();
        let result = audit.append_durable(ev).await;
        ctx.audit_phase = Some((began, ctx.start.elapsed() - began));
        match result {
            Ok(_) => {
                ctx.allowed = true;
                true
            }
            Err(e) => match audit.on_failure {
                crate::audit::OnFailure::Deny => {
                    tracing::error!(error = %e, "audit record not durable; refusing access");
                    false
                }
                crate::audit::OnFailure::Allow => {
                    tracing::error!(error = %e, "ALERT: audit record not durable; serving anyway (audit.on_failure = allow)");
                    true
                }
            },
        }
    }

    /// The policy decides; a deny is answered here (403) and recorded with its rule.
    async fn authorize(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.policy.is_none() {
            return Ok(false);
        }
        // Path parameters (`;x`) are dropped by some upstreams before routing, so the
        // object the policy sees would not be the one served: refused on protected routes.
        if ctx.path.as_ref().is_some_and(|p| p.as_str().contains(';')) {
            return self.refuse_as(session, ctx, Refusal::BadPath, "path_parameters").await;
        }
        // Nor may a framework run it as another method than the one decided (override
        // headers are stripped; a form field is the upstream's to ignore, see README).
        if session.req_header().uri.query().is_some_and(headers::method_override) {
            return self.refuse(session, ctx, Refusal::MethodOverride).await;
        }
        if ctx.route.is_none() || ctx.path.is_none() || ctx.user.is_none() {
            // With a policy, a request nobody decided is never forwarded.
            tracing::error!("no user or route at the policy decision; refusing");
            return self.refuse(session, ctx, Refusal::Internal).await;
        }
        let (Some(policy), Some(route), Some(path), Some(user)) = (&self.policy, &ctx.route, &ctx.path, &ctx.user)
        else {
            return Ok(false);
        };
        let obj = policy_object(route, path);
        let client = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()).unwrap_or_default();
        let hour = (crate::session::now_secs() / 3600 % 24) as i64;
        let act = session.req_header().method.as_str().to_string();
        let req = crate::policy::Request {
            sub: &user.subject,
            groups: &user.groups,
            dom: &route.domain,
            obj: &obj,
            act: &act,
            mfa: ctx.mfa.unwrap_or(false),
            breakglass: false,
            client: &client,
            hour,
            route: &route.name,
        };
        let grant = if self.breakglass.is_some() { self.active_grant(session, ctx).await } else { None };
        let req = crate::policy::Request { breakglass: grant.is_some(), ..req };
        ctx.grant = grant.map(|g| g.id);
        let d = policy.decide(&req);
        if d.allow {
            ctx.rule = d.rule;
            return Ok(false);
        }
        // Refused only for want of a second factor (the same request with MFA would be
        // allowed, e.g. a write to a record): ask for the step-up rather than forbid. A
        // browser's GET goes through sign-in again with `acr_values`; anything else (a
        // write, an API call) gets RFC 9470's 401. Looked at on denials only.
        if !req.mfa && policy.decide(&crate::policy::Request { mfa: true, ..req }).allow {
            let max_age = self.auth().and_then(|a| a.settings.oidc.mfa.step_up_max_age).unwrap_or_default();
            return Box::pin(self.challenge(session, ctx, true, true, Some(max_age))).await;
        }
        let route_name = route.name.clone();
        ctx.refusal = Some(Refusal::PolicyDenied);
        if let Some(audit) = &self.audit {
            let mut ev = self.access_event(session, ctx, Kind::AccessDecision);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(crate::audit::Code::Policy.into());
            ev.rule = Some(d.rule.as_deref().unwrap_or("default deny").to_string());
            ev.status = Some(403);
            audit.append_refusal(ev);
        }
        metrics::DECISIONS.with_label_values(&["deny"]).inc();
        // Name the route and the action, never the rule; the method only when it is a
        // standard one (the page echoes no client input).
        let shown = match act.as_str() {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => act.as_str(),
            _ => "this action",
        };
        let wants_html = auth::accepts_html(session.req_header());
        let (body, ctype) = if wants_html {
            (format!("403 Forbidden\n\nYour account may not do {shown} on {route_name}. Ask your security team if you need this access.\n"), "text/plain; charset=utf-8")
        } else {
            (
                serde_json::json!({ "error": "forbidden", "route": route_name, "action": shown }).to_string(),
                "application/json",
            )
        };
        respond::write_full(session, 403, Bytes::from(body), false, &[("content-type", ctype.to_string())]).await?;
        Ok(true)
    }

    fn is_tls(&self, session: &Session) -> bool {
        session.digest().is_some_and(|d| d.ssl_digest.is_some())
            || (self.tls_listener.is_some()
                && session.server_addr().and_then(|a| a.as_inet()).copied() == self.tls_listener)
    }
}

fn classify(e: &Error) -> Refusal {
    match e.etype() {
        ErrorType::HTTPStatus(413) => Refusal::BodyTooLarge,
        ErrorType::HTTPStatus(_) => Refusal::Internal,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            Refusal::UpstreamTimeout
        }
        ErrorType::ReadTimedout if e.esource() == &ErrorSource::Downstream => Refusal::ClientTimeout,
        _ => match e.esource() {
            ErrorSource::Upstream => Refusal::UpstreamUnavailable,
            ErrorSource::Downstream => Refusal::BadFraming,
            _ => Refusal::Internal,
        },
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            route: None,
            path: None,
            forwarding: None,
            trace: None,
            refusal: None,
            allowed: false,
            audit_phase: None,
            upstream_phase: None,
            body_bytes: 0,
            user: None,
            session_hash: None,
            mfa: None,
            bearer: false,
            credential_hash: None,
            credential_expires: None,
            tunnel_closed: None,
            rule: None,
            grant: None,
            _in_flight: InFlight::enter(),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<()> {
        // HTTP/1.1 pipelining (RFC 9112 §9.3.2): the bytes of requests written behind this
        // one are kept for the next request on the connection, answered in order after
        // this one, whoever answers it. Off (pingora's default), they are dropped when the
        // connection is closed after a response that said `keep-alive`.
        session.as_downstream_mut().set_pipelining_enabled(true);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Every request has its span, refused ones too (even for bad framing).
        ctx.trace = Some(trace::TraceContext::from_request(session.req_header()));
        // 1. Ambiguous framing, on the raw bytes pingora kept (HTTP/1.x only; HTTP/2
        //    frames carry their own lengths).
        let framing = match session.as_downstream() {
            ServerSession::H1(h1) => {
                framing::check(&h1.get_headers_raw_bytes(), self.limits.max_header_bytes, self.limits.max_headers)
            }
            _ if session.req_header().headers.len() > self.limits.max_headers => {
                Err(framing::FramingError::TooManyHeaders)
            }
            _ => framing::check_h2(session.req_header()),
        };
        if let Err(e) = framing {
            let r = match e.status() {
                431 => Refusal::HeaderTooLarge,
                414 => Refusal::UriTooLong,
                _ => Refusal::BadFraming,
            };
            tracing::debug!(reason = ?e, "refused request framing");
            return self.refuse(session, ctx, r).await;
        }

        // 2. The path, normalised once.
        let raw = session.req_header().raw_path();
        let raw_path = raw.split(|&b| b == b'?').next().unwrap_or(raw);
        let path = match NormPath::parse(raw_path) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(reason = %e, "refused request path");
                return self.refuse(session, ctx, Refusal::BadPath).await;
            }
        };

        // 3. The gateway's own endpoints.
        if path.starts_with_segments(RESERVED_PREFIX) {
            ctx.path = Some(path.clone());
            if !self.methods.contains(&session.req_header().method) {
                return self.refuse(session, ctx, Refusal::MethodNotAllowed).await;
            }
            ctx.forwarding = Some(Forwarding::new(session, &self.headers.trusted_proxies, self.is_tls(session)));
            Box::pin(self.endpoint(session, ctx, path.as_str())).await?;
            return Ok(true);
        }

        // 4. Identity headers that only the gateway may set; the request id and the
        //    forwarding headers, decided while the peer is at hand.
        headers::strip_identity(session.req_header_mut(), &self.headers.strip);
        let tls = self.is_tls(session);
        ctx.forwarding = Some(Forwarding::new(session, &self.headers.trusted_proxies, tls));

        // 5. The route.
        let host_raw = auth::authority(session.req_header());
        let route = self.router.find(&routes::host_of(host_raw), &path).cloned();
        ctx.path = Some(path);
        let Some(route) = route else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        // Only the methods the route serves: any token is a method, and the policy must
        // never see one spelled like a gateway action.
        if !route.methods.contains(&session.req_header().method) {
            ctx.route = Some(route);
            return self.refuse(session, ctx, Refusal::MethodNotAllowed).await;
        }
        headers::drop_underscored(session.req_header_mut(), &route.underscore_headers);

        // 6. Limits.
        let limits = route.limits;
        ctx.route = Some(route);
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            return self.refuse(session, ctx, Refusal::BodyTooLarge).await;
        }
        session.set_read_timeout(Some(limits.client_read_timeout));
        session.set_keepalive(Some(limits.client_idle_timeout.as_secs()));

        // 6b. Protocol upgrades: refused unless the route tunnels WebSocket (tunnel.rs).
        let websocket = match self.upgrade_asked(session, ctx) {
            Ok(w) => w,
            Err(why) => {
                tracing::debug!(why, "refused a protocol upgrade");
                return self.refuse(session, ctx, Refusal::UpgradeRefused).await;
            }
        };

        // 7. Who is asking: the session, and the route's MFA rule.
        let public = ctx.route.as_ref().is_some_and(|r| r.public);
        if !public && self.authenticate(session, ctx).await? {
            return Ok(true);
        }

        // 8. The policy: may this user do this action on this object?
        if !public && self.authorize(session, ctx).await? {
            return Ok(true);
        }

        // 9. The decision record, durable before anything is forwarded.
        if !self.record_allow(session, ctx).await {
            ctx.refusal = Some(Refusal::AuditUnavailable);
            respond::refuse(session, Refusal::AuditUnavailable).await?;
            return Ok(true);
        }
        if websocket {
            return Box::pin(self.tunnel(session, ctx)).await;
        }

        // 10. A chunked body's first chunk, framed before the head goes upstream. A failure
        //     is the completion of an allowed request (bad_framing, client_timeout).
        if let Err(e) = framing::read_first_chunk(session).await {
            let r = classify(&e);
            ctx.refusal = Some(r);
            session.set_keepalive(None);
            if let Err(err) = respond::refuse(session, r).await {
                tracing::debug!(error = %err, "could not send the error page");
            }
            return Ok(true);
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > ctx.limits(&self.limits).max_body_bytes {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over limits.max_body_bytes");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no route chosen before upstream_peer");
        };
        let up = &route.upstream;
        let Some(addr) = up.addr else {
            return Error::e_explain(ErrorType::InternalError, "upstream address not resolved");
        };
        let mut peer = match &up.tls {
            None => HttpPeer::new(addr, false, String::new()),
            Some(tls) => {
                let mut p = HttpPeer::new(addr, true, tls.sni.clone());
                p.options.ca = tls.ca.clone();
                p.client_cert_key = tls.client_cert.clone();
                p
            }
        };
        peer.options.connection_timeout = Some(route.limits.upstream_connect_timeout);
        peer.options.read_timeout = Some(route.limits.upstream_read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(route), Some(path)) = (ctx.route.as_ref(), ctx.path.as_ref()) else {
            return Error::e_explain(ErrorType::InternalError, "no route chosen before forwarding");
        };
        // The upstream receives exactly the normalised path (less the route's strip
        // prefix) plus the untouched query.
        let forwarded = route.strip_prefix.as_deref().map_or(path.as_str(), |p| path.strip_segments(p));
        let raw = upstream.raw_path();
        let query = raw.iter().position(|&b| b == b'?').map(|i| &raw[i..]).unwrap_or(b"");
        if forwarded.as_bytes() != &raw[..raw.len() - query.len()] || upstream.uri.scheme().is_some() {
            let mut target = String::with_capacity(forwarded.len() + query.len());
            target.push_str(forwarded);
            // The query passed NormPath's caller untouched; it is ASCII or it would not
            // have parsed as a request target.
            target.push_str(std::str::from_utf8(query).unwrap_or(""));
            let uri = http::Uri::try_from(target)
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rebuilding the upstream path", e))?;
            if upstream.headers.get(http::header::HOST).is_none() {
                if let Some(a) = upstream.uri.authority().cloned() {
                    upstream.insert_header(http::header::HOST, a.as_str())?;
                }
            }
            upstream.set_uri(uri);
        }
        if let Some(f) = ctx.forwarding.as_ref() {
            f.apply(upstream)?;
        }
        self.strip_own_cookies(upstream)?;
        if ctx.bearer && !route.forward_authorization {
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
        self.assert_identity(upstream, ctx)?;
        if let Some(t) = ctx.trace.as_ref() {
            upstream.insert_header("traceparent", t.traceparent())?;
        }
        ctx.upstream_phase = Some((ctx.start.elapsed(), None));
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some((began, None)) = ctx.upstream_phase {
            ctx.upstream_phase = Some((began, Some(ctx.start.elapsed() - began)));
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(f) = ctx.forwarding.as_ref() {
            upstream_response.insert_header("x-request-id", f.request_id.clone())?;
        }
        self.strip_own_set_cookies(upstream_response)?;
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        if ctx.tunnel_closed.is_some() {
            // A tunnel's end (recorded by `tunnel`): the connection is dropped, not reused.
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
        let r = classify(e);
        if matches!(r, Refusal::UpstreamUnavailable | Refusal::UpstreamTimeout) {
            let route = ctx.route.as_ref().map_or("-", |r| r.name.as_str());
            match &ctx.route {
                Some(r) => r.upstream_errors.inc(),
                None => metrics::UPSTREAM_ERRORS.with_label_values(&[route]).inc(),
            }
            tracing::warn!(route, error = e.etype().as_str(), "upstream failed");
        }
        ctx.refusal = Some(r);
        let dead = matches!(e.etype(), ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed)
            && e.esource() == &ErrorSource::Downstream;
        let code = if dead || session.response_written().is_some() {
            0
        } else {
            // The connection is not reused after a failed exchange: say so.
            let (status, body) = r.page();
            if let Err(err) = respond::write(session, status, body, true).await {
                tracing::debug!(error = %err, "could not send the error page");
            }
            r.status()
        };
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if let (Some(audit), true) = (&self.audit, ctx.allowed) {
            let mut ev = self.access_event(session, ctx, Kind::AccessCompleted);
            ev.status = Some(status);
            ev.bytes_in = Some(ctx.body_bytes);
            ev.bytes_out = Some(session.body_bytes_sent() as u64);
            ev.duration_ms = Some(ctx.start.elapsed().as_secs_f64() * 1000.0);
            ev.reason = ctx.refusal.map(|r| r.code().into()).or(ctx.tunnel_closed.map(crate::audit::Reason::named));
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            if let Some((s, d)) = ctx.audit_phase {
                ev.phases.push(crate::audit::Phase { name: "audit".into(), start_ms: ms(s), duration_ms: ms(d) });
            }
            if let Some((s, d)) = ctx.upstream_phase {
                let d = d.unwrap_or_else(|| ctx.start.elapsed() - s);
                ev.phases.push(crate::audit::Phase { name: "upstream".into(), start_ms: ms(s), duration_ms: ms(d) });
            }
            audit.append(ev);
        }
        let route = ctx.route.as_ref().map_or("-", |r| r.name.as_str());
        match &ctx.route {
            Some(r) => {
                r.count(status);
                r.latency.observe(ctx.start.elapsed().as_secs_f64());
            }
            None => {
                metrics::REQUESTS.with_label_values(&[route, metrics::status_label(status)]).inc();
                metrics::LATENCY.with_label_values(&[route]).observe(ctx.start.elapsed().as_secs_f64());
            }
        }
        tracing::debug!(
            route,
            status,
            method = %session.req_header().method,
            path = ctx.path.as_ref().map_or("-", |p| p.as_str()),
            refusal = ?ctx.refusal,
            error = e.map(|e| e.etype().as_str()),
            "request"
        );
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Errors are counted in metrics and logged by `fail_to_proxy` without request
        // input; pingora's own log line would print the request summary.
        true
    }
}

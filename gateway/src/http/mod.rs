//! The pingora `ProxyHttp` service: HTTP's front end to the access core. `request_filter`
//! reads like the request path in DESIGN.md, one call per step: refuse ambiguous framing →
//! normalise the path once → gateway endpoints → strip identity headers → match the route
//! → its methods, underscored headers → limits → protocol upgrades (refused, or a
//! WebSocket tunnel once allowed: `tunnel`) → the access core decides (credential,
//! session, MFA rule, grant, policy, the decision record made durable; `enforce` answers
//! its denials) → a chunked body's first chunk framed. Then `upstream_peer` picks the
//! route's upstream, `upstream_request_filter` writes the normalised path and the
//! forwarding headers and removes the gateway's cookies, and `logging` has the core append
//! the completion record and counts metrics. Every refusal is recorded too (health
//! endpoints excepted).

pub mod admin;
pub mod auth;
pub mod breakglass;
pub mod cookies;
mod ctx;
pub mod endpoints;
mod enforce;
pub mod form;
pub mod framing;
pub mod headers;
pub use crate::config::path;
pub use crate::metrics;
pub mod respond;
pub mod routes;
pub mod trace;
pub mod tunnel;

use crate::access::Principal;
use crate::audit::{Audit, Decision, Kind};
use crate::config::{Config, Limits};
use async_trait::async_trait;
use bytes::Bytes;
pub use ctx::{RequestCtx, IN_FLIGHT};
use headers::Forwarding;
use path::NormPath;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use respond::Refusal;
use routes::Router;
use std::sync::Arc;

/// The gateway's reserved path prefix: its own endpoints, never forwarded.
pub const RESERVED_PREFIX: &str = "/.custos";

/// The proxy service.
pub struct Gateway {
    router: Router,
    limits: Limits,
    headers: crate::config::HeaderSettings,
    tls_listener: Option<std::net::SocketAddr>,
    audit: Option<Audit>,
    auth: Option<Arc<auth::Auth>>,
    policy: Option<Arc<crate::policy::Policy>>,
    breakglass: Option<Arc<crate::access::breakglass::Settings>>,
    /// `server.methods`, for the gateway's own endpoints (routes carry their own).
    methods: Arc<[http::Method]>,
    /// The gateway's own endpoints this config enables.
    endpoints: endpoints::Table,
    /// Upstream connections for WebSocket tunnels (`tunnel`), never pooled.
    tunnels: pingora::connectors::TransportConnector,
    /// The databases of `[[databases]]` (name, host, port), for `/.custos/readyz`.
    databases: Vec<(String, String, u16)>,
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
            databases: cfg.databases.iter().map(|d| (d.name.clone(), d.host.clone(), d.port)).collect(),
            endpoints: endpoints::Table::new(
                auth.as_deref(),
                cfg.breakglass.is_some(),
                policy.is_some(),
                endpoints::dblogin::targets(cfg),
            ),
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

    /// Refuses with `r`'s page, recorded with its reason.
    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, r: Refusal) -> Result<bool> {
        ctx.refusal = Some(r);
        if let Some(audit) = &self.audit {
            let mut ev = self.access_event(session, ctx, Kind::AccessDecision);
            ev.decision = Some(Decision::Deny);
            ev.reason = Some(r.code().into());
            ev.status = Some(r.status());
            audit.append_refusal(ev);
        }
        metrics::DENIED.inc();
        respond::refuse(session, r).await?;
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
        RequestCtx::new()
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

        // 7-9. Who is asking and the route's MFA rule (`access`), the grant, the policy: may
        //      this user do this action on this object? The decision record, durable
        //      before anything is forwarded (`enforce`).
        if self.decide(session, ctx).await? {
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
        if ctx.principal.as_ref().is_some_and(Principal::is_bearer) && !route.forward_authorization {
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
        self.assert_identity(upstream, ctx)?;
        if let Some(t) = ctx.trace.as_ref() {
            upstream.insert_header("traceparent", t.traceparent())?;
        }
        ctx.timings.upstream = Some((ctx.timings.start.elapsed(), None));
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some((began, None)) = ctx.timings.upstream {
            ctx.timings.upstream = Some((began, Some(ctx.timings.start.elapsed() - began)));
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(f) = ctx.forwarding.as_ref().filter(|_| self.headers.echo_request_id) {
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
        if ctx.allowed {
            let start = ctx.timings.start;
            let done = crate::access::Completion {
                status: Some(status),
                bytes_in: ctx.body_bytes,
                bytes_out: session.body_bytes_sent() as u64,
                duration: start.elapsed(),
                reason: ctx.refusal.map(|r| r.code().into()).or(ctx.tunnel_closed.map(crate::audit::Reason::named)),
                audit_phase: ctx.timings.audit,
                upstream_phase: ctx.timings.upstream.map(|(s, d)| (s, d.unwrap_or_else(|| start.elapsed() - s))),
                rows: None,
                sqlstate: None,
            };
            let meta = enforce::Meta { session, ctx };
            self.access().complete(&meta, (ctx.principal.as_ref(), &ctx.verdict), done);
        }
        let route = ctx.route.as_ref().map_or("-", |r| r.name.as_str());
        match &ctx.route {
            Some(r) => {
                r.count(status);
                r.latency.observe(ctx.timings.start.elapsed().as_secs_f64());
            }
            None => {
                metrics::REQUESTS.with_label_values(&[route, metrics::status_label(status)]).inc();
                metrics::LATENCY.with_label_values(&[route]).observe(ctx.timings.start.elapsed().as_secs_f64());
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

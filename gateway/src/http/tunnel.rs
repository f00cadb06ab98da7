//! WebSocket tunnels. A protocol upgrade is refused (`upgrade_refused`) unless the
//! route sets `websocket = true` and the request is a plain WebSocket handshake (HTTP/1.1
//! `GET`, no body, `Connection: upgrade`, exactly `Upgrade: websocket`); `h2c` and every
//! other token are always refused. An admitted upgrade goes through sign-in, the policy
//! and the durable allow record like any request, and then the gateway runs the tunnel
//! itself, here, inside `request_filter`:
//!
//! pingora's own proxy loop would forward the upgrade, but after the `101` it only calls
//! the body filters when bytes flow, so a quiet tunnel could never be closed when its
//! session ends, and it cannot be woken from outside. So the gateway connects to the
//! upstream itself (pingora's `TransportConnector`, so TLS and the route's timeouts and
//! CA are the same as for proxied requests), writes the request that the ordinary
//! filters (`upstream_request_filter`) prepared, relays the `101` through
//! `response_filter`, and then pumps bytes both ways in one task, in a `select!` with
//! what ends it: the session's end ([`crate::session::Hold`]: revocation, logout,
//! back-channel logout, idle timeout, absolute lifetime, on any gateway), a policy
//! reload that no longer allows it, and shutdown. Whichever comes first drops the pump
//! (reads are cancel-safe; a write cut short does not matter, both connections close)
//! and both connections are closed: the upstream's by dropping it, the client's by
//! handing pingora an error, so it drops the connection instead of flushing what a
//! client that stopped reading will never take.
//!
//! Memory is bounded: one read buffer per direction (pingora's body buffer), and a
//! direction's next read waits for its write (back-pressure). An open tunnel is not
//! activity: it never moves the session's `last_seen`, so a session used only by a
//! tunnel ends at its idle timeout, and the tunnel with it.

use super::respond::{self, Refusal};
use super::{Gateway, RequestCtx};
use crate::audit::Kind;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession as UpstreamH1;
use pingora::protocols::http::v1::server::HttpSession as DownstreamH1;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// Tunnels open now.
pub static OPEN: AtomicUsize = AtomicUsize::new(0);

/// `custos_tunnels_open`, on the admin listener.
static OPEN_GAUGE: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!("custos_tunnels_open", "WebSocket tunnels open now.")
        .expect("metric registers once")
});

/// Set once, at the end of the SIGTERM grace period: every tunnel closes.
static SHUTDOWN: LazyLock<tokio::sync::watch::Sender<bool>> = LazyLock::new(|| tokio::sync::watch::Sender::new(false));

/// Closes every tunnel (reason `shutdown`); each records its close.
pub fn close_all() {
    SHUTDOWN.send_replace(true);
}

struct Open;
impl Open {
    fn enter() -> Open {
        OPEN.fetch_add(1, Ordering::AcqRel);
        OPEN_GAUGE.inc();
        Open
    }
}
impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
        OPEN_GAUGE.dec();
    }
}

/// Why a refused upgrade was refused (for the debug log; the audit reason is
/// `upgrade_refused` for all of them).
fn refused(req: &RequestHeader, h1_11: bool, route_allows: bool) -> Option<&'static str> {
    let h = &req.headers;
    let upgrades: Vec<&[u8]> = h.get_all(http::header::UPGRADE).iter().map(|v| v.as_bytes()).collect();
    let h2c = h.contains_key("http2-settings") || upgrades.iter().any(|u| u.eq_ignore_ascii_case(b"h2c"));
    if h2c {
        return Some("h2c");
    }
    let connection_upgrade = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    if !matches!(upgrades.as_slice(), [u] if u.trim_ascii().eq_ignore_ascii_case(b"websocket")) {
        return Some("not websocket");
    }
    if !route_allows {
        return Some("route without websocket = true");
    }
    if !h1_11 || req.method != http::Method::GET || !connection_upgrade {
        return Some("not an HTTP/1.1 GET with Connection: upgrade");
    }
    let body = h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes().iter().any(|&b| b != b'0'));
    body.then_some("a body")
}

/// Whether the request asks for a protocol switch at all (an `Upgrade` header, or the
/// `HTTP2-Settings` of an `h2c` upgrade).
/// Looked up on every request: made once, not parsed from a `&str` each time.
const HTTP2_SETTINGS: http::HeaderName = http::HeaderName::from_static("http2-settings");

fn asks_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE) || req.headers.contains_key(HTTP2_SETTINGS)
}

/// Headers that belong to one hop and are not what the upstream must see.
const HOP_BY_HOP: [&str; 6] =
    ["keep-alive", "proxy-connection", "te", "trailer", "http2-settings", "transfer-encoding"];

impl Gateway {
    /// `Ok(true)`: a WebSocket handshake to tunnel once allowed; `Ok(false)`: no upgrade
    /// asked; `Err(detail)`: an upgrade to refuse.
    pub(super) fn upgrade_asked(&self, session: &Session, ctx: &RequestCtx) -> std::result::Result<bool, &'static str> {
        let req = session.req_header();
        if !asks_upgrade(req) {
            return Ok(false);
        }
        let h1_11 = matches!(session.as_downstream(), ServerSession::H1(_)) && req.version == http::Version::HTTP_11;
        let allows = ctx.route.as_ref().is_some_and(|r| r.websocket && !r.public);
        match refused(req, h1_11, allows) {
            Some(why) => Err(why),
            None => Ok(true),
        }
    }

    /// Runs an allowed WebSocket upgrade to its end (see the module). Always answers.
    pub(super) async fn tunnel(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(mut hold) = self.hold_for(ctx).await else {
            tracing::error!("a tunnel without a session or token to bind it to; refusing");
            return self.tunnel_failed(session, ctx, Refusal::Internal).await;
        };
        let mut decided = Decided::new(self, session, ctx);
        let peer = self.upstream_peer(session, ctx).await?;
        let mut req = session.req_header().clone();
        // The headers the client named hop-by-hop go before the gateway adds its own, so
        // that `Connection: upgrade, x-forwarded-for` cannot remove what Custos sets.
        drop_connection_named(&mut req);
        self.upstream_request_filter(session, &mut req, ctx).await?;
        prepare(&mut req)?;
        let Some(limits) = ctx.route.as_ref().map(|r| r.limits) else {
            return self.tunnel_failed(session, ctx, Refusal::Internal).await;
        };

        // The handshake, bounded by the route's upstream timeouts.
        let stream = match self.tunnels.new_stream(&*peer).await {
            Ok(s) => s,
            Err(e) => {
                let r = if e.etype() == &ErrorType::ConnectTimedout {
                    Refusal::UpstreamTimeout
                } else {
                    Refusal::UpstreamUnavailable
                };
                return self.tunnel_failed(session, ctx, r).await;
            }
        };
        let mut up = UpstreamH1::new_with_options(stream, &*peer);
        up.read_timeout = Some(limits.upstream_read_timeout);
        up.write_timeout = Some(limits.upstream_read_timeout);
        if up.write_request_header(Box::new(req)).await.is_err() {
            return self.tunnel_failed(session, ctx, Refusal::UpstreamUnavailable).await;
        }
        let mut informational = 0;
        let resp = loop {
            if let Err(e) = up.read_response().await {
                let r = if e.etype() == &ErrorType::ReadTimedout {
                    Refusal::UpstreamTimeout
                } else {
                    Refusal::UpstreamUnavailable
                };
                return self.tunnel_failed(session, ctx, r).await;
            }
            match up.resp_header() {
                Some(r) if r.status.is_informational() && r.status != 101 && informational < 8 => informational += 1,
                Some(r) => break r.clone(),
                None => return self.tunnel_failed(session, ctx, Refusal::UpstreamUnavailable).await,
            }
        };
        if resp.status != 101 {
            // The upstream declined: its answer goes to the client as a normal response.
            return self.relay_refusal(session, ctx, up, resp).await;
        }
        let websocket = resp
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"));
        if !up.was_upgraded() || !websocket {
            tracing::warn!("the upstream switched to something other than websocket; closed");
            return self.tunnel_failed(session, ctx, Refusal::UpstreamUnavailable).await;
        }
        let mut resp = resp;
        self.response_filter(session, &mut resp, ctx).await?;
        session.write_response_header(Box::new(resp), false).await?;
        if let Some(audit) = &self.audit {
            let mut ev = self.access_event(session, ctx, Kind::TunnelOpened);
            ev.status = Some(101);
            ev.rule = ctx.verdict.rule.as_deref().map(str::to_string);
            audit.append(ev);
        }
        tracing::debug!("tunnel opened");

        // The tunnel. Its life is the session's, not the sockets' timeouts.
        session.set_read_timeout(None);
        up.read_timeout = None;
        up.write_timeout = None;
        up.maybe_upgrade_body_writer();
        let _open = Open::enter();
        let opened = Instant::now();
        let mut counts = (0u64, 0u64);
        let mut shutdown = SHUTDOWN.subscribe();
        let why = {
            let ServerSession::H1(down) = session.as_downstream_mut() else {
                return Error::e_explain(ErrorType::InternalError, "a tunnel on a downstream that is not HTTP/1.1");
            };
            if !down.was_upgraded() {
                return Error::e_explain(ErrorType::InternalError, "the downstream did not switch protocols");
            }
            tokio::select! {
                why = pump(down, &mut up, &mut counts) => why,
                why = hold.ended() => why.as_str(),
                _ = decided.withdrawn() => "policy_reload",
                _ = shutdown.wait_for(|s| *s) => "shutdown",
            }
        };
        drop(up);
        ctx.body_bytes = counts.0;
        ctx.tunnel_closed = Some(why);
        if let Some(audit) = &self.audit {
            let mut ev = self.access_event(session, ctx, Kind::TunnelClosed);
            ev.bytes_in = Some(counts.0);
            ev.bytes_out = Some(counts.1);
            ev.duration_ms = Some(opened.elapsed().as_secs_f64() * 1000.0);
            ev.reason = Some(crate::audit::Reason::named(why));
            audit.append(ev);
        }
        tracing::debug!(why, bytes_in = counts.0, bytes_out = counts.1, "tunnel closed");
        // An error, so that pingora drops the client's connection at once (see the module).
        Error::e_explain(ErrorType::ConnectionClosed, "tunnel closed")
    }

    /// What ends the tunnel with the credential: the session's hold, or a bearer token's
    /// expiry; an emergency grant's end too, when the request ran under one.
    async fn hold_for(&self, ctx: &RequestCtx) -> Option<crate::session::Hold> {
        let store = &self.auth.as_ref()?.store;
        let p = ctx.principal.as_ref()?;
        let user = &p.user;
        let grant_end = ctx
            .verdict
            .grant
            .as_ref()
            .and_then(|id| user.breakglass.as_ref().filter(|g| &g.id == id))
            .map(|g| g.expires);
        match &p.credential {
            crate::access::Credential::Bearer { expires, .. } => {
                Some(store.hold_until(grant_end.map_or(*expires, |g| g.min(*expires))))
            }
            crate::access::Credential::Session { hash } => Some(store.hold(hash, user, grant_end).await),
        }
    }

    /// The allow was recorded: the completion record carries the failure (as for a
    /// proxied request that fails upstream).
    async fn tunnel_failed(&self, session: &mut Session, ctx: &mut RequestCtx, r: Refusal) -> Result<bool> {
        if matches!(r, Refusal::UpstreamUnavailable | Refusal::UpstreamTimeout) {
            if let Some(route) = &ctx.route {
                route.upstream_errors.inc();
            }
        }
        ctx.refusal = Some(r);
        respond::refuse_with(session, r, vec![("connection", "close".into())]).await?;
        session.set_keepalive(None);
        Ok(true)
    }

    /// The upstream answered the handshake with something else than `101`: relayed as is
    /// (through `response_filter`), and the connection closed after it.
    async fn relay_refusal(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut up: UpstreamH1,
        mut resp: pingora::http::ResponseHeader,
    ) -> Result<bool> {
        self.upstream_response_filter(session, &mut resp, ctx).await?;
        self.response_filter(session, &mut resp, ctx).await?;
        session.set_keepalive(None);
        let done = up.is_body_done();
        session.write_response_header(Box::new(resp), done).await?;
        if !done {
            while let Some(b) = up.read_body_bytes().await.map_err(|e| e.into_up())? {
                session.write_response_body(Some(b), false).await?;
            }
            session.write_response_body(None, true).await?;
        }
        Ok(true)
    }
}

/// Removes the headers the client's `Connection` names (RFC 9110 §7.6.1), but for the
/// upgrade itself.
fn drop_connection_named(req: &mut RequestHeader) {
    let named: Vec<String> = req
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|t| !t.is_empty() && t != "upgrade")
        .collect();
    for name in &named {
        req.remove_header(name.as_str());
    }
}

/// The request as the upstream gets it, after the gateway's own headers are on it:
/// HTTP/1.1, the one upgrade it may ask for, no other hop-by-hop header.
fn prepare(req: &mut RequestHeader) -> Result<()> {
    req.set_version(http::Version::HTTP_11);
    for name in HOP_BY_HOP {
        req.remove_header(name);
    }
    req.remove_header(&http::header::CONTENT_LENGTH);
    req.insert_header(http::header::CONNECTION, "Upgrade")?;
    req.insert_header(http::header::UPGRADE, "websocket")?;
    Ok(())
}

/// Bytes both ways until one side closes: (client to upstream, upstream to client).
async fn pump(down: &mut DownstreamH1, up: &mut UpstreamH1, n: &mut (u64, u64)) -> &'static str {
    loop {
        tokio::select! {
            r = down.read_body_bytes() => match r {
                Ok(Some(b)) => {
                    n.0 += b.len() as u64;
                    if up.write_body(&b).await.is_err() {
                        return "upstream_closed";
                    }
                }
                Ok(None) | Err(_) => return "client_closed",
            },
            r = up.read_body_bytes() => match r {
                Ok(Some(b)) => {
                    n.1 += b.len() as u64;
                    if down.write_body(&b).await.is_err() {
                        return "client_closed";
                    }
                }
                Ok(None) | Err(_) => return "upstream_closed",
            },
        }
    }
}

/// The policy decision that let the tunnel open, kept to be made again on reload.
struct Decided {
    policy: Option<(Arc<crate::policy::Policy>, tokio::sync::watch::Receiver<u64>)>,
    route: Option<Arc<super::routes::RouteEntry>>,
    user: Option<Arc<crate::session::Session>>,
    obj: String,
    act: String,
    mfa: bool,
    breakglass: bool,
    client: String,
}

impl Decided {
    fn new(gw: &Gateway, session: &Session, ctx: &RequestCtx) -> Decided {
        let (route, path) = (ctx.route.as_ref(), ctx.path.as_ref());
        Decided {
            // Subscribed before the first re-decision below: no reload slips between.
            policy: gw.policy.as_ref().map(|p| (p.clone(), p.reloads())),
            route: route.cloned(),
            user: ctx.user().cloned(),
            obj: match (route, path) {
                (Some(r), Some(p)) => crate::access::object(r, p),
                _ => String::new(),
            },
            act: session.req_header().method.as_str().to_string(),
            mfa: ctx.mfa().unwrap_or(false),
            breakglass: ctx.verdict.grant.is_some(),
            client: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()).unwrap_or_default(),
        }
    }

    fn allowed(&self, policy: &crate::policy::Policy) -> bool {
        // A tunnel opens on a protected route only: signed in, routed.
        let (Some(route), Some(user)) = (&self.route, &self.user) else { return false };
        policy
            .decide(&crate::policy::Request {
                mfa: self.mfa,
                breakglass: self.breakglass,
                client: &self.client,
                ..crate::access::policy_request(route, &user.subject, &user.groups, &self.obj, &self.act)
            })
            .allow
    }

    /// Resolves when a policy in force no longer allows the tunnel (checked once now, for
    /// a reload since the decision, then after each reload). Without a policy, never.
    async fn withdrawn(&mut self) {
        let Some((policy, mut rx)) = self.policy.take() else { return std::future::pending().await };
        rx.mark_unchanged();
        if !self.allowed(&policy) {
            return;
        }
        loop {
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
            if !self.allowed(&policy) {
                return;
            }
        }
    }
}

/// How long a closed tunnel may take to be recorded at shutdown.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/live", None).unwrap();
        for (k, v) in lines {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn only_a_plain_websocket_handshake_on_an_opted_in_route_is_admitted() {
        let ws = [("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")];
        assert_eq!(refused(&req(&ws), true, true), None);
        assert!(refused(&req(&ws), true, false).is_some(), "a route without websocket = true");
        assert!(refused(&req(&ws), false, true).is_some(), "not HTTP/1.1");
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ];
        assert_eq!(refused(&req(&h2c), true, true), Some("h2c"));
        for other in ["websocket, h2c", "TLS/1.0", "websocketx", "h2c"] {
            assert!(refused(&req(&[("connection", "upgrade"), ("upgrade", other)]), true, true).is_some(), "{other}");
        }
        assert!(refused(&req(&[("upgrade", "websocket")]), true, true).is_some(), "without Connection: upgrade");
        let mut with_body = req(&ws);
        with_body.insert_header("content-length", "5").unwrap();
        assert!(refused(&with_body, true, true).is_some());
        let mut post = req(&ws);
        post.set_method(http::Method::POST);
        assert!(refused(&post, true, true).is_some());
    }

    #[test]
    fn the_upstream_request_asks_for_websocket_and_nothing_else_hop_by_hop() {
        let mut r = req(&[
            ("connection", "Upgrade, x-secret, x-forwarded-for"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
        ]);
        drop_connection_named(&mut r);
        // What the gateway sets after that is never removed by a name the client gave.
        r.insert_header("x-forwarded-for", "192.0.2.7").unwrap();
        prepare(&mut r).unwrap();
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert_eq!(r.headers.get("connection").unwrap(), "Upgrade");
        assert_eq!(r.headers.get("upgrade").unwrap(), "websocket");
        assert!(r.headers.get("x-secret").is_none() && r.headers.get("keep-alive").is_none());
    }
}

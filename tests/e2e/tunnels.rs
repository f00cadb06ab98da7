//! Protocol upgrades. Refused unless the route opts in (`websocket = true`), `h2c`
//! always; an allowed WebSocket upgrade is decided by the policy and becomes a tunnel
//! that lives no longer than its session: closed within 1 s of `custos session revoke`
//! on another gateway sharing the Redis, at logout, at a back-channel logout, at the
//! idle timeout (tunnel traffic is not activity), at a bearer token's `exp`, when a
//! reload withdraws the permission, when a session ended while the gateway was not
//! subscribed, and at the end of the SIGTERM grace period; its opening and close are on
//! the record (bytes each way, duration, why).
//!
//! The upstream is a tiny WebSocket stand-in: it answers the handshake with `101` and
//! then echoes raw bytes (the gateway does not read frames, so bytes are enough).

use crate::harness::*;
use custos::session::{Session, SessionStore, Timeouts};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends an upgrade request; the status and, on `101`, the open connection.
async fn upgrade(gw: SocketAddr, path: &str, headers: &str, cookie: Option<&str>) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(gw).await.unwrap();
    let cookie = cookie.map(|c| format!("Cookie: custos_session={c}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{cookie}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await.expect("no answer").unwrap();
        assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, s)
}

const WS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A round trip through the tunnel.
async fn echoes(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got)).await.expect("no echo").unwrap();
    assert_eq!(got, msg);
}

/// Waits up to `limit` for the gateway to close the connection; how long it took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn user() -> Session {
    Session {
        subject: "alice".into(),
        email: None,
        name: None,
        groups: vec!["clinicians".into()],
        amr: vec!["pwd".into()],
        acr: None,
        auth_time: None,
        created: 0,
        last_seen: 0,
        client: None,
        sid: None,
        idp_sub: None,
        validated: 0,
        breakglass: None,
        sealed: false,
        db: None,
        lifetime: None,
    }
}

/// A session made directly in the gateway's Redis (sign-in itself is tested elsewhere).
async fn session(s: &Site, idle: u64) -> String {
    session_of(s, idle, user()).await
}

async fn session_of(s: &Site, idle: u64, u: Session) -> String {
    let t = Timeouts {
        idle: Duration::from_secs(idle),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_secs(1),
    };
    let store = SessionStore::connect(&s.redis, &s.prefix, t).await.unwrap();
    store.create(u, None, None).await.unwrap().cookie_value().to_string()
}

fn policy_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (model, policy) = (dir.join("model.conf"), dir.join("policy.csv"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::copy(root.join("hipaa_model.conf"), &model).unwrap();
    std::fs::write(&policy, ALLOW).unwrap();
    (model, policy)
}

/// The policy allows `GET /app` too: the route, not the policy, refuses its upgrades.
const ALLOW: &str = "p, clinician, cardiology, ws:/live/feed, GET, allow\np, clinician, cardiology, app:/app, GET, allow\ng, group:clinicians, clinician, cardiology\n";
const WITHDRAWN: &str =
    "p, clinician, cardiology, ws:/live/other, GET, allow\ng, group:clinicians, clinician, cardiology\n";

fn routes(up: SocketAddr) -> String {
    format!(
        r#"[[routes]]
name = "app"
upstream = "http://{up}"
require_mfa = false
domain = "cardiology"

[[routes]]
name = "live"
path = "/live"
upstream = "http://{up}"
require_mfa = false
resource = "ws"
domain = "cardiology"
websocket = true
"#
    )
}

async fn live_site(up: SocketAddr, policy: &Path, model: &Path, extra: &str, o: Opts<'_>) -> Site {
    let policy =
        format!("[policy]\nmodel = \"{}\"\npolicy = \"{}\"\npoll_ms = 100\n", model.display(), policy.display());
    site(Opts { session: extra, policy: &policy, routes: Some(routes(up)), ..o }).await
}

#[tokio::test]
async fn upgrades_are_refused_unless_the_route_opts_in_and_a_tunnel_ends_with_its_credential() {
    let (up, echo) = echo_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let (model, policy) = policy_files(tmp.path());
    let o = Opts { oidc: "api_audience = \"urn:custos:api\"", ..Default::default() };
    let s = live_site(up, &policy, &model, "idle_timeout_secs = 3\ntouch_interval_secs = 1", o).await;
    let dir = s.gw.audit_dir();
    let id = session(&s, 3).await;

    // Today's hole: an upgrade on an ordinary route reached the upstream and became an
    // opaque tunnel. Refused now, with a record, and nothing forwarded.
    let (st, _) = upgrade(s.gw.http, "/app", WS, Some(&id)).await;
    assert_eq!(st, 400, "an upgrade on a route without websocket = true was not refused");
    let ev =
        audit_has(&dir, |r| reason(r).as_deref() == Some("upgrade_refused") && r.route.as_deref() == Some("app")).await;
    assert_eq!(decision(&ev).as_deref(), Some("deny"));
    // h2c, anywhere; and any token but websocket.
    let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    assert_eq!(upgrade(s.gw.http, "/live/feed", h2c, Some(&id)).await.0, 400);
    assert_eq!(upgrade(s.gw.http, "/app", h2c, Some(&id)).await.0, 400);
    assert_eq!(upgrade(s.gw.http, "/live/feed", "Connection: Upgrade\r\nUpgrade: TLS/1.0\r\n", Some(&id)).await.0, 400);
    // On the opted-in route, sign-in and the policy decide like for any request.
    assert_eq!(upgrade(s.gw.http, "/live/feed", WS, None).await.0, 401);
    assert_eq!(upgrade(s.gw.http, "/live/secret", WS, Some(&id)).await.0, 403);
    assert!(echo.heads.lock().unwrap().is_empty(), "a refused upgrade reached the upstream");

    // The provider ends the user's sessions over the back channel: the tunnel closes.
    let bc = session_of(&s, 3, Session { idp_sub: Some("alice-at-idp".into()), ..user() }).await;
    let (st, mut t) = upgrade(s.gw.http, "/live/feed", WS, Some(&bc)).await;
    assert_eq!(st, 101);
    echoes(&mut t, b"ping").await;
    let client_id = {
        let text = std::fs::read_to_string(s.gw.dir.path().join("custos.toml")).unwrap();
        text.lines().find_map(|l| l.strip_prefix("client_id = \"")).unwrap().trim_end_matches('"').to_string()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let logout = serde_json::json!({ "iss": s.idp, "aud": client_id, "iat": now, "jti": uuid::Uuid::now_v7().to_string(),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": "alice-at-idp" });
    let token = signed(&s.idp, serde_json::json!({ "typ": "logout+jwt" }), logout).await;
    let r =
        client().post(s.gw.url("/.custos/backchannel-logout")).form(&[("logout_token", token)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let took = closed_within(&mut t, Duration::from_secs(5)).await.expect("the tunnel outlived a back-channel logout");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let hash = sha256(&bc);
    let ev = audit_has(&dir, |r| kind(r) == "tunnel.closed" && r.session.as_deref() == Some(hash.as_str())).await;
    assert_eq!(reason(&ev).as_deref(), Some("backchannel_logout"));
    echo.heads.lock().unwrap().clear();

    // Allowed: a tunnel. The upstream gets the handshake without the gateway's cookie.
    let (st, mut t) = upgrade(s.gw.http, "/live/feed", WS, Some(&id)).await;
    assert_eq!(st, 101);
    echoes(&mut t, b"hello through the tunnel").await;
    let head = echo.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /live/feed http/1.1") && head.contains("upgrade: websocket"), "{head}");
    assert!(!head.contains("custos_session"), "the session cookie reached the upstream: {head}");

    // Tunnel traffic is not activity: the session (idle 3 s) ends and the tunnel with it.
    let started = Instant::now();
    for _ in 0..3 {
        echoes(&mut t, b"still here").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    closed_within(&mut t, Duration::from_secs(10)).await.expect("the tunnel outlived its idle session");
    assert!(started.elapsed() < Duration::from_secs(8), "closed after {:?}", started.elapsed());
    let idle = sha256(&id);
    let closed = audit_has(&dir, |r| kind(r) == "tunnel.closed" && r.session.as_deref() == Some(idle.as_str())).await;
    assert_eq!(reason(&closed).as_deref(), Some("session_idle_timeout"), "{closed:?}");
    assert_eq!(closed.bytes_in, Some(24 + 3 * 10));
    assert_eq!(closed.bytes_out, Some(24 + 3 * 10));
    assert_eq!(subject(&closed), Some("alice"));
    assert!(closed.duration_ms.unwrap() > 1000.0, "{closed:?}");
    audit_has(&dir, |r| kind(r) == "tunnel.opened" && r.status == Some(101) && r.route.as_deref() == Some("live"))
        .await;

    // A bearer token is no session: its tunnel ends at the token's `exp`.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({ "iss": s.idp, "aud": "urn:custos:api", "sub": "carol", "iat": now, "exp": now + 3,
        "groups": ["clinicians"], "amr": ["pwd"] });
    let token = signed(&s.idp, serde_json::json!({ "typ": "at+jwt" }), claims).await;
    let (st, mut t) = upgrade(s.gw.http, "/live/feed", &format!("{WS}Authorization: Bearer {token}\r\n"), None).await;
    assert_eq!(st, 101);
    echoes(&mut t, b"ping").await;
    assert!(closed_within(&mut t, Duration::from_secs(10)).await.is_some(), "the tunnel outlived its token");
    let ev = audit_has(&dir, |r| kind(r) == "tunnel.closed" && subject(r) == Some("carol")).await;
    assert_eq!(reason(&ev).as_deref(), Some("credential_expired"));
    assert!(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() >= now + 3,
        "closed before the token expired"
    );
}

/// A tunnel, once the policy (reloaded a moment ago) allows it.
async fn open_when_allowed(s: &Site, id: &str) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, t) = upgrade(s.gw.http, "/live/feed", WS, Some(id)).await;
        if st == 101 {
            return t;
        }
        assert!(Instant::now() < deadline, "no tunnel: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_tunnel_ends_with_its_session_on_every_gateway_and_on_reload_and_shutdown() {
    let (up, echo) = echo_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let (model, policy) = policy_files(tmp.path());
    let (token, line) = admin_token(tmp.path(), "ops-oncall");
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let prefix = format!("custos:test:{}", uuid::Uuid::now_v7().simple());
    let mut a = live_site(up, &policy, &model, "", Opts { prefix: Some(prefix.clone()), ..Default::default() }).await;
    let b = live_site(
        up,
        &policy,
        &model,
        "",
        Opts { prefix: Some(prefix), admin_tokens: Some(&tokens), ..Default::default() },
    )
    .await;
    let dir = a.gw.audit_dir();

    // Revoked through the other gateway: closed on this one within 1 s of the command.
    let id = session(&a, 600).await;
    let (st, mut t) = upgrade(a.gw.http, "/live/feed", WS, Some(&id)).await;
    assert_eq!(st, 101);
    echoes(&mut t, b"ping").await;
    let metrics = client().get(format!("http://{}/metrics", a.gw.admin)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("custos_tunnels_open 1"), "{metrics}");
    let hash = sha256(&id);
    let out = Command::new(CUSTOS)
        .args(["session", "revoke", "--session", &hash, "--admin", &format!("http://{}", b.gw.admin), "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = closed_within(&mut t, Duration::from_secs(5)).await.expect("the tunnel outlived its revoked session");
    assert!(took < Duration::from_secs(1), "closed {took:?} after the revocation");
    let ev = audit_has(&dir, |r| kind(r) == "tunnel.closed" && r.session.as_deref() == Some(hash.as_str())).await;
    assert_eq!(reason(&ev).as_deref(), Some("session_revoked"));
    assert_eq!((ev.bytes_in, ev.bytes_out), (Some(4), Some(4)));

    // Logout.
    let id = session(&a, 600).await;
    let (_, mut t) = upgrade(a.gw.http, "/live/feed", WS, Some(&id)).await;
    echoes(&mut t, b"ping").await;
    let r = client()
        .post(a.gw.url("/.custos/logout"))
        .header("cookie", format!("custos_session={id}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_redirection(), "{}", r.status());
    assert!(closed_within(&mut t, Duration::from_secs(5)).await.is_some(), "the tunnel outlived the logout");
    let hash = sha256(&id);
    audit_has(&dir, |r| {
        kind(r) == "tunnel.closed"
            && r.session.as_deref() == Some(hash.as_str())
            && reason(r).as_deref() == Some("logout")
    })
    .await;

    // A reload that withdraws the permission closes it.
    let id = session(&a, 600).await;
    let (_, mut t) = upgrade(a.gw.http, "/live/feed", WS, Some(&id)).await;
    echoes(&mut t, b"ping").await;
    std::fs::write(&policy, WITHDRAWN).unwrap();
    assert!(closed_within(&mut t, Duration::from_secs(10)).await.is_some(), "the tunnel outlived its permission");
    audit_has(&dir, |r| kind(r) == "tunnel.closed" && reason(r).as_deref() == Some("policy_reload")).await;
    assert_eq!(upgrade(a.gw.http, "/live/feed", WS, Some(&id)).await.0, 403);

    // Pub/sub drops what is published while a subscriber reconnects: after subscribing
    // again, every held session is read again. Here the subscriptions are cut and the
    // session vanishes with no announcement at all; the re-check finds it.
    std::fs::write(&policy, ALLOW).unwrap();
    let id = session(&a, 600).await;
    let mut t = open_when_allowed(&a, &id).await;
    echoes(&mut t, b"ping").await;
    let mut c = redis::Client::open(a.redis.as_str()).unwrap().get_connection().unwrap();
    let _: redis::Value = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query(&mut c).unwrap();
    let _: i64 = redis::cmd("DEL").arg(format!("{}:s:{}", a.prefix, sha256(&id))).query(&mut c).unwrap();
    let took = closed_within(&mut t, Duration::from_secs(10))
        .await
        .expect("a session ended while unsubscribed kept its tunnel");
    assert!(took < Duration::from_secs(5), "found only after {took:?} (by the periodic sweep, not the re-check)");
    let hash = sha256(&id);
    audit_has(&dir, |r| {
        kind(r) == "tunnel.closed"
            && r.session.as_deref() == Some(hash.as_str())
            && reason(r).as_deref() == Some("session_ended")
    })
    .await;

    // SIGTERM: open tunnels are closed at the end of the grace period (5 s), recorded.
    let id = session(&a, 600).await;
    let mut t = open_when_allowed(&a, &id).await;
    echoes(&mut t, b"ping").await;
    let _ = Command::new("kill").args(["-TERM", &a.gw.pid().to_string()]).status();
    let took = closed_within(&mut t, Duration::from_secs(15)).await.expect("the tunnel outlived the shutdown");
    assert!(took > Duration::from_secs(3), "closed {took:?} after SIGTERM, before the grace period ended");
    a.gw.stop().await;
    audit_has(&dir, |r| kind(r) == "tunnel.closed" && reason(r).as_deref() == Some("shutdown")).await;
    // The upstream side of every tunnel was closed too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.closed.load(std::sync::atomic::Ordering::SeqCst) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(echo.closed.load(std::sync::atomic::Ordering::SeqCst), 5, "an upstream connection was left open");
    // The other gateway's subscription was cut once (above), never by its own pings.
    let lost = b.gw.log().matches("subscribing again").count();
    assert!(lost <= 1, "the subscription was re-made {lost} times:\n{}", b.gw.log());
}

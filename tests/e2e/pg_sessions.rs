//! A database connection lives only as long as what signed it in: revoking the token's
//! session on another gateway, its idle timeout and the provider's back-channel logout
//! close an idle connection (FATAL 57P01, recorded); `custos session revoke --user`
//! closes an access token's connection; and a cancel sent to another gateway reaches the
//! query running through the first.

use crate::harness::postgres::pg;
use crate::harness::*;
use crate::postgres::pg_site_with;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A database token for `db` minted through the gateway's sign-in endpoints (the flow
/// `custos db login` drives), for `user` signed in with the one-time code.
pub async fn db_token(s: &Site, db: &str, user: &str, password: &str) -> String {
    let c = browser();
    let r = sign_in(s, &c, "/patients", user, password, Some("123456")).await;
    assert_eq!(r.status(), 302, "{user} could not sign in");
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = custos::session::dbtoken::s256(&verifier);
    let url = format!("{}/.custos/db/login?db={db}&port=40001&challenge={challenge}&state=state-0123456789", s.origin);
    let r = nav(&c, &url).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let back = url::Url::parse(&location(&r)).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let r = client()
        .post(format!("{}/.custos/db/token", s.origin))
        .form(&[("code", code.as_str()), ("verifier", verifier.as_str())])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["token"].as_str().unwrap_or_else(|| panic!("no token: {v}")).to_string()
}

/// An administrator token file for `custos session` and the tokens file with its hash.
fn admin_tokens(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = Command::new(CUSTOS).args(["admin-token", "ops"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    let line = text.lines().nth(1).unwrap().split(':').nth(1).unwrap().trim().to_string();
    std::fs::write(dir.join("tokens"), format!("{line}\n")).unwrap();
    std::fs::write(dir.join("my-token"), token).unwrap();
    (dir.join("tokens"), dir.join("my-token"))
}

fn session_cli(s: &Site, token: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(CUSTOS)
        .arg("session")
        .args(args)
        .args(["--admin", &format!("http://{}", s.gw.admin)])
        .arg("--token-file")
        .arg(token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw protocol client: enough to sign in, hold Custos's cancel key, and read what the
/// server says.
pub struct Raw {
    pub stream: tokio::net::TcpStream,
    pub pid: i32,
    pub secret: Vec<u8>,
}

fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

pub fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads one message: its tag and body.
pub async fn read_msg(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

impl Raw {
    /// Signs in over plaintext (the listener allows it) and reads to ReadyForQuery.
    pub async fn connect(port: u16, user: &str, password: &str) -> Raw {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(&startup(user, "ehr")).await.unwrap();
        let (tag, _) = read_msg(&mut stream).await.unwrap();
        assert_eq!(tag, b'R');
        let mut pw = password.as_bytes().to_vec();
        pw.push(0);
        stream.write_all(&tagged(b'p', &pw)).await.unwrap();
        let (mut pid, mut secret) = (0, Vec::new());
        loop {
            let (tag, body) =
                tokio::time::timeout(Duration::from_secs(20), read_msg(&mut stream)).await.unwrap().unwrap();
            match tag {
                b'K' => {
                    pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    secret = body[4..].to_vec();
                }
                b'Z' => break,
                b'E' => panic!("refused: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
        Raw { stream, pid, secret }
    }

    /// The next ErrorResponse's SQLSTATE, within `within`.
    pub async fn error_code(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (tag, body) = tokio::time::timeout(left, read_msg(&mut self.stream)).await.ok()??;
            if tag == b'E' {
                return body
                    .split(|b| *b == 0)
                    .find_map(|f| f.strip_prefix(b"C"))
                    .map(|c| String::from_utf8_lossy(c).into_owned());
            }
        }
    }
}

/// Sends a CancelRequest for `(pid, secret)` to `port`.
async fn send_cancel(port: u16, pid: i32, secret: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut m = ((12 + secret.len()) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&80877102u32.to_be_bytes());
    m.extend_from_slice(&pid.to_be_bytes());
    m.extend_from_slice(secret);
    s.write_all(&m).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
}

#[tokio::test]
async fn revoking_the_token_on_another_gateway_closes_an_idle_connection_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, my_token) = admin_tokens(dir.path());
    let db = pg().database("gw_revoke");
    let prefix = format!("custos:test:{}", uuid::Uuid::now_v7().simple());
    let (a, port) = pg_site_with(&db, "", crate::postgres::PLAINTEXT, Some(&prefix), None).await;
    let (b, _) = pg_site_with(&db, "", crate::postgres::PLAINTEXT, Some(&prefix), Some(&tokens)).await;
    let token = db_token(&a, "ehr", "alice", "alice-password").await;
    let hash = sha256(&token);
    let mut conn = Raw::connect(port, "alice", &token).await;

    let out = session_cli(&b, &my_token, &["revoke", "--session", &hash]);
    assert!(out.contains("\"revoked\":1"), "{out}");
    let revoked = Instant::now();
    let code = conn.error_code(Duration::from_secs(5)).await;
    let took = revoked.elapsed();
    assert_eq!(code.as_deref(), Some("57P01"), "the connection was not told");
    assert!(took < Duration::from_secs(1), "closed {took:?} after the revocation returned");
    let end = audit_has(&a.gw.audit_dir(), |r| {
        kind(r) == "access.completed" && r.verb.as_deref() == Some("connect") && r.session.as_deref() == Some(&hash)
    })
    .await;
    assert_eq!(reason(&end).as_deref(), Some("session_revoked"));
    assert_eq!(end.sqlstate.as_deref(), Some("57P01"));
}

#[tokio::test]
async fn the_idle_timeout_and_the_providers_logout_close_connections() {
    let db = pg().database("gw_idle");
    let extra = format!("session_idle_timeout_secs = 3\n{}", crate::postgres::PLAINTEXT);
    let (s, port) = crate::postgres::pg_site_full(&db, "", &extra, "touch_interval_secs = 1", None, None).await;
    let token = db_token(&s, "ehr", "alice", "alice-password").await;
    let mut conn = Raw::connect(port, "alice", &token).await;
    let opened = Instant::now();
    let code = conn.error_code(Duration::from_secs(10)).await;
    assert_eq!(code.as_deref(), Some("57P01"));
    assert!(opened.elapsed() >= Duration::from_secs(2), "closed before the idle timeout");
    let hash = sha256(&token);
    let end = audit_has(&s.gw.audit_dir(), |r| {
        kind(r) == "access.completed" && r.verb.as_deref() == Some("connect") && r.session.as_deref() == Some(&hash)
    })
    .await;
    assert_eq!(reason(&end).as_deref(), Some("session_idle_timeout"), "{end:?}");

    // The provider signs the user out over the back channel: the token's connection ends.
    let token = db_token(&s, "ehr", "nora", "nora-password").await;
    let mut conn = Raw::connect(port, "nora", &token).await;
    let now = now_secs();
    let client_id = {
        let text = std::fs::read_to_string(s.gw.dir.path().join("custos.toml")).unwrap();
        text.lines().find_map(|l| l.strip_prefix("client_id = \"")).unwrap().trim_end_matches('"').to_string()
    };
    let logout = serde_json::json!({ "iss": s.idp, "aud": client_id, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": "nora" });
    let lt = signed(&s.idp, serde_json::json!({ "typ": "logout+jwt" }), logout).await;
    let r = client()
        .post(format!("{}/.custos/backchannel-logout", s.origin))
        .form(&[("logout_token", lt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(conn.error_code(Duration::from_secs(5)).await.as_deref(), Some("57P01"));
}

#[tokio::test]
async fn revoking_a_user_closes_an_access_token_connection_and_a_cancel_crosses_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, my_token) = admin_tokens(dir.path());
    let db = pg().database("gw_cross");
    let prefix = format!("custos:test:{}", uuid::Uuid::now_v7().simple());
    let api = "api_audience = \"urn:custos:api\"\njwks_min_refresh_secs = 1";
    let (a, port_a) = pg_site_with(&db, api, crate::postgres::PLAINTEXT, Some(&prefix), None).await;
    let (b, port_b) = pg_site_with(&db, api, crate::postgres::PLAINTEXT, Some(&prefix), Some(&tokens)).await;
    let at = tokens_for(&a, "alice").await;

    // A query running through A, cancelled by a CancelRequest sent to B.
    let mut conn = Raw::connect(port_a, "alice", &at).await;
    conn.stream.write_all(&tagged(b'Q', b"SELECT pg_sleep(30)\0")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    send_cancel(port_b, conn.pid, &conn.secret).await;
    assert_eq!(conn.error_code(Duration::from_secs(10)).await.as_deref(), Some("57014"));
    assert!(sent.elapsed() < Duration::from_secs(10));
    // A key nobody issued cancels nothing (and the wrong secret neither).
    let mut other = Raw::connect(port_a, "alice", &at).await;
    other.stream.write_all(&tagged(b'Q', b"SELECT pg_sleep(2)\0")).await.unwrap();
    let mut wrong = other.secret.clone();
    wrong[0] ^= 0xff;
    send_cancel(port_b, other.pid, &wrong).await;
    let mut got = None;
    while let Some((tag, _)) = tokio::time::timeout(Duration::from_secs(10), read_msg(&mut other.stream)).await.unwrap()
    {
        if tag == b'C' || tag == b'E' {
            got = Some(tag);
            break;
        }
    }
    assert_eq!(got, Some(b'C'), "a cancel with the wrong secret cancelled the query");

    // The access token's connection has no session: revoking the user closes it.
    let idle = Raw::connect(port_a, "alice", &at).await;
    let mut idle = idle;
    let out = session_cli(&b, &my_token, &["revoke", "--user", "alice"]);
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(idle.error_code(Duration::from_secs(2)).await.as_deref(), Some("57P01"));
    drop(b);
}

async fn tokens_for(s: &Site, user: &str) -> String {
    let t = tokens(&s.idp, user, &format!("{user}-password"), "123456").await;
    t["access_token"].as_str().unwrap().to_string()
}

//! `custos db login` against the real OpenID provider, Redis and (once) Chromium: the
//! loopback flow with the real command line, the database's MFA rule, PKCE verifiers and
//! one-time codes, loopback-only redirects, the flow without a browser and the phishing
//! it must resist, the token as its own session (never a browser cookie, listed, capped
//! and revoked like any), and where the command line writes it.

use crate::harness::*;
use custos::session::dbtoken::s256;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Two databases: `ehr` needs MFA and has its own token lifetime (600 s idle, 1 h);
/// `notes` does not need MFA (the site does).
fn databases(dir: &Path) -> String {
    let pw = dir.join("db-password");
    std::fs::write(&pw, "not-used-here").unwrap();
    format!(
        r#"
[[databases]]
name = "ehr"
host = "127.0.0.1"
require_mfa = true
session_idle_timeout_secs = 600
session_absolute_timeout_secs = 3600
[databases.tls]
mode = "disable"
[databases.roles]
readers = {{ user = "ehr_ro", password = {{ file = "{pw}" }} }}

[[databases]]
name = "notes"
host = "127.0.0.1"
require_mfa = false
[databases.tls]
mode = "disable"
[databases.roles]
readers = {{ user = "notes_ro", password = {{ file = "{pw}" }} }}
"#,
        pw = pw.display()
    )
}

/// A site with the two databases; `opts` for the rest.
async fn db_site(dir: &Path, opts: Opts<'_>) -> Site {
    let listen = format!("postgres = \"127.0.0.1:{}\"", free_port());
    let extra = databases(dir);
    site(Opts { listen: &listen, extra: &extra, ..opts }).await
}

/// A PKCE verifier (64 unreserved characters) and its S256 challenge.
fn pkce() -> (String, String) {
    let v = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let c = s256(&v);
    (v, c)
}

/// A browser signed in as `user` at `path`; its session id.
async fn signed_in(s: &Site, path: &str, user: &str, pass: &str, otp: Option<&str>) -> (reqwest::Client, String) {
    let c = browser();
    let r = sign_in(s, &c, path, user, pass, otp).await;
    assert_eq!(r.status(), 302, "{user} could not sign in at {path}");
    let id = cookie_value(&r, "custos_session").expect("a session cookie");
    (c, id)
}

fn login_url(s: &Site, db: &str, extra: &str, challenge: &str) -> String {
    format!("{}/.custos/db/login?db={db}{extra}&challenge={challenge}&state=state-0123456789", s.origin)
}

/// The one-time code the gateway sends the browser to the listener with.
async fn code_for(c: &reqwest::Client, s: &Site, db: &str, challenge: &str) -> String {
    let r = nav(c, &login_url(s, db, "&port=40001", challenge)).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let back = location(&r);
    assert!(back.starts_with("http://127.0.0.1:40001/callback?code="), "{back}");
    assert!(back.ends_with("&state=state-0123456789"), "{back}");
    let u = url::Url::parse(&back).unwrap();
    u.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
}

/// `POST /.custos/db/token` with `form`: status and JSON.
async fn token_req(s: &Site, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client().post(format!("{}/.custos/db/token", s.origin)).form(form).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// The token record in Redis, by the token's hash.
fn token_record(s: &Site, token: &str) -> Option<Value> {
    let mut conn = redis::Client::open(s.redis.as_str()).unwrap().get_connection().unwrap();
    let raw: Option<String> =
        redis::cmd("GET").arg(format!("{}:s:{}", s.prefix, sha256(token))).query(&mut conn).unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

fn redis_keys(s: &Site) -> Vec<String> {
    let mut conn = redis::Client::open(s.redis.as_str()).unwrap().get_connection().unwrap();
    redis::cmd("KEYS").arg(format!("{}:*", s.prefix)).query(&mut conn).unwrap()
}

/// Everything in the audit directory, as text.
fn audit_text(s: &Site) -> String {
    std::fs::read_dir(s.gw.audit_dir())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect()
}

/// A `BROWSER` script (`sh`, mode 0755) in `dir`.
fn browser_script(dir: &Path, body: &str) -> std::path::PathBuf {
    let f = dir.join("browser.sh");
    std::fs::write(&f, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f
}

/// Runs the real `custos db login` (within 180 s): success, stdout, stderr.
async fn db_login(cmd: &mut tokio::process::Command) -> (bool, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.kill_on_drop(true).output())
        .await
        .expect("custos db login took over 180 s")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The whole loopback flow: the real command line opens "the browser" (Chromium driven
/// through the IdP's form with the second factor), gets the code on its listener, and
/// trades it for a token that Redis holds only by hash, with the database's timeouts.
#[tokio::test]
async fn the_command_line_gets_a_token_through_chromium_with_mfa() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let node = tool("node", "nodejs");
    let log = dir.path().join("browser.log");
    let script = browser_script(
        dir.path(),
        &format!(
            "cd '{}' && exec '{}' db-login.mjs \"$1\" 2>>'{}'",
            node_dir().display(),
            node.display(),
            log.display()
        ),
    );
    let (ok, out, err) = db_login(
        tokio::process::Command::new(CUSTOS)
            .args(["db", "login", "ehr", "--gateway", &s.origin, "--print", "password", "--timeout", "150"])
            .env("BROWSER", &script)
            .env("CHROMIUM", tool("chromium", "chromium"))
            .env("DB_LOGIN_USER", "alice")
            .env("DB_LOGIN_PASSWORD", "alice-password")
            .env("DB_LOGIN_OTP", "123456")
            .env("HOME", dir.path()),
    )
    .await;
    let browser_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "custos db login failed: {err}\nbrowser: {browser_log}\ngateway: {}", s.gw.log());
    let token = out.trim().strip_prefix("PGPASSWORD=").unwrap_or_else(|| panic!("{out}")).to_string();
    assert_eq!(token.len(), 64);
    assert!(browser_log.contains("Go back to your terminal"), "{browser_log}");

    // Redis: the record under the token's hash, the token itself nowhere.
    let rec = token_record(&s, &token).expect("no token record under its hash");
    assert_eq!(rec["subject"], "alice");
    assert_eq!(rec["db"], "ehr");
    assert_eq!(rec["lifetime"], serde_json::json!({ "idle_secs": 600, "absolute_secs": 3600 }));
    assert!(rec["amr"].as_array().unwrap().iter().any(|a| a == "otp"), "{rec}");
    assert!(redis_keys(&s).iter().all(|k| !k.contains(&token)));
    let mut conn = redis::Client::open(s.redis.as_str()).unwrap().get_connection().unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(format!("{}:s:{}", s.prefix, sha256(&token))).query(&mut conn).unwrap();
    assert!(ttl > 300 && ttl <= 900, "the token's TTL follows the database's idle timeout (600 s + grace): {ttl}");

    // Audit: who, which database, the token's hash and the browser session's, never the token.
    let dir_a = s.gw.audit_dir();
    let issued = audit_has(&dir_a, |r| kind(r) == "db.token_issued").await;
    assert_eq!(subject(&issued), Some("alice"));
    assert_eq!(issued.database.as_deref(), Some("ehr"));
    assert_eq!(issued.session.as_deref(), Some(&*sha256(&token)));
    assert_eq!(issued.mfa, Some(true));
    assert_eq!(reason(&issued).as_deref(), Some("loopback"));
    let login = audit_has(&dir_a, |r| kind(r) == "auth.login").await;
    assert_eq!(issued.from_session, login.session, "the browser session it was made from");
    assert_ne!(issued.from_session, issued.session);
    assert!(!audit_text(&s).contains(&token), "the token is in the audit trail");
}

/// Where the token goes: ~/.pgpass (mode 0600, the line replaced on the next login) with
/// the psql command printed, or a URI; always `sslmode=verify-full` and `sslrootcert`.
#[tokio::test]
async fn the_token_is_written_to_pgpass_or_printed_with_verify_full() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let (_c, id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    // A browser already signed in: curl with the session cookie, following the redirect.
    let curl = tool("curl", "curl");
    let script = browser_script(
        dir.path(),
        &format!("exec '{}' -s -o /dev/null -H 'cookie: custos_session={id}' -L \"$1\"", curl.display()),
    );
    let ca = certs().join("ca.pem");
    let ca_abs = std::fs::canonicalize(&ca).unwrap();
    let run = |print: &'static str| {
        let mut c = tokio::process::Command::new(CUSTOS);
        c.args(["db", "login", "ehr", "--gateway", &s.origin, "--pg-host", "db.example.test", "--pg-port", "6432"])
            .args(["--print", print, "--ca"])
            .arg(&ca)
            .env("BROWSER", &script)
            .env("HOME", dir.path())
            .env_remove("PGPASSFILE")
            .env_remove("CUSTOS_GATEWAY");
        c
    };
    let (ok, out, err) = db_login(&mut run("pgpass")).await;
    assert!(ok, "{err}\n{}", s.gw.log());
    let pgpass = dir.path().join(".pgpass");
    let text = std::fs::read_to_string(&pgpass).unwrap();
    let first =
        text.trim().strip_prefix("db.example.test:6432:*:alice:").unwrap_or_else(|| panic!("{text}")).to_string();
    assert_eq!(std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(token_record(&s, &first).is_some());
    assert_eq!(
        out.trim(),
        format!(
            "psql \"host=db.example.test port=6432 dbname=ehr user=alice sslmode=verify-full sslrootcert={}\"",
            ca_abs.display()
        )
    );
    // Again: one line for this host, port and user, with the new token.
    let (ok, _, err) = db_login(&mut run("pgpass")).await;
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&pgpass).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains(&first), "the old token was kept");
    // A URI.
    let (ok, out, err) = db_login(&mut run("uri")).await;
    assert!(ok, "{err}");
    let uri = out.trim();
    assert!(uri.starts_with("postgresql://alice:"), "{uri}");
    assert!(uri.contains("@db.example.test:6432/ehr?sslmode=verify-full&sslrootcert=%2F"), "{uri}");
    let token = uri.strip_prefix("postgresql://alice:").unwrap().split('@').next().unwrap();
    assert!(token_record(&s, token).is_some());
    assert!(!audit_text(&s).contains(token));
}

/// `ehr` needs MFA: a one-factor session is sent to step up, and a one-factor sign-in is
/// refused. `notes` does not, though the site does: the same session gets a code there.
#[tokio::test]
async fn a_one_factor_user_is_refused_where_the_database_needs_mfa() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let (c, _) = signed_in(&s, "/", "bob", "bob-password", None).await;
    let (verifier, challenge) = pkce();
    let r = nav(&c, &login_url(&s, "ehr", "&port=40001", &challenge)).await;
    assert_eq!(r.status(), 302);
    let auth = location(&r);
    assert!(auth.starts_with(&s.idp) && auth.contains("acr_values=urn%3Acustos%3Amfa"), "not a step-up: {auth}");
    let callback = idp_login(&c, &s.idp, &auth, "bob", "bob-password", None).await;
    let r = nav(&c, &callback).await;
    assert_eq!(r.status(), 403, "a one-factor sign-in was accepted for a database that needs MFA");
    let failed = audit_has(&s.gw.audit_dir(), |r| kind(r) == "auth.login_failed").await;
    assert_eq!(reason(&failed).as_deref(), Some("mfa"));

    let (c, _) = signed_in(&s, "/", "bob", "bob-password", None).await;
    let code = code_for(&c, &s, "notes", &challenge).await;
    let (status, v) = token_req(&s, &[("code", &code), ("verifier", &verifier)]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"], "bob");
    assert_eq!(v["database"], "notes");
    // Without a database of that name: refused before any sign-in.
    let r = nav(&browser(), &login_url(&s, "nope", "&port=40001", &challenge)).await;
    assert_eq!(r.status(), 404);
    audit_has(&s.gw.audit_dir(), |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("database")).await;
}

/// A code has one try, with the verifier it was made for; a used code is refused.
#[tokio::test]
async fn a_wrong_verifier_and_a_replayed_code_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let (c, browser_id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let (verifier, challenge) = pkce();
    let (other, _) = pkce();
    let code = code_for(&c, &s, "ehr", &challenge).await;
    let (status, v) = token_req(&s, &[("code", &code), ("verifier", &other)]).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("verifier")), "{v}");
    let (status, v) = token_req(&s, &[("code", &code), ("verifier", &verifier)]).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("code")), "a code survived a wrong verifier: {v}");

    let code = code_for(&c, &s, "ehr", &challenge).await;
    let (status, v) = token_req(&s, &[("code", &code), ("verifier", &verifier)]).await;
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["session"].as_str(), Some(&*sha256(&token)));
    let (status, v) = token_req(&s, &[("code", &code), ("verifier", &verifier)]).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("code")), "a code was used twice: {v}");
    let (status, _) = token_req(&s, &[("code", "not-a-code"), ("verifier", &verifier)]).await;
    assert_eq!(status, 400);

    // The token and the browser session are two sessions: ending one leaves the other.
    assert_eq!(status_with(&s, &browser_id).await, 200);
    let dir_a = s.gw.audit_dir();
    audit_has(&dir_a, |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("verifier")).await;
    audit_has(&dir_a, |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("code")).await;
    let issued = records_in(&[&dir_a], |r| kind(r) == "db.token_issued");
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].from_session.as_deref(), Some(&*sha256(&browser_id)));
}

/// The browser is sent back to a loopback listener with a numeric port, nowhere else.
#[tokio::test]
async fn only_a_loopback_redirect_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let (c, _) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let (_, challenge) = pkce();
    for bad in [
        "&host=evil.example&port=443",
        "&host=localhost&port=40001",
        "&host=127.0.0.2&port=40001",
        "&port=40001%40evil.example",
        "&port=443.evil.example",
        "&port=0",
        "",
    ] {
        let r = nav(&c, &login_url(&s, "ehr", bad, &challenge)).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get("location").is_none(), "{bad}");
    }
    let r = nav(&c, &login_url(&s, "ehr", "&host=%5B%3A%3A1%5D&port=40001", &challenge)).await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with("http://[::1]:40001/callback?code="), "{}", location(&r));
    let refused =
        records_in(&[s.gw.audit_dir()], |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("loopback"));
    assert_eq!(refused.len(), 7, "every refusal is recorded");
    assert_eq!(subject(&refused[0]), None, "the link is checked before anyone signs in");
}

/// Reads the command line's stderr until it has printed the URL and the code to compare.
async fn url_and_code(err: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> (String, String, String) {
    let mut lines = Vec::new();
    let mut line = String::new();
    while err.read_line(&mut line).await.unwrap() > 0 {
        lines.push(std::mem::take(&mut line));
        let all = lines.concat();
        if let Some(at) = all.find("must show the code ") {
            let rest = &all[at + "must show the code ".len()..];
            let code = rest.split(' ').next().unwrap().to_string();
            let host = rest.split("the computer ").nth(1).unwrap().split(". ").next().unwrap().to_string();
            let url = all.lines().find(|l| l.contains("/.custos/db/login?")).unwrap().trim().to_string();
            return (url, code, host);
        }
    }
    panic!("the command line printed no URL and code: {}", lines.concat());
}

/// The confirmation page's form token.
fn form_token(page: &str) -> String {
    page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

/// Without a browser: the command line prints a URL and a code; the person signs in
/// wherever, sees the same code and host name, confirms, and the command line's poll
/// gets the token.
#[tokio::test]
async fn without_a_browser_the_person_confirms_the_code_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let mut child = tokio::process::Command::new(CUSTOS)
        .args(["db", "login", "ehr", "--no-browser", "--gateway", &s.origin, "--print", "password"])
        .env("HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (url, code, host) = tokio::time::timeout(Duration::from_secs(30), url_and_code(&mut err)).await.unwrap();
    assert!(url.starts_with(&format!("{}/.custos/db/login?db=ehr&device=", s.origin)), "{url}");
    assert_eq!(code.len(), 9, "{code}");

    // Not signed in yet: through the sign-in (with MFA) and back to the page.
    let c = browser();
    let r = nav(&c, &url).await;
    assert_eq!(r.status(), 302);
    let callback = idp_login(&c, &s.idp, &location(&r), "alice", "alice-password", Some("123456")).await;
    let r = nav(&c, &callback).await;
    assert_eq!(r.status(), 302);
    let back = location(&r);
    assert!(url.ends_with(&back), "not sent back to the page: {back}");
    let r = nav(&c, &url).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains(&code) && page.contains(&host) && page.contains("127.0.0.1"), "{page}");
    let r = c
        .post(format!("{}/.custos/db/login", s.origin))
        .form(&[("db", "ehr"), ("device", url.rsplit('=').next().unwrap()), ("csrf", &form_token(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8_lossy(&out.stdout);
    let token = out.trim().strip_prefix("PGPASSWORD=").unwrap_or_else(|| panic!("{out}"));
    let rec = token_record(&s, token).expect("no token record");
    assert_eq!(rec["subject"], "alice");
    let issued = audit_has(&s.gw.audit_dir(), |r| kind(r) == "db.token_issued").await;
    assert_eq!(reason(&issued).as_deref(), Some("device"));
    assert!(!audit_text(&s).contains(token));
}

/// An attacker starts a device login and sends its URL to alice. What stands between the
/// attacker and alice's token:
/// - signing in through the link releases nothing: only alice's own click on the
///   gateway's page, which shows the attacker's code, host name and address with a
///   warning, confirms it;
/// - that click cannot be forged from another site: the form's token is bound to
///   alice's browser session and to this login (the attacker's own token does not fit);
/// - the token goes only to whoever holds the verifier: someone else who has the URL (a
///   forwarded link, a screen share) gets nothing and ends the login;
/// - a login is confirmed once: if someone else confirms first, the owner's page says so.
#[tokio::test]
async fn a_device_login_link_sent_to_someone_else_does_not_give_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let start = |challenge: String| {
        let origin = s.origin.clone();
        async move {
            let r = client()
                .post(format!("{origin}/.custos/db/device"))
                .form(&[("db", "ehr"), ("challenge", challenge.as_str()), ("host", "attacker-box")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let (attacker_verifier, challenge) = pkce();
    let d = start(challenge).await;
    let url = d["url"].as_str().unwrap().to_string();
    let device = d["device"].as_str().unwrap().to_string();
    let poll = |verifier: String, device: String| token_req_owned(&s, device, verifier);

    // alice follows the link and signs in.
    let (alice, alice_id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let r = nav(&alice, &url).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let code = d["user_code"].as_str().unwrap();
    assert!(page.contains(&format!("{}-{}", &code[..4], &code[4..])), "the page does not show the code: {page}");
    assert!(page.contains("attacker-box") && page.contains("If someone sent you this link"), "{page}");
    let (status, v) = poll(attacker_verifier.clone(), device.clone()).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("authorization_pending")), "signing in alone released it");

    // A forged confirmation: no form token, or the attacker's own (made for their session).
    let (_attacker, attacker_id) = signed_in(&s, "/patients", "nora", "nora-password", Some("123456")).await;
    let r = nav(&_attacker, &url).await;
    let attacker_token = form_token(&r.text().await.unwrap());
    for csrf in ["", attacker_token.as_str()] {
        let r = client()
            .post(format!("{}/.custos/db/login", s.origin))
            .header("cookie", format!("custos_session={alice_id}"))
            .header("origin", "https://evil.example")
            .form(&[("db", "ehr"), ("device", device.as_str()), ("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a confirmation forged from another site was taken");
    }
    let (status, v) = poll(attacker_verifier.clone(), device.clone()).await;
    assert_eq!(v["error"], "authorization_pending", "{status} {v}");
    assert_ne!(attacker_id, alice_id);

    // Someone with the URL but not the verifier: nothing, and the login is over.
    let (other_verifier, _) = pkce();
    let (status, v) = poll(other_verifier, device.clone()).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("verifier")));
    let (status, v) = poll(attacker_verifier, device.clone()).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("device")), "{v}");

    // Confirmed once: a login someone else confirmed first is refused to its owner's page.
    let (owner_verifier, challenge) = pkce();
    let d = start(challenge).await;
    let url = d["url"].as_str().unwrap().to_string();
    let device = d["device"].as_str().unwrap().to_string();
    let r = nav(&_attacker, &url).await;
    let token = form_token(&r.text().await.unwrap());
    let r = _attacker
        .post(format!("{}/.custos/db/login", s.origin))
        .form(&[("db", "ehr"), ("device", device.as_str()), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = nav(&alice, &url).await;
    assert_eq!(r.status(), 409, "the owner was not told someone else confirmed");
    let (status, v) = poll(owner_verifier, device).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"], "nora", "the token is the confirming person's, and the command line prints whose");
    let dir_a = s.gw.audit_dir();
    audit_has(&dir_a, |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("csrf")).await;
    audit_has(&dir_a, |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("device_confirmed")).await;
    let issued = records_in(&[&dir_a], |r| kind(r) == "db.token_issued");
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(subject(&issued[0]), Some("nora"));
}

async fn token_req_owned(s: &Site, device: String, verifier: String) -> (u16, Value) {
    token_req(s, &[("device", &device), ("verifier", &verifier)]).await
}

/// A token is a database's credential: as a browser's session cookie it is no session.
#[tokio::test]
async fn a_token_is_refused_as_a_browser_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let (c, id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&c, &s, "ehr", &challenge).await;
    let (status, v) = token_req(&s, &[("code", &code), ("verifier", &verifier)]).await;
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap();
    assert_eq!(status_with(&s, token).await, 401, "a database token worked as a session cookie");
    let r = browser()
        .get(format!("{}/patients/1", s.origin))
        .header("accept", "text/html")
        .header("cookie", format!("custos_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a browser with a token for a cookie is sent to sign in");
    // And it makes no further token either.
    let r = client()
        .get(login_url(&s, "ehr", "&port=40001", &challenge))
        .header("cookie", format!("custos_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(token_record(&s, token).is_some(), "refusing it ended it");
    assert_eq!(status_with(&s, &id).await, 200);
}

/// A token is a session of the user's: listed, counted in `max_sessions_per_user`, and
/// ended by `custos session revoke`, by its hash or with the user's, on its own.
#[tokio::test]
async fn tokens_are_listed_capped_and_revoked_like_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (token_file, line) = admin_token(dir.path(), "ops");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let s = db_site(
        dir.path(),
        Opts { admin_tokens: Some(&tokens), session: "max_sessions_per_user = 3", ..Default::default() },
    )
    .await;
    let (c, id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let get = || {
        let (c, s) = (c.clone(), &s);
        async move {
            // Sessions made in one second are of no order: the cap ends the oldest.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let (verifier, challenge) = pkce();
            let code = code_for(&c, s, "ehr", &challenge).await;
            let (status, v) = token_req(s, &[("code", &code), ("verifier", &verifier)]).await;
            assert_eq!(status, 200, "{v}");
            v["token"].as_str().unwrap().to_string()
        }
    };
    let first = get().await;
    let second = get().await;
    let admin = format!("http://{}", s.gw.admin);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(CUSTOS)
            .arg("session")
            .args(args)
            .args(["--admin", &admin, "--token-file"])
            .arg(&token_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let listed = cli(&["list", "--user", "alice"]);
    let hashes: Vec<&str> =
        listed["sessions"].as_array().unwrap().iter().map(|x| x["session"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 3, "{listed}");
    for t in [&id, &first, &second] {
        assert!(hashes.contains(&&*sha256(t)), "{listed}");
    }
    // One more than the cap: the oldest (the browser's) ends.
    let third = get().await;
    assert_eq!(status_with(&s, &id).await, 401, "the cap did not count the tokens");
    assert!(token_record(&s, &third).is_some());

    // Revoked by its hash: that token alone.
    let out = cli(&["revoke", "--session", &sha256(&first)]);
    assert_eq!(out["revoked"], 1, "{out}");
    assert!(token_record(&s, &first).is_none());
    assert!(token_record(&s, &second).is_some());
    // With the user: every token.
    let out = cli(&["revoke", "--user", "alice"]);
    assert_eq!(out["revoked"], 2, "{out}");
    assert!(token_record(&s, &second).is_none() && token_record(&s, &third).is_none());
    let ev = audit_has(&s.gw.audit_dir(), |r| {
        kind(r) == "admin.session_revoked" && r.session.as_deref() == Some(&*sha256(&first))
    })
    .await;
    assert_eq!(ev.target.as_deref(), Some("alice"));
}

#[test]
fn db_login_help_explains_it_to_a_newcomer() {
    let out = std::process::Command::new(CUSTOS).args(["db", "login", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["browser", "127.0.0.1", "~/.pgpass", "--no-browser", "--print", "--ca", "sslrootcert", "revoked"] {
        assert!(text.contains(needle), "`custos db login --help` does not mention {needle}:\n{text}");
    }
}

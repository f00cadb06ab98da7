//! `custos db login` against the real OpenID provider, Redis and (once) Chromium: the
//! loopback flow with the real command line, the database's MFA rule, PKCE verifiers and
//! one-time codes, loopback-only redirects, and where the command line writes the token
//! (here); the flow without a browser and the phishing it must resist (`device`); the
//! token as its own session, never a browser cookie, listed, capped and revoked like any
//! (`sessions`); the printed psql command reaching the database with the token (`psql`).
//! The fixtures below are theirs too.

mod device;
mod psql;
mod sessions;

use crate::harness::*;
use custos::session::dbtoken::s256;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

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

/// The records for which `pred` holds, once there are `n` of them (or after 10 s: then
/// the caller's count fails).
async fn records_eventually(
    s: &Site,
    n: usize,
    pred: impl Fn(&custos::audit::Event) -> bool,
) -> Vec<custos::audit::Event> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = records_in(&[s.gw.audit_dir()], &pred);
        if v.len() >= n || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let browser_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "custos db login failed: {err}\nbrowser: {}\ngateway: {}", browser_log(), s.gw.log());
    let token = out.trim().strip_prefix("PGPASSWORD=").unwrap_or_else(|| panic!("{out}")).to_string();
    assert_eq!(token.len(), 64);
    // The browser landed on the command line's listener (it writes its log as it closes).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !browser_log().contains("Go back to your terminal") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(browser_log().contains("\"url\":\"http://127.0.0.1:"), "{}", browser_log());
    assert!(browser_log().contains("Go back to your terminal"), "{}", browser_log());

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
    let issued = records_eventually(&s, 1, |r| kind(r) == "db.token_issued").await;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].from_session.as_deref(), Some(&*sha256(&browser_id)));
}

/// Refused token requests are bounded per client address (`oidc.max_logins_per_minute`),
/// and device logins started count as sign-ins started.
#[tokio::test]
async fn refused_token_requests_and_device_logins_are_bounded_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts { oidc: "max_logins_per_minute = 3", ..Default::default() }).await;
    let (verifier, challenge) = pkce();
    let bad = unknown_code();
    for _ in 0..3 {
        let (status, v) = token_req(&s, &[("code", &bad), ("verifier", &verifier)]).await;
        assert_eq!((status, v["error"].as_str()), (400, Some("code")), "{v}");
    }
    let (status, v) = token_req(&s, &[("code", &bad), ("verifier", &verifier)]).await;
    assert_eq!((status, v["error"].as_str()), (429, Some("login_rate")), "{v}");
    audit_has(&s.gw.audit_dir(), |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("login_rate")).await;
    let start = || {
        client().post(format!("{}/.custos/db/device", s.origin)).form(&[
            ("db", "ehr"),
            ("challenge", challenge.as_str()),
            ("host", "box"),
        ])
    };
    for _ in 0..3 {
        assert_eq!(start().send().await.unwrap().status(), 200);
    }
    assert_eq!(start().send().await.unwrap().status(), 429);
}

/// A well-formed code no one was given (64 lowercase hex digits).
fn unknown_code() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
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
        records_eventually(&s, 7, |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("loopback")).await;
    assert_eq!(refused.len(), 7, "every refusal is recorded");
    assert_eq!(subject(&refused[0]), None, "the link is checked before anyone signs in");
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

//! The PostgreSQL front end with real clients (psql, pgbench, tokio-postgres) against the
//! harness's PostgreSQL: TLS required and verified, tokens checked, the person's role
//! upstream and their name in `application_name`, every statement of simple, extended and
//! pipelined traffic recorded once as a decision and once as a completion, and no literal
//! anywhere Custos writes.

use crate::harness::postgres::{pg, TestDb};
use crate::harness::*;
use std::path::Path;

pub const API: &str = "api_audience = \"urn:custos:api\"\njwks_min_refresh_secs = 1";

/// A site whose PostgreSQL listener serves `db` as database `ehr`.
pub async fn pg_site(db: &TestDb, oidc: &str, extra: &str) -> (Site, u16) {
    pg_site_with(db, oidc, extra, None, None).await
}

/// [`pg_site`] with a Redis prefix (gateways that share sessions share it) and an
/// administrator tokens file. `extra` lines that are keys of the `[[databases]]` entry
/// (before any table header in `extra`) go into it.
pub async fn pg_site_with(
    db: &TestDb,
    oidc: &str,
    extra: &str,
    prefix: Option<&str>,
    admin_tokens: Option<&Path>,
) -> (Site, u16) {
    pg_site_full(db, oidc, extra, "", prefix, admin_tokens).await
}

/// [`pg_site_with`] with `[session]` lines.
pub async fn pg_site_full(
    db: &TestDb,
    oidc: &str,
    extra: &str,
    session: &str,
    prefix: Option<&str>,
    admin_tokens: Option<&Path>,
) -> (Site, u16) {
    let port = free_port();
    let listen = format!("postgres = \"127.0.0.1:{port}\"");
    let (tables, keys): (Vec<&str>, Vec<&str>) = {
        let mut in_table = false;
        extra.lines().partition(|l| {
            in_table |= l.trim_start().starts_with('[');
            in_table
        })
    };
    let block = db.toml("ehr").replacen("[databases.tls]", &format!("{}\n[databases.tls]", keys.join("\n")), 1);
    let extra = format!("{block}\n{}", tables.join("\n"));
    let s = site(Opts {
        listen: &listen,
        extra: &extra,
        oidc,
        session,
        prefix: prefix.map(str::to_string),
        admin_tokens,
        ..Default::default()
    })
    .await;
    (s, port)
}

/// [`pg_site`] whose one role is `dba` (`db`'s owner, who may write), with `extra` after
/// the `[[databases]]` block (so a `[databases.limits]` table there is this database's).
pub async fn dba_site(db: &TestDb, extra: &str) -> (Site, u16) {
    let port = free_port();
    let listen = format!("postgres = \"127.0.0.1:{port}\"");
    let extra = format!("{}{extra}", dba_only(db));
    let s = site(Opts { listen: &listen, extra: &extra, oidc: API, ..Default::default() }).await;
    (s, port)
}

/// `db`'s `[[databases]]` block as `ehr` with `dba` its one role.
pub fn dba_only(db: &TestDb) -> String {
    db.toml("ehr").lines().filter(|l| !l.starts_with("readers =")).map(|l| format!("{l}\n")).collect()
}

/// An access token of `alice` (MFA) from the site's IdP.
pub async fn alice_token(s: &Site) -> String {
    let t = tokens(&s.idp, "alice", "alice-password", "123456").await;
    t["access_token"].as_str().expect("an access token").to_string()
}

/// A conninfo for `user` with `password` through the gateway at `port`.
pub fn through(port: u16, user: &str, password: &str, sslmode: &str) -> String {
    let root = if sslmode.starts_with("verify") {
        format!(" sslrootcert={}", certs().join("ca.pem").display())
    } else {
        String::new()
    };
    format!("host=127.0.0.1 port={port} dbname=ehr user={user} password={password} sslmode={sslmode}{root}")
}

pub fn text(o: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// psql through the gateway, off the test's thread (the gateway is a child process, but
/// the test's runtime must stay free for the audit helpers).
pub async fn psql(conninfo: String, args: Vec<String>, stdin: Option<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pg().psql(&conninfo, &args, stdin.as_deref())
    })
    .await
    .unwrap()
}

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Every audit record written so far, as text.
pub fn audit_text(dir: &Path) -> String {
    let mut all = String::new();
    for e in walk(dir) {
        if let Ok(t) = std::fs::read(&e) {
            all.push_str(&String::from_utf8_lossy(&t));
        }
    }
    all
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn psql_reaches_the_database_over_verify_full_as_the_persons_role() {
    let db = pg().database("gw_reach");
    let (s, port) = pg_site(&db, API, "").await;
    let alice = tokens(&s.idp, "alice", "alice-password", "123456").await;
    let at = alice["access_token"].as_str().unwrap().to_string();

    let sql = "SELECT count(*) FROM patients; SELECT current_user, application_name FROM pg_stat_activity WHERE pid = pg_backend_pid();";
    let out =
        psql(through(port, "alice", &at, "verify-full"), args(&["-t", "-v", "ON_ERROR_STOP=1", "-c", sql]), None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "psql through Custos failed: {stderr}\n{}", s.gw.log());
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "3", "{stdout}");
    // Upstream, the person's role (readers, the first), and their name for the database's logs.
    assert_eq!(lines[1], format!("{}|custos:alice/psql", db.ro.user), "{stdout}");

    // The connection and each statement: one decision, one completion.
    let dir = s.gw.audit_dir();
    let connect = audit_has(&dir, |r| {
        kind(r) == "access.decision" && r.verb.as_deref() == Some("connect") && decision(r).as_deref() == Some("allow")
    })
    .await;
    assert_eq!(subject(&connect), Some("alice"));
    assert_eq!(connect.database.as_deref(), Some("ehr"));
    assert_eq!(connect.db_role.as_deref(), Some("readers"));
    let conn_id = connect.connection.clone().expect("a connection id");
    let ended = audit_has(&dir, |r| {
        kind(r) == "access.completed"
            && r.verb.as_deref() == Some("connect")
            && r.connection.as_deref() == Some(&conn_id)
    })
    .await;
    assert_eq!(reason(&ended).as_deref(), Some("client_closed"));
    let of_conn =
        records_in(&[&dir], |r| r.connection.as_deref() == Some(&conn_id) && r.verb.as_deref() == Some("select"));
    let decisions = of_conn.iter().filter(|r| kind(r) == "access.decision").count();
    let completions: Vec<_> = of_conn.iter().filter(|r| kind(r) == "access.completed").collect();
    assert_eq!((decisions, completions.len()), (2, 2), "{of_conn:#?}");
    assert!(
        completions.iter().all(|r| r.sqlstate.as_deref() == Some("00000") && r.rows == Some(1)),
        "{completions:#?}"
    );
    assert!(of_conn.iter().any(|r| r.objects.iter().any(|o| o == "patients")), "{of_conn:#?}");
}

#[tokio::test]
async fn plaintext_a_wrong_token_and_another_users_name_are_refused() {
    let db = pg().database("gw_refuse");
    let (s, port) = pg_site(&db, API, "").await;
    let alice = tokens(&s.idp, "alice", "alice-password", "123456").await;
    let at = alice["access_token"].as_str().unwrap().to_string();

    let cases = [
        (through(port, "alice", &at, "disable"), "Custos requires TLS: connect with sslmode=verify-full"),
        (through(port, "alice", "not-a-token", "verify-full"), "password authentication failed"),
        (through(port, "bob", &at, "verify-full"), "password authentication failed"),
        (
            through(port, "alice", &at, "verify-full").replace("dbname=ehr", "dbname=other"),
            "is not served by this gateway",
        ),
    ];
    for (conninfo, expect) in cases {
        let out = psql(conninfo.clone(), args(&["-c", "SELECT 1"]), None).await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{conninfo} was let in");
        assert!(stderr.contains(expect), "{conninfo}: expected `{expect}`, got: {stderr}");
        assert!(!stderr.contains(&db.ro.user), "the upstream user leaked: {stderr}");
    }
    let dir = s.gw.audit_dir();
    for why in ["plaintext", "bearer_malformed", "user_mismatch", "unknown_database"] {
        audit_has(&dir, |r| {
            kind(r) == "access.decision" && decision(r).as_deref() == Some("deny") && reason(r).as_deref() == Some(why)
        })
        .await;
    }
}

#[tokio::test]
async fn an_unparseable_statement_is_refused_and_never_reaches_the_database() {
    let db = pg().database("gw_unparse");
    let (s, port) = pg_site(&db, API, "").await;
    let at = tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    let input = "SELECT 1 AS before;\nSELEKT secret_marker_7731 FROM patients;\nSELECT 2 AS after;\n";
    let out = psql(through(port, "alice", &at, "verify-full"), args(&["-t"]), Some(input.to_string())).await;
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains('1') && stdout.contains('2'), "{stdout} {stderr}");
    assert!(stderr.contains("syntax error") && stderr.contains("42601") || stderr.contains("syntax error"), "{stderr}");
    // The server's log never saw it.
    let log = std::fs::read_to_string(pg().log()).unwrap();
    assert!(!log.contains("secret_marker_7731"), "an unparseable statement reached the database");
    audit_has(&s.gw.audit_dir(), |r| reason(r).as_deref() == Some("unparseable")).await;
    assert!(!audit_text(&s.gw.audit_dir()).contains("secret_marker_7731"));
}

// The wire by hand, for what no client library sends.

/// A StartupMessage of protocol 3.`minor` with `params`.
pub fn startup(minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = (3u32 << 16 | u32::from(minor)).to_be_bytes().to_vec();
    for (k, v) in params {
        for s in [k, v] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

/// A message with a type byte.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The next message from the server: its type byte and body (`None`: the connection
/// ended).
pub async fn next<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut head = [0u8; 5];
        tokio::io::AsyncReadExt::read_exact(s, &mut head).await.ok()?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.checked_sub(4)?];
        tokio::io::AsyncReadExt::read_exact(s, &mut body).await.ok()?;
        Some((head[0], body))
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read).await.expect("the server answers in time")
}

/// An ErrorResponse's severity and SQLSTATE.
pub fn error_fields(body: &[u8]) -> (String, String) {
    let (mut severity, mut code) = (String::new(), String::new());
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'V' => severity = value,
            b'C' => code = value,
            _ => {}
        }
    }
    (severity, code)
}

/// The authentication request code of an `R` message.
pub fn auth_code(m: &(u8, Vec<u8>)) -> Option<u32> {
    (m.0 == b'R' && m.1.len() >= 4).then(|| u32::from_be_bytes([m.1[0], m.1[1], m.1[2], m.1[3]]))
}

pub const PLAINTEXT: &str = "[postgres]\nallow_plaintext = true\n";

pub async fn connect_tp(port: u16, user: &str, token: &str) -> tokio_postgres::Client {
    let conninfo = format!("host=127.0.0.1 port={port} dbname=ehr user={user} password={token} sslmode=disable");
    let (client, conn) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
    )
    .await
    .expect("connect in time")
    .expect("tokio-postgres connects through Custos");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[tokio::test]
async fn every_statement_of_simple_extended_and_pipelined_traffic_is_recorded_once_without_literals() {
    let db = pg().database("gw_records");
    let (s, port) = pg_site(&db, API, PLAINTEXT).await;
    let at = tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    let c = connect_tp(port, "alice", &at).await;

    // Simple protocol, two statements in one string; literals that must never be recorded.
    let simple = c
        .simple_query("SELECT 'LITERAL_ALPHA_1' AS a; SELECT name FROM patients WHERE mrn = 'LITERAL_MRN_2'")
        .await
        .unwrap();
    assert!(!simple.is_empty());
    // Extended: a named prepared statement executed twice with parameters.
    let stmt = c.prepare("SELECT name FROM patients WHERE id = $1").await.unwrap();
    for id in [1i32, 2] {
        let rows = c.query(&stmt, &[&id]).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
    // The unnamed statement, with a text literal parameter.
    let rows = c.query("SELECT count(*) FROM patients WHERE name <> $1", &[&"LITERAL_PARAM_3"]).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 3);
    // Pipelined: several queries in flight at once before any answer.
    let q1 = c.query("SELECT 1 + $1::int", &[&41i32]);
    let q2 = c.query("SELECT id FROM patients ORDER BY id", &[]);
    let q3 = c.query("SELECT 'LITERAL_PIPE_4' = $1::text", &[&"x"]);
    let (r1, r2, r3) = tokio::join!(q1, q2, q3);
    assert_eq!(r1.unwrap()[0].get::<_, i32>(0), 42);
    assert_eq!(r2.unwrap().len(), 3);
    assert!(!r3.unwrap()[0].get::<_, bool>(0));
    // A statement the server refuses: its completion carries the SQLSTATE.
    let err = c.simple_query("SELECT * FROM no_such_table_x").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    drop(c);

    let dir = s.gw.audit_dir();
    let connect = audit_has(&dir, |r| kind(r) == "access.completed" && r.verb.as_deref() == Some("connect")).await;
    let id = connect.connection.clone().unwrap();
    let records = records_in(&[&dir], |r| r.connection.as_deref() == Some(&id) && r.verb.as_deref() != Some("connect"));
    let decisions: Vec<_> = records.iter().filter(|r| kind(r) == "access.decision").collect();
    let completions: Vec<_> = records.iter().filter(|r| kind(r) == "access.completed").collect();
    // 2 simple + 2 named executes + 1 unnamed + 3 pipelined + 1 refused by the server.
    assert_eq!(decisions.len(), 9, "{decisions:#?}");
    assert_eq!(completions.len(), 9, "{completions:#?}");
    assert!(decisions.iter().all(|r| decision(r).as_deref() == Some("allow") && r.fingerprint.is_some()));
    assert_eq!(completions.iter().filter(|r| r.sqlstate.as_deref() == Some("42P01")).count(), 1);
    assert_eq!(completions.iter().filter(|r| r.sqlstate.as_deref() == Some("00000")).count(), 8);
    // Rows: the pipelined ORDER BY returned 3.
    assert!(completions.iter().any(|r| r.rows == Some(3)));
    let all = audit_text(&dir) + s.gw.log().as_str();
    for literal in ["LITERAL_ALPHA_1", "LITERAL_MRN_2", "LITERAL_PARAM_3", "LITERAL_PIPE_4", "Test Patient"] {
        assert!(!all.contains(literal), "`{literal}` was written by Custos");
    }
}

#[tokio::test]
async fn a_cancel_reaches_the_running_query_with_custos_own_key() {
    let db = pg().database("gw_cancel");
    let (s, port) = pg_site(&db, API, PLAINTEXT).await;
    let at = tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    let c = connect_tp(port, "alice", &at).await;
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.expect("the cancel request is accepted");
    let err = tokio::time::timeout(std::time::Duration::from_secs(10), sleeper)
        .await
        .expect("cancelled in time")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    drop(s);
}

#[tokio::test]
async fn the_mfa_rule_the_persons_role_and_readiness() {
    let db = pg().database("gw_roles");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.conf");
    std::fs::write(
        &model,
        "[request_definition]\nr = sub, dom, obj, act\n[policy_definition]\np = sub, dom, obj, act\n\
         [role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n\
         [matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n",
    )
    .unwrap();
    let policy = dir.path().join("policy.csv");
    std::fs::write(
        &policy,
        "p, readers, *, db:ehr, connect\np, dba, *, db:ehr, connect\ng, alice, readers\ng, alice, dba\ng, nora, readers\n",
    )
    .unwrap();
    let extra =
        format!("require_mfa = true\n[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n", model.display(), policy.display());
    let (s, port) = pg_site(&db, API, &extra).await;
    let token = |user: &'static str, otp: &'static str| {
        let idp = s.idp.clone();
        async move {
            tokens(&idp, user, &format!("{user}-password"), otp).await["access_token"].as_str().unwrap().to_string()
        }
    };
    let who = "SELECT current_user";
    let run = |user: &str, at: &str, options: &str| {
        let mut c = through(port, user, at, "verify-full");
        if !options.is_empty() {
            c.push_str(&format!(" options='{options}'"));
        }
        psql(c, args(&["-t", "-c", who]), None)
    };

    // One factor where the database needs two: refused, with what to do.
    let bob = token("bob", "").await;
    let out = run("bob", &bob, "").await;
    let (_, err) = text(&out);
    assert!(!out.status.success() && err.contains("needs a multi-factor sign-in"), "{err}");

    // alice holds readers and dba: readers by default (first in the table), dba when asked.
    let alice = token("alice", "123456").await;
    let (out, _) = text(&run("alice", &alice, "").await);
    assert_eq!(out.trim(), db.ro.user);
    let (out, err) = text(&run("alice", &alice, "-c custos.role=dba").await);
    assert_eq!(out.trim(), db.admin.user, "{err}");
    // nora holds readers only: asking for dba is refused.
    let nora = token("nora", "123456").await;
    let out = run("nora", &nora, "-c custos.role=dba").await;
    let (_, err) = text(&out);
    assert!(!out.status.success() && err.contains("not one you hold"), "{err}");
    let (out, _) = text(&run("nora", &nora, "").await);
    assert_eq!(out.trim(), db.ro.user);
    let dir_a = s.gw.audit_dir();
    audit_has(&dir_a, |r| reason(r).as_deref() == Some("role_not_held")).await;
    audit_has(&dir_a, |r| reason(r).as_deref() == Some("mfa_required") && subject(r) == Some("bob")).await;

    // Readiness names the database, and the metrics count what happened.
    let body = client().get(s.gw.url("/.custos/readyz")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("database ehr: ok"), "{body}");
    let allowed = metric(&s.gw, "custos_db_connects_total{database=\"ehr\",outcome=\"allowed\"}").await;
    assert_eq!(allowed, Some(3.0));
}

/// A `[[databases]]` block for `db` as `ehr` whose one role `readers` signs in upstream
/// as `login` (its password in `dir`), over `verify-full` to the harness's CA, with a
/// `statement_timeout`.
fn verified_block(db: &TestDb, login: &crate::harness::postgres::PgLogin, dir: &Path) -> String {
    let pw = dir.join(&login.user);
    std::fs::write(&pw, &login.password).unwrap();
    format!(
        "[[databases]]\nname = \"ehr\"\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{}\"\n\
         [databases.tls]\nmode = \"verify-full\"\nca = \"{}\"\n\
         [databases.roles]\nreaders = {{ user = \"{}\", password = {{ file = \"{}\" }} }}\n\
         [databases.limits]\nstatement_timeout_secs = 7\n",
        pg().port(),
        db.name,
        pg().ca_pem().display(),
        login.user,
        pw.display()
    )
}

#[tokio::test]
async fn the_upstream_is_verified_signed_in_to_by_md5_or_cleartext_inside_tls_and_time_limited() {
    let db = pg().database("gw_upstream");
    let dir = tempfile::tempdir().unwrap();
    for login in [&db.md5, &db.pw] {
        let listen = format!("postgres = \"127.0.0.1:{}\"", free_port());
        let port: u16 = listen.rsplit(':').next().unwrap().trim_end_matches('"').parse().unwrap();
        let extra = verified_block(&db, login, dir.path());
        let s = site(Opts { listen: &listen, extra: &extra, oidc: API, ..Default::default() }).await;
        let at =
            tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
        let sql = "SELECT current_user, ssl, current_setting('statement_timeout') FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        let out = psql(through(port, "alice", &at, "verify-full"), args(&["-t", "-c", sql]), None).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{}: {stderr}\n{}", login.user, s.gw.log());
        assert_eq!(stdout.trim(), format!("{}|t|7s", login.user));
    }
    // The server's log says which method let each in.
    let log = std::fs::read_to_string(pg().log()).unwrap();
    for (user, method) in [(&db.md5.user, "md5"), (&db.pw.user, "password")] {
        assert!(log.contains(&format!("identity=\"{user}\" method={method} ")), "{user}");
    }
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_user_and_address() {
    let db = pg().database("gw_rate");
    let (s, port) = pg_site(&db, API, "[postgres]\nauth_failures_per_minute = 3\n").await;
    let at = tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let out = psql(through(port, "alice", "wrong-token", "verify-full"), args(&["-c", "SELECT 1"]), None).await;
        assert!(!out.status.success());
    }
    // Over the limit: even the right token is refused for now, and the refusal recorded.
    let out = psql(through(port, "alice", &at, "verify-full"), args(&["-c", "SELECT 1"]), None).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("password authentication failed"), "{stderr}");
    audit_has(&s.gw.audit_dir(), |r| reason(r).as_deref() == Some("auth_rate")).await;
}

#[tokio::test]
async fn settings_that_change_how_statements_are_read_are_refused_and_the_connection_goes_on() {
    let db = pg().database("gw_guard");
    let (s, port) = pg_site(&db, API, PLAINTEXT).await;
    let at = tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    let c = connect_tp(port, "alice", &at).await;
    for sql in [
        "SET client_encoding = 'SJIS'",
        "SET NAMES 'GBK'",
        "SET standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
    ] {
        let err = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(err.code().map(|c| c.code()), Some("0A000"), "{sql}: {err}");
    }
    let rows = c.query("SHOW client_encoding", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, &str>(0), "UTF8");
    // SQL's own DEALLOCATE: the protocol's prepared statements are forgotten, refused
    // rather than recorded as what they might no longer be.
    let stmt = c.prepare("SELECT 1").await.unwrap();
    c.simple_query("DEALLOCATE ALL").await.unwrap();
    let err = c.query(&stmt, &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("26000"), "{err}");
    drop(s);
}

#[tokio::test]
async fn names_the_server_failed_are_not_trusted_and_copy_in_keeps_the_answers_paired() {
    let db = pg().database("gw_names");
    let (s, port) = pg_site(&db, API, PLAINTEXT).await;
    let at = tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    let mut raw = crate::pg_sessions::Raw::connect(port, "alice", &at).await;
    use crate::pg_sessions::{read_msg, tagged};
    use tokio::io::AsyncWriteExt;
    let parse = |name: &str, sql: &str| {
        let mut b = format!("{name}\0{sql}\0").into_bytes();
        b.extend_from_slice(&0i16.to_be_bytes());
        tagged(b'P', &b)
    };
    let bind = |stmt: &str| {
        let mut b = format!("\0{stmt}\0").into_bytes();
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        tagged(b'B', &b)
    };
    let execute = tagged(b'E', b"\0\0\0\0\0");
    let sync = tagged(b'S', b"");
    // The unnamed statement is a count; a failing Parse makes the server skip the next
    // Parse of the unnamed one, so it stays the count: the Bind after Sync must not be
    // recorded as the skipped text.
    let mut batch = Vec::new();
    batch.extend(parse("", "SELECT count(*) FROM patients"));
    batch.extend(parse("x", "SELECT * FROM no_such_table"));
    batch.extend(parse("", "SELECT 1 AS harmless"));
    batch.extend(&sync);
    batch.extend(bind(""));
    batch.extend(&execute);
    batch.extend(&sync);
    raw.stream.write_all(&batch).await.unwrap();
    let mut codes = Vec::new();
    let mut zs = 0;
    while zs < 2 {
        let (tag, body) =
            tokio::time::timeout(std::time::Duration::from_secs(10), read_msg(&mut raw.stream)).await.unwrap().unwrap();
        match tag {
            b'E' => codes.push(
                String::from_utf8_lossy(&body)
                    .split('\0')
                    .find_map(|f| f.strip_prefix('C').map(str::to_string))
                    .unwrap(),
            ),
            b'Z' => zs += 1,
            _ => {}
        }
    }
    // The server's error, then Custos's refusal of a statement it no longer knows.
    assert_eq!(codes, ["42P01", "26000"], "{codes:?}");
    let dir = s.gw.audit_dir();
    let misrecorded = records_in(&[&dir], |r| {
        kind(r) == "access.decision" && r.verb.as_deref() == Some("select") && r.objects.is_empty()
    });
    assert!(misrecorded.is_empty(), "the skipped statement was recorded as run: {misrecorded:#?}");

    // COPY FROM STDIN by the extended protocol (tokio-postgres), then more statements: each
    // answer still belongs to its own statement.
    let c = connect_tp(port, "alice", &at).await;
    let e = c.simple_query("CREATE TEMP TABLE t (a int)").await;
    assert!(e.is_ok(), "{e:?}");
    let sink = c.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    use futures_util::SinkExt;
    sink.send(bytes::Bytes::from_static(b"1\n2\n3\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 3);
    let n: i64 = c.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    let p: i64 = c.query_one("SELECT count(*) FROM patients", &[]).await.unwrap().get(0);
    assert_eq!(p, 3);
}

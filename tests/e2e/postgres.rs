//! The PostgreSQL front end with real clients (psql, pgbench, tokio-postgres) against the
//! harness's PostgreSQL: TLS required and verified, tokens checked, the person's role
//! upstream and their name in `application_name`, every statement of simple, extended and
//! pipelined traffic recorded once as a decision and once as a completion, and no literal
//! anywhere Custos writes.

use crate::harness::postgres::{pg, TestDb};
use crate::harness::*;
use std::path::Path;

const API: &str = "api_audience = \"urn:custos:api\"\njwks_min_refresh_secs = 1";

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

/// A conninfo for `user` with `password` through the gateway at `port`.
pub fn through(port: u16, user: &str, password: &str, sslmode: &str) -> String {
    let root = if sslmode.starts_with("verify") {
        format!(" sslrootcert={}", certs().join("ca.pem").display())
    } else {
        String::new()
    };
    format!("host=127.0.0.1 port={port} dbname=ehr user={user} password={password} sslmode={sslmode}{root}")
}

fn text(o: &std::process::Output) -> (String, String) {
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

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Every audit record written so far, as text.
fn audit_text(dir: &Path) -> String {
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

pub const PLAINTEXT: &str = "[postgres]\nallow_plaintext = true\n";

async fn connect_tp(port: u16, user: &str, token: &str) -> tokio_postgres::Client {
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

//! The PostgreSQL front end at the wire, with real clients and by hand: pgbench in every
//! `-M` mode with each transaction recorded, COPY of a few hundred megabytes in bounded
//! memory, TLS (1.1 refused, PostgreSQL 17's direct TLS by ALPN), the startup packet's
//! corners (protocol negotiation, GSSENCRequest, encodings, replication, `options`), a
//! statement's refusals in a running connection, the per-person connection limit, and
//! SIGTERM ending idle connections with `57P01` at the end of the grace period.

use crate::harness::postgres::{pg, TestDb};
use crate::harness::*;
use crate::postgres::{
    alice_token, auth_code, connect_tp, dba_site, error_fields, message, next, startup, through, PLAINTEXT,
};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `program` with no `PG*` variable of the test's environment.
fn pg_tool(name: &str, package: &str) -> Command {
    let mut c = Command::new(tool(name, package));
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("PG")) {
            c.env_remove(k);
        }
    }
    c.env("PGCONNECT_TIMEOUT", "10");
    c
}

/// Runs `c` off the test's runtime; its output.
async fn output(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.stdin(Stdio::null()).output().expect("run the client")).await.unwrap()
}

/// Statement completions (not the connection's own) recorded so far, and those of them
/// with a SQLSTATE other than `00000`.
fn completions(dir: &std::path::Path) -> (usize, Vec<Event>) {
    let done = records_in(&[dir], |r| kind(r) == "access.completed" && r.verb.as_deref() != Some("connect"));
    let bad = done.iter().filter(|r| r.sqlstate.as_deref() != Some("00000")).cloned().collect();
    (done.len(), bad)
}

#[tokio::test]
async fn pgbench_select_only_works_in_every_mode_and_every_transaction_is_recorded() {
    let db = pg().database("wire_bench");
    let mut init = pg_tool("pgbench", "postgresql");
    init.args(["-i", "-s", "1", "-q"]).arg(db.conninfo(&db.admin, "disable"));
    let out = output(init).await;
    assert!(out.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&out.stderr));
    let (s, port) = dba_site(&db, "").await;
    let token = alice_token(&s).await;
    let dir = s.gw.audit_dir();
    for mode in ["simple", "extended", "prepared"] {
        let (before, _) = completions(&dir);
        let mut bench = pg_tool("pgbench", "postgresql");
        bench.args(["-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200"]);
        bench.arg(through(port, "alice", &token, "verify-full"));
        let out = output(bench).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "pgbench -M {mode}: {stdout}\n{stderr}\n{}", s.gw.log());
        assert!(stdout.contains("number of transactions actually processed: 800/800"), "-M {mode}: {stdout}");
        assert!(stdout.contains("number of failed transactions: 0 "), "-M {mode}: {stdout}");
        let tps = stdout.lines().find(|l| l.starts_with("tps")).unwrap_or_default();
        eprintln!("pgbench -M {mode} through Custos: {tps}");
        // Completions follow the answers: wait for the last of them.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (done, bad) = loop {
            let (n, bad) = completions(&dir);
            if n - before >= 800 || Instant::now() > deadline {
                break (n - before, bad);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(done >= 800, "-M {mode}: {done} statement completions recorded for 800 transactions");
        assert!(bad.is_empty(), "-M {mode}: completions with an error: {bad:#?}");
    }
}

/// The gateway's resident memory now (`VmRSS`) or at its peak (`VmHWM`), in kB.
fn memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the gateway's /proc status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}: {status}"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

const COPY_ROWS: usize = 200_000;
/// Each row's text column: with its id and tab, about 1 kB a row, 200 MB in all.
const COPY_WIDTH: usize = 1_000;

/// Row `i` as COPY's text format writes it.
fn copy_row(i: usize) -> String {
    let fill = char::from(b'a' + (i % 26) as u8);
    format!("{i}\t{}\n", fill.to_string().repeat(COPY_WIDTH))
}

#[tokio::test]
async fn copy_of_200_mb_in_and_out_streams_in_bounded_memory() {
    let db = pg().database("wire_copy");
    let (s, port) = dba_site(&db, "").await;
    let token = alice_token(&s).await;
    let conninfo = through(port, "alice", &token, "verify-full");
    let out = crate::postgres::psql(
        conninfo.clone(),
        crate::postgres::args(&["-v", "ON_ERROR_STOP=1", "-c", "CREATE TABLE big (id int, body text)"]),
        None,
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = s.gw.pid();
    let rss_before = memory_kb(pid, "VmRSS:");

    // In: psql feeds COPY FROM STDIN from a generator, never a whole file in memory.
    let sent: usize = (0..COPY_ROWS).map(|i| copy_row(i).len()).sum();
    let mut copy_in = pg().psql_command(&conninfo, &["-v", "ON_ERROR_STOP=1", "-c", "COPY big FROM STDIN"]);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child =
            copy_in.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("psql");
        let mut pipe = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
        for i in 0..COPY_ROWS {
            pipe.write_all(copy_row(i).as_bytes()).expect("write a row to psql");
        }
        drop(pipe);
        child.wait_with_output().expect("psql ends")
    })
    .await
    .unwrap();
    let in_secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "COPY in: {}\n{}", String::from_utf8_lossy(&out.stderr), s.gw.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("COPY {COPY_ROWS}"));

    // Out: COPY TO STDOUT counted as it arrives.
    let mut copy_out = pg().psql_command(&conninfo, &["-v", "ON_ERROR_STOP=1", "-c", "COPY big TO STDOUT"]);
    let started = Instant::now();
    let (bytes, lines, status, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = copy_out.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdout = child.stdout.take().expect("stdout");
        let (mut bytes, mut lines, mut buf) = (0usize, 0usize, vec![0u8; 1 << 16]);
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    bytes += n;
                    lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                }
            }
        }
        let out = child.wait_with_output().expect("psql ends");
        (bytes, lines, out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap();
    let out_secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "COPY out: {stderr}\n{}", s.gw.log());
    assert_eq!((bytes, lines), (sent, COPY_ROWS), "COPY out returned other rows than went in");

    let peak = memory_kb(pid, "VmHWM:");
    eprintln!(
        "COPY {} MB: in {in_secs:.1} s, out {out_secs:.1} s; gateway RSS before {} MB, peak {} MB",
        sent >> 20,
        rss_before >> 10,
        peak >> 10
    );
    assert!(peak < rss_before + 150 * 1024, "the gateway grew from {rss_before} kB to a peak of {peak} kB");
    // Both statements completed with their rows.
    let dir = s.gw.audit_dir();
    for verb in ["copy_from", "copy_to"] {
        let done = audit_has(&dir, |r| kind(r) == "access.completed" && r.verb.as_deref() == Some(verb)).await;
        assert_eq!((done.rows, done.sqlstate.as_deref()), (Some(COPY_ROWS as u64), Some("00000")), "{done:#?}");
    }
    pg().admin_sql(&db.name, "DROP TABLE big;\n");
}

/// Whether `openssl s_client -starttls postgres` completes a handshake of `version`
/// (`-tls1_1`, `-tls1_2`) with the PostgreSQL listener at `addr`.
fn starttls_accepted(addr: SocketAddr, version: &str) -> bool {
    let out = Command::new(tool("openssl", "openssl"))
        .args(["s_client", "-starttls", "postgres", "-connect", &addr.to_string(), version])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl s_client: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !text.contains("Cipher is (NONE)") && text.contains("Server certificate")
}

/// Sends `bytes`, then returns the first message answered.
async fn opening(port: u16, bytes: &[u8]) -> (tokio::net::TcpStream, Option<(u8, Vec<u8>)>) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the listener");
    s.write_all(bytes).await.unwrap();
    let first = next(&mut s).await;
    (s, first)
}

/// A plaintext connection signed in as alice with `token` and the startup `params`,
/// after ReadyForQuery.
async fn signed_in(port: u16, token: &str, params: &[(&str, &str)]) -> tokio::net::TcpStream {
    let mut all = vec![("user", "alice"), ("database", "ehr")];
    all.extend_from_slice(params);
    let (mut s, first) = opening(port, &startup(0, &all)).await;
    assert_eq!(first.as_ref().and_then(auth_code), Some(3), "{first:?}");
    let mut pw = token.as_bytes().to_vec();
    pw.push(0);
    s.write_all(&message(b'p', &pw)).await.unwrap();
    loop {
        match next(&mut s).await {
            Some((b'Z', _)) => return s,
            Some((b'E', body)) => panic!("sign-in refused: {:?}", error_fields(&body)),
            Some(_) => {}
            None => panic!("the connection ended during sign-in"),
        }
    }
}

/// Sends `bytes` and collects the answers up to ReadyForQuery (or the connection's end).
async fn exchange(s: &mut tokio::net::TcpStream, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = next(s).await {
        let ready = m.0 == b'Z';
        got.push(m);
        if ready {
            break;
        }
    }
    got
}

fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// The (severity, SQLSTATE) of each ErrorResponse among `msgs`.
fn errors(msgs: &[(u8, Vec<u8>)]) -> Vec<(String, String)> {
    msgs.iter().filter(|m| m.0 == b'E').map(|m| error_fields(&m.1)).collect()
}

/// The text of each DataRow's first column among `msgs`.
fn first_columns(msgs: &[(u8, Vec<u8>)]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.0 == b'D' && m.1.len() >= 6)
        .map(|m| {
            let len = i32::from_be_bytes([m.1[2], m.1[3], m.1[4], m.1[5]]).max(0) as usize;
            String::from_utf8_lossy(&m.1[6..6 + len]).into_owned()
        })
        .collect()
}

#[tokio::test]
async fn tls_1_1_is_refused_and_1_2_accepted_by_sslrequest() {
    let db = pg().database("wire_tls11");
    let (s, port) = dba_site(&db, "").await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (v11, v12) =
        tokio::task::spawn_blocking(move || (starttls_accepted(addr, "-tls1_1"), starttls_accepted(addr, "-tls1_2")))
            .await
            .unwrap();
    assert!(!v11, "TLS 1.1 was accepted on the PostgreSQL listener");
    // The probe can succeed: TLS 1.2 is accepted the same way.
    assert!(v12, "TLS 1.2 was refused on the PostgreSQL listener: {}", s.gw.log());
}

/// A TLS handshake opened at once (PostgreSQL 17's direct TLS), offering `alpn`.
async fn direct_tls(
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio_rustls::rustls;
    let pem = std::fs::read(certs().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await
}

#[tokio::test]
async fn direct_tls_with_alpn_postgresql_starts_and_without_alpn_is_dropped() {
    let db = pg().database("wire_direct");
    let (_s, port) = dba_site(&db, "").await;
    let hello = startup(0, &[("user", "alice"), ("database", "ehr")]);
    let mut tls = direct_tls(port, &[b"postgresql"]).await.expect("direct TLS with ALPN postgresql");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    tls.write_all(&hello).await.unwrap();
    let first = next(&mut tls).await;
    assert_eq!(first.as_ref().and_then(auth_code), Some(3), "expected AuthenticationCleartextPassword: {first:?}");

    // Without ALPN: the handshake may finish, but nothing is answered and the connection
    // ends.
    if let Ok(mut tls) = direct_tls(port, &[]).await {
        let _ = tls.write_all(&hello).await;
        let first = next(&mut tls).await;
        assert!(first.is_none(), "direct TLS without ALPN was answered: {first:?}");
    }
}

#[tokio::test]
async fn a_newer_minor_version_and_an_unknown_protocol_option_are_negotiated() {
    let db = pg().database("wire_negotiate");
    let (_s, port) = dba_site(&db, PLAINTEXT).await;
    let (mut s, first) =
        opening(port, &startup(9, &[("user", "alice"), ("database", "ehr"), ("_pq_.grease", "1")])).await;
    let (tag, body) = first.expect("an answer");
    assert_eq!(tag, b'v', "expected NegotiateProtocolVersion, got {:?}", (tag as char, &body));
    let newest = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let count = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    assert_eq!((newest >> 16, newest & 0xffff), (3, 2), "the newest version spoken is 3.2");
    assert_eq!(count, 1);
    assert_eq!(&body[8..], b"_pq_.grease\0");
    let then = next(&mut s).await;
    assert_eq!(then.as_ref().and_then(auth_code), Some(3), "{then:?}");
}

#[tokio::test]
async fn startup_refusals_and_gssencrequest_answered_n() {
    let db = pg().database("wire_startup");
    let (s, port) = dba_site(&db, PLAINTEXT).await;
    let token = alice_token(&s).await;
    // GSSENCRequest: `N`, and the same connection goes on to sign in.
    let mut gss = (8u32).to_be_bytes().to_vec();
    gss.extend_from_slice(&80877104u32.to_be_bytes());
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    c.write_all(&gss).await.unwrap();
    let mut n = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(20), c.read_exact(&mut n)).await.unwrap().unwrap();
    assert_eq!(&n, b"N");
    c.write_all(&startup(0, &[("user", "alice"), ("database", "ehr")])).await.unwrap();
    let first = next(&mut c).await;
    assert_eq!(first.as_ref().and_then(auth_code), Some(3), "{first:?}");
    let mut pw = token.as_bytes().to_vec();
    pw.push(0);
    let got = exchange(&mut c, &message(b'p', &pw)).await;
    assert!(errors(&got).is_empty() && got.last().is_some_and(|m| m.0 == b'Z'), "after GSSENCRequest: {got:?}");

    for (param, value, code) in [("client_encoding", "LATIN1", "22023"), ("replication", "database", "28000")] {
        let (mut c, first) =
            opening(port, &startup(0, &[("user", "alice"), ("database", "ehr"), (param, value)])).await;
        let (tag, body) = first.unwrap_or_else(|| panic!("{param}={value}: no answer"));
        assert_eq!(tag, b'E', "{param}={value}: {:?}", (tag as char, &body));
        assert_eq!(error_fields(&body), ("FATAL".to_string(), code.to_string()), "{param}={value}");
        assert!(next(&mut c).await.is_none(), "{param}={value}: the connection stayed open");
    }
    let dir = s.gw.audit_dir();
    for why in ["client_encoding", "replication"] {
        audit_has(&dir, |r| decision(r).as_deref() == Some("deny") && reason(r).as_deref() == Some(why)).await;
    }
}

#[tokio::test]
async fn a_search_path_in_options_is_let_in_filtered_and_named_in_the_decision() {
    let db = pg().database("wire_options");
    let (s, port) = dba_site(&db, PLAINTEXT).await;
    let token = alice_token(&s).await;
    let mut c = signed_in(port, &token, &[("options", "-c search_path=evil")]).await;
    let got = exchange(&mut c, &query("SHOW search_path")).await;
    assert_eq!(first_columns(&got), ["\"$user\", public"], "the search_path reached the database: {got:?}");
    let connect = audit_has(&s.gw.audit_dir(), |r| {
        kind(r) == "access.decision" && r.verb.as_deref() == Some("connect") && decision(r).as_deref() == Some("allow")
    })
    .await;
    assert!(connect.filtered.iter().any(|f| f == "options:search_path"), "filtered: {:?}", connect.filtered);
}

#[tokio::test]
async fn refused_statements_leave_the_connection_usable_and_garbage_ends_it() {
    let db = pg().database("wire_refuse");
    let (s, port) = dba_site(&db, &format!("[databases.limits]\nmax_statement_bytes = 1024\n{PLAINTEXT}")).await;
    let token = alice_token(&s).await;
    let mut c = signed_in(port, &token, &[]).await;
    // Over max_statement_bytes: ERROR 54000, then the connection answers again.
    let big = format!("SELECT '{}' AS too_big", "x".repeat(2000));
    let got = exchange(&mut c, &query(&big)).await;
    assert_eq!(errors(&got), [("ERROR".to_string(), "54000".to_string())], "{got:?}");
    let got = exchange(&mut c, &query("SELECT 41 + 1")).await;
    assert_eq!(first_columns(&got), ["42"], "{got:?}");
    // A FunctionCall (fast path): function oid, no formats, no arguments, text result.
    let mut call = 1598u32.to_be_bytes().to_vec();
    call.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let got = exchange(&mut c, &message(b'F', &call)).await;
    assert_eq!(errors(&got), [("ERROR".to_string(), "0A000".to_string())], "{got:?}");
    let got = exchange(&mut c, &query("SELECT 'still here'")).await;
    assert_eq!(first_columns(&got), ["still here"], "{got:?}");
    // Bytes that are not the protocol: FATAL 08P01, and the end.
    let got = exchange(&mut c, b"\x01\x00\x00\x00\x08junk").await;
    assert_eq!(errors(&got), [("FATAL".to_string(), "08P01".to_string())], "{got:?}");
    assert!(next(&mut c).await.is_none(), "the connection stayed open after garbage");
    let dir = s.gw.audit_dir();
    for why in ["statement_too_large", "function_call", "protocol_violation"] {
        audit_has(&dir, |r| reason(r).as_deref() == Some(why)).await;
    }
}

#[tokio::test]
async fn a_third_connection_of_a_person_is_refused_while_two_are_open() {
    let db = pg().database("wire_limit");
    let (s, port) = dba_site(&db, &format!("[databases.limits]\nmax_connections_per_user = 2\n{PLAINTEXT}")).await;
    let token = alice_token(&s).await;
    let conninfo = format!("host=127.0.0.1 port={port} dbname=ehr user=alice password={token} sslmode=disable");
    let (one, two) = (connect_tp(port, "alice", &token).await, connect_tp(port, "alice", &token).await);
    let third = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await;
    let err = third.err().expect("a third connection was let in");
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    assert_eq!(two.simple_query("SELECT 1").await.map(|r| r.is_empty()).ok(), Some(false), "the open ones still work");
    drop(one);
    // The slot comes back once the gateway has seen the client leave.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                assert!(c.simple_query("SELECT 1").await.is_ok());
                break;
            }
            Err(e) => {
                assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e}");
                assert!(Instant::now() < deadline, "a slot never came back after a connection closed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(two);
}

/// A gateway with a PostgreSQL listener for `db` (dba only, plaintext allowed), access
/// tokens from the test IdP, and a grace period of `grace` s: built as `site` builds,
/// which has no grace period of its own to set.
async fn gateway_with_grace(db: &TestDb, grace: u64) -> (Gateway, u16, tempfile::TempDir) {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{}/.custos/callback", free_port());
    let (id, secret) = register_client(idp_url(), &redirect, &redirect, "custos-test").await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("client-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let config = format!(
        "[oidc]\nissuer = \"{idp}\"\nclient_id = \"{id}\"\nclient_secret = {{ file = \"{secret}\" }}\n\
         redirect_url = \"{redirect}\"\n{api}\n\
         [session]\nredis_url = \"{redis}\"\nkey_prefix = \"custos:test:{prefix}\"\n{dba}{PLAINTEXT}",
        dba = crate::postgres::dba_only(db),
        idp = idp_url(),
        secret = secret_file.display(),
        api = crate::postgres::API,
        redis = redis_url(),
        prefix = uuid::Uuid::now_v7().simple(),
    );
    let gw = Gateway::builder()
        .grace(grace)
        .listen(&format!("postgres = \"127.0.0.1:{port}\""))
        .config(config)
        .route(route_all("127.0.0.1:9".parse().unwrap()))
        .start()
        .await;
    (gw, port, secrets)
}

#[tokio::test]
async fn sigterm_ends_an_idle_connection_with_57p01_at_the_end_of_the_grace_period() {
    let db = pg().database("wire_sigterm");
    let (mut gw, port, _secrets) = gateway_with_grace(&db, 2).await;
    let token =
        tokens(idp_url(), "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    let conninfo = format!("host=127.0.0.1 port={port} dbname=ehr user=alice password={token} sslmode=disable");
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.expect("connect");
    let ended = tokio::spawn(async move { (conn.await, Instant::now()) });
    assert_eq!(client.simple_query("SELECT 1").await.map(|r| r.is_empty()).ok(), Some(false));
    // Idle from here on.
    let sent = Instant::now();
    gw.stop().await;
    let (result, at) =
        tokio::time::timeout(Duration::from_secs(20), ended).await.expect("the connection ended").unwrap();
    let err = result.expect_err("the connection ended without an error");
    assert_eq!(err.code().map(|c| c.code()), Some("57P01"), "{err}");
    let after = at - sent;
    assert!(after >= Duration::from_millis(1500), "ended {after:?} after SIGTERM, before the grace period's end");
    assert!(after < Duration::from_secs(10), "ended {after:?} after SIGTERM");
    drop(client);

    let dir = gw.audit_dir();
    let done = records_in(&[&dir], |r| kind(r) == "access.completed" && r.verb.as_deref() == Some("connect"));
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(reason(&done[0]).as_deref(), Some("shutdown"), "{done:#?}");
    assert_eq!(done[0].sqlstate.as_deref(), Some("57P01"));
    let (code, out) = audit_verify(&[dir.as_os_str()]);
    assert_eq!(code, 0, "custos audit verify after the shutdown: {out}");
}

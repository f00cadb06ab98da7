//! The two commands a newcomer runs: `custos db login` writes the token to the pgpass
//! file and prints the psql command, and that command reaches the database through the
//! gateway's PostgreSQL listener, with `verify-full`, as the signed-in person.

use super::*;
use crate::harness::postgres::pg;

#[tokio::test]
async fn the_printed_psql_command_reaches_the_database_with_the_token() {
    let db = pg().database("dblogin");
    let (s, port) = crate::postgres::pg_site(&db, "", "").await;
    let dir = tempfile::tempdir().unwrap();
    let (_c, id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let curl = tool("curl", "curl");
    let script = browser_script(
        dir.path(),
        &format!("exec '{}' -s -o /dev/null -H 'cookie: custos_session={id}' -L \"$1\"", curl.display()),
    );
    let pgpass = dir.path().join("pgpass");
    let (ok, out, err) = db_login(
        tokio::process::Command::new(CUSTOS)
            .args(["db", "login", "ehr", "--gateway", &s.origin, "--pg-host", "127.0.0.1", "--pg-port"])
            .arg(port.to_string())
            .arg("--ca")
            .arg(certs().join("ca.pem"))
            .env("BROWSER", &script)
            .env("PGPASSFILE", &pgpass)
            .env("HOME", dir.path()),
    )
    .await;
    assert!(ok, "{err}\n{}", s.gw.log());
    let conninfo =
        out.trim().strip_prefix("psql \"").and_then(|c| c.strip_suffix('"')).unwrap_or_else(|| panic!("{out}"));
    assert!(conninfo.contains("sslmode=verify-full"), "{conninfo}");
    let run = tool("psql", "postgresql-client");
    let (conninfo, pgpass2) = (conninfo.to_string(), pgpass.clone());
    let done = tokio::task::spawn_blocking(move || {
        std::process::Command::new(run)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "select count(*) > 0 from patients", &conninfo])
            .env("PGPASSFILE", &pgpass2)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr));
    assert!(done.status.success(), "psql with the token failed: {stderr}\n{}", s.gw.log());
    assert_eq!(stdout.trim(), "t", "{stdout}");
    let token = std::fs::read_to_string(&pgpass).unwrap().trim().rsplit(':').next().unwrap().to_string();
    assert!(token_record(&s, &token).is_some());
}

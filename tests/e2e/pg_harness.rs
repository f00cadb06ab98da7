//! The PostgreSQL fixture itself (`harness::postgres`), straight to the server, no
//! gateway: each role logs in by the method its name promises and reads `patients`, a
//! wrong password is refused, `verify-full` holds against the harness CA (and fails
//! against another), and a test database's `[[databases]]` block passes `custos check`.

use crate::harness::postgres::{pg, PgLogin, TestDb, PATIENTS};
use crate::harness::{certs, CUSTOS};

fn count(db: &TestDb, login: &PgLogin, sslmode: &str) -> std::process::Output {
    pg().psql(
        &db.conninfo(login, sslmode),
        &["-t", "-v", "ON_ERROR_STOP=1", "-c", "SELECT count(*) FROM patients"],
        None,
    )
}

#[test]
fn each_role_signs_in_by_its_method_and_reads_patients() {
    let db = pg().database("harness_auth");
    for (login, method, sslmode) in [
        (&db.ro, "scram-sha-256", "disable"),
        (&db.admin, "scram-sha-256", "require"),
        (&db.md5, "md5", "disable"),
        (&db.pw, "password", "require"),
    ] {
        let out = count(&db, login, sslmode);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{} ({method}): {err}", login.user);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), PATIENTS.to_string(), "{}", login.user);
        // The server says which method let it in (log_connections).
        let log = std::fs::read_to_string(pg().log()).expect("the PostgreSQL log");
        let line = format!("identity=\"{}\" method={method} ", login.user);
        assert!(log.contains(&line), "{}: no `{line}` in {}", login.user, pg().log().display());
    }
    // SELECT only, but for the owner.
    let write = "INSERT INTO patients VALUES (9, 'x', 'x', '2000-01-01')";
    let out = pg().psql(&db.conninfo(&db.ro, "disable"), &["-v", "ON_ERROR_STOP=1", "-c", write], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    let out = pg().psql(&db.conninfo(&db.admin, "disable"), &["-v", "ON_ERROR_STOP=1", "-c", write], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pg().admin_sql(&db.name, "SELECT count(*) FROM patients;").trim(), (PATIENTS + 1).to_string());
}

#[test]
fn a_wrong_password_is_refused() {
    let db = pg().database("harness_wrong");
    for login in [&db.ro, &db.md5, &db.pw] {
        let wrong = PgLogin { user: login.user.clone(), password: format!("{}x", login.password) };
        let out = count(&db, &wrong, "require");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("password authentication failed"), "{}: {err}", login.user);
    }
}

#[test]
fn verify_full_holds_against_the_harness_ca() {
    let db = pg().database("harness_tls");
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for conninfo in
        [db.conninfo(&db.ro, "verify-full"), db.conninfo(&db.ro, "verify-full").replace("127.0.0.1", "localhost")]
    {
        let out = pg().psql(&conninfo, &["-t", "-c", ssl], None);
        assert!(out.status.success(), "{conninfo}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    }
    // Another CA (the gateway's development one) does not vouch for the server. Both
    // carry the same name, so OpenSSL finds it as the issuer and fails on the signature.
    let other = db
        .conninfo(&db.ro, "verify-full")
        .replace(&pg().ca_pem().display().to_string(), &certs().join("ca.pem").display().to_string());
    let out = pg().psql(&other, &["-t", "-c", ssl], None);
    assert!(!out.status.success(), "verified by a CA that did not sign it");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SSL error"), "{err}");
}

#[test]
fn a_test_database_block_passes_check() {
    let db = pg().database("harness_toml");
    assert!(db.toml("ehr").contains(&format!("\nport = {}\n", pg().port())));
    let config = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\npostgres = \"127.0.0.1:1\"\n[oidc]\nissuer = \"http://127.0.0.1:4400\"\nclient_id = \"c\"\nclient_secret = {{ file = \"{}\" }}\nredirect_url = \"http://127.0.0.1:8080/.custos/callback\"\n[session]\nredis_url = \"redis://127.0.0.1:1/\"\n[postgres]\nallow_plaintext = true\n[[routes]]\npublic = true\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n{}",
        certs().join("ca.pem").display(),
        db.toml("ehr")
    );
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("gateway.toml");
    for config in [config.clone(), config.replace(&db.toml("ehr"), &db.toml_verify_full("ehr"))] {
        assert!(config.contains("mode = \"disable\"") != config.contains("mode = \"verify-full\""));
        std::fs::write(&path, &config).expect("the config");
        let out =
            std::process::Command::new(CUSTOS).args(["check", "--config"]).arg(&path).output().expect("custos check");
        assert!(out.status.success(), "{}\n{config}", String::from_utf8_lossy(&out.stderr));
    }
}

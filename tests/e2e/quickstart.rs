//! The quickstart (examples/quickstart.sh, examples/quickstart.toml) shows what it says
//! (`custos check` on it: config_errors.rs): its printed steps name the people of the
//! test provider, and those
//! steps work on the quickstart's own policy, break-glass and route settings (here on
//! ephemeral ports): a nurse reads notes, is asked to step up for a write, is refused a
//! delete, declares an emergency for a restricted record; the security lead and a
//! reviewer read the review queue, an administrator reads no record.

use crate::harness::*;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn quickstart() -> toml::Table {
    let text = std::fs::read_to_string(root().join("examples/quickstart.toml")).unwrap();
    text.parse().unwrap_or_else(|e| panic!("examples/quickstart.toml: {e}"))
}

#[test]
fn the_quickstart_runs_the_policy_and_its_message_names_the_providers_people() {
    let cfg = quickstart();
    assert!(cfg.contains_key("policy") && cfg.contains_key("breakglass"), "the quickstart runs without a policy");
    let script = std::fs::read_to_string(root().join("examples/quickstart.sh")).unwrap();
    let idp = std::fs::read_to_string(root().join("tests/idp/server.mjs")).unwrap();
    for who in ["nora", "alice", "bob", "sam", "adam", "rhea", "ravi", "rosa"] {
        assert!(script.contains(who), "quickstart.sh does not name {who}");
        assert!(idp.contains(&format!("  {who}: {{ password: '{who}-password'")), "tests/idp has no {who}");
    }
    // The emergency URL it prints names a route of its config.
    let routes = cfg["routes"].as_array().unwrap();
    let bg = script.split("/.custos/breakglass?route=").nth(1).expect("no emergency URL in the message");
    let route = bg.split('&').next().unwrap();
    assert!(routes.iter().any(|r| r["name"].as_str() == Some(route)), "no route {route}");
}

#[tokio::test]
async fn the_quickstart_steps_work_on_its_policy_and_break_glass() {
    let cfg = quickstart();
    let examples = root().join("examples");
    let policy = cfg["policy"].as_table().unwrap();
    let file = |k: &str| examples.join(policy[k].as_str().unwrap()).display().to_string();
    let breakglass = toml::to_string(&cfg["breakglass"]).unwrap();
    let policy = format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\ncases = \"{}\"\n",
        file("model"),
        file("policy"),
        file("cases")
    );
    let breakglass = format!("[breakglass]\n{breakglass}");
    // The quickstart's records route, in front of this test's demo upstream.
    let mut records = cfg["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == Some("demo-patients"))
        .expect("a demo-patients route")
        .as_table()
        .unwrap()
        .clone();
    let demo = demo().await;
    records.insert("upstream".into(), format!("http://{}", demo.addr).into());
    let mut t = toml::Table::new();
    t.insert("routes".into(), toml::Value::Array(vec![records.into()]));
    let routes = toml::to_string(&t).unwrap();
    let s = site(Opts { policy: &policy, breakglass: &breakglass, routes: Some(routes), ..Default::default() }).await;
    let at = |p: &str| format!("{}{p}", s.origin);

    // 1. nora, a nurse, signs in with her password only: reading needs no more.
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1/notes", "nora", "nora-password", None).await.status(), 302);
    assert_eq!(nav(&c, &at("/patients/1/notes")).await.status(), 200);
    // 2. A write needs her second factor: a step-up, not a plain refusal.
    let r = c.post(at("/patients/1/notes")).body("BP 120/80").send().await.unwrap();
    assert_eq!(r.status(), 401, "a write without MFA: {}", r.text().await.unwrap());
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("insufficient_user_authentication"), "{challenge}");
    audit_has(&s.gw.audit_dir(), |e| {
        e.method.as_deref() == Some("POST") && reason(e).as_deref() == Some("mfa_required")
    })
    .await;
    let login = "/.custos/login?rd=/patients/1/notes";
    assert_eq!(sign_in(&s, &c, login, "nora", "nora-password", Some("123456")).await.status(), 302);
    let r = c.post(at("/patients/1/notes")).body("BP 120/80").send().await.unwrap();
    assert_eq!(r.status(), 201, "a nurse with MFA adds a note");
    // 3. Never a delete, even with MFA.
    let r = c.delete(at("/patients/1/notes/1")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(demo.seen().iter().filter(|q| q.method == "DELETE").count(), 0, "a delete reached the upstream");
    // 4. The restricted record, then a declared emergency opens it.
    assert_eq!(nav(&c, &at("/patients/3")).await.status(), 403);
    let form = nav(&c, &at("/.custos/breakglass?route=demo-patients&path=/patients/3")).await;
    assert_eq!(form.status(), 200);
    let page = form.text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let why = "Patient collapsed in the waiting room; allergy list needed";
    let r = c
        .post(at("/.custos/breakglass"))
        .header("origin", s.origin.clone())
        .form(&[("csrf", csrf.as_str()), ("route", "demo-patients"), ("path", "/patients/3"), ("justification", why)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(nav(&c, &at("/patients/3")).await.status(), 200, "the declared emergency did not open the record");
    let started = audit_has(&s.gw.audit_dir(), |e| kind(e) == "breakglass.started").await;
    assert_eq!(subject(&started), Some("nora"));

    // 5. The security lead and a reviewer read the review queue; the administrator
    //    reads no record.
    for who in ["sam", "rhea"] {
        let b = browser();
        let pass = format!("{who}-password");
        let reviews = "/.custos/breakglass/reviews";
        assert_eq!(sign_in(&s, &b, reviews, who, &pass, Some("123456")).await.status(), 302);
        let r = nav(&b, &at(reviews)).await;
        assert_eq!(r.status(), 200, "{who} may not review");
        assert!(r.text().await.unwrap().contains(why), "{who} does not see nora's emergency");
    }
    let b = browser();
    assert_eq!(sign_in(&s, &b, "/patients/1", "adam", "adam-password", Some("123456")).await.status(), 302);
    assert_eq!(nav(&b, &at("/patients/1")).await.status(), 403, "the administrator read a record");
}

/// The database step it prints names what its config serves: `custos db login <name>`
/// for a `[[databases]]` of it, `--pg-port` the port of `listen.postgres`, and the psql
/// command with `sslmode=verify-full` against the dev CA.
#[test]
fn the_quickstart_prints_the_two_commands_that_reach_its_database() {
    let cfg = quickstart();
    let script = std::fs::read_to_string(root().join("examples/quickstart.sh")).unwrap();
    let listen = cfg["listen"]["postgres"].as_str().expect("the quickstart has no PostgreSQL listener");
    let port = listen.rsplit(':').next().unwrap();
    let login = script.lines().find(|l| l.contains("custos db login")).expect("no `custos db login` in the message");
    let db = login.split("db login ").nth(1).unwrap().split(' ').next().unwrap();
    let dbs = cfg["databases"].as_array().expect("no [[databases]]");
    assert!(dbs.iter().any(|d| d["name"].as_str() == Some(db)), "no database {db}");
    assert!(login.contains("--gateway http://127.0.0.1:8080") && login.contains("--ca certs/dev/ca.pem"), "{login}");
    assert!(login.contains(&format!("--pg-port {port}")), "{login}");
    let psql = script.lines().find(|l| l.trim_start().starts_with("psql \"")).expect("no psql command");
    assert!(psql.contains(&format!("host=127.0.0.1 port={port} dbname={db} user=nora sslmode=verify-full")), "{psql}");
    // Its upstream is the PostgreSQL the script starts.
    let start = script.lines().find(|l| l.contains("quickstart-postgres.sh start")).expect("no PostgreSQL started");
    let upstream = dbs[0]["port"].as_integer().unwrap().to_string();
    assert!(start.split_whitespace().any(|w| w == upstream), "{start} does not start port {upstream}");
}

/// Stops the quickstart's PostgreSQL in `.0` when the test ends, passed or not.
struct StopPg(PathBuf);

impl Drop for StopPg {
    fn drop(&mut self) {
        let _ = std::process::Command::new(root().join("examples/quickstart-postgres.sh")).arg("stop").arg(&self.0).status();
    }
}

/// The quickstart's PostgreSQL (its own script, on an ephemeral port) comes up with the
/// synthetic patients, and the quickstart's `[[databases]]` block reaches it through the
/// gateway's PostgreSQL listener: nora signs in with her code at `/.custos/db/login`, the
/// token from `/.custos/db/token` is psql's password over `verify-full`, and upstream she
/// is `ehr_ro`, named in `application_name`.
#[tokio::test]
async fn the_quickstart_database_is_reached_with_a_database_token() {
    let cfg = quickstart();
    let run = tempfile::tempdir().unwrap();
    // The postgres system user (when root) reaches its folder inside.
    std::fs::set_permissions(run.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pg_port = free_port();
    let script = root().join("examples/quickstart-postgres.sh");
    let out = tokio::process::Command::new(&script)
        .arg("start")
        .arg(run.path())
        .arg(pg_port.to_string())
        .arg(certs())
        .output()
        .await
        .unwrap();
    let _stop = StopPg(run.path().to_path_buf());
    assert!(out.status.success(), "the quickstart's PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));

    // The quickstart's database, pointed at this server and its password files.
    let mut db = cfg["databases"].as_array().unwrap()[0].as_table().unwrap().clone();
    db.insert("port".into(), i64::from(pg_port).into());
    let secret = |role: &str| {
        let mut t = toml::Table::new();
        t.insert("file".into(), run.path().join(format!("{role}-password")).display().to_string().into());
        toml::Value::Table(t)
    };
    db.insert("password".into(), secret("ehr_ro"));
    db["tls"].as_table_mut().unwrap().insert("ca".into(), certs().join("ca.pem").display().to_string().into());
    db["roles"]["dba"].as_table_mut().unwrap().insert("password".into(), secret("ehr_admin"));
    let mut t = toml::Table::new();
    t.insert("databases".into(), toml::Value::Array(vec![db.into()]));
    let databases = toml::to_string(&t).unwrap();
    // The quickstart's policy. While policies/ grants no `connect` on a database, its
    // rule is added in a copy.
    let examples = root().join("examples");
    let policy = cfg["policy"].as_table().unwrap();
    let file = |k: &str| examples.join(policy[k].as_str().unwrap());
    let mut rules = std::fs::read_to_string(file("policy")).unwrap();
    if !rules.contains("db:ehr") {
        rules.push_str("\np, nurse, cardiology, db:ehr, connect, allow\n");
    }
    let policy_copy = run.path().join("policy.csv");
    std::fs::write(&policy_copy, rules).unwrap();
    let policy = format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\ncases = \"{}\"\n",
        file("model").display(),
        policy_copy.display(),
        file("cases").display()
    );
    let gw_port = free_port();
    let listen = format!("postgres = \"127.0.0.1:{gw_port}\"");
    let s = site(Opts { policy: &policy, listen: &listen, extra: &databases, ..Default::default() }).await;

    // nora signs in for the database (her code: it needs MFA, as the site does).
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let challenge = custos::session::dbtoken::s256(&verifier);
    let c = browser();
    let login = format!("/.custos/db/login?db=ehr&port=40001&challenge={challenge}&state=state-0123456789");
    let r = sign_in(&s, &c, &login, "nora", "nora-password", Some("123456")).await;
    assert_eq!(r.status(), 302);
    let r = nav(&c, &format!("{}{}", s.origin, location(&r).trim_start_matches(&s.origin))).await;
    let back = location(&r);
    assert!(back.starts_with("http://127.0.0.1:40001/callback?code="), "{back}");
    let code = url::Url::parse(&back).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let r = client()
        .post(format!("{}/.custos/db/token", s.origin))
        .form(&[("code", code.as_str()), ("verifier", verifier.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: serde_json::Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    // psql through the gateway, over verify-full, with the token as its password.
    let conninfo = format!(
        "host=127.0.0.1 port={gw_port} dbname=ehr user=nora password={token} sslmode=verify-full sslrootcert={}",
        certs().join("ca.pem").display()
    );
    let sql = "SELECT name FROM patients ORDER BY id; SELECT current_user, application_name FROM pg_stat_activity WHERE pid = pg_backend_pid();";
    let mut psql = tokio::process::Command::new(tool("psql", "postgresql-client"));
    psql.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, "-d", &conninfo]).env("PGCONNECT_TIMEOUT", "10");
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("PG") && k != "PGCONNECT_TIMEOUT") {
            psql.env_remove(k);
        }
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), psql.kill_on_drop(true).output())
        .await
        .expect("psql took over 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql: {}\n{}", String::from_utf8_lossy(&out.stderr), s.gw.log());
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines, ["Test Patient One", "Test Patient Two", "Test Patient Three", "ehr_ro|custos:nora/psql"]);
    let connect = audit_has(&s.gw.audit_dir(), |e| {
        e.verb.as_deref() == Some("connect") && decision(e).as_deref() == Some("allow")
    })
    .await;
    assert_eq!((subject(&connect), connect.db_role.as_deref()), (Some("nora"), Some("nurse")));
}

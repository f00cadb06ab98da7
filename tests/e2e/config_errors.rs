//! Every config error is refused before anything listens, with one message that names
//! the file and the key; `custos check` validates without serving. Which key each
//! mistake names is unit-tested on `Config::from_toml` (`gateway/src/config/tests.rs`);
//! here is what the binary does with them.

use crate::harness::*;
use std::process::{Command, Stdio};

fn run(sub: &str, config: &str) -> (i32, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(CUSTOS).args([sub, "--config"]).arg(&path).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), path, dir)
}

/// An `[oidc]` table (the client secret is any readable file), with `extra` lines.
fn oidc(extra: &str) -> String {
    format!(
        "[oidc]\nissuer = \"http://127.0.0.1:4400\"\nclient_id = \"c\"\nclient_secret = {{ file = \"{}/ca.pem\" }}\nredirect_url = \"http://127.0.0.1:8080/.custos/callback\"\n{extra}",
        certs().display()
    )
}

/// A config with `[oidc]`, `[session]`, the example `[policy]` and `[breakglass]` with
/// `extra` lines.
fn breakglass(extra: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n[breakglass]\n{extra}{ROUTE}",
        oidc(""),
        p.join("hipaa_model.conf").display(),
        p.join("hipaa_policy.csv").display()
    )
}

/// The PostgreSQL front end on a loopback plaintext listener with one `[[databases]]`
/// entry, its roles table `roles`.
fn database(roles: &str) -> String {
    format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\npostgres = \"127.0.0.1:6432\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n[postgres]\nallow_plaintext = true\n{ROUTE}[[databases]]\nname = \"ehr\"\nhost = \"127.0.0.1\"\n{roles}",
        oidc("")
    )
}

const ROUTE: &str = "[[routes]]\npublic = true\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n";

/// What the binary does with a config error, for each kind (the schema's, a section's,
/// a file it names, the policy's): exit 2 before listening, one line naming the file
/// and the key. Each section's error keys are unit tests in `gateway/src/config/tests.rs`.
#[test]
fn each_config_error_names_the_file_and_the_key() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown key", format!("[listen]\nhttp = \"127.0.0.1:0\"\nhtpp = \"x\"\n{ROUTE}"), "`listen.htpp`"),
        ("not TOML", "[listen\nhttp = 1".to_string(), ""),
        ("no routes", "[listen]\nhttp = \"127.0.0.1:0\"\n".to_string(), "`routes`"),
        ("missing cert file", format!("[listen.tls]\naddr = \"127.0.0.1:0\"\ncert = \"/nonexistent/cert.pem\"\nkey = {{ file = \"/nonexistent/key.pem\" }}\n{ROUTE}"), "`listen.tls.cert`"),
        ("key that does not match", format!("[listen.tls]\naddr = \"127.0.0.1:0\"\ncert = \"{0}/server.pem\"\nkey = {{ file = \"{0}/client-key.pem\" }}\n{ROUTE}", certs().display()), "`listen.tls.key`"),
        ("callback path", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{ROUTE}", oidc("").replace("/.custos/callback", "/callback")), "`oidc.redirect_url`"),
        ("alert format", breakglass("[[breakglass.alerts]]\nurl = \"http://127.0.0.1:9/a\"\nformat = \"teams\"\n"), "`breakglass.alerts[0].format`"),
        ("a missing policy file", breakglass("").replace("hipaa_policy.csv", "no-such-policy.csv"), "`policy.policy`"),
        ("a database without roles", database("[databases.roles]\n"), "`databases[0].roles`"),
        ("a role without a password", database("[databases.roles]\nreaders = \"ehr_ro\"\n"), "`databases[0].roles.readers.password`"),
        ("plaintext PostgreSQL off loopback", database("[databases.roles]\nreaders = { user = \"r\", password = { env = \"PATH\" } }\n").replace("127.0.0.1:6432", "0.0.0.0:6432"), "`postgres.allow_plaintext`"),
    ];
    for (name, config, key) in cases {
        for sub in ["check", "serve"] {
            let (code, stderr, path, _dir) = run(sub, &config);
            assert_eq!(code, 2, "{name} ({sub}): exit {code}, stderr {stderr}");
            assert!(stderr.contains(&path.display().to_string()), "{name} ({sub}): file not named: {stderr}");
            assert!(stderr.contains(key), "{name} ({sub}): key {key} not named: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{name} ({sub}): not one message: {stderr}");
        }
    }
}

/// The policy is checked at load, by the policy's own rules: a policy that still grants
/// the bare `breakglass` is refused with the new name and its line.
#[test]
fn check_refuses_a_policy_with_the_old_breakglass_action() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.csv");
    std::fs::write(&old, "# old\np, nurse, cardiology, ehr:/patients/*, breakglass, allow\n").unwrap();
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let (code, stderr, _, _dir) = run(
        "check",
        &breakglass("").replace(&p.join("hipaa_policy.csv").display().to_string(), &old.display().to_string()),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}:2", old.display())) && stderr.contains("custos:breakglass"), "{stderr}");
    assert!(stderr.contains("`policy.policy`"), "{stderr}");
}

#[test]
fn check_accepts_the_shipped_configs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The quickstart config points at certificates the quickstart makes, and at the
    // example policy; make them in a copy of its folder layout.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("examples")).unwrap();
    std::fs::copy(root.join("examples/quickstart.toml"), dir.path().join("examples/quickstart.toml")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    for f in ["hipaa_model.conf", "hipaa_policy.csv", "hipaa_cases.toml"] {
        std::fs::copy(root.join("policies").join(f), dir.path().join("policies").join(f)).unwrap();
    }
    std::fs::write(dir.path().join("examples/quickstart-client-secret"), "made-by-quickstart-sh").unwrap();
    std::fs::create_dir_all(dir.path().join("examples/.quickstart")).unwrap();
    for role in ["ehr_ro", "ehr_admin"] {
        std::fs::write(dir.path().join(format!("examples/.quickstart/{role}-password")), "made-by-quickstart-sh").unwrap();
    }
    let out = Command::new(CUSTOS).args(["certs", "dev", "--out"]).arg(dir.path().join("certs/dev")).output().unwrap();
    assert!(out.status.success());
    for cfg in [dir.path().join("examples/quickstart.toml"), root.join("examples/docker.toml")] {
        let out = Command::new(CUSTOS)
            .args(["check", "--config"])
            .arg(&cfg)
            .env("CUSTOS_OIDC_CLIENT_SECRET", "x")
            .env("CUSTOS_EHR_RO_PASSWORD", "x")
            .env("CUSTOS_EHR_ADMIN_PASSWORD", "x")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", cfg.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test]
async fn a_taken_port_is_reported_with_its_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, stderr, path, _dir) = run("serve", &format!("[listen]\nhttp = \"127.0.0.1:{port}\"\n{ROUTE}"));
    assert_ne!(code, 0);
    assert!(stderr.contains("`listen.http`") && stderr.contains(&path.display().to_string()), "{stderr}");
}

/// `check` validates the database section without the network: a host that resolves
/// nowhere is not its business (`serve` connects), so it passes.
#[test]
fn check_accepts_a_database_it_cannot_reach() {
    let roles = "[databases.roles]\nreaders = { user = \"r\", password = { env = \"PATH\" } }\n";
    let (code, stderr, _, _dir) = run("check", &database(roles).replace("\"127.0.0.1\"\n", "\"db.invalid\"\n"));
    assert_eq!(code, 0, "{stderr}");
}

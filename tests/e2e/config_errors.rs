//! Every config error is refused before anything listens, with one message that names
//! the file and the key; `custos check` validates without serving.

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

const ROUTE: &str = "[[routes]]\npublic = true\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n";

#[test]
fn each_config_error_names_the_file_and_the_key() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown key", format!("[listen]\nhttp = \"127.0.0.1:0\"\nhtpp = \"x\"\n{ROUTE}"), "`listen.htpp`"),
        ("unknown top-level key", format!("colour = 1\n[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}"), "`colour`"),
        ("unknown route key", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}upstrem = \"x\"\n"), "`routes[0].upstrem`"),
        ("websocket not a boolean", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}websocket = \"yes\"\n"), "`routes[0].websocket`"),
        ("websocket on a public route", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}websocket = true\n"), "`routes[0].websocket`"),
        ("missing upstream", "[listen]\nhttp = \"127.0.0.1:0\"\n[[routes]]\npublic = true\nname = \"a\"\n".to_string(), "`routes[0].upstream`"),
        ("malformed upstream", "[listen]\nhttp = \"127.0.0.1:0\"\n[[routes]]\npublic = true\nname = \"a\"\nupstream = \"ftp://x:1\"\n".to_string(), "`routes[0].upstream`"),
        ("upstream with a path", "[listen]\nhttp = \"127.0.0.1:0\"\n[[routes]]\npublic = true\nname = \"a\"\nupstream = \"http://127.0.0.1:1/x\"\n".to_string(), "`routes[0].upstream`"),
        ("upstream without scheme", "[listen]\nhttp = \"127.0.0.1:0\"\n[[routes]]\npublic = true\nname = \"a\"\nupstream = \"127.0.0.1:1\"\n".to_string(), "`routes[0].upstream`"),
        ("bad listen address", format!("[listen]\nhttp = \"localhost:http\"\n{ROUTE}"), "`listen.http`"),
        ("bad admin address", format!("[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"9090\"\n{ROUTE}"), "`admin.listen`"),
        ("missing cert file", format!("[listen.tls]\naddr = \"127.0.0.1:0\"\ncert = \"/nonexistent/cert.pem\"\nkey = {{ file = \"/nonexistent/key.pem\" }}\n{ROUTE}"), "`listen.tls.cert`"),
        ("missing key env", format!("[listen.tls]\naddr = \"127.0.0.1:0\"\ncert = \"{}/server.pem\"\nkey = {{ env = \"CUSTOS_TEST_UNSET_KEY\" }}\n{ROUTE}", certs().display()), "`listen.tls.key`"),
        ("protected route without [oidc]", "[listen]\nhttp = \"127.0.0.1:0\"\n[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n".to_string(), "`routes[0].public`"),
        ("[oidc] without [session]", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}{ROUTE}", oidc("")), "`session`"),
        ("callback path", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{ROUTE}", oidc("").replace("/.custos/callback", "/callback")), "`oidc.redirect_url`"),
        ("plain-http issuer", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{ROUTE}", oidc("").replace("http://127.0.0.1:4400", "http://idp.example.org")), "`oidc.issuer`"),
        ("unset client secret", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{ROUTE}", oidc("").replace(&format!("{{ file = \"{}/ca.pem\" }}", certs().display()), "{ env = \"CUSTOS_TEST_UNSET_SECRET\" }")), "`oidc.client_secret`"),
        ("alg none", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{ROUTE}", oidc("id_token_algs = [\"none\"]\n")), "`oidc.id_token_algs[0]`"),
        ("alg HMAC", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{ROUTE}", oidc("id_token_algs = [\"RS256\", \"HS256\"]\n")), "`oidc.id_token_algs[1]`"),
        ("clock leeway beyond its bound", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{ROUTE}", oidc("clock_skew_secs = 3600\n")), "`oidc.clock_skew_secs`"),
        ("password in the Redis URL", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://:hunter2@127.0.0.1:1/\"\n{ROUTE}", oidc("")), "`session.redis_url`"),
        ("touch interval", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\nidle_timeout_secs = 60\ntouch_interval_secs = 60\n{ROUTE}", oidc("")), "`session.touch_interval_secs`"),
        ("protected route on another host", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n[[routes]]\nname = \"a\"\nhost = \"ehr.example.org\"\nupstream = \"http://127.0.0.1:9\"\n", oidc("")), "`routes[0].host`"),
        ("cookie prefix", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\ncookie_name = \"__Host-x\"\n{ROUTE}", oidc("")), "`session.cookie_name`"),
        ("key that does not match", format!("[listen.tls]\naddr = \"127.0.0.1:0\"\ncert = \"{0}/server.pem\"\nkey = {{ file = \"{0}/client-key.pem\" }}\n{ROUTE}", certs().display()), "`listen.tls.key`"),
        ("duplicate route name", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}{ROUTE}"), "`routes[1].name`"),
        ("duplicate route place", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}[[routes]]\npublic = true\nname = \"b\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"), "`routes[1].path`"),
        ("path not normalised", "[listen]\nhttp = \"127.0.0.1:0\"\n[[routes]]\npublic = true\nname = \"a\"\npath = \"/a/../b\"\nupstream = \"http://127.0.0.1:9\"\n".to_string(), "`routes[0].path`"),
        ("strip prefix not a prefix", "[listen]\nhttp = \"127.0.0.1:0\"\n[[routes]]\npublic = true\nname = \"a\"\npath = \"/a\"\nstrip_prefix = \"/b\"\nupstream = \"http://127.0.0.1:9\"\n".to_string(), "`routes[0].strip_prefix`"),
        ("wrong type", format!("[listen]\nhttp = \"127.0.0.1:0\"\n[server]\nthreads = \"two\"\n{ROUTE}"), "`server.threads`"),
        ("no listener", format!("[listen]\n{ROUTE}"), "`listen`"),
        ("no routes", "[listen]\nhttp = \"127.0.0.1:0\"\n".to_string(), "`routes`"),
        ("upstream_tls on http", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}[routes.upstream_tls]\nsni = \"x\"\n"), "`routes[0].upstream_tls`"),
        ("header limit per route", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{ROUTE}[routes.limits]\nmax_headers = 5\n"), "`routes[0].limits.max_headers`"),
        ("not TOML", "[listen\nhttp = 1".to_string(), ""),
        ("[breakglass] without [policy]", format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n[breakglass]\n{ROUTE}", oidc("")), "`breakglass`"),
        ("break-glass grant longer than the maximum", breakglass("default_secs = 600\nmax_secs = 60\n"), "`breakglass.default_secs`"),
        ("alert format", breakglass("[[breakglass.alerts]]\nurl = \"http://127.0.0.1:9/a\"\nformat = \"teams\"\n"), "`breakglass.alerts[0].format`"),
        ("unsigned json alert", breakglass("[[breakglass.alerts]]\nurl = \"http://127.0.0.1:9/a\"\nformat = \"json\"\n"), "`breakglass.alerts[0].secret`"),
        ("plain-http alert off the machine", breakglass("[[breakglass.alerts]]\nurl = \"http://alerts.example.org/a\"\nformat = \"slack\"\n"), "`breakglass.alerts[0].url`"),
        ("alerts no longer give up", breakglass("[[breakglass.alerts]]\nurl = \"http://127.0.0.1:9/a\"\nformat = \"slack\"\nmax_tries = 5\n"), "`breakglass.alerts[0].max_tries`"),
        ("the webhook no longer gives up", format!("[listen]\nhttp = \"127.0.0.1:0\"\n[audit.webhook]\nurl = \"http://127.0.0.1:9/x\"\nsecret = {{ file = \"{}/ca.pem\" }}\nmax_tries = 8\n{ROUTE}", certs().display()), "`audit.webhook.max_tries`"),
        ("a spool limit below four segments", format!("[listen]\nhttp = \"127.0.0.1:0\"\n[audit]\nspool_max_bytes = 100000\n{ROUTE}"), "`audit.spool_max_bytes`"),
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

/// Counts have a ceiling, methods are tokens, and a route's underscored headers are not
/// spellings of what Custos strips or sets: each an error naming its key.
#[test]
fn counts_methods_and_underscored_headers_are_checked() {
    let listen = "[listen]\nhttp = \"127.0.0.1:0\"\n";
    let session =
        |extra: &str| format!("{listen}{}[session]\nredis_url = \"redis://127.0.0.1:1/\"\n{extra}{ROUTE}", oidc(""));
    let cases: Vec<(&str, String, &str)> = vec![
        ("too many threads", format!("{listen}[server]\nthreads = 100000\n{ROUTE}"), "`server.threads`"),
        (
            "a huge keep-alive pool",
            format!("{listen}[server]\nupstream_keepalive_pool = 10000000\n{ROUTE}"),
            "`server.upstream_keepalive_pool`",
        ),
        (
            "a day of grace",
            format!("{listen}[server]\ngrace_period_secs = 86400\n{ROUTE}"),
            "`server.grace_period_secs`",
        ),
        (
            "headers over pingora's own limit",
            format!("{listen}[limits]\nmax_header_bytes = 2000000\n{ROUTE}"),
            "`limits.max_header_bytes`",
        ),
        ("too many headers", format!("{listen}[limits]\nmax_headers = 1000\n{ROUTE}"), "`limits.max_headers`"),
        (
            "a year-long timeout",
            format!("{listen}{ROUTE}[routes.limits]\nupstream_read_timeout_secs = 31536000\n"),
            "`routes[0].limits.upstream_read_timeout_secs`",
        ),
        ("sessions per user", session("max_sessions_per_user = 100000\n"), "`session.max_sessions_per_user`"),
        ("audit queue", format!("{listen}[audit]\nqueue_limit = 100000000\n{ROUTE}"), "`audit.queue_limit`"),
        (
            "a method that is not a token",
            format!("{listen}[server]\nmethods = [\"GET\", \"custos:breakglass\"]\n{ROUTE}"),
            "`server.methods[1]`",
        ),
        ("no methods", format!("{listen}[server]\nmethods = []\n{ROUTE}"), "`server.methods`"),
        ("a method twice", format!("{listen}{ROUTE}methods = [\"GET\", \"GET\"]\n"), "`routes[0].methods[1]`"),
        (
            "an underscored identity header",
            format!("{listen}{ROUTE}underscore_headers = [\"x_custos_user\"]\n"),
            "`routes[0].underscore_headers[0]`",
        ),
        (
            "an underscored stripped header",
            format!("{listen}{ROUTE}underscore_headers = [\"x_ok\", \"remote_user\"]\n"),
            "`routes[0].underscore_headers[1]`",
        ),
    ];
    for (name, config, key) in cases {
        let (code, stderr, path, _dir) = run("check", &config);
        assert_eq!(code, 2, "{name}: exit {code}, stderr {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{name}: file not named: {stderr}");
        assert!(stderr.contains(key), "{name}: key {key} not named: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: not one message: {stderr}");
    }
    // A policy that still grants the bare `breakglass`: refused with the new name and its line.
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
    let out = Command::new(CUSTOS).args(["certs", "dev", "--out"]).arg(dir.path().join("certs/dev")).output().unwrap();
    assert!(out.status.success());
    for cfg in [dir.path().join("examples/quickstart.toml"), root.join("examples/docker.toml")] {
        let out = Command::new(CUSTOS)
            .args(["check", "--config"])
            .arg(&cfg)
            .env("CUSTOS_OIDC_CLIENT_SECRET", "x")
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

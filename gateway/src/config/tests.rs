//! `Config::from_toml` on texts with one mistake each: every error names its key (and
//! the file). Fixture files (certificates, keys, a client secret) are made in a fresh
//! folder beside the text, which names them relative to it.

use super::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// A folder with `gateway.toml`'s neighbours: `server.pem` and its `server-key.pem`,
/// `other-key.pem` (a key of no certificate), `secret` (a client secret).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a certificate");
        let other = rcgen::KeyPair::generate().expect("a key");
        for (name, text) in [
            ("server.pem", made.cert.pem()),
            ("server-key.pem", made.key_pair.serialize_pem()),
            ("other-key.pem", other.serialize_pem()),
            ("secret", "a-client-secret".into()),
        ] {
            std::fs::write(dir.path().join(name), text).expect("a fixture file");
        }
        Fixture { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    fn load(&self, text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&self.file(), text)
    }

    /// The error `text` gives: it names the file, and `key` when one is given.
    fn error(&self, name: &str, text: &str, key: Option<&str>) -> ConfigError {
        let e = match self.load(text) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e,
        };
        assert_eq!(e.file, self.file(), "{name}: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&self.file().display().to_string()), "{name}: file not named: {shown}");
        assert!(!shown.contains('\n'), "{name}: not one line: {shown}");
        if let Some(key) = key {
            assert_eq!(e.key, key, "{name}: {shown}");
            assert!(shown.contains(&format!("`{key}`")), "{name}: {shown}");
        }
        e
    }
}

const LISTEN: &str = "[listen]\nhttp = \"127.0.0.1:0\"\n";
const ROUTE: &str = "[[routes]]\npublic = true\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n";
const SESSION: &str = "[session]\nredis_url = \"redis://127.0.0.1:1/\"\n";

/// An `[oidc]` table with `extra` lines.
fn oidc(extra: &str) -> String {
    format!(
        "[oidc]\nissuer = \"http://127.0.0.1:4400\"\nclient_id = \"c\"\nclient_secret = {{ file = \"secret\" }}\nredirect_url = \"http://127.0.0.1:8080/.custos/callback\"\n{extra}"
    )
}

/// `[listen]`, `[oidc]` and `[session]` (with `session` lines), then `rest`.
fn signed_in(session: &str, rest: &str) -> String {
    format!("{LISTEN}{}{SESSION}{session}{rest}", oidc(""))
}

/// Sign-in, `[policy]` and `[breakglass]` with `extra` lines. The policy files are not
/// read here: loading them is `policy`'s check (`Config::load_with`).
fn breakglass(extra: &str) -> String {
    format!(
        "{LISTEN}{}{SESSION}[policy]\nmodel = \"m.conf\"\npolicy = \"p.csv\"\n[breakglass]\n{extra}{ROUTE}",
        oidc("")
    )
}

fn tls(key: &str) -> String {
    format!("[listen.tls]\naddr = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = {key}\n{ROUTE}")
}

#[test]
fn each_error_names_its_key() {
    let f = Fixture::new();
    let alert = |lines: &str| breakglass(&format!("[[breakglass.alerts]]\nurl = {lines}"));
    let cases: Vec<(&str, String, &str)> = vec![
        // Unknown, missing and mistyped keys (the schema).
        ("unknown key", format!("[listen]\nhttp = \"127.0.0.1:0\"\nhtpp = \"x\"\n{ROUTE}"), "listen.htpp"),
        ("unknown top-level key", format!("colour = 1\n{LISTEN}{ROUTE}"), "colour"),
        ("unknown route key", format!("{LISTEN}{ROUTE}upstrem = \"x\"\n"), "routes[0].upstrem"),
        ("websocket not a boolean", format!("{LISTEN}{ROUTE}websocket = \"yes\"\n"), "routes[0].websocket"),
        (
            "echo_request_id not a boolean",
            format!("{LISTEN}[headers]\necho_request_id = \"no\"\n{ROUTE}"),
            "headers.echo_request_id",
        ),
        ("missing upstream", format!("{LISTEN}[[routes]]\npublic = true\nname = \"a\"\n"), "routes[0].upstream"),
        ("wrong type", format!("{LISTEN}[server]\nthreads = \"two\"\n{ROUTE}"), "server.threads"),
        ("alert format", alert("\"http://127.0.0.1:9/a\"\nformat = \"teams\"\n"), "breakglass.alerts[0].format"),
        // [server], [listen], [admin], [limits]
        ("too many threads", format!("{LISTEN}[server]\nthreads = 100000\n{ROUTE}"), "server.threads"),
        (
            "a huge keep-alive pool",
            format!("{LISTEN}[server]\nupstream_keepalive_pool = 10000000\n{ROUTE}"),
            "server.upstream_keepalive_pool",
        ),
        ("a day of grace", format!("{LISTEN}[server]\ngrace_period_secs = 86400\n{ROUTE}"), "server.grace_period_secs"),
        (
            "a method that is not a token",
            format!("{LISTEN}[server]\nmethods = [\"GET\", \"custos:breakglass\"]\n{ROUTE}"),
            "server.methods[1]",
        ),
        ("no methods", format!("{LISTEN}[server]\nmethods = []\n{ROUTE}"), "server.methods"),
        ("bad listen address", format!("[listen]\nhttp = \"localhost:http\"\n{ROUTE}"), "listen.http"),
        ("no listener", format!("[listen]\n{ROUTE}"), "listen"),
        (
            "missing cert file",
            format!("[listen.tls]\naddr = \"127.0.0.1:0\"\ncert = \"/nonexistent/cert.pem\"\nkey = {{ file = \"/nonexistent/key.pem\" }}\n{ROUTE}"),
            "listen.tls.cert",
        ),
        ("missing key env", tls("{ env = \"CUSTOS_TEST_UNSET_KEY\" }"), "listen.tls.key"),
        ("key that does not match", tls("{ file = \"other-key.pem\" }"), "listen.tls.key"),
        ("bad admin address", format!("{LISTEN}[admin]\nlisten = \"9090\"\n{ROUTE}"), "admin.listen"),
        (
            "headers over pingora's own limit",
            format!("{LISTEN}[limits]\nmax_header_bytes = 2000000\n{ROUTE}"),
            "limits.max_header_bytes",
        ),
        ("too many headers", format!("{LISTEN}[limits]\nmax_headers = 1000\n{ROUTE}"), "limits.max_headers"),
        // [[routes]]
        ("no routes", LISTEN.to_string(), "routes"),
        ("websocket on a public route", format!("{LISTEN}{ROUTE}websocket = true\n"), "routes[0].websocket"),
        (
            "malformed upstream",
            format!("{LISTEN}[[routes]]\npublic = true\nname = \"a\"\nupstream = \"ftp://x:1\"\n"),
            "routes[0].upstream",
        ),
        (
            "upstream with a path",
            format!("{LISTEN}[[routes]]\npublic = true\nname = \"a\"\nupstream = \"http://127.0.0.1:1/x\"\n"),
            "routes[0].upstream",
        ),
        (
            "upstream without scheme",
            format!("{LISTEN}[[routes]]\npublic = true\nname = \"a\"\nupstream = \"127.0.0.1:1\"\n"),
            "routes[0].upstream",
        ),
        (
            "protected route without [oidc]",
            format!("{LISTEN}[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n"),
            "routes[0].public",
        ),
        ("duplicate route name", format!("{LISTEN}{ROUTE}{ROUTE}"), "routes[1].name"),
        (
            "duplicate route place",
            format!("{LISTEN}{ROUTE}[[routes]]\npublic = true\nname = \"b\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"),
            "routes[1].path",
        ),
        (
            "path not normalised",
            format!("{LISTEN}[[routes]]\npublic = true\nname = \"a\"\npath = \"/a/../b\"\nupstream = \"http://127.0.0.1:9\"\n"),
            "routes[0].path",
        ),
        (
            "strip prefix not a prefix",
            format!("{LISTEN}[[routes]]\npublic = true\nname = \"a\"\npath = \"/a\"\nstrip_prefix = \"/b\"\nupstream = \"http://127.0.0.1:9\"\n"),
            "routes[0].strip_prefix",
        ),
        ("upstream_tls on http", format!("{LISTEN}{ROUTE}[routes.upstream_tls]\nsni = \"x\"\n"), "routes[0].upstream_tls"),
        ("header limit per route", format!("{LISTEN}{ROUTE}[routes.limits]\nmax_headers = 5\n"), "routes[0].limits.max_headers"),
        (
            "a year-long timeout",
            format!("{LISTEN}{ROUTE}[routes.limits]\nupstream_read_timeout_secs = 31536000\n"),
            "routes[0].limits.upstream_read_timeout_secs",
        ),
        ("a method twice", format!("{LISTEN}{ROUTE}methods = [\"GET\", \"GET\"]\n"), "routes[0].methods[1]"),
        (
            "an underscored identity header",
            format!("{LISTEN}{ROUTE}underscore_headers = [\"x_custos_user\"]\n"),
            "routes[0].underscore_headers[0]",
        ),
        (
            "an underscored stripped header",
            format!("{LISTEN}{ROUTE}underscore_headers = [\"x_ok\", \"remote_user\"]\n"),
            "routes[0].underscore_headers[1]",
        ),
        // [oidc], [session]
        ("[oidc] without [session]", format!("{LISTEN}{}{ROUTE}", oidc("")), "session"),
        ("callback path", signed_in("", ROUTE).replace("/.custos/callback", "/callback"), "oidc.redirect_url"),
        (
            "plain-http issuer",
            signed_in("", ROUTE).replace("http://127.0.0.1:4400", "http://idp.example.org"),
            "oidc.issuer",
        ),
        (
            "unset client secret",
            signed_in("", ROUTE).replace("{ file = \"secret\" }", "{ env = \"CUSTOS_TEST_UNSET_SECRET\" }"),
            "oidc.client_secret",
        ),
        (
            "alg none",
            format!("{LISTEN}{}{SESSION}{ROUTE}", oidc("id_token_algs = [\"none\"]\n")),
            "oidc.id_token_algs[0]",
        ),
        (
            "alg HMAC",
            format!("{LISTEN}{}{SESSION}{ROUTE}", oidc("id_token_algs = [\"RS256\", \"HS256\"]\n")),
            "oidc.id_token_algs[1]",
        ),
        (
            "clock leeway beyond its bound",
            format!("{LISTEN}{}{SESSION}{ROUTE}", oidc("clock_skew_secs = 3600\n")),
            "oidc.clock_skew_secs",
        ),
        (
            "password in the Redis URL",
            signed_in("", ROUTE).replace("redis://127.0.0.1:1/", "redis://:hunter2@127.0.0.1:1/"),
            "session.redis_url",
        ),
        (
            "touch interval",
            signed_in("idle_timeout_secs = 60\ntouch_interval_secs = 60\n", ROUTE),
            "session.touch_interval_secs",
        ),
        ("cookie prefix", signed_in("cookie_name = \"__Host-x\"\n", ROUTE), "session.cookie_name"),
        ("sessions per user", signed_in("max_sessions_per_user = 100000\n", ROUTE), "session.max_sessions_per_user"),
        ("cached sessions", signed_in("max_cached_sessions = 2000000\n", ROUTE), "session.max_cached_sessions"),
        (
            "protected route on another host",
            signed_in("", "[[routes]]\nname = \"a\"\nhost = \"ehr.example.org\"\nupstream = \"http://127.0.0.1:9\"\n"),
            "routes[0].host",
        ),
        // [breakglass]
        ("[breakglass] without [policy]", signed_in("", &format!("[breakglass]\n{ROUTE}")), "breakglass"),
        (
            "break-glass grant longer than the maximum",
            breakglass("default_secs = 600\nmax_secs = 60\n"),
            "breakglass.default_secs",
        ),
        ("unsigned json alert", alert("\"http://127.0.0.1:9/a\"\nformat = \"json\"\n"), "breakglass.alerts[0].secret"),
        (
            "plain-http alert off the machine",
            alert("\"http://alerts.example.org/a\"\nformat = \"slack\"\n"),
            "breakglass.alerts[0].url",
        ),
        (
            "alerts no longer give up",
            alert("\"http://127.0.0.1:9/a\"\nformat = \"slack\"\nmax_tries = 5\n"),
            "breakglass.alerts[0].max_tries",
        ),
        // [audit]
        (
            "the webhook no longer gives up",
            format!("{LISTEN}[audit.webhook]\nurl = \"http://127.0.0.1:9/x\"\nsecret = {{ file = \"server.pem\" }}\nmax_tries = 8\n{ROUTE}"),
            "audit.webhook.max_tries",
        ),
        ("a spool limit below four segments", format!("{LISTEN}[audit]\nspool_max_bytes = 100000\n{ROUTE}"), "audit.spool_max_bytes"),
        ("audit queue", format!("{LISTEN}[audit]\nqueue_limit = 100000000\n{ROUTE}"), "audit.queue_limit"),
    ];
    for (name, text, key) in &cases {
        f.error(name, text, Some(key));
    }
    // What a config without mistakes in it gives, as a control.
    for ok in [format!("{LISTEN}{ROUTE}"), signed_in("", ROUTE), tls("{ file = \"server-key.pem\" }")] {
        if let Err(e) = f.load(&ok) {
            panic!("refused: {e}\n{ok}");
        }
    }
}

#[test]
fn text_that_is_not_toml_names_the_file_and_line() {
    let f = Fixture::new();
    let e = f.error("not TOML", "[listen\nhttp = 1", None);
    assert_eq!(e.line, Some(1), "{e}");
}

/// The alert format is a closed set, read by serde: its error names the choices.
#[test]
fn the_alert_format_is_slack_or_json() {
    let f = Fixture::new();
    let text = breakglass("[[breakglass.alerts]]\nurl = \"http://127.0.0.1:9/a\"\nformat = \"teams\"\n");
    let e = f.error("alert format", &text, Some("breakglass.alerts[0].format"));
    assert!(e.message.contains("`slack`") && e.message.contains("`json`") && e.message.contains("teams"), "{e}");
    let text = breakglass("[[breakglass.alerts]]\nurl = \"http://127.0.0.1:9/a\"\nformat = \"slack\"\n");
    let cfg = f.load(&text).unwrap_or_else(|e| panic!("{e}"));
    let alerts = &cfg.breakglass.as_ref().map(|b| b.alerts.clone()).unwrap_or_default();
    assert_eq!(alerts.first().map(|a| a.format), Some(super::breakglass::AlertFormat::Slack));
}

/// A higher layer's check (`policy`'s, of the files it names) reports at its key's line.
#[test]
fn a_later_check_is_put_at_its_key() {
    let f = Fixture::new();
    let text = breakglass("");
    let e = Config::from_toml_with(&f.file(), &text, |cfg| {
        Err(ConfigError { file: cfg.file.clone(), key: "policy.policy".into(), line: None, message: "no".into() })
    })
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    let line = text.lines().position(|l| l.starts_with("policy =")).map(|i| i + 1);
    assert_eq!((e.key.as_str(), e.line), ("policy.policy", line), "{e}");
    assert!(Path::new(&e.file) == f.file());
}

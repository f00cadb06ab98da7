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
const RO: &str = "readers = \"ehr_ro\"\n";
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

/// A `[[databases]]` entry named `ehr` with `keys` (after its name, host and password),
/// `roles` as its `[databases.roles]` lines, then `tables`.
fn db(keys: &str, roles: &str, tables: &str) -> String {
    format!(
        "[[databases]]\nname = \"ehr\"\nhost = \"127.0.0.1\"\npassword = {{ file = \"secret\" }}\n{keys}[databases.roles]\n{roles}{tables}"
    )
}

/// The PostgreSQL front end on a loopback plaintext listener, with sign-in, `[postgres]`
/// lines and the `[[databases]]` in `dbs`.
fn pg(postgres: &str, dbs: &str) -> String {
    format!(
        "{LISTEN}postgres = \"127.0.0.1:6432\"\n{}{SESSION}[postgres]\nallow_plaintext = true\n{postgres}{ROUTE}{dbs}",
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
    let ehr = db("", RO, "[databases.tls]\nmode = \"disable\"\n");
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
        // listen.postgres, [postgres], [[databases]]
        ("route ephi not a boolean", format!("{LISTEN}{ROUTE}ephi = \"no\"\n"), "routes[0].ephi"),
        ("postgres listener without TLS", pg("", &ehr).replace("allow_plaintext = true", "allow_plaintext = false"), "listen.postgres"),
        ("plaintext off loopback", pg("", &ehr).replace("127.0.0.1:6432", "0.0.0.0:6432"), "postgres.allow_plaintext"),
        ("bad postgres address", pg("", &ehr).replace("127.0.0.1:6432", "localhost:6432"), "listen.postgres"),
        ("postgres on the http address", pg("", &ehr).replace("127.0.0.1:6432", "127.0.0.1:0"), "listen.postgres"),
        (
            "postgres listener without sign-in",
            format!("{LISTEN}postgres = \"127.0.0.1:6432\"\n[postgres]\nallow_plaintext = true\n{ROUTE}{ehr}"),
            "listen.postgres",
        ),
        ("postgres listener without databases", pg("", ""), "databases"),
        ("databases without a listener", signed_in("", &format!("{ROUTE}{ehr}")), "listen.postgres"),
        ("[postgres] without a listener", signed_in("[postgres]\n", ROUTE), "listen.postgres"),
        ("no cancels", pg("cancels_per_minute = 0\n", &ehr), "postgres.cancels_per_minute"),
        ("auth failures beyond the bound", pg("auth_failures_per_minute = 1000000\n", &ehr), "postgres.auth_failures_per_minute"),
        ("unknown database key", pg("", &db("hots = \"x\"\n", RO, "")), "databases[0].hots"),
        ("database name with a space", pg("", &db("", RO, "").replace("\"ehr\"", "\"ehr main\"")), "databases[0].name"),
        ("duplicate database name", pg("", &format!("{ehr}{ehr}")), "databases[1].name"),
        ("port zero", pg("", &db("port = 0\n", RO, "")), "databases[0].port"),
        ("no roles", pg("", &db("", "", "")), "databases[0].roles"),
        ("roles missing", pg("", &db("", RO, "").replace("[databases.roles]\nreaders = \"ehr_ro\"\n", "")), "databases[0].roles"),
        (
            "a role with no password",
            pg("", &db("", RO, "").replace("password = { file = \"secret\" }\n", "")),
            "databases[0].roles.readers.password",
        ),
        ("a role table without user", pg("", &db("", "dba = { password = { file = \"secret\" } }\n", "")), "databases[0].roles.dba.user"),
        ("a role table with a typo", pg("", &db("", "dba = { user = \"a\", pasword = 1 }\n", "")), "databases[0].roles.dba.pasword"),
        (
            "an unset role password",
            pg("", &db("", "dba = { user = \"a\", password = { env = \"CUSTOS_TEST_UNSET_PW\" } }\n", "")),
            "databases[0].roles.dba.password",
        ),
        (
            "an unset database password",
            pg("", &db("", RO, "").replace("{ file = \"secret\" }", "{ env = \"CUSTOS_TEST_UNSET_PW\" }")),
            "databases[0].password",
        ),
        (
            "idle longer than the lifetime",
            pg("", &db("session_idle_timeout_secs = 600\nsession_absolute_timeout_secs = 300\n", RO, "")),
            "databases[0].session_absolute_timeout_secs",
        ),
        ("idle within the touch interval", pg("", &db("session_idle_timeout_secs = 30\n", RO, "")), "databases[0].session_idle_timeout_secs"),
        ("bad tls mode", pg("", &db("", RO, "[databases.tls]\nmode = \"verify-ca\"\n")), "databases[0].tls.mode"),
        ("missing CA file", pg("", &db("", RO, "[databases.tls]\nca = \"no-such-ca.pem\"\n")), "databases[0].tls.ca"),
        ("CA file without a certificate", pg("", &db("", RO, "[databases.tls]\nca = \"secret\"\n")), "databases[0].tls.ca"),
        (
            "CA with mode disable",
            pg("", &db("", RO, "[databases.tls]\nmode = \"disable\"\nca = \"server.pem\"\n")),
            "databases[0].tls.ca",
        ),
        (
            "CA with mode require",
            pg("", &db("", RO, "[databases.tls]\nmode = \"require\"\nca = \"server.pem\"\n")),
            "databases[0].tls.ca",
        ),
        ("client_cert without client_key", pg("", &db("", RO, "[databases.tls]\nclient_cert = \"server.pem\"\n")), "databases[0].tls.client_key"),
        (
            "client key of another certificate",
            pg("", &db("", RO, "[databases.tls]\nclient_cert = \"server.pem\"\nclient_key = { file = \"other-key.pem\" }\n")),
            "databases[0].tls.client_key",
        ),
        ("verify-full on a host no certificate names", pg("", &db("", RO, "").replace("127.0.0.1", "db..internal")), "databases[0].host"),
        ("no connections", pg("", &db("", RO, "[databases.limits]\nmax_connections = 0\n")), "databases[0].limits.max_connections"),
        (
            "more per person than in all",
            pg("", &db("", RO, "[databases.limits]\nmax_connections = 5\nmax_connections_per_user = 6\n")),
            "databases[0].limits.max_connections_per_user",
        ),
        ("empty statements only", pg("", &db("", RO, "[databases.limits]\nmax_statement_bytes = 0\n")), "databases[0].limits.max_statement_bytes"),
        ("no time to connect", pg("", &db("", RO, "[databases.limits]\nconnect_timeout_secs = 0\n")), "databases[0].limits.connect_timeout_secs"),
        (
            "a week-long statement",
            pg("", &db("", RO, "[databases.limits]\nstatement_timeout_secs = 31536000\n")),
            "databases[0].limits.statement_timeout_secs",
        ),
    ];
    for (name, text, key) in &cases {
        f.error(name, text, Some(key));
    }
    // What a config without mistakes in it gives, as a control.
    for ok in [
        format!("{LISTEN}{ROUTE}"),
        signed_in("", ROUTE),
        tls("{ file = \"server-key.pem\" }"),
        pg("", &ehr),
        pg("", &db("", RO, "")),
    ] {
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

/// Every `[[databases]]` key as the README documents it, read back: the roles in the
/// order written, each password its own or the database's, the TLS files loaded.
#[test]
fn a_full_database_reads_back() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("admin-pw"), "admin-secret\n").expect("a password file");
    let text = format!(
        "{}[listen.tls]\naddr = \"127.0.0.1:1\"\ncert = \"server.pem\"\nkey = {{ file = \"server-key.pem\" }}\n{}{SESSION}idle_timeout_secs = 600\n{ROUTE}ephi = false\n[postgres]\nauth_failures_per_minute = 3\ncancels_per_minute = 7\n{}",
        LISTEN.replace("[listen]\n", "[listen]\npostgres = \"0.0.0.0:6432\"\n"),
        oidc(""),
        "[[databases]]\nname = \"ehr-main\"\nhost = \"db.internal\"\nport = 5433\ndbname = \"ehr\"\nresource = \"pg\"\ndomain = \"cardiology\"\nephi = false\nrequire_mfa = false\nsession_idle_timeout_secs = 300\nsession_absolute_timeout_secs = 28800\nuser = \"custos\"\npassword = { file = \"secret\" }\n[databases.tls]\nmode = \"verify-full\"\nca = \"server.pem\"\nclient_cert = \"server.pem\"\nclient_key = { file = \"server-key.pem\" }\n[databases.roles]\nreaders = \"ehr_ro\"\ndba = { user = \"ehr_admin\", password = { file = \"admin-pw\" } }\nanalysts = { user = \"ehr_an\" }\n[databases.limits]\nmax_connections_per_user = 2\nmax_connections = 20\nstatement_timeout_secs = 0\nmax_statement_bytes = 4096\nconnect_timeout_secs = 9\n[[databases]]\nname = \"lab\"\nhost = \"127.0.0.1\"\n[databases.roles]\nz = { user = \"lab_z\", password = { file = \"secret\" } }\n",
    );
    let cfg = f.load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let p = cfg.postgres.as_ref().expect("the PostgreSQL listener");
    assert_eq!(p.listen, "0.0.0.0:6432".parse().expect("an address"));
    assert_eq!((p.allow_plaintext, p.auth_failures_per_minute, p.cancels_per_minute), (false, 3, 7));
    assert!(!cfg.routes[0].ephi);
    let [d, lab] = cfg.databases.as_slice() else { panic!("two databases: {:?}", cfg.databases) };
    assert_eq!((d.name.as_str(), d.host.as_str(), d.port, d.dbname.as_str()), ("ehr-main", "db.internal", 5433, "ehr"));
    assert_eq!(
        (d.object(), d.domain.as_str(), d.ephi, d.require_mfa),
        ("pg:ehr-main".into(), "cardiology", false, Some(false))
    );
    assert_eq!((d.idle_timeout.as_secs(), d.absolute_timeout.as_secs()), (300, 28800));
    let (user, pw) = d.check_user.as_ref().expect("the readiness login");
    assert_eq!((user.as_str(), pw.expose()), ("custos", &b"a-client-secret"[..]));
    assert_eq!(d.tls.mode, super::DbTlsMode::VerifyFull);
    assert_eq!((d.tls.ca.len(), d.tls.client.as_ref().map(|(c, _)| c.len())), (1, Some(1)));
    let roles: Vec<_> = d.roles.iter().map(|r| (r.role.as_str(), r.user.as_str(), r.password.expose())).collect();
    assert_eq!(
        roles,
        [
            ("readers", "ehr_ro", &b"a-client-secret"[..]),
            ("dba", "ehr_admin", &b"admin-secret"[..]),
            ("analysts", "ehr_an", &b"a-client-secret"[..]),
        ]
    );
    let l = d.limits;
    assert_eq!((l.max_connections_per_user, l.max_connections, l.statement_timeout), (2, 20, None));
    assert_eq!((l.max_statement_bytes, l.connect_timeout.as_secs()), (4096, 9));
    // The second takes every default (its password its role's own; no readiness login).
    assert_eq!((lab.port, lab.dbname.as_str(), lab.object(), lab.domain.as_str()), (5432, "lab", "db:lab".into(), ""));
    assert_eq!((lab.ephi, lab.require_mfa, lab.check_user.is_none()), (true, None, true));
    // `user` without a database password takes that of a role mapped to the same user.
    let lab_user = text.replace("name = \"lab\"\n", "name = \"lab\"\nuser = \"lab_z\"\n");
    let cfg2 = f.load(&lab_user).unwrap_or_else(|e| panic!("{e}"));
    let (u, p) = cfg2.databases[1].check_user.as_ref().expect("the readiness login");
    assert_eq!((u.as_str(), p.expose()), ("lab_z", &b"a-client-secret"[..]));
    assert_eq!((lab.idle_timeout.as_secs(), lab.absolute_timeout.as_secs()), (600, 43200));
    assert_eq!(
        (lab.tls.mode, lab.tls.ca.is_empty(), lab.tls.client.is_none()),
        (super::DbTlsMode::VerifyFull, true, true)
    );
    assert_eq!(lab.limits, super::DbLimits::default());
    assert_eq!(lab.limits.statement_timeout.map(|t| t.as_secs()), Some(300));
    assert_eq!((lab.limits.max_statement_bytes, lab.limits.max_connections_per_user), (1 << 20, 10));
    // Nothing secret is in the Debug form others log.
    let shown = format!("{:?}", cfg.databases);
    assert!(!shown.contains("secret") && !shown.contains("PRIVATE"), "{shown}");
    // A config without the front end has none, and routes hold ePHI by default.
    let plain = f.load(&format!("{LISTEN}{ROUTE}")).unwrap_or_else(|e| panic!("{e}"));
    assert!(plain.postgres.is_none() && plain.databases.is_empty() && plain.routes[0].ephi);
}

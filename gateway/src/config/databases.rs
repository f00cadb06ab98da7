//! `listen.postgres`, `[postgres]` and `[[databases]]`, validated: the PostgreSQL front
//! end's listener and its rate limits, and each database it reaches (upstream address
//! and TLS, the policy roles mapped to upstream users in the order written, the token
//! session's timeouts, the per-database limits). Every secret and certificate is read
//! here, once, so `custos check` finds every mistake without touching the network.

use super::oidc::AuthSettings;
use super::secret::Secret;
use super::server::TlsListener;
use super::{schema, ConfigError, Validator};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The policy object prefix where a database names none.
pub const DEFAULT_RESOURCE: &str = "db";
/// Bounds on `[databases.limits]` and `[postgres]`: a typo (an extra zero) is an error at
/// `check`, not a surprise in production.
const MAX_CONNECTIONS: usize = 100_000;
/// PostgreSQL's own bound on a message it reads (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB).
const MAX_STATEMENT_BYTES: usize = 1 << 30;
const MAX_STATEMENT_TIMEOUT_SECS: u64 = 7 * 86_400;
const MAX_CONNECT_TIMEOUT_SECS: u64 = 300;
const MAX_PER_MINUTE: u32 = 100_000;

/// The PostgreSQL listener and its front-end-wide settings.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub listen: SocketAddr,
    /// Plaintext startups accepted (loopback listener only).
    pub allow_plaintext: bool,
    pub auth_failures_per_minute: u32,
    pub cancels_per_minute: u32,
}

/// One `[[databases]]` entry.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub resource: String,
    pub domain: String,
    pub ephi: bool,
    /// `None`: `oidc.require_mfa` decides.
    pub require_mfa: Option<bool>,
    /// The database token's session: idle timeout and absolute lifetime.
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// `user` and its password (the database-level one, else that of a role mapped to
    /// the same user), when both are known: the readiness check's login.
    pub check_user: Option<(String, Secret)>,
    pub tls: DbTls,
    /// In the order written: the first a person holds is the one they get by default.
    pub roles: Vec<DbRole>,
    pub limits: DbLimits,
}

impl Database {
    /// The policy object a connection is decided on: `<resource>:<name>`.
    pub fn object(&self) -> String {
        format!("{}:{}", self.resource, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTlsMode {
    /// Plaintext to the upstream (cleartext passwords are then never sent).
    Disable,
    /// Encrypted, the certificate not verified.
    Require,
    /// Encrypted, the certificate verified against `ca` (or the system roots) and `host`.
    VerifyFull,
}

#[derive(Clone)]
pub struct DbTls {
    pub mode: DbTlsMode,
    /// Empty: the system's roots (with `VerifyFull`).
    pub ca: Vec<CertificateDer<'static>>,
    /// A client certificate chain and its key, for mTLS.
    pub client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl fmt::Debug for DbTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTls")
            .field("mode", &self.mode)
            .field("ca", &self.ca.len())
            .field("client_cert", &self.client.as_ref().map(|(c, _)| c.len()))
            .finish()
    }
}

/// A policy role and the upstream login its sessions use.
#[derive(Debug, Clone)]
pub struct DbRole {
    pub role: String,
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbLimits {
    pub max_connections_per_user: usize,
    pub max_connections: usize,
    /// `None`: no `statement_timeout` is set upstream.
    pub statement_timeout: Option<Duration>,
    /// A `Query` or `Parse` longer than this is refused.
    pub max_statement_bytes: usize,
    pub connect_timeout: Duration,
}

impl Default for DbLimits {
    fn default() -> Self {
        DbLimits {
            max_connections_per_user: 10,
            max_connections: 100,
            statement_timeout: Some(Duration::from_secs(300)),
            max_statement_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl Validator<'_> {
    /// `listen.postgres`, `[postgres]` and `[[databases]]` together: each needs the
    /// others, and the listener needs TLS (or a loopback address and
    /// `allow_plaintext`) and sign-in. `taken` are the other listeners' addresses.
    pub(super) fn databases(
        &self,
        raw: &schema::File,
        tls: Option<&TlsListener>,
        taken: &[(&str, Option<SocketAddr>)],
        auth: Option<&AuthSettings>,
    ) -> Result<(Option<PostgresSettings>, Vec<Database>), ConfigError> {
        let listen = raw.listen.postgres.as_deref().map(|s| self.socket_addr("listen.postgres", s)).transpose()?;
        let Some(listen) = listen else {
            if raw.postgres.is_some() {
                return Err(self.err("listen.postgres", "[postgres] is set but listen.postgres is not"));
            }
            if !raw.databases.is_empty() {
                return Err(self.err(
                    "listen.postgres",
                    "[[databases]] are set but listen.postgres is not: nothing would serve them",
                ));
            }
            return Ok((None, Vec::new()));
        };
        for (key, addr) in taken {
            if *addr == Some(listen) {
                return Err(self.err("listen.postgres", format!("is the same address as {key}")));
            }
        }
        let default = schema::PostgresCfg::default();
        let p = raw.postgres.as_ref().unwrap_or(&default);
        if p.allow_plaintext && !listen.ip().is_loopback() {
            return Err(self.err(
                "postgres.allow_plaintext",
                format!("is only for a loopback listen.postgres (development); {listen} is not"),
            ));
        }
        if tls.is_none() && !p.allow_plaintext {
            return Err(self.err(
                "listen.postgres",
                "needs [listen.tls]: its certificate and key serve the PostgreSQL TLS too (on a loopback address, for development only, postgres.allow_plaintext = true)",
            ));
        }
        let Some(auth) = auth else {
            return Err(self.err("listen.postgres", "needs [oidc] and [session]: no one could sign in"));
        };
        for (key, v) in [
            ("postgres.auth_failures_per_minute", p.auth_failures_per_minute),
            ("postgres.cancels_per_minute", p.cancels_per_minute),
        ] {
            self.at_least_one(key, v)?;
            self.at_most(key, v, MAX_PER_MINUTE)?;
        }
        if raw.databases.is_empty() {
            return Err(self.err("databases", "listen.postgres is set but there are no [[databases]]"));
        }
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(raw.databases.len());
        for (i, d) in raw.databases.iter().enumerate() {
            let db = self.database(i, d, auth)?;
            if !names.insert(db.name.clone()) {
                return Err(self.err(format!("databases[{i}].name"), format!("duplicate database name `{}`", db.name)));
            }
            out.push(db);
        }
        let settings = PostgresSettings {
            listen,
            allow_plaintext: p.allow_plaintext,
            auth_failures_per_minute: p.auth_failures_per_minute,
            cancels_per_minute: p.cancels_per_minute,
        };
        Ok((Some(settings), out))
    }

    fn database(&self, i: usize, d: &schema::DatabaseCfg, auth: &AuthSettings) -> Result<Database, ConfigError> {
        let k = |field: &str| format!("databases[{i}].{field}");
        if d.name.is_empty() || !d.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(self.err(k("name"), "must be non-empty letters, digits, `-` or `_`"));
        }
        let host = d.host.trim();
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b)) {
            return Err(self.err(k("host"), format!("`{}` is not a host name or IP address", d.host)));
        }
        if d.port == 0 {
            return Err(self.err(k("port"), "must be a port, 1 to 65535"));
        }
        let dbname = d.dbname.clone().unwrap_or_else(|| d.name.clone());
        self.wire_text(&k("dbname"), &dbname)?;
        let resource = d.resource.clone().unwrap_or_else(|| DEFAULT_RESOURCE.to_string());
        if resource.trim().is_empty() {
            return Err(self.err(k("resource"), "must not be empty"));
        }
        let t = &auth.session.timeouts;
        let idle = d.session_idle_timeout_secs.map_or(t.idle, Duration::from_secs);
        let absolute = d.session_absolute_timeout_secs.map_or(t.absolute, Duration::from_secs);
        if idle <= t.touch_interval {
            return Err(self.err(k("session_idle_timeout_secs"), "must be longer than session.touch_interval_secs"));
        }
        if absolute < idle {
            return Err(self.err(k("session_absolute_timeout_secs"), "must be at least the idle timeout"));
        }
        let password = d.password.as_ref().map(|p| self.db_password(&k("password"), p)).transpose()?;
        if let Some(u) = &d.user {
            self.wire_text(&k("user"), u)?;
        }
        let tls = self.db_tls(i, d)?;
        if d.roles.0.is_empty() {
            return Err(self.err(
                k("roles"),
                "must map at least one policy role to an upstream user (e.g. readers = \"ehr_ro\"): no one could connect",
            ));
        }
        let mut roles = Vec::with_capacity(d.roles.0.len());
        for (role, r) in &d.roles.0 {
            let rk = |field: &str| k(&format!("roles.{role}{field}"));
            if role.is_empty() || role.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
                return Err(self.err(rk(""), "a policy role must be non-empty, without spaces"));
            }
            self.wire_text(&rk(".user"), &r.user)?;
            let password = match (&r.password, &password) {
                (Some(p), _) => self.db_password(&rk(".password"), p)?,
                (None, Some(p)) => p.clone(),
                (None, None) => {
                    return Err(self.err(
                        rk(".password"),
                        format!("upstream user `{}` has no password: set one here or databases[{i}].password", r.user),
                    ))
                }
            };
            roles.push(DbRole { role: role.clone(), user: r.user.clone(), password });
        }
        // `user`'s password: the database's, else that of a role mapped to the same user.
        let check_user = d.user.as_ref().and_then(|u| {
            let own = password.clone().or_else(|| roles.iter().find(|r| r.user == *u).map(|r| r.password.clone()));
            own.map(|p| (u.clone(), p))
        });
        Ok(Database {
            name: d.name.clone(),
            host: host.to_string(),
            port: d.port,
            dbname,
            resource,
            domain: d.domain.clone().unwrap_or_default(),
            ephi: d.ephi,
            require_mfa: d.require_mfa,
            idle_timeout: idle,
            absolute_timeout: absolute,
            check_user,
            tls,
            roles,
            limits: self.db_limits(&k("limits"), &d.limits)?,
        })
    }

    /// Text sent in a startup message (a C string): non-empty, no NUL.
    fn wire_text(&self, key: &str, s: &str) -> Result<(), ConfigError> {
        if s.is_empty() || s.contains('\0') {
            return Err(self.err(key, "must be non-empty, without NUL"));
        }
        Ok(())
    }

    /// A password as a file or variable holds it, less a final line break.
    fn db_password(&self, key: &str, r: &crate::config::secret::SecretRef) -> Result<Secret, ConfigError> {
        let s = r.load(self.base).map_err(|m| self.err(key, m))?;
        let bytes = s.expose();
        let end = bytes.iter().rposition(|&b| b != b'\n' && b != b'\r').map_or(0, |p| p + 1);
        let bytes = &bytes[..end];
        if bytes.is_empty() || bytes.contains(&0) {
            return Err(self.err(key, "is empty or holds a NUL byte"));
        }
        Ok(Secret::from(bytes.to_vec()))
    }

    fn db_tls(&self, i: usize, d: &schema::DatabaseCfg) -> Result<DbTls, ConfigError> {
        let k = |field: &str| format!("databases[{i}].tls.{field}");
        let Some(t) = &d.tls else {
            self.db_server_name(i, &d.host)?;
            return Ok(DbTls { mode: DbTlsMode::VerifyFull, ca: Vec::new(), client: None });
        };
        let mode = match t.mode {
            schema::DbTlsModeCfg::Disable => DbTlsMode::Disable,
            schema::DbTlsModeCfg::Require => DbTlsMode::Require,
            schema::DbTlsModeCfg::VerifyFull => DbTlsMode::VerifyFull,
        };
        let unused = match mode {
            DbTlsMode::Disable => [("ca", t.ca.is_some()), ("client_cert", t.client_cert.is_some())]
                .into_iter()
                .find(|(_, set)| *set)
                .map(|(f, _)| (f, "is set but tls.mode is \"disable\"")),
            DbTlsMode::Require => t.ca.is_some().then_some((
                "ca",
                "is not used by mode \"require\", which does not verify the certificate; use mode = \"verify-full\"",
            )),
            DbTlsMode::VerifyFull => None,
        };
        if let Some((field, why)) = unused {
            return Err(self.err(k(field), why));
        }
        if mode == DbTlsMode::VerifyFull {
            self.db_server_name(i, &d.host)?;
        }
        let ca = t.ca.as_ref().map(|p| self.certs(&k("ca"), p)).transpose()?.unwrap_or_default();
        let client = match (&t.client_cert, &t.client_key) {
            (None, None) => None,
            (Some(c), Some(key)) => {
                let certs = self.certs(&k("client_cert"), c)?;
                let key = self.key(&k("client_key"), key)?;
                self.key_matches(&k("client_key"), &key, &certs, &k("client_cert"))?;
                Some((certs, Arc::new(key)))
            }
            (Some(_), None) => return Err(self.err(k("client_key"), "is required with client_cert")),
            (None, Some(_)) => return Err(self.err(k("client_cert"), "is required with client_key")),
        };
        Ok(DbTls { mode, ca, client })
    }

    /// `verify-full` checks the certificate against `host`: it must be a name or address
    /// a certificate can carry.
    fn db_server_name(&self, i: usize, host: &str) -> Result<(), ConfigError> {
        ServerName::try_from(host.trim()).map(|_| ()).map_err(|_| {
            self.err(format!("databases[{i}].host"), format!("`{host}` cannot be verified by tls.mode \"verify-full\""))
        })
    }

    fn db_limits(&self, key: &str, l: &schema::DbLimitsCfg) -> Result<DbLimits, ConfigError> {
        let d = DbLimits::default();
        let k = |field: &str| format!("{key}.{field}");
        let max_connections = l.max_connections.unwrap_or(d.max_connections);
        self.at_least_one(&k("max_connections"), max_connections)?;
        self.at_most(&k("max_connections"), max_connections, MAX_CONNECTIONS)?;
        let per_user = l.max_connections_per_user.unwrap_or(d.max_connections_per_user);
        self.at_least_one(&k("max_connections_per_user"), per_user)?;
        if per_user > max_connections {
            return Err(
                self.err(k("max_connections_per_user"), format!("is more than max_connections ({max_connections})"))
            );
        }
        let statement_timeout = match l.statement_timeout_secs {
            None => d.statement_timeout,
            Some(0) => None,
            Some(s) => {
                Some(Duration::from_secs(self.at_most(&k("statement_timeout_secs"), s, MAX_STATEMENT_TIMEOUT_SECS)?))
            }
        };
        let max_statement_bytes = l.max_statement_bytes.unwrap_or(d.max_statement_bytes);
        self.at_least_one(&k("max_statement_bytes"), max_statement_bytes)?;
        self.at_most(&k("max_statement_bytes"), max_statement_bytes, MAX_STATEMENT_BYTES)?;
        let connect_timeout = match l.connect_timeout_secs {
            None => d.connect_timeout,
            Some(s) => {
                self.at_least_one(&k("connect_timeout_secs"), s)?;
                Duration::from_secs(self.at_most(&k("connect_timeout_secs"), s, MAX_CONNECT_TIMEOUT_SECS)?)
            }
        };
        Ok(DbLimits {
            max_connections_per_user: per_user,
            max_connections,
            statement_timeout,
            max_statement_bytes,
            connect_timeout,
        })
    }

    fn at_least_one<T: PartialOrd + From<u8>>(&self, key: &str, v: T) -> Result<(), ConfigError> {
        if v < T::from(1) {
            return Err(self.err(key, "must be at least 1"));
        }
        Ok(())
    }
}

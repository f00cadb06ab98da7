//! `[postgres]` and `[[databases]]` as written: the PostgreSQL front end's own settings,
//! and each database it reaches, with the policy roles mapped to upstream users in the
//! order the operator wrote them (least privileged first).

use crate::config::secret::SecretRef;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// `[postgres]`: front-end-wide settings (needs `listen.postgres`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCfg {
    /// Accept plaintext startups. Only on a loopback `listen.postgres`, for development.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Failed sign-ins per minute, per user and per client address, before refusing.
    /// Default 10.
    #[serde(default = "default_auth_failures")]
    pub auth_failures_per_minute: u32,
    /// `CancelRequest`s per minute per client address (a 3.0 cancel key has only 32
    /// secret bits). Default 60.
    #[serde(default = "default_cancels")]
    pub cancels_per_minute: u32,
}

fn default_auth_failures() -> u32 {
    10
}
fn default_cancels() -> u32 {
    60
}

impl Default for PostgresCfg {
    fn default() -> Self {
        PostgresCfg {
            allow_plaintext: false,
            auth_failures_per_minute: default_auth_failures(),
            cancels_per_minute: default_cancels(),
        }
    }
}

/// `[[databases]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseCfg {
    /// Unique; letters, digits, `-`, `_`. Clients name it as their `database`.
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The upstream database. Default: `name`.
    pub dbname: Option<String>,
    /// The policy object's prefix (`<resource>:<name>`). Default `db`.
    pub resource: Option<String>,
    /// The policy domain, as routes have. Default empty.
    pub domain: Option<String>,
    /// Whether the database holds ePHI. Default true.
    #[serde(default = "super::yes")]
    pub ephi: bool,
    /// Overrides `oidc.require_mfa` for this database.
    pub require_mfa: Option<bool>,
    /// The database token's session idle timeout. Default `session.idle_timeout_secs`.
    pub session_idle_timeout_secs: Option<u64>,
    /// The database token's session lifetime. Default `session.absolute_timeout_secs`.
    pub session_absolute_timeout_secs: Option<u64>,
    /// An upstream user for the readiness check.
    pub user: Option<String>,
    /// The password of `user` and of every role that sets none of its own.
    pub password: Option<SecretRef>,
    pub tls: Option<DbTlsCfg>,
    /// Policy role → upstream user, least privileged first. Required.
    pub roles: Roles,
    #[serde(default)]
    pub limits: DbLimitsCfg,
}

fn default_port() -> u16 {
    5432
}

/// `[databases.tls]`: TLS to the upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbTlsCfg {
    #[serde(default)]
    pub mode: DbTlsModeCfg,
    /// PEM CA bundle (for `verify-full`). Default: the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (needs `client_key`).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<SecretRef>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DbTlsModeCfg {
    Disable,
    Require,
    #[default]
    VerifyFull,
}

/// `[databases.limits]`: each key optional (defaults in `config::databases`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DbLimitsCfg {
    pub max_connections_per_user: Option<usize>,
    pub max_connections: Option<usize>,
    /// Set on the upstream session; 0: none.
    pub statement_timeout_secs: Option<u64>,
    pub max_statement_bytes: Option<usize>,
    pub connect_timeout_secs: Option<u64>,
}

/// `[databases.roles]`, in the order written: a map read entry by entry, so the order
/// survives whatever map type the TOML parser keeps.
#[derive(Debug)]
pub struct Roles(pub Vec<(String, RoleCfg)>);

/// One role's upstream user: `readers = "ehr_ro"`, or
/// `dba = { user = "ehr_admin", password = { env = "…" } }`.
#[derive(Debug)]
pub struct RoleCfg {
    pub user: String,
    pub password: Option<SecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleTable {
    user: String,
    password: Option<SecretRef>,
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Roles;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of policy role = upstream user")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Roles, A::Error> {
                let mut out = Vec::new();
                while let Some((role, user)) = map.next_entry::<String, RoleCfg>()? {
                    out.push((role, user));
                }
                Ok(Roles(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for RoleCfg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RoleCfg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an upstream user name, or { user = \"…\", password = { file | env } }")
            }
            fn visit_str<E: de::Error>(self, user: &str) -> Result<RoleCfg, E> {
                Ok(RoleCfg { user: user.to_string(), password: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RoleCfg, A::Error> {
                let t = RoleTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RoleCfg { user: t.user, password: t.password })
            }
        }
        d.deserialize_any(V)
    }
}

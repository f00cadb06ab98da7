//! The external TOML schema: what an operator writes. Every struct refuses unknown keys,
//! and every default is a named function so the README's reference and the code agree.

mod access;
mod audit;
mod auth;
mod databases;
mod routes;

pub use access::{BreakglassAlert, BreakglassCfg, PolicyCfg};
pub use audit::{Audit, AuditFile, AuditOtlp, AuditRedis, AuditWebhook};
pub use auth::{Mfa, Oidc, SessionCfg, UpstreamIdentity};
pub use databases::{DatabaseCfg, DbLimitsCfg, DbTlsCfg, DbTlsModeCfg, PostgresCfg, RoleCfg, Roles};
pub use routes::{Route, UpstreamTls};

use crate::config::secret::SecretRef;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    pub listen: Listen,
    pub admin: Option<Admin>,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub audit: Audit,
    /// `[oidc]`: browser sign-in. Without it every route must be `public = true`.
    pub oidc: Option<Oidc>,
    /// `[session]`: where sessions live and how long. Required with `[oidc]`.
    pub session: Option<SessionCfg>,
    /// `[policy]`: casbin authorization of every request to a protected route.
    pub policy: Option<PolicyCfg>,
    /// `[upstream_identity]`: the signed identity assertion sent to upstreams.
    #[serde(default)]
    pub upstream_identity: UpstreamIdentity,
    /// `[breakglass]`: emergency access (needs `[oidc]` and `[policy]`).
    pub breakglass: Option<BreakglassCfg>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// `[postgres]`: the PostgreSQL front end's settings (with `listen.postgres`).
    pub postgres: Option<PostgresCfg>,
    /// `[[databases]]`: what the PostgreSQL front end reaches (with `listen.postgres`).
    #[serde(default)]
    pub databases: Vec<DatabaseCfg>,
}

/// `[server]`: the process.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads of the proxy service. Default 1 per core is pingora's habit; we
    /// default to the number of cores.
    pub threads: Option<usize>,
    /// Let idle worker threads steal tasks. Off by default: measured faster (BENCHMARKS.md).
    #[serde(default)]
    pub work_stealing: bool,
    /// Seconds that in-flight requests get to finish after SIGTERM. Default 10.
    #[serde(default = "default_grace_period")]
    pub grace_period_secs: u64,
    /// Idle upstream connections kept for reuse. Default 256.
    #[serde(default = "default_upstream_pool")]
    pub upstream_keepalive_pool: usize,
    /// Request methods served, compared case-sensitively; any other gets 501. Default
    /// [`default_methods`]. A route may set its own (`routes[].methods`).
    pub methods: Option<Vec<String>>,
}

/// RFC 9110's methods (§9.3) and `PATCH` (RFC 5789).
pub fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"].map(String::from).to_vec()
}

fn default_grace_period() -> u64 {
    10
}
fn default_upstream_pool() -> usize {
    256
}

impl Default for Server {
    fn default() -> Self {
        Server {
            threads: None,
            work_stealing: false,
            grace_period_secs: default_grace_period(),
            upstream_keepalive_pool: default_upstream_pool(),
            methods: None,
        }
    }
}

/// `[listen]`: at least one of `http` and `tls` (`postgres` beside them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Plain HTTP address, for local development (`127.0.0.1:8080`).
    pub http: Option<String>,
    pub tls: Option<ListenTls>,
    /// The PostgreSQL front end's address (`127.0.0.1:6432`); TLS with `tls`'s
    /// certificate unless `postgres.allow_plaintext`.
    pub postgres: Option<String>,
}

/// `[listen.tls]`: rustls, TLS 1.2 and 1.3 only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    pub addr: String,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key: `{ file = "…" }` or `{ env = "…" }`.
    pub key: SecretRef,
    /// Offer HTTP/2 by ALPN. Default true.
    #[serde(default = "yes")]
    pub http2: bool,
}

pub(crate) fn yes() -> bool {
    true
}

/// `[admin]`: the separate listener for Prometheus metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: String,
    /// Administrator tokens for the session API: a file of `NAME SHA256HEX` lines
    /// (`custos admin-token NAME` makes one). `{ file = … }` or `{ env = … }`.
    pub tokens: Option<SecretRef>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `custos=debug,pingora=warn`). `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for Log {
    fn default() -> Self {
        Log { format: LogFormat::default(), level: default_log_level() }
    }
}

/// `[headers]`: identity header hygiene and forwarding headers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    /// Inbound headers removed before forwarding, on top of every `x-custos-*` header.
    #[serde(default = "default_strip")]
    pub strip: Vec<String>,
    /// Peers (CIDRs) whose `X-Forwarded-*` headers are trusted and appended to.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Whether responses carry the request's `X-Request-Id` back to the client.
    #[serde(default = "yes")]
    pub echo_request_id: bool,
}

pub fn default_strip() -> Vec<String> {
    [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-remote-user",
        "remote-user",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Default for Headers {
    fn default() -> Self {
        Headers { strip: default_strip(), trusted_proxies: Vec::new(), echo_request_id: true }
    }
}

/// `[limits]`, and per route `[routes.limits]` (each key optional there).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bytes of request line plus headers. Default 16384; larger gets 431.
    pub max_header_bytes: Option<usize>,
    /// Number of request headers. Default 100; more gets 431.
    pub max_headers: Option<usize>,
    /// Request body bytes. Default 10 MiB; larger gets 413.
    pub max_body_bytes: Option<u64>,
    /// Seconds a client may stay silent while sending a body. Default 30.
    pub client_read_timeout_secs: Option<u64>,
    /// Seconds an idle keep-alive client connection is kept, waiting for the next request
    /// header. Default 60.
    pub client_idle_timeout_secs: Option<u64>,
    /// Seconds to connect to the upstream. Default 5.
    pub upstream_connect_timeout_secs: Option<u64>,
    /// Seconds the upstream may stay silent while answering. Default 60.
    pub upstream_read_timeout_secs: Option<u64>,
}

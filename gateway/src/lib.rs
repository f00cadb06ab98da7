//! Custos: an identity-aware access gateway for services that hold ePHI.
//!
//! The module map, one concern each (see `DESIGN.md` beside the repository):
#![forbid(unsafe_code)]

/// Access decisions, protocol-neutral; emergency access (break-glass) today.
pub mod access;
/// The audit trail: event type, hash chain, durable spool, verification.
pub mod audit;
/// Emergency access, at its old path while callers move to `access::breakglass`.
pub use access::breakglass;
/// `custos certs dev`: a local CA and server certificate for development and tests.
pub mod certs;
/// The `custos` command line: one file per command group, one error type.
pub mod cli;
/// The TOML schema, its validation and the internal, validated `Config`.
pub mod config;
/// The pingora `ProxyHttp` service: framing checks, path normalisation, routes, header
/// hygiene, gateway endpoints, error pages and metrics.
pub mod http;
/// OpenID Connect sign-in: discovery, login, callback, ID token validation, MFA rule.
pub mod identity;
/// The Prometheus registry: counters and histograms every layer updates (a leaf).
pub mod metrics;
/// casbin authorization: the request tuple, deny by default, policy test and reload.
pub mod policy;
/// Values that must never be printed (now `config::secret`; re-exported here).
pub use config::secret;
/// Builds and runs the pingora server from a `Config`: listeners, admin, shutdown.
pub mod server;
/// Sessions in Redis: opaque ids stored by hash, idle timeout, absolute lifetime.
pub mod session;
/// Log output through `tracing` (JSON or pretty).
pub mod telemetry;

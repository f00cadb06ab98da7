//! Custos: an identity-aware access gateway for services that hold ePHI.
//!
//! The module map, one concern each, in layers from the bottom up (as in `DESIGN.md`
//! beside the repository). A module imports only from the layers below it; `layers.rs`
//! checks this on every test run, so there is no import cycle.
//!
//! ```text
//! config  metrics      the TOML schema, validation, every section's settings and the leaf
//!                      value types (NormPath, Secret, clock, hashes); the Prometheus registry
//! audit   session      the record and its durable chain; sessions, grants and the Redis
//!                      key-value layer
//! identity  policy     credentials → a person; the decision engine
//! access               the one decision path every front end calls: decide, complete,
//!                      break-glass grants
//! http  postgres       front ends: the pingora ProxyHttp adapter, gateway pages; the
//!                      PostgreSQL wire proxy
//! server  cli          wiring and commands
//! ```
#![forbid(unsafe_code)]

/// The protocol-neutral access core: credential → person → live session, the MFA rule,
/// the emergency grant, the policy and the durable decision record; front ends enforce it. Emergency
/// access (break-glass) lives under it.
pub mod access;
/// The audit trail: event type, hash chain, durable spool, verification.
pub mod audit;
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
/// The PostgreSQL front end: the wire protocol's messages, the client side (TLS,
/// startup, sign-in, the statement loop) and the upstream side (connect, authenticate).
pub mod postgres;
/// Builds and runs the pingora server from a `Config`: listeners, admin, shutdown.
pub mod server;
/// Sessions in Redis: opaque ids stored by hash, idle timeout, absolute lifetime.
pub mod session;
/// Log output through `tracing` (JSON or pretty).
pub mod telemetry;

#[cfg(test)]
mod layers;

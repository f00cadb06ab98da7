//! The PostgreSQL front end: engineers reach a database through Custos with stock clients
//! (psql, libpq, JDBC, tokio-postgres). Laid out as STYLE.md item 10 says:
//!
//! ```text
//! messages/   one file per wire message: its decode, its encode, its tests
//! frontend/   the client side: TLS, startup, sign-in, the statement loop
//! backend/    the upstream side: connect (TLS modes), authenticate, the session's start
//! auth/       the client halves of the upstream's authentication (SCRAM-SHA-256, MD5)
//! statements/ what a statement does (verb, objects, fingerprint), from pg_query's parse tree
//! ```
//!
//! Bytes received are forwarded as they came; only what must be read is decoded.

pub mod auth;
pub mod backend;
pub mod frontend;
pub mod messages;
pub mod statements;

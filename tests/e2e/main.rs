//! End-to-end tests: the real `custos` binary, started per test on ephemeral 127.0.0.1
//! ports, in front of the demo ePHI service running in-process (which records every
//! request it receives). One test binary for all of them (each extra one links pingora
//! again).

mod harness;

mod audit;
mod backchannel;
mod bearer;
mod bodies;
mod breakglass;
mod casbin_fidelity;
mod compose;
mod config_errors;
mod db_login;
mod framing;
mod header_spellings;
mod idp;
mod lifecycle;
mod limits;
mod login;
mod methods;
mod paths;
mod pg_differential;
mod pg_harness;
mod pg_sessions;
mod pg_wire;
mod pipelining;
mod policy;
mod policy_engines;
mod postgres;
mod proxy;
mod quickstart;
mod revocation;
mod session_cache;
mod sessions;
mod setup;
mod sinks;
mod tls;
mod tunnels;
mod upstream_identity;

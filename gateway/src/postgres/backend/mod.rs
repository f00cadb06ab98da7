//! The upstream side: one connection to the database per client connection, opened with
//! Custos's own credentials for the upstream user the person's role maps to.
//!
//! [`connect`] opens it (TCP, the TLS mode, the startup packet, authentication as the
//! server asks) and reads to the first ReadyForQuery, handing back a [`Backend`] ready for
//! statements; [`cancel`] sends a CancelRequest on a connection of its own. The TLS side
//! ([`UpstreamTls`]) is built once per database, at start-up, and shared by every
//! connection to it. Every error names the database's `host:port` and what failed, never
//! the password nor the server's own message (which clients are not shown).

use std::future::Future;
use std::time::Duration;

use crate::postgres::auth::scram::ScramError;
use crate::postgres::messages::WireError;

mod cancel;
mod connect;
mod stream;
mod tls;

pub use cancel::cancel;
pub use connect::{connect, Backend, ServerParam};
pub use stream::Stream;
pub use tls::{ClientCert, TlsMode, TlsSetupError, UpstreamTls};

/// Where and as whom to connect. Borrowed from the database's settings, per connection.
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub tls: &'a UpstreamTls,
    /// More startup parameters after `user` and `database` (`application_name`, the
    /// client options the front end let through). `user`, `database` and `_pq_.` keys are
    /// refused here: those are Custos's to set.
    pub params: &'a [(String, String)],
    /// For the whole of connect (TCP, TLS, authentication, the session's start) or of a
    /// cancel: a server that stalls at any step is given up on.
    pub timeout: Duration,
}

impl std::fmt::Debug for Upstream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("tls", &self.tls.mode())
            .finish_non_exhaustive()
    }
}

impl Upstream<'_> {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the upstream connection or cancel failed: `addr` (`host:port`) and what.
#[derive(Debug, thiserror::Error)]
#[error("database {addr}: {kind}")]
pub struct BackendError {
    pub addr: String,
    pub kind: Failure,
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    /// The server ended the start-up with an ErrorResponse (its message is logged at
    /// debug level, not carried here: it may name the upstream user).
    #[error("refused the session (SQLSTATE {code})")]
    Refused { code: String },
    #[error("authentication method not used: {0}")]
    AuthMethod(&'static str),
    #[error("the server's SCRAM signature does not match: it does not hold this user's verifier")]
    BadServerSignature,
    #[error("SCRAM: {0}")]
    Scram(ScramError),
    #[error("protocol: {0}")]
    Protocol(#[from] WireError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl From<ScramError> for Failure {
    fn from(e: ScramError) -> Failure {
        match e {
            ScramError::BadServerSignature => Failure::BadServerSignature,
            other => Failure::Scram(other),
        }
    }
}

/// Runs `step` under the upstream's timeout, naming the database on failure.
async fn bounded<T>(target: &Upstream<'_>, step: impl Future<Output = Result<T, Failure>>) -> Result<T, BackendError> {
    let failed = |kind| BackendError { addr: target.addr(), kind };
    match tokio::time::timeout(target.timeout, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kind)) => Err(failed(kind)),
        Err(_) => Err(failed(Failure::Timeout(target.timeout))),
    }
}

#[cfg(test)]
mod tests;

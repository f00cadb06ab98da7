//! The client side: what a PostgreSQL client sends Custos, and what it is answered. The
//! [`Frontend`] listens on `listen.postgres`; each connection ([`conn`]) goes through TLS,
//! its startup packet ([`startup`]), the access core's connect decision, the upstream
//! connection ([`upstream`]) and the statement relay ([`relay`]). Refusals and their
//! SQLSTATEs are in one table ([`refuse`]).
//!
//! Runs on a tokio runtime of its own (see `server.rs`); nothing here knows pingora.

mod answer;
mod cancel;
mod conn;
mod keys;
mod limits;
mod meta;
pub mod refuse;
mod relay;
pub mod startup;
mod tls;
mod upstream;

use crate::access::{Access, Auth};
use crate::audit::Audit;
use crate::config::{Database, PostgresSettings, TlsListener};
use crate::policy::Policy;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Signed-in database connections now open (the drain on SIGTERM waits for them).
pub static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The gateway's stop: `Draining` stops accepting, `Closing` ends every connection
/// (with `57P01`, recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    Running,
    Draining,
    Closing,
}

static STOP: LazyLock<watch::Sender<Stop>> = LazyLock::new(|| watch::Sender::new(Stop::Running));

/// SIGTERM: new connections are no longer accepted; open ones go on.
pub fn drain() {
    STOP.send_replace(Stop::Draining);
}

/// The grace period is over: every open connection ends now.
pub fn close_all() {
    STOP.send_replace(Stop::Closing);
}

/// Counts a signed-in connection while it lives.
struct Open;

impl Open {
    fn new() -> Open {
        OPEN.fetch_add(1, Ordering::AcqRel);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The PostgreSQL front end, shared by its connections.
pub struct Frontend {
    settings: PostgresSettings,
    databases: Vec<Database>,
    /// Each database's upstream TLS, in the order of `databases`.
    upstream_tls: Vec<Arc<crate::postgres::backend::UpstreamTls>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    auth: Option<Arc<Auth>>,
    policy: Option<Arc<Policy>>,
    audit: Option<Audit>,
    auth_failures: limits::PerMinute,
    cancels: limits::PerMinute,
    connections: limits::Connections,
    keys: keys::Keys,
}

/// Why the front end cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("listen.tls: {0}")]
    Tls(rustls::Error),
    #[error("{0}")]
    UpstreamTls(String),
    #[error("listen.postgres: cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
}

impl Frontend {
    pub fn new(
        settings: PostgresSettings,
        databases: Vec<Database>,
        tls: Option<&TlsListener>,
        auth: Option<Arc<Auth>>,
        policy: Option<Arc<Policy>>,
        audit: Option<Audit>,
    ) -> Result<Frontend, FrontendError> {
        let tls = tls.map(tls::acceptor).transpose().map_err(FrontendError::Tls)?;
        let upstream_tls =
            databases.iter().map(upstream::tls_of).collect::<Result<_, _>>().map_err(FrontendError::UpstreamTls)?;
        Ok(Frontend {
            upstream_tls,
            auth_failures: limits::PerMinute::new(settings.auth_failures_per_minute),
            cancels: limits::PerMinute::new(settings.cancels_per_minute),
            settings,
            databases,
            tls,
            auth,
            policy,
            audit,
            connections: limits::Connections::default(),
            keys: keys::Keys::default(),
        })
    }

    fn access(&self) -> Access<'_> {
        Access {
            auth: self.auth.as_deref(),
            policy: self.policy.as_deref(),
            audit: self.audit.as_ref(),
            breakglass: false,
        }
    }

    /// Binds `listen.postgres` (so a taken port fails the start) and serves it.
    pub async fn bind(self: Arc<Self>) -> Result<impl std::future::Future<Output = ()>, FrontendError> {
        let addr = self.settings.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| FrontendError::Bind { addr, source })?;
        tokio::spawn(self.clone().cancels_from_others());
        Ok(async move {
            let mut stop = STOP.subscribe();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.wait_for(|s| *s >= Stop::Draining) => return,
                };
                match accepted {
                    Ok((tcp, peer)) => {
                        tokio::spawn(conn::serve(self.clone(), tcp, peer.ip().to_string()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "postgres listener: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        })
    }
}

//! Builds and runs the pingora server from a validated [`Config`]: the proxy service on
//! its plain and TLS listeners, the admin listener, and shutdown that drains in-flight
//! requests on SIGTERM for at most `server.grace_period_secs` (WebSocket tunnels are
//! closed and recorded at its end).

use crate::access::Auth;
use crate::audit::{Audit, Event, Kind};
use crate::config::{Config, TlsListener};
use crate::http::{admin::Admin, Gateway, IN_FLIGHT};
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the gateway could not start: each names the config key (and file) it comes from.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{}: `{key}`: cannot listen on {addr}: {source}", file.display())]
    Bind { file: PathBuf, key: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("listen.tls.key: unusable private key: {0}")]
    TlsKey(rustls::Error),
    #[error("listen.tls: {0}")]
    Tls(Box<pingora::Error>),
    #[error("{}: `audit`: {source}", file.display())]
    Audit { file: PathBuf, source: crate::audit::AuditError },
    /// The sign-in setup (OIDC, sessions) could not be built.
    #[error("{}: {message}", file.display())]
    Auth { file: PathBuf, message: String },
    #[error("`policy`: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("`policy`: {0}")]
    PolicyWatch(std::io::Error),
    /// The emergency-grant sweep could not start.
    #[error("{0}")]
    Sweep(String),
    /// The PostgreSQL front end could not start (its message names the key).
    #[error("{}: {message}", file.display())]
    Postgres { file: PathBuf, message: String },
}

/// The certificate the TLS listener presents, loaded and checked by `config`.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn tls_settings(t: &TlsListener) -> Result<TlsSettings, ServerError> {
    let key = rustls::crypto::ring::sign::any_supported_type(&t.key).map_err(ServerError::TlsKey)?;
    let certified = CertifiedKey::new(t.cert_chain.clone(), key);
    // `intermediate` only records paths; with a resolver set they are never read.
    let mut settings = TlsSettings::intermediate("", "").map_err(ServerError::Tls)?;
    settings.set_cert_resolver(Arc::new(OneCert(Arc::new(certified))));
    if t.http2 {
        settings.enable_h2();
    }
    Ok(settings)
}

/// pingora does not report a port that is already taken, so try each bind first.
fn check_binds(cfg: &Config) -> Result<(), ServerError> {
    let addrs: [(&str, Option<SocketAddr>); 3] = [
        ("listen.http", cfg.listen_http),
        ("listen.tls.addr", cfg.listen_tls.as_ref().map(|t| t.addr)),
        ("admin.listen", cfg.admin),
    ];
    for (key, addr) in addrs {
        if let Some(addr) = addr {
            std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind {
                file: cfg.file.clone(),
                key,
                addr,
                source,
            })?;
        }
    }
    Ok(())
}

/// SIGTERM: stop accepting, let in-flight requests finish, exit as soon as none is left
/// or the grace period ends. SIGINT: exit at once.
///
/// Custos ends the process itself in both cases instead of letting pingora shut its
/// runtimes down: pingora waits out the whole grace period even when idle, and its
/// fast shutdown left the admin listener's accept loop spinning on errors.
struct Drain {
    grace: Duration,
    audit: Option<Audit>,
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers; SIGTERM will not drain");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(grace_secs = self.grace.as_secs(), in_flight = IN_FLIGHT.load(Ordering::Acquire), "SIGTERM: draining");
                let (grace, audit) = (self.grace, self.audit.clone());
                std::thread::spawn(move || exit_when_drained(grace, audit));
                // Tells pingora to stop accepting and to end keep-alive connections.
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!(in_flight = IN_FLIGHT.load(Ordering::Acquire), "SIGINT: exiting now");
                // Closing the audit chain blocks: not on this async task.
                let audit = self.audit.clone();
                std::thread::spawn(move || {
                    close_audit(audit.as_ref(), crate::audit::Code::Sigint, Duration::from_millis(500));
                    std::process::exit(130);
                });
                std::future::pending().await
            }
        }
    }
}

/// The PostgreSQL front end on a runtime of its own (threads as `server.threads`): its
/// listener is bound before this returns, so a taken port fails the start.
fn start_postgres(
    cfg: &Config,
    pg: &crate::config::PostgresSettings,
    auth: Option<Arc<Auth>>,
    policy: Option<Arc<crate::policy::Policy>>,
    audit: Option<Audit>,
) -> Result<(), ServerError> {
    use crate::postgres::frontend::Frontend;
    let fe = Frontend::new(pg.clone(), cfg.databases.clone(), cfg.listen_tls.as_ref(), auth, policy, audit)
        .map_err(|e| ServerError::Postgres { file: cfg.file.clone(), message: e.to_string() })?;
    let fe = Arc::new(fe);
    let threads = cfg.server.threads;
    let (ready, bound) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("custos-postgres".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("custos-pg")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                match fe.bind().await {
                    Ok(serve) => {
                        let _ = ready.send(Ok(()));
                        serve.await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                    }
                }
                // Draining: the open connections go on until they end or are closed.
                while crate::postgres::frontend::OPEN.load(Ordering::Acquire) > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                std::future::pending::<()>().await
            });
        })
        .map_err(|e| ServerError::Postgres { file: cfg.file.clone(), message: e.to_string() })?;
    match bound.recv() {
        Ok(Ok(())) => {
            tracing::info!(postgres = %pg.listen, databases = cfg.databases.len(), "postgres listening");
            Ok(())
        }
        Ok(Err(message)) => Err(ServerError::Postgres { file: cfg.file.clone(), message }),
        Err(_) => Err(ServerError::Postgres { file: cfg.file.clone(), message: "the listener thread ended".into() }),
    }
}

/// Requests in flight and open database connections.
fn busy() -> bool {
    IN_FLIGHT.load(Ordering::Acquire) > 0 || crate::postgres::frontend::OPEN.load(Ordering::Acquire) > 0
}

/// Exits once no request is in flight, or when the grace period ends.
fn exit_when_drained(grace: Duration, audit: Option<Audit>) {
    let start = Instant::now();
    crate::postgres::frontend::drain();
    // Let pingora close the listeners first.
    std::thread::sleep(Duration::from_millis(100));
    while start.elapsed() < grace {
        if !busy() {
            tracing::info!(after_ms = start.elapsed().as_millis() as u64, "drained; exiting");
            close_audit(audit.as_ref(), crate::audit::Code::Sigterm, Duration::from_secs(3));
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Tunnels end here, not by the exit: each closes both connections and records its
    // close (`tunnel.closed`, reason `shutdown`) before the chain is closed.
    let tunnels = crate::http::tunnel::OPEN.load(Ordering::Acquire);
    if tunnels > 0 {
        let before = IN_FLIGHT.load(Ordering::Acquire);
        crate::http::tunnel::close_all();
        // Until each has closed and finished its request (its completion record queued).
        let until = Instant::now() + crate::http::tunnel::CLOSE_WAIT;
        while (crate::http::tunnel::OPEN.load(Ordering::Acquire) > 0
            || IN_FLIGHT.load(Ordering::Acquire) > before.saturating_sub(tunnels))
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Database connections end here too: each is told (57P01) and records its end.
    let connections = crate::postgres::frontend::OPEN.load(Ordering::Acquire);
    if connections > 0 {
        crate::postgres::frontend::close_all();
        let until = Instant::now() + Duration::from_secs(2);
        while crate::postgres::frontend::OPEN.load(Ordering::Acquire) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    tracing::warn!(
        in_flight = IN_FLIGHT.load(Ordering::Acquire),
        tunnels,
        connections,
        "grace period over; exiting with requests in flight"
    );
    close_audit(audit.as_ref(), crate::audit::Code::SigtermGraceOver, Duration::from_secs(1));
    std::process::exit(0);
}

/// Writes `audit.stopped` and waits for it: the channel is in order, so every record
/// queued before it (completion records too) is on disk when this returns.
fn close_audit(audit: Option<&Audit>, why: crate::audit::Code, sink_wait: Duration) {
    if let Some(audit) = audit {
        let mut ev = Event::new(Kind::AuditStopped);
        ev.reason = Some(why.into());
        if let Err(e) = audit.append_blocking(ev) {
            tracing::error!(error = %e, "the audit chain could not be closed");
        }
        if !audit.wait_delivered(sink_wait) {
            tracing::warn!("some audit records are not delivered to every sink yet; they will be after the next start");
        }
    }
}

/// Runs the gateway until it is told to stop.
pub fn run(cfg: Config) -> Result<(), ServerError> {
    check_binds(&cfg)?;
    let conf = ServerConf {
        threads: cfg.server.threads,
        work_stealing: cfg.server.work_stealing,
        // Our drain thread ends the process; pingora's own timer is only a backstop.
        grace_period_seconds: Some(cfg.server.grace_period.as_secs() + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: cfg.server.upstream_keepalive_pool,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let audit = if cfg.audit.enabled {
        let alerts = cfg.breakglass.as_ref().map_or(&[][..], |b| &b.alerts[..]);
        Some(Audit::start(&cfg.audit, alerts).map_err(|source| ServerError::Audit { file: cfg.file.clone(), source })?)
    } else {
        tracing::warn!("audit.enabled = false: access decisions are NOT recorded");
        None
    };
    // Redis over TLS (`rediss://`) uses rustls's process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let auth = match &cfg.auth {
        None => None,
        Some(a) => {
            let auth = Arc::new(
                Auth::new(a.clone())
                    .map_err(|e| ServerError::Auth { file: cfg.file.clone(), message: e.to_string() })?,
            );
            // Discover the provider now so the first sign-in is quick and a wrong
            // issuer shows in the log at start; the gateway serves either way.
            let identity = auth.identity.clone();
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(identity.warm_up());
                }
            });
            Some(auth)
        }
    };
    let policy = match &cfg.policy {
        None => {
            // SIGHUP reloads the policy; without one it must not stop the gateway.
            std::thread::spawn(|| {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(async {
                        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                            while hup.recv().await.is_some() {
                                tracing::info!("SIGHUP: no [policy] to reload");
                            }
                        }
                    });
                }
            });
            None
        }
        Some(files) => {
            let set = files.load_checked()?;
            tracing::info!(model = %files.model.display(), policy = %files.policy.display(), engine = %set.engine(), "policy loaded");
            let policy = Arc::new(crate::policy::Policy::with_group_roles(set, files.group_roles.clone()));
            crate::policy::watch(policy.clone(), files.clone(), audit.clone()).map_err(ServerError::PolicyWatch)?;
            Some(policy)
        }
    };
    // Grant ends are recorded on time on every gateway, also for grants another (dead)
    // gateway made.
    if let (Some(_), Some(a)) = (&cfg.breakglass, &auth) {
        crate::access::breakglass::start_sweep(a.store.clone(), audit.clone())
            .map_err(|e| ServerError::Sweep(e.to_string()))?;
    }
    if let Some(pg) = &cfg.postgres {
        start_postgres(&cfg, pg, auth.clone(), policy.clone(), audit.clone())?;
    }
    let admin_auth = auth.clone();
    let admin_policy = policy.clone();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(&cfg, audit.clone(), auth, policy),
        "custos",
    );
    if let Some(addr) = cfg.listen_http {
        // Plain HTTP is read straight into pingora's request buffer: a read buffer of its
        // own (64 KiB by default) stays allocated on every idle keep-alive connection
        // (measured: 110 KiB of RSS per idle connection with it, 46 KiB without). TLS
        // keeps the default, which saves syscalls under rustls's small reads.
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::default().read(0)));
    }
    if let Some(t) = &cfg.listen_tls {
        proxy.add_tls_with_settings(&t.addr.to_string(), None, tls_settings(t)?);
    }
    server.add_service(proxy);

    if let Some(addr) = cfg.admin {
        let app = Admin {
            auth: admin_auth.clone(),
            audit: audit.clone(),
            tokens: cfg.admin_tokens.clone(),
            breakglass: cfg.breakglass.clone(),
            policy: admin_policy,
            routes: cfg.routes.clone(),
        };
        let mut admin = Service::new("custos-admin".to_string(), HttpServer::new_app(app));
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    }

    tracing::info!(
        http = ?cfg.listen_http,
        tls = ?cfg.listen_tls.as_ref().map(|t| t.addr),
        admin = ?cfg.admin,
        routes = cfg.routes.len(),
        "custos listening"
    );
    server.run(RunArgs { shutdown_signal: Box::new(Drain { grace: cfg.server.grace_period, audit }) });
    Ok(())
}

//! `[server]` (the process: threads, grace period, methods served) and `[listen]` (the
//! proxy's plain and TLS listeners, the key checked against its certificate at load).

use super::{schema, ConfigError, Validator};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The most proxy worker threads (`server.threads`).
const MAX_THREADS: usize = 1024;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period: Duration,
    pub upstream_keepalive_pool: usize,
    /// The methods served where a route does not say (`server.methods`).
    pub methods: Arc<[http::Method]>,
}

#[derive(Clone)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub http2: bool,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.addr)
            .field("certs", &self.cert_chain.len())
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

impl Validator<'_> {
    pub(super) fn server(&self, raw: &schema::Server) -> Result<ServerSettings, ConfigError> {
        let threads = match raw.threads {
            Some(0) => return Err(self.err("server.threads", "must be at least 1")),
            Some(n) => self.at_most("server.threads", n, MAX_THREADS)?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS),
        };
        self.at_most("server.upstream_keepalive_pool", raw.upstream_keepalive_pool, 65_536)?;
        self.at_most("server.grace_period_secs", raw.grace_period_secs, 3600)?;
        let methods = match &raw.methods {
            Some(m) => self.methods("server.methods", m)?,
            None => self.methods("server.methods", &schema::default_methods())?,
        };
        Ok(ServerSettings {
            threads,
            work_stealing: raw.work_stealing,
            grace_period: Duration::from_secs(raw.grace_period_secs),
            upstream_keepalive_pool: raw.upstream_keepalive_pool,
            methods,
        })
    }

    /// `listen.http` and `listen.tls`: at least one, not on the same address.
    pub(super) fn listen(
        &self,
        raw: &schema::Listen,
    ) -> Result<(Option<SocketAddr>, Option<TlsListener>), ConfigError> {
        let listen_http = raw.http.as_deref().map(|s| self.socket_addr("listen.http", s)).transpose()?;
        let listen_tls = match &raw.tls {
            None => None,
            Some(t) => {
                let addr = self.socket_addr("listen.tls.addr", &t.addr)?;
                let cert_chain = self.certs("listen.tls.cert", &t.cert)?;
                let key = self.key("listen.tls.key", &t.key)?;
                self.key_matches("listen.tls.key", &key, &cert_chain, "listen.tls.cert")?;
                Some(TlsListener { addr, cert_chain, key: Arc::new(key), http2: t.http2 })
            }
        };
        if listen_http.is_none() && listen_tls.is_none() {
            return Err(self.err("listen", "set listen.http, listen.tls, or both"));
        }
        if let (Some(h), Some(t)) = (listen_http, &listen_tls) {
            if h == t.addr {
                return Err(self.err("listen.tls.addr", "is the same address as listen.http"));
            }
        }
        Ok((listen_http, listen_tls))
    }

    /// A list of request methods: tokens (RFC 9110 §5.6.2), each once, at least one.
    pub(super) fn methods(&self, key: &str, list: &[String]) -> Result<Arc<[http::Method]>, ConfigError> {
        if list.is_empty() {
            return Err(self.err(key, "must name at least one method"));
        }
        let mut out: Vec<http::Method> = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            let method = (!m.is_empty() && m.bytes().all(tchar))
                .then(|| http::Method::from_bytes(m.as_bytes()).ok())
                .flatten()
                .ok_or_else(|| {
                    self.err(format!("{key}[{i}]"), format!("`{m}` is not a method name (an HTTP token)"))
                })?;
            if out.contains(&method) {
                return Err(self.err(format!("{key}[{i}]"), format!("`{m}` is listed twice")));
            }
            out.push(method);
        }
        Ok(out.into())
    }
}

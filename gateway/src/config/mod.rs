//! Configuration: the TOML file an operator writes ([`schema`]), validated once into the
//! internal [`Config`] before anything listens. Every error names the file and the key
//! (and the line where the TOML parser knows it); validation never panics.
//!
//! ```text
//! custos check --config examples/quickstart.toml
//! ```

pub mod schema;

use crate::http::path::NormPath;
use crate::secret::{Secret, SecretRef};
use ipnet::IpNet;
use pingora::utils::tls::{CertKey, WrappedX509};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use schema::LogFormat;

/// The most proxy worker threads (`server.threads`).
const MAX_THREADS: usize = 1024;
/// The largest `limits.max_header_bytes`: pingora's HTTP/1 reader itself stops at 1 MiB
/// (answering 400), so a limit must sit well below it to be the one that answers.
pub const MAX_HEADER_BYTES: usize = 65_536;

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path, e.g. `routes[1].upstream`.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": `{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub server: ServerSettings,
    pub listen_http: Option<SocketAddr>,
    pub listen_tls: Option<TlsListener>,
    pub admin: Option<SocketAddr>,
    /// sha256 hex of an administrator token → the administrator's name.
    pub admin_tokens: std::collections::HashMap<String, String>,
    pub log: LogSettings,
    pub headers: HeaderSettings,
    pub limits: Limits,
    pub audit: crate::audit::AuditSettings,
    /// Sign-in and sessions; `None` when every route is public.
    pub auth: Option<AuthSettings>,
    /// The casbin model and policy files (checked at load).
    pub policy: Option<crate::policy::PolicyFiles>,
    /// Emergency access.
    pub breakglass: Option<std::sync::Arc<crate::breakglass::Settings>>,
    pub routes: Vec<Route>,
}

/// `[oidc]`, `[session]` and `[upstream_identity]`, validated.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub oidc: OidcSettings,
    pub session: SessionSettings,
    pub upstream_identity: Option<UpstreamIdentitySettings>,
}

#[derive(Debug, Clone)]
pub struct UpstreamIdentitySettings {
    pub signing_key: Option<Secret>,
    pub header: http::HeaderName,
    pub ttl: Duration,
    pub max_groups: usize,
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: String,
    /// `scheme://host[:port]` of `redirect_url`: the gateway's origin.
    pub origin: String,
    /// The redirect URL is https: cookies are `Secure` with the `__Host-` prefix.
    pub secure_cookies: bool,
    pub scopes: Vec<String>,
    pub subject_claim: String,
    pub groups_claim: String,
    pub require_mfa: bool,
    pub id_token_algs: Vec<String>,
    pub login_timeout: Duration,
    pub post_logout_redirect_url: Option<String>,
    pub timeout: Duration,
    pub max_logins_per_minute: u64,
    pub api_audience: Option<String>,
    pub jwks_min_refresh: Duration,
    /// Allowed clock difference with the provider (`exp`, `nbf`, `iat`).
    pub clock_skew: Duration,
    pub mfa: crate::identity::mfa::MfaRule,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub redis_url: String,
    pub redis_username: Option<String>,
    pub redis_password: Option<Secret>,
    pub redis_ca: Option<Vec<u8>>,
    pub redis_timeout: Duration,
    pub key_prefix: String,
    /// The full cookie name (with `__Host-` under TLS).
    pub cookie_name: String,
    /// The short-lived cookie that binds a sign-in to the browser that started it.
    pub login_cookie_name: String,
    pub timeouts: crate::session::Timeouts,
    pub max_per_user: Option<usize>,
    /// `None`: sessions are not re-validated with the provider.
    pub revalidate: Option<Duration>,
}

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

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct HeaderSettings {
    /// Lower-case header names removed from every request (plus `x-custos-*`).
    pub strip: Vec<http::HeaderName>,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    pub client_read_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            client_read_timeout: Duration::from_secs(30),
            client_idle_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_read_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    fn overlay(self, o: &schema::Limits) -> Limits {
        let secs = Duration::from_secs;
        Limits {
            max_header_bytes: o.max_header_bytes.unwrap_or(self.max_header_bytes),
            max_headers: o.max_headers.unwrap_or(self.max_headers),
            max_body_bytes: o.max_body_bytes.unwrap_or(self.max_body_bytes),
            client_read_timeout: o.client_read_timeout_secs.map_or(self.client_read_timeout, secs),
            client_idle_timeout: o.client_idle_timeout_secs.map_or(self.client_idle_timeout, secs),
            upstream_connect_timeout: o.upstream_connect_timeout_secs.map_or(self.upstream_connect_timeout, secs),
            upstream_read_timeout: o.upstream_read_timeout_secs.map_or(self.upstream_read_timeout, secs),
        }
    }
}

/// Which hosts a route answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Any,
    /// Lower-case host name.
    Exact(String),
    /// The suffix after `*`, e.g. `.example.org`.
    Wildcard(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub host: HostMatch,
    /// Normalised prefix, no trailing slash unless `/`.
    pub path: String,
    pub upstream: Upstream,
    pub strip_prefix: Option<String>,
    pub public: bool,
    pub require_mfa: Option<bool>,
    pub forward_authorization: bool,
    pub identity_headers: bool,
    pub resource: String,
    pub domain: String,
    pub audit_query: bool,
    /// The methods this route serves (its own, or `server.methods`).
    pub methods: Arc<[http::Method]>,
    /// Underscored header names passed on (`underscore_headers`).
    pub underscore_headers: Vec<http::HeaderName>,
    /// WebSocket upgrades are tunnelled (else refused).
    pub websocket: bool,
    pub limits: Limits,
}

#[derive(Clone)]
pub struct Upstream {
    /// As written, for logs and metrics (`http://127.0.0.1:9000`).
    pub url: String,
    pub host_port: (String, u16),
    /// Set at load for IP literals, by [`Config::resolve_upstreams`] for names.
    pub addr: Option<SocketAddr>,
    pub tls: Option<UpstreamTls>,
}

#[derive(Clone)]
pub struct UpstreamTls {
    pub sni: String,
    pub ca: Option<Arc<[WrappedX509]>>,
    pub client_cert: Option<Arc<CertKey>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .field("addr", &self.addr)
            .field("tls_sni", &self.tls.as_ref().map(|t| &t.sni))
            .finish()
    }
}

impl Config {
    /// Reads and validates `file`.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            key: "(file)".into(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::from_toml(file, &text)
    }

    /// Resolves upstream host names, once, before serving: no DNS on the request path.
    pub fn resolve_upstreams(&mut self) -> Result<(), ConfigError> {
        for (i, r) in self.routes.iter_mut().enumerate() {
            if r.upstream.addr.is_some() {
                continue;
            }
            let (host, port) = &r.upstream.host_port;
            let resolved = (host.as_str(), *port).to_socket_addrs().ok().and_then(|mut a| a.next());
            match resolved {
                Some(a) => r.upstream.addr = Some(a),
                None => {
                    return Err(ConfigError {
                        file: self.file.clone(),
                        key: format!("routes[{i}].upstream"),
                        line: None,
                        message: format!("host `{host}` does not resolve"),
                    })
                }
            }
        }
        Ok(())
    }

    /// Validates `text` as if read from `file` (relative paths are resolved against the
    /// file's folder).
    pub fn from_toml(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw = parse(file, text)?;
        Validator { file, base: file.parent().unwrap_or(Path::new(".")), text }.validate(raw)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

fn parse(file: &Path, text: &str) -> Result<schema::File, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, schema::File>(de).map_err(|err| {
        let mut key = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().trim().lines().map(str::trim).collect::<Vec<_>>().join("; ");
        // serde names an unknown or missing key in its message; put it in the key path.
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        if key == "." || key.is_empty() {
            key = named.unwrap_or("(document)").to_string();
        } else if let Some(field) = named.filter(|f| !key.ends_with(f)) {
            key = format!("{key}.{field}");
        }
        ConfigError { file: file.to_path_buf(), key, line: inner.span().map(|s| line_of(text, s.start)), message }
    })
}

struct Validator<'a> {
    file: &'a Path,
    base: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError { file: self.file.to_path_buf(), line: self.line_of_key(&key), key, message: message.into() }
    }

    /// Best effort: the line where the last part of a key is written.
    fn line_of_key(&self, key: &str) -> Option<usize> {
        let leaf = key.rsplit('.').next()?;
        let leaf = leaf.split('[').next()?;
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let t = line.trim_start();
            if t.starts_with(leaf) && t[leaf.len()..].trim_start().starts_with('=') {
                return Some(line_of(self.text, offset));
            }
            offset += line.len();
        }
        None
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }

    fn socket_addr(&self, key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
        s.parse::<SocketAddr>()
            .map_err(|_| self.err(key, format!("`{s}` is not a listen address; write IP:PORT, e.g. 127.0.0.1:8080")))
    }

    fn certs(&self, key: &str, p: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let path = self.path(p);
        let pem = std::fs::read(&path)
            .map_err(|e| self.err(key, format!("cannot read certificate file {}: {e}", path.display())))?;
        let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(key, format!("{} is not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(self.err(key, format!("{} holds no PEM certificate", path.display())));
        }
        Ok(certs)
    }

    fn key(&self, key: &str, r: &SecretRef) -> Result<PrivateKeyDer<'static>, ConfigError> {
        let secret: Secret = r.load(self.base).map_err(|m| self.err(key, m))?;
        rustls_pemfile::private_key(&mut secret.expose())
            .ok()
            .flatten()
            .ok_or_else(|| self.err(key, "holds no PEM private key"))
    }

    fn validate(&self, raw: schema::File) -> Result<Config, ConfigError> {
        let threads = match raw.server.threads {
            Some(0) => return Err(self.err("server.threads", "must be at least 1")),
            Some(n) => self.at_most("server.threads", n, MAX_THREADS)?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS),
        };
        self.at_most("server.upstream_keepalive_pool", raw.server.upstream_keepalive_pool, 65_536)?;
        self.at_most("server.grace_period_secs", raw.server.grace_period_secs, 3600)?;
        let methods = match &raw.server.methods {
            Some(m) => self.methods("server.methods", m)?,
            None => self.methods("server.methods", &schema::default_methods())?,
        };
        let server = ServerSettings {
            threads,
            work_stealing: raw.server.work_stealing,
            grace_period: Duration::from_secs(raw.server.grace_period_secs),
            upstream_keepalive_pool: raw.server.upstream_keepalive_pool,
            methods,
        };

        let listen_http = raw.listen.http.as_deref().map(|s| self.socket_addr("listen.http", s)).transpose()?;
        let listen_tls = match &raw.listen.tls {
            None => None,
            Some(t) => {
                let addr = self.socket_addr("listen.tls.addr", &t.addr)?;
                let cert_chain = self.certs("listen.tls.cert", &t.cert)?;
                let key = self.key("listen.tls.key", &t.key)?;
                // Refuse a key that does not match the certificate now, not at the
                // first handshake.
                let signing = rustls::crypto::ring::sign::any_supported_type(&key)
                    .map_err(|e| self.err("listen.tls.key", format!("unusable private key: {e}")))?;
                rustls::sign::CertifiedKey::new(cert_chain.clone(), signing)
                    .keys_match()
                    .map_err(|_| self.err("listen.tls.key", "does not match the certificate in listen.tls.cert"))?;
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
        let admin = raw.admin.as_ref().map(|a| self.socket_addr("admin.listen", &a.listen)).transpose()?;
        if admin.is_some() && (admin == listen_http || admin == listen_tls.as_ref().map(|t| t.addr)) {
            return Err(self.err("admin.listen", "must differ from the proxy listeners"));
        }
        let admin_tokens = match raw.admin.as_ref().and_then(|a| a.tokens.as_ref()) {
            None => Default::default(),
            Some(r) => {
                let text = r.load(self.base).map_err(|m| self.err("admin.tokens", m))?;
                let text =
                    String::from_utf8(text.expose().to_vec()).map_err(|_| self.err("admin.tokens", "is not UTF-8"))?;
                crate::http::admin::parse_tokens(&text).map_err(|m| self.err("admin.tokens", m))?
            }
        };

        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
            return Err(self.err("log.level", format!("not a tracing filter: {e}")));
        }
        let log = LogSettings { format: raw.log.format, level: raw.log.level.clone() };

        let mut strip = Vec::with_capacity(raw.headers.strip.len());
        for (i, h) in raw.headers.strip.iter().enumerate() {
            let name = http::HeaderName::from_bytes(h.trim().as_bytes())
                .map_err(|_| self.err(format!("headers.strip[{i}]"), format!("`{h}` is not a header name")))?;
            strip.push(name);
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.headers.trusted_proxies.iter().enumerate() {
            let net = p.parse::<IpNet>().or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                self.err(format!("headers.trusted_proxies[{i}]"), format!("`{p}` is not an IP or CIDR"))
            })?;
            trusted_proxies.push(net);
        }

        let limits = Limits::default().overlay(&raw.limits);
        self.check_limits("limits", &limits)?;

        if raw.routes.is_empty() {
            return Err(self.err("routes", "no [[routes]]: the gateway would refuse every request"));
        }
        let mut names = HashSet::new();
        let mut places = HashSet::new();
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.iter().enumerate() {
            let route = self.route(i, r, limits, &server.methods, &strip)?;
            if !names.insert(route.name.clone()) {
                return Err(self.err(format!("routes[{i}].name"), format!("duplicate route name `{}`", route.name)));
            }
            if !places.insert((route.host.clone(), route.path.clone())) {
                return Err(self.err(
                    format!("routes[{i}].path"),
                    format!(
                        "duplicate route: another route already serves host {:?} path `{}`",
                        route.host, route.path
                    ),
                ));
            }
            routes.push(route);
        }

        let a = &raw.audit;
        if a.segment_bytes < 4096 {
            return Err(self.err("audit.segment_bytes", "must be at least 4096"));
        }
        if a.checkpoint_every == 0 {
            return Err(self.err("audit.checkpoint_every", "must be at least 1"));
        }
        if a.checkpoint_secs == 0 {
            return Err(self.err("audit.checkpoint_secs", "must be at least 1"));
        }
        self.at_most("audit.queue_limit", a.queue_limit, 10_000_000)?;
        if !(10..=3_600_000).contains(&a.retry_max_ms) {
            return Err(self.err("audit.retry_max_ms", "must be from 10 to 3600000 (one hour)"));
        }
        if a.sink_alert_secs == 0 {
            return Err(self.err("audit.sink_alert_secs", "must be at least 1"));
        }
        // The two newest segments always stay (the chain's head), so a limit must leave
        // room for more than those.
        if a.spool_max_bytes != 0 && a.spool_max_bytes < a.segment_bytes.saturating_mul(4) {
            return Err(self.err(
                "audit.spool_max_bytes",
                format!("must be 0 (no limit) or at least 4 × audit.segment_bytes ({})", a.segment_bytes * 4),
            ));
        }
        let audit = crate::audit::AuditSettings {
            enabled: a.enabled,
            dir: self.path(&a.dir),
            on_failure: a.on_failure,
            segment_bytes: a.segment_bytes,
            checkpoint_every: a.checkpoint_every,
            checkpoint_interval: Duration::from_secs(a.checkpoint_secs),
            signing_key: a.signing_key.clone(),
            key_base: self.base.to_path_buf(),
            redis: match &a.redis {
                None => None,
                Some(r) => {
                    let url = r.url.trim();
                    if !(url.starts_with("redis://")
                        || url.starts_with("rediss://")
                        || url.starts_with("redis+unix://"))
                    {
                        return Err(self.err("audit.redis.url", format!("`{url}` is not a redis:// URL")));
                    }
                    if redis::Client::open(url).is_err() {
                        return Err(self.err("audit.redis.url", format!("`{url}` is not a valid Redis URL")));
                    }
                    if r.stream.is_empty() {
                        return Err(self.err("audit.redis.stream", "must not be empty"));
                    }
                    Some(crate::audit::RedisSinkSettings {
                        url: url.to_string(),
                        stream: r.stream.clone(),
                        maxlen: r.maxlen,
                    })
                }
            },
            file: a.file.as_ref().map(|f| self.path(&f.path)),
            otlp: match &a.otlp {
                None => None,
                Some(o) => {
                    let uri: http::Uri = o
                        .endpoint
                        .parse()
                        .map_err(|_| self.err("audit.otlp.endpoint", format!("`{}` is not a URL", o.endpoint)))?;
                    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                        return Err(
                            self.err("audit.otlp.endpoint", format!("`{}` must be http(s)://HOST:PORT", o.endpoint))
                        );
                    }
                    if o.timeout_secs == 0 {
                        return Err(self.err("audit.otlp.timeout_secs", "must be at least 1"));
                    }
                    Some((o.endpoint.clone(), Duration::from_secs(o.timeout_secs)))
                }
            },
            queue_limit: a.queue_limit,
            retry_max: Duration::from_millis(a.retry_max_ms),
            sink_alert_after: Duration::from_secs(a.sink_alert_secs),
            spool_max_bytes: a.spool_max_bytes,
            webhook: match &a.webhook {
                None => None,
                Some(w) => Some(self.webhook(w, &self.path(&a.dir))?),
            },
        };

        let auth = self.auth(&raw)?;
        if let Some(a) = &auth {
            // Sessions live on the redirect URL's host: a protected route on another host
            // could never see its cookie.
            let origin_host = a.oidc.origin.split_once("://").map_or("", |(_, h)| h);
            let origin_host = crate::http::routes::host_of(origin_host).into_owned();
            for (i, r) in routes.iter().enumerate() {
                let ok = match &r.host {
                    HostMatch::Any => true,
                    HostMatch::Exact(h) => *h == origin_host,
                    HostMatch::Wildcard(_) => false,
                };
                if !r.public && !ok {
                    return Err(self.err(
                        format!("routes[{i}].host"),
                        format!(
                            "route `{}` needs signed-in users, but sessions live on `{origin_host}` (the host of oidc.redirect_url); serve it there, or make it public",
                            r.name
                        ),
                    ));
                }
            }
        }
        let policy = match &raw.policy {
            None => None,
            Some(p) => {
                if auth.is_none() {
                    return Err(self.err("policy", "needs [oidc]: the policy decides for signed-in users"));
                }
                if p.poll_ms < 100 {
                    return Err(self.err("policy.poll_ms", "must be at least 100"));
                }
                let files = crate::policy::PolicyFiles {
                    model: self.path(&p.model),
                    policy: self.path(&p.policy),
                    cases: p.cases.as_ref().map(|c| self.path(c)),
                    poll: Duration::from_millis(p.poll_ms),
                    group_roles: p.group_roles.clone(),
                };
                if let Some((g, _)) = p.group_roles.iter().find(|(g, r)| g.is_empty() || r.trim().is_empty()) {
                    return Err(self.err(format!("policy.group_roles.{g}"), "group and role must not be empty"));
                }
                files.load_checked().map_err(|e| {
                    let key = if e.file == files.model {
                        "policy.model"
                    } else if Some(&e.file) == files.cases.as_ref() {
                        "policy.cases"
                    } else {
                        "policy.policy"
                    };
                    self.err(key, e.to_string())
                })?;
                Some(files)
            }
        };
        let breakglass = match &raw.breakglass {
            None => None,
            Some(b) => {
                if policy.is_none() {
                    return Err(self.err(
                        "breakglass",
                        "needs [policy] (and [oidc]): the policy says who may declare an emergency and what it opens",
                    ));
                }
                if !audit.enabled {
                    return Err(self.err(
                        "audit.enabled",
                        "[breakglass] needs the audit trail: every grant is recorded and its alerts are queued on the spool",
                    ));
                }
                if b.max_secs == 0 || b.default_secs == 0 || b.default_secs > b.max_secs {
                    return Err(
                        self.err("breakglass.default_secs", "must be at least 1 and at most breakglass.max_secs")
                    );
                }
                if b.justification_max < 10 {
                    return Err(self.err("breakglass.justification_max", "must be at least 10"));
                }
                if b.max_per_day == 0 {
                    return Err(self.err("breakglass.max_per_day", "must be at least 1"));
                }
                if b.retention_days == 0 {
                    return Err(self.err("breakglass.retention_days", "must be at least 1"));
                }
                let mut alerts = Vec::new();
                for (i, a) in b.alerts.iter().enumerate() {
                    let key = format!("breakglass.alerts[{i}]");
                    let url = self.http_url(&format!("{key}.url"), &a.url, "an alert receiver")?;
                    let format = match a.format.as_str() {
                        "slack" => crate::breakglass::AlertFormat::Slack,
                        "json" => crate::breakglass::AlertFormat::Json,
                        other => {
                            return Err(self.err(format!("{key}.format"), format!("`slack` or `json`, not `{other}`")))
                        }
                    };
                    let secret = match &a.secret {
                        Some(r) => Some(r.load(self.base).map_err(|m| self.err(format!("{key}.secret"), m))?),
                        None if format == crate::breakglass::AlertFormat::Json => {
                            return Err(self.err(
                                format!("{key}.secret"),
                                "a `json` alert is signed: give `secret = { file = … }` or `{ env = … }`",
                            ))
                        }
                        None => None,
                    };
                    if a.max_tries.is_some() {
                        return Err(self.err(
                            format!("{key}.max_tries"),
                            "is gone: an alert is queued on the audit spool and retried until the receiver takes it; remove the key",
                        ));
                    }
                    alerts.push(crate::breakglass::Alert { url: url.to_string(), format, secret });
                }
                Some(std::sync::Arc::new(crate::breakglass::Settings {
                    default: Duration::from_secs(b.default_secs),
                    max: Duration::from_secs(b.max_secs),
                    justification_max: b.justification_max,
                    max_per_day: b.max_per_day,
                    retention: Duration::from_secs(b.retention_days * 86_400),
                    audit_justification: b.audit_justification,
                    review_domain: b.review_domain.clone(),
                    alerts,
                }))
            }
        };
        if auth.is_none() {
            if let Some(i) = routes.iter().position(|r| !r.public) {
                return Err(self.err(
                    format!("routes[{i}].public"),
                    format!(
                        "route `{}` needs signed-in users but there is no [oidc] section; add [oidc] and [session], or set `public = true` on the route",
                        routes[i].name
                    ),
                ));
            }
        }

        Ok(Config {
            file: self.file.to_path_buf(),
            server,
            listen_http,
            listen_tls,
            admin,
            admin_tokens,
            log,
            headers: HeaderSettings { strip, trusted_proxies },
            limits,
            audit,
            auth,
            policy,
            breakglass,
            routes,
        })
    }

    fn http_url(&self, key: &str, s: &str, what: &str) -> Result<http::Uri, ConfigError> {
        let uri: http::Uri = s.parse().map_err(|_| self.err(key, format!("`{s}` is not a URL")))?;
        let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match uri.scheme_str() {
            Some("https") => Ok(uri),
            Some("http") if loopback => Ok(uri),
            _ => Err(self
                .err(key, format!("`{s}` must be an https:// URL ({what}; plain http:// only on a loopback address)"))),
        }
    }

    fn auth(&self, raw: &schema::File) -> Result<Option<AuthSettings>, ConfigError> {
        let (o, s) = match (&raw.oidc, &raw.session) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(self.err("session", "[oidc] needs a [session] section (at least `redis_url`)"))
            }
            (None, Some(_)) => {
                return Err(self.err("oidc", "[session] is set but [oidc] is missing: sessions come from sign-in"))
            }
            (Some(o), Some(s)) => (o, s),
        };
        let issuer = self.http_url("oidc.issuer", o.issuer.trim(), "the provider")?;
        if issuer.query().is_some() {
            return Err(self.err("oidc.issuer", "must not have a query"));
        }
        if o.client_id.trim().is_empty() {
            return Err(self.err("oidc.client_id", "must not be empty"));
        }
        let client_secret = o.client_secret.load(self.base).map_err(|m| self.err("oidc.client_secret", m))?;
        let secret_text =
            std::str::from_utf8(client_secret.expose()).map_err(|_| self.err("oidc.client_secret", "is not UTF-8"))?;
        if secret_text.trim().is_empty() {
            return Err(self.err("oidc.client_secret", "is empty"));
        }
        let client_secret = crate::secret::Secret::from(secret_text.trim().as_bytes().to_vec());
        let redirect = self.http_url("oidc.redirect_url", o.redirect_url.trim(), "the gateway's own address")?;
        if redirect.path() != crate::identity::CALLBACK_PATH || redirect.query().is_some() {
            return Err(self.err(
                "oidc.redirect_url",
                format!(
                    "must be this gateway's origin followed by `{}`, e.g. https://gateway.example.org{}",
                    crate::identity::CALLBACK_PATH,
                    crate::identity::CALLBACK_PATH
                ),
            ));
        }
        let secure_cookies = redirect.scheme_str() == Some("https");
        let origin = format!(
            "{}://{}",
            redirect.scheme_str().unwrap_or("https"),
            redirect.authority().map_or("", |a| a.as_str())
        );
        if let Some(u) = &o.post_logout_redirect_url {
            self.http_url("oidc.post_logout_redirect_url", u, "registered with the provider")?;
        }
        for (i, sc) in o.scopes.iter().enumerate() {
            if sc.is_empty() || !sc.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
                return Err(self.err(format!("oidc.scopes[{i}]"), format!("`{sc}` is not a scope token")));
            }
        }
        let mut scopes: Vec<String> = o.scopes.iter().filter(|s| s.as_str() != "openid").cloned().collect();
        scopes.dedup();
        if o.subject_claim.trim().is_empty() {
            return Err(self.err("oidc.subject_claim", "must not be empty"));
        }
        if o.id_token_algs.is_empty() {
            return Err(self.err("oidc.id_token_algs", "must name at least one algorithm"));
        }
        for (i, a) in o.id_token_algs.iter().enumerate() {
            if !crate::identity::ACCEPTABLE_ALGS.contains(&a.as_str()) {
                return Err(self.err(
                    format!("oidc.id_token_algs[{i}]"),
                    format!("`{a}` is not accepted; choose from {}", crate::identity::ACCEPTABLE_ALGS.join(", ")),
                ));
            }
        }
        if o.login_timeout_secs < 10 {
            return Err(self.err("oidc.login_timeout_secs", "must be at least 10"));
        }
        if o.timeout_secs == 0 {
            return Err(self.err("oidc.timeout_secs", "must be at least 1"));
        }
        if o.api_audience.as_deref().is_some_and(|a| a.trim().is_empty() || a.trim() == o.client_id.trim()) {
            return Err(self.err(
                "oidc.api_audience",
                "must name the API audience, not be empty or the client id (ID tokens are not bearer tokens)",
            ));
        }
        if o.max_logins_per_minute == 0 {
            return Err(self.err("oidc.max_logins_per_minute", "must be at least 1"));
        }
        self.at_most("oidc.max_logins_per_minute", o.max_logins_per_minute, 1_000_000)?;
        // A token expired minutes ago is an expired token, whatever the clocks say.
        const MAX_CLOCK_SKEW_SECS: u64 = 300;
        if o.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(self.err("oidc.clock_skew_secs", format!("must be at most {MAX_CLOCK_SKEW_SECS}")));
        }
        let m = &o.mfa;
        if m.amr.is_empty() && !m.amr_two_factors && m.acr.is_empty() {
            return Err(
                self.err("oidc.mfa", "nothing would count as multi-factor: set `amr`, `amr_two_factors` or `acr`")
            );
        }
        let mfa = crate::identity::mfa::MfaRule {
            amr: m.amr.clone(),
            amr_two_factors: m.amr_two_factors,
            acr: m.acr.clone(),
            step_up_acr_values: m.step_up_acr_values.clone().unwrap_or_else(|| m.acr.clone()),
            step_up_max_age: m.step_up_max_age_secs.map(Duration::from_secs),
        };
        let oidc = OidcSettings {
            // Exactly as written: discovery compares it with the provider's `issuer`.
            issuer: o.issuer.trim().to_string(),
            client_id: o.client_id.trim().to_string(),
            client_secret,
            redirect_url: o.redirect_url.trim().to_string(),
            origin,
            secure_cookies,
            scopes,
            subject_claim: o.subject_claim.trim().to_string(),
            groups_claim: o.groups_claim.trim().to_string(),
            require_mfa: o.require_mfa,
            id_token_algs: o.id_token_algs.clone(),
            login_timeout: Duration::from_secs(o.login_timeout_secs),
            post_logout_redirect_url: o.post_logout_redirect_url.clone(),
            timeout: Duration::from_secs(o.timeout_secs),
            max_logins_per_minute: o.max_logins_per_minute,
            api_audience: o.api_audience.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_string),
            jwks_min_refresh: Duration::from_secs(o.jwks_min_refresh_secs),
            clock_skew: Duration::from_secs(o.clock_skew_secs),
            mfa,
        };

        let url = s.redis_url.trim();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(self.err("session.redis_url", format!("`{url}` is not a redis:// or rediss:// URL")));
        }
        let parsed = redis::Client::open(url)
            .map_err(|e| self.err("session.redis_url", format!("not a valid Redis URL: {e}")))?;
        if parsed.get_connection_info().redis_settings().password().is_some() {
            return Err(self.err(
                "session.redis_url",
                "carries a password; put it in `session.redis_password` ({ file = … } or { env = … })",
            ));
        }
        let redis_password = s
            .redis_password
            .as_ref()
            .map(|p| p.load(self.base))
            .transpose()
            .map_err(|m| self.err("session.redis_password", m))?;
        let redis_ca = match &s.redis_ca {
            None => None,
            Some(p) => {
                if !url.starts_with("rediss://") {
                    return Err(self.err("session.redis_ca", "is only for a rediss:// URL"));
                }
                self.certs("session.redis_ca", p)?;
                Some(std::fs::read(self.path(p)).map_err(|e| self.err("session.redis_ca", e.to_string()))?)
            }
        };
        if s.redis_timeout_ms == 0 {
            return Err(self.err("session.redis_timeout_ms", "must be at least 1"));
        }
        if s.key_prefix.is_empty() || s.key_prefix.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(self.err("session.key_prefix", "must be non-empty, without spaces"));
        }
        let c = s.cookie_name.trim();
        if c.is_empty() || c.starts_with("__") || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(self.err(
                "session.cookie_name",
                "must be letters, digits, `-` or `_` (the `__Host-` prefix is added by Custos)",
            ));
        }
        if s.idle_timeout_secs == 0 {
            return Err(self.err("session.idle_timeout_secs", "must be at least 1"));
        }
        if s.max_sessions_per_user == Some(0) {
            return Err(self.err("session.max_sessions_per_user", "must be at least 1 (or left out: no cap)"));
        }
        if let Some(n) = s.max_sessions_per_user {
            self.at_most("session.max_sessions_per_user", n, 1000)?;
        }
        if s.absolute_timeout_secs < s.idle_timeout_secs {
            return Err(self.err("session.absolute_timeout_secs", "must be at least `idle_timeout_secs`"));
        }
        if s.touch_interval_secs >= s.idle_timeout_secs {
            return Err(self.err("session.touch_interval_secs", "must be shorter than `idle_timeout_secs`"));
        }
        let prefix = if secure_cookies { "__Host-" } else { "" };
        let session = SessionSettings {
            redis_url: url.to_string(),
            redis_username: s.redis_username.clone(),
            redis_password,
            redis_ca,
            redis_timeout: Duration::from_millis(s.redis_timeout_ms),
            key_prefix: s.key_prefix.clone(),
            cookie_name: format!("{prefix}{c}"),
            login_cookie_name: format!("{prefix}{c}_login"),
            max_per_user: s.max_sessions_per_user,
            revalidate: (s.revalidate_secs > 0).then(|| Duration::from_secs(s.revalidate_secs)),
            timeouts: crate::session::Timeouts {
                idle: Duration::from_secs(s.idle_timeout_secs),
                absolute: Duration::from_secs(s.absolute_timeout_secs),
                touch_interval: Duration::from_secs(s.touch_interval_secs),
            },
        };
        let u = &raw.upstream_identity;
        let upstream_identity = if u.enabled {
            let header = http::HeaderName::from_bytes(u.header.trim().as_bytes())
                .ok()
                .filter(|h| h.as_str().starts_with(crate::http::headers::IDENTITY_NAMESPACE))
                .ok_or_else(|| {
                    self.err("upstream_identity.header", "must be a header name starting with `x-custos-`")
                })?;
            if u.ttl_secs < 2 {
                return Err(self.err("upstream_identity.ttl_secs", "must be at least 2"));
            }
            if u.max_groups == 0 {
                return Err(self.err("upstream_identity.max_groups", "must be at least 1"));
            }
            self.at_most("upstream_identity.max_groups", u.max_groups, 1000)?;
            let signing_key = u
                .signing_key
                .as_ref()
                .map(|k| k.load(self.base))
                .transpose()
                .map_err(|m| self.err("upstream_identity.signing_key", m))?;
            if let Some(k) = &signing_key {
                crate::identity::assertion::Asserter::new(Some(k), "check", Duration::from_secs(60), 1)
                    .map_err(|m| self.err("upstream_identity.signing_key", m))?;
            }
            Some(UpstreamIdentitySettings {
                signing_key,
                header,
                ttl: Duration::from_secs(u.ttl_secs),
                max_groups: u.max_groups,
            })
        } else {
            None
        };
        Ok(Some(AuthSettings { oidc, session, upstream_identity }))
    }

    fn webhook(
        &self,
        w: &schema::AuditWebhook,
        audit_dir: &Path,
    ) -> Result<crate::audit::WebhookSinkSettings, ConfigError> {
        let uri: http::Uri =
            w.url.parse().map_err(|_| self.err("audit.webhook.url", format!("`{}` is not a URL", w.url)))?;
        let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => {
                return Err(self.err(
                    "audit.webhook.url",
                    format!("`{}` must be https:// (plain http:// only to a loopback address)", w.url),
                ))
            }
        }
        let secret = w.secret.load(self.base).map_err(|m| self.err("audit.webhook.secret", m))?;
        if secret.expose().len() < 16 {
            return Err(self.err("audit.webhook.secret", "must be at least 16 bytes"));
        }
        let ca = match &w.ca {
            None => None,
            Some(p) => {
                self.certs("audit.webhook.ca", p)?;
                Some(std::fs::read(self.path(p)).map_err(|e| self.err("audit.webhook.ca", e.to_string()))?)
            }
        };
        if w.timeout_secs == 0 {
            return Err(self.err("audit.webhook.timeout_secs", "must be at least 1"));
        }
        if w.max_tries.is_some() {
            return Err(self.err(
                "audit.webhook.max_tries",
                "is gone: a batch is retried until the receiver takes it (or refuses it for good: then it is dead-lettered); remove the key",
            ));
        }
        if w.dead_letter.is_some() {
            return Err(self.err(
                "audit.webhook.dead_letter",
                format!(
                    "is gone: dead letters are kept in {} for `custos audit redeliver`; remove the key",
                    crate::audit::sinks::dead_letter_dir(audit_dir, "webhook").display()
                ),
            ));
        }
        Ok(crate::audit::WebhookSinkSettings {
            url: w.url.clone(),
            secret,
            ca,
            timeout: Duration::from_secs(w.timeout_secs),
        })
    }

    /// `v` if it is at most `max`: counts have a sane ceiling, so a typo (an extra zero)
    /// is an error at `check`, not a surprise in production.
    fn at_most<T: PartialOrd + fmt::Display>(&self, key: &str, v: T, max: T) -> Result<T, ConfigError> {
        if v > max {
            return Err(self.err(key, format!("{v} is more than the most Custos accepts, {max}")));
        }
        Ok(v)
    }

    fn check_limits(&self, key: &str, l: &Limits) -> Result<(), ConfigError> {
        if l.max_header_bytes < 1024 || l.max_header_bytes > MAX_HEADER_BYTES {
            return Err(
                self.err(format!("{key}.max_header_bytes"), format!("must be between 1024 and {MAX_HEADER_BYTES}"))
            );
        }
        if l.max_headers == 0 || l.max_headers > 256 {
            return Err(self.err(format!("{key}.max_headers"), "must be between 1 and 256"));
        }
        for (name, d) in [
            ("client_read_timeout_secs", l.client_read_timeout),
            ("client_idle_timeout_secs", l.client_idle_timeout),
            ("upstream_connect_timeout_secs", l.upstream_connect_timeout),
            ("upstream_read_timeout_secs", l.upstream_read_timeout),
        ] {
            if d.is_zero() {
                return Err(self.err(format!("{key}.{name}"), "must be at least 1 second"));
            }
            self.at_most(&format!("{key}.{name}"), d.as_secs(), 86_400)?;
        }
        Ok(())
    }

    /// A list of request methods: tokens (RFC 9110 §5.6.2), each once, at least one.
    fn methods(&self, key: &str, list: &[String]) -> Result<Arc<[http::Method]>, ConfigError> {
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

    fn route(
        &self,
        i: usize,
        r: &schema::Route,
        site: Limits,
        site_methods: &Arc<[http::Method]>,
        strip: &[http::HeaderName],
    ) -> Result<Route, ConfigError> {
        let k = |field: &str| format!("routes[{i}].{field}");
        if r.name.trim().is_empty() || !r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(self.err(k("name"), "must be non-empty letters, digits, `-`, `_` or `.`"));
        }
        let host = match r.host.as_deref().map(str::trim) {
            None | Some("*") => HostMatch::Any,
            Some(h) => {
                let lower = h.to_ascii_lowercase();
                let (wild, name) = match lower.strip_prefix("*.") {
                    Some(rest) => (true, rest),
                    None => (false, lower.as_str()),
                };
                if name.is_empty()
                    || name.contains('*')
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                {
                    return Err(self.err(k("host"), format!("`{h}` is not a host name or `*.domain` wildcard")));
                }
                if wild {
                    HostMatch::Wildcard(format!(".{name}"))
                } else {
                    HostMatch::Exact(name.to_string())
                }
            }
        };
        let path = self.prefix(&k("path"), &r.path)?;
        let strip_prefix = match &r.strip_prefix {
            None => None,
            Some(s) => {
                let s = self.prefix(&k("strip_prefix"), s)?;
                let p = NormPath::parse(path.as_bytes()).map_err(|e| self.err(k("path"), e.to_string()))?;
                if !p.starts_with_segments(&s) {
                    return Err(self.err(k("strip_prefix"), format!("`{s}` is not a leading part of path `{path}`")));
                }
                Some(s)
            }
        };
        let upstream = self.upstream(i, r)?;
        if r.limits.max_header_bytes.is_some() || r.limits.max_headers.is_some() {
            let which = if r.limits.max_header_bytes.is_some() { "max_header_bytes" } else { "max_headers" };
            return Err(self.err(
                k(&format!("limits.{which}")),
                "is checked before routing, so it is site-wide only; set it under [limits]",
            ));
        }
        let limits = site.overlay(&r.limits);
        self.check_limits(&k("limits"), &limits)?;
        let methods = match &r.methods {
            Some(m) => self.methods(&k("methods"), m)?,
            None => site_methods.clone(),
        };
        let mut underscore_headers = Vec::with_capacity(r.underscore_headers.len());
        for (j, h) in r.underscore_headers.iter().enumerate() {
            let key = k(&format!("underscore_headers[{j}]"));
            let name = http::HeaderName::from_bytes(h.trim().as_bytes())
                .ok()
                .filter(|n| n.as_str().contains('_'))
                .ok_or_else(|| self.err(&key, format!("`{h}` is not a header name with `_`")))?;
            if crate::http::headers::reserved(name.as_str(), strip) {
                return Err(self.err(
                    &key,
                    format!(
                        "`{h}` is read as `{}` by upstreams that map `_` to `-`: a header Custos strips or sets",
                        name.as_str().replace('_', "-")
                    ),
                ));
            }
            underscore_headers.push(name);
        }
        if r.websocket && r.public {
            return Err(self.err(
                k("websocket"),
                "needs a signed-in route (`public = false`): a tunnel lives no longer than its session",
            ));
        }
        Ok(Route {
            methods,
            underscore_headers,
            name: r.name.clone(),
            host,
            path,
            upstream,
            strip_prefix,
            public: r.public,
            require_mfa: r.require_mfa,
            forward_authorization: r.forward_authorization,
            identity_headers: r.identity_headers,
            resource: r.resource.clone().unwrap_or_else(|| r.name.clone()),
            domain: r.domain.clone().unwrap_or_default(),
            audit_query: r.audit_query,
            websocket: r.websocket,
            limits,
        })
    }

    fn prefix(&self, key: &str, s: &str) -> Result<String, ConfigError> {
        let p = NormPath::parse(s.as_bytes()).map_err(|e| self.err(key, format!("`{s}`: {e}")))?;
        if p.as_str() != s && p.as_str().trim_end_matches('/') != s.trim_end_matches('/') {
            return Err(self.err(key, format!("`{s}` is not normalised; write `{p}`")));
        }
        let p = p.as_str();
        Ok(if p == "/" { p.to_string() } else { p.trim_end_matches('/').to_string() })
    }

    fn upstream(&self, i: usize, r: &schema::Route) -> Result<Upstream, ConfigError> {
        let key = format!("routes[{i}].upstream");
        let bad =
            |why: &str| self.err(&key, format!("`{}` {why}; write http://HOST:PORT or https://HOST:PORT", r.upstream));
        let uri: http::Uri = r.upstream.parse().map_err(|_| bad("is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => return Err(bad("has a scheme other than http or https")),
            None => return Err(bad("has no scheme")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("has a path or query (only scheme, host and port are allowed)"));
        }
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("carries credentials"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // An IP literal is final now; a name is resolved once by `serve` (see
        // `Config::resolve_upstreams`), so `check` works where the upstreams' DNS does not.
        let addr = host.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, port));

        let tls_key = format!("routes[{i}].upstream_tls");
        let upstream_tls = match (&r.upstream_tls, tls) {
            (Some(_), false) => {
                return Err(self.err(tls_key, "is set but the upstream is http://; use https:// or remove it"))
            }
            (None, false) => None,
            (t, true) => {
                let default = schema::UpstreamTls { ca: None, sni: None, client_cert: None, client_key: None };
                let t = t.as_ref().unwrap_or(&default);
                let ca = match &t.ca {
                    None => None,
                    Some(p) => {
                        let certs = self.certs(&format!("{tls_key}.ca"), p)?;
                        let wrapped: Vec<WrappedX509> = certs
                            .into_iter()
                            .map(|c| WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509))
                            .collect();
                        Some(Arc::from(wrapped))
                    }
                };
                let client_cert = match (&t.client_cert, &t.client_key) {
                    (None, None) => None,
                    (Some(c), Some(k)) => {
                        let certs = self.certs(&format!("{tls_key}.client_cert"), c)?;
                        let key = self.key(&format!("{tls_key}.client_key"), k)?;
                        Some(Arc::new(CertKey::new(
                            certs.into_iter().map(|c| c.to_vec()).collect(),
                            key.secret_der().to_vec(),
                        )))
                    }
                    (Some(_), None) => {
                        return Err(self.err(format!("{tls_key}.client_key"), "is required with client_cert"))
                    }
                    (None, Some(_)) => {
                        return Err(self.err(format!("{tls_key}.client_cert"), "is required with client_key"))
                    }
                };
                Some(UpstreamTls { sni: t.sni.clone().unwrap_or_else(|| host.clone()), ca, client_cert })
            }
        };
        Ok(Upstream { url: r.upstream.clone(), host_port: (host, port), addr, tls: upstream_tls })
    }
}

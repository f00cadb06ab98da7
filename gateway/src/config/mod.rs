//! Configuration: the TOML file an operator writes ([`schema`]), validated once into the
//! internal [`Config`] before anything listens. Every error names the file and the key
//! (and the line where the TOML parser knows it); validation never panics.
//!
//! This is the bottom layer: it imports nothing else of Custos. One file per section
//! holds that section's validated settings and its checks; the leaf value types every
//! layer shares live here too ([`path`], [`secret`], [`clock`], [`hash`]).
//!
//! ```text
//! custos check --config examples/quickstart.toml
//! ```

pub mod admin;
pub mod audit;
pub mod breakglass;
pub mod clock;
pub mod databases;
mod error;
pub mod hash;
pub mod headers;
pub mod limits;
pub mod log;
pub mod oidc;
pub mod path;
pub mod policy;
pub mod routes;
pub mod schema;
pub mod secret;
pub mod server;
pub mod session;
#[cfg(test)]
mod tests;
pub mod upstream_identity;

pub use audit::AuditSettings;
pub use databases::{Database, DbLimits, DbRole, DbTls, DbTlsMode, PostgresSettings};
pub use error::ConfigError;
pub use headers::HeaderSettings;
pub use limits::{Limits, MAX_HEADER_BYTES};
pub use log::{LogFormat, LogSettings};
pub use oidc::{AuthSettings, OidcSettings};
pub use policy::PolicyFiles;
pub use routes::{HostMatch, Route, Upstream, UpstreamTls};
pub use server::{ServerSettings, TlsListener};
pub use session::SessionSettings;
pub use upstream_identity::UpstreamIdentitySettings;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secret::{Secret, SecretRef};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    pub audit: AuditSettings,
    /// Sign-in and sessions; `None` when every route is public.
    pub auth: Option<AuthSettings>,
    /// The casbin model and policy files (loaded and tested at load: `Config::load_with`
    /// with `PolicyFiles::check_config`).
    pub policy: Option<PolicyFiles>,
    /// Emergency access.
    pub breakglass: Option<Arc<breakglass::Settings>>,
    pub routes: Vec<Route>,
    /// The PostgreSQL front end (`listen.postgres` and `[postgres]`); `None`: off.
    pub postgres: Option<PostgresSettings>,
    /// `[[databases]]`: empty exactly when `postgres` is `None`.
    pub databases: Vec<Database>,
}

impl Config {
    /// Reads and validates `file` (what it names in other layers' terms, such as the
    /// policy files, is checked by [`Config::load_with`]).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        Config::load_with(file, |_| Ok(()))
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
        Config::from_toml_with(file, text, |_| Ok(()))
    }

    /// [`Config::load`], then `check`: a higher layer's check of what the config names
    /// (that the policy files load and pass their cases), its error put at its key's line.
    pub fn load_with(
        file: &Path,
        check: impl FnOnce(&Config) -> Result<(), ConfigError>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            key: "(file)".into(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::from_toml_with(file, &text, check)
    }

    /// [`Config::from_toml`], then `check` (see [`Config::load_with`]).
    pub fn from_toml_with(
        file: &Path,
        text: &str,
        check: impl FnOnce(&Config) -> Result<(), ConfigError>,
    ) -> Result<Config, ConfigError> {
        let raw = parse(file, text)?;
        let v = Validator { file, base: file.parent().unwrap_or(Path::new(".")), text };
        let cfg = v.validate(raw)?;
        check(&cfg).map_err(|e| ConfigError { line: e.line.or_else(|| v.line_of_key(&e.key)), ..e })?;
        Ok(cfg)
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

    /// Refuses a key that does not match its certificate now, not at the first handshake.
    fn key_matches(
        &self,
        key: &str,
        pk: &PrivateKeyDer<'static>,
        certs: &[CertificateDer<'static>],
        cert_key: &str,
    ) -> Result<(), ConfigError> {
        let signing = rustls::crypto::ring::sign::any_supported_type(pk)
            .map_err(|e| self.err(key, format!("unusable private key: {e}")))?;
        rustls::sign::CertifiedKey::new(certs.to_vec(), signing)
            .keys_match()
            .map_err(|_| self.err(key, format!("does not match the certificate in {cert_key}")))
    }

    /// The sections in a fixed order: the first error found is the one reported.
    fn validate(&self, raw: schema::File) -> Result<Config, ConfigError> {
        let server = self.server(&raw.server)?;
        let (listen_http, listen_tls) = self.listen(&raw.listen)?;
        let (admin, admin_tokens) =
            self.admin(raw.admin.as_ref(), [listen_http, listen_tls.as_ref().map(|t| t.addr)])?;
        let log = self.log(&raw.log)?;
        let headers = self.headers(&raw.headers)?;
        let limits = Limits::default().overlay(&raw.limits);
        self.check_limits("limits", &limits)?;
        let routes = self.routes(&raw.routes, limits, &server.methods, &headers.strip)?;
        let audit = self.audit(&raw.audit)?;
        let auth = self.auth(&raw)?;
        if let Some(a) = &auth {
            self.routes_on_session_host(&routes, a)?;
        }
        let taken = [
            ("listen.http", listen_http),
            ("listen.tls.addr", listen_tls.as_ref().map(|t| t.addr)),
            ("admin.listen", admin),
        ];
        let (postgres, databases) = self.databases(&raw, listen_tls.as_ref(), &taken, auth.as_ref())?;
        let policy = self.policy(raw.policy.as_ref(), auth.is_some())?;
        let breakglass = self.breakglass(raw.breakglass.as_ref(), policy.as_ref(), audit.enabled)?;
        if auth.is_none() {
            self.routes_public(&routes)?;
        }
        Ok(Config {
            file: self.file.to_path_buf(),
            server,
            listen_http,
            listen_tls,
            admin,
            admin_tokens,
            log,
            headers,
            limits,
            audit,
            auth,
            policy,
            breakglass,
            routes,
            postgres,
            databases,
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

    /// `v` if it is at most `max`: counts have a sane ceiling, so a typo (an extra zero)
    /// is an error at `check`, not a surprise in production.
    fn at_most<T: PartialOrd + fmt::Display>(&self, key: &str, v: T, max: T) -> Result<T, ConfigError> {
        if v > max {
            return Err(self.err(key, format!("{v} is more than the most Custos accepts, {max}")));
        }
        Ok(v)
    }
}

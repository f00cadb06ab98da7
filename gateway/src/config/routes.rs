//! `[[routes]]`: which host and path prefix each route answers, its upstream (and TLS
//! to it), its own limits, methods and header exceptions; and the checks that tie routes
//! to sign-in (a protected route must be on the sessions' host, and needs `[oidc]`).

use super::headers::reserved;
use super::limits::Limits;
use super::oidc::AuthSettings;
use super::path::NormPath;
use super::{schema, ConfigError, Validator};
use pingora::utils::tls::{CertKey, WrappedX509};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

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
    /// The route serves ePHI (`ephi`, default true): what reports and guardrails read.
    pub ephi: bool,
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

/// The host a request names, lower-cased, without port: from the `Host` header, or the
/// URI authority (HTTP/2 `:authority`, absolute-form). Returns a borrowed slice when it
/// is already lower-case, the common case.
pub fn host_of(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or("")
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { raw })
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

impl Validator<'_> {
    /// Every route, each name and each (host, path) once.
    pub(super) fn routes(
        &self,
        raw: &[schema::Route],
        limits: Limits,
        methods: &Arc<[http::Method]>,
        strip: &[http::HeaderName],
    ) -> Result<Vec<Route>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err("routes", "no [[routes]]: the gateway would refuse every request"));
        }
        let mut names = HashSet::new();
        let mut places = HashSet::new();
        let mut routes = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let route = self.route(i, r, limits, methods, strip)?;
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
        Ok(routes)
    }

    /// Sessions live on the redirect URL's host: a protected route on another host
    /// could never see its cookie.
    pub(super) fn routes_on_session_host(&self, routes: &[Route], a: &AuthSettings) -> Result<(), ConfigError> {
        let origin_host = a.oidc.origin.split_once("://").map_or("", |(_, h)| h);
        let origin_host = host_of(origin_host).into_owned();
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
        Ok(())
    }

    /// Without `[oidc]` every route must be public.
    pub(super) fn routes_public(&self, routes: &[Route]) -> Result<(), ConfigError> {
        if let Some(i) = routes.iter().position(|r| !r.public) {
            return Err(self.err(
                format!("routes[{i}].public"),
                format!(
                    "route `{}` needs signed-in users but there is no [oidc] section; add [oidc] and [session], or set `public = true` on the route",
                    routes[i].name
                ),
            ));
        }
        Ok(())
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
            if reserved(name.as_str(), strip) {
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
            ephi: r.ephi,
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

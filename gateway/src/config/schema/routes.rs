//! `[[routes]]` as written.

use super::Limits;
use crate::config::secret::SecretRef;
use serde::Deserialize;
use std::path::PathBuf;

/// `[[routes]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// Exact host (`ehr.example.org`) or wildcard (`*.example.org`); omitted = any host.
    pub host: Option<String>,
    /// Path prefix, matched on segment boundaries. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// `http://host:port` or `https://host:port`.
    pub upstream: String,
    pub upstream_tls: Option<UpstreamTls>,
    /// A leading part of `path` removed before forwarding.
    pub strip_prefix: Option<String>,
    /// Reachable without signing in. Default false: every other route needs a session.
    #[serde(default)]
    pub public: bool,
    /// Overrides `oidc.require_mfa` for this route.
    pub require_mfa: Option<bool>,
    /// The resource name in the policy's object (`<resource>:<path>`). Default: the
    /// route's name.
    pub resource: Option<String>,
    /// The policy domain (e.g. a department), for models with `dom`. Default empty.
    pub domain: Option<String>,
    /// Also send the user as plain `x-custos-user` / `x-custos-groups` headers (beside
    /// the signed assertion). Default false.
    #[serde(default)]
    pub identity_headers: bool,
    /// Pass a consumed `Authorization: Bearer` header on to the upstream. Default false.
    #[serde(default)]
    pub forward_authorization: bool,
    /// Put the query string in this route's audit records. Default false: query
    /// strings often carry identifiers.
    #[serde(default)]
    pub audit_query: bool,
    /// The request methods this route serves, instead of `server.methods`.
    pub methods: Option<Vec<String>>,
    /// Header names with `_` that this route passes on (all others are dropped), e.g.
    /// `["x_legacy_id"]`; never one that, `_` read as `-`, Custos strips or sets.
    #[serde(default)]
    pub underscore_headers: Vec<String>,
    /// Accept WebSocket upgrades (the policy decides the upgrade request; the tunnel
    /// lives no longer than the session). Default false: upgrades are refused.
    #[serde(default)]
    pub websocket: bool,
    /// Whether the route serves ePHI. Default true.
    #[serde(default = "super::yes")]
    pub ephi: bool,
    #[serde(default)]
    pub limits: Limits,
}

fn default_path() -> String {
    "/".into()
}

/// `[routes.upstream_tls]`: only for `https://` upstreams.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA bundle that the upstream's certificate must chain to. Default: the
    /// system's roots.
    pub ca: Option<PathBuf>,
    /// Server name sent by SNI and verified. Default: the upstream URL's host.
    pub sni: Option<String>,
    /// PEM client certificate chain for mTLS (needs `client_key`).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<SecretRef>,
}

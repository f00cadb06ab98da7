//! `[oidc]`, `[session]` and `[upstream_identity]` as written.

use super::yes;
use crate::config::secret::SecretRef;
use serde::Deserialize;
use std::path::PathBuf;

/// `[oidc]`: the OpenID Connect provider users sign in with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    /// The issuer URL; `<issuer>/.well-known/openid-configuration` is read from it.
    pub issuer: String,
    pub client_id: String,
    /// `{ file = … }` or `{ env = … }`.
    pub client_secret: SecretRef,
    /// Where the provider sends the browser back: this gateway's origin followed by
    /// `/.custos/callback`, registered with the provider as a redirect URI.
    pub redirect_url: String,
    /// Requested scopes; `openid` is always sent. Default `["openid", "email", "profile"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim that names the user in policies, audit and CLIs. Default `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim that carries the user's groups. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Routes need multi-factor sign-in unless they say `require_mfa = false`. Default true.
    #[serde(default = "yes")]
    pub require_mfa: bool,
    /// ID token signature algorithms accepted. Default `["RS256", "ES256", "PS256"]`.
    /// `none` and the HMAC algorithms are refused.
    #[serde(default = "default_algs")]
    pub id_token_algs: Vec<String>,
    /// Seconds a started sign-in may take. Default 600.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
    /// Where the provider sends the browser after logout (registered with it). Default:
    /// none, the provider's own page.
    pub post_logout_redirect_url: Option<String>,
    /// Seconds per call to the provider (discovery, keys, code exchange). Default 5.
    #[serde(default = "default_idp_timeout")]
    pub timeout_secs: u64,
    /// The audience (`aud`) of access tokens accepted as `Authorization: Bearer` (RFC
    /// 9068 JWTs). Default: none, bearer tokens are not accepted.
    pub api_audience: Option<String>,
    /// The provider's keys are fetched again for an unknown `kid` at most this often.
    /// Default 30.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_min_refresh_secs: u64,
    /// Seconds of clock difference allowed with the provider for a token's `exp`, `nbf`
    /// and `iat`. Default 30, at most 300.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
    /// Sign-ins one client address may start per minute (each is a Redis record until
    /// it finishes or times out). Default 300.
    #[serde(default = "default_max_logins")]
    pub max_logins_per_minute: u64,
    /// `[oidc.mfa]`: what counts as multi-factor.
    #[serde(default)]
    pub mfa: Mfa,
}

/// `[oidc.mfa]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mfa {
    /// `amr` values that mean multi-factor by themselves (RFC 8176). Default
    /// `["mfa", "mca"]`.
    #[serde(default = "default_mfa_amr")]
    pub amr: Vec<String>,
    /// `amr` values from two different RFC 8176 factor classes (something you know,
    /// have, are), e.g. `pwd` + `otp`, count as multi-factor. Default true.
    #[serde(default = "yes")]
    pub amr_two_factors: bool,
    /// `acr` values that count as multi-factor. Default none.
    #[serde(default)]
    pub acr: Vec<String>,
    /// `acr_values` sent when a session must step up. Default: `acr`.
    pub step_up_acr_values: Option<Vec<String>>,
    /// `max_age` sent when a session must step up. Default: none.
    pub step_up_max_age_secs: Option<u64>,
}

impl Default for Mfa {
    fn default() -> Self {
        Mfa {
            amr: default_mfa_amr(),
            amr_two_factors: true,
            acr: Vec::new(),
            step_up_acr_values: None,
            step_up_max_age_secs: None,
        }
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_algs() -> Vec<String> {
    ["RS256", "ES256", "PS256"].map(String::from).to_vec()
}
fn default_login_timeout() -> u64 {
    600
}
fn default_clock_skew() -> u64 {
    30
}

fn default_jwks_refresh() -> u64 {
    30
}
fn default_max_logins() -> u64 {
    300
}
fn default_idp_timeout() -> u64 {
    5
}
fn default_mfa_amr() -> Vec<String> {
    ["mfa", "mca"].map(String::from).to_vec()
}

/// `[upstream_identity]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamIdentity {
    /// Send the assertion (with `[oidc]`). Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// PKCS#8 PEM key, Ed25519 (EdDSA) or P-256 (ES256): `{ file = … }` or `{ env = … }`.
    /// Default: a key made at start (one instance only: several need the same key).
    pub signing_key: Option<SecretRef>,
    /// The request header that carries it; in the `x-custos-` namespace, so a client's
    /// own is always stripped. Default `x-custos-assertion`.
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// Seconds an assertion is valid. Default 60.
    #[serde(default = "default_assertion_ttl")]
    pub ttl_secs: u64,
    /// Groups put in an assertion at most (`groups_truncated` says when there were
    /// more). Default 50.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
}

impl Default for UpstreamIdentity {
    fn default() -> Self {
        UpstreamIdentity {
            enabled: true,
            signing_key: None,
            header: default_assertion_header(),
            ttl_secs: default_assertion_ttl(),
            max_groups: default_max_groups(),
        }
    }
}

fn default_assertion_header() -> String {
    "x-custos-assertion".into()
}
fn default_assertion_ttl() -> u64 {
    60
}
fn default_max_groups() -> usize {
    50
}

/// `[session]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCfg {
    /// `redis://host:port/db`, or `rediss://` for TLS.
    pub redis_url: String,
    /// Redis ACL user name (instead of one in the URL).
    pub redis_username: Option<String>,
    /// Redis password: `{ file = … }` or `{ env = … }` (never in the URL).
    pub redis_password: Option<SecretRef>,
    /// PEM CA bundle for a `rediss://` server. Default: the system's roots.
    pub redis_ca: Option<PathBuf>,
    /// Milliseconds per Redis call before the request is refused with 503. Default 1000.
    #[serde(default = "default_redis_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// Prefix of every key Custos writes. Default `custos`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The cookie's name; `__Host-` is put in front when `oidc.redirect_url` is https.
    /// Default `custos_session`.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// Seconds without a request before automatic logoff. Default 900 (15 minutes).
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Seconds a session lives at most, active or not. Default 43200 (12 hours).
    #[serde(default = "default_absolute")]
    pub absolute_timeout_secs: u64,
    /// Seconds between checks of a session with the provider (a refresh-token grant;
    /// refused → the session ends, unreachable → it goes on). 0: never. Default 300.
    #[serde(default = "default_revalidate")]
    pub revalidate_secs: u64,
    /// Sessions one user may have at once; a new sign-in ends the oldest beyond it.
    /// Default: no cap.
    pub max_sessions_per_user: Option<usize>,
    /// Seconds between writes of a session's last-seen time; idle expiry is accurate to
    /// within this. Default 60.
    #[serde(default = "default_touch")]
    pub touch_interval_secs: u64,
    /// Session records each gateway keeps parsed in memory (least recently used go
    /// first), trusted only while Redis pushes their changes. 0: none. Default 10000.
    #[serde(default = "default_max_cached_sessions")]
    pub max_cached_sessions: usize,
}

fn default_revalidate() -> u64 {
    300
}
fn default_redis_timeout_ms() -> u64 {
    1000
}
fn default_key_prefix() -> String {
    "custos".into()
}
fn default_cookie_name() -> String {
    "custos_session".into()
}
fn default_idle() -> u64 {
    900
}
fn default_absolute() -> u64 {
    43_200
}
fn default_touch() -> u64 {
    60
}
fn default_max_cached_sessions() -> usize {
    10_000
}

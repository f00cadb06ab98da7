//! The external TOML schema: what an operator writes. Every struct refuses unknown keys,
//! and every default is a named function so the README's reference and the code agree.

use crate::secret::SecretRef;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    pub listen: Listen,
    pub admin: Option<Admin>,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub audit: Audit,
    /// `[oidc]`: browser sign-in. Without it every route must be `public = true`.
    pub oidc: Option<Oidc>,
    /// `[session]`: where sessions live and how long. Required with `[oidc]`.
    pub session: Option<SessionCfg>,
    /// `[policy]`: casbin authorization of every request to a protected route.
    pub policy: Option<PolicyCfg>,
    /// `[upstream_identity]`: the signed identity assertion sent to upstreams.
    #[serde(default)]
    pub upstream_identity: UpstreamIdentity,
    /// `[breakglass]`: emergency access (needs `[oidc]` and `[policy]`).
    pub breakglass: Option<BreakglassCfg>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

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

/// `[policy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCfg {
    /// The casbin model (`.conf`), relative to this file.
    pub model: PathBuf,
    /// The casbin policy (`.csv`), relative to this file.
    pub policy: PathBuf,
    /// A cases file (`custos policy test` format) that a policy must pass to be loaded,
    /// at start and on every reload.
    pub cases: Option<PathBuf>,
    /// The files are checked for changes this often (milliseconds); SIGHUP reloads at
    /// once. Default 1000.
    #[serde(default = "default_policy_poll")]
    pub poll_ms: u64,
    /// `[policy.group_roles]`: IdP group → the identity it is decided as (a role name).
    /// Groups not listed are decided as `group:<name>`.
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, String>,
}

fn default_policy_poll() -> u64 {
    1000
}

/// `[breakglass]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakglassCfg {
    /// Seconds a declared emergency grant lasts unless the user asks for less. Default
    /// 3600 (60 minutes).
    #[serde(default = "default_bg_secs")]
    pub default_secs: u64,
    /// The longest grant (declared, or a sealed link's TTL), seconds. Default 14400 (4 h).
    #[serde(default = "default_bg_max_secs")]
    pub max_secs: u64,
    /// The longest justification, characters. Default 2000.
    #[serde(default = "default_bg_justification")]
    pub justification_max: usize,
    /// Declarations per user per day (UTC). Default 3.
    #[serde(default = "default_bg_per_day")]
    pub max_per_day: u64,
    /// Days the review record (with the justification) is kept in Redis. Default 2190.
    #[serde(default = "default_bg_retention")]
    pub retention_days: u64,
    /// Put the justification's text in audit records and alerts (it may hold PHI).
    /// Default false: its SHA-256 and length only.
    #[serde(default)]
    pub audit_justification: bool,
    /// The policy domain in which the review page asks whether a user may `custos:review`
    /// (object `custos:/breakglass/reviews`). Default empty.
    #[serde(default)]
    pub review_domain: String,
    /// `[[breakglass.alerts]]`: real-time alerts on every start and sealed-link use.
    #[serde(default)]
    pub alerts: Vec<BreakglassAlert>,
}

/// `[[breakglass.alerts]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakglassAlert {
    /// `https://…` (plain `http://` only to a loopback address).
    pub url: String,
    /// `slack` (an incoming-webhook message) or `json` (Custos's alert object).
    pub format: String,
    /// The HMAC-SHA256 key: `{ file = … }` or `{ env = … }`. Required for `json`.
    pub secret: Option<SecretRef>,
    /// Gone (alerts are retried until taken); refused with a message saying so.
    pub max_tries: Option<u32>,
}

fn default_bg_secs() -> u64 {
    3600
}
fn default_bg_max_secs() -> u64 {
    14_400
}
fn default_bg_justification() -> usize {
    2000
}
fn default_bg_per_day() -> u64 {
    3
}
fn default_bg_retention() -> u64 {
    2190
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

/// `[audit]`: the hash-chained, metadata-only audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// Record every access decision. Default true; false is for benchmarks only.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The spool: segment files of this instance's chain, its instance id and, unless
    /// `signing_key` is set, its checkpoint key. Default `audit` beside the config.
    #[serde(default = "default_audit_dir")]
    pub dir: PathBuf,
    /// `"deny"` (default): answer 503 when the spool cannot be written.
    /// `"allow"`: keep serving and raise an alert.
    #[serde(default)]
    pub on_failure: crate::audit::OnFailure,
    /// A new segment file starts past this size. Default 64 MiB.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// A signed checkpoint after this many records… Default 1000.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or this many seconds, whichever comes first. Default 60.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// Ed25519 private key (PKCS#8 PEM) for checkpoints; default: made in `dir`.
    pub signing_key: Option<SecretRef>,
    /// `[audit.redis]`: deliver every record to a Redis Stream.
    pub redis: Option<AuditRedis>,
    /// `[audit.file]`: deliver every record to a JSONL archive file.
    pub file: Option<AuditFile>,
    /// `[audit.webhook]`: deliver every record to an HTTPS endpoint (a SIEM).
    pub webhook: Option<AuditWebhook>,
    /// `[audit.otlp]`: deliver every record as an OpenTelemetry log record, and each
    /// request as a span, to an OTLP/HTTP collector.
    pub otlp: Option<AuditOtlp>,
    /// Records waiting for the writer beyond which new access is refused. Default 100000.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// The longest wait between two delivery tries of a sink, in ms. Default 5000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// A sink that has taken nothing for this long raises an ALERT. Default 300.
    #[serde(default = "default_sink_alert_secs")]
    pub sink_alert_secs: u64,
    /// The spool's size limit (segment files); then `on_failure` applies. 0: none.
    /// Default 10 GiB.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
}

fn default_retry_max_ms() -> u64 {
    crate::audit::RETRY_MAX.as_millis() as u64
}
fn default_sink_alert_secs() -> u64 {
    crate::audit::SINK_ALERT_AFTER.as_secs()
}
fn default_spool_max_bytes() -> u64 {
    crate::audit::SPOOL_MAX_BYTES
}

fn default_queue_limit() -> usize {
    crate::audit::QUEUE_LIMIT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditOtlp {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`.
    pub endpoint: String,
    /// Seconds per export. Default 10.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditWebhook {
    /// `https://…` (plain `http://` only to a loopback address).
    pub url: String,
    /// The HMAC-SHA256 key shared with the receiver: `{ file = … }` or `{ env = … }`.
    pub secret: SecretRef,
    /// PEM CA bundle for the receiver's certificate. Default: the system's roots.
    pub ca: Option<PathBuf>,
    /// Gone (batches are retried until taken); refused with a message saying so.
    pub max_tries: Option<u32>,
    /// Gone (dead letters live in `dir/dead-letters/webhook/`); refused likewise.
    pub dead_letter: Option<PathBuf>,
    /// Seconds per try. Default 10.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRedis {
    /// `redis://host:port/db`.
    pub url: String,
    /// Stream key. Default `custos:audit`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Approximate cap on the stream's length. Default 1,000,000.
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
}

fn default_stream() -> String {
    "custos:audit".into()
}
fn default_maxlen() -> u64 {
    1_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// The archive file (relative to the config's folder).
    pub path: PathBuf,
}

fn default_audit_dir() -> PathBuf {
    PathBuf::from("audit")
}
fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_checkpoint_every() -> u64 {
    1000
}
fn default_checkpoint_secs() -> u64 {
    60
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: true,
            dir: default_audit_dir(),
            on_failure: Default::default(),
            segment_bytes: default_segment_bytes(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_secs: default_checkpoint_secs(),
            signing_key: None,
            redis: None,
            file: None,
            webhook: None,
            otlp: None,
            queue_limit: default_queue_limit(),
            retry_max_ms: default_retry_max_ms(),
            sink_alert_secs: default_sink_alert_secs(),
            spool_max_bytes: default_spool_max_bytes(),
        }
    }
}

/// `[server]`: the process.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads of the proxy service. Default 1 per core is pingora's habit; we
    /// default to the number of cores.
    pub threads: Option<usize>,
    /// Let idle worker threads steal tasks. Off by default: measured faster (BENCHMARKS.md).
    #[serde(default)]
    pub work_stealing: bool,
    /// Seconds that in-flight requests get to finish after SIGTERM. Default 10.
    #[serde(default = "default_grace_period")]
    pub grace_period_secs: u64,
    /// Idle upstream connections kept for reuse. Default 256.
    #[serde(default = "default_upstream_pool")]
    pub upstream_keepalive_pool: usize,
    /// Request methods served, compared case-sensitively; any other gets 501. Default
    /// [`default_methods`]. A route may set its own (`routes[].methods`).
    pub methods: Option<Vec<String>>,
}

/// RFC 9110's methods (§9.3) and `PATCH` (RFC 5789).
pub fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"].map(String::from).to_vec()
}

fn default_grace_period() -> u64 {
    10
}
fn default_upstream_pool() -> usize {
    256
}

impl Default for Server {
    fn default() -> Self {
        Server {
            threads: None,
            work_stealing: false,
            grace_period_secs: default_grace_period(),
            upstream_keepalive_pool: default_upstream_pool(),
            methods: None,
        }
    }
}

/// `[listen]`: at least one of `http` and `tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Plain HTTP address, for local development (`127.0.0.1:8080`).
    pub http: Option<String>,
    pub tls: Option<ListenTls>,
}

/// `[listen.tls]`: rustls, TLS 1.2 and 1.3 only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    pub addr: String,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key: `{ file = "…" }` or `{ env = "…" }`.
    pub key: SecretRef,
    /// Offer HTTP/2 by ALPN. Default true.
    #[serde(default = "yes")]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

/// `[admin]`: the separate listener for Prometheus metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: String,
    /// Administrator tokens for the session API: a file of `NAME SHA256HEX` lines
    /// (`custos admin-token NAME` makes one). `{ file = … }` or `{ env = … }`.
    pub tokens: Option<SecretRef>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `custos=debug,pingora=warn`). `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for Log {
    fn default() -> Self {
        Log { format: LogFormat::default(), level: default_log_level() }
    }
}

/// `[headers]`: identity header hygiene and forwarding headers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    /// Inbound headers removed before forwarding, on top of every `x-custos-*` header.
    #[serde(default = "default_strip")]
    pub strip: Vec<String>,
    /// Peers (CIDRs) whose `X-Forwarded-*` headers are trusted and appended to.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

pub fn default_strip() -> Vec<String> {
    [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-remote-user",
        "remote-user",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Default for Headers {
    fn default() -> Self {
        Headers { strip: default_strip(), trusted_proxies: Vec::new() }
    }
}

/// `[limits]`, and per route `[routes.limits]` (each key optional there).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bytes of request line plus headers. Default 16384; larger gets 431.
    pub max_header_bytes: Option<usize>,
    /// Number of request headers. Default 100; more gets 431.
    pub max_headers: Option<usize>,
    /// Request body bytes. Default 10 MiB; larger gets 413.
    pub max_body_bytes: Option<u64>,
    /// Seconds a client may stay silent while sending a body. Default 30.
    pub client_read_timeout_secs: Option<u64>,
    /// Seconds an idle keep-alive client connection is kept, waiting for the next request
    /// header. Default 60.
    pub client_idle_timeout_secs: Option<u64>,
    /// Seconds to connect to the upstream. Default 5.
    pub upstream_connect_timeout_secs: Option<u64>,
    /// Seconds the upstream may stay silent while answering. Default 60.
    pub upstream_read_timeout_secs: Option<u64>,
}

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

//! `[oidc]`: the provider users sign in with, what counts as multi-factor, and the
//! callback path and signature algorithms the gateway accepts; and the three sections
//! that make sign-in ([`AuthSettings`]), validated together.

use super::secret::Secret;
use super::session::SessionSettings;
use super::upstream_identity::UpstreamIdentitySettings;
use super::{schema, ConfigError, Validator};
use std::time::Duration;

/// Where the provider sends the browser back: `oidc.redirect_url`'s path.
pub const CALLBACK_PATH: &str = "/.custos/callback";

/// Signature algorithms an operator may allow. Never `none`, never HMAC (a client
/// secret is not a key the provider signs with, and HMAC with a public key is the
/// classic algorithm confusion).
pub const ACCEPTABLE_ALGS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// `[oidc]`, `[session]` and `[upstream_identity]`, validated.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub oidc: OidcSettings,
    pub session: SessionSettings,
    pub upstream_identity: Option<UpstreamIdentitySettings>,
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
    pub mfa: MfaRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRule {
    /// `amr` values that mean multi-factor on their own (`mfa`, `mca`).
    pub amr: Vec<String>,
    /// Two `amr` values from different factor classes count.
    pub amr_two_factors: bool,
    /// Accepted `acr` values.
    pub acr: Vec<String>,
    /// Sent as `acr_values` on step-up.
    pub step_up_acr_values: Vec<String>,
    /// Sent as `max_age` on step-up.
    pub step_up_max_age: Option<Duration>,
}

impl Validator<'_> {
    pub(super) fn auth(&self, raw: &schema::File) -> Result<Option<AuthSettings>, ConfigError> {
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
        let client_secret = Secret::from(secret_text.trim().as_bytes().to_vec());
        let redirect = self.http_url("oidc.redirect_url", o.redirect_url.trim(), "the gateway's own address")?;
        if redirect.path() != CALLBACK_PATH || redirect.query().is_some() {
            return Err(self.err(
                "oidc.redirect_url",
                format!(
                    "must be this gateway's origin followed by `{}`, e.g. https://gateway.example.org{}",
                    CALLBACK_PATH, CALLBACK_PATH
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
            if !ACCEPTABLE_ALGS.contains(&a.as_str()) {
                return Err(self.err(
                    format!("oidc.id_token_algs[{i}]"),
                    format!("`{a}` is not accepted; choose from {}", ACCEPTABLE_ALGS.join(", ")),
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
        let mfa = MfaRule {
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

        let session = self.session(s, secure_cookies)?;
        let upstream_identity = self.upstream_identity(&raw.upstream_identity)?;
        Ok(Some(AuthSettings { oidc, session, upstream_identity }))
    }
}

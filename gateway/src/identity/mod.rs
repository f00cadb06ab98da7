//! Sign-in through OpenID Connect with the `openidconnect` crate: discovery (lazy, so the
//! gateway starts while the provider is down), the authorization request with PKCE
//! (S256), `state` and `nonce`, the code exchange, and ID token validation (signature by
//! the provider's keys with the algorithms the operator allows, `iss`, `aud`, `azp`,
//! `exp`, `iat`, `nbf`, `nonce`), refreshing the keys (bounded) when a token names a key
//! we do not know. Nothing here runs per proxied request: only at sign-in.

pub mod assertion;
pub mod bearer;
mod error;
pub mod mfa;
pub mod redirect;

use crate::config::OidcSettings;
use crate::session::PendingLogin;
use base64::Engine;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde_json::Value;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use crate::config::oidc::{ACCEPTABLE_ALGS, CALLBACK_PATH};
use error::{error_chain, reason_of};
pub use error::{IdentityError, LoginError, SubjectError};
pub const LOGIN_PATH: &str = "/.custos/login";
pub const LOGOUT_PATH: &str = "/.custos/logout";
pub const BACKCHANNEL_LOGOUT_PATH: &str = "/.custos/backchannel-logout";

/// After a failed discovery, logins fail fast for this long.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);
/// Keys are fetched again for an unknown `kid` at most this often.
const JWKS_REFRESH: Duration = Duration::from_secs(10);

/// What a validated ID token says about the user.
#[derive(Debug, Clone)]
pub struct Claims {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<u64>,
    /// The provider's session id and subject (back-channel logout).
    pub sid: Option<String>,
    pub idp_sub: Option<String>,
    /// For re-validating the session later.
    pub refresh_token: Option<crate::session::RefreshToken>,
}

/// The outcome of re-validating a session with the provider.
#[derive(Debug)]
pub enum Revalidation {
    /// The provider still accepts it; perhaps with a new (rotated) refresh token.
    Valid(Option<crate::session::RefreshToken>),
    /// A definite refusal (`invalid_grant`): the user is disabled or signed out there.
    Refused,
    /// The provider could not be asked: the session is left alone.
    Unavailable,
    /// The provider refused the client itself (`invalid_client`, …): a configuration
    /// problem, not the user's; the session is left alone and the error logged.
    Misconfigured(String),
}

/// A sign-in started: where to send the browser, and what to keep until it returns.
pub struct Started {
    pub auth_url: String,
    pub state: String,
    pub pending: PendingLogin,
}

struct Provider {
    metadata: ProviderMetadataWithLogout,
    jwks: CoreJsonWebKeySet,
}

pub struct Identity {
    pub cfg: OidcSettings,
    http: reqwest::Client,
    provider: RwLock<Option<Arc<Provider>>>,
    last_discovery_failure: Mutex<Option<Instant>>,
    last_jwks_fetch: Mutex<Option<Instant>>,
    /// The last reachability check: when, and whether the provider answered.
    reachable: Mutex<Option<(Instant, bool)>>,
    /// The provider's keys as the bearer-token checks use them, and when last fetched.
    bearer_jwks: RwLock<Option<Arc<bearer::Keys>>>,
    bearer_jwks_fetched: Mutex<Option<Instant>>,
    algs: Vec<CoreJwsSigningAlgorithm>,
}

fn alg(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as A;
    Some(match name {
        "RS256" => A::RsaSsaPkcs1V15Sha256,
        "RS384" => A::RsaSsaPkcs1V15Sha384,
        "RS512" => A::RsaSsaPkcs1V15Sha512,
        "PS256" => A::RsaSsaPssSha256,
        "PS384" => A::RsaSsaPssSha384,
        "PS512" => A::RsaSsaPssSha512,
        "ES256" => A::EcdsaP256Sha256,
        "ES384" => A::EcdsaP384Sha384,
        "EdDSA" => A::EdDsa,
        _ => return None,
    })
}

impl Identity {
    pub fn new(cfg: OidcSettings) -> Result<Identity, IdentityError> {
        let http = reqwest::Client::builder()
            // The OAuth 2.0 security BCP: never follow redirects on back-channel calls.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // Calls are rare (sign-ins) and come from several runtimes: no pooled
            // connection outlives the runtime that made it.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(IdentityError::HttpClient)?;
        let algs = cfg.id_token_algs.iter().filter_map(|a| alg(a)).collect();
        Ok(Identity {
            cfg,
            http,
            provider: RwLock::new(None),
            last_discovery_failure: Mutex::new(None),
            last_jwks_fetch: Mutex::new(None),
            reachable: Mutex::new(None),
            bearer_jwks: RwLock::new(None),
            bearer_jwks_fetched: Mutex::new(None),
            algs,
        })
    }

    fn cached(&self) -> Option<Arc<Provider>> {
        self.provider.read().ok().and_then(|p| p.clone())
    }

    /// The provider's metadata and keys, discovered once (and again after a failure,
    /// at most every [`DISCOVERY_RETRY`]).
    async fn provider(&self) -> Result<Arc<Provider>, LoginError> {
        if let Some(p) = self.cached() {
            return Ok(p);
        }
        if let Ok(last) = self.last_discovery_failure.lock() {
            if last.is_some_and(|t| t.elapsed() < DISCOVERY_RETRY) {
                return Err(LoginError::IdpUnavailable("the identity provider was unreachable a moment ago".into()));
            }
        }
        match self.discover().await {
            Ok(p) => {
                let p = Arc::new(p);
                if let Ok(mut slot) = self.provider.write() {
                    *slot = Some(p.clone());
                }
                tracing::info!(issuer = %self.cfg.issuer, "identity provider discovered");
                Ok(p)
            }
            Err(e) => {
                if let Ok(mut last) = self.last_discovery_failure.lock() {
                    *last = Some(Instant::now());
                }
                tracing::warn!(issuer = %self.cfg.issuer, error = %e, "identity provider discovery failed");
                Err(LoginError::IdpUnavailable(e.to_string()))
            }
        }
    }

    async fn discover(&self) -> Result<Provider, IdentityError> {
        let issuer = IssuerUrl::new(self.cfg.issuer.clone()).map_err(IdentityError::Issuer)?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| IdentityError::Discovery(error_chain(&e)))?;
        let jwks = metadata.jwks().clone();
        Ok(Provider { metadata, jwks })
    }

    /// Tries discovery in the background at start, so the first sign-in is quick.
    pub async fn warm_up(&self) {
        let _ = self.provider().await;
    }

    /// Whether the provider answers its discovery document now (for readiness, and
    /// before sending a browser there). Remembered for a second, so a flood of
    /// anonymous requests is not a flood at the provider.
    pub async fn probe(&self) -> bool {
        if let Ok(last) = self.reachable.lock() {
            if let Some((at, up)) = *last {
                if at.elapsed() < Duration::from_secs(1) {
                    return up;
                }
            }
        }
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
        let up = self.http.get(url).timeout(Duration::from_secs(2)).send().await.is_ok_and(|r| r.status().is_success());
        if let Ok(mut last) = self.reachable.lock() {
            *last = Some((Instant::now(), up));
        }
        up
    }

    fn client(&self, p: &Provider) -> Result<ConfiguredClient, LoginError> {
        let redirect = RedirectUrl::new(self.cfg.redirect_url.clone()).map_err(|e| LoginError::failed("config", e))?;
        let secret = String::from_utf8_lossy(self.cfg.client_secret.expose()).into_owned();
        Ok(CoreClient::from_provider_metadata(
            p.metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            Some(ClientSecret::new(secret)),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in: the authorization URL and the state to keep. `reauth`: the
    /// provider must authenticate the user again (`prompt=login`, and `max_age` with the
    /// given value), whatever session it has: after a timeout or logout (`0`: automatic
    /// logoff must mean something), and for a step-up (`oidc.mfa.step_up_max_age_secs`).
    pub async fn start(
        &self,
        binding: String,
        return_to: String,
        require_mfa: bool,
        reauth: Option<Duration>,
    ) -> Result<Started, LoginError> {
        let p = self.provider().await?;
        // A browser sent to a provider that is down sees a connection error; tell the
        // user here instead.
        if !self.probe().await {
            return Err(LoginError::IdpUnavailable("the identity provider does not answer".into()));
        }
        let client = self.client(&p)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for s in &self.cfg.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        req = req.set_pkce_challenge(challenge);
        // A sign-in that must be multi-factor asks for it.
        if require_mfa {
            for a in &self.cfg.mfa.step_up_acr_values {
                req = req.add_auth_context_value(AuthenticationContextClass::new(a.clone()));
            }
        }
        if let Some(max_age) = reauth {
            req = req.add_prompt(CoreAuthPrompt::Login).set_max_age(max_age);
        }
        let (url, state, nonce) = req.url();
        Ok(Started {
            auth_url: url.to_string(),
            state: state.secret().clone(),
            pending: PendingLogin {
                binding,
                pkce_verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
                return_to,
                require_mfa,
                reauth: reauth.map(|d| d.as_secs()),
                started: crate::session::now_secs(),
            },
        })
    }

    /// Finishes a sign-in: exchanges the code and validates the ID token.
    pub async fn finish(&self, code: &str, pending: &PendingLogin) -> Result<Claims, LoginError> {
        let p = self.provider().await?;
        let client = self.client(&p)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| LoginError::failed("config", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::Request(e) => LoginError::IdpUnavailable(error_chain(&e)),
                RequestTokenError::ServerResponse(r) => LoginError::failed("code_exchange", r.error()),
                // Parser messages may quote claim values: logged without them.
                RequestTokenError::Parse(e, _) => {
                    LoginError::failed("token_response", format!("unreadable token response at {}", e.path()))
                }
                RequestTokenError::Other(_) => LoginError::failed("token_response", "unexpected token response"),
            })?;
        let id_token =
            token.id_token().ok_or_else(|| LoginError::failed("id_token", "the token response has no id_token"))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let verified = match self.verify(&p, id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                // Perhaps the provider rotated its keys: fetch them again (bounded).
                let p = self.refresh_keys(&p).await?;
                self.verify(&p, id_token, &nonce)
            }
            other => other,
        };
        verified.map_err(|e| LoginError::failed(reason_of(&e), e))?;
        let mut claims = self.claims_of(id_token)?;
        claims.refresh_token = token.refresh_token().map(|r| crate::session::RefreshToken(r.secret().clone()));
        // Asked to authenticate again: an old authentication (an IdP that ignored
        // `prompt=login`/`max_age`) is not one.
        if let Some(max_age) = pending.reauth {
            let fresh_from = pending.started.saturating_sub(max_age + self.cfg.clock_skew.as_secs());
            match claims.auth_time {
                Some(t) if t >= fresh_from => {}
                Some(_) => {
                    return Err(LoginError::failed("auth_time", "the provider did not authenticate the user again"))
                }
                None => {
                    return Err(LoginError::failed("auth_time", "no auth_time in the ID token after max_age was sent"))
                }
            }
        }
        Ok(claims)
    }

    fn verify(&self, p: &Provider, t: &CoreIdToken, nonce: &Nonce) -> Result<(), ClaimsVerificationError> {
        // RFC 8725 §3.1: the key the token names verifies one algorithm only. (The
        // crate checks a key's own `alg`; a key without one is pinned here the way
        // bearer tokens pin it, so the token cannot choose.)
        if let Some(reason) = self.wrong_key_algorithm(p, t) {
            return Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::DisallowedAlg(
                reason,
            )));
        }
        let skew = self.cfg.clock_skew;
        let max_age = self.cfg.login_timeout + skew;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.cfg.client_id.clone()),
            p.metadata.issuer().clone(),
            p.jwks.clone(),
        )
        .set_allowed_algs(self.algs.clone())
        .set_issue_time_verifier_fn(move |iat| {
            let now = chrono_now();
            let iat = iat.timestamp();
            if iat > now + skew.as_secs() as i64 {
                Err(format!("issued in the future ({iat})"))
            } else if iat < now - max_age.as_secs() as i64 {
                Err(format!("issued too long ago ({iat})"))
            } else {
                Ok(())
            }
        });
        let claims = t.claims(&verifier, nonce)?;
        // azp (OpenID Connect Core 3.1.3.7, 4-5): when present it must be us, and with
        // more than one audience it must be present.
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != self.cfg.client_id => {
                return Err(ClaimsVerificationError::InvalidAudience(format!(
                    "azp `{}` is not this client",
                    azp.as_str()
                )))
            }
            None if claims.audiences().len() > 1 => {
                return Err(ClaimsVerificationError::InvalidAudience("several audiences and no azp".into()))
            }
            _ => {}
        }
        Ok(())
    }

    /// Why the key an ID token names does not verify the token's algorithm, if it does
    /// not. A token naming no known key is left to the crate (which refetches).
    fn wrong_key_algorithm(&self, p: &Provider, t: &CoreIdToken) -> Option<String> {
        let jwt = t.to_string();
        let header: Value = jwt
            .split('.')
            .next()
            .and_then(|h| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        let alg = header.get("alg").and_then(Value::as_str)?;
        let kid = header.get("kid").and_then(Value::as_str);
        let keys = serde_json::to_value(&p.jwks).ok()?;
        let named: Vec<&Value> = keys
            .get("keys")
            .and_then(Value::as_array)?
            .iter()
            .filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid)
            .collect();
        let fits = |k: &&Value| bearer::key_algorithm(k, &self.cfg.id_token_algs) == Some(alg);
        (!named.is_empty() && !named.iter().any(fits))
            .then(|| format!("no key{} verifies {alg}", kid.map(|k| format!(" `{k}`")).unwrap_or_default()))
    }

    async fn refresh_keys(&self, p: &Arc<Provider>) -> Result<Arc<Provider>, LoginError> {
        {
            let mut last = self.last_jwks_fetch.lock().map_err(|_| LoginError::failed("internal", "lock"))?;
            if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH) {
                return Ok(p.clone());
            }
            *last = Some(Instant::now());
        }
        let jwks = CoreJsonWebKeySet::fetch_async(p.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| LoginError::IdpUnavailable(error_chain(&e)))?;
        let fresh = Arc::new(Provider { metadata: p.metadata.clone(), jwks });
        if let Ok(mut slot) = self.provider.write() {
            *slot = Some(fresh.clone());
        }
        tracing::info!("identity provider keys fetched again for an unknown key id");
        Ok(fresh)
    }

    /// The claims of a verified token, read from its payload so that any claim can name
    /// the subject or carry the groups.
    fn claims_of(&self, t: &CoreIdToken) -> Result<Claims, LoginError> {
        let jwt = t.to_string();
        let payload = jwt.split('.').nth(1).ok_or_else(|| LoginError::failed("id_token", "not a JWS"))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| LoginError::failed("id_token", e))?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|_| LoginError::failed("id_token", "the payload is not JSON"))?;
        if let Some(nbf) = v.get("nbf").and_then(Value::as_f64) {
            if nbf > (chrono_now() + self.cfg.clock_skew.as_secs() as i64) as f64 {
                return Err(LoginError::failed("not_yet_valid", "nbf is in the future"));
            }
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let subject = self.subject_of(&v).map_err(|m| LoginError::failed("subject_claim", m))?;
        let strings = |k: &str| match v.get(k) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        Ok(Claims {
            subject,
            email: text("email"),
            name: text("name"),
            groups: strings(&self.cfg.groups_claim),
            amr: strings("amr"),
            acr: text("acr"),
            auth_time: v.get("auth_time").and_then(Value::as_u64),
            sid: text("sid"),
            idp_sub: text("sub"),
            refresh_token: None,
        })
    }

    /// Asks the provider whether a session still stands: a refresh-token grant.
    pub async fn revalidate(&self, rt: &crate::session::RefreshToken) -> Revalidation {
        let Ok(p) = self.provider().await else { return Revalidation::Unavailable };
        let Ok(client) = self.client(&p) else { return Revalidation::Unavailable };
        let token = openidconnect::RefreshToken::new(rt.0.clone());
        let Ok(req) = client.exchange_refresh_token(&token) else {
            return Revalidation::Unavailable;
        };
        match req.request_async(&self.http).await {
            Ok(t) => Revalidation::Valid(t.refresh_token().map(|r| crate::session::RefreshToken(r.secret().clone()))),
            Err(RequestTokenError::ServerResponse(r)) => match r.error().as_ref() {
                "invalid_grant" => Revalidation::Refused,
                other => Revalidation::Misconfigured(other.to_string()),
            },
            Err(_) => Revalidation::Unavailable,
        }
    }

    /// The user's name from verified claims (ID token or access token alike):
    /// `oidc.subject_claim`, never another claim in its place; an e-mail address only
    /// when the provider vouches for it (`email_verified`).
    pub(crate) fn subject_of(&self, v: &Value) -> Result<String, SubjectError> {
        if self.cfg.subject_claim == "email" && v.get("email_verified") != Some(&Value::Bool(true)) {
            return Err(SubjectError::EmailNotVerified);
        }
        match v.get(&self.cfg.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(SubjectError::NoClaim(self.cfg.subject_claim.clone())),
        }
    }

    /// The provider's logout URL (RP-Initiated Logout), when it offers one and was
    /// discovered; never waits for the provider.
    pub fn logout_url(&self) -> Option<String> {
        let p = self.cached()?;
        let end = p.metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut req = LogoutRequest::from(end).set_client_id(ClientId::new(self.cfg.client_id.clone()));
        if let Some(u) = &self.cfg.post_logout_redirect_url {
            if let Ok(u) = PostLogoutRedirectUrl::new(u.clone()) {
                req = req.set_post_logout_redirect_uri(u);
            }
        }
        Some(req.http_get_url().to_string())
    }
}

type ConfiguredClient = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn chrono_now() -> i64 {
    crate::session::now_secs() as i64
}

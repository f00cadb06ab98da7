//! Bearer tokens for APIs and CLIs: OAuth 2.0 access tokens in JWT form (RFC 9068,
//! `typ: at+jwt`) for the configured audience, checked with the `jsonwebtoken` crate
//! against the provider's keys. ID tokens (other `typ`, other audience) are refused.
//! Each refusal has its own reason for the audit trail; the client only hears
//! `invalid_token`. A verified token is remembered per worker thread until it expires,
//! so the signature is checked once per token, not once per request.

use super::Identity;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What a verified access token says.
#[derive(Debug, Clone)]
pub struct BearerClaims {
    pub subject: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<u64>,
    /// Unix seconds.
    pub exp: u64,
    /// The same, as the request's user (made once per token).
    pub session: Arc<crate::session::Session>,
    /// SHA-256 (hex) of the token: what the identity assertion is remembered under.
    pub token_hash: String,
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// Refused; the reason goes to the audit record (`alg_none`, `alg_hmac`, `typ`, …).
    Invalid(&'static str),
    /// The provider's keys cannot be fetched (and none are known).
    IdpUnavailable,
}

const CACHE_MAX: usize = 10_000;

thread_local! {
    /// sha256(token) → claims, per worker thread.
    static VERIFIED: RefCell<HashMap<[u8; 32], Arc<BearerClaims>>> = RefCell::new(HashMap::new());
}

fn alg_of(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

impl Identity {
    /// Verifies `Authorization: Bearer <token>`.
    pub async fn verify_bearer(&self, token: &str) -> Result<Arc<BearerClaims>, BearerError> {
        let Some(audience) = self.cfg.api_audience.as_deref() else {
            return Err(BearerError::Invalid("bearer_disabled"));
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let now = crate::session::now_secs();
        if let Some(c) = VERIFIED.with(|v| v.borrow().get(&key).cloned()) {
            // The same 60 s of clock leeway as the first check.
            if c.exp + 60 > now {
                return Ok(c);
            }
            VERIFIED.with(|v| v.borrow_mut().remove(&key));
            return Err(BearerError::Invalid("expired"));
        }

        // The header, read before any key is chosen.
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(BearerError::Invalid("malformed"));
        };
        let header: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(BearerError::Invalid("malformed"))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(BearerError::Invalid("alg_none"));
        }
        if alg_name.starts_with("HS") {
            return Err(BearerError::Invalid("alg_hmac"));
        }
        let alg = match alg_of(alg_name) {
            Some(a) if self.cfg.id_token_algs.iter().any(|x| x == alg_name) => a,
            _ => return Err(BearerError::Invalid("algorithm")),
        };
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(BearerError::Invalid("typ"));
        }
        let kid = header.get("kid").and_then(Value::as_str);

        let mut keys = self.bearer_keys(false).await?;
        let mut jwk = find(&keys, kid, alg);
        if jwk.is_none() {
            // An unknown key: perhaps the provider rotated (bounded refetch).
            keys = self.bearer_keys(true).await?;
            jwk = find(&keys, kid, alg);
        }
        let decoding = jwk.and_then(|j| DecodingKey::from_jwk(j).ok()).ok_or(BearerError::Invalid("unknown_key"))?;

        let mut v = Validation::new(alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = 60;
        let data = jsonwebtoken::decode::<Value>(token, &decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            BearerError::Invalid(match e.kind() {
                K::ExpiredSignature => "expired",
                K::ImmatureSignature => "not_yet_valid",
                K::InvalidIssuer => "issuer",
                K::InvalidAudience => "audience",
                K::InvalidSignature => "signature",
                K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm",
                K::MissingRequiredClaim(_) => "missing_claim",
                _ => "token",
            })
        })?;
        let c = data.claims;
        let strings = |k: &str| match c.get(k) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let subject = self.subject_of(&c).map_err(|_| BearerError::Invalid("subject_claim"))?;
        let email = c.get("email").and_then(Value::as_str).map(str::to_string);
        let (groups, amr) = (strings(&self.cfg.groups_claim), strings("amr"));
        let acr = c.get("acr").and_then(Value::as_str).map(str::to_string);
        let auth_time = c.get("auth_time").and_then(Value::as_u64);
        let session = Arc::new(crate::session::Session {
            subject: subject.clone(),
            email: email.clone(),
            name: None,
            groups: groups.clone(),
            amr: amr.clone(),
            acr: acr.clone(),
            auth_time,
            created: 0,
            last_seen: 0,
            client: None,
            sid: None,
            idp_sub: None,
            validated: 0,
            breakglass: None,
            sealed: false,
        });
        let claims = Arc::new(BearerClaims {
            subject,
            email,
            groups,
            amr,
            acr,
            auth_time,
            exp: c.get("exp").and_then(Value::as_u64).unwrap_or(now),
            session,
            token_hash: crate::session::hex_lower(&key),
        });
        VERIFIED.with(|v| {
            let mut v = v.borrow_mut();
            if v.len() >= CACHE_MAX {
                v.retain(|_, c| c.exp > now);
                if v.len() >= CACHE_MAX {
                    v.clear();
                }
            }
            v.insert(key, claims.clone());
        });
        Ok(claims)
    }

    /// The provider's keys for access tokens; fetched on first use and again (`refresh`)
    /// at most every `jwks_min_refresh`.
    async fn bearer_keys(&self, refresh: bool) -> Result<Arc<JwkSet>, BearerError> {
        let cached = self.bearer_jwks.read().ok().and_then(|k| k.clone());
        let last = self.bearer_jwks_fetched.lock().ok().and_then(|t| *t);
        let age = last.map(|t| t.elapsed());
        // Kept for KEYS_LIFETIME, so a key the provider withdraws stops working; fetched
        // again for an unknown kid at most every jwks_min_refresh; after a failed fetch
        // with nothing cached, not again for a moment (no fetch per hostile request).
        match (&cached, age) {
            (Some(k), Some(a)) if !refresh && a < KEYS_LIFETIME => return Ok(k.clone()),
            (Some(k), Some(a)) if refresh && a < self.cfg.jwks_min_refresh => return Ok(k.clone()),
            (None, Some(a)) if a < std::time::Duration::from_secs(2) => return Err(BearerError::IdpUnavailable),
            _ => {}
        }
        if let Ok(mut t) = self.bearer_jwks_fetched.lock() {
            *t = Some(Instant::now());
        }
        let fetched = async {
            let p = self.provider().await.ok()?;
            let r = self.http.get(p.metadata.jwks_uri().url().as_str()).send().await.ok()?;
            let body = r.error_for_status().ok()?.bytes().await.ok()?;
            serde_json::from_slice::<JwkSet>(&body).ok()
        }
        .await;
        match fetched {
            Some(set) => {
                let set = Arc::new(set);
                if let Ok(mut slot) = self.bearer_jwks.write() {
                    *slot = Some(set.clone());
                }
                if refresh {
                    tracing::info!("provider keys fetched again for an unknown key id");
                }
                Ok(set)
            }
            None => cached.ok_or(BearerError::IdpUnavailable),
        }
    }
}

/// How long the provider's keys are used before they are fetched again.
const KEYS_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

fn find<'a>(set: &'a JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let fits = |j: &jsonwebtoken::jwk::Jwk| {
        matches!(
            (&j.algorithm, alg),
            (
                P::RSA(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (P::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384)
                | (P::OctetKeyPair(_), Algorithm::EdDSA)
        )
    };
    let mut candidates = set.keys.iter().filter(|j| fits(j));
    match kid {
        Some(k) => candidates.find(|j| j.common.key_id.as_deref() == Some(k)),
        None => {
            let first = candidates.next();
            // Without a kid, only an unambiguous key is used.
            if candidates.next().is_some() {
                None
            } else {
                first
            }
        }
    }
}

/// What a valid back-channel logout token names.
#[derive(Debug, Clone)]
pub struct LogoutToken {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
}

const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

impl Identity {
    /// OpenID Connect Back-Channel Logout 1.0, 2.6: a `logout_token` signed by the
    /// provider, for this client, recent, with the logout event, `sid` and/or `sub`, a
    /// `jti`, and no `nonce`. (Replay of the `jti` is checked by the caller, in Redis.)
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutToken, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed")?;
        let alg_name = format!("{:?}", header.alg);
        if alg_name.starts_with("HS") || !self.cfg.id_token_algs.contains(&alg_name) {
            return Err("algorithm");
        }
        if header.typ.as_deref().is_some_and(|t| !matches!(t.to_ascii_lowercase().as_str(), "logout+jwt" | "jwt")) {
            return Err("typ");
        }
        let mut keys = self.bearer_keys(false).await.map_err(|_| "idp_unavailable")?;
        let mut jwk = find(&keys, header.kid.as_deref(), header.alg);
        if jwk.is_none() {
            keys = self.bearer_keys(true).await.map_err(|_| "idp_unavailable")?;
            jwk = find(&keys, header.kid.as_deref(), header.alg);
        }
        let key = jwk.and_then(|j| DecodingKey::from_jwk(j).ok()).ok_or("unknown_key")?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[self.cfg.client_id.as_str()]);
        v.set_required_spec_claims(&["iss", "aud", "iat"]);
        v.validate_exp = false;
        v.leeway = 60;
        let c = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidIssuer => "issuer",
                    K::InvalidAudience => "audience",
                    K::InvalidSignature => "signature",
                    _ => "token",
                }
            })?
            .claims;
        let now = crate::session::now_secs() as i64;
        let iat = c.get("iat").and_then(Value::as_i64).ok_or("iat")?;
        if iat > now + 60 || iat < now - 300 {
            return Err("iat");
        }
        if c.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp + 60 < now) {
            return Err("expired");
        }
        if !c.get("events").and_then(|e| e.get(BACKCHANNEL_EVENT)).is_some_and(Value::is_object) {
            return Err("events");
        }
        if c.get("nonce").is_some() {
            return Err("nonce");
        }
        let text = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let (sid, sub) = (text("sid"), text("sub"));
        if sid.is_none() && sub.is_none() {
            return Err("sid_or_sub");
        }
        let jti = text("jti").ok_or("jti")?;
        Ok(LogoutToken { sid, sub, jti })
    }
}

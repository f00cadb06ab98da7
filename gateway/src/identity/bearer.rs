//! Bearer tokens for APIs and CLIs: OAuth 2.0 access tokens in JWT form (RFC 9068,
//! `typ: at+jwt`) for the configured audience, checked with the `jsonwebtoken` crate
//! against the provider's keys. ID tokens (other `typ`, other audience) are refused.
//! Each refusal has its own reason for the audit trail; the client only hears
//! `invalid_token`. A verified token is remembered per worker thread until it expires,
//! so the signature is checked once per token, not once per request.
//!
//! Each of the provider's keys verifies one algorithm only (RFC 8725 §3.1), so a token
//! cannot choose how its signature is read ([`key_algorithm`]): an `RS256` key does not
//! verify a `PS256` token. Clock leeway for `exp`, `nbf` and `iat` is `oidc.clock_skew_secs`.

use super::Identity;
use crate::audit::Code;
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
    /// Refused; the audit record's reason (`bearer_alg_none`, `bearer_alg_hmac`, …).
    Invalid(Code),
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
            return Err(BearerError::Invalid(Code::BearerBearerDisabled));
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let now = crate::session::now_secs();
        let leeway = self.cfg.clock_skew.as_secs();
        if let Some(c) = VERIFIED.with(|v| v.borrow().get(&key).cloned()) {
            // The same clock leeway as the first check.
            if c.exp + leeway > now {
                return Ok(c);
            }
            VERIFIED.with(|v| v.borrow_mut().remove(&key));
            return Err(BearerError::Invalid(Code::BearerExpired));
        }

        // The header, read before any key is chosen.
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(BearerError::Invalid(Code::BearerMalformed));
        };
        let header: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(BearerError::Invalid(Code::BearerMalformed))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(BearerError::Invalid(Code::BearerAlgNone));
        }
        if alg_name.starts_with("HS") {
            return Err(BearerError::Invalid(Code::BearerAlgHmac));
        }
        let alg = match alg_of(alg_name) {
            Some(a) if self.cfg.id_token_algs.iter().any(|x| x == alg_name) => a,
            _ => return Err(BearerError::Invalid(Code::BearerAlgorithm)),
        };
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(BearerError::Invalid(Code::BearerTyp));
        }
        let kid = header.get("kid").and_then(Value::as_str);

        let mut keys = self.bearer_keys(false).await?;
        let mut jwk = find(&keys, kid, alg_name);
        if jwk.is_err() {
            // An unknown key: perhaps the provider rotated (bounded refetch).
            keys = self.bearer_keys(true).await?;
            jwk = find(&keys, kid, alg_name);
        }
        let decoding = match jwk {
            Ok(j) => DecodingKey::from_jwk(j).map_err(|_| BearerError::Invalid(Code::BearerUnknownKey))?,
            Err(miss) => return Err(BearerError::Invalid(miss.bearer_code())),
        };

        let mut v = Validation::new(alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = leeway;
        let data = jsonwebtoken::decode::<Value>(token, &decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            BearerError::Invalid(match e.kind() {
                K::ExpiredSignature => Code::BearerExpired,
                K::ImmatureSignature => Code::BearerNotYetValid,
                K::InvalidIssuer => Code::BearerIssuer,
                K::InvalidAudience => Code::BearerAudience,
                K::InvalidSignature => Code::BearerSignature,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => Code::BearerAlgorithm,
                K::MissingRequiredClaim(_) => Code::BearerMissingClaim,
                _ => Code::BearerToken,
            })
        })?;
        let c = data.claims;
        // jsonwebtoken does not read `iat`: a token issued in the future (beyond the
        // leeway) comes from a wrong clock or a forged time, and is refused.
        match c.get("iat") {
            None => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|iat| iat <= (now + leeway) as f64) => {}
            Some(Value::Number(_)) => return Err(BearerError::Invalid(Code::BearerIssuedInFuture)),
            Some(_) => return Err(BearerError::Invalid(Code::BearerMalformed)),
        }
        let strings = |k: &str| match c.get(k) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let subject = self.subject_of(&c).map_err(|_| BearerError::Invalid(Code::BearerSubjectClaim))?;
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
            db: None,
            lifetime: None,
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
    async fn bearer_keys(&self, refresh: bool) -> Result<Arc<Keys>, BearerError> {
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
                let set = Arc::new(Keys::new(set, &self.cfg.id_token_algs));
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

/// The provider's keys, each with the one algorithm it verifies (worked out once per
/// fetch).
pub(crate) struct Keys {
    set: JwkSet,
    algs: Vec<Option<&'static str>>,
}

impl Keys {
    fn new(set: JwkSet, allowed: &[String]) -> Keys {
        let algs =
            set.keys.iter().map(|j| serde_json::to_value(j).ok().and_then(|v| key_algorithm(&v, allowed))).collect();
        Keys { set, algs }
    }
}

/// The one algorithm a JWK (as JSON) verifies, if any (RFC 8725 §3.1: one key, one
/// algorithm). A key for encryption (`use` other than `sig`) verifies nothing. A key that
/// names its `alg` verifies that one, when it fits the key and is allowed. A key without
/// `alg` is pinned by its type: an EC key to its curve's algorithm (P-256: ES256, P-384:
/// ES384), an Ed25519 key to EdDSA, an RSA key to the first RSA algorithm (RS* or PS*)
/// of `oidc.id_token_algs`. So with the default list an RSA key without `alg` verifies
/// RS256 only; a provider that signs PS256 with such keys is allowed by listing PS256
/// before RS256.
pub(crate) fn key_algorithm(jwk: &Value, allowed: &[String]) -> Option<&'static str> {
    let text = |k: &str| jwk.get(k).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let (kty, crv) = (text("kty")?, text("crv"));
    let fits = |a: &str| match kty {
        "RSA" => a.starts_with("RS") || a.starts_with("PS"),
        "EC" => matches!((crv, a), (Some("P-256"), "ES256") | (Some("P-384"), "ES384")),
        "OKP" => crv == Some("Ed25519") && a == "EdDSA",
        _ => false,
    };
    let alg = match text("alg") {
        Some(a) => a,
        None => allowed.iter().map(String::as_str).find(|a| fits(a))?,
    };
    let known = super::ACCEPTABLE_ALGS.iter().copied().find(|x| *x == alg)?;
    (fits(known) && allowed.iter().any(|a| a == known)).then_some(known)
}

/// Why no key verifies a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyMiss {
    /// No key of that `kid` (or, without a `kid`, no single key for the algorithm).
    Unknown,
    /// The key is there but verifies another algorithm.
    OtherAlgorithm,
}

impl KeyMiss {
    fn code(self) -> Code {
        match self {
            KeyMiss::Unknown => Code::UnknownKey,
            KeyMiss::OtherAlgorithm => Code::KeyAlgorithm,
        }
    }

    fn bearer_code(self) -> Code {
        match self {
            KeyMiss::Unknown => Code::BearerUnknownKey,
            KeyMiss::OtherAlgorithm => Code::BearerKeyAlgorithm,
        }
    }
}

/// The key for a token's `kid` and `alg`, or why there is none.
fn find<'a>(keys: &'a Keys, kid: Option<&str>, alg: &str) -> Result<&'a jsonwebtoken::jwk::Jwk, KeyMiss> {
    let named: Vec<usize> = match kid {
        Some(k) => (0..keys.set.keys.len()).filter(|&i| keys.set.keys[i].common.key_id.as_deref() == Some(k)).collect(),
        None => (0..keys.set.keys.len()).collect(),
    };
    let mut fitting = named.iter().copied().filter(|&i| keys.algs[i] == Some(alg));
    match (fitting.next(), fitting.next()) {
        (Some(i), None) => Ok(&keys.set.keys[i]),
        // Without a kid, only an unambiguous key is used.
        (Some(_), Some(_)) => Err(KeyMiss::Unknown),
        (None, _) if named.is_empty() => Err(KeyMiss::Unknown),
        (None, _) => Err(KeyMiss::OtherAlgorithm),
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
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutToken, Code> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Code::Malformed)?;
        let alg_name = format!("{:?}", header.alg);
        if alg_name.starts_with("HS") || !self.cfg.id_token_algs.contains(&alg_name) {
            return Err(Code::Algorithm);
        }
        if header.typ.as_deref().is_some_and(|t| !matches!(t.to_ascii_lowercase().as_str(), "logout+jwt" | "jwt")) {
            return Err(Code::Typ);
        }
        let mut keys = self.bearer_keys(false).await.map_err(|_| Code::IdpUnavailable)?;
        let mut jwk = find(&keys, header.kid.as_deref(), &alg_name);
        if jwk.is_err() {
            keys = self.bearer_keys(true).await.map_err(|_| Code::IdpUnavailable)?;
            jwk = find(&keys, header.kid.as_deref(), &alg_name);
        }
        let key = DecodingKey::from_jwk(jwk.map_err(KeyMiss::code)?).map_err(|_| Code::UnknownKey)?;
        let leeway = self.cfg.clock_skew.as_secs() as i64;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&[self.cfg.client_id.as_str()]);
        v.set_required_spec_claims(&["iss", "aud", "iat"]);
        v.validate_exp = false;
        v.leeway = leeway as u64;
        let c = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidIssuer => Code::Issuer,
                    K::InvalidAudience => Code::Audience,
                    K::InvalidSignature => Code::Signature,
                    _ => Code::Token,
                }
            })?
            .claims;
        let now = crate::session::now_secs() as i64;
        let iat = c.get("iat").and_then(Value::as_i64).ok_or(Code::Iat)?;
        if iat > now + leeway || iat < now - 300 {
            return Err(Code::Iat);
        }
        if c.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp + leeway < now) {
            return Err(Code::Expired);
        }
        if !c.get("events").and_then(|e| e.get(BACKCHANNEL_EVENT)).is_some_and(Value::is_object) {
            return Err(Code::Events);
        }
        if c.get("nonce").is_some() {
            return Err(Code::Nonce);
        }
        let text = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let (sid, sub) = (text("sid"), text("sub"));
        if sid.is_none() && sub.is_none() {
            return Err(Code::SidOrSub);
        }
        let jti = text("jti").ok_or(Code::Jti)?;
        Ok(LogoutToken { sid, sub, jti })
    }
}

#[cfg(test)]
mod tests {
    use super::key_algorithm;
    use serde_json::json;

    #[test]
    fn each_key_verifies_one_algorithm() {
        let default: Vec<String> = ["RS256", "ES256", "PS256"].iter().map(|s| s.to_string()).collect();
        let cases = [
            // A key that names its algorithm verifies that one only.
            (json!({ "kty": "RSA", "alg": "RS256" }), Some("RS256")),
            (json!({ "kty": "RSA", "alg": "PS256" }), Some("PS256")),
            // Not a signing key, not an allowed algorithm, not the key's type.
            (json!({ "kty": "RSA", "alg": "RS256", "use": "enc" }), None),
            (json!({ "kty": "RSA", "alg": "RS512" }), None),
            (json!({ "kty": "EC", "crv": "P-256", "alg": "RS256" }), None),
            (json!({ "kty": "RSA", "alg": "HS256" }), None),
            // Without `alg`: by the key's type, RSA to the first RSA algorithm allowed.
            (json!({ "kty": "RSA" }), Some("RS256")),
            (json!({ "kty": "EC", "crv": "P-256" }), Some("ES256")),
            (json!({ "kty": "EC", "crv": "P-384" }), None),
            (json!({ "kty": "OKP", "crv": "Ed25519" }), None),
            (json!({ "kty": "oct" }), None),
        ];
        for (jwk, want) in cases {
            assert_eq!(key_algorithm(&jwk, &default), want, "{jwk}");
        }
        let pss_first: Vec<String> = ["PS256", "RS256", "ES384", "EdDSA"].iter().map(|s| s.to_string()).collect();
        assert_eq!(key_algorithm(&json!({ "kty": "RSA" }), &pss_first), Some("PS256"));
        assert_eq!(key_algorithm(&json!({ "kty": "EC", "crv": "P-384" }), &pss_first), Some("ES384"));
        assert_eq!(key_algorithm(&json!({ "kty": "OKP", "crv": "Ed25519" }), &pss_first), Some("EdDSA"));
    }
}

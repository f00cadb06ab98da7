//! The identity the gateway asserts to upstreams: a short-lived JWT (EdDSA or ES256,
//! the gateway's own key) with `sub`, `email`, `groups`, `amr`, the session id's hash
//! (`sid`) and `aud` = the route's name. Upstreams verify it with the keys at
//! `/.custos/jwks.json`; a client cannot send one of its own (every `x-custos-*` header
//! is stripped on the way in). Assertions are made once per user and route and reused
//! until half their life is over, so signing is not per request.

use crate::config::secret::Secret;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// The key kinds an assertion is signed with (parsed where the config checks it).
use crate::config::upstream_identity::SigningKey as Key;

/// What an assertion says about the caller.
pub struct Subject<'a> {
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub groups: &'a [String],
    pub amr: &'a [String],
    /// SHA-256 of the session id (bearer requests: of the token): what the assertion is
    /// remembered under, so two credentials never share one.
    pub sid: &'a str,
}

pub struct Asserter {
    key: Key,
    kid: String,
    alg: &'static str,
    issuer: String,
    ttl: Duration,
    max_groups: usize,
    jwks: String,
    rng: SystemRandom,
}

/// sid → [(subject, route, assertion, unix seconds after which a new one is made)]:
/// looked up by `&str`, without allocating.
type Made = HashMap<String, Vec<(String, String, http::HeaderValue, u64)>>;

thread_local! {
    static MADE: RefCell<Made> = RefCell::new(HashMap::new());
}

const CACHE_MAX: usize = 10_000;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Asserter {
    /// From a PKCS#8 PEM key (Ed25519 or P-256), or a key made now when `key` is `None`
    /// (fine for one instance; several instances need the same key file).
    pub fn new(key: Option<&Secret>, issuer: &str, ttl: Duration, max_groups: usize) -> Result<Asserter, String> {
        let rng = SystemRandom::new();
        let der = match key {
            Some(pem) => Key::pkcs8_der(pem)?,
            None => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "cannot make a key")?.as_ref().to_vec(),
        };
        let key = Key::from_pkcs8(&der, &rng)?;
        let (alg, jwk) = match &key {
            Key::Ed25519(k) => {
                let x = b64(k.public_key().as_ref());
                ("EdDSA", json!({ "kty": "OKP", "crv": "Ed25519", "x": x }))
            }
            Key::P256(k) => {
                let p = k.public_key().as_ref();
                let (x, y) = (b64(&p[1..33]), b64(&p[33..65]));
                ("ES256", json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }))
            }
        };
        // RFC 7638 thumbprint as the key id: the same key gives the same kid everywhere.
        let canonical = match &jwk["kty"] {
            v if v == "OKP" => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, jwk["x"].as_str().unwrap_or("")),
            _ => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().unwrap_or(""),
                jwk["y"].as_str().unwrap_or("")
            ),
        };
        let kid = b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref());
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg);
        jwk["use"] = json!("sig");
        let jwks = json!({ "keys": [jwk] }).to_string();
        Ok(Asserter { key, kid, alg, issuer: issuer.to_string(), ttl, max_groups, jwks, rng })
    }

    /// The JWKS document served at `/.custos/jwks.json`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion for `who` calling `route`, made or reused.
    pub fn assertion(&self, who: &Subject<'_>, route: &str) -> Option<http::HeaderValue> {
        let now = crate::session::now_secs();
        let found = MADE.with(|m| {
            m.borrow().get(who.sid).and_then(|v| {
                v.iter()
                    .find(|(sub, r, _, renew)| sub == who.subject && r == route && *renew > now)
                    .map(|(_, _, v, _)| v.clone())
            })
        });
        if let Some(v) = found {
            return Some(v);
        }
        let jwt = self.sign(who, route, now)?;
        let value = http::HeaderValue::from_str(&jwt).ok()?;
        MADE.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= CACHE_MAX {
                m.retain(|_, v| v.iter().any(|e| e.3 > now));
                if m.len() >= CACHE_MAX {
                    m.clear();
                }
            }
            let list = m.entry(who.sid.to_string()).or_default();
            list.retain(|(sub, r, _, renew)| *renew > now && !(sub == who.subject && r == route));
            list.push((who.subject.to_string(), route.to_string(), value.clone(), now + self.ttl.as_secs() / 2));
        });
        Some(value)
    }

    fn sign(&self, who: &Subject<'_>, route: &str, now: u64) -> Option<String> {
        let truncated = who.groups.len() > self.max_groups;
        let groups = &who.groups[..who.groups.len().min(self.max_groups)];
        let mut claims = json!({
            "iss": self.issuer,
            "aud": route,
            "sub": who.subject,
            "groups": groups,
            "amr": who.amr,
            "sid": who.sid,
            "iat": now,
            "exp": now + self.ttl.as_secs(),
        });
        if let Some(e) = who.email {
            claims["email"] = json!(e);
        }
        if truncated {
            claims["groups_truncated"] = json!(true);
        }
        let header = json!({ "alg": self.alg, "typ": "JWT", "kid": self.kid });
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = match &self.key {
            Key::Ed25519(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            Key::P256(k) => k.sign(&self.rng, input.as_bytes()).ok()?.as_ref().to_vec(),
        };
        Some(format!("{input}.{}", b64(&sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_capped_and_assertions_reused() {
        let a = Asserter::new(None, "https://gw.example", Duration::from_secs(60), 2).unwrap();
        let groups: Vec<String> = (0..300).map(|i| format!("group-{i}")).collect();
        let who = Subject { subject: "alice", email: None, groups: &groups, amr: &[], sid: "s1" };
        let v = a.assertion(&who, "records").unwrap();
        let payload = v.to_str().unwrap().split('.').nth(1).unwrap().to_string();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["groups"], json!(["group-0", "group-1"]));
        assert_eq!(claims["groups_truncated"], true);
        assert!(v.len() < 1024, "{} bytes", v.len());
        assert_eq!(a.assertion(&who, "records").unwrap(), v, "signed again within its life");
        assert_ne!(a.assertion(&who, "other").unwrap(), v, "one assertion served two audiences");
    }
}

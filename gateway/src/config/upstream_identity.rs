//! `[upstream_identity]`: the signed assertion sent to upstreams (its header, lifetime,
//! and the key it is signed with, parsed here so a bad key is refused at load).

use super::secret::Secret;
use super::{schema, ConfigError, Validator};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct UpstreamIdentitySettings {
    pub signing_key: Option<Secret>,
    pub header: http::HeaderName,
    pub ttl: Duration,
    pub max_groups: usize,
}

/// An assertion signing key: Ed25519 (EdDSA) or P-256 (ES256).
pub enum SigningKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl SigningKey {
    /// The PKCS#8 DER inside a PEM `BEGIN PRIVATE KEY` block.
    pub fn pkcs8_der(pem: &Secret) -> Result<Vec<u8>, &'static str> {
        let mut reader = pem.expose();
        match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(rustls_pemfile::Item::Pkcs8Key(k))) => Ok(k.secret_pkcs8_der().to_vec()),
            _ => Err("not a PKCS#8 PEM private key (\"BEGIN PRIVATE KEY\")"),
        }
    }

    /// The key in PKCS#8 DER, if it is one of the two kinds.
    pub fn from_pkcs8(der: &[u8], rng: &SystemRandom) -> Result<SigningKey, &'static str> {
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            Ok(SigningKey::Ed25519(k))
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, rng) {
            Ok(SigningKey::P256(k))
        } else {
            Err("the key is neither Ed25519 nor P-256")
        }
    }
}

impl Validator<'_> {
    pub(super) fn upstream_identity(
        &self,
        u: &schema::UpstreamIdentity,
    ) -> Result<Option<UpstreamIdentitySettings>, ConfigError> {
        if !u.enabled {
            return Ok(None);
        }
        let header = http::HeaderName::from_bytes(u.header.trim().as_bytes())
            .ok()
            .filter(|h| h.as_str().starts_with(super::headers::IDENTITY_NAMESPACE))
            .ok_or_else(|| self.err("upstream_identity.header", "must be a header name starting with `x-custos-`"))?;
        if u.ttl_secs < 2 {
            return Err(self.err("upstream_identity.ttl_secs", "must be at least 2"));
        }
        if u.max_groups == 0 {
            return Err(self.err("upstream_identity.max_groups", "must be at least 1"));
        }
        self.at_most("upstream_identity.max_groups", u.max_groups, 1000)?;
        let signing_key = u
            .signing_key
            .as_ref()
            .map(|k| k.load(self.base))
            .transpose()
            .map_err(|m| self.err("upstream_identity.signing_key", m))?;
        if let Some(k) = &signing_key {
            SigningKey::pkcs8_der(k)
                .and_then(|der| SigningKey::from_pkcs8(&der, &SystemRandom::new()))
                .map_err(|m| self.err("upstream_identity.signing_key", m))?;
        }
        Ok(Some(UpstreamIdentitySettings {
            signing_key,
            header,
            ttl: Duration::from_secs(u.ttl_secs),
            max_groups: u.max_groups,
        }))
    }
}

//! Secrets of break-glass: sealed-link tokens, TOTP secrets and codes, and the form
//! token that ties a break-glass form to the session that opened it.

use super::BreakglassError;
use crate::session::{now_secs, sha256_hex};

/// A new random token, 256 bits, URL-safe base64.
pub fn new_token() -> Result<String, BreakglassError> {
    use base64::Engine;
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).map_err(|_| BreakglassError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// A new TOTP secret (160 bits, base32).
pub fn new_totp_secret() -> Result<String, BreakglassError> {
    let mut b = [0u8; 20];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).map_err(|_| BreakglassError::Random)?;
    Ok(totp(&b).get_secret_base32())
}

fn totp(secret: &[u8]) -> totp_rs::TOTP {
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec())
}

/// Checks a TOTP code (RFC 6238, SHA-1, 6 digits, 30 s, one step of skew) in constant
/// time.
pub fn totp_ok(secret_base32: &str, code: &str) -> bool {
    let Some(secret) = totp_rs::Secret::Encoded(secret_base32.to_string()).to_bytes().ok() else { return false };
    totp(&secret).check(code.trim(), now_secs())
}

/// The form token for a session: derived from the session id (which only the browser
/// and nobody else holds), so a cross-site page cannot make one.
pub fn csrf_token(session_cookie_value: &str) -> String {
    sha256_hex(format!("custos-breakglass-form:{session_cookie_value}").as_bytes())
}

/// Compares two tokens in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    constant_time_eq::constant_time_eq(a.as_bytes(), b.as_bytes())
}

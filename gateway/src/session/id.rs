//! The session id as the browser holds it: 256 random bits, hex; only its SHA-256 is
//! ever stored or recorded.

use super::{sha256_hex, SessionError};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// A session id as the browser holds it. `Debug` prints only its hash prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    /// 32 bytes from the system CSPRNG, hex (64 characters).
    pub fn generate() -> Result<SessionId, SessionError> {
        let mut b = [0u8; 32];
        SystemRandom::new().fill(&mut b).map_err(|_| SessionError::Random)?;
        Ok(SessionId(hex::encode(b)))
    }

    /// Accepts only what [`SessionId::generate`] makes: anything else is not a session.
    pub fn parse(cookie: &str) -> Option<SessionId> {
        (cookie.len() == 64 && cookie.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| SessionId(cookie.to_string()))
    }

    /// The cookie value. Only for the `Set-Cookie` header.
    pub fn cookie_value(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the id, hex: the Redis key suffix and what audit records carry.
    pub fn hash(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.hash()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_opaque_and_strict() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.cookie_value().len(), 64);
        assert_eq!(SessionId::parse(id.cookie_value()), Some(id.clone()));
        assert_ne!(SessionId::generate().unwrap(), id);
        assert!(SessionId::parse("abc").is_none());
        assert!(SessionId::parse(&"A".repeat(64)).is_none());
        assert!(!format!("{id:?}").contains(id.cookie_value()));
        assert_ne!(id.hash(), id.cookie_value());
    }
}

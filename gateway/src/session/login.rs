//! Sign-ins in progress, between the redirect to the provider and the callback: kept
//! under a hash of their `state` (`<prefix>:l:<hex sha256(state)>`), single-use, and
//! the per-client count of sign-ins started in a minute.

use super::{now_secs, sha256_hex, SessionError, SessionStore};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A sign-in in progress, between the redirect to the provider and the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// SHA-256 (hex) of the pre-login cookie of the browser that started it.
    pub binding: String,
    pub pkce_verifier: String,
    pub nonce: String,
    /// Same-origin path to return to.
    pub return_to: String,
    /// The sign-in must satisfy the MFA rule.
    pub require_mfa: bool,
    /// The provider was asked to authenticate the user again (`prompt=login`): the ID
    /// token's `auth_time` must be at most `max_age` seconds before the start.
    #[serde(default)]
    pub reauth: Option<u64>,
    /// Unix seconds.
    pub started: u64,
}

impl SessionStore {
    fn login_key(&self, state: &str) -> String {
        format!("{}:l:{}", self.kv().prefix(), sha256_hex(state.as_bytes()))
    }

    /// Counts a sign-in started by `client` in the current minute; the count so far.
    pub async fn count_login(&self, client: &str) -> Result<u64, SessionError> {
        let minute = now_secs() / 60;
        self.kv().incr(&format!("{}:r:{client}:{minute}", self.kv().prefix()), Duration::from_secs(120)).await
    }

    /// Keeps a sign-in in progress under its `state` for `ttl`.
    pub async fn put_login(&self, state: &str, login: &PendingLogin, ttl: Duration) -> Result<(), SessionError> {
        let body = serde_json::to_string(login).map_err(|_| SessionError::Corrupt)?;
        let _: Option<String> = self
            .query(redis::cmd("SET").arg(self.login_key(state)).arg(body).arg("NX").arg("EX").arg(ttl.as_secs().max(1)))
            .await?;
        Ok(())
    }

    /// Reads a sign-in in progress without using it up.
    pub async fn peek_login(&self, state: &str) -> Result<Option<PendingLogin>, SessionError> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(self.login_key(state))).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|_| SessionError::Corrupt)).transpose()
    }

    /// Uses up a sign-in in progress: true for exactly one caller.
    pub async fn consume_login(&self, state: &str) -> Result<bool, SessionError> {
        let n: i64 = self.query(redis::cmd("DEL").arg(self.login_key(state))).await?;
        Ok(n == 1)
    }
}

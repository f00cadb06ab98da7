//! `[session]`: where sessions live (Redis), their cookie, and how long they last.

use super::secret::Secret;
use super::{schema, ConfigError, Validator};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub redis_url: String,
    pub redis_username: Option<String>,
    pub redis_password: Option<Secret>,
    pub redis_ca: Option<Vec<u8>>,
    pub redis_timeout: Duration,
    pub key_prefix: String,
    /// The full cookie name (with `__Host-` under TLS).
    pub cookie_name: String,
    /// The short-lived cookie that binds a sign-in to the browser that started it.
    pub login_cookie_name: String,
    pub timeouts: Timeouts,
    pub max_per_user: Option<usize>,
    /// `None`: sessions are not re-validated with the provider.
    pub revalidate: Option<Duration>,
    /// Parsed session records kept per gateway; 0: no session cache.
    pub max_cached_sessions: usize,
}

/// The most `session.max_cached_sessions` may be: a record is about a kilobyte, so the
/// cache stays within a gigabyte.
const MAX_CACHED_SESSIONS: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: Duration,
    pub absolute: Duration,
    /// `last_seen` is written at most this often.
    pub touch_interval: Duration,
}

impl Validator<'_> {
    /// `secure_cookies`: the redirect URL is https, so the cookies get `__Host-`.
    pub(super) fn session(&self, s: &schema::SessionCfg, secure_cookies: bool) -> Result<SessionSettings, ConfigError> {
        let url = s.redis_url.trim();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(self.err("session.redis_url", format!("`{url}` is not a redis:// or rediss:// URL")));
        }
        let parsed = redis::Client::open(url)
            .map_err(|e| self.err("session.redis_url", format!("not a valid Redis URL: {e}")))?;
        if parsed.get_connection_info().redis_settings().password().is_some() {
            return Err(self.err(
                "session.redis_url",
                "carries a password; put it in `session.redis_password` ({ file = … } or { env = … })",
            ));
        }
        let redis_password = s
            .redis_password
            .as_ref()
            .map(|p| p.load(self.base))
            .transpose()
            .map_err(|m| self.err("session.redis_password", m))?;
        let redis_ca = match &s.redis_ca {
            None => None,
            Some(p) => {
                if !url.starts_with("rediss://") {
                    return Err(self.err("session.redis_ca", "is only for a rediss:// URL"));
                }
                self.certs("session.redis_ca", p)?;
                Some(std::fs::read(self.path(p)).map_err(|e| self.err("session.redis_ca", e.to_string()))?)
            }
        };
        if s.redis_timeout_ms == 0 {
            return Err(self.err("session.redis_timeout_ms", "must be at least 1"));
        }
        if s.key_prefix.is_empty() || s.key_prefix.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(self.err("session.key_prefix", "must be non-empty, without spaces"));
        }
        let c = s.cookie_name.trim();
        if c.is_empty() || c.starts_with("__") || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(self.err(
                "session.cookie_name",
                "must be letters, digits, `-` or `_` (the `__Host-` prefix is added by Custos)",
            ));
        }
        if s.idle_timeout_secs == 0 {
            return Err(self.err("session.idle_timeout_secs", "must be at least 1"));
        }
        if s.max_sessions_per_user == Some(0) {
            return Err(self.err("session.max_sessions_per_user", "must be at least 1 (or left out: no cap)"));
        }
        if let Some(n) = s.max_sessions_per_user {
            self.at_most("session.max_sessions_per_user", n, 1000)?;
        }
        if s.absolute_timeout_secs < s.idle_timeout_secs {
            return Err(self.err("session.absolute_timeout_secs", "must be at least `idle_timeout_secs`"));
        }
        if s.touch_interval_secs >= s.idle_timeout_secs {
            return Err(self.err("session.touch_interval_secs", "must be shorter than `idle_timeout_secs`"));
        }
        self.at_most("session.max_cached_sessions", s.max_cached_sessions, MAX_CACHED_SESSIONS)?;
        let prefix = if secure_cookies { "__Host-" } else { "" };
        let session = SessionSettings {
            redis_url: url.to_string(),
            redis_username: s.redis_username.clone(),
            redis_password,
            redis_ca,
            redis_timeout: Duration::from_millis(s.redis_timeout_ms),
            key_prefix: s.key_prefix.clone(),
            cookie_name: format!("{prefix}{c}"),
            login_cookie_name: format!("{prefix}{c}_login"),
            max_per_user: s.max_sessions_per_user,
            max_cached_sessions: s.max_cached_sessions,
            revalidate: (s.revalidate_secs > 0).then(|| Duration::from_secs(s.revalidate_secs)),
            timeouts: Timeouts {
                idle: Duration::from_secs(s.idle_timeout_secs),
                absolute: Duration::from_secs(s.absolute_timeout_secs),
                touch_interval: Duration::from_secs(s.touch_interval_secs),
            },
        };
        Ok(session)
    }
}

//! Sessions in Redis. The browser holds an opaque 256-bit random id; Redis holds the
//! record under a hash of it (`<prefix>:<hex sha256(id)>`), so a dump of Redis holds no
//! usable cookie. Idle timeout (automatic logoff) and absolute lifetime are enforced
//! here, on the server's clock, at every load; the Redis TTL follows the remaining life.
//! `last_seen` is written at most once per `touch_interval`, so idle expiry is accurate
//! to within that interval. One shared connection manager, never a connection per
//! request.

use redis::aio::ConnectionManager;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        hex::encode(ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes()))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.hash()[..12])
    }
}

/// What a session knows about its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub subject: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub acr: Option<String>,
    /// Unix seconds of the authentication at the IdP.
    #[serde(default)]
    pub auth_time: Option<u64>,
    /// Unix seconds.
    pub created: u64,
    pub last_seen: u64,
    #[serde(default)]
    pub client: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
    #[error("the system random source failed")]
    Random,
    #[error("a stored session record is unreadable")]
    Corrupt,
}

/// Why a session could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Active(Box<Session>),
    /// No such session (never existed, logged out, or its TTL ran out).
    Missing,
    /// Idle longer than the idle timeout: automatic logoff.
    IdleTimeout(Box<Session>),
    /// Older than the absolute lifetime.
    Expired(Box<Session>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: Duration,
    pub absolute: Duration,
    /// `last_seen` is written at most this often.
    pub touch_interval: Duration,
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The decision on a stored record at time `now`, and the TTL it has left.
pub fn judge(s: &Session, now: u64, t: &Timeouts) -> (Option<Lookup>, u64) {
    let absolute_end = s.created + t.absolute.as_secs();
    let idle_end = s.last_seen + t.idle.as_secs();
    if now >= absolute_end {
        return (Some(Lookup::Expired(Box::new(s.clone()))), 0);
    }
    if now >= idle_end {
        return (Some(Lookup::IdleTimeout(Box::new(s.clone()))), 0);
    }
    (None, absolute_end.min(idle_end) - now)
}

/// The Redis session store.
#[derive(Clone)]
pub struct SessionStore {
    conn: ConnectionManager,
    prefix: String,
    pub timeouts: Timeouts,
}

impl SessionStore {
    pub async fn connect(url: &str, prefix: &str, timeouts: Timeouts) -> Result<SessionStore, SessionError> {
        let client = redis::Client::open(url).map_err(|e| SessionError::Unavailable(e.to_string()))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, cfg)
            .await
            .map_err(|e| SessionError::Unavailable(e.to_string()))?;
        Ok(SessionStore { conn, prefix: prefix.to_string(), timeouts })
    }

    fn key(&self, id: &SessionId) -> String {
        format!("{}:{}", self.prefix, id.hash())
    }

    /// Stores `session` under a fresh id (never one a client supplied: no fixation).
    pub async fn create(&self, mut session: Session) -> Result<SessionId, SessionError> {
        let now = now_secs();
        session.created = now;
        session.last_seen = now;
        let ttl = self.timeouts.idle.min(self.timeouts.absolute).as_secs().max(1);
        let body = serde_json::to_string(&session).map_err(|_| SessionError::Corrupt)?;
        let mut conn = self.conn.clone();
        loop {
            let id = SessionId::generate()?;
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(&id))
                .arg(&body)
                .arg("NX")
                .arg("EX")
                .arg(ttl)
                .query_async(&mut conn)
                .await
                .map_err(|e| SessionError::Unavailable(e.to_string()))?;
            if set.is_some() {
                return Ok(id);
            }
            // A 256-bit collision: draw again rather than overwrite.
        }
    }

    /// Loads and judges a session; refreshes `last_seen` and the TTL when the touch
    /// interval has passed; deletes it when timed out.
    pub async fn load(&self, id: &SessionId) -> Result<Lookup, SessionError> {
        let mut conn = self.conn.clone();
        let key = self.key(id);
        let raw: Option<String> =
            redis::cmd("GET").arg(&key).query_async(&mut conn).await.map_err(|e| SessionError::Unavailable(e.to_string()))?;
        let Some(raw) = raw else { return Ok(Lookup::Missing) };
        let mut s: Session = serde_json::from_str(&raw).map_err(|_| SessionError::Corrupt)?;
        let now = now_secs();
        let (verdict, _) = judge(&s, now, &self.timeouts);
        if let Some(v) = verdict {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            return Ok(v);
        }
        if now.saturating_sub(s.last_seen) >= self.timeouts.touch_interval.as_secs() {
            s.last_seen = now;
            let (_, ttl) = judge(&s, now, &self.timeouts);
            let body = serde_json::to_string(&s).map_err(|_| SessionError::Corrupt)?;
            // XX: never resurrect a session deleted meanwhile (logout, revocation).
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(body)
                .arg("XX")
                .arg("EX")
                .arg(ttl.max(1))
                .query_async(&mut conn)
                .await
                .map_err(|e| SessionError::Unavailable(e.to_string()))?;
        }
        Ok(Lookup::Active(Box::new(s)))
    }

    /// Ends a session (logout).
    pub async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("DEL")
            .arg(self.key(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| SessionError::Unavailable(e.to_string()))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(created: u64, last_seen: u64) -> Session {
        Session {
            subject: "u".into(),
            email: None,
            name: None,
            groups: vec![],
            amr: vec![],
            acr: None,
            auth_time: None,
            created,
            last_seen,
            client: None,
        }
    }

    #[test]
    fn idle_and_absolute_limits() {
        let t = Timeouts { idle: Duration::from_secs(900), absolute: Duration::from_secs(43_200), touch_interval: Duration::from_secs(60) };
        assert_eq!(judge(&s(0, 0), 899, &t), (None, 1));
        assert!(matches!(judge(&s(0, 0), 900, &t).0, Some(Lookup::IdleTimeout(_))));
        assert!(matches!(judge(&s(0, 43_000), 43_200, &t).0, Some(Lookup::Expired(_))));
        // The TTL never outlives the absolute end.
        assert_eq!(judge(&s(0, 43_000), 43_100, &t), (None, 100));
    }

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

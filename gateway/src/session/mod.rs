//! Sessions in Redis. The browser holds an opaque 256-bit random id; Redis holds the
//! record under a hash of it (`<prefix>:s:<hex sha256(id)>`), so a dump of Redis holds no
//! usable cookie. Idle timeout (automatic logoff) and absolute lifetime are enforced
//! here, on the server's clock, at every load; the Redis TTL follows the remaining life
//! (plus [`ENDED_GRACE_SECS`], so the end can be told apart from a logout and audited).
//! `last_seen` is written at most once per `touch_interval`, so idle expiry is accurate
//! to within that interval. Never a connection per request: one multiplexed connection
//! per worker thread. Sign-ins in progress are kept
//! here too, under a hash of their `state`, single-use. Every end of a session is
//! announced on the session-end channel ([`ended`]), so that what a session holds open
//! closes with it on every gateway.

pub mod ended;

pub use ended::{EndReason, Hold};
use redis::aio::ConnectionManager;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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
        sha256_hex(self.0.as_bytes())
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
    /// The provider's session id (`sid` claim), for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The provider's `sub` (may differ from `subject`), for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sub: Option<String>,
    /// When the session is next due for a check with the provider: unix seconds of the
    /// last check or attempt (0: at creation). A hint only: the refresh token and the
    /// authoritative time live in their own key, which a last-seen write cannot undo.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validated: u64,
    /// An emergency grant held by this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<crate::breakglass::Grant>,
    /// Made by a sealed emergency link: the session lives only as long as its grant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

/// What re-validation keeps per session, in its own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revalidation {
    /// Useless without the client secret, which Redis never holds.
    pub refresh_token: RefreshToken,
    /// Unix seconds of the last successful check.
    pub validated: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A refresh token; `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefreshToken(pub String);

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(..)")
    }
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

pub use crate::config::clock::now_secs;
pub use crate::config::hash::{hex_lower, sha256_hex};
pub use crate::config::session::Timeouts;

/// How long a record stays in Redis past its end: long enough for the next request to
/// find it and record *why* it ended (idle or expired); it is never accepted then.
pub const ENDED_GRACE_SECS: u64 = 300;

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

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<crate::secret::Secret>,
    /// PEM roots for `rediss://`.
    pub ca: Option<Vec<u8>>,
    /// Per call; a slower Redis is treated as down.
    pub timeout: Duration,
    /// Prefix of every key.
    pub prefix: String,
}

impl StoreConfig {
    pub fn plain(url: &str, prefix: &str) -> StoreConfig {
        StoreConfig {
            url: url.into(),
            username: None,
            password: None,
            ca: None,
            timeout: Duration::from_secs(1),
            prefix: prefix.into(),
        }
    }
}

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

static NEXT_STORE: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// One multiplexed connection per worker thread and store: the proxy's runtimes are
    /// per thread, so a request never waits on another thread to reach Redis.
    static CONNS: RefCell<Vec<(usize, Arc<tokio::sync::OnceCell<ConnectionManager>>)>> = const { RefCell::new(Vec::new()) };
}

/// The Redis session store. Connections are made on first use (so the gateway starts
/// while Redis is down and refuses with 503 until it is back), one per worker thread,
/// and re-established by the connection manager after a failure.
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
    pub timeouts: Timeouts,
}

struct Inner {
    id: usize,
    client: redis::Client,
    cfg: StoreConfig,
    /// Unix milliseconds before which no new connection is tried (after a failed one).
    retry_after: AtomicU64,
    /// What is held open for sessions of this store ([`ended`]).
    holds: ended::Registry,
}

fn unavailable(e: impl fmt::Display) -> SessionError {
    SessionError::Unavailable(e.to_string())
}

impl SessionStore {
    /// Checks the configuration; connects on first use.
    pub fn new(cfg: StoreConfig, timeouts: Timeouts) -> Result<SessionStore, SessionError> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str()).map_err(unavailable)?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &cfg.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &cfg.password {
            let p = std::str::from_utf8(p.expose())
                .map_err(|_| SessionError::Unavailable("the Redis password is not UTF-8".into()))?;
            settings = settings.set_password(p.trim_end_matches(['\r', '\n']));
        }
        info = info.set_redis_settings(settings);
        let client = match &cfg.ca {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
            ),
            None => redis::Client::open(info),
        }
        .map_err(unavailable)?;
        let id = NEXT_STORE.fetch_add(1, Ordering::Relaxed);
        Ok(SessionStore {
            inner: Arc::new(Inner { id, client, cfg, retry_after: AtomicU64::new(0), holds: Default::default() }),
            timeouts,
        })
    }

    /// [`SessionStore::new`] plus a first connection (for tools and tests).
    pub async fn connect(url: &str, prefix: &str, timeouts: Timeouts) -> Result<SessionStore, SessionError> {
        let s = SessionStore::new(StoreConfig::plain(url, prefix), timeouts)?;
        s.ping().await?;
        Ok(s)
    }

    async fn conn(&self) -> Result<ConnectionManager, SessionError> {
        let id = self.inner.id;
        // This thread's cell for this store: made once, filled by one connect at a time.
        let cell = CONNS.with(|c| {
            let mut c = c.borrow_mut();
            match c.iter().find(|(i, _)| *i == id) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    c.push((id, cell.clone()));
                    cell
                }
            }
        });
        if let Some(c) = cell.get() {
            return Ok(c.clone());
        }
        cell.get_or_try_init(|| self.connect_once()).await.cloned()
    }

    async fn connect_once(&self) -> Result<ConnectionManager, SessionError> {
        let now = now_millis();
        if now < self.inner.retry_after.load(Ordering::Relaxed) {
            return Err(SessionError::Unavailable("Redis was unreachable a moment ago".into()));
        }
        let t = self.inner.cfg.timeout;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        match tokio::time::timeout(t * 2, ConnectionManager::new_with_config(self.inner.client.clone(), cfg)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                self.inner.retry_after.store(now + 500, Ordering::Relaxed);
                Err(unavailable(e))
            }
            Err(_) => {
                self.inner.retry_after.store(now + 500, Ordering::Relaxed);
                Err(SessionError::Unavailable("timed out connecting to Redis".into()))
            }
        }
    }

    /// One command. Bounded by the connection's response timeout (`redis_timeout_ms`).
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SessionError> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn).await.map_err(unavailable)
    }

    /// Redis answers (for readiness).
    pub async fn ping(&self) -> Result<(), SessionError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    fn key(&self, id: &SessionId) -> String {
        self.key_of_hash(&id.hash())
    }

    fn key_of_hash(&self, hash: &str) -> String {
        format!("{}:s:{}", self.inner.cfg.prefix, hash)
    }

    fn login_key(&self, state: &str) -> String {
        format!("{}:l:{}", self.inner.cfg.prefix, sha256_hex(state.as_bytes()))
    }

    /// Index keys: the sessions of a user (by subject), of a provider session (`sid`),
    /// of a provider subject.
    fn user_key(&self, subject: &str) -> String {
        format!("{}:u:{}", self.inner.cfg.prefix, sha256_hex(subject.as_bytes()))
    }
    fn sid_key(&self, sid: &str) -> String {
        format!("{}:sid:{}", self.inner.cfg.prefix, sha256_hex(sid.as_bytes()))
    }
    fn rt_key(&self, hash: &str) -> String {
        format!("{}:rt:{hash}", self.inner.cfg.prefix)
    }

    /// The session's re-validation state, if it has a refresh token.
    pub async fn revalidation(&self, hash: &str) -> Result<Option<Revalidation>, SessionError> {
        let raw: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(self.rt_key(hash))).await?;
        Ok(raw.and_then(|r| serde_json::from_slice(&r).ok()))
    }

    /// Records a successful check (and a rotated refresh token); keeps the key's life.
    pub async fn set_revalidation(&self, hash: &str, state: &Revalidation) -> Result<(), SessionError> {
        let body = serde_json::to_string(state).map_err(|_| SessionError::Corrupt)?;
        let _: Option<String> =
            self.query(redis::cmd("SET").arg(self.rt_key(hash)).arg(body).arg("XX").arg("KEEPTTL")).await?;
        Ok(())
    }

    fn idp_sub_key(&self, sub: &str) -> String {
        format!("{}:is:{}", self.inner.cfg.prefix, sha256_hex(sub.as_bytes()))
    }

    /// Stores `session` under a fresh id (never one a client supplied: no fixation), and
    /// indexes it by user (and by the provider's `sid`/`sub`) for listing and revocation.
    /// With `max_per_user`, the user's oldest sessions beyond it are ended.
    pub async fn create(
        &self,
        mut session: Session,
        max_per_user: Option<usize>,
        refresh_token: Option<RefreshToken>,
    ) -> Result<SessionId, SessionError> {
        let now = now_secs();
        session.created = now;
        session.last_seen = now;
        let ttl = self.timeouts.idle.min(self.timeouts.absolute).as_secs().max(1) + ENDED_GRACE_SECS;
        let index_ttl = self.timeouts.absolute.as_secs() + ENDED_GRACE_SECS;
        let body = serde_json::to_string(&session).map_err(|_| SessionError::Corrupt)?;
        let id = loop {
            let id = SessionId::generate()?;
            let set: Option<String> =
                self.query(redis::cmd("SET").arg(self.key(&id)).arg(&body).arg("NX").arg("EX").arg(ttl)).await?;
            if set.is_some() {
                break id;
            }
            // A 256-bit collision: draw again rather than overwrite.
        };
        let hash = id.hash();
        let mut pipe = redis::pipe();
        let mut indexes = vec![self.user_key(&session.subject)];
        if let Some(sid) = &session.sid {
            indexes.push(self.sid_key(sid));
        }
        if let Some(sub) = &session.idp_sub {
            indexes.push(self.idp_sub_key(sub));
        }
        for k in &indexes {
            pipe.cmd("SADD").arg(k).arg(&hash).ignore().cmd("EXPIRE").arg(k).arg(index_ttl).ignore();
        }
        if let Some(rt) = refresh_token {
            let state = Revalidation { refresh_token: rt, validated: now };
            let body = serde_json::to_string(&state).map_err(|_| SessionError::Corrupt)?;
            pipe.cmd("SET").arg(self.rt_key(&hash)).arg(body).arg("EX").arg(index_ttl).ignore();
        }
        self.pipeline(&pipe).await?;
        if let Some(max) = max_per_user {
            let mut live = self.sessions_of(&indexes[0]).await?;
            live.retain(|(_, s)| judge(s, now, &self.timeouts).0.is_none());
            if live.len() > max {
                live.sort_by_key(|(_, s)| s.created);
                let excess = live.len() - max;
                for (h, _) in live.into_iter().take(excess) {
                    self.end_by_hash_for(&h, Some(&indexes[0]), EndReason::Replaced).await?;
                }
            }
        }
        Ok(id)
    }

    async fn pipeline(&self, pipe: &redis::Pipeline) -> Result<(), SessionError> {
        let mut conn = self.conn().await?;
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    /// The live sessions under an index key (hash, record); members whose record is gone
    /// are dropped from the index.
    async fn sessions_of(&self, index: &str) -> Result<Vec<(String, Session)>, SessionError> {
        let hashes: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(index)).await?;
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = hashes.iter().map(|h| self.key_of_hash(h)).collect();
        let raws: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
        let mut out = Vec::new();
        for (h, raw) in hashes.into_iter().zip(raws) {
            match raw.and_then(|r| serde_json::from_slice::<Session>(&r).ok()) {
                Some(s) => out.push((h, s)),
                None => {
                    let _: Result<i64, _> = self.query(redis::cmd("SREM").arg(index).arg(&h)).await;
                }
            }
        }
        Ok(out)
    }

    /// A user's live sessions: (hash of the id, record).
    pub async fn list_user(&self, subject: &str) -> Result<Vec<(String, Session)>, SessionError> {
        let now = now_secs();
        let mut v = self.sessions_of(&self.user_key(subject)).await?;
        v.retain(|(_, s)| judge(s, now, &self.timeouts).0.is_none());
        v.sort_by_key(|(_, s)| s.created);
        Ok(v)
    }

    /// Ends the session stored under `hash` (revocation); its record, if it was there.
    pub async fn end_by_hash(&self, hash: &str, index: Option<&str>) -> Result<Option<Session>, SessionError> {
        self.end_by_hash_for(hash, index, EndReason::Revoked).await
    }

    /// [`SessionStore::end_by_hash`], announcing `why` on the session-end channel (even
    /// when the record was already gone: a retried end must still reach every gateway).
    pub async fn end_by_hash_for(
        &self,
        hash: &str,
        index: Option<&str>,
        why: EndReason,
    ) -> Result<Option<Session>, SessionError> {
        let key = self.key_of_hash(hash);
        let raw: Option<Vec<u8>> = self.query(redis::cmd("GETDEL").arg(&key)).await?;
        self.announce(hash, why).await;
        let _: Result<i64, _> = self.query(redis::cmd("DEL").arg(self.rt_key(hash))).await;
        let s = raw.and_then(|r| serde_json::from_slice::<Session>(&r).ok());
        let index = index.map(str::to_string).or_else(|| s.as_ref().map(|s| self.user_key(&s.subject)));
        if let Some(k) = index {
            let _: Result<i64, _> = self.query(redis::cmd("SREM").arg(k).arg(hash)).await;
        }
        Ok(s)
    }

    /// Ends every session of a user; the hashes ended.
    pub async fn end_user(&self, subject: &str) -> Result<Vec<(String, Session)>, SessionError> {
        let index = self.user_key(subject);
        let mut ended = Vec::new();
        for (h, _) in self.sessions_of(&index).await? {
            if let Some(s) = self.end_by_hash(&h, Some(&index)).await? {
                ended.push((h, s));
            }
        }
        Ok(ended)
    }

    /// Ends the sessions made from a provider session (`sid`) or of a provider subject
    /// (back-channel logout).
    pub async fn end_provider_session(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Vec<(String, Session)>, SessionError> {
        let mut ended = Vec::new();
        let index = match (sid, sub) {
            (Some(sid), _) => self.sid_key(sid),
            (None, Some(sub)) => self.idp_sub_key(sub),
            (None, None) => return Ok(ended),
        };
        for (h, s) in self.sessions_of(&index).await? {
            // With both given, only the sessions of that subject.
            if sid.is_some() && sub.is_some() && s.idp_sub.as_deref() != sub {
                continue;
            }
            if let Some(s) = self.end_by_hash_for(&h, None, EndReason::BackchannelLogout).await? {
                ended.push((h, s));
            }
        }
        Ok(ended)
    }

    /// Rewrites a live session's record (after a check with the provider) without
    /// changing its lifetime; never brings back one that ended meanwhile.
    pub async fn save(&self, hash: &str, session: &Session) -> Result<(), SessionError> {
        let body = serde_json::to_string(session).map_err(|_| SessionError::Corrupt)?;
        let _: Option<String> =
            self.query(redis::cmd("SET").arg(self.key_of_hash(hash)).arg(body).arg("XX").arg("KEEPTTL")).await?;
        Ok(())
    }

    /// A short lock (one gateway re-validates a session at a time): true when taken.
    pub async fn lock(&self, what: &str, ttl: Duration) -> Result<bool, SessionError> {
        let key = format!("{}:lock:{what}", self.inner.cfg.prefix);
        let set: Option<String> =
            self.query(redis::cmd("SET").arg(key).arg(1).arg("NX").arg("EX").arg(ttl.as_secs().max(1))).await?;
        Ok(set.is_some())
    }

    /// Releases a lock taken with [`SessionStore::lock`].
    pub async fn unlock(&self, what: &str) {
        let _: Result<i64, _> =
            self.query(redis::cmd("DEL").arg(format!("{}:lock:{what}", self.inner.cfg.prefix))).await;
    }

    /// Forgets a `jti` (its use failed half-way: the sender's retry must work).
    pub async fn forget_use(&self, jti: &str) {
        let key = format!("{}:jti:{}", self.inner.cfg.prefix, sha256_hex(jti.as_bytes()));
        let _: Result<i64, _> = self.query(redis::cmd("DEL").arg(key)).await;
    }

    /// Remembers a `jti` for `ttl`: true the first time only (replay refusal).
    pub async fn first_use(&self, jti: &str, ttl: Duration) -> Result<bool, SessionError> {
        let key = format!("{}:jti:{}", self.inner.cfg.prefix, sha256_hex(jti.as_bytes()));
        let set: Option<String> =
            self.query(redis::cmd("SET").arg(key).arg(1).arg("NX").arg("EX").arg(ttl.as_secs().max(1))).await?;
        Ok(set.is_some())
    }

    /// Loads and judges a session; refreshes `last_seen` and the TTL when the touch
    /// interval has passed; deletes it when timed out.
    pub async fn load(&self, id: &SessionId) -> Result<Lookup, SessionError> {
        self.load_by_hash(&id.hash()).await
    }

    /// [`SessionStore::load`] by the id's hash (computed once per request by the caller).
    pub async fn load_by_hash(&self, hash: &str) -> Result<Lookup, SessionError> {
        let key = self.key_of_hash(hash);
        let raw: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
        let Some(raw) = raw else {
            return Ok(Lookup::Missing);
        };
        let mut s: Session = serde_json::from_str(&raw).map_err(|_| SessionError::Corrupt)?;
        let now = now_secs();
        let (verdict, _) = judge(&s, now, &self.timeouts);
        if let Some(v) = verdict {
            let _: Result<i64, _> = self.query(redis::cmd("DEL").arg(&key)).await;
            return Ok(v);
        }
        if now.saturating_sub(s.last_seen) >= self.timeouts.touch_interval.as_secs() {
            s.last_seen = now;
            let (_, ttl) = judge(&s, now, &self.timeouts);
            let body = serde_json::to_string(&s).map_err(|_| SessionError::Corrupt)?;
            // XX: never resurrect a session deleted meanwhile (logout, revocation). A
            // failed write is not fatal: the session is valid; it only ends sooner.
            let touched: Result<Option<String>, _> = self
                .query(redis::cmd("SET").arg(&key).arg(body).arg("XX").arg("EX").arg(ttl.max(1) + ENDED_GRACE_SECS))
                .await;
            if let Err(e) = touched {
                tracing::warn!(error = %e, "could not record a session's last request");
            }
        }
        Ok(Lookup::Active(Box::new(s)))
    }

    /// The stored record as it is, without judging or touching it (logout).
    pub async fn peek(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(self.key(id))).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|_| SessionError::Corrupt)).transpose()
    }

    /// [`SessionStore::peek`] by the id's hash.
    pub async fn peek_by_hash(&self, hash: &str) -> Result<Option<Session>, SessionError> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(self.key_of_hash(hash))).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|_| SessionError::Corrupt)).transpose()
    }

    /// Counts a sign-in started by `client` in the current minute; the count so far.
    pub async fn count_login(&self, client: &str) -> Result<u64, SessionError> {
        let minute = now_secs() / 60;
        self.incr(&format!("{}:r:{client}:{minute}", self.inner.cfg.prefix), Duration::from_secs(120)).await
    }

    /// Adds one to a counter that lives `ttl` from its last change; the count.
    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, SessionError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCR").arg(key).cmd("EXPIRE").arg(key).arg(ttl.as_secs().max(1)).ignore();
        let mut conn = self.conn().await?;
        match tokio::time::timeout(self.inner.cfg.timeout, pipe.query_async::<(u64,)>(&mut conn)).await {
            Ok(r) => r.map(|(n,)| n).map_err(unavailable),
            Err(_) => Err(SessionError::Unavailable("Redis did not answer in time".into())),
        }
    }

    /// Ends a session (logout).
    pub async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        self.delete_for(id, EndReason::Logout).await
    }

    /// [`SessionStore::delete`], announcing `why` on the session-end channel.
    pub async fn delete_for(&self, id: &SessionId, why: EndReason) -> Result<bool, SessionError> {
        let n: i64 = self.query(redis::cmd("DEL").arg(self.key(id))).await?;
        self.announce(&id.hash(), why).await;
        Ok(n > 0)
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

    fn bg_key(&self, name: &str) -> String {
        format!("{}:bg:{name}", self.inner.cfg.prefix)
    }

    /// Break-glass records: sets `name` for `ttl`.
    pub async fn bg_set(&self, name: &str, value: &str, ttl: Duration) -> Result<(), SessionError> {
        let _: Option<String> =
            self.query(redis::cmd("SET").arg(self.bg_key(name)).arg(value).arg("EX").arg(ttl.as_secs().max(1))).await?;
        Ok(())
    }

    /// Replaces `name`, keeping its time to live.
    pub async fn bg_replace(&self, name: &str, value: &str) -> Result<(), SessionError> {
        let _: Option<String> =
            self.query(redis::cmd("SET").arg(self.bg_key(name)).arg(value).arg("XX").arg("KEEPTTL")).await?;
        Ok(())
    }

    pub async fn bg_get(&self, name: &str) -> Result<Option<String>, SessionError> {
        self.query(redis::cmd("GET").arg(self.bg_key(name))).await
    }

    /// Takes `name` away (`GETDEL`): its value for the one caller that got it.
    pub async fn bg_take(&self, name: &str) -> Result<Option<String>, SessionError> {
        self.query(redis::cmd("GETDEL").arg(self.bg_key(name))).await
    }

    /// Adds one to a counter that lives `ttl`; the count.
    pub async fn bg_incr(&self, name: &str, ttl: Duration) -> Result<u64, SessionError> {
        self.incr(&self.bg_key(name), ttl).await
    }

    /// Adds `member` to an index ordered by `score`.
    pub async fn bg_index_add(&self, index: &str, score: u64, member: &str) -> Result<(), SessionError> {
        let _: i64 = self.query(redis::cmd("ZADD").arg(self.bg_key(index)).arg(score).arg(member)).await?;
        Ok(())
    }

    /// Drops index members scored below `min`.
    pub async fn bg_index_trim(&self, index: &str, min: u64) -> Result<(), SessionError> {
        let _: i64 = self
            .query(redis::cmd("ZREMRANGEBYSCORE").arg(self.bg_key(index)).arg("-inf").arg(format!("({min}")))
            .await?;
        Ok(())
    }

    /// An index's members, lowest score first.
    pub async fn bg_index(&self, index: &str) -> Result<Vec<String>, SessionError> {
        self.query(redis::cmd("ZRANGE").arg(self.bg_key(index)).arg(0).arg(-1)).await
    }

    /// Sets `name` for `ttl` unless it exists (`SET NX`): true for exactly one caller.
    pub async fn bg_set_once(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, SessionError> {
        let set: Option<String> = self
            .query(redis::cmd("SET").arg(self.bg_key(name)).arg(value).arg("NX").arg("EX").arg(ttl.as_secs().max(1)))
            .await?;
        Ok(set.is_some())
    }

    pub async fn bg_del(&self, name: &str) -> Result<(), SessionError> {
        let _: i64 = self.query(redis::cmd("DEL").arg(self.bg_key(name))).await?;
        Ok(())
    }

    /// Up to `limit` index members scored at most `max`, lowest first.
    pub async fn bg_index_due(&self, index: &str, max: u64, limit: usize) -> Result<Vec<String>, SessionError> {
        self.query(
            redis::cmd("ZRANGEBYSCORE").arg(self.bg_key(index)).arg("-inf").arg(max).arg("LIMIT").arg(0).arg(limit),
        )
        .await
    }

    /// Takes `member` out of an index.
    pub async fn bg_index_remove(&self, index: &str, member: &str) -> Result<(), SessionError> {
        let _: i64 = self.query(redis::cmd("ZREM").arg(self.bg_key(index)).arg(member)).await?;
        Ok(())
    }

    /// Uses up a sign-in in progress: true for exactly one caller.
    pub async fn consume_login(&self, state: &str) -> Result<bool, SessionError> {
        let n: i64 = self.query(redis::cmd("DEL").arg(self.login_key(state))).await?;
        Ok(n == 1)
    }
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
            sid: None,
            idp_sub: None,
            validated: 0,
            breakglass: None,
            sealed: false,
        }
    }

    #[test]
    fn idle_and_absolute_limits() {
        let t = Timeouts {
            idle: Duration::from_secs(900),
            absolute: Duration::from_secs(43_200),
            touch_interval: Duration::from_secs(60),
        };
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

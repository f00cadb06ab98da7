//! The session store: session records in Redis under a hash of their id
//! (`<prefix>:s:<hex sha256(id)>`), indexed by user, provider session and provider
//! subject for listing and revocation; re-validation state beside each record; every
//! load judged against the timeouts, `last_seen` written at most once per touch
//! interval; every end announced on the session-end channel ([`super::ended`]). Loads
//! are answered from the session cache when it holds the record ([`super::cache`]);
//! every end and rewrite here drops the record from it before returning.
//! Connections, timeouts and key-value operations are the [`super::kv`] layer's.

use super::cache::{Answer, Cache};
use super::ended::{self, EndReason};
use super::kv::{Kv, StoreConfig};
use super::ENDED_GRACE_SECS;
use super::{
    judge, now_secs, sha256_hex, Lookup, RefreshToken, Revalidation, Session, SessionError, SessionId, Timeouts,
};
use std::sync::Arc;
use std::time::Duration;

/// `EXPIRE` only when it lengthens the key's life (Redis 6.2 has no `EXPIRE … GT` that
/// also sets a key without a TTL).
const EXTEND_TTL: &str =
    "if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return 1";

/// The Redis session store. Connections are made on first use (so the gateway starts
/// while Redis is down and refuses with 503 until it is back), one per worker thread,
/// and re-established by the connection manager after a failure.
#[derive(Clone)]
pub struct SessionStore {
    pub(super) inner: Arc<Inner>,
    pub timeouts: Timeouts,
}

pub(super) struct Inner {
    kv: Kv,
    /// What is held open for sessions of this store ([`ended`]).
    pub(super) holds: ended::Registry,
    /// Parsed records, trusted while Redis tracks them for us ([`super::cache`]).
    pub(super) cache: Cache,
}

impl SessionStore {
    /// Checks the configuration; connects on first use. No session cache.
    pub fn new(cfg: StoreConfig, timeouts: Timeouts) -> Result<SessionStore, SessionError> {
        SessionStore::with_cache(cfg, timeouts, 0)
    }

    /// [`SessionStore::new`] with a session cache of at most `max_cached` records (0: none).
    pub fn with_cache(cfg: StoreConfig, timeouts: Timeouts, max_cached: usize) -> Result<SessionStore, SessionError> {
        let kv = Kv::new(cfg)?;
        let inner = Inner { kv, holds: Default::default(), cache: Cache::new(max_cached) };
        Ok(SessionStore { inner: Arc::new(inner), timeouts })
    }

    /// [`SessionStore::new`] plus a first connection (for tools and tests).
    pub async fn connect(url: &str, prefix: &str, timeouts: Timeouts) -> Result<SessionStore, SessionError> {
        let s = SessionStore::new(StoreConfig::plain(url, prefix), timeouts)?;
        s.ping().await?;
        Ok(s)
    }

    /// The key-value layer under this store (its connections, its key prefix).
    pub fn kv(&self) -> &Kv {
        &self.inner.kv
    }

    /// One command.
    pub(super) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SessionError> {
        self.inner.kv.query(cmd).await
    }

    /// Redis answers (for readiness).
    pub async fn ping(&self) -> Result<(), SessionError> {
        self.inner.kv.ping().await
    }

    fn key(&self, id: &SessionId) -> String {
        self.key_of_hash(&id.hash())
    }

    pub(super) fn key_of_hash(&self, hash: &str) -> String {
        format!("{}:s:{}", self.kv().prefix(), hash)
    }
    /// Index keys: the sessions of a user (by subject), of a provider session (`sid`),
    /// of a provider subject.
    fn user_key(&self, subject: &str) -> String {
        format!("{}:u:{}", self.kv().prefix(), sha256_hex(subject.as_bytes()))
    }
    fn sid_key(&self, sid: &str) -> String {
        format!("{}:sid:{}", self.kv().prefix(), sha256_hex(sid.as_bytes()))
    }
    fn rt_key(&self, hash: &str) -> String {
        format!("{}:rt:{hash}", self.kv().prefix())
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
        format!("{}:is:{}", self.kv().prefix(), sha256_hex(sub.as_bytes()))
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
        // The record's own lifetime when it has one (a database token's).
        let (idle, absolute) = session.limits(&self.timeouts);
        let ttl = idle.min(absolute).max(1) + ENDED_GRACE_SECS;
        let index_ttl = absolute + ENDED_GRACE_SECS;
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
            // An index outlives its longest-lived member: a shorter session made later
            // never shortens it (sessions of one user may have different lifetimes).
            pipe.cmd("SADD").arg(k).arg(&hash).ignore();
            pipe.cmd("EVAL").arg(EXTEND_TTL).arg(1).arg(k).arg(index_ttl).ignore();
        }
        if let Some(rt) = refresh_token {
            let state = Revalidation { refresh_token: rt, validated: now };
            let body = serde_json::to_string(&state).map_err(|_| SessionError::Corrupt)?;
            pipe.cmd("SET").arg(self.rt_key(&hash)).arg(body).arg("EX").arg(index_ttl).ignore();
        }
        self.inner.kv.pipeline(&pipe).await?;
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
        let taken: Result<Option<Vec<u8>>, _> = self.query(redis::cmd("GETDEL").arg(&key)).await;
        // Dropped from this gateway's cache whatever Redis answered: a timed-out GETDEL
        // may still have run, and an end must never be served from the cache here.
        self.inner.cache.invalidate(hash);
        let raw = taken?;
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
        // And what the user holds open with a bearer token (a database connection).
        self.announce_user(subject, super::EndReason::Revoked).await;
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
        let saved: Result<Option<String>, _> =
            self.query(redis::cmd("SET").arg(self.key_of_hash(hash)).arg(body).arg("XX").arg("KEEPTTL")).await;
        self.inner.cache.invalidate(hash);
        saved.map(|_| ())
    }

    /// A short lock (one gateway re-validates a session at a time): true when taken.
    pub async fn lock(&self, what: &str, ttl: Duration) -> Result<bool, SessionError> {
        self.inner.kv.lock(what, ttl).await
    }

    /// Releases a lock taken with [`SessionStore::lock`].
    pub async fn unlock(&self, what: &str) {
        self.inner.kv.unlock(what).await
    }

    /// Forgets a `jti` (its use failed half-way: the sender's retry must work).
    pub async fn forget_use(&self, jti: &str) {
        self.inner.kv.forget_use(jti).await
    }

    /// Remembers a `jti` for `ttl`: true the first time only (replay refusal).
    pub async fn first_use(&self, jti: &str, ttl: Duration) -> Result<bool, SessionError> {
        self.inner.kv.first_use(jti, ttl).await
    }

    /// Loads and judges a session; refreshes `last_seen` and the TTL when the touch
    /// interval has passed; deletes it when timed out.
    pub async fn load(&self, id: &SessionId) -> Result<Lookup, SessionError> {
        self.load_by_hash(&id.hash()).await
    }

    /// [`SessionStore::load`] by the id's hash (computed once per request by the caller).
    /// From the cache when it holds the record; judged on the server's clock either way.
    pub async fn load_by_hash(&self, hash: &str) -> Result<Lookup, SessionError> {
        let cache = &self.inner.cache;
        let (s, ticket, cached) = match cache.lookup(hash) {
            Answer::Hit(s) => (s, None, true),
            Answer::Miss(ticket) => {
                if cache.enabled() {
                    // The cache answers once the tracking connection is up.
                    self.start_subscriber();
                }
                let raw: Option<String> = self.query(redis::cmd("GET").arg(self.key_of_hash(hash))).await?;
                let Some(raw) = raw else {
                    return Ok(Lookup::Missing);
                };
                let s: Session = serde_json::from_str(&raw).map_err(|_| SessionError::Corrupt)?;
                (Arc::new(s), ticket, false)
            }
        };
        let now = now_secs();
        let (verdict, _) = judge(&s, now, &self.timeouts);
        if let Some(v) = verdict {
            let _: Result<i64, _> = self.query(redis::cmd("DEL").arg(self.key_of_hash(hash))).await;
            cache.invalidate(hash);
            return Ok(v);
        }
        if now.saturating_sub(s.last_seen) < self.timeouts.touch_interval.as_secs() {
            if let Some(t) = ticket {
                cache.insert(hash, s.clone(), t);
            }
            return Ok(Lookup::Active(s));
        }
        let mut touched = (*s).clone();
        touched.last_seen = now;
        let touched = Arc::new(touched);
        if cached {
            // Concurrent requests see the new `last_seen` and do not write it too; the
            // write's own invalidation drops it, and the next request reads it back.
            cache.replace(hash, &s, touched.clone());
        }
        let (_, ttl) = judge(&touched, now, &self.timeouts);
        let body = serde_json::to_string(&*touched).map_err(|_| SessionError::Corrupt)?;
        // XX: never resurrect a session deleted meanwhile (logout, revocation). A
        // failed write is not fatal: the session is valid; it only ends sooner.
        let written: Result<Option<String>, _> = self
            .query(
                redis::cmd("SET")
                    .arg(self.key_of_hash(hash))
                    .arg(body)
                    .arg("XX")
                    .arg("EX")
                    .arg(ttl.max(1) + ENDED_GRACE_SECS),
            )
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not record a session's last request");
        }
        Ok(Lookup::Active(touched))
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

    /// Ends a session (logout).
    pub async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        self.delete_for(id, EndReason::Logout).await
    }

    /// [`SessionStore::delete`], announcing `why` on the session-end channel.
    pub async fn delete_for(&self, id: &SessionId, why: EndReason) -> Result<bool, SessionError> {
        let hash = id.hash();
        let deleted: Result<i64, _> = self.query(redis::cmd("DEL").arg(self.key_of_hash(&hash))).await;
        // As in `end_by_hash_for`: out of the cache even when Redis did not answer.
        self.inner.cache.invalidate(&hash);
        let n = deleted?;
        self.announce(&hash, why).await;
        Ok(n > 0)
    }
}

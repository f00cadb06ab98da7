//! The Redis key-value layer under the session store and break-glass: how to reach
//! Redis ([`StoreConfig`]), one multiplexed connection per worker thread and store
//! (made on first use, re-made by the connection manager after a failure, not tried
//! again for a moment after a failed connect), every call bounded by the configured
//! timeout, and the few operations the layers above need (get, set, take, counters,
//! set-once, short locks, sorted-set indexes). Every key starts with the configured
//! prefix; a [`Space`] is one keyspace under it (`<prefix>:<space>:<name>`), so the
//! names in Redis are the same on every gateway sharing it. Nothing here knows what a
//! session or a grant is.

use super::{sha256_hex, SessionError};
use redis::aio::ConnectionManager;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<crate::config::secret::Secret>,
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

static NEXT_STORE: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// One multiplexed connection per worker thread and store: the proxy's runtimes are
    /// per thread, so a request never waits on another thread to reach Redis.
    static CONNS: RefCell<Vec<(usize, Arc<tokio::sync::OnceCell<ConnectionManager>>)>> = const { RefCell::new(Vec::new()) };
}

/// One Redis, under one key prefix.
pub struct Kv {
    id: usize,
    client: redis::Client,
    /// The same, speaking RESP3: pushes (subscriptions, invalidations) on a connection
    /// that also answers commands.
    push_client: redis::Client,
    cfg: StoreConfig,
    /// Unix milliseconds before which no new connection is tried (after a failed one).
    retry_after: AtomicU64,
}

pub(super) fn unavailable(e: impl fmt::Display) -> SessionError {
    SessionError::Unavailable(e.to_string())
}

impl Kv {
    /// Checks the configuration; connects on first use.
    pub fn new(cfg: StoreConfig) -> Result<Kv, SessionError> {
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
        let resp3 = info.clone().set_redis_settings(settings.clone().set_protocol(redis::ProtocolVersion::RESP3));
        info = info.set_redis_settings(settings);
        let open = |info: redis::ConnectionInfo| {
            match &cfg.ca {
                Some(ca) => redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
                ),
                None => redis::Client::open(info),
            }
            .map_err(unavailable)
        };
        let client = open(info)?;
        let push_client = open(resp3)?;
        let id = NEXT_STORE.fetch_add(1, Ordering::Relaxed);
        Ok(Kv { id, client, push_client, cfg, retry_after: AtomicU64::new(0) })
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.cfg.prefix
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.cfg.timeout
    }

    /// The RESP3 client, for a connection that takes pushes (the session-end channel).
    pub fn push_client(&self) -> &redis::Client {
        &self.push_client
    }

    /// The keyspace `<prefix>:<name>:`.
    pub fn space(&self, name: &'static str) -> Space<'_> {
        Space { kv: self, name }
    }

    async fn conn(&self) -> Result<ConnectionManager, SessionError> {
        let id = self.id;
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
        if now < self.retry_after.load(Ordering::Relaxed) {
            return Err(SessionError::Unavailable("Redis was unreachable a moment ago".into()));
        }
        let t = self.cfg.timeout;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        match tokio::time::timeout(t * 2, ConnectionManager::new_with_config(self.client.clone(), cfg)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                self.retry_after.store(now + 500, Ordering::Relaxed);
                Err(unavailable(e))
            }
            Err(_) => {
                self.retry_after.store(now + 500, Ordering::Relaxed);
                Err(SessionError::Unavailable("timed out connecting to Redis".into()))
            }
        }
    }

    /// One command. Bounded by the connection's response timeout (`redis_timeout_ms`).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SessionError> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn).await.map_err(unavailable)
    }

    /// A pipeline whose answers are not needed.
    pub async fn pipeline(&self, pipe: &redis::Pipeline) -> Result<(), SessionError> {
        let mut conn = self.conn().await?;
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    /// Redis answers (for readiness).
    pub async fn ping(&self) -> Result<(), SessionError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Adds one to the counter `key` (a whole key) that lives `ttl` from its last
    /// change; the count.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, SessionError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCR").arg(key).cmd("EXPIRE").arg(key).arg(ttl.as_secs().max(1)).ignore();
        let mut conn = self.conn().await?;
        match tokio::time::timeout(self.cfg.timeout, pipe.query_async::<(u64,)>(&mut conn)).await {
            Ok(r) => r.map(|(n,)| n).map_err(unavailable),
            Err(_) => Err(SessionError::Unavailable("Redis did not answer in time".into())),
        }
    }

    /// Sets the whole key `key` for `ttl` unless it exists (`SET NX`): true for exactly
    /// one caller.
    pub async fn set_once(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, SessionError> {
        let set: Option<String> =
            self.query(redis::cmd("SET").arg(key).arg(value).arg("NX").arg("EX").arg(ttl.as_secs().max(1))).await?;
        Ok(set.is_some())
    }

    fn lock_key(&self, what: &str) -> String {
        format!("{}:lock:{what}", self.cfg.prefix)
    }

    /// A short lock (`<prefix>:lock:<what>`): true when taken.
    pub async fn lock(&self, what: &str, ttl: Duration) -> Result<bool, SessionError> {
        self.set_once(&self.lock_key(what), "1", ttl).await
    }

    /// Releases a lock taken with [`Kv::lock`].
    pub async fn unlock(&self, what: &str) {
        let _: Result<i64, _> = self.query(redis::cmd("DEL").arg(self.lock_key(what))).await;
    }

    fn use_key(&self, token: &str) -> String {
        format!("{}:jti:{}", self.cfg.prefix, sha256_hex(token.as_bytes()))
    }

    /// Remembers a single-use token for `ttl`: true the first time only (replay refusal).
    pub async fn first_use(&self, token: &str, ttl: Duration) -> Result<bool, SessionError> {
        self.set_once(&self.use_key(token), "1", ttl).await
    }

    /// Forgets a single-use token (its use failed half-way: the sender's retry must work).
    pub async fn forget_use(&self, token: &str) {
        let _: Result<i64, _> = self.query(redis::cmd("DEL").arg(self.use_key(token))).await;
    }
}

/// One keyspace: the keys `<prefix>:<space>:<name>`.
#[derive(Clone, Copy)]
pub struct Space<'a> {
    kv: &'a Kv,
    name: &'static str,
}

impl Space<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}:{}:{name}", self.kv.cfg.prefix, self.name)
    }

    /// Sets `name` for `ttl`.
    pub async fn set(&self, name: &str, value: &str, ttl: Duration) -> Result<(), SessionError> {
        let _: Option<String> =
            self.kv.query(redis::cmd("SET").arg(self.key(name)).arg(value).arg("EX").arg(ttl.as_secs().max(1))).await?;
        Ok(())
    }

    /// Replaces `name`, keeping its time to live (never brings back one that is gone).
    pub async fn replace(&self, name: &str, value: &str) -> Result<(), SessionError> {
        let _: Option<String> =
            self.kv.query(redis::cmd("SET").arg(self.key(name)).arg(value).arg("XX").arg("KEEPTTL")).await?;
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<Option<String>, SessionError> {
        self.kv.query(redis::cmd("GET").arg(self.key(name))).await
    }

    /// Takes `name` away (`GETDEL`): its value for the one caller that got it.
    pub async fn take(&self, name: &str) -> Result<Option<String>, SessionError> {
        self.kv.query(redis::cmd("GETDEL").arg(self.key(name))).await
    }

    /// Adds one to a counter that lives `ttl`; the count.
    pub async fn incr(&self, name: &str, ttl: Duration) -> Result<u64, SessionError> {
        self.kv.incr(&self.key(name), ttl).await
    }

    /// Sets `name` for `ttl` unless it exists (`SET NX`): true for exactly one caller.
    pub async fn set_once(&self, name: &str, value: &str, ttl: Duration) -> Result<bool, SessionError> {
        self.kv.set_once(&self.key(name), value, ttl).await
    }

    pub async fn del(&self, name: &str) -> Result<(), SessionError> {
        let _: i64 = self.kv.query(redis::cmd("DEL").arg(self.key(name))).await?;
        Ok(())
    }

    /// Adds `member` to an index ordered by `score`.
    pub async fn index_add(&self, index: &str, score: u64, member: &str) -> Result<(), SessionError> {
        let _: i64 = self.kv.query(redis::cmd("ZADD").arg(self.key(index)).arg(score).arg(member)).await?;
        Ok(())
    }

    /// Drops index members scored below `min`.
    pub async fn index_trim(&self, index: &str, min: u64) -> Result<(), SessionError> {
        let _: i64 = self
            .kv
            .query(redis::cmd("ZREMRANGEBYSCORE").arg(self.key(index)).arg("-inf").arg(format!("({min}")))
            .await?;
        Ok(())
    }

    /// An index's members, lowest score first.
    pub async fn index(&self, index: &str) -> Result<Vec<String>, SessionError> {
        self.kv.query(redis::cmd("ZRANGE").arg(self.key(index)).arg(0).arg(-1)).await
    }

    /// Up to `limit` index members scored at most `max`, lowest first.
    pub async fn index_due(&self, index: &str, max: u64, limit: usize) -> Result<Vec<String>, SessionError> {
        self.kv
            .query(redis::cmd("ZRANGEBYSCORE").arg(self.key(index)).arg("-inf").arg(max).arg("LIMIT").arg(0).arg(limit))
            .await
    }

    /// Takes `member` out of an index.
    pub async fn index_remove(&self, index: &str, member: &str) -> Result<(), SessionError> {
        let _: i64 = self.kv.query(redis::cmd("ZREM").arg(self.key(index)).arg(member)).await?;
        Ok(())
    }
}

pub(super) fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

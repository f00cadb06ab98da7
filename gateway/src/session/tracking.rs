//! The one Redis connection per store that tells this gateway what changed elsewhere: it
//! is subscribed to the session-end channel `<prefix>:ended` ([`super::ended`]) and, with
//! the session cache on, has server-assisted client-side caching on for every session
//! key (`CLIENT TRACKING ON BCAST PREFIX <prefix>:s:`: Redis pushes an `invalidate` for
//! every write, delete or expiry of such a key, by any client). RESP3, so that both
//! arrive as pushes on the same connection; they are handled as they are read, in the
//! connection's own task, without a queue.
//!
//! It runs on its own thread and runtime, and starts over whenever the connection is
//! lost (a push saying so, an error, a ping unanswered within [`PING_EVERY`]): the cache
//! is turned off at once, and on again only once tracking is set up on the new
//! connection (and cleared then: changes in between were not seen). After every
//! (re)subscription, and every [`super::ended::SWEEP_EVERY`], everything held is read
//! again, as messages published while it was down are lost.

use super::SessionStore;
use redis::{PushInfo, PushKind, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the connection is pinged; the cache answers only while the last pong is
/// less than [`super::cache::FRESH`] old.
pub const PING_EVERY: Duration = Duration::from_secs(1);

/// The connection's name in `CLIENT LIST` (for operators, and to find it).
pub const CLIENT_NAME: &str = "custos-session-ends";

impl SessionStore {
    /// Starts this store's subscriber now (else it starts with the first hold or cached
    /// load), so that the first hold does not wait for a subscription.
    pub fn start_subscriber(&self) {
        if self.inner.holds.subscriber.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new().name("custos-session-ends".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(store.subscribe_forever()),
                Err(e) => tracing::error!(error = %e, "cannot start the session-end subscriber"),
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the session-end subscriber");
        }
    }

    /// What a push from Redis on `link` means for the holds and the cache.
    fn on_push(&self, push: PushInfo, link: &Link) {
        let text = |v: &Value| match v {
            Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_string),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        match push.kind {
            PushKind::Message => {
                let payload = push.data.get(1).and_then(text).unwrap_or_default();
                if let Some((why, hash)) = payload.split_once(' ') {
                    self.inner.cache.invalidate(hash);
                    self.inner.holds.notify(hash, super::EndReason::parse(why));
                }
            }
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    let prefix = self.key_of_hash("");
                    for k in keys.iter().filter_map(text) {
                        match k.strip_prefix(&prefix) {
                            Some(hash) => self.inner.cache.invalidate(hash),
                            // Not a session key of ours (cannot be, with BCAST PREFIX).
                            None => self.inner.cache.clear(),
                        }
                    }
                }
                // No key list: the database was flushed. Anything else: not understood.
                _ => self.inner.cache.clear(),
            },
            // Only the current connection's end turns the cache off (an abandoned one
            // ends after its successor is live).
            PushKind::Disconnection if link.current.load(Ordering::Acquire) => {
                self.inner.cache.tracking_lost();
                link.lost.notify_one();
            }
            _ => {}
        }
    }

    /// Connects, names the connection, turns tracking on (with the cache) and subscribes;
    /// whether tracking is on. Tracking refused (an ACL without `CLIENT`) leaves the cache
    /// off, not the channel.
    async fn track(&self, link: &Arc<Link>) -> redis::RedisResult<(redis::aio::MultiplexedConnection, bool)> {
        let t = self.kv().timeout().max(Duration::from_secs(1));
        let store = self.clone();
        let on = link.clone();
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_push_sender(move |p: PushInfo| {
                store.on_push(p, &on);
                Ok::<(), std::convert::Infallible>(())
            });
        let mut conn = self.kv().push_client().get_multiplexed_async_connection_with_config(&cfg).await?;
        // A name only helps operators find it: refused, it goes on without.
        let _: redis::RedisResult<()> =
            redis::cmd("CLIENT").arg("SETNAME").arg(CLIENT_NAME).query_async(&mut conn).await;
        let mut tracking = false;
        if self.inner.cache.enabled() {
            let on: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(self.key_of_hash(""))
                .query_async(&mut conn)
                .await;
            match on {
                Ok(()) => tracking = true,
                // Refused (an ACL without CLIENT, a server or proxy without BCAST
                // tracking): no cache, but the session-end channel still runs.
                Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
                    tracing::warn!(error = %e, "Redis refuses CLIENT TRACKING: sessions are not cached");
                }
                Err(e) => return Err(e),
            }
        }
        conn.subscribe(self.ended_channel()).await?;
        Ok((conn, tracking))
    }

    /// Subscribes (and tracks), and starts over (with a re-check of everything held)
    /// whenever the connection is lost.
    async fn subscribe_forever(self) {
        let t = self.kv().timeout().max(Duration::from_secs(1));
        let mut backoff = Duration::from_millis(100);
        loop {
            let link = Arc::new(Link { lost: tokio::sync::Notify::new(), current: AtomicBool::new(true) });
            let connected = tokio::time::timeout(t * 2, self.track(&link)).await;
            if !matches!(connected, Ok(Ok(_))) {
                link.current.store(false, Ordering::Release);
            }
            let (mut conn, tracking) = match connected {
                Ok(Ok(c)) => c,
                failed => {
                    let e = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    // Once per outage, not at every try.
                    if backoff == Duration::from_millis(100) {
                        tracing::warn!(error = %e, "session-end channel: cannot subscribe; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            // Messages published while we were not subscribed are lost: read again.
            let mut healthy = self.recheck_all().await.is_ok();
            if healthy && tracking {
                self.inner.cache.tracking_live();
            }
            let mut ping = tokio::time::interval(PING_EVERY);
            let mut sweep = tokio::time::interval(super::ended::SWEEP_EVERY);
            ping.reset();
            sweep.reset();
            while healthy {
                tokio::select! {
                    _ = link.lost.notified() => healthy = false,
                    _ = ping.tick() => {
                        // Unanswered within the ping period: the cache would soon be
                        // stale anyway; start over.
                        let ping_cmd = redis::cmd("PING");
                        let answered =
                            tokio::time::timeout(t.min(PING_EVERY), ping_cmd.query_async::<Value>(&mut conn)).await;
                        healthy = matches!(answered, Ok(Ok(_)));
                        if healthy {
                            self.inner.cache.pong();
                        }
                    }
                    _ = sweep.tick() => {
                        healthy = self.recheck_all().await.is_ok();
                    }
                }
            }
            link.current.store(false, Ordering::Release);
            self.inner.cache.tracking_lost();
            tracing::warn!("session-end channel: connection lost; subscribing again");
        }
    }
}

/// One connection's state, shared with its push handler.
struct Link {
    /// Its end (told by the client library) was seen.
    lost: tokio::sync::Notify,
    /// It is the connection in use (not one given up on).
    current: AtomicBool,
}

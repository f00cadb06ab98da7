//! The session-end channel: how everything a session holds open (a WebSocket tunnel
//! today; later cached sessions and live database connections) learns that the session
//! ended, on every gateway sharing the Redis, and closes.
//!
//! A holder calls [`SessionStore::hold`] with the session's hash and record and gets a
//! [`Hold`]; [`Hold::ended`] resolves with the [`EndReason`]. Three sources end a hold:
//!
//! - **Announcements.** Every place that ends a session in the store (revocation,
//!   logout, back-channel logout, the provider's refusal, a replaced session) publishes
//!   `<reason> <hash>` on the channel `<prefix>:ended` (`PUBLISH`, explicit: Redis
//!   keyspace notifications are off by default and cannot be relied on). One subscriber
//!   task per gateway and store ([`super::tracking`]) hands each message to the holds of
//!   that hash and drops it from the session cache; the gateway that ended the session
//!   tells its own holds and cache directly as well.
//! - **Re-checks.** Pub/sub drops messages while its connection is down, so after every
//!   (re)subscription, and every [`SWEEP_EVERY`] as a backstop, every held session is
//!   read again (without touching `last_seen`) and the ended ones are let go. A hold also
//!   re-reads its session once when it is made, so an end between the holder's own load
//!   and the registration is not missed.
//! - **Local timers.** Idle and absolute ends need no message: a session's record stays
//!   in Redis [`super::ENDED_GRACE_SECS`] past its end, so nothing deletes it on time.
//!   Each hold sleeps until the session's next end as [`super::judge`] computes it from
//!   `created`, `last_seen` and the [`super::Timeouts`]; at the idle end it reads the
//!   record again (other requests of the session may have moved `last_seen` on) and
//!   either ends or sleeps on. A hold's own `not_after` (a bearer token's `exp`, an
//!   emergency grant's end) ends it too.
//!
//! Holding is not activity: a hold never writes `last_seen`, so an open tunnel does not
//! keep its session alive. The store unreachable at a re-check that decides an end ends
//! the hold (fail closed). Nothing here knows about HTTP.

use super::kv::now_millis;
use super::{judge, now_secs, Lookup, Session, SessionStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// The backstop re-check of every held session, in case a message was lost without the
/// subscription noticing (a half-open connection between two pings).
pub const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Why a session ended, as announced on the channel and written in audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// An administrator ended it (`custos session revoke`, the admin API).
    Revoked,
    /// Its user signed out.
    Logout,
    /// The identity provider ended it (OpenID Connect Back-Channel Logout).
    BackchannelLogout,
    /// The provider refused it at re-validation.
    RevokedByIdp,
    /// A newer session took its place (a new sign-in in the browser, the per-user cap).
    Replaced,
    /// Idle longer than the idle timeout.
    IdleTimeout,
    /// Past its absolute lifetime.
    Expired,
    /// The hold's own `not_after` passed (a bearer token's expiry, a grant's end).
    NotAfter,
    /// Found gone at a re-check (its announcement was missed).
    Ended,
    /// The store could not be asked when an end was due: ended, failing closed.
    StoreUnavailable,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked => "session_revoked",
            EndReason::Logout => "logout",
            EndReason::BackchannelLogout => "backchannel_logout",
            EndReason::RevokedByIdp => "session_revoked_by_idp",
            EndReason::Replaced => "session_replaced",
            EndReason::IdleTimeout => "session_idle_timeout",
            EndReason::Expired => "session_expired",
            EndReason::NotAfter => "credential_expired",
            EndReason::Ended => "session_ended",
            EndReason::StoreUnavailable => "session_store_unavailable",
        }
    }

    /// A reason read from the channel; one this version does not know still ends.
    pub(super) fn parse(s: &str) -> EndReason {
        const ALL: [EndReason; 10] = [
            EndReason::Revoked,
            EndReason::Logout,
            EndReason::BackchannelLogout,
            EndReason::RevokedByIdp,
            EndReason::Replaced,
            EndReason::IdleTimeout,
            EndReason::Expired,
            EndReason::NotAfter,
            EndReason::Ended,
            EndReason::StoreUnavailable,
        ];
        ALL.into_iter().find(|r| r.as_str() == s).unwrap_or(EndReason::Ended)
    }

    fn of(l: &Lookup) -> Option<EndReason> {
        match l {
            Lookup::Active(_) => None,
            Lookup::Missing => Some(EndReason::Ended),
            Lookup::IdleTimeout(_) => Some(EndReason::IdleTimeout),
            Lookup::Expired(_) => Some(EndReason::Expired),
        }
    }
}

/// One registered hold: its id and where its end goes.
type Waiter = (u64, oneshot::Sender<EndReason>);

/// The holds of one store, by session hash.
#[derive(Default)]
pub(super) struct Registry {
    holds: Mutex<HashMap<String, Vec<Waiter>>>,
    next: AtomicU64,
    pub(super) subscriber: std::sync::atomic::AtomicBool,
}

impl Registry {
    /// Ends every hold of `hash`.
    pub(super) fn notify(&self, hash: &str, why: EndReason) {
        let ended = self.holds.lock().map(|mut m| m.remove(hash)).unwrap_or_default();
        for (_, tx) in ended.into_iter().flatten() {
            let _ = tx.send(why);
        }
    }

    /// The session hashes held (not the per-user keys, which have no record to read).
    fn held(&self) -> Vec<String> {
        self.holds.lock().map(|m| m.keys().filter(|k| !k.starts_with("user:")).cloned().collect()).unwrap_or_default()
    }

    fn remove(&self, hash: &str, id: u64) {
        if let Ok(mut m) = self.holds.lock() {
            if let Some(v) = m.get_mut(hash) {
                v.retain(|(i, _)| *i != id);
                if v.is_empty() {
                    m.remove(hash);
                }
            }
        }
    }
}

/// Something held open for a session (or a credential): [`Hold::ended`] says when and
/// why it must close. Dropping it lets go.
pub struct Hold {
    store: SessionStore,
    /// Set for a stored session (a bearer token is no session: only `not_after` ends it).
    hash: Option<String>,
    id: u64,
    rx: Option<oneshot::Receiver<EndReason>>,
    created: u64,
    last_seen: u64,
    /// The held record's own lifetime (a database token's), else the store's applies.
    lifetime: Option<super::record::Lifetime>,
    not_after: Option<u64>,
}

/// The registry key of the holds of a user's credentials that are no stored session (a
/// bearer token's database connection): ended when all the user's sessions are.
fn user_key(subject: &str) -> String {
    format!("user:{}", crate::config::hash::sha256_hex(subject.as_bytes()))
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(h) = &self.hash {
            self.store.inner.holds.remove(h, self.id);
        }
    }
}

impl SessionStore {
    pub(super) fn ended_channel(&self) -> String {
        format!("{}:ended", self.kv().prefix())
    }

    /// Tells every gateway that the session `hash` ended: one `PUBLISH`, and this
    /// gateway's holds at once.
    ///
    /// Never fails the end it announces: the record is already gone, and the caller's
    /// cleanup must still run. A PUBLISH that fails is tried again; if it still fails,
    /// other gateways find the end at their next re-check (see the module).
    pub(super) async fn announce(&self, hash: &str, why: EndReason) {
        // Before the ending call returns: this gateway's next request reads Redis.
        self.inner.cache.invalidate(hash);
        self.inner.holds.notify(hash, why);
        let msg = format!("{} {hash}", why.as_str());
        for attempt in 0..3 {
            let sent: Result<i64, _> = self.query(redis::cmd("PUBLISH").arg(self.ended_channel()).arg(&msg)).await;
            match sent {
                Ok(_) => return,
                Err(e) if attempt == 2 => {
                    tracing::warn!(error = %e, "could not announce a session's end; other gateways find it at their next re-check");
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    /// Holds the session `hash` (whose record the caller just loaded) open until it
    /// ends, or until `not_after` (unix seconds). Starts this store's subscriber on
    /// first use, and reads the session once more after registering.
    pub async fn hold(&self, hash: &str, record: &Session, not_after: Option<u64>) -> Hold {
        let id = self.inner.holds.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.inner.holds.holds.lock() {
            m.entry(hash.to_string()).or_default().push((id, tx));
        }
        self.start_subscriber();
        let hold = Hold {
            store: self.clone(),
            hash: Some(hash.to_string()),
            id,
            rx: Some(rx),
            created: record.created,
            last_seen: record.last_seen,
            lifetime: record.lifetime,
            not_after,
        };
        // Ended between the caller's load and the registration: no message will come.
        match self.peek_judged(hash).await {
            Ok(None) => {}
            Ok(Some(why)) => self.inner.holds.notify(hash, why),
            Err(_) => self.inner.holds.notify(hash, EndReason::StoreUnavailable),
        }
        hold
    }

    /// A hold for a credential that is not a stored session (a bearer token): it ends
    /// at `not_after` only.
    pub fn hold_until(&self, not_after: u64) -> Hold {
        Hold {
            store: self.clone(),
            hash: None,
            id: 0,
            rx: None,
            created: 0,
            last_seen: 0,
            lifetime: None,
            not_after: Some(not_after),
        }
    }

    /// A hold for `subject`'s credential that is not a stored session (a bearer token's
    /// database connection): it ends at `not_after`, or when the user's sessions are all
    /// ended ([`SessionStore::end_user`], `custos session revoke --user`) on any gateway.
    pub fn hold_user(&self, subject: &str, not_after: u64) -> Hold {
        let id = self.inner.holds.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let key = user_key(subject);
        if let Ok(mut m) = self.inner.holds.holds.lock() {
            m.entry(key.clone()).or_default().push((id, tx));
        }
        self.start_subscriber();
        Hold {
            store: self.clone(),
            hash: Some(key),
            id,
            rx: Some(rx),
            created: 0,
            last_seen: 0,
            lifetime: None,
            not_after: Some(not_after),
        }
    }

    /// Ends the holds of `subject`'s credentials that are no session, on every gateway.
    pub(super) async fn announce_user(&self, subject: &str, why: EndReason) {
        self.announce(&user_key(subject), why).await;
    }

    /// Whether the stored session `hash` has ended (and why), without touching it.
    async fn peek_judged(&self, hash: &str) -> Result<Option<EndReason>, super::SessionError> {
        let raw: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(self.key_of_hash(hash))).await?;
        Ok(self.judged(raw.as_deref()))
    }

    fn judged(&self, raw: Option<&[u8]>) -> Option<EndReason> {
        let Some(raw) = raw else { return Some(EndReason::Ended) };
        // An unreadable record is no session: fail closed.
        let Ok(s) = serde_json::from_slice::<Session>(raw) else { return Some(EndReason::Ended) };
        judge(&s, now_secs(), &self.timeouts).0.as_ref().and_then(EndReason::of)
    }

    /// Reads every held session again and ends the holds of those that ended.
    pub(super) async fn recheck_all(&self) -> Result<(), super::SessionError> {
        let held = self.inner.holds.held();
        for chunk in held.chunks(100) {
            let keys: Vec<String> = chunk.iter().map(|h| self.key_of_hash(h)).collect();
            let raws: Vec<Option<Vec<u8>>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
            for (h, raw) in chunk.iter().zip(raws) {
                if let Some(why) = self.judged(raw.as_deref()) {
                    self.inner.holds.notify(h, why);
                }
            }
        }
        Ok(())
    }
}

impl Hold {
    /// Resolves when the session ends, with why. Cancel-safe: what it learnt stays in
    /// the hold, so it can be polled again.
    pub async fn ended(&mut self) -> EndReason {
        loop {
            let (at, why) = self.next_end();
            let due = at.saturating_mul(1000);
            // Capped, so that a far end is a long sleep, not an overflowing deadline.
            let wait = Duration::from_millis(due.saturating_sub(now_millis()).min(86_400_000));
            let announced = async {
                match self.rx.as_mut() {
                    Some(rx) => rx.await.unwrap_or(EndReason::Ended),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                why = announced => {
                    self.rx = None;
                    return why;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            if now_millis() < due {
                continue;
            }
            if why != EndReason::IdleTimeout {
                return why;
            }
            // The idle end by what this hold knew: other requests may have moved it on.
            let Some(hash) = self.hash.clone() else { return why };
            let raw: Result<Option<Vec<u8>>, _> =
                self.store.query(redis::cmd("GET").arg(self.store.key_of_hash(&hash))).await;
            let s = match raw {
                Err(_) => return EndReason::StoreUnavailable,
                Ok(None) => return EndReason::Ended,
                Ok(Some(raw)) => match serde_json::from_slice::<Session>(&raw) {
                    Ok(s) => s,
                    Err(_) => return EndReason::Ended,
                },
            };
            if let Some(why) = judge(&s, now_secs(), &self.store.timeouts).0.as_ref().and_then(EndReason::of) {
                return why;
            }
            self.created = s.created;
            self.last_seen = s.last_seen;
            self.lifetime = s.lifetime;
        }
    }

    /// The next end this hold knows of (unix seconds), and what it would be.
    fn next_end(&self) -> (u64, EndReason) {
        let t = &self.store.timeouts;
        let (idle, absolute) = match self.lifetime {
            Some(l) => (l.idle_secs, l.absolute_secs),
            None => (t.idle.as_secs(), t.absolute.as_secs()),
        };
        let mut next = (u64::MAX, EndReason::NotAfter);
        // A per-user hold has no record: only its `not_after` and announcements end it.
        if self.hash.as_deref().is_some_and(|h| !h.starts_with("user:")) {
            for c in [
                (self.created.saturating_add(absolute), EndReason::Expired),
                (self.last_seen.saturating_add(idle), EndReason::IdleTimeout),
            ] {
                if c.0 < next.0 {
                    next = c;
                }
            }
        }
        if let Some(n) = self.not_after.filter(|n| *n < next.0) {
            next = (n, EndReason::NotAfter);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::EndReason;

    #[test]
    fn reasons_read_back_and_unknown_ones_still_end() {
        for r in [EndReason::Revoked, EndReason::Logout, EndReason::BackchannelLogout, EndReason::IdleTimeout] {
            assert_eq!(EndReason::parse(r.as_str()), r);
        }
        assert_eq!(EndReason::parse("something_new"), EndReason::Ended);
    }
}

//! The session cache: parsed session records kept in memory, so that a signed-in request
//! costs no Redis round trip and no JSON parse. Bounded (least recently used entries go
//! first), and trusted only while Redis tells this gateway of every change to a session
//! key ([`super::tracking`]: `CLIENT TRACKING … BCAST` on the session-end connection).
//!
//! Three rules keep it from serving a session that ended:
//!
//! - **Every change drops its entry.** An invalidation from Redis (any client's write,
//!   delete or expiry of `<prefix>:s:…`), an end announced on the session-end channel, and
//!   this gateway's own end of a session (before the ending call returns) all remove it;
//!   an invalidation without keys (`FLUSHDB`, `FLUSHALL`) clears everything.
//! - **An invalidation beats the read it overtook.** A miss takes a [`Ticket`] (the
//!   cache's epoch) before it reads Redis; every drop moves the epoch on; the record read
//!   is kept only if the epoch is still the ticket's, checked under the lock the drops
//!   take. A read that was in flight when its key changed is used once, never kept.
//! - **Fail closed.** The cache answers only while tracking is known live: set up on the
//!   current connection and its last pong less than [`FRESH`] old. A lost connection
//!   clears it and turns it off; it is cleared again when tracking is back, before it
//!   answers.
//!
//! Timeouts are judged by the store on every request, cached or not (the server clock).

use super::Session;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How old the tracking connection's last pong may be for the cache to answer (it pings
/// every [`super::tracking::PING_EVERY`]).
pub const FRESH: Duration = Duration::from_secs(2);

/// The cache of one store. `None` inside: caching is off (`session.max_cached_sessions = 0`).
pub(super) struct Cache {
    state: Option<Mutex<State>>,
}

struct State {
    entries: LruCache<String, Arc<Session>>,
    /// Moved on by every drop (see the module).
    epoch: u64,
    /// Tracking is set up on the current connection.
    live: bool,
    /// When the tracking connection last answered a ping (a monotonic clock: a step of
    /// the wall clock must not make an old pong look fresh).
    pong: Option<Instant>,
}

/// The epoch a miss saw before reading Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket(u64);

/// What the cache said of a session.
pub(super) enum Answer {
    Hit(Arc<Session>),
    /// Read Redis; keep what it says only with the ticket (`None`: do not keep it).
    Miss(Option<Ticket>),
}

impl Cache {
    /// A cache of at most `max` sessions; 0: no cache.
    pub(super) fn new(max: usize) -> Cache {
        let state = NonZeroUsize::new(max)
            .map(|n| Mutex::new(State { entries: LruCache::new(n), epoch: 0, live: false, pong: None }));
        Cache { state }
    }

    pub(super) fn enabled(&self) -> bool {
        self.state.is_some()
    }

    /// The state, if caching is on. A poisoned lock is taken over: a drop must still drop.
    fn state(&self) -> Option<MutexGuard<'_, State>> {
        self.state.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn usable(st: &State) -> bool {
        st.live && st.pong.is_some_and(|p| p.elapsed() < FRESH)
    }

    /// The cached record of `hash`, or a ticket for keeping the one about to be read.
    pub(super) fn lookup(&self, hash: &str) -> Answer {
        let Some(mut st) = self.state() else { return Answer::Miss(None) };
        if !Self::usable(&st) {
            if !st.entries.is_empty() {
                // Pongs stopped: nothing cached is trusted (and nothing kept) until they
                // are answered again, or tracking is set up again.
                Self::drop_all(&mut st);
            }
            crate::metrics::SESSION_CACHE_MISSES.inc();
            return Answer::Miss(None);
        }
        if let Some(s) = st.entries.get(hash) {
            crate::metrics::SESSION_CACHE_HITS.inc();
            return Answer::Hit(s.clone());
        }
        crate::metrics::SESSION_CACHE_MISSES.inc();
        Answer::Miss(Some(Ticket(st.epoch)))
    }

    /// Keeps `s`, read from Redis after `ticket` was taken, unless anything was dropped
    /// since (it may be older than that drop) or tracking was lost.
    pub(super) fn insert(&self, hash: &str, s: Arc<Session>, ticket: Ticket) {
        let Some(mut st) = self.state() else { return };
        if st.epoch == ticket.0 && Self::usable(&st) {
            st.entries.put(hash.to_string(), s);
        }
    }

    /// Puts `new` in place of `old` if `old` is still what is cached for `hash` (this
    /// gateway's own `last_seen` write, so that concurrent requests do not write it too).
    pub(super) fn replace(&self, hash: &str, old: &Arc<Session>, new: Arc<Session>) {
        let Some(mut st) = self.state() else { return };
        if let Some(e) = st.entries.peek_mut(hash) {
            if Arc::ptr_eq(e, old) {
                *e = new;
            }
        }
    }

    /// The session `hash` changed or ended.
    pub(super) fn invalidate(&self, hash: &str) {
        let Some(mut st) = self.state() else { return };
        st.epoch = st.epoch.wrapping_add(1);
        st.entries.pop(hash);
    }

    /// Everything may have changed (a flush, a lost or new tracking connection).
    pub(super) fn clear(&self) {
        if let Some(mut st) = self.state() {
            Self::drop_all(&mut st);
        }
    }

    fn drop_all(st: &mut State) {
        st.epoch = st.epoch.wrapping_add(1);
        st.entries.clear();
    }

    /// Tracking is set up on a new connection: start from nothing, and answer.
    pub(super) fn tracking_live(&self) {
        if let Some(mut st) = self.state() {
            Self::drop_all(&mut st);
            st.live = true;
            st.pong = Some(Instant::now());
        }
    }

    /// The tracking connection is lost: invalidations may be missed from now on.
    pub(super) fn tracking_lost(&self) {
        if let Some(mut st) = self.state() {
            st.live = false;
            Self::drop_all(&mut st);
        }
    }

    /// The tracking connection answered a ping.
    pub(super) fn pong(&self) {
        if let Some(mut st) = self.state() {
            st.pong = Some(Instant::now());
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().map_or(0, |st| st.entries.len())
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;

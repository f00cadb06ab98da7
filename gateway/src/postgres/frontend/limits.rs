//! The front end's counters, per gateway: failed sign-ins per user and per client
//! address, cancel requests per address (both per minute), and live connections per
//! person and per database. Bounded: the per-minute tables forget a key a minute after
//! its last event, and refuse nothing because they are full (they drop the oldest).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys a per-minute table holds at most (a flood of new addresses cannot grow it).
const MAX_KEYS: usize = 65_536;

/// Events per key in the last minute.
pub struct PerMinute {
    max: u32,
    seen: Mutex<HashMap<String, (Instant, u32)>>,
}

impl PerMinute {
    pub fn new(max: u32) -> PerMinute {
        PerMinute { max, seen: Mutex::new(HashMap::new()) }
    }

    /// Whether `key` is over the limit now.
    pub fn over(&self, key: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(key).is_some_and(|(start, n)| start.elapsed() < WINDOW && *n >= self.max)
    }

    /// Counts an event for `key`; true when it is over the limit with it.
    pub fn hit(&self, key: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(key) {
            seen.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if seen.len() >= MAX_KEYS {
                // Still full of live keys: forget the oldest window.
                if let Some(k) = seen.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| k.clone()) {
                    seen.remove(&k);
                }
            }
        }
        let e = seen.entry(key.to_string()).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
        e.1 > self.max
    }
}

/// Live connections per (database, person) and per database.
#[derive(Default)]
pub struct Connections {
    live: Mutex<HashMap<(String, String), usize>>,
    per_db: Mutex<HashMap<String, usize>>,
}

/// One counted connection; dropping it counts it out.
pub struct Slot<'a> {
    owner: &'a Connections,
    db: String,
    person: String,
}

impl Connections {
    /// Counts a connection of `person` to `db` in, unless that would pass a limit.
    pub fn take<'a>(&'a self, db: &str, person: &str, per_person: usize, total: usize) -> Option<Slot<'a>> {
        let mut per_db = self.per_db.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let key = (db.to_string(), person.to_string());
        if per_db.get(db).copied().unwrap_or(0) >= total || live.get(&key).copied().unwrap_or(0) >= per_person {
            return None;
        }
        *per_db.entry(db.to_string()).or_default() += 1;
        *live.entry(key).or_default() += 1;
        Some(Slot { owner: self, db: db.to_string(), person: person.to_string() })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut per_db = self.owner.per_db.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = self.owner.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_db.get_mut(&self.db) {
            *n -= 1;
            if *n == 0 {
                per_db.remove(&self.db);
            }
        }
        let key = (std::mem::take(&mut self.db), std::mem::take(&mut self.person));
        if let Some(n) = live.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                live.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_per_key() {
        let l = PerMinute::new(2);
        assert!(!l.hit("alice") && !l.hit("alice"));
        assert!(l.over("alice") && l.hit("alice"));
        assert!(!l.over("bob"));
    }

    #[test]
    fn connection_slots_count_in_and_out() {
        let c = Connections::default();
        let a = c.take("ehr", "alice", 1, 2).unwrap();
        assert!(c.take("ehr", "alice", 1, 2).is_none(), "per person");
        let b = c.take("ehr", "bob", 1, 2).unwrap();
        assert!(c.take("ehr", "carol", 1, 2).is_none(), "total");
        drop(a);
        assert!(c.take("ehr", "alice", 1, 2).is_some());
        drop(b);
    }
}

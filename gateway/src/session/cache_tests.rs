//! The session cache, rule by rule: what is kept, what drops it, when it answers.

use super::*;

fn session(subject: &str) -> Arc<Session> {
    Arc::new(Session::test(subject, 1, 1))
}

fn live(max: usize) -> Cache {
    let c = Cache::new(max);
    c.tracking_live();
    c
}

fn ticket(c: &Cache, hash: &str) -> Ticket {
    match c.lookup(hash) {
        Answer::Miss(Some(t)) => t,
        Answer::Miss(None) => panic!("the cache is not live"),
        Answer::Hit(_) => panic!("{hash} is cached"),
    }
}

fn hit(c: &Cache, hash: &str) -> Option<Arc<Session>> {
    match c.lookup(hash) {
        Answer::Hit(s) => Some(s),
        Answer::Miss(_) => None,
    }
}

#[test]
fn a_kept_record_is_answered_without_a_copy() {
    let c = live(10);
    let t = ticket(&c, "h");
    let s = session("alice");
    c.insert("h", s.clone(), t);
    let got = hit(&c, "h").expect("cached");
    assert!(Arc::ptr_eq(&got, &s));
}

#[test]
fn an_invalidation_during_the_read_wins() {
    let c = live(10);
    let t = ticket(&c, "h");
    // The key changes while its read is in flight: the (old) record read is not kept.
    c.invalidate("h");
    c.insert("h", session("old"), t);
    assert!(hit(&c, "h").is_none());
    // Any drop counts, another key's or a flush.
    let t = ticket(&c, "h");
    c.invalidate("other");
    c.insert("h", session("old"), t);
    assert!(hit(&c, "h").is_none());
    let t = ticket(&c, "h");
    c.clear();
    c.insert("h", session("old"), t);
    assert!(hit(&c, "h").is_none());
    // Undisturbed, it is kept.
    let t = ticket(&c, "h");
    c.insert("h", session("new"), t);
    assert_eq!(hit(&c, "h").map(|s| s.subject.clone()).as_deref(), Some("new"));
}

#[test]
fn invalidation_and_flush_drop_entries() {
    let c = live(10);
    for h in ["a", "b", "c"] {
        let t = ticket(&c, h);
        c.insert(h, session(h), t);
    }
    c.invalidate("b");
    assert!(hit(&c, "a").is_some() && hit(&c, "b").is_none() && hit(&c, "c").is_some());
    c.clear();
    assert_eq!(c.len(), 0);
}

#[test]
fn nothing_is_answered_or_kept_without_live_tracking() {
    let c = Cache::new(10);
    // Never set up.
    assert!(matches!(c.lookup("h"), Answer::Miss(None)));
    c.tracking_live();
    let t = ticket(&c, "h");
    c.insert("h", session("alice"), t);
    assert!(hit(&c, "h").is_some());
    // Lost: cleared, and a read in flight from before is not kept.
    let t = ticket(&c, "k");
    c.tracking_lost();
    assert_eq!(c.len(), 0);
    assert!(matches!(c.lookup("h"), Answer::Miss(None)));
    c.insert("k", session("bob"), t);
    assert_eq!(c.len(), 0);
    // Back: starts empty, and a ticket from before it is worth nothing.
    c.tracking_live();
    c.insert("k", session("bob"), t);
    assert_eq!(c.len(), 0);
    assert!(matches!(c.lookup("k"), Answer::Miss(Some(_))));
}

#[test]
fn unanswered_pings_turn_it_off() {
    let c = live(10);
    let t = ticket(&c, "h");
    c.insert("h", session("alice"), t);
    let t = ticket(&c, "k");
    c.state().unwrap().pong = std::time::Instant::now().checked_sub(FRESH + std::time::Duration::from_millis(1));
    assert!(matches!(c.lookup("h"), Answer::Miss(None)));
    assert_eq!(c.len(), 0, "a stale cache was kept");
    c.insert("k", session("bob"), t);
    assert_eq!(c.len(), 0);
    // Answered again: caching resumes from empty.
    c.pong();
    assert!(matches!(c.lookup("h"), Answer::Miss(Some(_))));
}

#[test]
fn bounded_least_recently_used_first() {
    let c = live(2);
    for h in ["a", "b"] {
        let t = ticket(&c, h);
        c.insert(h, session(h), t);
    }
    assert!(hit(&c, "a").is_some()); // "b" is now the least recently used
    let t = ticket(&c, "c");
    c.insert("c", session("c"), t);
    assert_eq!(c.len(), 2);
    assert!(hit(&c, "b").is_none());
    assert!(hit(&c, "a").is_some() && hit(&c, "c").is_some());
}

#[test]
fn zero_is_no_cache() {
    let c = Cache::new(0);
    c.tracking_live();
    assert!(!c.enabled());
    assert!(matches!(c.lookup("h"), Answer::Miss(None)));
}

#[test]
fn a_touch_replaces_only_what_it_read() {
    let c = live(10);
    let t = ticket(&c, "h");
    let first = session("first");
    c.insert("h", first.clone(), t);
    // Replaced meanwhile by a newer read: the touch does not put back its older copy.
    c.invalidate("h");
    let t = ticket(&c, "h");
    let newer = session("newer");
    c.insert("h", newer.clone(), t);
    c.replace("h", &first, session("touched-first"));
    assert!(Arc::ptr_eq(&hit(&c, "h").expect("cached"), &newer));
    c.replace("h", &newer, session("touched"));
    assert_eq!(hit(&c, "h").map(|s| s.subject.clone()).as_deref(), Some("touched"));
    // Gone: nothing is brought back.
    c.invalidate("h");
    c.replace("h", &newer, session("again"));
    assert!(hit(&c, "h").is_none());
}

#[test]
fn hits_and_misses_are_counted() {
    let (hits, misses) = (crate::metrics::SESSION_CACHE_HITS.get(), crate::metrics::SESSION_CACHE_MISSES.get());
    let c = live(10);
    let t = ticket(&c, "h");
    c.insert("h", session("alice"), t);
    hit(&c, "h");
    hit(&c, "h");
    // Other tests count too: at least ours.
    assert!(crate::metrics::SESSION_CACHE_HITS.get() >= hits + 2);
    assert!(crate::metrics::SESSION_CACHE_MISSES.get() > misses);
}

#[tokio::test]
async fn the_gateway_that_ends_or_rewrites_a_session_drops_it_before_returning() {
    // Nothing listens there: the announcement and the rewrite fail, the local drop must not.
    let timeouts = crate::session::Timeouts {
        idle: Duration::from_secs(900),
        absolute: Duration::from_secs(43_200),
        touch_interval: Duration::from_secs(60),
    };
    let store = crate::session::SessionStore::with_cache(
        crate::session::StoreConfig::plain("redis://127.0.0.1:1/", "t"),
        timeouts,
        10,
    )
    .unwrap();
    let c = &store.inner.cache;
    c.tracking_live();
    let t = ticket(c, "h");
    c.insert("h", session("alice"), t);
    store.announce("h", crate::session::EndReason::Logout).await;
    assert!(hit(c, "h").is_none(), "an ended session stayed cached");
    let t = ticket(c, "k");
    c.insert("k", session("bob"), t);
    assert!(store.save("k", &session("bob")).await.is_err());
    assert!(hit(c, "k").is_none(), "a rewritten session stayed cached");
    // A revocation and a logout whose Redis call fails (it may still have run there).
    let t = ticket(c, "r");
    c.insert("r", session("carol"), t);
    assert!(store.end_by_hash("r", None).await.is_err());
    assert!(hit(c, "r").is_none(), "a revoked session stayed cached");
    let id = crate::session::SessionId::generate().unwrap();
    let t = ticket(c, &id.hash());
    c.insert(&id.hash(), session("dave"), t);
    assert!(store.delete(&id).await.is_err());
    assert!(hit(c, &id.hash()).is_none(), "a logged-out session stayed cached");
}

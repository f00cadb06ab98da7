//! The Redis session store against a real redis-server: ids stored only by hash, idle
//! timeout, absolute lifetime, touch keeping an active session alive, logout, no
//! resurrection, and a clear error when Redis is down.

use crate::harness::*;
use custos::session::{Lookup, Session, SessionError, SessionId, SessionStore, Timeouts};
use std::time::Duration;

fn user() -> Session {
    Session {
        subject: "alice".into(),
        email: Some("alice@example.test".into()),
        name: None,
        groups: vec!["clinicians".into()],
        amr: vec!["pwd".into(), "otp".into()],
        acr: None,
        auth_time: Some(1),
        created: 0,
        last_seen: 0,
        client: Some("127.0.0.1".into()),
        sid: None,
        idp_sub: None,
        validated: 0,
        breakglass: None,
        sealed: false,
        db: None,
        lifetime: None,
    }
}

fn t(idle: u64, absolute: u64, touch: u64) -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(idle),
        absolute: Duration::from_secs(absolute),
        touch_interval: Duration::from_secs(touch),
    }
}

async fn store(prefix: &str, timeouts: Timeouts) -> SessionStore {
    SessionStore::connect(redis_url(), &format!("custos:test:{prefix}:{}", uuid::Uuid::now_v7().simple()), timeouts)
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_live_by_hash_and_end_on_idle_absolute_and_logout() {
    let basic = store("basic", t(60, 600, 60)).await;
    let idle = store("idle", t(1, 600, 0)).await;
    let touched = store("touched", t(4, 600, 0)).await;
    let absolute = store("absolute", t(60, 2, 0)).await;

    // Created under a fresh id; Redis holds the record under the id's hash only.
    let id = basic.create(user(), None, None).await.unwrap();
    match basic.load(&id).await.unwrap() {
        Lookup::Active(s) => assert_eq!((s.subject.as_str(), s.amr.len()), ("alice", 2)),
        other => panic!("{other:?}"),
    }
    let mut c = redis::Client::open(redis_url()).unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("custos:test:basic:*").query(&mut c).unwrap();
    assert!(keys.iter().any(|k| k.ends_with(&id.hash())), "{keys:?}");
    for k in &keys {
        assert!(!k.contains(id.cookie_value()), "the cookie value is a Redis key");
        // Records are strings; the per-user index is a set of hashes.
        let kind: String = redis::cmd("TYPE").arg(k).query(&mut c).unwrap();
        let v: String = match kind.as_str() {
            "set" => redis::cmd("SMEMBERS").arg(k).query::<Vec<String>>(&mut c).unwrap().join(" "),
            _ => redis::cmd("GET").arg(k).query(&mut c).unwrap(),
        };
        assert!(!v.contains(id.cookie_value()), "the cookie value is stored");
    }
    // A client-made id is not a session, and a logged-out one stays gone.
    let forged = SessionId::generate().unwrap();
    assert_eq!(basic.load(&forged).await.unwrap(), Lookup::Missing);
    assert!(basic.delete(&id).await.unwrap());
    assert_eq!(basic.load(&id).await.unwrap(), Lookup::Missing);

    let (i, tt, a) = (
        idle.create(user(), None, None).await.unwrap(),
        touched.create(user(), None, None).await.unwrap(),
        absolute.create(user(), None, None).await.unwrap(),
    );
    // Touched every second for 5 s, a 4 s idle timeout never fires (whole seconds: up to
    // 2 s between two touches are safe on a loaded machine); untouched, a 1 s one does.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(matches!(touched.load(&tt).await.unwrap(), Lookup::Active(_)), "an active session was logged off");
    }
    assert!(matches!(idle.load(&i).await.unwrap(), Lookup::IdleTimeout(_) | Lookup::Missing));
    assert_eq!(idle.load(&i).await.unwrap(), Lookup::Missing, "a timed-out session came back");
    // Active or not, the absolute lifetime ends it.
    assert!(matches!(absolute.load(&a).await.unwrap(), Lookup::Expired(_) | Lookup::Missing));
}

#[tokio::test]
async fn redis_down_is_a_clear_error_not_a_hang() {
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let started = std::time::Instant::now();
    let r = SessionStore::connect(&url, "custos:test:down", t(60, 600, 60)).await;
    assert!(matches!(r, Err(SessionError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

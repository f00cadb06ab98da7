//! The session cache never outlives a session: two gateways sharing one Redis and key
//! prefix, one serving a cached session under concurrent load; the session revoked
//! through the other is refused within 100 ms, and no request that started later is
//! served. A logout and an idle timeout on the gateway that caches refuse the very next
//! request there. With the tracking connection killed, a change made meanwhile (whose
//! invalidation is lost with it) is still seen: the cache is dropped and reads go to
//! Redis.

use crate::harness::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How soon another gateway must refuse a revoked session.
const BOUND: Duration = Duration::from_millis(100);

const HITS: &str = "custos_session_cache_hits_total";
const MISSES: &str = "custos_session_cache_misses_total";

/// One request of the load: when it started, its status.
type Sample = (Instant, u16);

/// Tasks looping `GET /` with one session cookie, each on its own kept-alive client.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn load(s: &Site, cookie: &str, tasks: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..tasks)
        .map(|_| {
            let (stop, samples) = (stop.clone(), samples.clone());
            let url = format!("{}/", s.origin);
            let cookie = format!("custos_session={cookie}");
            tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = match c.get(&url).header("cookie", &cookie).send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    samples.lock().unwrap().push((started, status));
                }
            })
        })
        .collect();
    Load { stop, samples, tasks }
}

impl Load {
    /// Waits (at most 20 s: the machine may be loaded) until `n` requests have started
    /// at or after `from`.
    async fn until_started(&self, n: usize, from: Instant) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.samples.lock().unwrap().iter().filter(|(t, _)| *t >= from).count() < n {
            assert!(Instant::now() < deadline, "the load is too slow");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let mut v = self.samples.lock().unwrap().clone();
        v.sort_by_key(|s| s.0);
        v
    }
}

/// Every request that started 100 ms or more after `after` was refused (and there were
/// some).
fn refused_within_bound(samples: &[Sample], after: Instant, what: &str) {
    let late_served: Vec<_> =
        samples.iter().filter(|(t, st)| *t >= after + BOUND && *st != 401).map(|(t, st)| (*t - after, *st)).collect();
    assert!(
        late_served.is_empty(),
        "{what}: requests started more than 100 ms later were not refused: {late_served:?}"
    );
    assert!(samples.iter().filter(|(t, _)| *t >= after + BOUND).count() >= 10, "{what}: too little load after");
}

async fn metric_of(s: &Site, name: &str) -> f64 {
    metric(&s.gw, name).await.unwrap_or(0.0)
}

/// Loads `cookie` on `s` until the cache answers it (hits grow), for at most 10 s.
async fn until_cached(s: &Site, cookie: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = metric_of(s, HITS).await;
        for _ in 0..5 {
            assert_eq!(status_with(s, cookie).await, 200);
        }
        if metric_of(s, HITS).await >= before + 4.0 {
            return;
        }
        assert!(Instant::now() < deadline, "the session cache never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_session_revoked_through_another_gateway_is_refused_under_load_within_100ms() {
    let dir = tempfile::tempdir().unwrap();
    let (token, line) = admin_token(dir.path(), "ops-oncall");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let prefix = format!("custos:test:{}", uuid::Uuid::now_v7().simple());
    let a = site(Opts { prefix: Some(prefix.clone()), ..Default::default() }).await;
    let b = site(Opts { prefix: Some(prefix.clone()), admin_tokens: Some(&tokens), ..Default::default() }).await;

    let r = sign_in(&a, &browser(), "/", "alice", "alice-password", None).await;
    let cookie = cookie_value(&r, "custos_session").expect("a session cookie");
    until_cached(&a, &cookie).await;
    assert_eq!(status_with(&b, &cookie).await, 200);

    let hits = metric_of(&a, HITS).await;
    let running = load(&a, &cookie, 4);
    running.until_started(40, Instant::now()).await;
    let revoked = client()
        .post(format!("http://{}/sessions/revoke?session={}", b.gw.admin, sha256(&cookie)))
        .bearer_auth(std::fs::read_to_string(&token).unwrap())
        .send()
        .await
        .unwrap();
    let returned = Instant::now();
    let body = revoked.text().await.unwrap();
    assert!(body.contains("\"revoked\":1"), "{body}");
    running.until_started(10, returned + BOUND).await;
    let samples = running.finish().await;

    let before: Vec<_> = samples.iter().filter(|(t, _)| *t + Duration::from_millis(50) < returned).collect();
    assert!(
        before.len() >= 20 && before.iter().all(|(_, st)| *st == 200),
        "the load before the revocation: {before:?}"
    );
    assert!(
        metric_of(&a, HITS).await >= hits + before.len() as f64 * 0.9,
        "the load was not served from the session cache"
    );
    refused_within_bound(&samples, returned, "revoked through the other gateway");
    assert_eq!(status_with(&b, &cookie).await, 401);
}

#[tokio::test]
async fn a_logout_or_an_idle_timeout_is_refused_on_the_next_request_where_it_was_cached() {
    let a = site(Opts { session: "idle_timeout_secs = 3\ntouch_interval_secs = 1\n", ..Default::default() }).await;
    // Logout: the gateway's own end drops its cached record before answering.
    let c = browser();
    let r = sign_in(&a, &c, "/", "alice", "alice-password", None).await;
    let cookie = cookie_value(&r, "custos_session").expect("a session cookie");
    until_cached(&a, &cookie).await;
    let r = nav(&c, &format!("{}/.custos/logout", a.origin)).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(status_with(&a, &cookie).await, 401, "a logged-out session was served from the cache");

    // Idle timeout: judged on the cached record, on the server's clock.
    let r = sign_in(&a, &browser(), "/", "alice", "alice-password", None).await;
    let cookie = cookie_value(&r, "custos_session").expect("a session cookie");
    until_cached(&a, &cookie).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Still served from the cache (a `last_seen` write, due once a second, drops the
    // record and the next request reads it back: hence a few tries).
    until_cached(&a, &cookie).await;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(status_with(&a, &cookie).await, 401, "an idle session was served from the cache");
}

/// The ids of the session-end (tracking) connections on `url`.
fn tracking_clients(conn: &mut redis::Connection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(conn).unwrap();
    list.lines()
        .filter(|l| l.split(' ').any(|f| f == format!("name={}", custos::session::tracking::CLIENT_NAME)))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_string))
        .collect()
}

#[tokio::test]
async fn with_the_tracking_connection_killed_reads_go_to_redis() {
    // A Redis of its own: its connections are killed.
    let port = free_port();
    let _redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}/");
    let a = site(Opts { redis: &url, ..Default::default() }).await;
    let mut conn = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();

    let r = sign_in(&a, &browser(), "/", "alice", "alice-password", None).await;
    let cookie = cookie_value(&r, "custos_session").expect("a session cookie");
    until_cached(&a, &cookie).await;
    let running = load(&a, &cookie, 4);
    running.until_started(20, Instant::now()).await;

    // The session ends while the tracking connection is down: its invalidation is lost.
    let ids = tracking_clients(&mut conn);
    assert_eq!(ids.len(), 1, "one tracking connection per gateway and store");
    let misses = metric_of(&a, MISSES).await;
    let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&ids[0]).query(&mut conn).unwrap();
    let key = format!("{}:s:{}", a.prefix, sha256(&cookie));
    let deleted: i64 = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
    let returned = Instant::now();
    assert_eq!(deleted, 1);
    running.until_started(10, returned + BOUND).await;
    let samples = running.finish().await;
    refused_within_bound(&samples, returned, "ended while tracking was down");
    assert!(metric_of(&a, MISSES).await > misses, "the reads did not go to Redis");

    // Tracking comes back by itself, and the cache with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracking_clients(&mut conn).len() != 1 {
        assert!(Instant::now() < deadline, "the tracking connection did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = sign_in(&a, &browser(), "/", "alice", "alice-password", None).await;
    let cookie = cookie_value(&r, "custos_session").expect("a session cookie");
    until_cached(&a, &cookie).await;
}

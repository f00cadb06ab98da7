//! Records per second through the audit spool, as the proxy uses it: N concurrent
//! writers, each waiting until its record is durable (`append_durable`), for 5 s per
//! level. Prints records/s, latency p50/p99 and records per fsync (group commit).
//!
//!   cargo bench --bench spool
//!
//! Never run by CI. `SPOOL_DIR` picks the filesystem (default: the system temp dir).

use custos::audit::{Audit, AuditSettings, Event, Kind, OnFailure};
use custos::http::metrics::AUDIT_FSYNC;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = std::env::var_os("SPOOL_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    println!("{:>11} {:>10} {:>9} {:>9} {:>12}", "concurrency", "records/s", "p50_ms", "p99_ms", "recs/fsync");
    for concurrency in [1usize, 8, 32, 128] {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let settings = AuditSettings {
            enabled: true,
            dir: dir.path().join("audit"),
            on_failure: OnFailure::Deny,
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            signing_key: None,
            key_base: dir.path().to_path_buf(),
            redis: None,
            file: None,
            webhook: None,
            otlp: None,
            queue_limit: custos::audit::QUEUE_LIMIT,
            retry_max: custos::audit::RETRY_MAX,
            sink_alert_after: custos::audit::SINK_ALERT_AFTER,
            spool_max_bytes: 0,
        };
        let audit = Audit::start(&settings, &[]).expect("open the spool");
        let fsyncs_before = AUDIT_FSYNC.get_sample_count();
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let audit = audit.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let mut ev = Event::new(Kind::AccessDecision);
                    ev.route = Some("bench".into());
                    ev.method = Some("GET".into());
                    ev.path = Some(format!("/patients/{w}"));
                    ev.client = Some("127.0.0.1".into());
                    ev.request_id = Some(uuid::Uuid::now_v7().to_string());
                    let t = Instant::now();
                    audit.append_durable(ev).await.expect("durable append");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("writer task"));
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
        let fsyncs = AUDIT_FSYNC.get_sample_count() - fsyncs_before;
        println!(
            "{:>11} {:>10.0} {:>9.3} {:>9.3} {:>12.1}",
            concurrency,
            lat.len() as f64 / secs,
            pct(0.50),
            pct(0.99),
            lat.len() as f64 / fsyncs.max(1) as f64
        );
    }
}

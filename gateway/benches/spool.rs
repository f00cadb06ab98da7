//! Records per second through the audit spool, as the proxy uses it: N concurrent
//! requests, each appending its decision record and waiting until it is durable
//! (`append_durable`), then its completion record, which nobody waits on (`append`),
//! for 5 s per level. Prints records/s, the durable wait's p50/p99, records per fsync
//! (group commit), and the CPU each record costs on either side of the queue: the
//! producers (the runtime's worker threads, building and sending records) and the
//! `custos-audit` writer thread (encoding, hashing, writing and syncing them), read
//! per thread from `/proc/self/task/*/schedstat`.
//!
//!   cargo bench --bench spool
//!
//! Never run by CI. `SPOOL_DIR` picks the filesystem (default: the system temp dir; put
//! it on a real disk, where `fdatasync` costs what it costs in production).

use custos::audit::{Actor, Audit, AuditSettings, Decision, Event, Kind, OnFailure};
use custos::http::metrics::{AUDIT_FSYNC, AUDIT_RECORDS};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Nanoseconds of CPU each of this process's threads has run: by thread id, with its name.
fn thread_cpu() -> HashMap<String, (String, u64)> {
    let mut by_tid = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return by_tid };
    for t in tasks.flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
        let ns = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
            .unwrap_or(0);
        by_tid.insert(t.file_name().to_string_lossy().into_owned(), (name, ns));
    }
    by_tid
}

/// CPU of the writer thread and of the runtime's workers (the producers) since `before`
/// (a thread is matched by id: an earlier level's writer that has stopped since counts
/// for nothing here).
fn cpu_since(before: &HashMap<String, (String, u64)>) -> (u64, u64) {
    let now = thread_cpu();
    let delta = |pred: &dyn Fn(&str) -> bool| -> u64 {
        now.iter()
            .filter(|(_, (n, _))| pred(n))
            .map(|(tid, (_, ns))| ns.saturating_sub(before.get(tid).map_or(0, |b| b.1)))
            .sum()
    };
    (delta(&|n| n == "custos-audit"), delta(&|n| n.starts_with("tokio-r")))
}

/// A decision record with the fields the proxy fills in.
fn decision(w: usize, actor: &Actor) -> Event {
    let mut ev = Event::new(Kind::AccessDecision);
    ev.actor = Some(actor.clone());
    ev.session = Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into());
    ev.mfa = Some(true);
    ev.route = Some("bench".into());
    ev.upstream = Some("http://127.0.0.1:9000".into());
    ev.method = Some("GET".into());
    ev.path = Some(format!("/patients/{w}"));
    ev.client = Some("127.0.0.1".into());
    ev.request_id = Some(uuid::Uuid::now_v7().to_string());
    ev.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    ev.span_id = Some("00f067aa0ba902b7".into());
    ev.decision = Some(Decision::Allow);
    ev.rule = Some("p, clinician, /patients/*, GET".into());
    ev
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = std::env::var_os("SPOOL_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let secs_per_level: u64 = std::env::var("SPOOL_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    println!(
        "{:>11} {:>10} {:>9} {:>9} {:>12} {:>14} {:>14}",
        "concurrency", "records/s", "p50_ms", "p99_ms", "recs/fsync", "producer_us/rec", "writer_us/rec"
    );
    let actor = Actor { subject: "alice@example.org".into(), groups: vec!["clinician".into(), "staff".into()] };
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
        let records_before = AUDIT_RECORDS.get();
        let cpu_before = thread_cpu();
        let deadline = Instant::now() + Duration::from_secs(secs_per_level);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let audit = audit.clone();
            let actor = actor.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let ev = decision(w, &actor);
                    let t = Instant::now();
                    audit.append_durable(ev).await.expect("durable append");
                    lat.push(t.elapsed());
                    let mut done = decision(w, &actor);
                    done.kind = Kind::AccessCompleted;
                    done.decision = None;
                    done.status = Some(200);
                    done.bytes_out = Some(512);
                    audit.append(done);
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("writer task"));
        }
        let secs = started.elapsed().as_secs_f64();
        // Until the last completions are written (they wait for the next group or the
        // writer's timer), so both sides' CPU covers every record counted.
        let sent = 2 * lat.len() as u64;
        let wait = Instant::now();
        while AUDIT_RECORDS.get() - records_before < sent && wait.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (writer_ns, producer_ns) = cpu_since(&cpu_before);
        let records = (AUDIT_RECORDS.get() - records_before).max(1);
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
        let fsyncs = AUDIT_FSYNC.get_sample_count() - fsyncs_before;
        println!(
            "{:>11} {:>10.0} {:>9.3} {:>9.3} {:>12.1} {:>15.2} {:>14.2}",
            concurrency,
            records as f64 / secs,
            pct(0.50),
            pct(0.99),
            records as f64 / fsyncs.max(1) as f64,
            producer_ns as f64 / 1000.0 / records as f64,
            writer_ns as f64 / 1000.0 / records as f64,
        );
    }
}

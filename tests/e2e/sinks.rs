//! Audit sinks against a real redis-server and local HTTP receivers: every record reaches
//! the Redis Stream and the archive file exactly once, a sink that is down during load
//! gets everything once it is back, delivered segments are deleted, and the checkpoint
//! kept in Redis exposes a cut tail. The webhook signs its record range, retries for as
//! long as its receiver is down and dead-letters only what the receiver refuses as bad
//! (audited, redelivered on `custos audit redeliver`); OTLP retries send nothing twice
//! and refused requests have spans; a full spool refuses access until a sink catches up.

use crate::harness::*;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

fn unique(prefix: &str) -> String {
    format!("custos:test:{prefix}:{}", uuid::Uuid::now_v7().simple())
}

/// Ids of every record in the spool and (if given) the archive.
fn chain_ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.event.id.clone()).collect()
}

async fn wait_for_stream(url: &str, stream: &str, want: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let entries = stream_entries(url, stream);
        if entries.len() >= want || Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_stream_and_archive_file_get_every_record_once() {
    let demo = demo().await;
    let url = redis_url();
    let stream = unique("all");
    let archive = tempfile::tempdir().unwrap();
    let archive_file = archive.path().join("archive.jsonl");
    let mut gw = Gateway::builder()
        .config(format!(
        "[audit]\nsegment_bytes = 4096\ncheckpoint_every = 10\n[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n\
         [audit.file]\npath = \"{}\"\n{}",
        archive_file.display(),
        route_all(demo.addr)
    ))
        .start()
        .await;
    for i in 0..40 {
        assert_eq!(client().get(gw.url(&format!("/patients/{}", i % 3 + 1))).send().await.unwrap().status(), 200);
    }
    gw.stop().await; // waits for the sinks to take everything

    // The archive is the whole chain, and verifies on its own.
    let (code, out) = audit_verify(&[
        OsStr::new("--key"),
        gw.audit_dir().join("signing-key.pub").as_os_str(),
        OsStr::new("--redis"),
        OsStr::new(url),
        OsStr::new("--stream"),
        OsStr::new(&stream),
        archive_file.as_os_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("matches the checkpoint kept in Redis"), "{out}");
    let archived_lines: Vec<String> =
        std::fs::read_to_string(&archive_file).unwrap().lines().map(String::from).collect();
    let archived: Vec<Record> = archived_lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(archived.first().unwrap().seq, 1);
    // Delivered segments were deleted from the spool; the newest stays.
    let left = audit_records(&gw.audit_dir());
    assert!(left.len() < archived.len(), "no delivered segment was deleted ({} of {})", left.len(), archived.len());

    // The stream holds every record once, in chain order.
    let entries = wait_for_stream(url, &stream, archived.len()).await;
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, chain_ids(&archived), "stream and chain differ");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "duplicates in the stream");
    let line: serde_json::Value = serde_json::from_str(&entries[3].1).unwrap();
    let chain_line: serde_json::Value = serde_json::from_str(&archived_lines[3]).unwrap();
    assert_eq!(line, chain_line, "the stream's record is the chain line");
}

#[tokio::test]
async fn a_sink_down_during_load_gets_every_record_once_it_is_back() {
    let demo = demo().await;
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let stream = unique("down");
    let mut gw = Gateway::builder()
        .config(format!("[audit]\ncheckpoint_every = 50\n[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n"))
        .route(route_all(demo.addr))
        .start()
        .await;
    let mut load = Vec::new();
    for _ in 0..8 {
        let u = gw.url("/patients");
        load.push(tokio::spawn(async move {
            let c = client();
            let mut ok = 0;
            for _ in 0..25 {
                if c.get(&u).send().await.map(|r| r.status() == 200).unwrap_or(false) {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for l in load {
        ok += l.await.unwrap();
    }
    assert_eq!(ok, 200, "serving must not depend on a sink");
    // The failures show in the metrics (delivery retries with backoff).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (m, lag) = loop {
        let m = client().get(format!("http://{}/metrics", gw.admin)).send().await.unwrap().text().await.unwrap();
        let lag = m
            .lines()
            .find(|l| l.starts_with("custos_audit_sink_lag_records{sink=\"redis\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if (lag > 0 && m.contains("custos_audit_sink_failures_total{sink=\"redis\"}")) || Instant::now() > deadline {
            break (m, lag);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(lag > 0, "no lag shown while the sink is down\n{m}");
    let depth = m
        .lines()
        .find(|l| l.starts_with("custos_audit_spool_depth_records "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(depth > 0, "no spool depth shown while the sink is down\n{m}");
    assert!(m.contains("custos_audit_sink_failures_total{sink=\"redis\"}"), "{m}");

    // The sink comes back, and catches up with what the spool holds (its retry backoff
    // may be seconds; waited for here, not left to the shutdown's grace period).
    let _redis = start_redis(port);
    let held = audit_records(&gw.audit_dir()).len();
    assert!(wait_for_stream(&url, &stream, held).await.len() >= held, "the sink did not catch up once back");
    gw.stop().await;
    let records = audit_records(&gw.audit_dir());
    let entries = wait_for_stream(&url, &stream, records.len()).await;
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "duplicates in the stream");
    assert_eq!(ids, chain_ids(&records), "the stream is not the whole chain once");
    let (code, out) = audit_verify(&[gw.audit_dir().as_os_str()]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn the_checkpoint_in_redis_exposes_a_cut_tail() {
    let demo = demo().await;
    let url = redis_url();
    let stream = unique("tail");
    let mut gw = Gateway::builder()
        .config(format!("[audit]\ncheckpoint_every = 5\n[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n"))
        .route(route_all(demo.addr))
        .start()
        .await;
    for _ in 0..15 {
        client().get(gw.url("/patients")).send().await.unwrap();
    }
    gw.stop().await;
    let seg = gw.audit_dir().join("00000000000000000001.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&seg).unwrap().lines().map(String::from).collect();
    let copy = tempfile::tempdir().unwrap();
    let cut = copy.path().join("00000000000000000001.jsonl");
    std::fs::write(&cut, lines[..lines.len() - 4].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();

    // The file alone still verifies: a cut tail is invisible without the outside copy…
    let (code, out) = audit_verify(&[cut.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    // …and the checkpoint kept in Redis shows it.
    let args = [OsStr::new("--redis"), OsStr::new(url), OsStr::new("--stream"), OsStr::new(&stream)];
    let (code, out) = audit_verify(&[&args[..], &[cut.as_os_str()]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tail cut"), "{out}");
    let (code, out) = audit_verify(&[&args[..], &[seg.as_os_str()]].concat());
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn audit_tail_follows_the_stream_and_the_spool() {
    let demo = demo().await;
    let url = redis_url();
    let stream = unique("tailcmd");
    let gw = Gateway::builder()
        .config(format!("[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n"))
        .route(route_all(demo.addr))
        .start()
        .await;
    for _ in 0..3 {
        client().get(gw.url("/patients/2")).send().await.unwrap();
    }
    let is_decision = |l: &str| l.contains("\"access.decision\"") && l.contains("/patients/2");
    // Followed until the three decisions show (or 30 s pass), then stopped: what it
    // printed by then.
    let follow = |args: Vec<String>| {
        use std::io::BufRead;
        let mut child = std::process::Command::new(CUSTOS)
            .args(["audit", "tail"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        while lines.iter().filter(|l: &&String| is_decision(l)).count() < 3 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        lines.extend(rx.try_iter());
        lines.join("\n")
    };
    let from_redis =
        follow(vec!["--redis".into(), url.into(), "--stream".into(), stream.clone(), "--from-start".into()]);
    let from_dir = follow(vec!["--dir".into(), gw.audit_dir().display().to_string(), "--from-start".into()]);
    for out in [&from_redis, &from_dir] {
        let decisions = out.lines().filter(|l| is_decision(l)).count();
        assert_eq!(decisions, 3, "{out}");
    }
}

const WEBHOOK_SECRET: &[u8] = b"a-shared-webhook-secret-for-tests";

#[tokio::test]
async fn the_webhook_gets_signed_batches_and_retries_until_taken() {
    let demo = demo().await;
    let rx = receiver(WEBHOOK_SECRET, 2).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), WEBHOOK_SECRET).unwrap();
    let mut gw = Gateway::builder()
        .config(format!(
            "[audit.webhook]\nurl = \"http://{}/ingest\"\nsecret = {{ file = \"{}\" }}\n{}",
            rx.addr,
            dir.path().join("hook.secret").display(),
            route_all(demo.addr)
        ))
        .start()
        .await;
    for _ in 0..20 {
        client().get(gw.url("/patients/3")).send().await.unwrap();
    }
    gw.stop().await;
    let records = audit_records(&gw.audit_dir());
    let taken = rx.taken.lock().unwrap().clone();
    let ids: Vec<String> = taken.iter().map(|l| serde_json::from_str::<Record>(l).unwrap().event.id).collect();
    assert_eq!(ids, chain_ids(&records), "the receiver did not get the whole chain once, in order");
    assert_eq!(rx.bad_signatures.load(std::sync::atomic::Ordering::SeqCst), 0, "a request failed signature checks");

    // A wrong secret is caught by the receiver: the check above can fail. A 401 is not
    // the payload's fault: the batch is tried again and again, never dead-lettered.
    let wrong = receiver(b"another-secret-entirely-0123456", 0).await;
    let mut gw2 = Gateway::builder()
        .config(format!(
            "[audit]\n{FAST_RETRY}[audit.webhook]\nurl = \"http://{}/ingest\"\nsecret = {{ file = \"{}\" }}\n{}",
            wrong.addr,
            dir.path().join("hook.secret").display(),
            route_all(demo.addr)
        ))
        .start()
        .await;
    client().get(gw2.url("/patients/1")).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while wrong.bad_signatures.load(std::sync::atomic::Ordering::SeqCst) < 12 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wrong.bad_signatures.load(std::sync::atomic::Ordering::SeqCst) >= 12, "the sink stopped trying");
    assert!(wrong.taken.lock().unwrap().is_empty());
    assert_eq!(dead_letters(&gw2.audit_dir(), "webhook"), Vec::<String>::new());
    assert_eq!(metric(&gw2, "custos_audit_dead_letter_total").await, Some(0.0));
    gw2.stop().await;
}

/// The chain lines kept in the dead letters of `sink`.
fn dead_letters(audit: &std::path::Path, sink: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(audit.join("dead-letters").join(sink)) else { return Vec::new() };
    let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().map(String::from).collect::<Vec<_>>())
        .collect()
}

fn ids_of(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| serde_json::from_str::<Record>(l).unwrap().event.id).collect()
}

/// A receiver down for many more tries than the old budget of eight (and than any budget:
/// there is none) loses nothing: once it is back it gets every record exactly once, in
/// chain order, and nothing is dead-lettered.
#[tokio::test]
async fn a_webhook_down_for_longer_than_any_retry_budget_gets_every_record_once() {
    let demo = demo().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), WEBHOOK_SECRET).unwrap();
    let port = free_port();
    let mut gw = Gateway::builder().config(format!(
        "[audit]\n{FAST_RETRY}sink_alert_secs = 1\n[audit.webhook]\nurl = \"http://127.0.0.1:{port}/ingest\"\nsecret = {{ file = \"{}\" }}\n{}",
        dir.path().join("hook.secret").display(),
        route_all(demo.addr)
    )).start()
    .await;
    for i in 0..30 {
        assert_eq!(client().get(gw.url(&format!("/patients/{}", i % 3 + 1))).send().await.unwrap().status(), 200);
    }
    // Nothing listens on the receiver's port: wait for well over eight failed tries.
    let failures = "custos_audit_sink_failures_total{sink=\"webhook\"}";
    let deadline = Instant::now() + Duration::from_secs(40);
    while metric(&gw, failures).await.unwrap_or(0.0) < 24.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tried = metric(&gw, failures).await.unwrap_or(0.0);
    assert!(tried >= 24.0, "the sink stopped trying after {tried} failures");
    assert_eq!(
        dead_letters(&gw.audit_dir(), "webhook"),
        Vec::<String>::new(),
        "dead-lettered while the receiver was down"
    );
    // Loud: an ALERT after sink_alert_secs, and the age of the oldest waiting record.
    assert!(gw.log().contains("ALERT: an audit sink has taken nothing"), "{}", gw.log());
    let oldest = "custos_audit_sink_oldest_seconds{sink=\"webhook\"}";
    assert!(metric(&gw, oldest).await.unwrap_or(0.0) >= 1.0, "no age shown for the waiting records");

    // The receiver comes back, and more requests arrive.
    let rx = receiver_on(port, WEBHOOK_SECRET, 0).await;
    for _ in 0..5 {
        client().get(gw.url("/patients/1")).send().await.unwrap();
    }
    let lag = "custos_audit_sink_lag_records{sink=\"webhook\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while (rx.taken.lock().unwrap().is_empty() || metric(&gw, lag).await != Some(0.0)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&gw, oldest).await, Some(0.0), "the age stays shown after the sink is back");
    gw.stop().await;
    let records = audit_records(&gw.audit_dir());
    let deadline = Instant::now() + Duration::from_secs(15);
    while rx.taken.lock().unwrap().len() < records.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = ids_of(&rx.taken.lock().unwrap());
    assert_eq!(ids, chain_ids(&records), "the receiver did not get the whole chain exactly once, in order");
    assert_eq!(rx.bad_signatures.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!records.iter().any(|r| kind(&r.event) == "audit.dead_lettered"));
    assert_eq!(dead_letters(&gw.audit_dir(), "webhook"), Vec::<String>::new());
}

/// A receiver that says a batch itself is bad (400) gets it dead-lettered, on the record
/// (`audit.dead_lettered`: sink, count, first and last seq); the records after it still
/// flow; `custos audit redeliver` sends the dead letters again once the receiver is
/// fixed, and in the end the receiver holds every record exactly once.
#[tokio::test]
async fn a_batch_the_webhook_refuses_is_dead_lettered_on_the_record_and_redelivered() {
    let demo = demo().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), WEBHOOK_SECRET).unwrap();
    let rx = receiver(WEBHOOK_SECRET, 0).await;
    // Only the decision record of /patients/2 carries this.
    *rx.refuse.lock().unwrap() = Some("\"path\":\"/patients/2\",\"decision\"".into());
    let mut gw = Gateway::builder()
        .config(format!(
            "[audit]\n{FAST_RETRY}[audit.webhook]\nurl = \"http://{}/ingest\"\nsecret = {{ file = \"{}\" }}\n{}",
            rx.addr,
            dir.path().join("hook.secret").display(),
            route_all(demo.addr)
        ))
        .start()
        .await;
    let audit = gw.audit_dir();
    client().get(gw.url("/patients/1")).send().await.unwrap();
    client().get(gw.url("/patients/2")).send().await.unwrap();
    let dead = audit_has(&audit, |e| kind(e) == "audit.dead_lettered").await;
    assert_eq!(dead.sink.as_deref(), Some("webhook"), "{dead:?}");
    // Later records still flow.
    client().get(gw.url("/patients/3")).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !rx.taken.lock().unwrap().iter().any(|l| l.contains("/patients/3")) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rx.taken.lock().unwrap().iter().any(|l| l.contains("/patients/3")), "the sink stopped after a dead letter");
    let poisoned = audit_records(&audit)
        .into_iter()
        .find(|r| kind(&r.event) == "access.decision" && r.event.path.as_deref() == Some("/patients/2"))
        .unwrap();
    let (first, last, count) = (dead.first_seq.unwrap(), dead.last_seq.unwrap(), dead.count.unwrap());
    let seq = poisoned.seq;
    assert!(first <= seq && seq <= last && count == last - first + 1, "{dead:?}");
    let buried = dead_letters(&audit, "webhook");
    assert_eq!(buried.len() as u64, count, "one dead letter, holding what the record says");
    assert!(buried.iter().any(|l| l.contains("/patients/2")));
    assert!(!rx.taken.lock().unwrap().iter().any(|l| l.contains("\"path\":\"/patients/2\",\"decision\"")));
    assert!(metric(&gw, "custos_audit_dead_letter_total").await.unwrap_or(0.0) >= count as f64);

    // Fixed; redelivered by the running gateway on request, and that is on the record too.
    *rx.refuse.lock().unwrap() = None;
    let out = std::process::Command::new(CUSTOS)
        .args(["audit", "redeliver", "--dir"])
        .arg(&audit)
        .args(["--sink", "webhook"])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    let back = audit_has(&audit, |e| kind(e) == "audit.redelivered").await;
    assert_eq!((back.sink.as_deref(), back.count), (Some("webhook"), Some(count)), "{back:?}");
    assert_eq!((back.first_seq, back.last_seq), (Some(first), Some(last)), "{back:?}");
    assert_eq!(dead_letters(&audit, "webhook"), Vec::<String>::new());
    gw.stop().await;
    let records = audit_records(&audit);
    let deadline = Instant::now() + Duration::from_secs(15);
    while rx.taken.lock().unwrap().len() < records.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = ids_of(&rx.taken.lock().unwrap());
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), n, "a record reached the receiver twice");
    let mut want = chain_ids(&records);
    want.sort();
    assert_eq!(got, want, "the receiver does not hold the whole chain");
}

fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| match &v.value {
        Some(Value::StringValue(s)) => Some(s.clone()),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        _ => None,
    })
}

#[tokio::test]
async fn otlp_gets_every_record_as_a_log_and_each_request_as_a_span_of_its_trace() {
    let demo = demo().await;
    let otel = collector().await;
    let mut gw = Gateway::builder()
        .config(format!("[audit.otlp]\nendpoint = \"http://{}\"\n{}", otel.addr, route_all(demo.addr)))
        .start()
        .await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    client()
        .get(gw.url("/patients/1"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    for _ in 0..4 {
        client().get(gw.url("/patients/2")).send().await.unwrap();
    }
    gw.stop().await;

    let records = audit_records(&gw.audit_dir());
    let logs = otel.logs.lock().unwrap().clone();
    let mut ids: Vec<String> = logs.iter().filter_map(|l| attr(&l.attributes, "custos.event.id")).collect();
    ids.dedup();
    assert_eq!(ids, chain_ids(&records), "the collector did not get every record");

    // The upstream saw a traceparent continuing the caller's trace, with the gateway's
    // span as parent; the audit records and the exported span agree.
    let seen = demo.seen();
    let tp = seen[0].header("traceparent").expect("traceparent sent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts[0], parts[1]), ("00", caller_trace), "{tp}");
    let gateway_span = parts[2];
    assert_ne!(gateway_span, caller_span);
    let decision = records
        .iter()
        .find(|r| kind(&r.event) == "access.decision" && r.event.path.as_deref() == Some("/patients/1"))
        .unwrap();
    assert_eq!(decision.event.trace_id.as_deref(), Some(&*caller_trace));
    assert_eq!(decision.event.span_id.as_deref(), Some(&*gateway_span));
    let all_spans = otel.spans.lock().unwrap().clone();
    let spans: Vec<_> = all_spans.iter().filter(|s| s.kind == 2).cloned().collect();
    assert_eq!(spans.len(), 5, "one server span per request");
    let span = spans.iter().find(|s| hex::encode(&s.span_id) == gateway_span).expect("the request's span");
    assert_eq!(hex::encode(&span.trace_id), caller_trace);
    assert_eq!(hex::encode(&span.parent_span_id), caller_span);
    assert_eq!(attr(&span.attributes, "http.response.status_code").as_deref(), Some("200"));
    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
    // Its phases are child spans inside it.
    let phases: Vec<_> = all_spans.iter().filter(|s| s.parent_span_id == span.span_id).collect();
    let names: HashSet<&str> = phases.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, HashSet::from(["audit", "upstream"]), "{phases:?}");
    for p in &phases {
        assert!(
            p.start_time_unix_nano >= span.start_time_unix_nano
                && p.end_time_unix_nano <= span.end_time_unix_nano + 1_000_000,
            "{p:?}"
        );
    }
    // Requests without a traceparent start traces of their own, one each.
    let others: HashSet<String> =
        spans.iter().filter(|s| hex::encode(&s.trace_id) != caller_trace).map(|s| hex::encode(&s.trace_id)).collect();
    assert_eq!(others.len(), 4);
}

/// A retried export does not send again what the collector took (its logs when only the
/// spans failed), and refused requests, unauthenticated or denied, get their span too.
#[tokio::test]
async fn otlp_retries_send_only_what_was_not_taken_and_refused_requests_have_spans() {
    let otel = collector().await;
    otel.fail_traces.store(3, std::sync::atomic::Ordering::SeqCst);
    let s = site(Opts {
        session: &format!("\n[audit]\n{FAST_RETRY}[audit.otlp]\nendpoint = \"http://{}\"\n", otel.addr),
        ..Default::default()
    })
    .await;
    let mut gw = s.gw;
    // Unauthenticated (an API client without a session), and denied by the gateway.
    let r = client().get(gw.url("/patients/1")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(gw.url("/patients/%00")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // And one forwarded (whatever the upstream answers).
    client().get(gw.url("/plain")).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while otel.fail_traces.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(otel.fail_traces.load(std::sync::atomic::Ordering::SeqCst), 0, "the spans were not retried");
    gw.stop().await;

    let records = audit_records(&gw.audit_dir());
    let logs = otel.logs.lock().unwrap().clone();
    let ids: Vec<String> = logs.iter().filter_map(|l| attr(&l.attributes, "custos.event.id")).collect();
    assert_eq!(ids, chain_ids(&records), "the collector did not get every record exactly once");
    let spans = otel.spans.lock().unwrap().clone();
    let server: Vec<_> = spans.iter().filter(|s| s.kind == 2).collect();
    let mut span_ids: Vec<String> = server.iter().map(|s| hex::encode(&s.span_id)).collect();
    let n = span_ids.len();
    span_ids.sort();
    span_ids.dedup();
    assert_eq!(span_ids.len(), n, "a span was exported twice");
    for reason in ["unauthenticated", "bad_path"] {
        let d = records
            .iter()
            .map(|r| &r.event)
            .find(|e| kind(e) == "access.decision" && crate::harness::reason(e).as_deref() == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} record"));
        let span_id = d.span_id.as_deref().unwrap_or_else(|| panic!("no span id on the {reason} record: {d:?}"));
        let span = server
            .iter()
            .find(|s| hex::encode(&s.span_id) == span_id)
            .unwrap_or_else(|| panic!("no span for the {reason} request"));
        assert_eq!(hex::encode(&span.trace_id), d.trace_id.as_deref().unwrap());
        assert_eq!(attr(&span.attributes, "custos.decision").as_deref(), Some("deny"));
        assert_eq!(attr(&span.attributes, "http.response.status_code"), d.status.map(|s| s.to_string()));
    }
    assert_eq!(server.len(), 3, "one server span per request: {server:?}");
}

/// The spool's disk limit: with a sink down, records pile up until `spool_max_bytes`;
/// then `on_failure` applies (here `deny`: 503, nothing forwarded), loudly (ALERT in the
/// log, the metric); once the sink is back and takes them, the gateway serves again.
#[tokio::test]
async fn a_full_spool_refuses_access_loudly_until_the_sink_catches_up() {
    let demo = demo().await;
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let stream = unique("full");
    let audit = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[audit]\ndir = \"{}\"\n{FAST_RETRY}segment_bytes = 4096\nspool_max_bytes = 32768\n[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n{}",
        audit.path().display(),
        route_all(demo.addr)
    );
    let mut gw = Gateway::builder().config(&cfg).start().await;
    let mut served = 0;
    let mut refused = false;
    for _ in 0..400 {
        match client().get(gw.url("/patients/1")).send().await.unwrap().status().as_u16() {
            200 => served += 1,
            503 => {
                refused = true;
                break;
            }
            s => panic!("status {s}"),
        }
    }
    assert!(refused, "served {served} requests and the spool never filled");
    let forwarded = demo.seen().len();
    assert_eq!(client().get(gw.url("/patients/1")).send().await.unwrap().status(), 503);
    assert_eq!(demo.seen().len(), forwarded, "forwarded without a record");
    assert!(gw.log().contains("ALERT") && gw.log().contains("spool_max_bytes"), "{}", gw.log());
    let bytes = metric(&gw, "custos_audit_spool_bytes ").await.unwrap_or(0.0);
    assert!(bytes > 16384.0 && bytes <= 32768.0, "custos_audit_spool_bytes {bytes}");
    // A restart with a full spool still starts (its sinks are what drain it), and still
    // refuses.
    gw.stop().await;
    let mut gw = Gateway::builder().config(&cfg).start().await;
    assert_eq!(client().get(gw.url("/patients/1")).send().await.unwrap().status(), 503);

    // The sink comes back: delivered segments are deleted and access resumes.
    let _redis = start_redis(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    while Instant::now() < deadline {
        status = client().get(gw.url("/patients/1")).send().await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "still refused after the sink came back");
    gw.stop().await;
    let (code, out) = audit_verify(&[OsStr::new("--partial"), audit.path().as_os_str()]);
    assert_eq!(code, 0, "{out}");
}

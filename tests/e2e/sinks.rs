//! Audit sinks against a real redis-server: every record reaches the Redis Stream and the
//! archive file exactly once, a sink that is down during load gets everything once it is
//! back, delivered segments are deleted, and the checkpoint kept in Redis exposes a cut
//! tail.

use crate::harness::*;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

fn unique(prefix: &str) -> String {
    format!("custos:test:{prefix}:{}", uuid::Uuid::now_v7().simple())
}

/// Ids of every record in the spool and (if given) the archive.
fn chain_ids(records: &[serde_json::Value]) -> Vec<String> {
    records.iter().map(|r| r["event"]["id"].as_str().unwrap().to_string()).collect()
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
    let mut gw = Gateway::start(&format!(
        "[audit]\nsegment_bytes = 4096\ncheckpoint_every = 10\n[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n\
         [audit.file]\npath = \"{}\"\n{}",
        archive_file.display(),
        route_all(demo.addr)
    ))
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
    let archived: Vec<serde_json::Value> =
        std::fs::read_to_string(&archive_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(archived.first().unwrap()["seq"], 1);
    // Delivered segments were deleted from the spool; the newest stays.
    let left = audit_records(&gw.audit_dir());
    assert!(left.len() < archived.len(), "no delivered segment was deleted ({} of {})", left.len(), archived.len());

    // The stream holds every record once, in chain order.
    let entries = wait_for_stream(url, &stream, archived.len()).await;
    let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, chain_ids(&archived), "stream and chain differ");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "duplicates in the stream");
    let line: serde_json::Value = serde_json::from_str(&entries[3].1).unwrap();
    assert_eq!(line, archived[3], "the stream's record is the chain line");
}

#[tokio::test]
async fn a_sink_down_during_load_gets_every_record_once_it_is_back() {
    let demo = demo().await;
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let stream = unique("down");
    let mut gw = Gateway::start(&format!(
        "[audit]\ncheckpoint_every = 50\n[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n{}",
        route_all(demo.addr)
    ))
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
    let mut gw = Gateway::start(&format!(
        "[audit]\ncheckpoint_every = 5\n[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n{}",
        route_all(demo.addr)
    ))
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
    let gw =
        Gateway::start(&format!("[audit.redis]\nurl = \"{url}\"\nstream = \"{stream}\"\n{}", route_all(demo.addr)))
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

/// A SIEM's webhook endpoint: verifies each request's signature the way a receiver must
/// (HMAC-SHA256 over `v1:{timestamp}:{body}`, constant-time, timestamp within 5 min),
/// answers 500 to the first `fail_first` requests (or to all), and keeps what it took.
pub(crate) struct Receiver {
    pub addr: std::net::SocketAddr,
    pub taken: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub bad_signatures: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn receiver(secret: &'static [u8], fail_first: usize) -> Receiver {
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(Mutex::new(Vec::new()));
    let bad = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let (t, b) = (taken.clone(), bad.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (t, b, seen) = (t.clone(), b.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (t, b, seen) = (t.clone(), b.clone(), seen.clone());
                    async move {
                        let ts = req
                            .headers()
                            .get("x-custos-timestamp")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let sig = req
                            .headers()
                            .get("x-custos-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                        let fresh = ts.parse::<u64>().is_ok_and(|t| t.abs_diff(now) <= 300);
                        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                        let mut msg = format!("v1:{ts}:").into_bytes();
                        msg.extend_from_slice(&body);
                        let tag = sig.strip_prefix("v1=").and_then(|h| hex::decode(h).ok()).unwrap_or_default();
                        let status = if !fresh || ring::hmac::verify(&key, &msg, &tag).is_err() {
                            b.fetch_add(1, Ordering::SeqCst);
                            401
                        } else if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                            500
                        } else {
                            let mut t = t.lock().unwrap();
                            t.extend(String::from_utf8_lossy(&body).lines().map(String::from));
                            200
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder().status(status).body(Full::new(bytes::Bytes::new())).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Receiver { addr, taken, bad_signatures: bad, _task: task }
}

const WEBHOOK_SECRET: &[u8] = b"a-shared-webhook-secret-for-tests";

#[tokio::test]
async fn the_webhook_gets_signed_batches_and_retries_until_taken() {
    let demo = demo().await;
    let rx = receiver(WEBHOOK_SECRET, 2).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), WEBHOOK_SECRET).unwrap();
    let mut gw = Gateway::start(&format!(
        "[audit.webhook]\nurl = \"http://{}/ingest\"\nsecret = {{ file = \"{}\" }}\nmax_tries = 10\n{}",
        rx.addr,
        dir.path().join("hook.secret").display(),
        route_all(demo.addr)
    ))
    .await;
    for _ in 0..20 {
        client().get(gw.url("/patients/3")).send().await.unwrap();
    }
    gw.stop().await;
    let records = audit_records(&gw.audit_dir());
    let taken = rx.taken.lock().unwrap().clone();
    let ids: Vec<String> = taken
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, chain_ids(&records), "the receiver did not get the whole chain once, in order");
    assert_eq!(rx.bad_signatures.load(std::sync::atomic::Ordering::SeqCst), 0, "a request failed signature checks");

    // A wrong secret is caught by the receiver: the check above can fail.
    let wrong = receiver(b"another-secret-entirely-0123456", 0).await;
    let mut gw2 = Gateway::start(&format!(
        "[audit.webhook]\nurl = \"http://{}/ingest\"\nsecret = {{ file = \"{}\" }}\nmax_tries = 2\n{}",
        wrong.addr,
        dir.path().join("hook.secret").display(),
        route_all(demo.addr)
    ))
    .await;
    client().get(gw2.url("/patients/1")).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while wrong.bad_signatures.load(std::sync::atomic::Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wrong.taken.lock().unwrap().is_empty());
    // After max_tries the batch is in the dead-letter file and counted.
    let dead = gw2.audit_dir().join("webhook-dead-letter.ndjson");
    while !dead.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let buried = std::fs::read_to_string(&dead).unwrap_or_default();
    assert!(buried.contains("\"audit.started\""), "dead letters: {buried}");
    let m = client().get(format!("http://{}/metrics", gw2.admin)).send().await.unwrap().text().await.unwrap();
    assert!(m.lines().any(|l| l.starts_with("custos_audit_dead_letter_total") && !l.ends_with(" 0")), "{m}");
    gw2.stop().await;
}

/// An OTLP/HTTP collector stand-in: decodes the real protobuf requests.
struct Collector {
    addr: std::net::SocketAddr,
    logs: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>>>,
    spans: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn collector() -> Collector {
    use http_body_util::{BodyExt, Full};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let (l, s) = (logs.clone(), spans.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (l, s) = (l.clone(), s.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (l, s) = (l.clone(), s.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let ctype =
                            req.headers().get("content-type").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let ok = ctype == b"application/x-protobuf"
                            && match path.as_str() {
                                "/v1/logs" => ExportLogsServiceRequest::decode(body).map(|r| {
                                    for rl in r.resource_logs {
                                        for sl in rl.scope_logs {
                                            l.lock().unwrap().extend(sl.log_records);
                                        }
                                    }
                                }),
                                "/v1/traces" => ExportTraceServiceRequest::decode(body).map(|r| {
                                    for rs in r.resource_spans {
                                        for ss in rs.scope_spans {
                                            s.lock().unwrap().extend(ss.spans);
                                        }
                                    }
                                }),
                                _ => Ok(()),
                            }
                            .is_ok();
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(if ok { 200 } else { 400 })
                                .body(Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Collector { addr, logs, spans, _task: task }
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
    let mut gw =
        Gateway::start(&format!("[audit.otlp]\nendpoint = \"http://{}\"\n{}", otel.addr, route_all(demo.addr))).await;
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
        .find(|r| r["event"]["kind"] == "access.decision" && r["event"]["path"] == "/patients/1")
        .unwrap();
    assert_eq!(decision["event"]["trace_id"], caller_trace);
    assert_eq!(decision["event"]["span_id"], gateway_span);
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

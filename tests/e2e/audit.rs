//! The audit trail: a durable decision record before anything is forwarded, a
//! completion record after, metadata only, a chain that `custos audit verify` proves and
//! that survives SIGKILL, tampering that verify names, and a full disk that refuses
//! access instead of serving it unaudited.

use crate::harness::*;
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

fn by_request_id(records: &[Record]) -> HashMap<String, Vec<(u64, Event)>> {
    let mut m: HashMap<String, Vec<(u64, Event)>> = HashMap::new();
    for r in records {
        if let Some(id) = r.event.request_id.as_deref() {
            m.entry(id.to_string()).or_default().push((r.seq, r.event.clone()));
        }
    }
    m
}

/// Every request the upstream saw has a durable allow decision in the chain.
fn assert_every_forwarded_request_was_recorded(seen: &[demo_ephi::Seen], records: &[Record]) {
    let index = by_request_id(records);
    for s in seen {
        let id = s.header("x-request-id").expect("forwarded with a request id");
        let events = index
            .get(id)
            .unwrap_or_else(|| panic!("request {id} ({}) reached the upstream without a record", s.target));
        assert!(
            events.iter().any(|(_, e)| kind(e) == "access.decision" && decision(e).as_deref() == Some("allow")),
            "request {id} has no allow decision: {events:?}"
        );
    }
}

#[tokio::test]
async fn every_decision_is_recorded_before_forwarding_metadata_only() {
    let demo = demo().await;
    let mut gw = Gateway::builder().config(format!(
        "{}[[routes]]\npublic = true\nname = \"search\"\npath = \"/debug/search\"\naudit_query = true\nupstream = \"http://{}\"\n",
        route_all(demo.addr),
        demo.addr
    )).start()
    .await;
    let c = client();
    assert_eq!(c.get(gw.url("/patients/1?ssn=123-45-6789")).send().await.unwrap().status(), 200);
    assert_eq!(
        c.post(gw.url("/patients/1/notes"))
            .header("cookie", "sid=secret-cookie")
            .body("diagnosis: synthetic")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(c.get(gw.url("/debug/search?name=ada")).send().await.unwrap().status(), 200);
    let (bad, _) = raw_status(gw.http, b"GET /a%2fb HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
    assert_eq!(bad, 400);
    gw.stop().await;

    let dir = gw.audit_dir();
    let (code, out) = audit_verify(&[OsStr::new("--key"), dir.join("signing-key.pub").as_os_str(), dir.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signatures verified"), "{out}");

    let records = audit_records(&dir);
    assert_every_forwarded_request_was_recorded(&demo.seen(), &records);
    let text = records.iter().map(|r| serde_json::to_string(&r.event).unwrap()).collect::<Vec<_>>().join("\n");
    for secret in ["123-45-6789", "ssn", "secret-cookie", "diagnosis"] {
        assert!(!text.contains(secret), "{secret} leaked into the audit trail");
    }
    // The route that opts in keeps its query.
    assert!(text.contains("name=ada"), "audit_query route lost its query");

    // Decision before completion, for each forwarded request.
    for (id, events) in by_request_id(&records) {
        let decision = events.iter().find(|(_, e)| kind(e) == "access.decision").map(|(s, _)| *s);
        let done = events.iter().find(|(_, e)| kind(e) == "access.completed");
        if let Some((done_seq, e)) = done {
            assert!(decision.is_some_and(|d| d < *done_seq), "{id}: completion before decision");
            assert!(e.status.is_some() && e.duration_ms.is_some(), "{e:?}");
        }
    }
    let post = records
        .iter()
        .find(|r| kind(&r.event) == "access.completed" && r.event.method.as_deref() == Some("POST"))
        .expect("completion of the POST");
    assert_eq!(post.event.status, Some(201));
    assert_eq!(post.event.bytes_in, Some(20));
    // Refusals are decisions too.
    let denied = records.iter().find(|r| decision(&r.event).as_deref() == Some("deny")).expect("a deny record");
    assert_eq!(reason(&denied.event).as_deref(), Some("bad_path"));
    assert_eq!(denied.event.status, Some(400));
    let kinds: Vec<String> = records.iter().map(|r| kind(&r.event)).collect();
    assert_eq!(kinds.first().map(String::as_str), Some("audit.started"));
    // An orderly stop ends the chain with a signed checkpoint over everything.
    assert_eq!(kinds[kinds.len() - 2..], ["audit.stopped", "audit.checkpoint"], "{kinds:?}");
    assert!(out.contains("ok: ") && !out.contains("after the last checkpoint"), "{out}");
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

#[tokio::test]
async fn verify_names_edited_removed_inserted_and_reordered_records() {
    let demo = demo().await;
    let mut gw = Gateway::builder().config("[audit]\ncheckpoint_every = 5\n").route(route_all(demo.addr)).start().await;
    for i in 0..12 {
        client().get(gw.url(&format!("/patients/{}", i % 3 + 1))).send().await.unwrap();
    }
    gw.stop().await;
    let dir = gw.audit_dir();
    let seg = dir.join("00000000000000000001.jsonl");
    let original: Vec<String> = std::fs::read_to_string(&seg).unwrap().lines().map(String::from).collect();
    assert!(original.len() > 20, "{} records", original.len());
    let key = dir.join("signing-key.pub");
    let check = |lines: Vec<String>| {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("00000000000000000001.jsonl");
        write_lines(&f, &lines);
        audit_verify(&[OsStr::new("--key"), key.as_os_str(), f.as_os_str()])
    };
    let (code, out) = check(original.clone());
    assert_eq!(code, 0, "{out}");

    let mut edited = original.clone();
    let at = (6..edited.len()).find(|&i| edited[i].contains("/patients/")).unwrap();
    edited[at] = edited[at].replacen("/patients/", "/patientz/", 1);
    let (code, out) = check(edited);
    assert_eq!(code, 1);
    assert!(out.contains(&format!(":{}: record seq {} was altered", at + 1, at + 1)), "{out}");

    let mut removed = original.clone();
    removed.remove(9);
    let (code, out) = check(removed);
    assert_eq!(code, 1);
    assert!(out.contains("records missing: expected seq 10, found seq 11"), "{out}");

    let mut inserted = original.clone();
    inserted.insert(12, original[4].clone());
    let (code, out) = check(inserted);
    assert_eq!(code, 1);
    assert!(out.contains(":13: record seq 5 after seq 12: inserted or reordered"), "{out}");

    let mut reordered = original.clone();
    reordered.swap(14, 15);
    let (code, out) = check(reordered);
    assert_eq!(code, 1);
    assert!(out.contains(":15: record seq 16 comes before seq 15, which appears later: reordered"), "{out}");

    let mut head_cut = original.clone();
    head_cut.remove(0);
    let (code, out) = check(head_cut);
    assert_eq!(code, 1);
    assert!(out.contains("expected seq 1, found seq 2"), "{out}");

    // A record re-hashed after editing still breaks the link to its successor.
    let mut forged: Vec<Value> = original.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    forged[3]["event"]["path"] = Value::from("/patients/3");
    let line = rehash(&forged[3]);
    let mut lines = original.clone();
    lines[3] = line;
    let (code, out) = check(lines);
    assert_eq!(code, 1);
    assert!(out.contains(":5: record seq 5 does not link"), "{out}");

    // A checkpoint signed by another key.
    let (code, out) = audit_verify(&[OsStr::new("--key"), OsStr::new(&"ab".repeat(32)), seg.as_os_str()]);
    assert_eq!(code, 1);
    assert!(out.contains("signed by another key"), "{out}");
}

/// Re-encodes a record with a correct hash over its (edited) body, as a forger would.
fn rehash(record: &Value) -> String {
    use ring::digest::{digest, SHA256};
    let body = format!(
        "{{\"seq\":{},\"prev\":{},\"event\":{}}}",
        record["seq"],
        record["prev"],
        serde_json::to_string(&record["event"]).unwrap()
    );
    let hash = hex::encode(digest(&SHA256, body.as_bytes()));
    format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1])
}

#[tokio::test]
async fn sigkill_under_load_then_restart_continues_the_chain() {
    let demo = demo().await;
    let audit_dir = tempfile::tempdir().unwrap();
    let cfg =
        format!("[audit]\ndir = \"{}\"\ncheckpoint_every = 50\n{}", audit_dir.path().display(), route_all(demo.addr));
    let mut gw = Gateway::builder().config(&cfg).start().await;
    let mut load = Vec::new();
    for i in 0..16 {
        let url = gw.url("/patients");
        load.push(tokio::spawn(async move {
            let c = client();
            // Until the kill: a worker stops at its first failed request.
            while c.get(&url).header("x-worker", i.to_string()).send().await.is_ok() {}
        }));
    }
    // Load measured by count, not time: kill once 200 requests have been forwarded, with
    // the 16 workers still sending.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while demo.seen().len() < 200 {
        assert!(std::time::Instant::now() < deadline, "only {} requests forwarded in 60 s", demo.seen().len());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gw.child.kill().unwrap(); // SIGKILL
    gw.child.wait().unwrap();
    for l in load {
        let _ = l.await;
    }
    let before = audit_records(audit_dir.path()).len();
    assert!(before > 50, "too little load before the kill: {before} records");

    let mut gw2 = Gateway::builder().config(&cfg).start().await;
    for _ in 0..5 {
        assert_eq!(client().get(gw2.url("/patients/1")).send().await.unwrap().status(), 200);
    }
    gw2.stop().await;

    let key = audit_dir.path().join("signing-key.pub");
    let (code, out) = audit_verify(&[OsStr::new("--key"), key.as_os_str(), audit_dir.path().as_os_str()]);
    assert_eq!(code, 0, "{out}");
    let records = audit_records(audit_dir.path());
    let restarts = records.iter().filter(|r| kind(&r.event) == "audit.started").count();
    assert_eq!(restarts, 2, "one chain across the restart");
    assert_every_forwarded_request_was_recorded(&demo.seen(), &records);
}

#[tokio::test]
async fn a_full_spool_refuses_access_instead_of_serving_unaudited() {
    let demo = demo().await;
    // A 16 KiB file-size limit stands in for a full disk; SIGXFSZ ignored so writes
    // fail with EFBIG instead of killing the process.
    let limit = "trap '' XFSZ; ulimit -f 32";
    let mut gw = Gateway::builder().route(route_all(demo.addr)).grace(2).wrapper(limit).start().await;
    let mut statuses = Vec::new();
    for _ in 0..80 {
        statuses.push(client().get(gw.url("/patients/1")).send().await.unwrap().status().as_u16());
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert!(ok > 0 && refused > 0 && ok + refused == statuses.len(), "{statuses:?}");
    // Once full, it stays refused: no 200 after the first 503.
    let first_503 = statuses.iter().position(|&s| s == 503).unwrap();
    assert!(statuses[first_503..].iter().all(|&s| s == 503), "{statuses:?}");
    assert_eq!(demo.seen().len(), ok, "a refused request reached the upstream");
    let m = client().get(format!("http://{}/metrics", gw.admin)).send().await.unwrap().text().await.unwrap();
    assert!(m.lines().any(|l| l.starts_with("custos_audit_failures_total") && !l.ends_with(" 0")), "{m}");
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    let (code, out) = audit_verify(&[gw.audit_dir().as_os_str()]);
    assert_eq!(code, 0, "the chain must stay valid after failed writes: {out}");
    assert_every_forwarded_request_was_recorded(&demo.seen(), &audit_records(&gw.audit_dir()));

    // on_failure = "allow" keeps serving (and counts the failures).
    let demo2 = crate::harness::demo().await;
    let gw2 = Gateway::builder()
        .config("[audit]\non_failure = \"allow\"\n")
        .route(route_all(demo2.addr))
        .grace(2)
        .wrapper(limit)
        .start()
        .await;
    for _ in 0..80 {
        let r = client().get(gw2.url("/patients/1")).send().await;
        assert_eq!(r.map(|r| r.status().as_u16()).ok(), Some(200), "log: {}", gw2.log());
    }
}

#[tokio::test]
async fn two_gateways_cannot_write_one_chain() {
    let demo = demo().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!("[audit]\ndir = \"{}\"\n{}", dir.path().display(), route_all(demo.addr));
    let _first = Gateway::builder().config(&cfg).start().await;
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("second.toml");
    std::fs::write(&path, format!("[listen]\nhttp = \"127.0.0.1:{}\"\n{cfg}", free_port())).unwrap();
    let out = std::process::Command::new(CUSTOS).args(["serve", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process is writing the audit directory") && err.contains("`audit`"), "{err}");
}

#[tokio::test]
async fn a_writer_over_its_queue_limit_refuses_access_and_counts_dropped_refusals() {
    let demo = demo().await;
    // A limit of 0 stands in for a writer that has fallen a whole queue behind.
    let gw = Gateway::builder().config("[audit]\nqueue_limit = 0\n").route(route_all(demo.addr)).start().await;
    let r = client().get(gw.url("/patients/1")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let (status, _) =
        raw_status(gw.http, b"GET /a%2fb HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
    assert_eq!(status, 400);
    assert!(demo.seen().is_empty(), "forwarded without a record");
    let m = client().get(format!("http://{}/metrics", gw.admin)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("custos_audit_dropped_total 1"), "{m}");
}

#[tokio::test]
async fn a_collected_prefix_verifies_only_when_declared_partial() {
    let demo = demo().await;
    let mut gw = Gateway::builder().config("[audit]\ncheckpoint_every = 4\n").route(route_all(demo.addr)).start().await;
    for _ in 0..8 {
        client().get(gw.url("/patients")).send().await.unwrap();
    }
    gw.stop().await;
    let seg = gw.audit_dir().join("00000000000000000001.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&seg).unwrap().lines().map(String::from).collect();
    // Start the copy at a checkpoint, as a segment that begins right after a rotation does.
    let at = (1..lines.len()).find(|&i| lines[i].contains("\"audit.checkpoint\"")).unwrap();
    let first: serde_json::Value = serde_json::from_str(&lines[at]).unwrap();
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join(format!("{:020}.jsonl", first["seq"].as_u64().unwrap()));
    write_lines(&f, &lines[at..]);
    let key = gw.audit_dir().join("signing-key.pub");
    let (code, out) = audit_verify(&[OsStr::new("--key"), key.as_os_str(), f.as_os_str()]);
    assert_eq!(code, 1, "a chain without its start must not pass as whole: {out}");
    assert!(out.contains("expected seq 1"), "{out}");
    let (code, out) = audit_verify(&[OsStr::new("--partial"), OsStr::new("--key"), key.as_os_str(), f.as_os_str()]);
    assert_eq!(code, 0, "{out}");
}

/// Everything in `dir` (two levels) with its permission bits.
fn modes(dir: &Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = vec![(dir.to_path_buf(), std::fs::metadata(dir).unwrap().permissions().mode() & 0o777)];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(modes(&p));
        } else {
            out.push((p.clone(), std::fs::metadata(&p).unwrap().permissions().mode() & 0o777));
        }
    }
    out
}

/// The audit trail names people and addresses: its directory is 0700 and every file in
/// it 0600 (segments, cursors, the instance id, keys, lock, dead letters), whatever the
/// umask. `custos check` warns about a wider directory, naming it; `serve` tightens it.
#[tokio::test]
async fn audit_files_are_private_whatever_the_umask() {
    let demo = demo().await;
    // A receiver that refuses every batch as bad (400): they end as dead letters.
    let rx = receiver(b"a-shared-webhook-secret-for-tests", 0).await;
    *rx.refuse.lock().unwrap() = Some("\"seq\"".into());
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("hook.secret"), b"a-shared-webhook-secret-for-tests").unwrap();
    let archive = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[audit]\nsegment_bytes = 4096\n[audit.file]\npath = \"{}\"\n[audit.webhook]\nurl = \"http://{}/ingest\"\nsecret = {{ file = \"{}\" }}\n{}",
        archive.path().join("archive.jsonl").display(),
        rx.addr,
        secrets.path().join("hook.secret").display(),
        route_all(demo.addr)
    );
    let mut gw = Gateway::builder().config(&cfg).grace(2).wrapper("umask 000").start().await;
    for i in 0..40 {
        client().get(gw.url(&format!("/patients/{i}"))).send().await.unwrap();
    }
    let dir = gw.audit_dir();
    let want = ["instance", "lock", "signing-key.pem", "signing-key.pub", "cursors/file"];
    let deadline = Instant::now() + Duration::from_secs(20);
    while want.iter().any(|f| !dir.join(f).exists()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Dead letters, where a refused batch goes (checked with the rest when there).
    let deadline = Instant::now() + Duration::from_secs(5);
    let letters = dir.join("dead-letters").join("webhook");
    while std::fs::read_dir(&letters).map_or(true, |mut d| d.next().is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
    let all = modes(&dir);
    for f in want {
        assert!(all.iter().any(|(p, _)| p.ends_with(f)), "no {f} in {all:?}");
    }
    assert!(
        all.iter().filter(|(p, _)| p.extension().is_some_and(|x| x == "jsonl")).count() >= 2,
        "one segment: {all:?}"
    );
    for (path, mode) in &all {
        let private = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, private, "{} is {mode:o}", path.display());
    }
    let archived = archive.path().join("archive.jsonl");
    assert_eq!(modes(archive.path()).iter().find(|(p, _)| *p == archived).map(|m| m.1), Some(0o600));

    // An existing directory that others may read: `check` names it, `serve` fixes it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = gw.dir.path().join("custos.toml");
    let out = std::process::Command::new(CUSTOS).args(["check", "--config"]).arg(&config).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let warning = text.lines().find(|l| l.contains("warning")).unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(warning.contains(&format!("{} is mode 755", dir.display())), "{warning}");
    let gw = Gateway::builder()
        .config(cfg.replace("[audit]\n", &format!("[audit]\ndir = \"{}\"\n", dir.display())))
        .grace(2)
        .wrapper("umask 000")
        .start()
        .await;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "serve left the audit directory {mode:o}: {}", gw.log());
}

//! The audit handle over a real spool: group commit shared by concurrent waiters, and
//! records nobody waits on written without waking the writer.

use super::*;
use crate::metrics::AUDIT_FSYNC;
use std::time::Instant;

/// The commit counter is process-wide: tests that read it run one at a time.
static COMMITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn settings(dir: &Path) -> AuditSettings {
    AuditSettings {
        enabled: true,
        dir: dir.join("audit"),
        on_failure: OnFailure::Deny,
        segment_bytes: 64 * 1024 * 1024,
        checkpoint_every: 100_000,
        checkpoint_interval: Duration::from_secs(3600),
        signing_key: None,
        key_base: dir.to_path_buf(),
        redis: None,
        file: None,
        webhook: None,
        otlp: None,
        queue_limit: QUEUE_LIMIT,
        retry_max: RETRY_MAX,
        sink_alert_after: SINK_ALERT_AFTER,
        spool_max_bytes: 0,
    }
}

/// The sequence numbers and kinds on disk, in order.
fn on_disk(dir: &Path) -> Vec<(u64, Kind)> {
    let mut out = Vec::new();
    for seg in spool::segments(&dir.join("audit")).unwrap() {
        for line in std::fs::read(seg).unwrap().split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let r = chain::decode(line).unwrap();
            out.push((r.seq, r.event.kind));
        }
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_durable_appends_share_fsyncs_and_learn_their_own_seqs() {
    let _one = COMMITS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::start(&settings(dir.path()), &[]).unwrap();
    let before = AUDIT_FSYNC.get_sample_count();
    let n = 64u64;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let audit = audit.clone();
            tokio::spawn(async move {
                let mut ev = Event::new(Kind::AccessDecision);
                ev.request_id = Some(i.to_string());
                (i, audit.append_durable(ev).await.unwrap())
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        let (i, seq) = t.await.unwrap();
        seqs.push(seq);
        // What a caller is told is where its own record is.
        let line = std::fs::read(&spool::segments(&dir.path().join("audit")).unwrap()[0]).unwrap();
        let rec = line
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| chain::decode(l).unwrap())
            .find(|r| r.seq == seq)
            .unwrap();
        assert_eq!(rec.event.request_id.as_deref(), Some(i.to_string().as_str()));
    }
    seqs.sort();
    // Seq 1 is audit.started; every record once, none skipped.
    assert_eq!(seqs, (2..2 + n).collect::<Vec<_>>());
    let commits = AUDIT_FSYNC.get_sample_count() - before;
    assert!(commits <= n / 2, "{n} concurrent records took {commits} fsyncs");
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_nobody_waits_on_wakes_nobody_and_is_written_within_the_bound() {
    let _one = COMMITS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::start(&settings(dir.path()), &[]).unwrap();
    // Until the writer sleeps: a record must not wait for the checkpoint interval then.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before = AUDIT_FSYNC.get_sample_count();
    let sent = Instant::now();
    audit.append(Event::new(Kind::AccessCompleted));
    tokio::time::sleep(Duration::from_millis(10)).await;
    if sent.elapsed() < queue::LINGER {
        assert_eq!(audit.committed.load(Ordering::Acquire), 1, "the writer was woken for it");
        assert_eq!(AUDIT_FSYNC.get_sample_count(), before);
    }
    while audit.committed.load(Ordering::Acquire) < 2 {
        assert!(sent.elapsed() < queue::LINGER * 10, "not written by the writer's timer");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(sent.elapsed() >= queue::LINGER, "written before the bound: something woke the writer");
    assert_eq!(on_disk(dir.path()), vec![(1, Kind::AuditStarted), (2, Kind::AccessCompleted)]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_durable_record_takes_the_queued_completion_into_its_group() {
    let _one = COMMITS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::start(&settings(dir.path()), &[]).unwrap();
    let before = AUDIT_FSYNC.get_sample_count();
    audit.append(Event::new(Kind::AccessCompleted));
    audit.append_refusal(Event::new(Kind::AccessDecision));
    let seq = audit.append_durable(Event::new(Kind::AccessDecision)).await.unwrap();
    assert_eq!(seq, 4);
    assert_eq!(AUDIT_FSYNC.get_sample_count() - before, 1, "one group, one fsync");
    assert_eq!(
        on_disk(dir.path()),
        vec![(1, Kind::AuditStarted), (2, Kind::AccessCompleted), (3, Kind::AccessDecision), (4, Kind::AccessDecision)]
    );
}

#[test]
fn an_orderly_stop_writes_what_is_queued() {
    let _one = COMMITS.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::start(&settings(dir.path()), &[]).unwrap();
    for _ in 0..3 {
        audit.append(Event::new(Kind::AccessCompleted));
    }
    let seq = audit.append_blocking(Event::new(Kind::AuditStopped)).unwrap();
    assert_eq!(seq, 5);
    let kinds: Vec<_> = on_disk(dir.path()).into_iter().map(|(_, k)| k).collect();
    // The stop is checkpointed at once, so the whole chain is signed.
    assert_eq!(
        &kinds[1..],
        [
            Kind::AccessCompleted,
            Kind::AccessCompleted,
            Kind::AccessCompleted,
            Kind::AuditStopped,
            Kind::AuditCheckpoint
        ]
    );
}

#[test]
fn a_full_spool_judges_each_record_of_a_refused_group_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let writer = spool::Writer::open(spool::SpoolSettings {
        dir: dir.path().join("audit"),
        instance: "test".into(),
        segment_bytes: 1 << 20,
        checkpoint_every: 100_000,
        checkpoint_interval: Duration::from_secs(3600),
        key: Arc::new(ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
        committed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        max_bytes: 2000,
        bytes: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    })
    .unwrap();
    let (tx, rx) = queue::channel();
    let thread = std::thread::spawn(move || writer.run(rx, |_, _, _| {}));
    // Too big for the spool alone; nobody waits on it, so it rides with the next group.
    let mut big = Event::new(Kind::AccessCompleted);
    big.path = Some("/x".repeat(1500));
    tx.send(big, None).unwrap();
    let (ack, done) = tokio::sync::oneshot::channel();
    tx.send(Event::new(Kind::AccessDecision), Some(ack)).unwrap();
    // The small record fits alone, as it would have without the big one queued before it.
    assert_eq!(done.blocking_recv().unwrap().result.unwrap(), 1);
    drop(tx);
    thread.join().unwrap();
    assert_eq!(on_disk(dir.path())[..1], [(1, Kind::AccessDecision)]);
}

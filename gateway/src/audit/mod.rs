//! The audit trail: one event type ([`Event`]), one handle every module records
//! through ([`Audit`]), a hash chain per gateway instance ([`chain`]) kept in a durable
//! spool of segment files with group commit ([`spool`]), signed checkpoints, and
//! `custos audit verify` ([`verify`]).
//!
//! ```text
//! custos audit verify examples/audit/*.jsonl
//! ```

pub mod chain;
pub mod event;
pub mod private;
mod queue;
pub mod reason;
pub mod sinks;
pub mod spool;
pub mod verify;

#[cfg(test)]
mod tests;

pub use event::{Actor, Decision, Event, Kind, Phase};
pub use reason::{Code, Reason};

use ring::signature::{Ed25519KeyPair, KeyPair};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why an event could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Io(String),
    #[error("another process is writing the audit directory {0}")]
    Locked(String),
    #[error("the audit chain is damaged: {0}")]
    Damaged(String),
    #[error("the audit writer has stopped")]
    Closed,
    #[error("audit signing key: {0}")]
    Key(String),
    #[error("the audit writer is {0} records behind; refusing new access until it catches up")]
    Overloaded(usize),
    #[error("the audit spool is full (audit.spool_max_bytes = {0}): a sink has not taken its records")]
    Full(u64),
}

pub use crate::config::audit::{
    AuditSettings, OnFailure, RedisSinkSettings, WebhookSinkSettings, QUEUE_LIMIT, RETRY_MAX, SINK_ALERT_AFTER,
    SPOOL_MAX_BYTES,
};

/// The handle modules record through. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    /// Shared: the queue closes (and the writer stops) when the last handle is dropped.
    tx: Arc<queue::Sender>,
    pub on_failure: OnFailure,
    /// Set while the spool cannot be written (cleared by the next good write).
    pub failing: Arc<AtomicBool>,
    committed: Arc<std::sync::atomic::AtomicU64>,
    sink_cursors: Vec<Arc<std::sync::atomic::AtomicU64>>,
    /// Records sent to the writer and not yet written (or failed).
    queued: Arc<std::sync::atomic::AtomicUsize>,
    queue_limit: usize,
}

impl Audit {
    /// Opens the spool (continuing its chain), records `audit.started`, and starts the
    /// writer thread, the sinks and one alert sink per break-glass alert receiver.
    pub fn start(s: &AuditSettings, alerts: &[crate::config::breakglass::Alert]) -> Result<Audit, AuditError> {
        // Private before anything is written there (see `private`).
        let secured = private::secure_dir(&s.dir)
            .map_err(|e| AuditError::Io(format!("cannot create {}: {e}", s.dir.display())))?;
        if !secured.tightened.is_empty() {
            tracing::warn!(
                dir = %s.dir.display(),
                paths = secured.tightened.len(),
                "the audit directory was readable by others: made 0700, its files 0600"
            );
        }
        for why in secured.left.iter().take(10) {
            tracing::error!(dir = %s.dir.display(), "others may read the audit trail: {why}");
        }
        let key = Arc::new(load_or_make_key(s)?);
        let instance = instance_id(&s.dir)?;
        let committed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let spool_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut writer = spool::Writer::open(spool::SpoolSettings {
            dir: s.dir.clone(),
            instance: instance.clone(),
            segment_bytes: s.segment_bytes,
            checkpoint_every: s.checkpoint_every,
            checkpoint_interval: s.checkpoint_interval,
            key,
            committed: committed.clone(),
            // Without sinks nothing is ever deleted: the spool is the archive, and only
            // the disk bounds it.
            max_bytes: if s.file.is_some()
                || s.redis.is_some()
                || s.otlp.is_some()
                || s.webhook.is_some()
                || !alerts.is_empty()
            {
                s.spool_max_bytes
            } else {
                0
            },
            bytes: spool_bytes.clone(),
        })?;
        let (seq, _) = writer.head();
        let mut started = Event::new(Kind::AuditStarted);
        started.reason =
            Some(Reason::message(if seq == 0 { "new chain".into() } else { format!("continuing after seq {seq}") }));
        writer.append_now(started)?;
        let (tx, rx) = queue::channel();
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let taken = queued.clone();
        std::thread::Builder::new()
            .name("custos-audit".into())
            .spawn(move || {
                writer.run(rx, |took, n, result| {
                    taken.fetch_sub(n, Ordering::AcqRel);
                    crate::metrics::AUDIT_FSYNC.observe(took.as_secs_f64());
                    match result {
                        Ok(()) => {
                            crate::metrics::AUDIT_RECORDS.inc_by(n as u64);
                            if flag.swap(false, Ordering::AcqRel) {
                                tracing::warn!("the audit spool is written again");
                            }
                        }
                        Err(e) => {
                            crate::metrics::AUDIT_FAILURES.inc_by(n as u64);
                            if !flag.swap(true, Ordering::AcqRel) {
                                tracing::error!(records = n, error = %e, "ALERT: the audit spool cannot be written");
                            }
                        }
                    }
                })
            })
            .map_err(|e| AuditError::Io(format!("cannot start the audit writer: {e}")))?;
        let mut audit = Audit {
            tx: Arc::new(tx),
            on_failure: s.on_failure,
            failing,
            committed: committed.clone(),
            sink_cursors: Vec::new(),
            queued,
            queue_limit: s.queue_limit,
        };
        audit.sink_cursors = start_sinks(s, alerts, committed, spool_bytes, audit.clone())?;
        tracing::info!(dir = %s.dir.display(), instance, continuing_after = seq, "audit chain open");
        Ok(audit)
    }

    /// Appends `event` and waits until it is on disk; returns its sequence number.
    pub async fn append_durable(&self, event: Event) -> Result<u64, AuditError> {
        let depth = self.queued.load(Ordering::Acquire);
        if depth >= self.queue_limit {
            return Err(AuditError::Overloaded(depth));
        }
        let (ack, done) = tokio::sync::oneshot::channel();
        self.send(event, Some(ack))?;
        let queue::Delivery { result, rest } = done.await.map_err(|_| AuditError::Closed)?;
        // The rest of the group, answered from this thread (see `queue::Rest`).
        drop(rest);
        result
    }

    fn send(&self, event: Event, ack: Option<queue::Ack>) -> Result<(), AuditError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(event, ack).inspect_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Appends a record of a refused request unless the writer is over its queue limit;
    /// a dropped record is counted in `custos_audit_dropped_total`. Wakes nobody: it is
    /// written with the next group, at most [`queue::LINGER`] later.
    pub fn append_refusal(&self, event: Event) {
        if self.queued.load(Ordering::Acquire) >= self.queue_limit {
            crate::metrics::AUDIT_DROPPED.inc();
            return;
        }
        let _ = self.send(event, None);
    }

    /// Appends `event` and waits until it and everything queued before it are on disk;
    /// for threads outside the runtime (shutdown).
    pub fn append_blocking(&self, event: Event) -> Result<u64, AuditError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.send(event, Some(ack))?;
        done.blocking_recv().map_err(|_| AuditError::Closed)?.result
    }

    /// Waits (blocking, at most `limit`) until every sink has every durable record; for
    /// an orderly stop. What is left is delivered after the next start.
    pub fn wait_delivered(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let head = self.committed.load(Ordering::Acquire);
            if self.sink_cursors.iter().all(|c| c.load(Ordering::Acquire) >= head) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Appends `event` to the chain without waiting. Wakes nobody: it is synced with the
    /// next group, or by the writer's timer at most [`queue::LINGER`] (50 ms) later.
    pub fn append(&self, event: Event) {
        let _ = self.send(event, None);
    }
}

/// Starts one delivery task per configured sink (and alert receiver) on a runtime of
/// their own.
/// A sink that cannot be set up stops the start, as any audit I/O error does.
fn sink_error(e: sinks::SinkError) -> AuditError {
    AuditError::Io(e.to_string())
}

fn start_sinks(
    s: &AuditSettings,
    alerts: &[crate::config::breakglass::Alert],
    committed: Arc<std::sync::atomic::AtomicU64>,
    spool_bytes: Arc<std::sync::atomic::AtomicU64>,
    audit: Audit,
) -> Result<Vec<Arc<std::sync::atomic::AtomicU64>>, AuditError> {
    let mut list: Vec<Box<dyn sinks::Sink>> = Vec::new();
    if let Some(path) = &s.file {
        list.push(Box::new(sinks::file::FileSink::new(path.clone())));
    }
    if let Some(r) = &s.redis {
        list.push(Box::new(sinks::redis::RedisSink::new(&r.url, r.stream.clone(), r.maxlen).map_err(sink_error)?));
    }
    if let Some((endpoint, timeout)) = &s.otlp {
        list.push(Box::new(sinks::otlp::OtlpSink::new(endpoint, *timeout).map_err(sink_error)?));
    }
    if let Some(w) = &s.webhook {
        list.push(Box::new(
            sinks::webhook::WebhookSink::new(w.url.clone(), w.secret.expose(), w.ca.as_deref(), w.timeout)
                .map_err(sink_error)?,
        ));
    }
    let audit_sinks = list.len();
    for a in alerts {
        list.push(Box::new(sinks::alert::AlertSink::new(a).map_err(AuditError::Io)?));
    }
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let head = committed.load(Ordering::Acquire);
    let mut cursors = Vec::new();
    for (i, sink) in list.iter().enumerate() {
        // A new alert receiver starts at the head: it is told of emergencies from now
        // on, not of every one still in the spool. A new audit sink gets the whole spool.
        let from = if i < audit_sinks { 0 } else { head };
        cursors.push(
            sinks::Cursor::open_or(&s.dir, sink.name(), from)
                .map_err(|e| AuditError::Io(format!("cannot open the {} sink's cursor: {e}", sink.name())))?,
        );
    }
    let all: Vec<_> = cursors.iter().map(|c| c.seq.clone()).collect();
    let delivery = Arc::new(sinks::Delivery {
        dir: s.dir.clone(),
        committed,
        all_cursors: all.clone(),
        batch: 512,
        retry_max: s.retry_max,
        alert_after: s.sink_alert_after,
        spool_bytes,
        audit,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AuditError::Io(format!("cannot start the audit sinks: {e}")))?;
    std::thread::Builder::new()
        .name("custos-audit-sinks".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for (sink, cursor) in list.into_iter().zip(cursors) {
                    tasks.push(tokio::spawn(sinks::run(delivery.clone(), sink, cursor)));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
        .map_err(|e| AuditError::Io(format!("cannot start the audit sinks: {e}")))?;
    Ok(all)
}

/// The instance id, made once and kept in the audit directory, so the chain and its
/// id survive restarts.
fn instance_id(dir: &Path) -> Result<String, AuditError> {
    let path = dir.join("instance");
    private::create_dir(dir).map_err(|e| AuditError::Io(format!("cannot create {}: {e}", dir.display())))?;
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let id = uuid::Uuid::now_v7().hyphenated().to_string();
            private::write(&path, format!("{id}\n").as_bytes())
                .map_err(|e| AuditError::Io(format!("cannot write {}: {e}", path.display())))?;
            Ok(id)
        }
    }
}

/// The checkpoint signing key: configured, or made once in the audit directory
/// (`signing-key.pem`, mode 0600, with its public half in `signing-key.pub` for
/// `custos audit verify --key`).
fn load_or_make_key(s: &AuditSettings) -> Result<Ed25519KeyPair, AuditError> {
    let pem = match &s.signing_key {
        Some(r) => r.load(&s.key_base).map_err(AuditError::Key)?.expose().to_vec(),
        None => {
            let path = s.dir.join("signing-key.pem");
            match std::fs::read(&path) {
                Ok(pem) => pem,
                Err(_) => {
                    private::create_dir(&s.dir)
                        .map_err(|e| AuditError::Io(format!("cannot create {}: {e}", s.dir.display())))?;
                    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                        .map_err(|e| AuditError::Key(e.to_string()))?;
                    let pem = kp.serialize_pem();
                    write_private(&path, pem.as_bytes())?;
                    pem.into_bytes()
                }
            }
        }
    };
    let der = rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| AuditError::Key("holds no PEM private key".into()))?;
    let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_der())
        .map_err(|e| AuditError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
    let public = s.dir.join("signing-key.pub");
    let hex_pub = format!("{}\n", hex::encode(key.public_key().as_ref()));
    if std::fs::read_to_string(&public).ok().as_deref() != Some(hex_pub.as_str()) {
        let _ = private::write(&public, hex_pub.as_bytes());
    }
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    use std::io::Write;
    let mut f = private::file()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| AuditError::Io(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| AuditError::Io(format!("cannot write {}: {e}", path.display())))
}

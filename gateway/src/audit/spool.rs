//! The durable spool: segment files holding one instance's hash chain, written by one
//! thread with group commit. The writer takes every record that arrived while the
//! previous `fdatasync` ran, appends them in one write, syncs once, and only then
//! acknowledges them, so concurrent requests share fsyncs and a record is acknowledged
//! only when it is on disk. Blocking file I/O never runs on the proxy's threads.
//!
//! On start the writer continues the chain from the last complete line of the newest
//! segment. Bytes after the last newline are a write torn by a crash; they were never
//! acknowledged, so they are cut off. A complete line that fails its hash means the
//! chain was damaged: the writer refuses to start (fail closed).
//!
//! The spool is bounded (`audit.spool_max_bytes`): records stay in it until every sink
//! has them, so a sink that is down makes it grow. A commit that would take it past the
//! limit fails like a full disk, before anything is written, and `audit.on_failure`
//! applies; at 80 % an ALERT is logged. Delivered segments being deleted makes room
//! again. There is no age limit: a record waits as long as its sinks need.

use super::chain::{self, GENESIS};
use super::event::{Checkpoint, Event, Kind};
use super::queue::{Batch, Receiver, Taken};
use super::AuditError;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;

pub(crate) struct SpoolSettings {
    pub dir: PathBuf,
    pub instance: String,
    pub segment_bytes: u64,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub key: Arc<Ed25519KeyPair>,
    /// The last sequence number that is on disk; sinks never read past it.
    pub committed: Arc<std::sync::atomic::AtomicU64>,
    /// `audit.spool_max_bytes` (0: no limit), and the segments' size now (the sinks'
    /// garbage collection lowers it).
    pub max_bytes: u64,
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// Segment files of `dir`, in chain order (named by their first sequence number).
pub fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_stem()
                    .is_some_and(|s| s.len() == 20 && s.to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.jsonl")
}

pub(crate) struct Writer {
    s: SpoolSettings,
    file: File,
    len: u64,
    seq: u64,
    last_hash: String,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    buf: Vec<u8>,
    /// A failed write could not be cut back: the file may hold records the chain head
    /// does not know, so nothing more may be appended (until a restart repairs it).
    poisoned: bool,
    /// The spool passed 80 % of its limit (alerted once until it drops below again).
    nearly_full: bool,
    _lock: File,
}

impl Writer {
    pub fn open(s: SpoolSettings) -> Result<Writer, AuditError> {
        let io = |what: &str, e: std::io::Error| AuditError::Io(format!("{what} {}: {e}", s.dir.display()));
        super::private::create_dir(&s.dir).map_err(|e| io("cannot create", e))?;
        let lock = super::private::file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(s.dir.join("lock"))
            .map_err(|e| io("cannot open the lock in", e))?;
        lock.try_lock().map_err(|_| AuditError::Locked(s.dir.display().to_string()))?;

        let mut seq = 0;
        let mut last_hash = GENESIS.to_string();
        let segs = segments(&s.dir).map_err(|e| io("cannot list", e))?;
        // The newest segment that holds a record gives the chain's head.
        for path in segs.iter().rev() {
            if let Some((q, h)) = repair_and_read_head(path)? {
                seq = q;
                last_hash = h;
                break;
            }
        }
        let path = match segs.last() {
            Some(p) => p.clone(),
            None => s.dir.join(segment_name(seq + 1)),
        };
        let file = super::private::file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::Io(format!("cannot open {}: {e}", path.display())))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        sync_dir(&s.dir);
        s.committed.store(seq, std::sync::atomic::Ordering::Release);
        let total: u64 = segments(&s.dir)
            .map_err(|e| io("cannot list", e))?
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        s.bytes.store(total, std::sync::atomic::Ordering::Release);
        crate::metrics::AUDIT_SPOOL_BYTES.set(total as i64);
        Ok(Writer {
            s,
            file,
            len,
            seq,
            last_hash,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            buf: Vec::with_capacity(64 * 1024),
            poisoned: false,
            nearly_full: false,
            _lock: lock,
        })
    }

    pub fn head(&self) -> (u64, &str) {
        (self.seq, &self.last_hash)
    }

    /// Appends `events` with one write and one fsync. All or nothing: on failure the
    /// file is cut back and the chain head restored. `bounded`: refused past
    /// `spool_max_bytes` (all but `audit.started`, which a full spool must not keep from
    /// starting, since only a started gateway's sinks can drain it).
    fn commit(&mut self, events: &mut [Event], checkpoint: bool, bounded: bool) -> Result<u64, AuditError> {
        if self.poisoned {
            return Err(AuditError::Io(
                "an earlier failed write could not be cut back; restart to repair the spool".into(),
            ));
        }
        let (seq0, hash0) = (self.seq, self.last_hash.clone());
        self.buf.clear();
        let now = time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        for ev in events.iter_mut() {
            self.seq += 1;
            if ev.time.is_empty() {
                ev.time.clone_from(&now);
            }
            ev.instance.clone_from(&self.s.instance);
            chain::encode_onto(&mut self.buf, self.seq, &mut self.last_hash, ev);
        }
        if checkpoint {
            let mut cp = Event::new(Kind::AuditCheckpoint);
            cp.time = now;
            cp.instance.clone_from(&self.s.instance);
            let msg = Checkpoint::message(&self.s.instance, self.seq, &self.last_hash);
            cp.checkpoint = Some(Checkpoint {
                seq: self.seq,
                hash: self.last_hash.clone(),
                key: hex::encode(self.s.key.public_key().as_ref()),
                sig: hex::encode(self.s.key.sign(msg.as_bytes()).as_ref()),
            });
            self.seq += 1;
            chain::encode_onto(&mut self.buf, self.seq, &mut self.last_hash, &cp);
        }
        match self.room_for(self.buf.len() as u64) {
            Err(e) if bounded => {
                self.seq = seq0;
                self.last_hash = hash0;
                return Err(e);
            }
            _ => {}
        }
        let written = self.file.write_all(&self.buf).and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Cut back whatever part of the batch reached the file; if even that fails,
            // stop appending rather than fork the chain.
            let cut = self.file.set_len(self.len).and_then(|_| self.file.metadata()).map(|m| m.len() == self.len);
            if !matches!(cut, Ok(true)) {
                self.poisoned = true;
                tracing::error!("ALERT: a failed audit write could not be cut back; the spool stops until a restart");
            }
            self.seq = seq0;
            self.last_hash = hash0;
            return Err(AuditError::Io(format!("cannot write the audit spool: {e}")));
        }
        self.len += self.buf.len() as u64;
        let total =
            self.s.bytes.fetch_add(self.buf.len() as u64, std::sync::atomic::Ordering::AcqRel) + self.buf.len() as u64;
        crate::metrics::AUDIT_SPOOL_BYTES.set(total as i64);
        self.s.committed.store(self.seq, std::sync::atomic::Ordering::Release);
        if checkpoint {
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        } else {
            self.since_checkpoint += events.len() as u64;
        }
        if self.len >= self.s.segment_bytes {
            // The records are durable already: a failed rotation only means this
            // segment grows until the next try.
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "cannot start a new audit segment; retrying at the next write");
            }
        }
        Ok(self.seq)
    }

    /// Whether `n` more bytes fit under `spool_max_bytes`; alerts at 80 %.
    fn room_for(&mut self, n: u64) -> Result<(), AuditError> {
        let max = self.s.max_bytes;
        if max == 0 {
            return Ok(());
        }
        let now = self.s.bytes.load(std::sync::atomic::Ordering::Acquire);
        let high = now.saturating_add(n) >= max / 5 * 4;
        if high && !self.nearly_full {
            tracing::error!(bytes = now, spool_max_bytes = max, "ALERT: the audit spool is over 80% of audit.spool_max_bytes: a sink is behind (see custos_audit_sink_lag_records)");
        }
        self.nearly_full = high;
        if now.saturating_add(n) > max {
            return Err(AuditError::Full(max));
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        let path = self.s.dir.join(segment_name(self.seq + 1));
        self.file = super::private::file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::Io(format!("cannot open {}: {e}", path.display())))?;
        self.len = 0;
        sync_dir(&self.s.dir);
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.since_checkpoint > 0
            && (self.since_checkpoint >= self.s.checkpoint_every
                || self.last_checkpoint.elapsed() >= self.s.checkpoint_interval)
    }

    /// Appends one event now (used for `audit.started`).
    pub fn append_now(&mut self, mut ev: Event) -> Result<u64, AuditError> {
        self.commit(std::slice::from_mut(&mut ev), false, false)
    }

    /// The writer loop: runs until every sender is gone, then writes a last checkpoint.
    /// Each group is everything queued when it is taken (see [`super::queue`]).
    pub fn run(mut self, rx: Receiver, on_commit: impl Fn(Duration, usize, Result<(), &AuditError>)) {
        let mut batch = Batch::default();
        loop {
            let wait = self.s.checkpoint_interval.saturating_sub(self.last_checkpoint.elapsed());
            match rx.take(&mut batch, Instant::now() + wait.max(Duration::from_millis(10))) {
                Taken::Records => {}
                Taken::Timeout => {
                    if self.checkpoint_due() {
                        let _ = self.commit(&mut [], true, true);
                    }
                    continue;
                }
                Taken::Closed => {
                    if self.since_checkpoint > 0 {
                        let _ = self.commit(&mut [], true, true);
                    }
                    return;
                }
            }
            let started = Instant::now();
            // An orderly stop is checkpointed at once, so the whole chain is signed.
            let checkpoint = self.since_checkpoint + batch.len() as u64 >= self.s.checkpoint_every
                || self.last_checkpoint.elapsed() >= self.s.checkpoint_interval
                || batch.events.iter().any(|e| e.kind == Kind::AuditStopped);
            let result = self.commit(&mut batch.events, checkpoint, true);
            if matches!(result, Err(AuditError::Full(_))) && batch.len() > 1 {
                self.commit_each(&mut batch, &on_commit);
                continue;
            }
            on_commit(started.elapsed(), batch.len(), result.as_ref().map(|_| ()));
            // Each waited record learns its own sequence number: the group's first is
            // one past the head before it.
            let first = result.as_ref().ok().map(|&s| s - checkpoint as u64 + 1 - batch.len() as u64);
            super::queue::acknowledge(batch.acks.drain(..).map(|(i, ack)| {
                let r = match (&result, first) {
                    (Ok(_), Some(first)) => Ok(first + i as u64),
                    (Err(e), _) => Err(e.clone()),
                    _ => Err(AuditError::Closed),
                };
                (r, ack)
            }));
            batch.clear();
        }
    }
}

impl Writer {
    /// A group the spool limit refused, committed record by record in order, as if each
    /// had come alone: a record nobody waits on (queued with the group) must not take a
    /// waited one down with it, nor let a later one through that alone would not fit.
    /// Only on this rare path is there an fsync per record.
    fn commit_each(&mut self, batch: &mut Batch, on_commit: &impl Fn(Duration, usize, Result<(), &AuditError>)) {
        let mut results = Vec::with_capacity(batch.len());
        for ev in batch.events.iter_mut() {
            let started = Instant::now();
            let stop = ev.kind == Kind::AuditStopped;
            let result = self.commit(std::slice::from_mut(ev), stop, true).map(|seq| seq - stop as u64);
            on_commit(started.elapsed(), 1, result.as_ref().map(|_| ()));
            results.push(result);
        }
        super::queue::acknowledge(batch.acks.drain(..).map(|(i, ack)| (results[i].clone(), ack)));
        batch.clear();
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Cuts a torn last line and returns the head (seq, hash) of `path`, if it holds records.
fn repair_and_read_head(path: &Path) -> Result<Option<(u64, String)>, AuditError> {
    let err = |e: std::io::Error| AuditError::Io(format!("cannot read {}: {e}", path.display()));
    let mut f = OpenOptions::new().read(true).write(true).open(path).map_err(err)?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(err)?;
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < data.len() {
        tracing::warn!(file = %path.display(), bytes = data.len() - complete, "cutting a torn audit record (never acknowledged)");
        f.set_len(complete as u64).map_err(err)?;
        f.seek(SeekFrom::End(0)).map_err(err)?;
        f.sync_data().map_err(err)?;
    }
    let body = &data[..complete];
    let Some(last) = body[..body.len().saturating_sub(1)].split(|&b| b == b'\n').next_back().filter(|l| !l.is_empty())
    else {
        return Ok(None);
    };
    match chain::decode(last) {
        Ok(r) => Ok(Some((r.seq, r.hash))),
        Err(e) => Err(AuditError::Damaged(format!(
            "the last record of {} does not verify ({e:?}); run `custos audit verify` on it",
            path.display()
        ))),
    }
}

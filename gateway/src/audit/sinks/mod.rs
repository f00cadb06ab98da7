//! Delivery from the spool to the audit sinks (and to the break-glass alert receivers,
//! which are sinks too). Each sink reads the spool on its own, from its own persisted
//! cursor (`<dir>/cursors/<sink>`), in batches, and retries with capped backoff
//! (`audit.retry_max_ms`) for as long as it takes: the cursor moves only when the sink
//! has taken the batch, so a receiver that is down for hours gets everything once it is
//! back (at least once; every record carries its id). Only a refusal that names the
//! payload itself (HTTP 400 or 422, or 413 for a single record; a 413 batch is halved
//! first) is final: those records go to `<dir>/dead-letters/<sink>/`, an
//! `audit.dead_lettered` record says so, and `custos audit redeliver` moves them to
//! `<dir>/redeliver/<sink>/`, where the running sink picks them up and delivers them
//! the same way (`audit.redelivered`). Sinks read only what the writer has made
//! durable. A segment file is deleted once every sink has all of it. Sinks run on their
//! own runtime thread, never on the proxy's.

pub mod alert;
mod dead_letters;
pub mod file;
pub mod otlp;
pub mod redis;
pub mod webhook;

use super::chain::{self, Record};
use super::spool::segments;
use super::{Audit, Event, Kind};
use async_trait::async_trait;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dead_letters::{bury, letters, read_letter};
pub use dead_letters::{dead_letter_dir, queue_redelivery, redeliver_dir};

/// One record as the sinks see it: parsed, and the exact line bytes.
pub struct Line {
    pub record: Record,
    /// The line as written in the chain, without its newline.
    pub bytes: Vec<u8>,
}

/// Why a sink could not be set up from its settings; names the config key.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("audit.redis.url: {0}")]
    RedisUrl(::redis::RedisError),
    #[error("audit.otlp: {0}")]
    OtlpClient(reqwest::Error),
    #[error("audit.webhook.ca: {0}")]
    WebhookCa(reqwest::Error),
    #[error("audit.webhook: {0}")]
    WebhookClient(reqwest::Error),
}

/// Why a sink did not take a batch.
#[derive(Debug)]
pub enum Failure {
    /// Try again later: the receiver is unreachable, slow, overloaded, or refused for a
    /// reason that is not the payload's (5xx, 401, 403, 404, 408, 429, …).
    Retry(String),
    /// The receiver refused the payload itself (400, 422): it never will take it.
    Refused(String),
    /// The payload was too large (413): a smaller batch may pass.
    TooLarge(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure::Retry(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(e) | Failure::Refused(e) | Failure::TooLarge(e) => f.write_str(e),
        }
    }
}

/// How an HTTP receiver's non-2xx answer is read, for every HTTP sink: only 400, 413 and
/// 422 say the payload is bad; anything else (401/403: credentials, 404: a wrong or
/// moved endpoint, 408/429/5xx: load) may pass later, so it is retried.
pub fn http_failure(status: u16, what: String) -> Failure {
    match status {
        400 | 422 => Failure::Refused(what),
        413 => Failure::TooLarge(what),
        _ => Failure::Retry(what),
    }
}

#[async_trait]
pub trait Sink: Send {
    fn name(&self) -> &str;
    /// Takes a batch, all or nothing as far as the caller knows: on error the whole
    /// batch is offered again, so a sink must tolerate records it already has.
    async fn deliver(&mut self, batch: &[Line]) -> Result<(), Failure>;
}

/// Reads complete, committed records from the spool, in order, from a sequence number.
pub struct SpoolReader {
    dir: PathBuf,
    next_seq: u64,
    current: Option<(PathBuf, File, u64)>,
    pending: Vec<u8>,
}

impl SpoolReader {
    pub fn new(dir: &Path, next_seq: u64) -> SpoolReader {
        SpoolReader { dir: dir.to_path_buf(), next_seq, current: None, pending: Vec::new() }
    }

    /// The segment that holds `seq`: the last one whose first sequence is at or below it.
    fn segment_for(&self, seq: u64) -> std::io::Result<Option<PathBuf>> {
        let segs = segments(&self.dir)?;
        Ok(segs.iter().rev().find(|p| first_seq(p).is_some_and(|f| f <= seq)).or(segs.first()).cloned())
    }

    /// Up to `max` records with seq in `next_seq..=committed`.
    pub fn read(&mut self, committed: u64, max: usize) -> std::io::Result<Vec<Line>> {
        let mut out = Vec::new();
        while out.len() < max && self.next_seq <= committed {
            if self.current.is_none() {
                let Some(path) = self.segment_for(self.next_seq)? else { break };
                let file = File::open(&path)?;
                self.current = Some((path, file, 0));
                self.pending.clear();
            }
            let (path, file, offset) = self.current.as_mut().expect("set above");
            file.seek(SeekFrom::Start(*offset))?;
            let mut chunk = Vec::new();
            file.take(1 << 20).read_to_end(&mut chunk)?;
            *offset += chunk.len() as u64;
            self.pending.extend_from_slice(&chunk);
            let mut consumed = 0;
            while out.len() < max {
                let Some(nl) = self.pending[consumed..].iter().position(|&b| b == b'\n') else { break };
                let line = &self.pending[consumed..consumed + nl];
                let record = chain::decode(line).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e:?}", path.display()))
                })?;
                if record.seq > committed {
                    break;
                }
                let seq = record.seq;
                if seq >= self.next_seq {
                    out.push(Line { record, bytes: line.to_vec() });
                    self.next_seq = seq.saturating_add(1);
                }
                consumed += nl + 1;
            }
            // Keep what was not consumed; rewind the file offset to just past it.
            let left = self.pending.len() - consumed;
            if consumed == 0 && chunk.len() == 1 << 20 && !self.pending.contains(&b'\n') {
                // A whole chunk without a line end: not a chain this writer wrote
                // (records are far smaller); stop loudly rather than spin on it.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: a line longer than 1 MiB", path.display()),
                ));
            }
            *offset -= left as u64;
            self.pending.clear();
            if chunk.is_empty() || (left > 0 && out.len() < max) {
                // End of this segment's data for now: move on if a newer segment
                // starts where we are, else wait for more.
                let newer = segments(&self.dir)?.into_iter().any(|p| first_seq(&p) == Some(self.next_seq));
                let here = first_seq(path);
                if newer && here != Some(self.next_seq) {
                    self.current = None;
                    continue;
                }
                break;
            }
        }
        Ok(out)
    }
}

fn first_seq(p: &Path) -> Option<u64> {
    p.file_stem()?.to_str()?.parse().ok()
}

/// A sink's cursor: the last sequence number it has.
pub struct Cursor {
    path: PathBuf,
    pub seq: Arc<AtomicU64>,
}

impl Cursor {
    pub fn open(dir: &Path, sink: &str) -> std::io::Result<Cursor> {
        Self::open_or(dir, sink, 0)
    }

    /// Opens the cursor of `sink`, starting a new one at `from`.
    pub fn open_or(dir: &Path, sink: &str, from: u64) -> std::io::Result<Cursor> {
        let cdir = dir.join("cursors");
        crate::audit::private::create_dir(&cdir)?;
        let path = cdir.join(sink);
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let seq = s.trim().parse().unwrap_or(0);
                Ok(Cursor { path, seq: Arc::new(AtomicU64::new(seq)) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Cursor { path, seq: Arc::new(AtomicU64::new(from)) };
                if from > 0 {
                    c.save(from)?;
                }
                Ok(c)
            }
            Err(e) => Err(e),
        }
    }

    /// Durably moves the cursor (write, fsync, rename).
    pub fn save(&self, seq: u64) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("tmp");
        let mut f = crate::audit::private::file().write(true).create(true).truncate(true).open(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.seq.store(seq, Ordering::Release);
        Ok(())
    }
}

/// Deletes segments every sink has delivered completely. The newest two always stay:
/// right after a rotation the newest is empty and the one before it holds the chain's
/// head, which the writer needs to continue the chain after a restart.
/// `spool_bytes` (the spool's size, see `audit.spool_max_bytes`) drops by what is deleted.
pub fn collect_garbage(dir: &Path, cursors: &[Arc<AtomicU64>], spool_bytes: &AtomicU64) {
    let Some(min) = cursors.iter().map(|c| c.load(Ordering::Acquire)).min() else { return };
    let Ok(segs) = segments(dir) else { return };
    let keep_from = segs.len().saturating_sub(1);
    for pair in segs[..keep_from].windows(2) {
        // A segment's last record is the one before the next segment's first.
        if first_seq(&pair[1]).is_some_and(|next| next.saturating_sub(1) <= min) {
            let len = std::fs::metadata(&pair[0]).map_or(0, |m| m.len());
            match std::fs::remove_file(&pair[0]) {
                Ok(()) => {
                    let left = spool_bytes
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| Some(b.saturating_sub(len)))
                        .map_or(0, |b| b.saturating_sub(len));
                    crate::metrics::AUDIT_SPOOL_BYTES.set(left as i64);
                }
                Err(e) => {
                    tracing::warn!(file = %pair[0].display(), error = %e, "cannot delete a delivered audit segment")
                }
            }
        } else {
            break;
        }
    }
}

/// What every sink's delivery loop shares.
pub struct Delivery {
    pub dir: PathBuf,
    pub committed: Arc<AtomicU64>,
    pub all_cursors: Vec<Arc<AtomicU64>>,
    pub batch: usize,
    /// The longest wait between two tries (`audit.retry_max_ms`).
    pub retry_max: Duration,
    /// A sink that has not taken its records for this long raises an ALERT
    /// (`audit.sink_alert_secs`).
    pub alert_after: Duration,
    pub spool_bytes: Arc<AtomicU64>,
    /// Where dead-letter and redelivery records go.
    pub audit: Audit,
}

fn delivery_event(kind: Kind, sink: &str, lines: &[Line]) -> Event {
    let mut ev = Event::new(kind);
    ev.sink = Some(sink.to_string());
    ev.count = Some(lines.len() as u64);
    ev.first_seq = lines.first().map(|l| l.record.seq);
    ev.last_seq = lines.last().map(|l| l.record.seq);
    ev
}

fn age_secs(l: &Line) -> i64 {
    time::OffsetDateTime::parse(&l.record.event.time, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0))
}

/// Offers `lines` to the sink until it has taken them, retrying with capped backoff for
/// as long as it takes. A 413 halves the batch; what the receiver refuses for good is
/// returned (contiguous runs, with the reason), to be dead-lettered by the caller.
async fn deliver_until_taken<'a>(
    d: &Delivery,
    sink: &mut dyn Sink,
    name: &str,
    lines: &'a [Line],
) -> Vec<(&'a [Line], String)> {
    let mut refused = Vec::new();
    let (mut done, mut take) = (0, lines.len());
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    let mut failing_since: Option<Instant> = None;
    let mut alerted = false;
    while done < lines.len() {
        let part = &lines[done..(done + take).min(lines.len())];
        match sink.deliver(part).await {
            Ok(()) => done += part.len(),
            Err(Failure::TooLarge(_)) if part.len() > 1 => take = part.len() / 2,
            Err(Failure::Refused(e) | Failure::TooLarge(e)) => {
                tracing::error!(sink = %name, records = part.len(), error = %e, "ALERT: the audit sink's receiver refused records for good; kept as dead letters");
                refused.push((part, e));
                done += part.len();
            }
            Err(Failure::Retry(e)) => {
                failures += 1;
                crate::metrics::AUDIT_SINK_FAILURES.with_label_values(&[name]).inc();
                crate::metrics::AUDIT_SINK_OLDEST.with_label_values(&[name]).set(age_secs(&part[0]));
                let since = *failing_since.get_or_insert_with(Instant::now);
                if failures == 1 {
                    tracing::warn!(sink = %name, error = %e, "audit sink unavailable; records stay in the spool and are retried until taken");
                }
                if !alerted && since.elapsed() >= d.alert_after {
                    alerted = true;
                    tracing::error!(sink = %name, secs = since.elapsed().as_secs(), oldest_secs = age_secs(&part[0]), error = %e, "ALERT: an audit sink has taken nothing for audit.sink_alert_secs; its records wait in the spool");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(d.retry_max);
            }
        }
    }
    if failures > 0 {
        tracing::info!(sink = %name, failures, "audit sink back");
        crate::metrics::AUDIT_SINK_OLDEST.with_label_values(&[name]).set(0);
    }
    refused
}

/// Dead-letters what was refused, until that is on disk (the cursor must not pass
/// records that are neither delivered nor kept), and records it.
async fn bury_refused(d: &Delivery, name: &str, refused: &[(&[Line], String)]) {
    for (part, why) in refused {
        loop {
            match bury(&d.dir, name, part) {
                Ok(path) => {
                    tracing::error!(sink = %name, records = part.len(), file = %path.display(), "dead-lettered; `custos audit redeliver` sends them again");
                    break;
                }
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "ALERT: cannot write a dead letter; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        crate::metrics::AUDIT_DEAD_LETTER.inc_by(part.len() as u64);
        // A receiver that refuses the dead-letter records themselves would otherwise
        // make one for each, for ever: those are only logged and counted.
        if !part.iter().all(|l| l.record.event.kind == Kind::AuditDeadLettered) {
            let mut ev = delivery_event(Kind::AuditDeadLettered, name, part);
            ev.reason = Some(crate::audit::Reason::message(why.chars().take(200).collect::<String>()));
            d.audit.append(ev);
        }
    }
}

/// Delivers one queued redelivery file; on success it is deleted and recorded.
async fn redeliver(d: &Delivery, sink: &mut dyn Sink, name: &str, path: &Path) {
    let lines = match read_letter(path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(sink = %name, file = %path.display(), error = %e, "ALERT: a queued dead letter cannot be read; moved back to the dead letters");
            let back = dead_letter_dir(&d.dir, name);
            let _ = crate::audit::private::create_dir(&back);
            let _ = std::fs::rename(path, back.join(path.file_name().unwrap_or_default()));
            return;
        }
    };
    let refused = deliver_until_taken(d, sink, name, &lines).await;
    bury_refused(d, name, &refused).await;
    let taken = lines.len() - refused.iter().map(|(p, _)| p.len()).sum::<usize>();
    if taken > 0 {
        let mut ev = delivery_event(Kind::AuditRedelivered, name, &lines);
        ev.count = Some(taken as u64);
        d.audit.append(ev);
        crate::metrics::AUDIT_SINK_DELIVERED.with_label_values(&[name]).inc_by(taken as u64);
    }
    if let Err(e) = std::fs::remove_file(path) {
        tracing::error!(sink = %name, file = %path.display(), error = %e, "cannot delete a redelivered dead letter; it may be sent again");
    }
    tracing::info!(sink = %name, records = taken, "dead letters redelivered");
}

/// Runs one sink until the process ends.
pub async fn run(d: Arc<Delivery>, mut sink: Box<dyn Sink>, cursor: Cursor) {
    let name = sink.name().to_string();
    let mut reader = SpoolReader::new(&d.dir, cursor.seq.load(Ordering::Acquire) + 1);
    let queue = redeliver_dir(&d.dir, &name);
    let mut looked: Option<Instant> = None;
    loop {
        let head = d.committed.load(Ordering::Acquire);
        let slowest = d.all_cursors.iter().map(|c| c.load(Ordering::Acquire)).min().unwrap_or(head);
        crate::metrics::AUDIT_SPOOL_DEPTH.set(head.saturating_sub(slowest) as i64);
        crate::metrics::AUDIT_SINK_LAG
            .with_label_values(&[&name])
            .set(head.saturating_sub(cursor.seq.load(Ordering::Acquire)) as i64);
        // Dead letters queued again by `custos audit redeliver`, looked for once a second.
        if looked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            looked = Some(Instant::now());
            if let Some(path) = letters(&queue).ok().and_then(|v| v.into_iter().next()) {
                redeliver(&d, sink.as_mut(), &name, &path).await;
                // The next one at once.
                looked = None;
                continue;
            }
        }
        let lines = match reader.read(head, d.batch) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "cannot read the audit spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                reader = SpoolReader::new(&d.dir, cursor.seq.load(Ordering::Acquire) + 1);
                continue;
            }
        };
        let Some(last) = lines.last().map(|l| l.record.seq) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let refused = deliver_until_taken(&d, sink.as_mut(), &name, &lines).await;
        bury_refused(&d, &name, &refused).await;
        let taken = lines.len() - refused.iter().map(|(p, _)| p.len()).sum::<usize>();
        crate::metrics::AUDIT_SINK_DELIVERED.with_label_values(&[&name]).inc_by(taken as u64);
        if let Err(e) = cursor.save(last) {
            tracing::error!(sink = %name, error = %e, "cannot save the sink cursor; records may be sent again");
        }
        collect_garbage(&d.dir, &d.all_cursors, &d.spool_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_collection_keeps_the_chain_head() {
        let dir = tempfile_dir();
        for first in [1u64, 11, 21, 31] {
            std::fs::write(dir.join(format!("{first:020}.jsonl")), b"").unwrap();
        }
        // Every sink has everything up to seq 30: the segment starting at 31 has just
        // been opened (empty) and 21..30 holds the head.
        let all = [Arc::new(AtomicU64::new(30))];
        collect_garbage(&dir, &all, &AtomicU64::new(0));
        let left: Vec<u64> = segments(&dir).unwrap().iter().filter_map(|p| first_seq(p)).collect();
        assert_eq!(left, [21, 31]);
        // A slower sink holds back what it still needs.
        for first in [1u64, 11] {
            std::fs::write(dir.join(format!("{first:020}.jsonl")), b"").unwrap();
        }
        collect_garbage(&dir, &[Arc::new(AtomicU64::new(30)), Arc::new(AtomicU64::new(5))], &AtomicU64::new(0));
        let left: Vec<u64> = segments(&dir).unwrap().iter().filter_map(|p| first_seq(p)).collect();
        assert_eq!(left, [1, 11, 21, 31]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_refusal_of_the_payload_is_final() {
        for status in [400, 422] {
            assert!(matches!(http_failure(status, String::new()), Failure::Refused(_)), "{status}");
        }
        assert!(matches!(http_failure(413, String::new()), Failure::TooLarge(_)));
        for status in [401, 403, 404, 408, 409, 410, 429, 500, 502, 503, 504, 302] {
            assert!(matches!(http_failure(status, String::new()), Failure::Retry(_)), "{status}");
        }
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("custos-gc-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

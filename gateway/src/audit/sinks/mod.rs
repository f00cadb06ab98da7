//! Delivery from the spool to the audit sinks. Each sink reads the spool on its own,
//! from its own persisted cursor (`<dir>/cursors/<sink>`), in batches, and retries with
//! backoff until the sink takes the batch; only then does the cursor move. A sink that
//! was down therefore receives everything once it is back (at least once; every record
//! carries its id). Sinks read only what the writer has made durable. A segment file is
//! deleted once every sink has all of it. Sinks run on their own runtime thread, never
//! on the proxy's.

pub mod file;
pub mod otlp;
pub mod redis;
pub mod webhook;

use super::chain::{self, Record};
use super::spool::segments;
use async_trait::async_trait;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One record as the sinks see it: parsed, and the exact line bytes.
pub struct Line {
    pub record: Record,
    /// The line as written in the chain, without its newline.
    pub bytes: Vec<u8>,
}

#[async_trait]
pub trait Sink: Send {
    fn name(&self) -> &str;
    /// Takes a batch, all or nothing as far as the caller knows: on error the whole
    /// batch is offered again, so a sink must tolerate records it already has.
    async fn deliver(&mut self, batch: &[Line]) -> Result<(), String>;
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
        let cdir = dir.join("cursors");
        crate::audit::private::create_dir(&cdir)?;
        let path = cdir.join(sink);
        let seq = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        Ok(Cursor { path, seq: Arc::new(AtomicU64::new(seq)) })
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
pub fn collect_garbage(dir: &Path, cursors: &[Arc<AtomicU64>]) {
    let Some(min) = cursors.iter().map(|c| c.load(Ordering::Acquire)).min() else { return };
    let Ok(segs) = segments(dir) else { return };
    let keep_from = segs.len().saturating_sub(1);
    for pair in segs[..keep_from].windows(2) {
        // A segment's last record is the one before the next segment's first.
        if first_seq(&pair[1]).is_some_and(|next| next.saturating_sub(1) <= min) {
            if let Err(e) = std::fs::remove_file(&pair[0]) {
                tracing::warn!(file = %pair[0].display(), error = %e, "cannot delete a delivered audit segment");
            }
        } else {
            break;
        }
    }
}

/// Runs one sink until the process ends.
pub async fn run(
    dir: PathBuf,
    mut sink: Box<dyn Sink>,
    cursor: Cursor,
    committed: Arc<AtomicU64>,
    all_cursors: Vec<Arc<AtomicU64>>,
    batch: usize,
) {
    let name = sink.name().to_string();
    let mut reader = SpoolReader::new(&dir, cursor.seq.load(Ordering::Acquire) + 1);
    loop {
        let head = committed.load(Ordering::Acquire);
        let slowest = all_cursors.iter().map(|c| c.load(Ordering::Acquire)).min().unwrap_or(head);
        crate::http::metrics::AUDIT_SPOOL_DEPTH.set(head.saturating_sub(slowest) as i64);
        crate::http::metrics::AUDIT_SINK_LAG
            .with_label_values(&[&name])
            .set(head.saturating_sub(cursor.seq.load(Ordering::Acquire)) as i64);
        let lines = match reader.read(head, batch) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "cannot read the audit spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                reader = SpoolReader::new(&dir, cursor.seq.load(Ordering::Acquire) + 1);
                continue;
            }
        };
        let Some(last) = lines.last().map(|l| l.record.seq) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            match sink.deliver(&lines).await {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    crate::http::metrics::AUDIT_SINK_FAILURES.with_label_values(&[&name]).inc();
                    crate::http::metrics::AUDIT_SINK_LAG.with_label_values(&[&name]).set(
                        committed.load(Ordering::Acquire).saturating_sub(cursor.seq.load(Ordering::Acquire)) as i64,
                    );
                    if failures == 1 {
                        tracing::warn!(sink = %name, error = %e, "audit sink unavailable; records stay in the spool");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if failures > 0 {
            tracing::info!(sink = %name, failures, "audit sink back");
        }
        crate::http::metrics::AUDIT_SINK_DELIVERED.with_label_values(&[&name]).inc_by(lines.len() as u64);
        if let Err(e) = cursor.save(last) {
            tracing::error!(sink = %name, error = %e, "cannot save the sink cursor; records may be sent again");
        }
        collect_garbage(&dir, &all_cursors);
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
        collect_garbage(&dir, &all);
        let left: Vec<u64> = segments(&dir).unwrap().iter().filter_map(|p| first_seq(p)).collect();
        assert_eq!(left, [21, 31]);
        // A slower sink holds back what it still needs.
        for first in [1u64, 11] {
            std::fs::write(dir.join(format!("{first:020}.jsonl")), b"").unwrap();
        }
        collect_garbage(&dir, &[Arc::new(AtomicU64::new(30)), Arc::new(AtomicU64::new(5))]);
        let left: Vec<u64> = segments(&dir).unwrap().iter().filter_map(|p| first_seq(p)).collect();
        assert_eq!(left, [1, 11, 21, 31]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("custos-gc-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

//! The file sink: the chain's lines appended, unchanged, to one JSONL archive file that
//! `custos audit verify` reads. Exactly once: on open it finds the last sequence number
//! already in the file and skips what it has.

use super::{Failure, Line, Sink};
use async_trait::async_trait;
use std::io::Write;
use std::path::PathBuf;

pub struct FileSink {
    path: PathBuf,
    last_seq: Option<u64>,
    /// The instance whose chain the archive holds, once known.
    instance: Option<String>,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path, last_seq: None, instance: None }
    }

    /// The seq of the file's last record (0 when empty), cutting a torn last append.
    fn last_in_file(&mut self) -> Result<u64, Failure> {
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Failure::Retry(format!("{}: {e}", self.path.display()))),
        };
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < data.len() {
            // A torn append: cut it, it will be written again.
            let f =
                std::fs::OpenOptions::new().write(true).open(&self.path).map_err(|e| Failure::Retry(e.to_string()))?;
            f.set_len(complete as u64).map_err(|e| Failure::Retry(e.to_string()))?;
        }
        let body = &data[..complete];
        let last = body[..body.len().saturating_sub(1)].split(|&b| b == b'\n').next_back().unwrap_or(b"");
        if last.is_empty() {
            return Ok(0);
        }
        let r = crate::audit::chain::decode(last)
            .map_err(|e| Failure::Retry(format!("{}: the last line does not verify: {e:?}", self.path.display())))?;
        self.instance = Some(r.event.instance);
        Ok(r.seq)
    }
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    async fn deliver(&mut self, batch: &[Line]) -> Result<(), Failure> {
        let last = match self.last_seq {
            Some(s) => s,
            None => {
                let s = self.last_in_file()?;
                self.last_seq = Some(s);
                s
            }
        };
        if let (Some(archived), Some(l)) = (&self.instance, batch.first()) {
            if archived != &l.record.event.instance {
                return Err(Failure::Retry(format!(
                    "{} holds the chain of instance {archived}, not {}: give this chain its own archive file",
                    self.path.display(),
                    l.record.event.instance
                )));
            }
        }
        let mut buf = Vec::new();
        for l in batch.iter().filter(|l| l.record.seq > last) {
            buf.extend_from_slice(&l.bytes);
            buf.push(b'\n');
        }
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = crate::audit::private::file().create(true).append(true).open(&path)?;
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
        match result {
            Ok(()) => {
                self.last_seq = batch.last().map(|l| l.record.seq).or(self.last_seq);
                Ok(())
            }
            Err(e) => {
                // Re-read the file's end next time: part of the batch may be there.
                self.last_seq = None;
                Err(Failure::Retry(format!("{}: {e}", self.path.display())))
            }
        }
    }
}

//! Dead letters: records a receiver refused for good, kept as chain lines under
//! `<dir>/dead-letters/<sink>/`, and moved by `custos audit redeliver` to
//! `<dir>/redeliver/<sink>/` for the running sink to deliver again.

use super::chain;
use super::Line;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::config::audit::dead_letter_dir;

/// `<dir>/redeliver/<sink>`: dead letters queued by `custos audit redeliver`.
pub fn redeliver_dir(dir: &Path, sink: &str) -> PathBuf {
    dir.join("redeliver").join(sink)
}

/// Keeps refused records as chain lines in `<first seq>-<last seq>.jsonl` (written,
/// synced, then renamed into place; 0600 in a 0700 folder: they name people).
pub(super) fn bury(dir: &Path, sink: &str, lines: &[Line]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let folder = dead_letter_dir(dir, sink);
    crate::audit::private::create_dir(&folder)?;
    let (first, last) = (lines.first().map_or(0, |l| l.record.seq), lines.last().map_or(0, |l| l.record.seq));
    let path = folder.join(format!("{first:020}-{last:020}.jsonl"));
    let tmp = folder.join(format!(".{first:020}-{last:020}.tmp"));
    let mut f = crate::audit::private::file().write(true).create(true).truncate(true).open(&tmp)?;
    for l in lines {
        f.write_all(&l.bytes)?;
        f.write_all(b"\n")?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = File::open(&folder) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Moves the dead letters of `sink` (or of every sink) to the redelivery queue that the
/// running gateway's sinks take from (or the next start's). Returns (sink, batches,
/// records) per sink.
pub fn queue_redelivery(dir: &Path, sink: Option<&str>) -> std::io::Result<Vec<(String, usize, usize)>> {
    let root = dir.join("dead-letters");
    let sinks: Vec<String> = match sink {
        Some(s) => vec![s.to_string()],
        None => match std::fs::read_dir(&root) {
            Ok(rd) => {
                rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into()).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        },
    };
    let mut out = Vec::new();
    for s in sinks {
        let from = dead_letter_dir(dir, &s);
        let files = letters(&from)?;
        if files.is_empty() {
            out.push((s, 0, 0));
            continue;
        }
        let to = redeliver_dir(dir, &s);
        crate::audit::private::create_dir(&to)?;
        let mut records = 0;
        for f in &files {
            records += std::fs::read(f)?.iter().filter(|&&b| b == b'\n').count();
            std::fs::rename(f, to.join(f.file_name().unwrap_or_default()))?;
        }
        out.push((s, files.len(), records));
    }
    Ok(out)
}

/// The `*.jsonl` files of a dead-letter or redelivery folder, oldest records first.
pub(super) fn letters(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(folder) {
        Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "jsonl")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort();
    Ok(v)
}

pub(super) fn read_letter(path: &Path) -> std::io::Result<Vec<Line>> {
    let data = std::fs::read(path)?;
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            chain::decode(l)
                .map(|record| Line { record, bytes: l.to_vec() })
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e:?}", path.display())))
        })
        .collect()
}

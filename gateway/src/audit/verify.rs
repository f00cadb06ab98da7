//! `custos audit verify`: walks one instance's chain and names the first record that
//! was altered, removed, inserted or moved, and checks every signed checkpoint.

use super::chain::{self, LineError, GENESIS};
use super::event::{Checkpoint, Kind};
use ring::signature::{UnparsedPublicKey, ED25519};
use std::fmt;
use std::path::{Path, PathBuf};

/// The first thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Unreadable {
        file: PathBuf,
        why: String,
    },
    Malformed {
        file: PathBuf,
        line: usize,
        why: String,
    },
    /// The record's bytes do not match its hash: edited.
    Altered {
        file: PathBuf,
        line: usize,
        seq: u64,
    },
    /// Sequence numbers jump: records were removed.
    Missing {
        file: PathBuf,
        line: usize,
        expected: u64,
        found: u64,
    },
    /// A sequence number goes backwards or repeats: a record was inserted or moved.
    OutOfOrder {
        file: PathBuf,
        line: usize,
        seq: u64,
        after: u64,
    },
    /// A record comes before one it should follow (the expected one appears later).
    Reordered {
        file: PathBuf,
        line: usize,
        seq: u64,
        expected: u64,
    },
    /// The record does not link to the one before it.
    BrokenLink {
        file: PathBuf,
        line: usize,
        seq: u64,
    },
    /// Records from another gateway instance inside this chain.
    ForeignInstance {
        file: PathBuf,
        line: usize,
        instance: String,
    },
    BadCheckpoint {
        file: PathBuf,
        line: usize,
        seq: u64,
        why: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Unreadable { file, why } => write!(f, "{}: cannot read: {why}", file.display()),
            Finding::Malformed { file, line, why } => write!(f, "{}:{line}: not a chain record: {why}", file.display()),
            Finding::Altered { file, line, seq } => {
                write!(
                    f,
                    "{}:{line}: record seq {seq} was altered (its hash does not match its contents)",
                    file.display()
                )
            }
            Finding::Missing { file, line, expected, found } => write!(
                f,
                "{}:{line}: records missing: expected seq {expected}, found seq {found} ({} record(s) removed)",
                file.display(),
                found - expected
            ),
            Finding::OutOfOrder { file, line, seq, after } => {
                write!(f, "{}:{line}: record seq {seq} after seq {after}: inserted or reordered", file.display())
            }
            Finding::Reordered { file, line, seq, expected } => write!(
                f,
                "{}:{line}: record seq {seq} comes before seq {expected}, which appears later: reordered",
                file.display()
            ),
            Finding::BrokenLink { file, line, seq } => write!(
                f,
                "{}:{line}: record seq {seq} does not link to the record before it: inserted, replaced or reordered",
                file.display()
            ),
            Finding::ForeignInstance { file, line, instance } => {
                write!(f, "{}:{line}: record of another instance ({instance}) inside this chain", file.display())
            }
            Finding::BadCheckpoint { file, line, seq, why } => {
                write!(f, "{}:{line}: checkpoint seq {seq}: {why}", file.display())
            }
        }
    }
}

/// What a chain that verifies holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub instance: String,
    pub checkpoints: u64,
    pub last_checkpoint: Option<u64>,
    /// Records after the last checkpoint record: the part of the chain no signature
    /// covers yet.
    pub unsigned_tail: u64,
    /// Whether checkpoint signatures were checked against a given key.
    pub signatures_checked: bool,
    /// (seq, hash) named by each checkpoint in the chain.
    pub checkpointed: Vec<(u64, String)>,
}

/// How a chain disagrees with the checkpoint kept outside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointMismatch {
    #[error("tail cut: a checkpoint kept outside the file covers seq {seq}, but the chain ends at seq {last_seq} ({} record(s) missing at the end)", seq - last_seq)]
    TailCut { seq: u64, last_seq: u64 },
    #[error("the checkpoint kept outside the file for seq {seq} names another hash: the chain was rewritten")]
    Rewritten { seq: u64 },
    #[error("the chain holds no checkpoint for seq {seq}, which the outside copy has")]
    Missing { seq: u64 },
}

/// The checkpoint kept outside the file says the chain went further than the file:
/// its tail was cut (or the files given are not the whole chain).
pub fn check_against_checkpoint(r: &Report, seq: u64, hash: &str) -> Result<(), CheckpointMismatch> {
    if seq > r.last_seq {
        return Err(CheckpointMismatch::TailCut { seq, last_seq: r.last_seq });
    }
    match r.checkpointed.iter().find(|(s, _)| *s == seq) {
        Some((_, h)) if h == hash => Ok(()),
        Some(_) => Err(CheckpointMismatch::Rewritten { seq }),
        None if seq < r.first_seq => Ok(()),
        None => Err(CheckpointMismatch::Missing { seq }),
    }
}

/// Expands directories into their segment files; keeps files in the order given.
pub fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(super::spool::segments(p).unwrap_or_default());
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Whether a record numbered `seq` comes after line index `from` of `file` (whose bytes
/// are `data`) or in a later file: tells a reordered record from a removed one.
fn appears_later(files: &[PathBuf], file: &Path, data: &[u8], from: usize, seq: u64) -> bool {
    let prefix = format!("{{\"seq\":{seq},");
    let in_lines =
        |d: &[u8], skip: usize| d.split(|&b| b == b'\n').skip(skip).any(|l| l.starts_with(prefix.as_bytes()));
    if in_lines(data, from + 1) {
        return true;
    }
    let later = files.iter().skip_while(|f| f.as_path() != file).skip(1);
    later.filter_map(|f| std::fs::read(f).ok()).any(|d| in_lines(&d, 0))
}

fn first_seq_of_name(p: &Path) -> Option<u64> {
    let stem = p.file_stem()?.to_str()?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

/// Verifies `files` as one chain, in order. `key` is the hex Ed25519 public key that
/// must have signed every checkpoint.
pub fn verify(files: &[PathBuf], key: Option<&[u8]>) -> Result<Report, Finding> {
    verify_from(files, key, false)
}

/// As [`verify`]; with `partial`, the chain may start after seq 1 (a spool whose
/// delivered segments were collected). Without it a chain that does not start at seq
/// 1 is a removed head.
pub fn verify_from(files: &[PathBuf], key: Option<&[u8]>, partial: bool) -> Result<Report, Finding> {
    let mut r = Report { signatures_checked: key.is_some(), ..Report::default() };
    let mut prev: Option<(u64, String)> = None;
    for file in files {
        let data = std::fs::read(file).map_err(|e| Finding::Unreadable { file: file.clone(), why: e.to_string() })?;
        let mut named_first = first_seq_of_name(file);
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            if line.is_empty() {
                continue;
            }
            let rec = match chain::decode(line) {
                Ok(rec) => rec,
                Err(LineError::HashMismatch) => {
                    let seq = serde_json::from_slice::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v["seq"].as_u64())
                        .unwrap_or(0);
                    return Err(Finding::Altered { file: file.clone(), line: n, seq });
                }
                Err(LineError::Malformed(why)) => return Err(Finding::Malformed { file: file.clone(), line: n, why }),
            };
            // A segment is named after its first record: a removed head shows here.
            if let Some(first) = named_first.take() {
                if rec.seq > first {
                    return Err(Finding::Missing { file: file.clone(), line: n, expected: first, found: rec.seq });
                }
            }
            match &prev {
                None => {
                    if rec.seq == 1 && rec.prev != GENESIS {
                        return Err(Finding::BrokenLink { file: file.clone(), line: n, seq: rec.seq });
                    }
                    if rec.seq != 1 && !partial {
                        return Err(Finding::Missing { file: file.clone(), line: n, expected: 1, found: rec.seq });
                    }
                    r.first_seq = rec.seq;
                    r.instance.clone_from(&rec.event.instance);
                }
                Some((pseq, phash)) => {
                    if rec.seq <= *pseq {
                        return Err(Finding::OutOfOrder { file: file.clone(), line: n, seq: rec.seq, after: *pseq });
                    }
                    if rec.seq > pseq.saturating_add(1) {
                        let expected = pseq.saturating_add(1);
                        if appears_later(files, file, &data, i, expected) {
                            return Err(Finding::Reordered { file: file.clone(), line: n, seq: rec.seq, expected });
                        }
                        return Err(Finding::Missing { file: file.clone(), line: n, expected, found: rec.seq });
                    }
                    if &rec.prev != phash {
                        return Err(Finding::BrokenLink { file: file.clone(), line: n, seq: rec.seq });
                    }
                    if rec.event.instance != r.instance {
                        return Err(Finding::ForeignInstance {
                            file: file.clone(),
                            line: n,
                            instance: rec.event.instance,
                        });
                    }
                }
            }
            if rec.event.kind == Kind::AuditCheckpoint {
                let bad = |why: String| Finding::BadCheckpoint { file: file.clone(), line: n, seq: rec.seq, why };
                let cp = rec.event.checkpoint.as_ref().ok_or_else(|| bad("carries no checkpoint".into()))?;
                match &prev {
                    Some((pseq, phash)) if cp.seq == *pseq && &cp.hash == phash => {}
                    // The first record given (older segments collected): it must name
                    // the record its own `prev` links to.
                    None if cp.seq.saturating_add(1) == rec.seq && cp.hash == rec.prev => {}
                    _ => return Err(bad("does not name the record before it".into())),
                }
                if let Some(key) = key {
                    if cp.key.as_bytes() != key {
                        return Err(bad(format!("signed by another key ({})", cp.key)));
                    }
                    let pk = hex::decode(key).map_err(|_| bad("the given key is not hex".into()))?;
                    let sig = hex::decode(&cp.sig).map_err(|_| bad("the signature is not hex".into()))?;
                    let msg = Checkpoint::message(&r.instance, cp.seq, &cp.hash);
                    UnparsedPublicKey::new(&ED25519, pk)
                        .verify(msg.as_bytes(), &sig)
                        .map_err(|_| bad("bad signature".into()))?;
                }
                r.checkpoints += 1;
                r.last_checkpoint = Some(cp.seq);
                r.checkpointed.push((cp.seq, cp.hash.clone()));
            }
            r.records += 1;
            r.last_seq = rec.seq;
            r.unsigned_tail = if rec.event.kind == Kind::AuditCheckpoint { 0 } else { r.unsigned_tail + 1 };
            prev = Some((rec.seq, rec.hash));
        }
    }
    if key.is_some() && r.checkpoints == 0 {
        return Err(Finding::BadCheckpoint {
            file: files.last().cloned().unwrap_or_default(),
            line: 0,
            seq: r.last_seq,
            why: "a key was given but the chain holds no signed checkpoint".into(),
        });
    }
    if r.records == 0 {
        return Err(Finding::Malformed {
            file: files.first().cloned().unwrap_or_default(),
            line: 0,
            why: "no records".into(),
        });
    }
    Ok(r)
}

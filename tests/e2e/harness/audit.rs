//! The audit trail as the tests read it: the records of an audit directory, their events
//! typed as `custos::audit::Event`, and the few helpers through which tests compare kinds
//! and reasons (by their serde names, so a change of their Rust types is one edit here),
//! and polls for a record that is yet to be written.

use super::{now_secs, CUSTOS};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use custos::audit::chain::Record;
pub use custos::audit::Event;

/// An event's kind by its serde name (`access.decision`, …).
pub fn kind(e: &Event) -> String {
    name(&e.kind).unwrap_or_default()
}

/// An event's reason by its serde name, if it has one.
pub fn reason(e: &Event) -> Option<String> {
    e.reason.as_ref().and_then(name)
}

/// Who acted, if anyone did.
pub fn subject(e: &Event) -> Option<&str> {
    e.actor.as_ref().map(|a| a.subject.as_str())
}

/// An event's decision by its serde name (`allow`, `deny`), if it has one.
pub fn decision(e: &Event) -> Option<String> {
    e.decision.as_ref().and_then(name)
}

/// What a value serializes to, when that is a string.
fn name(v: &impl serde::Serialize) -> Option<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Every record of an audit directory's chain, parsed, in order. The gateway may be
/// writing as this reads: bytes after a file's last newline are a record not yet
/// complete (or torn by a kill, which the gateway cuts on restart), so they are left out.
pub fn audit_records(dir: &Path) -> Vec<Record> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("audit directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files.iter().flat_map(|f| complete_lines(f)).collect()
}

/// The newline-terminated records of `file`, parsed.
fn complete_lines(file: &Path) -> Vec<Record> {
    // A segment removed between listing and reading (rotation, retention) holds nothing.
    let text = std::fs::read(file).unwrap_or_default();
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&text[..complete])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: a bad audit line ({e}): {l}", file.display())))
        .collect()
}

/// `custos audit verify ARGS…`: exit code and output.
pub fn audit_verify(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(CUSTOS).args(["audit", "verify"]).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Polls the audit trail until `pred` holds for some record (for up to 30 s: the
/// machine may be loaded).
pub async fn audit_has(dir: &Path, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(r) = audit_records(dir).into_iter().find(|r| pred(&r.event)) {
            return r.event;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all: Vec<String> = audit_records(dir)
        .iter()
        .map(|r| format!("{} {:?} {:?}", kind(&r.event), reason(&r.event), decision(&r.event)))
        .collect();
    panic!("no such audit record in {}: {all:#?}", dir.display());
}

/// The audit records in `dirs` for which `pred` holds.
pub fn records_in(dirs: &[impl AsRef<Path>], pred: impl Fn(&Event) -> bool) -> Vec<Event> {
    dirs.iter().flat_map(|d| audit_records(d.as_ref())).map(|r| r.event.clone()).filter(|e| pred(e)).collect()
}

/// Polls the audit trails in `dirs` until `pred` holds for a record, at the latest until
/// the clock reads `deadline` (unix seconds).
pub async fn audit_by(
    dirs: &[impl AsRef<Path> + std::fmt::Debug],
    deadline: u64,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    loop {
        if let Some(v) = records_in(dirs, &pred).into_iter().next() {
            return v;
        }
        if now_secs() > deadline {
            panic!("no such audit record by {deadline} (now {}) in {dirs:?}", now_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

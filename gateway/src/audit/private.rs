//! The audit directory is the gateway's alone: its records name people, client
//! addresses and record ids. The directory is made 0700 and every file Custos writes
//! there (segments, cursors, dead letters, the instance id, the keys, the lock) 0600,
//! whatever the process's umask (a mode given at creation is only ever narrowed by it).
//! A directory Custos owns that is wider already, or files in it, are tightened when the
//! audit trail opens; `custos check` warns about them ([`too_open`]).

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Group and other permission bits: none of them on anything in the audit directory.
const OPEN_BITS: u32 = 0o077;

/// Options for a file only the gateway's user may read (0600 when created).
pub fn file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(0o600);
    o
}

/// Replaces `path`'s content with `bytes`, a new file being 0600.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    file().write(true).create(true).truncate(true).open(path)?.write_all(bytes)
}

/// Creates `dir` (and any missing parent) 0700.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The directory and what it holds (two levels: `cursors/` is inside), not following
/// symbolic links.
fn walk(dir: &Path, depth: u8, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    let is_dir = meta.is_dir();
    out.push((dir.to_path_buf(), meta));
    if !is_dir || depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        walk(&e.path(), depth - 1, out);
    }
}

/// What in `dir` (the directory itself included) others may read or enter, with its
/// mode: empty when all is private or `dir` does not exist.
pub fn too_open(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut all = Vec::new();
    walk(dir, 2, &mut all);
    all.into_iter()
        .filter(|(_, m)| !m.file_type().is_symlink() && m.permissions().mode() & OPEN_BITS != 0)
        .map(|(p, m)| (p, m.permissions().mode() & 0o7777))
        .collect()
}

/// Makes `dir` private: created 0700 when missing; group and other permissions taken
/// from it and from what it holds when they are there. Returns what was tightened.
pub fn secure_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut done = Vec::new();
    for (path, mode) in too_open(dir) {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !OPEN_BITS))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot make {} private: {e}", path.display())))?;
        done.push(path);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_directory_and_its_files_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("00000000000000000001.jsonl"), b"x").unwrap();
        std::fs::set_permissions(dir.join("00000000000000000001.jsonl"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert_eq!(too_open(&dir).len(), 2);
        assert_eq!(secure_dir(&dir).unwrap().len(), 2);
        assert!(too_open(&dir).is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("00000000000000000001.jsonl")), 0o600);
    }
}

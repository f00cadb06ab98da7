//! The audit directory is the gateway's alone: its records name people, client
//! addresses and record ids. The directory is made 0700 and every file Custos writes
//! there (segments, cursors, dead letters, the instance id, the keys, the lock) 0600,
//! whatever the process's umask (a mode given at creation is only ever narrowed by it).
//! A wider audit directory that is Custos's (empty, or holding its `instance` file), or
//! files in it, are tightened when the audit trail opens; a directory that holds other
//! things, or that the gateway's user cannot change, is left as it is and logged. `custos
//! check` warns about both ([`too_open`]).

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

/// What [`secure_dir`] did.
#[derive(Debug, Default)]
pub struct Secured {
    /// Paths whose group and other permissions were taken away.
    pub tightened: Vec<PathBuf>,
    /// Paths others may still read, and why they were left.
    pub left: Vec<String>,
}

/// Makes `dir` private: created 0700 when missing; group and other permissions taken
/// from it and from what it holds, when it is Custos's (empty, or holding the `instance`
/// file only an audit trail writes). A directory that holds other things is not changed
/// (it may be shared: never chmod a system directory named by mistake).
pub fn secure_dir(dir: &Path) -> io::Result<Secured> {
    create_dir(dir)?;
    let mut out = Secured::default();
    let open = too_open(dir);
    if open.is_empty() {
        return Ok(out);
    }
    let ours = dir.join("instance").is_file() || std::fs::read_dir(dir)?.next().is_none();
    for (path, mode) in open {
        if !ours {
            out.left.push(format!(
                "{} is mode {mode:o} and the directory holds files that are not an audit trail's: left as it is",
                path.display()
            ));
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !OPEN_BITS)) {
            Ok(()) => out.tightened.push(path),
            Err(e) => out.left.push(format!("{} is mode {mode:o} and cannot be made private: {e}", path.display())),
        }
    }
    Ok(out)
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
        // Not yet an audit trail's: left alone.
        let s = secure_dir(&dir).unwrap();
        assert!(s.tightened.is_empty() && s.left.len() == 2, "{s:?}");
        std::fs::write(dir.join("instance"), b"id\n").unwrap();
        std::fs::set_permissions(dir.join("instance"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = secure_dir(&dir).unwrap();
        assert!(s.tightened.len() == 2 && s.left.is_empty(), "{s:?}");
        assert!(too_open(&dir).is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("00000000000000000001.jsonl")), 0o600);
    }
}

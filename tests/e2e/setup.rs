//! The test set-up itself: the README's test command is what CI runs and installs every
//! program the tests ask for; programs are found where Debian puts them, a missing one
//! fails in one line naming its package; the audit reader waits out a half-written line.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(p: &str) -> String {
    std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn the_readme_test_command_is_what_ci_runs_and_it_installs_every_program_the_tests_use() {
    let readme = read("README.md");
    let block = readme.split("Run the tests").nth(1).and_then(|r| r.split("```\n").nth(1)).expect("no test command");
    assert_eq!(block.trim(), "scripts/test", "the README's test command");
    let ci = read(".ci/run");
    assert!(ci.lines().any(|l| l.trim_start().starts_with("exec scripts/test")), "{ci}");
    let script = read("scripts/test");
    assert!(script.contains("exec cargo test --workspace \"$@\""), "{script}");
    // Every `tool("NAME", "PACKAGE")` of the tests is a `want NAME PACKAGE` there.
    let mut seen = 0;
    let e2e = root().join("tests/e2e");
    let harness = std::fs::read_dir(e2e.join("harness")).unwrap().flatten();
    for f in std::fs::read_dir(&e2e).unwrap().flatten().chain(harness) {
        if f.file_name() == "setup.rs" || f.path().is_dir() {
            continue; // this file's own examples; `harness/`, a directory, is listed on its own
        }
        let text = std::fs::read_to_string(f.path()).unwrap();
        for call in text.split("tool(\"").skip(1) {
            let mut parts = call.split('"');
            let (Some(name), Some(_), Some(package)) = (parts.next(), parts.next(), parts.next()) else { continue };
            seen += 1;
            let want = format!("want {name} {package}");
            assert!(script.contains(&want), "scripts/test lacks `{want}` ({})", f.path().display());
        }
    }
    assert!(seen >= 6, "the tests ask for {seen} programs by `tool`");
}

#[test]
fn programs_are_found_where_debian_puts_them_and_a_missing_one_names_its_package() {
    let t = tempfile::tempdir().unwrap();
    for v in ["15", "16", "9.6"] {
        let bin = t.path().join(format!("usr/lib/postgresql/{v}/bin"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("pg_ctl"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("pg_ctl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Not executable: not a program.
    std::fs::create_dir_all(t.path().join("usr/sbin")).unwrap();
    std::fs::write(t.path().join("usr/sbin/pg_ctl"), "").unwrap();
    let empty = std::ffi::OsStr::new("");
    assert_eq!(
        find_tool("pg_ctl", empty, t.path()),
        Some(t.path().join("usr/lib/postgresql/16/bin/pg_ctl")),
        "the newest version's directory"
    );
    // PATH first.
    let path = std::env::join_paths([t.path().join("usr/lib/postgresql/15/bin")]).unwrap();
    assert_eq!(find_tool("pg_ctl", &path, t.path()), Some(t.path().join("usr/lib/postgresql/15/bin/pg_ctl")));
    assert_eq!(find_tool("custos-no-such-program", empty, t.path()), None);
    // The real lookup finds a program of every Debian system.
    assert!(tool("sh", "dash").is_absolute());

    let failed = std::panic::catch_unwind(|| tool("custos-no-such-program", "custos-pkg")).unwrap_err();
    let message = failed.downcast_ref::<String>().expect("a message");
    assert_eq!(message, "test needs `custos-no-such-program` (Debian package custos-pkg): run scripts/test");
}

#[test]
fn the_audit_reader_leaves_out_a_line_still_being_written() {
    let t = tempfile::tempdir().unwrap();
    let seg = t.path().join("00000000000000000001.jsonl");
    let event = serde_json::to_string(&custos::audit::Event::new(custos::audit::Kind::AuditStarted)).unwrap();
    let line = |seq: u64| format!("{{\"seq\":{seq},\"prev\":\"\",\"event\":{event},\"hash\":\"\"}}\n");
    std::fs::write(&seg, format!("{}{}{{\"seq\":3,\"ev", line(1), line(2))).unwrap();
    let records = audit_records(t.path());
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    // Once the line is complete, it is read.
    std::fs::write(&seg, format!("{}{}{}", line(1), line(2), line(3))).unwrap();
    assert_eq!(audit_records(t.path()).len(), 3);
}

//! The differential suite: each `tests/sql/*.sql` run by `psql -X -A -f` straight against
//! a fresh database and through Custos (`verify-full`, an access token) against a twin
//! made the same way, whose stdout and stderr must be byte-identical after the one
//! normalisation `tests/sql/README.md` allows (NOTIFY's server process id).

use crate::harness::postgres::pg;
use crate::postgres::{alice_token, args, dba_site, psql, through};
use std::path::{Path, PathBuf};

/// The `.sql` files, in name order.
fn sql_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the differential suite lost files: {files:?}");
    files
}

/// NOTIFY's "… received from server process with PID N." names a different process for
/// any two connections: the one normalisation allowed.
fn normalise(text: &str) -> String {
    const MARK: &str = "server process with PID ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len()]);
        rest = rest[at + MARK.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

/// The first differing line of `a` and `b`, with a few lines of context around it.
fn diff(a: &str, b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    // No line differs: the difference is in the line ends.
    let Some(first) = (0..la.len().max(lb.len())).find(|&i| la.get(i) != lb.get(i)) else {
        return Some(format!("the same lines, different line ends:\ndirect {a:?}\ncustos {b:?}\n"));
    };
    let from = first.saturating_sub(3);
    let mut out = format!("first difference at line {}:\n", first + 1);
    for i in from..(first + 4) {
        let (x, y) = (la.get(i), lb.get(i));
        if x.is_none() && y.is_none() {
            break;
        }
        let mark = if x == y { ' ' } else { '!' };
        out.push_str(&format!(
            "{mark} direct : {}\n{mark} custos : {}\n",
            x.unwrap_or(&"<none>"),
            y.unwrap_or(&"<none>")
        ));
    }
    Some(out)
}

#[tokio::test]
async fn every_sql_file_answers_the_same_through_custos_as_directly() {
    let mut failures = Vec::new();
    for file in sql_files() {
        let stem = file.file_stem().and_then(|s| s.to_str()).expect("a file name").to_string();
        let (direct_db, through_db) = (pg().database(&format!("dfa_{stem}")), pg().database(&format!("dfb_{stem}")));
        let (s, port) = dba_site(&through_db, "").await;
        let token = alice_token(&s).await;
        let path = file.display().to_string();
        let run = |conninfo: String| psql(conninfo, args(&["-v", "ON_ERROR_STOP=0", "-f", &path]), None);
        let direct = run(direct_db.conninfo(&direct_db.admin, "disable")).await;
        let custos = run(through(port, "alice", &token, "verify-full")).await;
        for (what, d, c) in [("stdout", &direct.stdout, &custos.stdout), ("stderr", &direct.stderr, &custos.stderr)] {
            let (d, c) = (normalise(&String::from_utf8_lossy(d)), normalise(&String::from_utf8_lossy(c)));
            if let Some(text) = diff(&d, &c) {
                failures.push(format!("{stem}.sql, {what}: {text}"));
            }
        }
        if direct.status.code() != custos.status.code() {
            failures.push(format!(
                "{stem}.sql: psql exited {:?} directly, {:?} through Custos",
                direct.status, custos.status
            ));
        }
        // Both ran something: an empty pair would compare equal and prove nothing.
        assert!(!direct.stdout.is_empty(), "{stem}.sql printed nothing: {}", String::from_utf8_lossy(&direct.stderr));
        if failures.iter().any(|f| f.starts_with(&format!("{stem}.sql"))) {
            failures.push(format!("{stem}.sql: gateway log:\n{}", s.gw.log()));
        }
    }
    assert!(failures.is_empty(), "psql through Custos differs from psql directly:\n{}", failures.join("\n"));
}

#[test]
fn the_normalisation_touches_only_notify_pids_and_the_diff_finds_differences() {
    let a = "Asynchronous notification \"w\" with payload \"x\" received from server process with PID 4242.\n";
    let b = "Asynchronous notification \"w\" with payload \"x\" received from server process with PID 17.\n";
    assert_eq!(normalise(a), normalise(b));
    assert_eq!(normalise("PID 42 stays"), "PID 42 stays");
    assert!(diff(&normalise(a), &normalise(b)).is_none());
    assert!(diff("1\n2\n", "1\n3\n").unwrap().contains("line 2"));
    assert!(diff("1\n", "1").is_some());
    assert!(diff("1\n", "1\n2\n").is_some());
}

//! What is refused: garbage, a string with one bad statement, and inputs too deep or too
//! long; and what is no statement at all.

use super::*;

#[test]
fn garbage_is_unparseable() {
    for sql in [
        "SELEC 1",
        "SELECT FROM WHERE",
        "SELECT 'unterminated",
        "SELECT (1",
        "DROP",
        "\u{1}\u{2}\u{3}",
        "SELECT 1; SELEC 2",
        "SELECT 1 /* unterminated comment",
        "SELECT $$never closed",
        "SELECT 1\0; DROP TABLE patients",
    ] {
        assert_eq!(classify(sql), Err(Unparseable), "{sql:?}");
    }
}

#[test]
fn empty_and_comment_only_strings_are_no_statements() {
    for sql in ["", "   \n\t", ";", ";;", "-- just a comment", "/* block */", "/* a */ ; -- b\n;"] {
        assert_eq!(classify(sql), Ok(vec![]), "{sql:?}");
    }
}

#[test]
fn each_statement_of_a_string_is_its_own() {
    let s = stmts("SELECT * FROM a; ; INSERT INTO b VALUES (1);\n-- trailing comment\nDROP TABLE c");
    let verbs: Vec<Verb> = s.iter().map(|s| s.verb).collect();
    assert_eq!(verbs, [Verb::Select, Verb::Insert, Verb::Drop]);
    assert_eq!(
        (objs(&s[0]), objs(&s[1]), objs(&s[2])),
        (vec!["a/select".to_owned()], vec!["b/dml".to_owned()], vec!["c/ddl".to_owned()])
    );
    // Multi-byte text before a statement: its place is counted in bytes.
    let s = stmts("SELECT 'Ωé日本'; SELECT * FROM ü");
    assert_eq!(objs(&s[1]), [r#""ü"/select"#]);
}

/// Runs `f` on a thread with the stack a tokio worker has (2 MiB), as the proxy would.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .and_then(|h| h.join().map_err(|_| std::io::Error::other("panicked")))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ten_thousand_deep_is_an_error_not_a_stack_overflow() {
    let parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let subqueries = format!("SELECT * FROM {}t{}", "(SELECT * FROM ".repeat(10_000), ") s".repeat(10_000));
    let sums = format!("SELECT 1{}", " + 1".repeat(10_000));
    let arrays = format!("SELECT {}1{}", "ARRAY[".repeat(10_000), "]".repeat(10_000));
    for sql in [parens, subqueries, sums, arrays] {
        let r = on_worker_stack(move || classify(&sql));
        assert_eq!(r, Err(Unparseable));
    }
}

#[test]
fn ordinary_nesting_parses() {
    // Deeper than hand-written SQL goes: subqueries in subqueries, long expression chains.
    let subqueries = format!("SELECT * FROM {}t{}", "(SELECT * FROM ".repeat(12), ") s".repeat(12));
    let sums = format!("SELECT a{} FROM t", " + a".repeat(20));
    let ors = format!("SELECT * FROM t WHERE {}", vec!["a = 1"; 500].join(" OR "));
    for sql in [subqueries, sums, ors] {
        let s = on_worker_stack(move || classify(&sql));
        assert_eq!(s.map(|s| objs(&s[0])), Ok(vec!["t/select".to_owned()]));
    }
}

#[test]
fn a_mebibyte_statement_parses() {
    // The wire side's default cap on a statement's size.
    let list = vec!["8675309"; 120_000].join(",");
    let sql = format!("SELECT * FROM patients WHERE id IN ({list})");
    assert!(sql.len() <= 1 << 20 && sql.len() > 900_000);
    let s = on_worker_stack(move || classify(&sql));
    assert_eq!(s.map(|s| objs(&s[0])), Ok(vec!["patients/select".to_owned()]));
}

#[test]
fn every_prefix_of_every_case_is_classified_or_refused() {
    // Cut anywhere, a statement is still text a client may send: never a panic.
    for sql in super::literals::STATEMENTS {
        for (at, _) in sql.char_indices() {
            let _ = classify(&sql[..at]);
        }
    }
}

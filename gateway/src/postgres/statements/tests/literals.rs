//! No statement holds a literal, a parameter or row data: its Debug and its JSON are
//! searched for every distinctive value the statements were written with.

use super::*;

/// Values that must never reach a record; each appears in a statement below.
const SECRETS: &[&str] = &[
    "zebra-7731",
    "8675309",
    "3.14159",
    "2031-07-19",
    "$1",
    "$2",
    "deadbeef",
    "hunter2x",
    "plain-payload",
    "/srv/leak.csv",
    "gzip-leak",
    "tz-leak",
    "path_leak",
    "dollar-body",
    "Ω-unicode",
];

pub(super) const STATEMENTS: &[&str] = &[
    "SELECT * FROM patients WHERE name = 'zebra-7731' AND id = 8675309 AND score > 3.14159",
    "SELECT * FROM visits WHERE day = DATE '2031-07-19' OR day = '2031-07-19'::date",
    "SELECT * FROM patients WHERE id = $1 AND name = $2",
    "INSERT INTO blobs VALUES (E'\\\\xdeadbeef', 'Ω-unicode')",
    "UPDATE patients SET name = 'zebra-7731' WHERE id = 8675309 RETURNING 'hunter2x'",
    "DELETE FROM patients WHERE note LIKE '%zebra-7731%'",
    "MERGE INTO patients p USING (VALUES (8675309, 'zebra-7731')) s(id, n) ON p.id = s.id WHEN MATCHED THEN UPDATE SET name = s.n",
    "COPY patients FROM '/srv/leak.csv'",
    "COPY patients TO PROGRAM 'gzip-leak'",
    "CREATE ROLE intern PASSWORD 'hunter2x'",
    "ALTER ROLE intern PASSWORD 'hunter2x'",
    "SET TIME ZONE 'tz-leak'",
    "SET search_path = path_leak",
    "NOTIFY chan, 'plain-payload'",
    "SELECT pg_notify('chan', 'plain-payload')",
    "DO $$ BEGIN RAISE NOTICE 'dollar-body'; END $$",
    "PREPARE q AS SELECT * FROM patients WHERE id = $1 AND name = 'zebra-7731'",
    "EXECUTE q(8675309, 'zebra-7731')",
    "EXPLAIN ANALYZE SELECT * FROM patients WHERE ssn = 'zebra-7731'",
    "CALL archive(8675309, 'zebra-7731')",
    "SELECT $body$zebra-7731$body$, $$dollar-body$$",
    "WITH x AS (SELECT 'zebra-7731' AS v) SELECT * FROM x WHERE v = 'hunter2x'",
    "SELECT ARRAY[8675309, 3.14159], '{\"k\": \"zebra-7731\"}'::jsonb",
    "CREATE TABLE t (c text DEFAULT 'zebra-7731' CHECK (c <> 'hunter2x'))",
    "COMMENT ON TABLE patients IS 'zebra-7731'",
    "SELECT 1; SELECT 'zebra-7731'; DELETE FROM patients WHERE id = 8675309",
];

#[test]
fn no_statement_debug_or_json_holds_a_literal() {
    for sql in STATEMENTS {
        assert!(SECRETS.iter().any(|s| sql.contains(s)), "{sql} tests no value");
        let stmts = stmts(sql);
        assert!(!stmts.is_empty(), "{sql}");
        let shown = format!("{stmts:?}\n{}", serde_json::to_string(&stmts).unwrap_or_default());
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret:?} from {sql:?} is in {shown}");
        }
    }
}

#[test]
fn the_fingerprint_ignores_literals_and_is_that_statement_s_own() {
    let a = one("SELECT * FROM patients WHERE id = 1 AND name = 'a'");
    let b = one("SELECT * FROM patients WHERE id = 8675309 AND name = 'zebra-7731'");
    assert_eq!(a.fingerprint, b.fingerprint);
    let shorter = one("SELECT * FROM patients WHERE id = 1");
    assert_ne!(a.fingerprint, shorter.fingerprint);
    // Each statement of a string is fingerprinted alone, as pg_query does it.
    let many = stmts("SELECT * FROM patients WHERE id = 1; DELETE FROM visits WHERE id = 2");
    let alone = pg_query::fingerprint("DELETE FROM visits WHERE id = 2", 0, 0).map(|f| f.hex).unwrap_or_default();
    assert_eq!(many[1].fingerprint.to_string(), alone);
    assert_eq!(many[0].fingerprint, shorter.fingerprint);
    assert_eq!(alone.len(), 16);
}

#[test]
fn unparseable_holds_nothing_of_the_text() {
    let Err(e) = classify("SELECT 'zebra-7731' FROM WHERE hunter2x") else { panic!("parsed garbage") };
    let shown = format!("{e:?} {e}");
    assert!(!shown.contains("zebra") && !shown.contains("hunter2x"), "{shown}");
}

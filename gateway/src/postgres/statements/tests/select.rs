//! SELECT: joins, CTEs, subqueries, set operations, and what only reads.

use super::*;

#[test]
fn plain_and_qualified_relations() {
    case("SELECT name FROM patients WHERE id = 7", Verb::Select, &["patients/select"]);
    case("select * from public.patients", Verb::Select, &["public.patients/select"]);
    case(
        r#"SELECT * FROM "Patient Notes" n, ehr."Visit Log""#,
        Verb::Select,
        &[r#""Patient Notes"/select"#, r#"ehr."Visit Log"/select"#],
    );
    case("SELECT 1", Verb::Select, &[]);
    case("VALUES (1), (2)", Verb::Select, &[]);
    case("TABLE patients", Verb::Select, &["patients/select"]);
}

#[test]
fn joins_deduplicate() {
    let s = case(
        "SELECT * FROM patients p JOIN visits v ON v.pid = p.id LEFT JOIN visits v2 ON v2.id = v.id CROSS JOIN public.wards",
        Verb::Select,
        &["patients/select", "visits/select", "public.wards/select"],
    );
    assert_eq!(s.has_where, None);
}

#[test]
fn ctes_are_not_relations_but_what_they_read_is() {
    case("WITH recent AS (SELECT * FROM visits) SELECT * FROM recent", Verb::Select, &["visits/select"]);
    // A non-recursive CTE named like a table reads the table.
    case("WITH patients AS (SELECT * FROM patients) SELECT * FROM patients", Verb::Select, &["patients/select"]);
    case(
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT * FROM t, wards",
        Verb::Select,
        &["wards/select"],
    );
}

#[test]
fn a_cte_name_is_a_table_outside_the_cte_s_scope() {
    // The outer `p` is not in the subquery's WITH scope: it is a table.
    case("SELECT * FROM (WITH p AS (SELECT 1) SELECT * FROM p) a, p", Verb::Select, &["p/select"]);
    // Without RECURSIVE a CTE sees only the CTEs before it: `b` in `a` is a table.
    case("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b", Verb::Select, &["b/select"]);
    case("WITH b AS (SELECT 1), a AS (SELECT * FROM b) SELECT * FROM a", Verb::Select, &[]);
    // A CTE of an outer statement is in scope in its subqueries.
    case("WITH p AS (SELECT 1) SELECT * FROM (SELECT * FROM p) s WHERE EXISTS (SELECT 1 FROM p)", Verb::Select, &[]);
    // With RECURSIVE, every CTE of the WITH is in scope in each.
    case("WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", Verb::Select, &[]);
    // A DML target is never a CTE.
    case("WITH patients AS (SELECT 1) DELETE FROM patients WHERE id = 1", Verb::Delete, &["patients/dml"]);
}

#[test]
fn subqueries_everywhere() {
    case(
        "SELECT (SELECT max(a) FROM s1), x FROM (SELECT * FROM s2) sub WHERE EXISTS (SELECT 1 FROM s3) \
         AND id IN (SELECT id FROM s4) ORDER BY (SELECT 1 FROM s5 LIMIT 1) LIMIT (SELECT count(*) FROM s6)",
        Verb::Select,
        &["s1/select", "s2/select", "s3/select", "s4/select", "s5/select", "s6/select", "max()/call", "count()/call"],
    );
    case(
        "SELECT * FROM patients, LATERAL (SELECT * FROM visits WHERE pid = patients.id) v",
        Verb::Select,
        &["patients/select", "visits/select"],
    );
}

#[test]
fn set_operations() {
    case(
        "SELECT id FROM a UNION SELECT id FROM b INTERSECT SELECT id FROM c EXCEPT ALL SELECT id FROM d",
        Verb::Select,
        &["a/select", "b/select", "c/select", "d/select"],
    );
}

#[test]
fn functions_called() {
    case(
        "SELECT lower(name), pg_catalog.now(), count(*) FROM patients",
        Verb::Select,
        &["patients/select", "lower()/call", "pg_catalog.now()/call", "count()/call"],
    );
    case("SELECT * FROM generate_series(1, 3)", Verb::Select, &["generate_series()/call"]);
    case("SELECT pg_read_file('/etc/passwd')", Verb::Select, &["pg_read_file()/call"]);
}

#[test]
fn locking_reads_are_selects() {
    case("SELECT * FROM patients WHERE id = 1 FOR UPDATE", Verb::Select, &["patients/select"]);
}

#[test]
fn select_into_creates_a_table() {
    case("SELECT * INTO copy_of FROM patients", Verb::Create, &["copy_of/ddl", "patients/select"]);
}

#[test]
fn a_cte_that_deletes_is_seen_writing() {
    let s = case("WITH d AS (DELETE FROM patients RETURNING *) SELECT * FROM d", Verb::Select, &["patients/dml"]);
    assert_eq!(s.has_where, Some(false));
}

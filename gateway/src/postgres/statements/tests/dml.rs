//! INSERT, UPDATE, DELETE, MERGE: targets written, sources read, RETURNING, WHERE.

use super::*;

#[test]
fn insert() {
    let s = case("INSERT INTO patients (id, name) VALUES (1, 'x')", Verb::Insert, &["patients/dml"]);
    assert_eq!(s.has_where, None);
    case("INSERT INTO ehr.patients SELECT * FROM staging", Verb::Insert, &["ehr.patients/dml", "staging/select"]);
    case(
        "INSERT INTO patients (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET seen = now() RETURNING id",
        Verb::Insert,
        &["patients/dml", "now()/call"],
    );
}

#[test]
fn update_with_and_without_where() {
    let s = case("UPDATE patients SET name = 'x' WHERE id = 1", Verb::Update, &["patients/dml"]);
    assert_eq!(s.has_where, Some(true));
    let s = case("UPDATE patients SET name = 'x'", Verb::Update, &["patients/dml"]);
    assert_eq!(s.has_where, Some(false));
    let s = case(
        "UPDATE patients p SET ward = w.id FROM wards w WHERE w.name = p.ward_name",
        Verb::Update,
        &["patients/dml", "wards/select"],
    );
    assert_eq!(s.has_where, Some(true));
}

#[test]
fn delete_with_and_without_where() {
    let s = case("DELETE FROM patients WHERE id = 1", Verb::Delete, &["patients/dml"]);
    assert_eq!(s.has_where, Some(true));
    let s = case("DELETE FROM patients", Verb::Delete, &["patients/dml"]);
    assert_eq!(s.has_where, Some(false));
    let s = case(
        "DELETE FROM patients USING wards WHERE wards.id = patients.ward",
        Verb::Delete,
        &["patients/dml", "wards/select"],
    );
    assert_eq!(s.has_where, Some(true));
    let s = case("DELETE FROM patients WHERE CURRENT OF c", Verb::Delete, &["patients/dml"]);
    assert_eq!(s.has_where, Some(true));
}

#[test]
fn returning_subqueries_are_read() {
    case(
        "UPDATE patients SET name = 'x' WHERE id = 1 RETURNING (SELECT count(*) FROM audit_log)",
        Verb::Update,
        &["patients/dml", "audit_log/select", "count()/call"],
    );
    case("DELETE FROM patients WHERE id = 1 RETURNING *", Verb::Delete, &["patients/dml"]);
}

#[test]
fn one_unguarded_write_makes_the_statement_unguarded() {
    let s = one("WITH a AS (UPDATE wards SET n = 0 WHERE id = 1 RETURNING id) DELETE FROM patients WHERE ward IN (SELECT id FROM a)");
    assert_eq!(s.has_where, Some(true));
    let s =
        one("WITH a AS (UPDATE wards SET n = 0 RETURNING id) DELETE FROM patients WHERE ward IN (SELECT id FROM a)");
    assert_eq!(s.has_where, Some(false));
    let s = one("WITH a AS (DELETE FROM wards RETURNING id) INSERT INTO archive SELECT * FROM a");
    assert_eq!(s.verb, Verb::Insert);
    assert_eq!(s.has_where, Some(false));
}

#[test]
fn merge() {
    let s = case(
        "MERGE INTO patients p USING staging s ON s.id = p.id \
         WHEN MATCHED THEN UPDATE SET name = s.name WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name)",
        Verb::Merge,
        &["patients/dml", "staging/select"],
    );
    assert_eq!(s.has_where, None);
}

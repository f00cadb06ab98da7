//! EXPLAIN, PREPARE/EXECUTE/DEALLOCATE, cursors, DO, CALL, VACUUM, ANALYZE, LOCK.

use super::*;

fn explain(analyze: bool, of: Explained) -> Verb {
    Verb::Explain { analyze, of }
}

#[test]
fn explain_names_what_it_explains_and_whether_it_runs() {
    case("EXPLAIN SELECT * FROM patients", explain(false, Explained::Select), &["patients/select"]);
    let s = case("EXPLAIN ANALYZE DELETE FROM patients", explain(true, Explained::Delete), &["patients/dml"]);
    assert_eq!(s.has_where, Some(false));
    case(
        "EXPLAIN (ANALYZE, BUFFERS) UPDATE patients SET n = 1 WHERE id = 1",
        explain(true, Explained::Update),
        &["patients/dml"],
    );
    case("EXPLAIN (ANALYZE off) INSERT INTO patients VALUES (1)", explain(false, Explained::Insert), &["patients/dml"]);
    case("EXPLAIN (ANALYZE false, COSTS off) SELECT 1", explain(false, Explained::Select), &[]);
    case("EXPLAIN (ANALYZE 1) SELECT 1", explain(true, Explained::Select), &[]);
    case("EXPLAIN (ANALYZE on) SELECT 1", explain(true, Explained::Select), &[]);
    case("EXPLAIN (COSTS off) SELECT 1", explain(false, Explained::Select), &[]);
    case("EXPLAIN EXECUTE q(1)", explain(false, Explained::Execute), &[]);
    case(
        "EXPLAIN CREATE TABLE t2 AS SELECT * FROM patients",
        explain(false, Explained::Create),
        &["t2/ddl", "patients/select"],
    );
    let json = serde_json::to_value(one("EXPLAIN ANALYZE DELETE FROM patients")).unwrap_or_default();
    assert_eq!(
        (json["verb"].as_str(), json["explained"].as_str(), json["analyze"].as_bool()),
        (Some("explain"), Some("delete"), Some(true))
    );
}

#[test]
fn prepared_statements() {
    case("PREPARE q (int) AS SELECT * FROM patients WHERE id = $1", Verb::Prepare, &["patients/select"]);
    let s = case("PREPARE d AS DELETE FROM patients", Verb::Prepare, &["patients/dml"]);
    assert_eq!(s.has_where, Some(false));
    case("EXECUTE q(1)", Verb::Execute, &[]);
    case("DEALLOCATE q", Verb::Deallocate, &[]);
    case("DEALLOCATE ALL", Verb::Deallocate, &[]);
}

#[test]
fn cursors() {
    case(
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM patients JOIN visits USING (id)",
        Verb::Declare,
        &["patients/select", "visits/select"],
    );
    case("FETCH 10 FROM c", Verb::Fetch, &[]);
    case("FETCH ALL c", Verb::Fetch, &[]);
    case("MOVE NEXT IN c", Verb::Other("move"), &[]);
    case("CLOSE c", Verb::Close, &[]);
    case("CLOSE ALL", Verb::Close, &[]);
}

#[test]
fn do_and_call() {
    case("DO $$ BEGIN PERFORM 1; END $$", Verb::Do, &[]);
    case("DO LANGUAGE plpgsql $$ BEGIN DELETE FROM patients; END $$", Verb::Do, &[]);
    case("CALL ehr.archive(30)", Verb::Call, &["ehr.archive()/call"]);
}

#[test]
fn maintenance() {
    case("VACUUM", Verb::Vacuum, &[]);
    case("VACUUM (FULL, ANALYZE) patients", Verb::Vacuum, &["patients/ddl"]);
    case("ANALYZE patients", Verb::Analyze, &["patients/ddl"]);
    case("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE", Verb::Lock, &["patients/ddl"]);
}

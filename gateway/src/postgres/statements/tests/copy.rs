//! COPY in both directions, with a file, STDIN/STDOUT, a query, or a PROGRAM.

use super::*;

#[test]
fn copy_from_writes_its_relation() {
    case("COPY patients FROM STDIN", Verb::CopyFrom { program: false }, &["patients/dml"]);
    case(
        "COPY ehr.patients (id, name) FROM '/tmp/p.csv' WITH (FORMAT csv)",
        Verb::CopyFrom { program: false },
        &["ehr.patients/dml"],
    );
    case("COPY patients FROM STDIN WHERE id > 5", Verb::CopyFrom { program: false }, &["patients/dml"]);
}

#[test]
fn copy_to_reads() {
    case("COPY patients TO STDOUT", Verb::CopyTo { program: false }, &["patients/select"]);
    case(
        "COPY (SELECT * FROM patients JOIN visits USING (id)) TO STDOUT (FORMAT binary)",
        Verb::CopyTo { program: false },
        &["patients/select", "visits/select"],
    );
}

#[test]
fn program_is_told_apart() {
    case("COPY patients FROM PROGRAM 'curl -s http://x'", Verb::CopyFrom { program: true }, &["patients/dml"]);
    case("COPY patients TO PROGRAM 'gzip > /tmp/p.gz'", Verb::CopyTo { program: true }, &["patients/select"]);
    let json = serde_json::to_value(one("COPY patients TO PROGRAM 'gzip'")).unwrap_or_default();
    assert_eq!(json["verb"], "copy_to");
    assert_eq!(json["program"], true);
}

#[test]
fn copy_of_a_writing_query() {
    let s =
        case("COPY (DELETE FROM patients RETURNING *) TO STDOUT", Verb::CopyTo { program: false }, &["patients/dml"]);
    assert_eq!(s.has_where, Some(false));
}

//! Definitions: CREATE, ALTER, DROP, TRUNCATE, GRANT and REVOKE.

use super::*;

#[test]
fn create() {
    case("CREATE TABLE ehr.notes (id int PRIMARY KEY, body text)", Verb::Create, &["ehr.notes/ddl"]);
    case("CREATE TABLE big AS SELECT * FROM patients", Verb::Create, &["big/ddl", "patients/select"]);
    case("CREATE MATERIALIZED VIEW mv AS SELECT * FROM patients", Verb::Create, &["mv/ddl", "patients/select"]);
    case("CREATE VIEW v AS SELECT name FROM patients", Verb::Create, &["v/ddl", "patients/select"]);
    case("CREATE INDEX ON patients (name)", Verb::Create, &["patients/ddl"]);
    case("CREATE SCHEMA scratch", Verb::Create, &[]);
    case("CREATE ROLE intern", Verb::Create, &[]);
    case("CREATE EXTENSION pgcrypto", Verb::Create, &[]);
    case("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", Verb::Create, &["f()/ddl"]);
    case(
        "CREATE TRIGGER t BEFORE INSERT ON patients FOR EACH ROW EXECUTE FUNCTION g()",
        Verb::Create,
        &["patients/ddl"],
    );
    case("CREATE SEQUENCE s", Verb::Create, &["s/ddl"]);
    case("CREATE POLICY own ON patients USING (owner = current_user)", Verb::Create, &["patients/ddl"]);
}

#[test]
fn alter() {
    case("ALTER TABLE patients ADD COLUMN ssn text", Verb::Alter, &["patients/ddl"]);
    case("ALTER TABLE patients RENAME TO people", Verb::Alter, &["patients/ddl", "people/ddl"]);
    case("ALTER ROLE intern SET search_path = ehr", Verb::Alter, &[]);
    case("ALTER SYSTEM SET log_statement = 'none'", Verb::Alter, &[]);
    case("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO intern", Verb::Alter, &[]);
}

#[test]
fn drop() {
    case("DROP TABLE IF EXISTS public.a, b CASCADE", Verb::Drop, &["public.a/ddl", "b/ddl"]);
    case("DROP FUNCTION f()", Verb::Drop, &["f()/ddl"]);
    case("DROP ROLE intern", Verb::Drop, &[]);
    case("DROP DATABASE ehr", Verb::Drop, &[]);
    case("DROP SCHEMA scratch", Verb::Drop, &[]);
    // Every kind of relation dropped is named, not tables alone.
    case("DROP VIEW v, ehr.w", Verb::Drop, &["v/ddl", "ehr.w/ddl"]);
    case("DROP MATERIALIZED VIEW ehr.mv", Verb::Drop, &["ehr.mv/ddl"]);
    case("DROP INDEX CONCURRENTLY i", Verb::Drop, &["i/ddl"]);
    case("DROP SEQUENCE s", Verb::Drop, &["s/ddl"]);
    case("DROP FOREIGN TABLE f", Verb::Drop, &["f/ddl"]);
    case(r#"DROP VIEW "Weird View""#, Verb::Drop, &[r#""Weird View"/ddl"#]);
    case("DROP TRIGGER tr ON patients", Verb::Drop, &["patients/ddl"]);
    case("DROP POLICY p ON ehr.patients", Verb::Drop, &["ehr.patients/ddl"]);
}

#[test]
fn truncate() {
    case("TRUNCATE patients, ehr.visits RESTART IDENTITY", Verb::Truncate, &["patients/ddl", "ehr.visits/ddl"]);
}

#[test]
fn grant_and_revoke() {
    case("GRANT SELECT ON patients TO intern", Verb::Grant, &["patients/ddl"]);
    case("REVOKE ALL ON ehr.patients FROM intern", Verb::Revoke, &["ehr.patients/ddl"]);
    case("GRANT admin TO intern", Verb::Grant, &[]);
    case("REVOKE admin FROM intern", Verb::Revoke, &[]);
}

#[test]
fn rarer_commands_are_named() {
    case("REFRESH MATERIALIZED VIEW mv", Verb::Other("refresh"), &["mv/ddl"]);
    case("COMMENT ON TABLE patients IS 'x'", Verb::Other("comment"), &[]);
    case("CLUSTER patients USING patients_pkey", Verb::Other("cluster"), &["patients/ddl"]);
    case("REINDEX TABLE patients", Verb::Other("reindex"), &["patients/ddl"]);
    case("CHECKPOINT", Verb::Other("checkpoint"), &[]);
}

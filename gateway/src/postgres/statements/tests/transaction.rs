//! Transaction control.

use super::*;

#[test]
fn each_kind() {
    for (sql, verb) in [
        ("BEGIN", Verb::Begin),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", Verb::Begin),
        ("START TRANSACTION READ ONLY", Verb::Begin),
        ("COMMIT", Verb::Commit),
        ("END", Verb::Commit),
        ("COMMIT AND CHAIN", Verb::Commit),
        ("ROLLBACK", Verb::Rollback),
        ("ABORT", Verb::Rollback),
        ("SAVEPOINT s1", Verb::Savepoint),
        ("RELEASE SAVEPOINT s1", Verb::Release),
        ("RELEASE s1", Verb::Release),
        ("ROLLBACK TO SAVEPOINT s1", Verb::RollbackTo),
        ("ROLLBACK TO s1", Verb::RollbackTo),
        ("PREPARE TRANSACTION 'tx'", Verb::Other("prepare_transaction")),
        ("COMMIT PREPARED 'tx'", Verb::Other("commit_prepared")),
        ("ROLLBACK PREPARED 'tx'", Verb::Other("rollback_prepared")),
    ] {
        case(sql, verb, &[]);
    }
}

#[test]
fn a_transaction_in_one_string() {
    let s =
        stmts("BEGIN; UPDATE patients SET n = 1 WHERE id = 2; SAVEPOINT a; DELETE FROM visits; ROLLBACK TO a; COMMIT");
    let verbs: Vec<Verb> = s.iter().map(|s| s.verb).collect();
    assert_eq!(verbs, [Verb::Begin, Verb::Update, Verb::Savepoint, Verb::Delete, Verb::RollbackTo, Verb::Commit]);
    assert_eq!(objs(&s[1]), ["patients/dml"]);
    assert_eq!(s[1].has_where, Some(true));
    assert_eq!(objs(&s[3]), ["visits/dml"]);
    assert_eq!(s[3].has_where, Some(false));
}

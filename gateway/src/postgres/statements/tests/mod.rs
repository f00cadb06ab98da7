//! The classifier's tests, one file per statement class, and the helpers they share.


use super::*;

/// The statements of `sql`, or a panic naming it: every case here is valid SQL.
pub(super) fn stmts(sql: &str) -> Vec<Statement> {
    classify(sql).unwrap_or_else(|_| panic!("unparseable: {sql}"))
}

//! The classifier's tests: one file per statement class (STYLE.md item 11), then what no
//! statement may hold, what cannot be parsed, and the cache.

mod cache;
mod copy;
mod ddl;
mod dml;
mod literals;
mod select;
mod session;
mod speed;
mod transaction;
mod unparseable;
mod utility;

use super::*;

/// The statements of `sql`, or a panic naming it: every case here is valid SQL.
fn stmts(sql: &str) -> Vec<Statement> {
    classify(sql).unwrap_or_else(|_| panic!("unparseable: {sql}"))
}

/// The one statement of `sql`.
fn one(sql: &str) -> Statement {
    let mut s = stmts(sql);
    assert_eq!(s.len(), 1, "{sql}");
    s.remove(0)
}

/// A statement's objects in a form a case can spell: `name/access` for a relation,
/// `name()/access` for a function, `name=` for a setting.
fn objs(s: &Statement) -> Vec<String> {
    s.objects
        .iter()
        .map(|o| {
            let access =
                serde_json::to_value(o.access).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            match o.kind {
                ObjectKind::Relation => format!("{}/{access}", o.name),
                ObjectKind::Function => format!("{}()/{access}", o.name),
                ObjectKind::Setting => format!("{}=", o.name),
            }
        })
        .collect()
}

/// Asserts the verb and the objects (in any order) of the one statement of `sql`.
#[track_caller]
fn case(sql: &str, verb: Verb, objects: &[&str]) -> Statement {
    let s = one(sql);
    assert_eq!(s.verb, verb, "{sql}");
    let mut got = objs(&s);
    got.sort();
    let mut want: Vec<String> = objects.iter().map(|o| (*o).to_owned()).collect();
    want.sort();
    assert_eq!(got, want, "{sql}");
    s
}

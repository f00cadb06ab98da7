//! Every relation and function a parse tree names, wherever it sits. pg_query's summary
//! walker follows expressions and the common statements but not every utility statement
//! (a cursor's query) nor every clause (a subquery in RETURNING); this walk visits every
//! node of the tree through its serde form, so whatever the summary missed is added. What
//! it adds to a query (SELECT, DML, COPY, a cursor, EXPLAIN, PREPARE) is read: the summary
//! reports every relation a query writes, and the clauses it skips only read. What it adds
//! to any other command is that command's target (CREATE SEQUENCE s, CLUSTER t): `ddl`.

use pg_query::NodeEnum;
use serde_json::Value;

use super::{Access, Name, Object, ObjectKind, Verb};

/// Adds to `objects` the relations and functions of `node` not already in it.
/// Unqualified references to a CTE of the statement are left out, as the summary does.
pub(super) fn missed(node: &NodeEnum, verb: Verb, objects: &mut Vec<Object>) {
    // The protobuf tree derives Serialize; its depth is bounded by the decoder's own
    // recursion limit, so converting it cannot overflow the stack.
    let Ok(tree) = serde_json::to_value(node) else { return };
    let mut relations = Vec::new();
    let mut functions = Vec::new();
    let mut ctes = Vec::new();
    let mut stack = vec![&tree];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.contains_key("relpersistence") {
                    if let Some(rel) = str_of(map.get("relname")) {
                        relations.push((str_of(map.get("schemaname")).unwrap_or(""), rel));
                    }
                } else if map.contains_key("funcformat") {
                    functions.push(func_name(map.get("funcname")));
                } else if map.contains_key("ctequery") {
                    if let Some(name) = str_of(map.get("ctename")) {
                        ctes.push(name);
                    }
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    for (schema, rel) in relations {
        if schema.is_empty() && ctes.contains(&rel) {
            continue;
        }
        let name = if schema.is_empty() { quote(rel) } else { format!("{}.{}", quote(schema), quote(rel)) };
        add(objects, ObjectKind::Relation, &name, read_or_defined(verb));
    }
    for f in functions.into_iter().flatten() {
        add(objects, ObjectKind::Function, &f, Access::Call);
    }
}

fn read_or_defined(verb: Verb) -> Access {
    match verb {
        Verb::Select
        | Verb::Insert
        | Verb::Update
        | Verb::Delete
        | Verb::Merge
        | Verb::CopyFrom { .. }
        | Verb::CopyTo { .. }
        | Verb::Declare
        | Verb::Explain { .. }
        | Verb::Prepare
        | Verb::Call
        | Verb::Do => Access::Select,
        _ => Access::Ddl,
    }
}

fn add(objects: &mut Vec<Object>, kind: ObjectKind, name: &str, access: Access) {
    if !objects.iter().any(|o| o.kind == kind && o.name.as_str() == name) {
        objects.push(Object { kind, name: Name::from_identifier(name), access });
    }
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A function's qualified name, parts joined by dots (as PostgreSQL's NameListToString).
fn func_name(v: Option<&Value>) -> Option<String> {
    let parts = v?.as_array()?;
    let mut name = String::new();
    for p in parts {
        let part = p.get("node")?.get("String")?.get("sval")?.as_str()?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(part);
    }
    (!name.is_empty()).then_some(name)
}

/// An identifier as PostgreSQL would print it: bare when it is lower-case letters, digits
/// and underscores not starting with a digit, else double-quoted (keywords are not
/// checked: a relation named like one only shows unquoted).
fn quote(ident: &str) -> String {
    let bare = ident.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if bare {
        ident.to_owned()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

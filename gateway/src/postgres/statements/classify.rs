//! From a query string to its statements: one parse of the whole string gives each
//! statement's node (its verb) and its place in the text; that statement's text then gives
//! its objects (pg_query's summary walker, which follows every expression PostgreSQL's own
//! raw tree walker does, and tells a CTE from a table) and its fingerprint. Where the
//! summary does not look (a cursor's query, a RETURNING subquery), [`walk`] finds what it
//! missed, so no relation the statement reads goes unnamed.

use pg_query::protobuf::summary_result::Context;
use pg_query::protobuf::{RawStmt, SelectStmt, WithClause};
use pg_query::{FingerprintOptions, NodeEnum, ParserOptions};

use super::{Access, Fingerprint, Name, Object, ObjectKind, Statement, Unparseable, Verb};

/// The statements of one simple-protocol query string (or of one Parse message's text),
/// in order. An empty or comment-only string has none. Any statement pg_query cannot
/// parse, or whose node this module does not know, makes the whole string
/// [`Unparseable`]: PostgreSQL runs a string's statements together, so one unknown
/// statement leaves nothing that can be described.
pub fn classify(sql: &str) -> Result<Vec<Statement>, Unparseable> {
    // pg_query's Rust half indexes and casts parse trees in places (its table and
    // function lists); should one of those ever panic, the statement is refused, not the
    // connection's task torn down. Its messages name node types, never the text.
    std::panic::catch_unwind(|| statements(sql)).unwrap_or(Err(Unparseable))
}

fn statements(sql: &str) -> Result<Vec<Statement>, Unparseable> {
    let parsed = pg_query::parse(sql, ParserOptions::DEFAULT).map_err(|_| Unparseable)?;
    let raws = &parsed.protobuf.stmts;
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let node = raw.stmt.as_deref().and_then(|n| n.node.as_ref()).ok_or(Unparseable)?;
        let verb = Verb::of(node).ok_or(Unparseable)?;
        // A lone statement is the whole string: no slicing, and its fingerprint and
        // summary read the very text the server will.
        let text = if raws.len() == 1 { sql } else { text_of(sql, raw)? };
        let mut objects = objects(text)?;
        super::walk::missed(node, verb, &mut objects);
        super::walk::dropped(node, &mut objects);
        if let Verb::CopyFrom { .. } = verb {
            // COPY … FROM writes its one relation; the summary reports it as read.
            for o in objects.iter_mut().filter(|o| o.kind == ObjectKind::Relation) {
                o.access = Access::Dml;
            }
        }
        if let NodeEnum::VariableSetStmt(v) = node {
            setting(&mut objects, &v.name);
        } else if let NodeEnum::VariableShowStmt(v) = node {
            setting(&mut objects, &v.name);
        }
        objects.sort_unstable();
        objects.dedup();
        let fingerprint = pg_query::fingerprint(text, ParserOptions::DEFAULT, FingerprintOptions::default())
            .map_err(|_| Unparseable)?;
        out.push(Statement {
            verb,
            objects: objects.into_boxed_slice(),
            fingerprint: Fingerprint(fingerprint.value),
            has_where: has_where(node),
        });
    }
    Ok(out)
}

/// The text of one statement of a multi-statement string: from its location for its
/// length, or to the end when the parser gives no length (the last statement).
fn text_of<'a>(sql: &'a str, raw: &RawStmt) -> Result<&'a str, Unparseable> {
    let start = usize::try_from(raw.stmt_location).map_err(|_| Unparseable)?;
    let len = usize::try_from(raw.stmt_len).map_err(|_| Unparseable)?;
    let end = if len == 0 { sql.len() } else { start.checked_add(len).ok_or(Unparseable)? };
    sql.get(start..end).ok_or(Unparseable)
}

/// Relations and functions of one statement, with the access kind pg_query reports.
pub(super) fn objects(text: &str) -> Result<Vec<Object>, Unparseable> {
    // -1: no truncated copy of the query text is made.
    let summary = pg_query::summary(text, ParserOptions::DEFAULT, -1).map_err(|_| Unparseable)?;
    let tables = summary.tables.iter().map(|t| Object {
        kind: ObjectKind::Relation,
        name: Name::from_identifier(&t.name),
        access: access(t.context),
    });
    let functions = summary.functions.iter().map(|f| Object {
        kind: ObjectKind::Function,
        name: Name::from_identifier(&f.name),
        access: access(f.context),
    });
    Ok(tables.chain(functions).collect())
}

fn access(context: Context) -> Access {
    match context {
        Context::Select => Access::Select,
        Context::Dml => Access::Dml,
        Context::Ddl => Access::Ddl,
        Context::Call => Access::Call,
        Context::None => Access::Other,
    }
}

/// SET, RESET and SHOW name a run-time setting (`search_path`, `role`): a name the next
/// guardrails read, never its value.
fn setting(objects: &mut Vec<Object>, name: &str) {
    if !name.is_empty() {
        objects.push(Object { kind: ObjectKind::Setting, name: Name::from_identifier(name), access: Access::Other });
    }
}

/// Whether every UPDATE and DELETE the statement runs has a WHERE clause; `None` when it
/// runs none. Data-modifying statements stand at the top, in WITH clauses, or under the
/// statements that carry another (EXPLAIN, PREPARE, COPY (…) TO, CREATE TABLE AS).
fn has_where(node: &NodeEnum) -> Option<bool> {
    let mut acc = None;
    writes(node, &mut acc);
    acc
}

fn writes(node: &NodeEnum, acc: &mut Option<bool>) {
    use NodeEnum as N;
    let (with, inner) = match node {
        N::UpdateStmt(u) => {
            note(acc, u.where_clause.is_some());
            (u.with_clause.as_ref(), None)
        }
        N::DeleteStmt(d) => {
            note(acc, d.where_clause.is_some());
            (d.with_clause.as_ref(), None)
        }
        N::SelectStmt(s) => return select_writes(s, acc),
        N::InsertStmt(i) => (i.with_clause.as_ref(), i.select_stmt.as_deref()),
        N::MergeStmt(m) => (m.with_clause.as_ref(), None),
        N::ExplainStmt(e) => (None, e.query.as_deref()),
        N::PrepareStmt(p) => (None, p.query.as_deref()),
        N::CopyStmt(c) => (None, c.query.as_deref()),
        N::CreateTableAsStmt(c) => (None, c.query.as_deref()),
        _ => (None, None),
    };
    with_writes(with, acc);
    if let Some(n) = inner.and_then(|n| n.node.as_ref()) {
        writes(n, acc);
    }
}

fn select_writes(s: &SelectStmt, acc: &mut Option<bool>) {
    with_writes(s.with_clause.as_ref(), acc);
    for arm in [&s.larg, &s.rarg].into_iter().flatten() {
        select_writes(arm, acc);
    }
}

fn with_writes(with: Option<&WithClause>, acc: &mut Option<bool>) {
    for cte in with.into_iter().flat_map(|w| &w.ctes) {
        if let Some(NodeEnum::CommonTableExpr(c)) = &cte.node {
            if let Some(q) = c.ctequery.as_deref().and_then(|n| n.node.as_ref()) {
                writes(q, acc);
            }
        }
    }
}

fn note(acc: &mut Option<bool>, has_where: bool) {
    *acc = Some(acc.unwrap_or(true) && has_where);
}

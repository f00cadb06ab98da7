//! Every relation and function a parse tree names, wherever it sits. pg_query's summary
//! walker follows expressions and the common statements but not every utility statement
//! (a cursor's query) nor every clause (a subquery in RETURNING); this walk visits every
//! node of the tree, so whatever the summary missed is added. What it adds to a query
//! (SELECT, DML, COPY, a cursor, EXPLAIN, PREPARE) is read: the summary reports every
//! relation a query writes, and the clauses it skips only read. What it adds to any other
//! command is that command's target (CREATE SEQUENCE s, CLUSTER t): `ddl`. It also puts
//! back the tables the summary takes for CTEs because a CTE of that name exists somewhere
//! in the statement, though not where the table is named: a table left out would be a
//! table no policy sees.
//!
//! The tree is visited through its `Serialize` impl (the protobuf types derive it), with a
//! serializer that writes nothing: it sees every field of every node without a hand-kept
//! list of the ~270 node types, and allocates only for the names it keeps. The tree's depth
//! is bounded by the protobuf decoder's recursion limit, so neither can overflow the stack.

use std::fmt;

use pg_query::NodeEnum;
use serde::ser::{self, Serialize};

use super::{Access, Name, Object, ObjectKind, Verb};

/// Adds to `objects` the relations and functions of `node` not already in it.
///
/// A name is a CTE only where that CTE is in scope (PostgreSQL's rule): in the statement
/// whose WITH defines it and below, and within the WITH only in later CTEs (or in all of
/// them, for WITH RECURSIVE). The summary leaves out any reference spelled like a CTE of the
/// statement anywhere; this puts back the ones out of such a scope, which are tables.
pub(super) fn missed(node: &NodeEnum, verb: Verb, objects: &mut Vec<Object>) {
    let mut found = Found::default();
    if node.serialize(Walk(&mut found)).is_err() {
        return;
    }
    for (schema, rel, chain) in &found.relations {
        if schema.is_empty() && found.is_cte(rel, chain) {
            continue;
        }
        let name = if schema.is_empty() { quote(rel) } else { format!("{}.{}", quote(schema), quote(rel)) };
        add(objects, ObjectKind::Relation, &name, read_or_defined(verb));
    }
    for f in &found.functions {
        add(objects, ObjectKind::Function, f, Access::Call);
    }
}

/// The relations a DROP names. The summary names dropped tables (and the tables of
/// dropped rules and triggers) only; views, materialized views, indexes, sequences,
/// foreign tables and the tables of dropped policies are relations too.
pub(super) fn dropped(node: &NodeEnum, objects: &mut Vec<Object>) {
    use pg_query::protobuf::ObjectType as T;
    let NodeEnum::DropStmt(d) = node else { return };
    // Policies are named `table… policy`: the relation is all but the last part.
    let keep_last = match T::try_from(d.remove_type) {
        Ok(T::ObjectView | T::ObjectMatview | T::ObjectIndex | T::ObjectSequence | T::ObjectForeignTable) => true,
        Ok(T::ObjectPolicy) => false,
        _ => return,
    };
    for object in &d.objects {
        let Some(NodeEnum::List(list)) = &object.node else { continue };
        let parts: Vec<&str> = list
            .items
            .iter()
            .filter_map(|i| match &i.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect();
        let parts = if keep_last { &parts[..] } else { &parts[..parts.len().saturating_sub(1)] };
        if !parts.is_empty() {
            let name = parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join(".");
            add(objects, ObjectKind::Relation, &name, Access::Ddl);
        }
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

#[derive(Default)]
struct Found {
    /// (schema or "", relation, the scopes it was met in) of every RangeVar.
    relations: Vec<(String, String, Vec<Frame>)>,
    /// Dotted names of every FuncCall.
    functions: Vec<String>,
    /// The CTEs each statement with a WITH clause defines, by scope number.
    scopes: Vec<Scope>,
    /// The statements being walked, outermost first.
    chain: Vec<Frame>,
    /// While a name field is read, the strings met are appended here, dot-separated.
    capture: Option<String>,
    /// While a flag is read (WITH RECURSIVE), its value.
    flag: Option<bool>,
}

#[derive(Default)]
struct Scope {
    ctes: Vec<String>,
    recursive: bool,
}

/// One statement on the way down, and whether the walk is inside the body of its `n`th
/// CTE (where, without RECURSIVE, only the CTEs before it are visible).
#[derive(Clone, Copy)]
struct Frame {
    scope: usize,
    in_cte: Option<usize>,
}

impl Found {
    fn is_cte(&self, rel: &str, chain: &[Frame]) -> bool {
        chain.iter().any(|f| {
            let Some(scope) = self.scopes.get(f.scope) else { return false };
            let visible = match f.in_cte {
                Some(n) if !scope.recursive => &scope.ctes[..n.min(scope.ctes.len())],
                _ => &scope.ctes[..],
            };
            visible.iter().any(|c| c == rel)
        })
    }
}

/// Never raised by the walk itself; serde's contract needs the type.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("walk stopped")
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

struct Walk<'a>(&'a mut Found);

/// Which node a struct's fields belong to: those whose names are kept, and the
/// statements that can carry a WITH clause.
enum Node {
    RangeVar {
        schema: String,
        rel: String,
    },
    FuncCall,
    /// A CTE, once its name is read: its number in its statement's WITH.
    Cte(Option<usize>),
    With,
    Statement,
    Other,
}

struct Fields<'a> {
    found: &'a mut Found,
    node: Node,
}

/// The strings of `value`, dot-joined: a relation's name part, a function's name list.
fn capture<T: Serialize + ?Sized>(found: &mut Found, value: &T) -> Result<String, Stop> {
    let outer = found.capture.replace(String::new());
    value.serialize(Walk(&mut *found))?;
    let got = std::mem::replace(&mut found.capture, outer);
    Ok(got.unwrap_or_default())
}

impl Fields<'_> {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Stop> {
        match (&mut self.node, key) {
            (Node::RangeVar { schema, .. }, "schemaname") => *schema = capture(self.found, value)?,
            (Node::RangeVar { rel, .. }, "relname") => *rel = capture(self.found, value)?,
            (Node::RangeVar { .. }, _) => {}
            (Node::FuncCall, "funcname") => {
                let name = capture(self.found, value)?;
                if !name.is_empty() {
                    self.found.functions.push(name);
                }
            }
            (Node::Cte(n), "ctename") => {
                let name = capture(self.found, value)?;
                if let Some(scope) = self.found.chain.last().and_then(|f| self.found.scopes.get_mut(f.scope)) {
                    *n = Some(scope.ctes.len());
                    scope.ctes.push(name);
                }
            }
            (Node::Cte(n), "ctequery") => {
                let n = *n;
                let outer = self.found.chain.last_mut().map(|f| std::mem::replace(&mut f.in_cte, n));
                value.serialize(Walk(&mut *self.found))?;
                if let (Some(f), Some(outer)) = (self.found.chain.last_mut(), outer) {
                    f.in_cte = outer;
                }
            }
            (Node::With, "recursive") => {
                let outer = self.found.flag.replace(false);
                value.serialize(Walk(&mut *self.found))?;
                let recursive = std::mem::replace(&mut self.found.flag, outer).unwrap_or(false);
                if let Some(scope) = self.found.chain.last().and_then(|f| self.found.scopes.get_mut(f.scope)) {
                    scope.recursive = recursive;
                }
            }
            _ => value.serialize(Walk(&mut *self.found))?,
        }
        Ok(())
    }

    fn finish(self) {
        match self.node {
            Node::RangeVar { schema, rel } if !rel.is_empty() && self.found.capture.is_none() => {
                let chain = self.found.chain.clone();
                self.found.relations.push((schema, rel, chain));
            }
            Node::Statement => {
                self.found.chain.pop();
            }
            _ => {}
        }
    }
}

impl ser::SerializeStruct for Fields<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Stop> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Stop> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStructVariant for Fields<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Stop> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Stop> {
        self.finish();
        Ok(())
    }
}

/// Sequences, tuples and maps: every element walked the same way.
struct Elements<'a>(&'a mut Found);

macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Elements<'_> {
            type Ok = ();
            type Error = Stop;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
                value.serialize(Walk(&mut *self.0))
            }
            fn end(self) -> Result<(), Stop> {
                Ok(())
            }
        }
    )*};
}
elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Elements<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
        key.serialize(Walk(&mut *self.0))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        value.serialize(Walk(&mut *self.0))
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

macro_rules! ignore {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, _: $ty) -> Result<(), Stop> {
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for Walk<'a> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Elements<'a>;
    type SerializeMap = Elements<'a>;
    type SerializeStruct = Fields<'a>;
    type SerializeStructVariant = Fields<'a>;

    ignore!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str)
    );

    fn serialize_bool(self, v: bool) -> Result<(), Stop> {
        if let Some(flag) = self.0.flag.as_mut() {
            *flag = v;
        }
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Stop> {
        if let Some(c) = self.0.capture.as_mut() {
            if !c.is_empty() {
                c.push('.');
            }
            c.push_str(v);
        }
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'a>, Stop> {
        Ok(Elements(self.0))
    }
    fn serialize_tuple(self, _: usize) -> Result<Elements<'a>, Stop> {
        Ok(Elements(self.0))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Elements<'a>, Stop> {
        Ok(Elements(self.0))
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Elements<'a>, Stop> {
        Ok(Elements(self.0))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Elements<'a>, Stop> {
        Ok(Elements(self.0))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Fields<'a>, Stop> {
        let node = match name {
            "RangeVar" => Node::RangeVar { schema: String::new(), rel: String::new() },
            "FuncCall" => Node::FuncCall,
            "CommonTableExpr" => Node::Cte(None),
            "WithClause" => Node::With,
            "SelectStmt" | "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                let scope = self.0.scopes.len();
                self.0.scopes.push(Scope::default());
                self.0.chain.push(Frame { scope, in_cte: None });
                Node::Statement
            }
            _ => Node::Other,
        };
        Ok(Fields { found: self.0, node })
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Fields<'a>, Stop> {
        Ok(Fields { found: self.0, node: Node::Other })
    }
}

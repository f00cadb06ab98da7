//! What a statement does, from a real PostgreSQL parse tree (`pg_query`): its verb, the
//! relations and functions it touches, and its fingerprint. [`classify`] turns one
//! simple-protocol string (possibly several statements) into one [`Statement`] each;
//! [`Cache`] remembers results by statement text so a repeated text is parsed once.
//!
//! A [`Statement`] holds names, verbs and a fingerprint only: no field can carry a literal,
//! a parameter or row data, so a statement can go to the audit, the log and the metrics as
//! it is. [`Unparseable`] carries nothing of the text either; the caller refuses such a
//! statement (SQLSTATE 42601), since an unknown statement must never be forwarded.
//!
//! ```text
//! let stmts = classify("SELECT name FROM public.patients WHERE id = 7")?;
//! assert_eq!(stmts[0].verb, Verb::Select);   // objects: public.patients (select)
//! ```
//! `cargo test -p custos --lib postgres::statements`

mod cache;
mod classify;
mod verb;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

pub use cache::Cache;
pub use classify::classify;
pub use verb::{Explained, Verb};

/// One statement of a query string, as the parse tree describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// What the top-level statement is (for EXPLAIN, with what it explains).
    pub verb: Verb,
    /// Relations and functions, sorted and deduplicated; a relation read and written
    /// appears once per access kind.
    pub objects: Box<[Object]>,
    /// pg_query's fingerprint of this statement alone: literals and parameters never
    /// change it.
    pub fingerprint: Fingerprint,
    /// For a statement that updates or deletes (at the top level, in a WITH clause or
    /// under EXPLAIN): whether every UPDATE and DELETE in it has a WHERE clause.
    /// `None` when it neither updates nor deletes.
    pub has_where: Option<bool>,
}

/// A relation, a function or a setting a statement names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Object {
    pub kind: ObjectKind,
    /// As written, schema-qualified when it was, identifiers quoted where PostgreSQL
    /// would need them (`public."Patient Notes"`).
    pub name: Name,
    pub access: Access,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Relation,
    Function,
    /// A run-time setting SET, RESET or SHOW names (`search_path`, `role`).
    Setting,
}

/// How a statement uses an object, as pg_query reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read only.
    Select,
    /// Rows written (INSERT, UPDATE, DELETE, MERGE, COPY FROM).
    Dml,
    /// The object itself created, altered or dropped.
    Ddl,
    /// A function called.
    Call,
    /// Named where pg_query gives no context (e.g. LOCK): the policy treats it as the
    /// statement's verb says.
    Other,
}

/// An identifier (possibly qualified) taken from an identifier position of the parse tree;
/// only this module makes one, so a literal cannot become a `Name`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Name(Box<str>);

impl Name {
    fn from_identifier(qualified: &str) -> Self {
        Name(qualified.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// pg_query's 64-bit fingerprint; shown as its 16 hex digits, as pg_query and
/// pg_stat_statements tooling print it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The verb is always a string in the JSON (`"copy_from"`, `"explain"`), so a log store
/// sees one type per field; what qualifies it sits beside it.
impl Serialize for Statement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("verb", self.verb.as_str())?;
        match self.verb {
            Verb::CopyFrom { program } | Verb::CopyTo { program } => {
                m.serialize_entry("program", &program)?;
            }
            Verb::Explain { analyze, of } => {
                m.serialize_entry("explained", of.as_str())?;
                m.serialize_entry("analyze", &analyze)?;
            }
            _ => {}
        }
        m.serialize_entry("objects", &self.objects)?;
        m.serialize_entry("fingerprint", &self.fingerprint)?;
        if let Some(w) = self.has_where {
            m.serialize_entry("has_where", &w)?;
        }
        m.end()
    }
}

/// The text is not a statement PostgreSQL would accept (or not one this module can
/// describe). Holds nothing of the text: the parser's message quotes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("statement could not be parsed")]
pub struct Unparseable;

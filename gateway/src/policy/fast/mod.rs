//! The indexed evaluator: the model and policy casbin loaded, turned at load time into
//! - one expression per policy line with the line's values put in and folded (a
//!   `"^(?:" + p.act + ")$"` becomes one compiled pattern; `p.dom == "*"` true or false),
//! - the role graph's closure per name and domain (what `g(name, role, dom)` reaches),
//! - buckets of lines by the values of the columns the matcher ties to the request
//!   (`g(r.sub, p.sub…)` through the role closure, `r.dom == p.dom`, `p.dom == "*" ||
//!   r.dom == p.dom`), so a decision evaluates only the lines that could match, in policy
//!   order, with no allocation.
//!
//! It decides what the `casbin` crate decides, including which rule decides: the effect
//! semantics are casbin-rs's (`DefaultEffector`), the role graph is casbin-rs's (one graph
//! for `g`, `g2`…, per domain, links followed up to its depth bound). What it does not
//! cover is refused with the feature's name ([`Unsupported`]) and casbin decides.

use super::matcher::{self, Ast, Func, Names, Op, Ty};
use super::pattern::Pattern;
use std::collections::HashMap;
use std::sync::Arc;

mod build;
mod eval;

/// A value of the wrong type reached an operation (the type check at load rules it out).
#[derive(Debug)]
pub struct Unmatchable;

/// A model feature the fast evaluator does not cover.
#[derive(Debug)]
pub struct Unsupported(pub String);

/// A load error (a pattern casbin could not run), with the rule it is in.
#[derive(Debug)]
pub enum BuildError {
    Unsupported(Unsupported),
    Rule { rule: Vec<String>, message: String },
}

/// Maps fixed at load time and only read on requests: rustc's fast hash (no key here is
/// chosen by a client at build time).
type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// casbin's effects (`e = …`, as casbin stores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// `some(where (p.eft == allow))`: the first matching allow decides.
    AllowOverride,
    /// `… && !some(where (p.eft == deny))`: the first matching deny, else the first allow.
    DenyOverride,
    /// `priority(p.eft) || deny`: the first matching allow or deny.
    Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Allow,
    Deny,
}

/// A value while deciding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    B(bool),
    I(i64),
    S(&'a str),
}

/// A line's expression, its values put in.
#[derive(Debug)]
enum Expr {
    B(bool),
    I(i64),
    S(Box<str>),
    R(u8),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Op, Box<Expr>, Box<Expr>),
    /// A pattern function with its compiled pattern.
    Match(u32, Box<Expr>),
    /// `g(a, b[, dom])`.
    G(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
    /// `g(r.a, "b"[, r.dom])`, the common case: the role `b` resolved to its id at build,
    /// and the closure of (r.a, r.dom) looked up once per decision, in memo slot `slot`,
    /// however many lines ask.
    GReq {
        slot: u8,
        a: u8,
        dom: Option<u8>,
        b: Box<str>,
        id: u32,
    },
}

/// At most this many distinct `g(r.a, …, r.dom)` argument pairs get a memo slot; more
/// are evaluated as plain `g` calls.
const MAX_G_SLOTS: usize = 4;

/// Per decision: each memo slot's closure once looked up (`Some(None)`: not in the graph).
type Memo<'a> = [Option<Option<&'a [u32]>>; MAX_G_SLOTS];

/// Where a role function looks: the default domain, a request token, or any domain.
#[derive(Debug, Clone, Copy)]
enum DomArg {
    Default,
    Req(u8),
    Any,
}

/// One index dimension: a policy column and the request values that select its lines.
#[derive(Debug)]
enum Dim {
    /// `g(r.X, p.col[, dom])`: the lines whose `col` is a role of r.X (or r.X itself).
    Role { req: u8, dom: DomArg },
    /// `r.X == p.col`, or an `||` of such terms and `p.col == "literal"`.
    Eq { reqs: Vec<u8>, lits: Vec<u32> },
}

/// The lines of one bucket, and for a large one, the same lines by the literal prefix of
/// their path pattern (a request path can only match a pattern it starts with).
struct Bucket {
    all: Box<[u32]>,
    by_path: Option<PathIndex>,
}

struct PathIndex {
    /// The distinct prefix lengths, in bytes.
    lens: Box<[usize]>,
    by_prefix: FxMap<Box<str>, Box<[u32]>>,
    /// Lines whose pattern has no literal prefix (a regular expression, `*` first).
    rest: Box<[u32]>,
}

/// Buckets at most this long are scanned whole.
const SMALL_BUCKET: usize = 8;
/// At most this many prefix lists are merged; more and the bucket is scanned whole.
const MAX_LISTS: usize = 16;

const MAX_DIMS: usize = 3;
const INLINE: usize = 4;
type Key = [u32; MAX_DIMS];
const DEFAULT_DOMAIN: &str = "DEFAULT";
/// casbin-rs's role manager follows links up to this many levels.
const MAX_HIERARCHY: usize = 10;

/// The role graph of one domain: each name's closure (itself and every role it reaches),
/// as sorted interned ids.
#[derive(Default)]
struct Domain {
    closure: FxMap<Box<str>, Box<[u32]>>,
}

pub struct Fast {
    effect: Effect,
    exprs: Vec<Expr>,
    kinds: Vec<Kind>,
    rules: Vec<Arc<str>>,
    patterns: Vec<Pattern>,
    /// Interned policy and role-graph values.
    ids: FxMap<Box<str>, u32>,
    domains: FxMap<Box<str>, Domain>,
    /// Per name: its closure over every domain (for `g(…, p.dom)`).
    any_domain: FxMap<Box<str>, Box<[u32]>>,
    dims: Vec<(usize, Dim)>,
    buckets: FxMap<Key, Bucket>,
    /// `keyMatch*(r.X, p.col)` as a top-level term: (X, col, function).
    path: Option<(u8, usize, Func)>,
    /// With no policy lines casbin evaluates the matcher once with every column "".
    empty: Option<Expr>,
}

/// The outcome for one identity, as casbin reports it: the decision, and the deciding
/// rule (`None` when nothing matched).
pub struct Outcome {
    pub allow: bool,
    pub rule: Option<Arc<str>>,
}

/// What the fast evaluator reads from a loaded casbin model.
pub struct Source<'a> {
    pub r: Vec<(String, Ty)>,
    pub p_tokens: &'a [String],
    pub matcher: &'a str,
    pub effect: &'a str,
    /// Role definitions: name, arity (2 or 3), rules.
    pub g: Vec<(String, u8, Vec<Vec<String>>)>,
    pub policy: Vec<Vec<String>>,
}

fn compare(op: Op, a: Val<'_>, b: Val<'_>) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        _ => {
            let (Val::I(x), Val::I(y)) = (a, b) else { return false };
            match op {
                Op::Lt => x < y,
                Op::Le => x <= y,
                Op::Gt => x > y,
                Op::Ge => x >= y,
                _ => false,
            }
        }
    }
}

/// casbin's text for a rule, as the audit names it: `p, a, b, c`.
pub fn rule_text(p: &[String]) -> String {
    format!("p, {}", p.join(", "))
}

#[cfg(test)]
mod tests;

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
}

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

/// Ascending line numbers from up to `MAX_LISTS` ascending lists.
struct Merge<'a> {
    lists: [&'a [u32]; MAX_LISTS],
    n: usize,
}

impl Iterator for Merge<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let mut best: Option<usize> = None;
        for i in 0..self.n {
            if let Some(&h) = self.lists[i].first() {
                if best.is_none_or(|b| h < self.lists[b][0]) {
                    best = Some(i);
                }
            }
        }
        let b = best?;
        let h = self.lists[b][0];
        self.lists[b] = &self.lists[b][1..];
        Some(h)
    }
}

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

struct Builder {
    ids: FxMap<Box<str>, u32>,
    patterns: Vec<Pattern>,
    pattern_ids: HashMap<(Func, String), u32>,
}

impl Builder {
    /// The literal text every key matching `pattern` starts with (`None`: no such text).
    fn prefix_of(&mut self, f: Func, pattern: &str) -> Option<Box<str>> {
        let id = self.pattern(f, pattern).ok()?;
        self.patterns[id as usize].literal_prefix().filter(|p| !p.is_empty()).map(Into::into)
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.insert(s.into(), i);
        i
    }

    fn pattern(&mut self, f: Func, text: &str) -> Result<u32, String> {
        if let Some(&i) = self.pattern_ids.get(&(f, text.to_string())) {
            return Ok(i);
        }
        let p =
            Pattern::compile(f, text).map_err(|e| format!("`{text}` is not a valid pattern for {}: {e}", f.name()))?;
        let i = self.patterns.len() as u32;
        self.patterns.push(p);
        self.pattern_ids.insert((f, text.to_string()), i);
        Ok(i)
    }

    /// `a` with the line's values `p` put in, folded where the request plays no part.
    fn specialize(&mut self, a: &Ast, p: &[String], roles: &Roles) -> Result<Expr, String> {
        Ok(match a {
            Ast::Bool(b) => Expr::B(*b),
            Ast::Int(i) => Expr::I(*i),
            Ast::Str(s) => Expr::S(s.as_str().into()),
            Ast::P(i) => Expr::S(p[*i].as_str().into()),
            Ast::R(i) => Expr::R(*i as u8),
            Ast::Not(x) => match self.specialize(x, p, roles)? {
                Expr::B(b) => Expr::B(!b),
                x => Expr::Not(Box::new(x)),
            },
            Ast::Bin(op, x, y) => {
                let x = self.specialize(x, p, roles)?;
                // Short-circuit as the script engine does: a right side this rule never
                // reaches is not compiled (`p.net == "any" || ipMatch(r.client, p.net)`).
                match (op, &x) {
                    (Op::And, Expr::B(false)) => return Ok(Expr::B(false)),
                    (Op::Or, Expr::B(true)) => return Ok(Expr::B(true)),
                    _ => {}
                }
                let y = self.specialize(y, p, roles)?;
                match (op, x, y) {
                    (Op::And, Expr::B(false), _) => Expr::B(false),
                    (Op::And, Expr::B(true), y) => y,
                    (Op::And, x, Expr::B(true)) => x,
                    (Op::And, x, y) => Expr::And(Box::new(x), Box::new(y)),
                    (Op::Or, Expr::B(true), _) => Expr::B(true),
                    (Op::Or, Expr::B(false), y) => y,
                    (Op::Or, x, Expr::B(false)) => x,
                    (Op::Or, x, y) => Expr::Or(Box::new(x), Box::new(y)),
                    (Op::Add, Expr::S(x), Expr::S(y)) => Expr::S(format!("{x}{y}").into()),
                    (Op::Add, _, _) => return Err("joining strings built from the request".into()),
                    (op, x, y) => match (const_val(&x), const_val(&y)) {
                        (Some(a), Some(b)) => Expr::B(compare(*op, a, b)),
                        _ => Expr::Cmp(*op, Box::new(x), Box::new(y)),
                    },
                }
            }
            Ast::Call(Func::G(_), args) => {
                let a = self.specialize(&args[0], p, roles)?;
                let b = self.specialize(&args[1], p, roles)?;
                let d = match args.get(2) {
                    Some(d) => Some(self.specialize(d, p, roles)?),
                    None => None,
                };
                match (&a, &b, &d) {
                    (Expr::S(x), Expr::S(y), None) => Expr::B(roles.has_link(x, y, DEFAULT_DOMAIN)),
                    (Expr::S(x), Expr::S(y), Some(Expr::S(d))) => Expr::B(roles.has_link(x, y, d)),
                    _ => Expr::G(Box::new(a), Box::new(b), d.map(Box::new)),
                }
            }
            Ast::Call(f, args) => {
                let subject = self.specialize(&args[0], p, roles)?;
                let Expr::S(pattern) = self.specialize(&args[1], p, roles)? else {
                    return Err(format!("a `{}` pattern built from the request", f.name()));
                };
                let id = self.pattern(*f, &pattern)?;
                match subject {
                    Expr::S(s) => Expr::B(self.patterns[id as usize].matches(&s)),
                    s => Expr::Match(id, Box::new(s)),
                }
            }
        })
    }
}

fn const_val(e: &Expr) -> Option<Val<'_>> {
    match e {
        Expr::B(b) => Some(Val::B(*b)),
        Expr::I(i) => Some(Val::I(*i)),
        Expr::S(s) => Some(Val::S(s)),
        _ => None,
    }
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

/// The role graph while building: per domain, names and their links.
struct Roles {
    graphs: HashMap<String, (HashMap<String, usize>, Vec<Vec<usize>>)>,
}

impl Roles {
    fn build(g: &[(String, u8, Vec<Vec<String>>)]) -> Roles {
        let mut graphs: HashMap<String, (HashMap<String, usize>, Vec<Vec<usize>>)> = HashMap::new();
        for (_, arity, rules) in g {
            for rule in rules {
                let (a, b) = (&rule[0], &rule[1]);
                if a == b {
                    continue;
                }
                let dom = if *arity == 3 { rule[2].as_str() } else { DEFAULT_DOMAIN };
                let (names, edges) = graphs.entry(dom.to_string()).or_default();
                let mut node = |n: &String| {
                    let next = names.len();
                    let i = *names.entry(n.clone()).or_insert(next);
                    if i == edges.len() {
                        edges.push(Vec::new());
                    }
                    i
                };
                let (x, y) = (node(a), node(b));
                if !edges[x].contains(&y) {
                    edges[x].push(y);
                }
            }
        }
        Roles { graphs }
    }

    /// Every name's reach per domain (breadth first, with the level of each); a name
    /// that reaches a role `MAX_HIERARCHY` levels or more away is where casbin-rs's
    /// bounded walk may stop short: not covered.
    fn closures(&self) -> Result<HashMap<&str, HashMap<&str, Vec<&str>>>, Unsupported> {
        let mut out = HashMap::new();
        for (dom, (names, edges)) in &self.graphs {
            let mut by_index = vec![""; names.len()];
            for (n, &i) in names {
                by_index[i] = n.as_str();
            }
            let mut level = vec![usize::MAX; names.len()];
            let mut per_name = HashMap::new();
            for start in 0..names.len() {
                level[start] = 0;
                let mut queue = std::collections::VecDeque::from([start]);
                let mut reached = vec![start];
                while let Some(n) = queue.pop_front() {
                    for &m in &edges[n] {
                        if level[m] == usize::MAX {
                            level[m] = level[n] + 1;
                            if level[m] >= MAX_HIERARCHY {
                                return Err(Unsupported(format!(
                                    "a role hierarchy {MAX_HIERARCHY} or more levels deep (`{}` → … → `{}`; casbin stops following links after {MAX_HIERARCHY})",
                                    by_index[start], by_index[m]
                                )));
                            }
                            reached.push(m);
                            queue.push_back(m);
                        }
                    }
                }
                for &m in &reached {
                    level[m] = usize::MAX;
                }
                per_name.insert(by_index[start], reached.into_iter().map(|m| by_index[m]).collect::<Vec<_>>());
            }
            out.insert(dom.as_str(), per_name);
        }
        Ok(out)
    }

    fn has_link(&self, a: &str, b: &str, dom: &str) -> bool {
        if a == b {
            return true;
        }
        let Some((names, edges)) = self.graphs.get(dom) else { return false };
        let (Some(&x), Some(&y)) = (names.get(a), names.get(b)) else { return false };
        let mut seen = vec![false; edges.len()];
        let mut stack = vec![x];
        while let Some(n) = stack.pop() {
            if n == y {
                return true;
            }
            for &m in &edges[n] {
                if !seen[m] {
                    seen[m] = true;
                    stack.push(m);
                }
            }
        }
        false
    }
}

/// casbin's text for a rule, as the audit names it: `p, a, b, c`.
pub fn rule_text(p: &[String]) -> String {
    format!("p, {}", p.join(", "))
}

impl Fast {
    pub fn build(src: &Source<'_>) -> Result<Fast, BuildError> {
        let unsupported = |s: String| BuildError::Unsupported(Unsupported(s));
        let effect = match src.effect {
            "some(where (p_eft == allow))" => Effect::AllowOverride,
            "some(where (p_eft == allow)) && !some(where (p_eft == deny))" => Effect::DenyOverride,
            "priority(p_eft) || deny" => Effect::Priority,
            other => return Err(unsupported(format!("the effect `{other}`"))),
        };
        for (what, names) in [
            ("r", src.r.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()),
            ("p", src.p_tokens.iter().map(String::as_str).collect()),
        ] {
            if let Some(d) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
                // The script engine reads the last of the two; say so rather than guess.
                return Err(unsupported(format!("`{}` named twice in `{what} = …`", d.replacen('_', ".", 1))));
            }
        }
        let g_names: Vec<(String, u8)> = src.g.iter().map(|(n, a, _)| (n.clone(), *a)).collect();
        if let Some((n, a)) = g_names.iter().find(|(_, a)| *a != 2 && *a != 3) {
            return Err(unsupported(format!("the role definition `{n}` with {a} fields")));
        }
        let names = Names { r: &src.r, p: src.p_tokens, g: &g_names };
        let ast = matcher::parse(src.matcher, &names).map_err(unsupported)?;
        let roles = Roles::build(&src.g);
        let closures = roles.closures().map_err(BuildError::Unsupported)?;
        let mut b = Builder { ids: FxMap::default(), patterns: Vec::new(), pattern_ids: HashMap::new() };

        // Role closures as interned ids.
        let mut domains: FxMap<Box<str>, Domain> = FxMap::default();
        let mut any: HashMap<&str, Vec<u32>> = HashMap::new();
        for (dom, per_name) in &closures {
            let mut d = Domain::default();
            for (name, reached) in per_name {
                let mut ids: Vec<u32> = reached.iter().map(|r| b.intern(r)).collect();
                ids.sort_unstable();
                any.entry(name).or_default().extend(&ids);
                d.closure.insert((*name).into(), ids.into());
            }
            domains.insert((*dom).into(), d);
        }
        let any_domain: FxMap<Box<str>, Box<[u32]>> = any
            .into_iter()
            .map(|(n, mut v)| {
                v.sort_unstable();
                v.dedup();
                (n.into(), v.into())
            })
            .collect();

        // Index dimensions from the matcher's top-level `&&` terms.
        let mut dims: Vec<(usize, Dim)> = Vec::new();
        for term in matcher::conjuncts(&ast) {
            if dims.len() == MAX_DIMS {
                break;
            }
            if let Some((col, dim)) = dimension(term, &mut b) {
                if !dims.iter().any(|(c, _)| *c == col) {
                    dims.push((col, dim));
                }
            }
        }

        let path = matcher::conjuncts(&ast).into_iter().find_map(|t| match t {
            Ast::Call(f @ (Func::KeyMatch | Func::KeyMatch2 | Func::KeyMatch3), args) => match (&args[0], &args[1]) {
                (Ast::R(r), Ast::P(col)) => Some((*r as u8, *col, *f)),
                _ => None,
            },
            _ => None,
        });
        let eft = src.p_tokens.iter().position(|t| t == "p_eft");
        let n = src.p_tokens.len();
        let mut exprs = Vec::with_capacity(src.policy.len());
        let mut kinds = Vec::with_capacity(src.policy.len());
        let mut rules = Vec::with_capacity(src.policy.len());
        let mut buckets: HashMap<Key, Vec<u32>> = HashMap::new();
        for (i, p) in src.policy.iter().enumerate() {
            if p.len() != n {
                return Err(BuildError::Rule {
                    rule: p.clone(),
                    message: format!("the rule has {} fields; the model's `p` has {n}", p.len()),
                });
            }
            let kind = match eft.map(|e| p[e].as_str()) {
                None | Some("allow") => Kind::Allow,
                Some("deny") => Kind::Deny,
                Some(v) => {
                    return Err(BuildError::Rule {
                        rule: p.clone(),
                        message: format!("the effect must be allow or deny, not `{v}`"),
                    })
                }
            };
            let e = b.specialize(&ast, p, &roles).map_err(|message| BuildError::Rule { rule: p.clone(), message })?;
            let mut key = [0u32; MAX_DIMS];
            for (d, (col, _)) in dims.iter().enumerate() {
                key[d] = b.intern(&p[*col]);
            }
            buckets.entry(key).or_default().push(i as u32);
            exprs.push(e);
            kinds.push(kind);
            rules.push(Arc::from(rule_text(p)));
        }
        let empty = if src.policy.is_empty() {
            let blank = vec![String::new(); n];
            Some(b.specialize(&ast, &blank, &roles).map_err(|message| BuildError::Rule { rule: blank, message })?)
        } else {
            None
        };
        let buckets: FxMap<Key, Bucket> = buckets
            .into_iter()
            .map(|(k, lines)| {
                let by_path = match path {
                    Some((_, col, f)) if lines.len() > SMALL_BUCKET => {
                        Some(path_index(&lines, |li| b.prefix_of(f, &src.policy[li as usize][col])))
                    }
                    _ => None,
                };
                (k, Bucket { all: lines.into(), by_path })
            })
            .collect();
        Ok(Fast {
            effect,
            exprs,
            kinds,
            rules,
            patterns: b.patterns,
            ids: b.ids,
            domains,
            any_domain,
            dims,
            buckets,
            path,
            empty,
        })
    }

    /// How many index dimensions and buckets the policy has (for the load log).
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.exprs.len(), self.dims.len(), self.buckets.len())
    }

    /// Decides for one identity; `req` holds the request tokens in model order.
    pub fn enforce(&self, req: &[Val<'_>]) -> Result<Outcome, Unmatchable> {
        if let Some(e) = &self.empty {
            let allow = self.eval(e, req)? == Val::B(true);
            return Ok(Outcome { allow, rule: None });
        }
        // The keys each dimension selects.
        let mut inline = [[0u32; INLINE]; MAX_DIMS];
        let mut lens = [0usize; MAX_DIMS];
        let mut slices: [&[u32]; MAX_DIMS] = [&[0]; MAX_DIMS];
        for (d, (_, dim)) in self.dims.iter().enumerate() {
            match dim {
                Dim::Role { req: r, dom } => {
                    let Val::S(name) = req[*r as usize] else { return Ok(Outcome { allow: false, rule: None }) };
                    let closure = match dom {
                        DomArg::Default => self.domains.get(DEFAULT_DOMAIN).and_then(|d| d.closure.get(name)),
                        DomArg::Req(j) => match req[*j as usize] {
                            Val::S(dn) => self.domains.get(dn).and_then(|d| d.closure.get(name)),
                            _ => None,
                        },
                        DomArg::Any => self.any_domain.get(name),
                    };
                    match closure {
                        Some(c) => slices[d] = c,
                        None => {
                            // Not in the graph: only lines naming it exactly.
                            match self.ids.get(name) {
                                Some(&id) => {
                                    inline[d][0] = id;
                                    lens[d] = 1;
                                }
                                None => lens[d] = 0,
                            }
                            slices[d] = &[];
                        }
                    }
                }
                Dim::Eq { reqs, lits } => {
                    let mut l = 0;
                    for v in reqs.iter().map(|r| req[*r as usize]) {
                        if let Val::S(s) = v {
                            if let Some(&id) = self.ids.get(s) {
                                if !inline[d][..l].contains(&id) {
                                    inline[d][l] = id;
                                    l += 1;
                                }
                            }
                        }
                    }
                    for &id in lits {
                        if !inline[d][..l].contains(&id) {
                            inline[d][l] = id;
                            l += 1;
                        }
                    }
                    lens[d] = l;
                    slices[d] = &[];
                }
            }
        }
        let nd = self.dims.len();
        let keys = |d: usize| -> &[u32] {
            if slices[d].is_empty() {
                &inline[d][..lens[d]]
            } else {
                slices[d]
            }
        };
        let (k0, k1, k2) = (keys(0), keys(1), keys(2));
        let one: &[u32] = &[0];
        let (k0, k1, k2) =
            (if nd > 0 { k0 } else { one }, if nd > 1 { k1 } else { one }, if nd > 2 { k2 } else { one });
        // The first matching line of each kind, in policy order.
        let (mut first_allow, mut first_deny) = (u32::MAX, u32::MAX);
        for &a in k0 {
            for &b in k1 {
                for &c in k2 {
                    let Some(bucket) = self.buckets.get(&[a, b, c]) else { continue };
                    let mut merge = Merge { lists: [&[]; MAX_LISTS], n: 0 };
                    let path = match (&bucket.by_path, self.path) {
                        (Some(ix), Some((r, _, _))) => match req[r as usize] {
                            Val::S(obj) => Some((ix, obj)),
                            _ => None,
                        },
                        _ => None,
                    };
                    let whole = match path {
                        Some((ix, obj)) => {
                            merge.lists[0] = &ix.rest;
                            merge.n = 1;
                            let mut fits = true;
                            for &len in ix.lens.iter().take_while(|&&l| l <= obj.len()) {
                                if !obj.is_char_boundary(len) {
                                    continue;
                                }
                                if let Some(list) = ix.by_prefix.get(&obj[..len]) {
                                    if merge.n == MAX_LISTS {
                                        fits = false;
                                        break;
                                    }
                                    merge.lists[merge.n] = list;
                                    merge.n += 1;
                                }
                            }
                            !fits
                        }
                        None => true,
                    };
                    if whole {
                        merge.lists[0] = &bucket.all;
                        merge.n = 1;
                    }
                    for li in merge {
                        let kind = self.kinds[li as usize];
                        let stop = match self.effect {
                            Effect::AllowOverride => li >= first_allow,
                            Effect::DenyOverride => li >= first_deny,
                            Effect::Priority => li >= first_allow.min(first_deny),
                        };
                        if stop {
                            break;
                        }
                        let relevant = match (self.effect, kind) {
                            (Effect::AllowOverride, Kind::Deny) => false,
                            (_, Kind::Allow) => li < first_allow,
                            (_, Kind::Deny) => true,
                        };
                        if !relevant || self.eval(&self.exprs[li as usize], req)? != Val::B(true) {
                            continue;
                        }
                        match kind {
                            Kind::Allow => {
                                first_allow = li;
                                if self.effect == Effect::AllowOverride {
                                    break;
                                }
                            }
                            Kind::Deny => {
                                first_deny = li;
                                break;
                            }
                        }
                    }
                }
            }
        }
        let rule = |i: u32| Some(self.rules[i as usize].clone());
        Ok(match self.effect {
            Effect::AllowOverride if first_allow != u32::MAX => Outcome { allow: true, rule: rule(first_allow) },
            Effect::DenyOverride if first_deny != u32::MAX => Outcome { allow: false, rule: rule(first_deny) },
            Effect::DenyOverride if first_allow != u32::MAX => Outcome { allow: true, rule: rule(first_allow) },
            Effect::Priority if first_allow.min(first_deny) != u32::MAX => {
                let i = first_allow.min(first_deny);
                Outcome { allow: i == first_allow, rule: rule(i) }
            }
            _ => Outcome { allow: false, rule: None },
        })
    }

    fn eval<'a>(&'a self, e: &'a Expr, req: &[Val<'a>]) -> Result<Val<'a>, Unmatchable> {
        Ok(match e {
            Expr::B(b) => Val::B(*b),
            Expr::I(i) => Val::I(*i),
            Expr::S(s) => Val::S(s),
            Expr::R(i) => req[*i as usize],
            Expr::Not(x) => Val::B(self.eval(x, req)? != Val::B(true)),
            Expr::And(x, y) => Val::B(self.eval(x, req)? == Val::B(true) && self.eval(y, req)? == Val::B(true)),
            Expr::Or(x, y) => Val::B(self.eval(x, req)? == Val::B(true) || self.eval(y, req)? == Val::B(true)),
            Expr::Cmp(op, x, y) => Val::B(compare(*op, self.eval(x, req)?, self.eval(y, req)?)),
            Expr::Match(p, x) => {
                let Val::S(s) = self.eval(x, req)? else { return Err(Unmatchable) };
                Val::B(self.patterns[*p as usize].matches(s))
            }
            Expr::G(a, b, d) => {
                let (Val::S(a), Val::S(b)) = (self.eval(a, req)?, self.eval(b, req)?) else { return Err(Unmatchable) };
                let dom = match d {
                    Some(d) => match self.eval(d, req)? {
                        Val::S(d) => d,
                        _ => return Err(Unmatchable),
                    },
                    None => DEFAULT_DOMAIN,
                };
                Val::B(self.has_link(a, b, dom))
            }
        })
    }

    fn has_link(&self, a: &str, b: &str, dom: &str) -> bool {
        if a == b {
            return true;
        }
        let Some(closure) = self.domains.get(dom).and_then(|d| d.closure.get(a)) else { return false };
        let Some(&id) = self.ids.get(b) else { return false };
        closure.binary_search(&id).is_ok()
    }
}

fn path_index(lines: &[u32], mut prefix: impl FnMut(u32) -> Option<Box<str>>) -> PathIndex {
    let mut by_prefix: HashMap<Box<str>, Vec<u32>> = HashMap::new();
    let mut rest = Vec::new();
    for &li in lines {
        match prefix(li) {
            Some(p) => by_prefix.entry(p).or_default().push(li),
            None => rest.push(li),
        }
    }
    let mut lens: Vec<usize> = by_prefix.keys().map(|p| p.len()).collect();
    lens.sort_unstable();
    lens.dedup();
    PathIndex {
        lens: lens.into(),
        by_prefix: by_prefix.into_iter().map(|(k, v)| (k, v.into())).collect(),
        rest: rest.into(),
    }
}

/// An index dimension from one `&&` term, if the term has a shape that selects lines by
/// one column's value.
fn dimension(term: &Ast, b: &mut Builder) -> Option<(usize, Dim)> {
    match term {
        Ast::Call(Func::G(_), args) => {
            let (Ast::R(r), Ast::P(col)) = (&args[0], &args[1]) else { return None };
            let dom = match args.get(2) {
                None => DomArg::Default,
                Some(Ast::R(j)) => DomArg::Req(*j as u8),
                Some(_) => DomArg::Any,
            };
            Some((*col, Dim::Role { req: *r as u8, dom }))
        }
        _ => {
            let mut col = None;
            let (mut reqs, mut lits) = (Vec::new(), Vec::new());
            if !eq_terms(term, &mut col, &mut reqs, &mut lits) || reqs.len() + lits.len() > INLINE {
                return None;
            }
            let lits = lits.iter().map(|l: &String| b.intern(l)).collect();
            Some((col?, Dim::Eq { reqs, lits }))
        }
    }
}

/// Collects an `||` of `r.X == p.col` / `p.col == "lit"` terms over one column.
fn eq_terms(t: &Ast, col: &mut Option<usize>, reqs: &mut Vec<u8>, lits: &mut Vec<String>) -> bool {
    match t {
        Ast::Bin(Op::Or, x, y) => eq_terms(x, col, reqs, lits) && eq_terms(y, col, reqs, lits),
        Ast::Bin(Op::Eq, x, y) => {
            let (c, other) = match (&**x, &**y) {
                (Ast::P(c), o) | (o, Ast::P(c)) => (*c, o),
                _ => return false,
            };
            if col.is_some_and(|k| k != c) {
                return false;
            }
            *col = Some(c);
            match other {
                Ast::R(r) => reqs.push(*r as u8),
                Ast::Str(s) => lits.push(s.clone()),
                _ => return false,
            }
            true
        }
        _ => false,
    }
}

//! Building the evaluator from a loaded model: the expressions per policy line with its
//! values put in and folded, the role graph's closures, and the index buckets.

use super::*;

struct Builder {
    ids: FxMap<Box<str>, u32>,
    patterns: Vec<Pattern>,
    pattern_ids: HashMap<(Func, String), u32>,
    /// The `g(r.a, …, r.dom)` argument pairs given a memo slot, by slot.
    g_slots: Vec<(u8, Option<u8>)>,
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

    /// The memo slot of `g(r.a, …, r.dom)` (`None`: the slots are taken).
    fn g_slot(&mut self, a: u8, dom: Option<u8>) -> Option<u8> {
        if let Some(i) = self.g_slots.iter().position(|&s| s == (a, dom)) {
            return Some(i as u8);
        }
        if self.g_slots.len() == MAX_G_SLOTS {
            return None;
        }
        self.g_slots.push((a, dom));
        Some((self.g_slots.len() - 1) as u8)
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
                    // A left side that cannot fail does not need evaluating
                    // (`r.breakglass && p.sub == "breakglass"` on other subjects' lines).
                    (Op::And, x, Expr::B(false)) if infallible(&x) => Expr::B(false),
                    (Op::Or, x, Expr::B(true)) if infallible(&x) => Expr::B(true),
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
                    (&Expr::R(ra), Expr::S(y), None | Some(Expr::R(_))) => {
                        let dom = match d {
                            Some(Expr::R(j)) => Some(j),
                            _ => None,
                        };
                        match self.g_slot(ra, dom) {
                            Some(slot) => {
                                let id = self.intern(y);
                                Expr::GReq { slot, a: ra, dom, b: y.clone(), id }
                            }
                            None => Expr::G(Box::new(a), Box::new(b), d.map(Box::new)),
                        }
                    }
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

/// Whether evaluating `e` can never fail (no pattern or role function, whose arguments
/// must be strings).
fn infallible(e: &Expr) -> bool {
    match e {
        Expr::B(_) | Expr::I(_) | Expr::S(_) | Expr::R(_) => true,
        Expr::Not(x) => infallible(x),
        Expr::And(x, y) | Expr::Or(x, y) | Expr::Cmp(_, x, y) => infallible(x) && infallible(y),
        Expr::Match(..) | Expr::G(..) | Expr::GReq { .. } => false,
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
        let mut b =
            Builder { ids: FxMap::default(), patterns: Vec::new(), pattern_ids: HashMap::new(), g_slots: Vec::new() };

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

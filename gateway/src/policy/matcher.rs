//! The casbin matcher language, the part Custos's fast evaluator covers: parsed from the
//! model casbin itself loaded (`r.sub` already escaped to `r_sub`, comments removed), so
//! both engines read the same text. Anything outside this part is reported by name
//! (`the function keyMatch4`, `the in operator`, …) and the `casbin` crate decides.
//!
//! Operator precedence is the script engine's (rhai): `||` < `&&` < `==`/`!=` <
//! `<`/`<=`/`>`/`>=` < `+` < unary `!`; all binary operators are left-associative.

/// A function the matcher may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// `g`, `g2`, …: all share one role graph, as in casbin-rs. The arity (2 or 3) is the
    /// role definition's.
    G(u8),
    KeyMatch,
    KeyMatch2,
    KeyMatch3,
    RegexMatch,
    IpMatch,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::G(_) => "g",
            Func::KeyMatch => "keyMatch",
            Func::KeyMatch2 => "keyMatch2",
            Func::KeyMatch3 => "keyMatch3",
            Func::RegexMatch => "regexMatch",
            Func::IpMatch => "ipMatch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
}

impl Op {
    fn prec(self) -> u8 {
        match self {
            Op::Or => 30,
            Op::And => 60,
            Op::Eq | Op::Ne => 90,
            Op::Lt | Op::Le | Op::Gt | Op::Ge => 110,
            Op::Add => 150,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    Bool(bool),
    Int(i64),
    Str(String),
    /// A request token, by position in `r = …`.
    R(usize),
    /// A policy column, by position in `p = …`.
    P(usize),
    Not(Box<Ast>),
    Bin(Op, Box<Ast>, Box<Ast>),
    Call(Func, Vec<Ast>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Int,
    Str,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "boolean",
            Ty::Int => "integer",
            Ty::Str => "string",
        }
    }
}

/// What the matcher may name: request tokens with their types, policy columns, and the
/// role functions with their arity.
pub struct Names<'a> {
    pub r: &'a [(String, Ty)],
    pub p: &'a [String],
    pub g: &'a [(String, u8)],
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Int(i64),
    Ident(String),
    LParen,
    RParen,
    Comma,
    Bang,
    Op(Op),
    Dot,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' | b')' | b',' | b'.' | b'+' => {
                out.push(match c {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b',' => Tok::Comma,
                    b'.' => Tok::Dot,
                    _ => Tok::Op(Op::Add),
                });
                i += 1
            }
            b'"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    let Some(&c) = b.get(i) else { return Err("an unterminated string".into()) };
                    match c {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            let e = b.get(i + 1).copied().unwrap_or(b' ');
                            v.push(match e {
                                b'"' => '"',
                                b'\\' => '\\',
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                _ => return Err(format!("the string escape `\\{}`", e as char)),
                            });
                            i += 2;
                        }
                        _ => {
                            // Whole UTF-8 characters.
                            let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                            v.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                    return Err(format!("the number `{}…`", &s[start..=i]));
                }
                // The script engine's integers are 32-bit.
                let n: i32 = s[start..i].parse().map_err(|_| format!("the number `{}`", &s[start..i]))?;
                out.push(Tok::Int(n.into()));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_string()));
            }
            _ => {
                let two = s.get(i..i + 2).unwrap_or("");
                let (tok, n) = match two {
                    "&&" => (Tok::Op(Op::And), 2),
                    "||" => (Tok::Op(Op::Or), 2),
                    "==" => (Tok::Op(Op::Eq), 2),
                    "!=" => (Tok::Op(Op::Ne), 2),
                    "<=" => (Tok::Op(Op::Le), 2),
                    ">=" => (Tok::Op(Op::Ge), 2),
                    _ => match c {
                        b'<' => (Tok::Op(Op::Lt), 1),
                        b'>' => (Tok::Op(Op::Gt), 1),
                        b'!' => (Tok::Bang, 1),
                        _ => {
                            let ch = s[i..].chars().next().unwrap_or('?');
                            return Err(match ch {
                                '[' | ']' => "arrays (`[…]`, as with the `in` operator)".to_string(),
                                _ => format!("the operator `{ch}`"),
                            });
                        }
                    },
                };
                out.push(tok);
                i += n;
            }
        }
    }
    Ok(out)
}

struct Parser<'a, 'n> {
    toks: Vec<Tok>,
    at: usize,
    names: &'a Names<'n>,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        if self.next() == Some(t) {
            Ok(())
        } else {
            Err(format!("a matcher that does not parse here (expected {what})"))
        }
    }

    fn expr(&mut self, min: u8) -> Result<Ast, String> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Op(op)) = self.peek() {
            let op = *op;
            if op.prec() < min {
                break;
            }
            self.at += 1;
            let rhs = self.expr(op.prec() + 1)?;
            lhs = Ast::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Ast, String> {
        if self.peek() == Some(&Tok::Bang) {
            self.at += 1;
            return Ok(Ast::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Ast, String> {
        let ast = match self.next() {
            Some(Tok::LParen) => {
                let e = self.expr(0)?;
                self.expect(Tok::RParen, "`)`")?;
                e
            }
            Some(Tok::Str(s)) => Ast::Str(s),
            Some(Tok::Int(n)) => Ast::Int(n),
            Some(Tok::Ident(id)) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.at += 1;
                    let mut args = Vec::new();
                    if self.peek() != Some(&Tok::RParen) {
                        loop {
                            args.push(self.expr(0)?);
                            match self.next() {
                                Some(Tok::Comma) => continue,
                                Some(Tok::RParen) => break,
                                _ => return Err("a matcher that does not parse here (expected `,` or `)`)".into()),
                            }
                        }
                    } else {
                        self.at += 1;
                    }
                    self.call(&id, args)?
                } else {
                    self.name(&id)?
                }
            }
            Some(Tok::Op(op)) => {
                return Err(format!("a matcher that does not parse here (`{op:?}` with no left side)"))
            }
            _ => return Err("a matcher that does not parse here".into()),
        };
        if self.peek() == Some(&Tok::Dot) {
            return Err("attribute access (`r.obj.Owner`-style ABAC)".into());
        }
        Ok(ast)
    }

    fn name(&self, id: &str) -> Result<Ast, String> {
        match id {
            "true" => return Ok(Ast::Bool(true)),
            "false" => return Ok(Ast::Bool(false)),
            "in" => return Err("the `in` operator".into()),
            _ => {}
        }
        if let Some(i) = self.names.r.iter().position(|(n, _)| n == id) {
            return Ok(Ast::R(i));
        }
        if let Some(i) = self.names.p.iter().position(|n| n == id) {
            return Ok(Ast::P(i));
        }
        Err(format!("the name `{}`", id.replacen('_', ".", 1)))
    }

    fn call(&self, id: &str, args: Vec<Ast>) -> Result<Ast, String> {
        let f = match id {
            "keyMatch" => Func::KeyMatch,
            "keyMatch2" => Func::KeyMatch2,
            "keyMatch3" => Func::KeyMatch3,
            "regexMatch" => Func::RegexMatch,
            "ipMatch" => Func::IpMatch,
            _ => match self.names.g.iter().find(|(n, _)| n == id) {
                Some((_, arity)) => Func::G(*arity),
                None => return Err(format!("the function `{id}`")),
            },
        };
        let want = match f {
            Func::G(n) => n as usize,
            _ => 2,
        };
        if args.len() != want {
            return Err(format!("`{id}` called with {} arguments (it takes {want})", args.len()));
        }
        Ok(Ast::Call(f, args))
    }
}

/// Parses a matcher (casbin's escaped text) and checks its types: the whole must be a
/// boolean, comparisons between values of one type, function arguments strings, and a
/// pattern (the second argument of keyMatch*/regexMatch/ipMatch) may not depend on the
/// request.
pub fn parse(text: &str, names: &Names<'_>) -> Result<Ast, String> {
    let toks = tokenize(text)?;
    let mut p = Parser { toks, at: 0, names };
    let ast = p.expr(0)?;
    match p.peek() {
        None => {}
        Some(Tok::Ident(id)) if id == "in" => return Err("the `in` operator".into()),
        Some(t) => return Err(format!("a matcher that does not parse here (`{t:?}` after a complete expression)")),
    }
    match type_of(&ast, names)? {
        Ty::Bool => Ok(ast),
        t => Err(format!("a matcher whose value is a {}, not a boolean", t.name())),
    }
}

fn uses_request(a: &Ast) -> bool {
    match a {
        Ast::R(_) => true,
        Ast::Bool(_) | Ast::Int(_) | Ast::Str(_) | Ast::P(_) => false,
        Ast::Not(x) => uses_request(x),
        Ast::Bin(_, x, y) => uses_request(x) || uses_request(y),
        Ast::Call(_, args) => args.iter().any(uses_request),
    }
}

fn type_of(a: &Ast, names: &Names<'_>) -> Result<Ty, String> {
    Ok(match a {
        Ast::Bool(_) => Ty::Bool,
        Ast::Int(_) => Ty::Int,
        Ast::Str(_) | Ast::P(_) => Ty::Str,
        Ast::R(i) => names.r[*i].1,
        Ast::Not(x) => match type_of(x, names)? {
            Ty::Bool => Ty::Bool,
            t => return Err(format!("`!` on a {}", t.name())),
        },
        Ast::Bin(op, x, y) => {
            let (tx, ty) = (type_of(x, names)?, type_of(y, names)?);
            match op {
                Op::And | Op::Or if tx == Ty::Bool && ty == Ty::Bool => Ty::Bool,
                Op::Eq | Op::Ne if tx == ty => Ty::Bool,
                Op::Lt | Op::Le | Op::Gt | Op::Ge if tx == Ty::Int && ty == Ty::Int => Ty::Bool,
                Op::Add if tx == Ty::Str && ty == Ty::Str => {
                    if uses_request(a) {
                        return Err("joining strings built from the request".into());
                    }
                    Ty::Str
                }
                _ => return Err(format!("`{op:?}` between a {} and a {}", tx.name(), ty.name())),
            }
        }
        Ast::Call(f, args) => {
            for x in args {
                let t = type_of(x, names)?;
                if t != Ty::Str {
                    return Err(format!("`{}` given a {}", f.name(), t.name()));
                }
            }
            if !matches!(f, Func::G(_)) && uses_request(&args[1]) {
                return Err(format!("a `{}` pattern built from the request", f.name()));
            }
            Ty::Bool
        }
    })
}

/// A name in a matcher that nothing defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// A variable (`r_foo`, as casbin escapes `r.foo`).
    Var(String),
    /// A function called by this name.
    Func(String),
}

/// The first name in a matcher (any matcher, also one the fast evaluator does not
/// cover; casbin's escaped text) that is neither one of `vars` nor, when called, a
/// function `known_fn` accepts. String literals are skipped, and so is whatever follows
/// a `.` (an attribute or method of a value).
pub fn unknown_name(text: &str, vars: &[&str], known_fn: impl Fn(&str) -> bool) -> Option<Unknown> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut after_dot = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                after_dot = false;
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                after_dot = false;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let name = &text[start..i];
                let called = text[i..].trim_start().starts_with('(');
                if !after_dot {
                    if called && name != "in" && !known_fn(name) {
                        return Some(Unknown::Func(name.to_string()));
                    }
                    if !called && !matches!(name, "true" | "false" | "in" | "if" | "else") && !vars.contains(&name) {
                        return Some(Unknown::Var(name.to_string()));
                    }
                }
                after_dot = false;
            }
            b'.' => {
                after_dot = true;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                after_dot = false;
                i += 1;
            }
        }
    }
    None
}

/// The top-level `&&` terms of a matcher.
pub fn conjuncts(a: &Ast) -> Vec<&Ast> {
    match a {
        Ast::Bin(Op::And, x, y) => {
            let mut v = conjuncts(x);
            v.extend(conjuncts(y));
            v
        }
        _ => vec![a],
    }
}

#[cfg(test)]
mod tests;

//! Deciding with the evaluator: the lines of the request's buckets in policy order,
//! each line's expression, casbin's effect.

use super::*;

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

impl Fast {
    /// How many index dimensions and buckets the policy has (for the load log).
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.exprs.len(), self.dims.len(), self.buckets.len())
    }

    /// Decides for one identity; `req` holds the request tokens in model order.
    pub fn enforce(&self, req: &[Val<'_>]) -> Result<Outcome, Unmatchable> {
        if let Some(e) = &self.empty {
            let allow = self.eval(e, req, &mut [None; MAX_G_SLOTS])? == Val::B(true);
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
        let mut memo: Memo<'_> = [None; MAX_G_SLOTS];
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
                        if !relevant || self.eval(&self.exprs[li as usize], req, &mut memo)? != Val::B(true) {
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

    fn eval<'a>(&'a self, e: &'a Expr, req: &[Val<'a>], memo: &mut Memo<'a>) -> Result<Val<'a>, Unmatchable> {
        let mut eval = |e| self.eval(e, req, memo);
        Ok(match e {
            Expr::B(b) => Val::B(*b),
            Expr::I(i) => Val::I(*i),
            Expr::S(s) => Val::S(s),
            Expr::R(i) => req[*i as usize],
            Expr::Not(x) => Val::B(eval(x)? != Val::B(true)),
            Expr::And(x, y) => Val::B(eval(x)? == Val::B(true) && eval(y)? == Val::B(true)),
            Expr::Or(x, y) => Val::B(eval(x)? == Val::B(true) || eval(y)? == Val::B(true)),
            Expr::Cmp(op, x, y) => Val::B(compare(*op, eval(x)?, eval(y)?)),
            Expr::Match(p, x) => {
                let Val::S(s) = eval(x)? else { return Err(Unmatchable) };
                Val::B(self.patterns[*p as usize].matches(s))
            }
            Expr::G(a, b, d) => {
                let (Val::S(a), Val::S(b)) = (eval(a)?, eval(b)?) else { return Err(Unmatchable) };
                let dom = match d {
                    Some(d) => match eval(d)? {
                        Val::S(d) => d,
                        _ => return Err(Unmatchable),
                    },
                    None => DEFAULT_DOMAIN,
                };
                Val::B(self.has_link(a, b, dom))
            }
            Expr::GReq { slot, a, dom, b, id } => {
                let Val::S(a) = req[*a as usize] else { return Err(Unmatchable) };
                let dom = match dom {
                    Some(j) => match req[*j as usize] {
                        Val::S(d) => d,
                        _ => return Err(Unmatchable),
                    },
                    None => DEFAULT_DOMAIN,
                };
                if a == &**b {
                    return Ok(Val::B(true));
                }
                let closure = *memo[*slot as usize]
                    .get_or_insert_with(|| self.domains.get(dom).and_then(|d| d.closure.get(a)).map(|c| &**c));
                Val::B(closure.is_some_and(|c| c.binary_search(id).is_ok()))
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

//! The evaluator's own paths case by case: role lookups resolved at build and memoized
//! per decision, and the folds that skip a term no line needs (the casbin comparison on
//! whole policies is in tests/e2e/casbin_fidelity.rs).

use super::*;

fn fast(r: &[(&str, Ty)], p: &[&str], matcher: &str, g: &[&[&str]], policy: &[&[&str]]) -> Fast {
    let strings = |rows: &[&[&str]]| rows.iter().map(|l| l.iter().map(|s| s.to_string()).collect()).collect();
    let p_tokens: Vec<String> = p.iter().map(|s| s.to_string()).collect();
    let arity = g.first().map_or(2, |l| l.len() as u8);
    let src = Source {
        r: r.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        p_tokens: &p_tokens,
        matcher,
        effect: "some(where (p_eft == allow))",
        g: vec![("g".into(), arity, strings(g))],
        policy: strings(policy),
    };
    Fast::build(&src).unwrap_or_else(|_| panic!("builds"))
}

fn allow(f: &Fast, req: &[Val<'_>]) -> bool {
    f.enforce(req).map(|o| o.allow).unwrap_or_else(|_| panic!("decides"))
}

#[test]
fn two_memoized_role_lookups_stay_apart() {
    let r = [("r_sub", Ty::Str), ("r_dom", Ty::Str), ("r_obj", Ty::Str)];
    let f = fast(
        &r,
        &["p_sub", "p_obj"],
        "g(r_sub, p_sub, r_dom) && g(r_obj, p_obj, r_dom)",
        &[&["alice", "reader", "d1"], &["doc1", "docs", "d1"], &["bob", "writer", "d2"]],
        &[&["writer", "docs"], &["reader", "docs"]],
    );
    let s = Val::S;
    assert!(allow(&f, &[s("alice"), s("d1"), s("doc1")]));
    assert!(!allow(&f, &[s("alice"), s("d1"), s("doc2")]), "the object's closure is its own");
    assert!(!allow(&f, &[s("alice"), s("d2"), s("doc1")]), "the closure is the domain's");
    assert!(!allow(&f, &[s("bob"), s("d1"), s("doc1")]));
    assert!(!allow(&f, &[s("bob"), s("d2"), s("doc1")]), "doc1 is in docs in d1 only");
    // A name is its own role, in the graph or not.
    assert!(allow(&f, &[s("reader"), s("d9"), s("docs")]));
    assert!(allow(&f, &[s("writer"), s("d1"), s("doc1")]));
}

#[test]
fn a_role_lookup_on_a_non_string_fails_as_before() {
    let r = [("r_sub", Ty::Str), ("r_dom", Ty::Str)];
    // Not a top-level term, so no index dimension reads the subject first.
    let f = fast(&r, &["p_sub"], "!!g(r_sub, p_sub, r_dom)", &[&["alice", "reader", "d1"]], &[&["reader"]]);
    assert!(allow(&f, &[Val::S("alice"), Val::S("d1")]));
    assert!(f.enforce(&[Val::I(1), Val::S("d1")]).is_err());
    assert!(f.enforce(&[Val::S("alice"), Val::B(true)]).is_err());
}

#[test]
fn a_term_no_line_needs_is_folded_away_and_the_rest_still_decides() {
    let r = [("r_sub", Ty::Str), ("r_flag", Ty::Bool)];
    let f = fast(
        &r,
        &["p_sub"],
        r#"g(r_sub, p_sub) || r_flag && p_sub == "anyone""#,
        &[&["alice", "reader"]],
        &[&["reader"], &["anyone"]],
    );
    let folded = f.exprs.iter().filter(|e| matches!(e, Expr::GReq { .. })).count();
    assert_eq!(folded, 1, "`r_flag && false` is gone from the reader line: {:?}", f.exprs);
    assert!(allow(&f, &[Val::S("alice"), Val::B(false)]));
    assert!(!allow(&f, &[Val::S("bob"), Val::B(false)]));
    assert!(allow(&f, &[Val::S("bob"), Val::B(true)]));
}

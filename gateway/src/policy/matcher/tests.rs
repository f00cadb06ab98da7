//! The matcher's parser and evaluator, case by case.

use super::*;

fn names() -> (Vec<(String, Ty)>, Vec<String>, Vec<(String, u8)>) {
    (
        vec![
            ("r_sub".into(), Ty::Str),
            ("r_obj".into(), Ty::Str),
            ("r_mfa".into(), Ty::Bool),
            ("r_hour".into(), Ty::Int),
        ],
        vec!["p_sub".into(), "p_obj".into(), "p_eft".into()],
        vec![("g".into(), 2)],
    )
}

fn parse_str(s: &str) -> Result<Ast, String> {
    let (r, p, g) = names();
    parse(s, &Names { r: &r, p: &p, g: &g })
}

#[test]
fn precedence_follows_the_script_engine() {
    let a = parse_str("r_sub == p_sub || r_mfa && !r_mfa").unwrap();
    let Ast::Bin(Op::Or, _, rhs) = a else { panic!("|| is the loosest: {a:?}") };
    assert!(matches!(*rhs, Ast::Bin(Op::And, _, _)));
    let a = parse_str(r#"keyMatch(r_obj, "/a" + p_obj) && r_hour >= 8"#).unwrap();
    assert_eq!(conjuncts(&a).len(), 2);
}

#[test]
fn undefined_names_are_found() {
    let vars = ["r_sub", "r_obj", "p_sub", "p_obj"];
    let known = |f: &str| matches!(f, "g" | "keyMatch" | "regexMatch");
    let ok = [
        r#"g(r_sub, p_sub) && keyMatch(r_obj, p_obj)"#,
        r#"r_sub == "keyMatch9(x) r_foo" || r_sub in ("a", "b")"#,
        r#"r_obj.Owner == r_sub && r_sub.len() > 2 && !false"#,
    ];
    for m in ok {
        assert_eq!(unknown_name(m, &vars, known), None, "{m}");
    }
    assert_eq!(unknown_name("g(r_sub, p_sub) && r_foo", &vars, known), Some(Unknown::Var("r_foo".into())));
    assert_eq!(unknown_name("keyMatch9 (r_obj, p_obj) || true", &vars, known), Some(Unknown::Func("keyMatch9".into())));
    assert_eq!(unknown_name("r_sub == p_act", &vars, known), Some(Unknown::Var("p_act".into())));
}

#[test]
fn what_is_not_covered_is_named() {
    let cases = [
        ("keyMatch4(r_obj, p_obj)", "keyMatch4"),
        ("r_sub in (\"a\", \"b\")", "`in`"),
        ("r_obj.Owner == r_sub", "attribute"),
        ("r_sub == 1", "between a string and a integer"),
        ("regexMatch(p_obj, r_obj)", "pattern built from the request"),
        ("r_sub == p_sub | true", "operator `|`"),
        ("g(r_sub, p_sub, r_obj)", "3 arguments"),
        ("r_sub", "not a boolean"),
        ("r2_sub == p_sub", "r2.sub"),
    ];
    for (m, want) in cases {
        let e = parse_str(m).expect_err(m);
        assert!(e.contains(want), "{m}: {e}");
    }
}

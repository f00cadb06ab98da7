//! The gateway's own actions, in a namespace no request can name. A request's action is
//! its HTTP method; the gateway asks the policy about actions of its own (declaring an
//! emergency, reviewing one, and later requesting, approving, unmasking, connecting,
//! SQL verbs). Those are written `custos:<name>` (`custos:breakglass`): `:` is not an
//! HTTP token character (RFC 9110 §5.6.2), so no method is ever one of them.
//!
//! A name is not enough when a rule's action is a pattern: `.*`, `*` or `(GET)|(.*)`
//! would match `custos:breakglass` too. So a gateway action is granted only by a rule
//! whose action names it literally. At load the policy is partitioned: the rules that
//! grant a gateway action by name go to a policy of their own for that action (with the
//! role lines and every deny rule, so a deny still stands), and every other rule decides
//! requests only. Both engines then decide each part as they decide any policy, so they
//! agree by construction.

/// Every gateway action starts with this.
pub const PREFIX: &str = "custos:";
/// Declaring an emergency on a route's object (`/.custos/breakglass`, sealed links).
pub const BREAKGLASS: &str = "custos:breakglass";
/// Reviewing emergency access (`/.custos/breakglass/reviews`).
pub const REVIEW: &str = "custos:review";

/// The names these actions had before they had a namespace: a policy that still grants
/// them is refused at load with the new name, rather than silently granting nothing.
const OLD_NAMES: [&str; 2] = ["breakglass", "review"];

/// Whether `act` is in the gateway's namespace.
pub fn is_gateway_action(act: &str) -> bool {
    act.starts_with(PREFIX)
}

/// A well-formed gateway action: `custos:` then `:`-separated words of lower-case
/// letters, digits, `_` and `-` (`custos:unmask:ssn`), nothing a pattern could read as
/// more than itself.
pub fn valid_name(act: &str) -> bool {
    act.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.split(':').all(|w| {
            !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
    })
}

/// A policy file split by who its rules may grant.
#[derive(Debug)]
pub struct Partition {
    /// What decides requests: every line except the gateway-action grants (those lines
    /// left blank, so line numbers stay the file's).
    pub requests: String,
    /// Per gateway action granted by name: the role lines, the deny rules and that
    /// action's grants (other lines blank).
    pub actions: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Role lines, comments, other policy types, deny rules: in every part.
    Shared,
    /// An allow rule for requests.
    Request,
    /// An allow rule that names a gateway action (its index in the names found).
    Grant(usize),
}

/// Splits `text` (a casbin policy CSV) given the model's `p` columns. Errors name the
/// line (1-based): a gateway action granted by a pattern, or by its old bare name.
pub fn partition(text: &str, columns: &[String]) -> Result<Partition, (usize, String)> {
    let act = columns.iter().position(|c| c == "act");
    let eft = columns.iter().position(|c| c == "eft");
    let lines: Vec<&str> = text.lines().collect();
    let mut classes = Vec::with_capacity(lines.len());
    let mut names: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // Fields as casbin reads them: a quoted field may hold a comma (an LDAP group
        // name), and a plain split would read the action and effect from the wrong columns.
        let f = super::csv_fields(line);
        let (Some("p"), Some(a)) = (f.first().map(String::as_str), act.and_then(|c| f.get(c + 1)).map(String::as_str))
        else {
            classes.push(Class::Shared);
            continue;
        };
        if OLD_NAMES.contains(&a) {
            return Err((
                i + 1,
                format!("`{a}` is the gateway's action `{PREFIX}{a}` now (gateway actions are named so that no HTTP method can be one); write `{PREFIX}{a}`"),
            ));
        }
        let deny = eft.and_then(|e| f.get(e + 1)).map(String::as_str) == Some("deny");
        if a.contains(PREFIX) {
            if !valid_name(a) {
                return Err((
                    i + 1,
                    format!("`{a}`: a gateway action is granted by its name alone (e.g. `{BREAKGLASS}`), never by a pattern"),
                ));
            }
            if !deny {
                let n = match names.iter().position(|n| n == a) {
                    Some(n) => n,
                    None => {
                        names.push(a.to_string());
                        names.len() - 1
                    }
                };
                classes.push(Class::Grant(n));
                continue;
            }
        }
        classes.push(if deny { Class::Shared } else { Class::Request });
    }
    let keep = |want: &dyn Fn(Class) -> bool| -> String {
        let mut out = String::with_capacity(text.len());
        for (line, class) in lines.iter().zip(&classes) {
            if want(*class) {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    };
    let requests = keep(&|c| matches!(c, Class::Shared | Class::Request));
    let actions = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), keep(&|c| c == Class::Shared || c == Class::Grant(i))))
        .collect();
    Ok(Partition { requests, actions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Engine, PolicySet, Request};

    #[test]
    fn names() {
        assert!(valid_name("custos:breakglass"));
        assert!(valid_name("custos:unmask:ssn"));
        for bad in ["custos:", "custos:.*", "custos:Breakglass", "custos:a|b", "custos::x", "breakglass", "custos:a*"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    fn cols() -> Vec<String> {
        ["sub", "obj", "act", "eft"].map(String::from).to_vec()
    }

    #[test]
    fn partitions_keep_line_numbers_and_denies() {
        let text =
            "g, bob, nurse\np, nurse, /a, GET, allow\np, nurse, /a, custos:breakglass, allow\np, x, /a, .*, deny\n";
        let p = partition(text, &cols()).unwrap();
        assert_eq!(p.requests, "g, bob, nurse\np, nurse, /a, GET, allow\n\np, x, /a, .*, deny\n");
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].0, "custos:breakglass");
        assert_eq!(p.actions[0].1, "g, bob, nurse\n\np, nurse, /a, custos:breakglass, allow\np, x, /a, .*, deny\n");
        // A quoted subject with commas (an LDAP group) is one field: its deny stays a
        // deny in the gateway action's part.
        let text = "p, nurse, /a, custos:breakglass, allow\np, \"group:CN=A,OU=S,DC=h\", /a, .*, deny\n";
        let p = partition(text, &cols()).unwrap();
        assert_eq!(p.actions[0].1, text);
    }

    #[test]
    fn refuses_patterns_and_old_names() {
        for (line, want) in [
            ("p, a, /x, custos:.*, allow", "never by a pattern"),
            ("p, a, /x, (GET)|(custos:breakglass), allow", "never by a pattern"),
            ("p, a, /x, breakglass, allow", "`custos:breakglass` now"),
            ("p, a, /x, review, deny", "`custos:review` now"),
        ] {
            let (n, m) = partition(&format!("# c\n{line}\n"), &cols()).unwrap_err();
            assert_eq!(n, 2, "{line}");
            assert!(m.contains(want), "{line}: {m}");
        }
    }

    /// No wildcard, in any of the spellings casbin's matchers know, reaches a gateway
    /// action; a rule naming it does; a deny still stands; both engines agree.
    #[tokio::test]
    async fn only_a_literal_rule_grants_a_gateway_action() {
        let dir = tempfile::tempdir().unwrap();
        let (m, p) = (dir.path().join("m.conf"), dir.path().join("p.csv"));
        // Each matcher with the wildcards it reads.
        let regex = "p, admin, *, .*, allow\np, admin, *, (GET)|(.*), allow\np, admin, *, custos.*, allow\n";
        let star = "p, admin, *, *, allow\np, admin, *, custos*, allow\n";
        let matchers = [
            ("regexMatch(r.act, \"^(?:\" + p.act + \")$\")", regex),
            ("regexMatch(r.act, p.act)", regex),
            ("keyMatch(r.act, p.act)", star),
            ("(p.act == \"*\" || r.act == p.act)", star),
            ("true", star),
        ];
        for (act_match, wildcards) in matchers {
            let model = format!(
                "[request_definition]\nr = sub, obj, act\n\n[policy_definition]\np = sub, obj, act, eft\n\n[role_definition]\ng = _, _\n\n[policy_effect]\ne = some(where (p.eft == allow)) && !some(where (p.eft == deny))\n\n[matchers]\nm = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && {act_match}\n"
            );
            std::fs::write(&m, model).unwrap();
            std::fs::write(
                &p,
                format!(
                    "{wildcards}p, nurse, /rec/*, custos:breakglass, allow\np, nurse, /rec/3, {}, deny\n\
                     g, alice, admin\ng, bob, nurse\n",
                    if wildcards == regex { ".*" } else { "*" }
                ),
            )
            .unwrap();
            let set = PolicySet::load(&m, &p).await.unwrap_or_else(|e| panic!("{act_match}: {e}"));
            let none = Default::default();
            for engine in [Engine::Fast, Engine::Casbin] {
                let ask = |sub: &str, obj: &str, act: &str| {
                    set.decide_with(
                        engine,
                        &Request {
                            sub,
                            groups: &[],
                            dom: "",
                            obj,
                            act,
                            mfa: true,
                            breakglass: false,
                            client: "",
                            hour: 0,
                            route: "",
                        },
                        &none,
                    )
                };
                let what = format!("{act_match} on {engine}");
                assert!(ask("alice", "/rec/1", "GET").allow, "{what}: the wildcards grant requests");
                for act in [BREAKGLASS, REVIEW, "custos:anything"] {
                    assert!(!ask("alice", "/rec/1", act).allow, "{what}: a wildcard reached {act}");
                }
                let d = ask("bob", "/rec/1", BREAKGLASS);
                assert!(d.allow, "{what}: the literal grant");
                assert_eq!(d.rule.as_deref(), Some("p, nurse, /rec/*, custos:breakglass, allow"), "{what}");
                assert!(!ask("bob", "/rec/3", BREAKGLASS).allow, "{what}: the deny stands");
                assert!(!ask("bob", "/rec/1", REVIEW).allow, "{what}: another action");
                assert!(!ask("bob", "/rec/1", "GET").allow, "{what}: the grant opens no request");
                assert!(!ask("bob", "/rec/1", "breakglass").allow, "{what}: a method named breakglass");
            }
        }
    }
}

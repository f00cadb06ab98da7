//! `custos policy lint`: what a security engineer wants to hear before a policy ships.
//! Errors (exit 1): the model or a policy line does not parse (with file:line), an action
//! pattern is not a valid regular expression. Warnings: a subject that has permissions
//! but that no `g` line grants (a role nobody holds, or a user's own name), a role granted
//! but with no permissions, a rule repeated, a rule whose domain no assignment uses, an
//! allow rule fully shadowed by a deny rule.
//!
//! Users and roles are told apart by the `g` lines: a role is a name in a `g` line's
//! second column; a user (or an IdP group, `group:<name>`) is a name in the first column
//! only. IdP groups and the emergency subject (`breakglass`) are held without any `g`
//! line, so their rules are never "granted to nobody".

use super::{check_csv, PolicySet};
use std::collections::{HashMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub line: Option<usize>,
    pub message: String,
}

/// The columns of `p = …` in the model (`sub`, `dom`, `obj`, `act`, `eft`, …).
pub(crate) fn p_columns(model: &str) -> Vec<String> {
    super::definition(model, "[policy_definition]", "p").unwrap_or_default()
}

struct Rule<'a> {
    line: usize,
    cols: HashMap<&'a str, &'a str>,
    raw: String,
}

fn covers_obj(deny: &str, allow: &str) -> bool {
    deny == allow
        || deny == "*"
        || deny == "/*"
        || deny.strip_suffix("/*").is_some_and(|p| allow.starts_with(&format!("{p}/")))
        || deny
            .strip_suffix('*')
            .is_some_and(|p| !p.contains(['*', ':', '(']) && allow.starts_with(p) && !allow[p.len()..].contains(':'))
}

fn covers_act(deny: &str, allow: &str) -> bool {
    if deny == allow || deny == ".*" || deny == "*" {
        return true;
    }
    // The deny pattern matches every alternative the allow pattern spells out.
    let Ok(re) = regex::Regex::new(&format!("^(?:{deny})$")) else { return false };
    allow
        .split('|')
        .map(|a| a.trim_matches(|c| c == '(' || c == ')'))
        .all(|a| !a.contains(['.', '*', '[']) && re.is_match(a))
}

/// Lints a model and policy; findings in file order (model errors first).
pub async fn lint(model: &Path, policy: &Path) -> Vec<(String, Finding)> {
    let mut out = Vec::new();
    let pfile = policy.display().to_string();
    let model_text = match std::fs::read_to_string(model) {
        Ok(t) => t,
        Err(e) => {
            return vec![(
                model.display().to_string(),
                Finding { severity: Severity::Error, line: None, message: format!("cannot read: {e}") },
            )]
        }
    };
    let text = match std::fs::read_to_string(policy) {
        Ok(t) => t,
        Err(e) => {
            return vec![(
                pfile,
                Finding { severity: Severity::Error, line: None, message: format!("cannot read: {e}") },
            )]
        }
    };
    if let Err(e) = check_csv(policy, &text) {
        out.push((pfile.clone(), Finding { severity: Severity::Error, line: e.line, message: e.message }));
        return out;
    }
    // Action patterns must compile (casbin's regexMatch panics on one that does not).
    let act_col = p_columns(&model_text).iter().position(|c| c == "act");
    let mut regex_errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.trim().split(',').map(str::trim).collect();
        if f.first() == Some(&"p") {
            if let Some(act) = act_col.and_then(|c| f.get(c + 1)) {
                if regex::Regex::new(act).is_err() {
                    regex_errors.push((i + 1, format!("action `{act}` is not a valid regular expression")));
                }
            }
        }
    }
    if !regex_errors.is_empty() {
        for (line, message) in regex_errors {
            out.push((pfile.clone(), Finding { severity: Severity::Error, line: Some(line), message }));
        }
        return out;
    }
    match PolicySet::load(model, policy).await {
        Err(e) => {
            out.push((
                e.file.display().to_string(),
                Finding { severity: Severity::Error, line: e.line, message: e.message },
            ));
            return out;
        }
        Ok(set) => {
            if let Some(why) = &set.fallback {
                out.push((
                    model.display().to_string(),
                    Finding {
                        severity: Severity::Warning,
                        line: None,
                        message: format!(
                            "the fast evaluator does not cover {why}: the casbin crate will decide every request (milliseconds per decision on large policies)"
                        ),
                    },
                ));
            }
        }
    }
    let cols = p_columns(&model_text);
    let mut rules = Vec::new();
    let mut grants: Vec<(usize, Vec<&str>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = t.split(',').map(str::trim).collect();
        if f[0] == "p" {
            let map: HashMap<&str, &str> = cols.iter().map(String::as_str).zip(f[1..].iter().copied()).collect();
            rules.push(Rule { line: i + 1, cols: map, raw: f.join(", ") });
        } else if f[0] == "g" {
            grants.push((i + 1, f[1..].to_vec()));
        }
    }
    let mut warn = |line: usize, message: String| {
        out.push((pfile.clone(), Finding { severity: Severity::Warning, line: Some(line), message }))
    };

    // Action patterns must compile (casbin's regexMatch would fail at request time).
    let mut errors = Vec::new();
    for r in &rules {
        if let Some(act) = r.cols.get("act") {
            if regex::Regex::new(act).is_err() {
                errors.push((r.line, format!("action `{act}` is not a valid regular expression")));
            }
        }
    }
    let granted: HashSet<&str> = grants.iter().filter_map(|(_, g)| g.get(1).copied()).collect();
    let members: HashSet<&str> = grants.iter().filter_map(|(_, g)| g.first().copied()).collect();
    let with_rules: HashSet<&str> = rules.iter().filter_map(|r| r.cols.get("sub").copied()).collect();
    let mut reported = HashSet::new();
    for r in &rules {
        let Some(sub) = r.cols.get("sub").copied() else { continue };
        // Held without a `g` line: an IdP group by its members, the emergency subject by
        // a grant.
        if sub.starts_with(super::GROUP_PREFIX) || sub == super::BREAKGLASS_SUBJECT {
            continue;
        }
        // A subject with rules that no `g` line names at all: a role no one holds, or a
        // user's own name (which the policy cannot tell; a user named in a `g` line is
        // known as one and not reported).
        if !granted.contains(sub) && !members.contains(sub) && !grants.is_empty() && reported.insert(sub) {
            warn(
                r.line,
                format!(
                    "`{sub}` has permissions but no `g` line grants it to anyone (a role nobody holds, unless `{sub}` is a user's own name)"
                ),
            );
        }
    }
    for (line, g) in &grants {
        if let Some(role) = g.get(1) {
            if !with_rules.contains(role) && !members.contains(role) && reported.insert(role) {
                warn(*line, format!("role `{role}` is granted but has no permissions"));
            }
        }
    }
    // Domains no assignment uses.
    if cols.iter().any(|c| c == "dom") {
        let doms: HashSet<&str> = grants.iter().filter_map(|(_, g)| g.get(2).copied()).collect();
        for r in &rules {
            if let Some(d) = r.cols.get("dom") {
                if *d != "*" && !doms.is_empty() && !doms.contains(d) {
                    warn(r.line, format!("no `g` line assigns anyone in domain `{d}`: this rule can never match"));
                }
            }
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &rules {
        if let Some(first) = seen.get(r.raw.as_str()) {
            warn(r.line, format!("the same rule as line {first}"));
        } else {
            seen.insert(&r.raw, r.line);
        }
    }
    // Allow rules a deny rule covers entirely.
    for a in rules.iter().filter(|r| r.cols.get("eft").is_none_or(|e| *e == "allow")) {
        for d in rules.iter().filter(|r| r.cols.get("eft") == Some(&"deny")) {
            let same = |k: &str| a.cols.get(k) == d.cols.get(k) || d.cols.get(k) == Some(&"*");
            let obj = match (d.cols.get("obj"), a.cols.get("obj")) {
                (Some(dobj), Some(aobj)) => covers_obj(dobj, aobj),
                _ => true,
            };
            let act = match (d.cols.get("act"), a.cols.get("act")) {
                (Some(dact), Some(aact)) => covers_act(dact, aact),
                _ => true,
            };
            if same("sub") && same("dom") && obj && act {
                warn(a.line, format!("this allow can never take effect: the deny on line {} covers it", d.line));
                break;
            }
        }
    }
    for (line, message) in errors {
        out.push((pfile.clone(), Finding { severity: Severity::Error, line: Some(line), message }));
    }
    out.sort_by_key(|(_, f)| (f.severity != Severity::Error, f.line));
    out
}

//! The checks a model and a policy pass at load, each naming the file and the line:
//! policy lines of the right arity and a known type, an effect casbin evaluates, a
//! matcher whose every name is defined.

use super::*;
use casbin::{CoreApi, Enforcer};

/// What casbin says, without its debug wrapping (`Casbin Model Error: M("…")`).
pub(super) fn casbin_message(e: &casbin::Error) -> String {
    use casbin::error::ModelError as M;
    match e {
        casbin::Error::ModelError(M::R(m) | M::P(m) | M::E(m) | M::M(m) | M::Other(m)) => m.clone(),
        casbin::Error::RhaiParseError(p) => p.to_string(),
        casbin::Error::PolicyError(p) => p.to_string(),
        other => other.to_string(),
    }
}

/// A matcher casbin cannot compile: the model's `m =` line, and the column the script
/// engine names when the matcher is on that one line.
pub(super) fn matcher_error(model: &Path, model_text: &str, msg: &str) -> PolicyError {
    let line = definition_line(model_text, "[matchers]", "m");
    let why = msg.split_once("': ").map_or(msg, |(_, w)| w);
    // "… (line 1, position 357)": the position in the matcher's text, which starts
    // after `m =` (casbin's escaping keeps lengths: `r.sub` is `r_sub`).
    let located = why.rsplit_once(" (line 1, position ").and_then(|(text, pos)| {
        let pos: usize = pos.strip_suffix(')')?.parse().ok()?;
        let src = model_text.lines().nth(line? - 1)?;
        let after_eq = src.find('=')? + 1;
        let start = after_eq + (src.len() - after_eq - src[after_eq..].trim_start().len());
        (!src.trim_end().ends_with('\\')).then(|| format!("{text}, at column {}", start + pos))
    });
    err(model, line, format!("the matcher does not compile: {}", located.as_deref().unwrap_or(why)))
}

/// Every policy line has as many fields as its type's definition in the model (`p = sub,
/// dom, obj, act, eft` has 5; `g = _, _, _` has 3), and a type the model defines: casbin
/// itself would keep a short rule, and silently drop a line of an unknown type.
pub(super) fn check_arity(m: &casbin::DefaultModel, policy: &Path, text: &str) -> Result<(), PolicyError> {
    use casbin::Model;
    let model = m.get_model();
    for (i, line) in text.lines().enumerate() {
        let fields = csv_fields(line);
        let Some(kind) = fields.first() else { continue };
        let sec = if kind.starts_with('p') { "p" } else { "g" };
        let Some(a) = model.get(sec).and_then(|s| s.get(kind.as_str())) else {
            let what = if sec == "p" { "[policy_definition]" } else { "[role_definition]" };
            return Err(err(policy, Some(i + 1), format!("`{kind}` rules need `{kind} = …` in the model's {what}")));
        };
        let (want, spelled) = if sec == "p" {
            let names = a.tokens.iter().map(|t| t.split_once('_').map_or(t.as_str(), |(_, n)| n));
            (a.tokens.len(), names.collect::<Vec<_>>().join(", "))
        } else {
            (a.value.matches('_').count(), a.value.clone())
        };
        if fields.len() - 1 != want {
            return Err(err(
                policy,
                Some(i + 1),
                format!(
                    "this `{kind}` line has {} fields; the model's `{kind} = {spelled}` has {want}",
                    fields.len() - 1
                ),
            ));
        }
    }
    Ok(())
}

/// The fields of a policy line as casbin reads them (a field in double quotes may hold a
/// comma); none for a blank line or a comment.
pub(crate) fn csv_fields(line: &str) -> Vec<String> {
    static FIELD: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Vec::new();
    }
    // casbin's own pattern (casbin::util::parse_csv_line).
    let re = FIELD.get_or_init(|| regex::Regex::new(r#"(\s*"[^"]*"?|\s*[^,]*)"#).expect("a valid pattern"));
    re.find_iter(line)
        .map(|m| {
            let c = m.as_str().trim();
            if c.len() >= 2 && c.starts_with('"') && c.ends_with('"') {
                c[1..c.len() - 1].to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The effects casbin's effector knows (any other spelling makes it panic on a request).
pub(super) const EFFECTS: &[&str] = &[
    "some(where (p_eft == allow))",
    "some(where (p_eft == allow)) && !some(where (p_eft == deny))",
    "priority(p_eft) || deny",
];

/// The effect, read as casbin parsed it: one casbin knows, and never allow-by-default.
pub(super) fn check_effect(enforcer: &Enforcer, model: &Path, model_text: &str) -> Result<(), PolicyError> {
    let line = definition_line(model_text, "[policy_effect]", "e");
    let Some(e) = enforcer.get_model().get_model().get("e").and_then(|e| e.get("e")) else {
        return Err(err(model, None, "no `e = …` in [policy_effect]"));
    };
    // Deny by default: an effect that allows what no rule denies is refused (no spacing
    // or line continuation gets one past).
    if e.value.replace(char::is_whitespace, "").starts_with("!some(") {
        return Err(err(
            model,
            line,
            "an allow-by-default effect (`!some(where (p.eft == deny))`): Custos denies by default; use `some(where (p.eft == allow)) && !some(where (p.eft == deny))`",
        ));
    }
    if !EFFECTS.contains(&e.value.as_str()) {
        let known = EFFECTS.iter().map(|x| format!("`{}`", x.replace("p_eft", "p.eft"))).collect::<Vec<_>>();
        return Err(err(
            model,
            line,
            format!(
                "the effect `{}` is not one casbin evaluates; write it exactly as one of {}",
                e.value.replace("p_eft", "p.eft"),
                known.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Every name in the matcher is defined: request tokens and policy columns of the model,
/// casbin's functions (and the role functions `g`, `g2`, …). The script engine would
/// compile an unknown one and fail on it at every request, denying everything.
pub(super) fn check_names(enforcer: &Enforcer, model: &Path, model_text: &str) -> Result<(), PolicyError> {
    let m = enforcer.get_model().get_model();
    let line = definition_line(model_text, "[matchers]", "m");
    let Some(matcher) = m.get("m").and_then(|s| s.get("m")) else {
        return Err(err(model, None, "no `m = …` in [matchers]"));
    };
    let vars: Vec<&str> = ["r", "p"]
        .iter()
        .filter_map(|sec| m.get(*sec))
        .flat_map(|s| s.values())
        .flat_map(|a| a.tokens.iter().map(String::as_str))
        .collect();
    let mut funcs: Vec<String> =
        casbin::function_map::FunctionMap::default().get_functions().map(|(name, _)| name.clone()).collect();
    funcs.sort();
    let roles: Vec<String> = m.get("g").map(|g| g.keys().cloned().collect()).unwrap_or_default();
    let known_fn = |f: &str| funcs.iter().chain(&roles).any(|x| x == f) || matches!(f, "eval" | "escape_assertion");
    match matcher::unknown_name(&matcher.value, &vars, known_fn) {
        None => Ok(()),
        Some(matcher::Unknown::Var(v)) => {
            let (sec, def) =
                if v.starts_with('p') { ("[policy_definition]", "p") } else { ("[request_definition]", "r") };
            let tokens: Vec<String> = m
                .get(def)
                .and_then(|s| s.get(def))
                .map(|a| a.tokens.iter().map(|t| t.replacen('_', ".", 1)).collect())
                .unwrap_or_default();
            Err(err(
                model,
                line,
                format!(
                    "the matcher names `{}`, which is not defined: {sec} has {}",
                    v.replacen('_', ".", 1),
                    tokens.join(", ")
                ),
            ))
        }
        Some(matcher::Unknown::Func(f)) => {
            let mut all: Vec<String> = funcs.clone();
            all.extend(roles.iter().cloned());
            Err(err(
                model,
                line,
                format!("the matcher calls `{f}`, which is not a function casbin has ({})", all.join(", ")),
            ))
        }
    }
}

/// The policy file line by line: each line `p, …` or `g, …` (or `g2`…, `p2`…), comments
/// and blank lines allowed. Errors name the line.
pub fn check_csv(file: &Path, text: &str) -> Result<(), PolicyError> {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let fields = csv_fields(t);
        let kind = fields.first().map_or("", String::as_str);
        let known = kind
            .strip_prefix('p')
            .or_else(|| kind.strip_prefix('g'))
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
        if !known {
            return Err(err(file, Some(i + 1), format!("a policy line starts with p or g (p2, g2, …), not `{kind}`")));
        }
        if fields.len() < 3 || fields.iter().any(|f| f.is_empty()) {
            return Err(err(file, Some(i + 1), "a rule needs at least two non-empty fields after its type"));
        }
    }
    Ok(())
}

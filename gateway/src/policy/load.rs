//! Loading a model and a policy into a `PolicySet`: casbin's enforcer, the fast
//! evaluator built from the same model, and what the model's text says (its tokens and
//! definitions). The checks that refuse at load what would fail on a request are in
//! `check`.

use super::check::*;
use super::*;
use casbin::{CoreApi, Enforcer};

impl PolicySet {
    pub async fn load(model: &Path, policy: &Path) -> Result<PolicySet, PolicyError> {
        let model_text = std::fs::read_to_string(model).map_err(|e| err(model, None, format!("cannot read: {e}")))?;
        let policy_text =
            std::fs::read_to_string(policy).map_err(|e| err(policy, None, format!("cannot read: {e}")))?;
        check_csv(policy, &policy_text)?;
        // Requests and the gateway's own actions are decided by separate parts of the
        // policy, so that no wildcard grants a gateway action (see [`actions`]).
        let parts = actions::partition(&policy_text, &lint::p_columns(&model_text))
            .map_err(|(line, m)| err(policy, Some(line), m))?;
        let mut set = PolicySet::build(model, policy, &model_text, &parts.requests, true).await?;
        for (name, text) in &parts.actions {
            let part = PolicySet::build(model, policy, &model_text, text, false).await?;
            set.actions.insert(name.as_str().into(), part);
        }
        set.hashes =
            (crate::session::sha256_hex(model_text.as_bytes()), crate::session::sha256_hex(policy_text.as_bytes()));
        Ok(set)
    }

    /// One part of a policy ([`actions::partition`]): `policy_text` has the file's lines,
    /// those of other parts blank. `main`: the part that decides requests (it warns).
    async fn build(
        model: &Path,
        policy: &Path,
        model_text: &str,
        policy_text: &str,
        main: bool,
    ) -> Result<PolicySet, PolicyError> {
        let (model_text, policy_text) = (model_text.to_string(), policy_text.to_string());
        let m = casbin::DefaultModel::from_str(&model_text).await.map_err(|e| err(model, None, casbin_message(&e)))?;
        check_arity(&m, policy, &policy_text)?;
        let adapter = casbin::StringAdapter::new(policy_text.clone());
        // The model's errors (a matcher that does not compile) are the model's, with the
        // line of its `m =` and the column casbin names.
        let mut enforcer = Enforcer::new(m, adapter).await.map_err(|e| match &e {
            casbin::Error::ModelError(casbin::error::ModelError::M(msg)) => matcher_error(model, &model_text, msg),
            casbin::Error::ModelError(_) | casbin::Error::RhaiParseError(_) => err(model, None, casbin_message(&e)),
            _ => err(policy, None, casbin_message(&e)),
        })?;
        check_effect(&enforcer, model, &model_text)?;
        check_names(&enforcer, model, &model_text)?;
        // casbin's keyMatch and ipMatch panic on some request values (a non-ASCII path, a
        // client that is not an address); these give the same answers elsewhere and no
        // match there, on both engines.
        use casbin::function_map::{dynamic_to_str, OperatorFunction};
        enforcer.add_function(
            "keyMatch",
            OperatorFunction::Arg2(|a, b| pattern::key_match(&dynamic_to_str(&a), &dynamic_to_str(&b)).into()),
        );
        enforcer.add_function(
            "ipMatch",
            OperatorFunction::Arg2(|a, b| pattern::ip_match(&dynamic_to_str(&a), &dynamic_to_str(&b)).into()),
        );
        let tokens =
            request_tokens(&model_text).ok_or_else(|| err(model, None, "no `r = …` in [request_definition]"))?;
        let mut fields = Vec::new();
        for t in tokens {
            fields.push(match t.as_str() {
                "sub" => Field::Sub,
                "dom" => Field::Dom,
                "obj" => Field::Obj,
                "act" => Field::Act,
                "mfa" => Field::Mfa,
                "breakglass" => Field::Breakglass,
                "client" => Field::Client,
                "hour" => Field::Hour,
                "route" => Field::Route,
                other => {
                    return Err(err(
                        model,
                        definition_line(&model_text, "[request_definition]", "r"),
                        format!("request token `{other}` is not one Custos fills (sub, dom, obj, act, mfa, breakglass, client, hour, route)"),
                    ))
                }
            });
        }
        let columns = lint::p_columns(&model_text);
        let eft = columns.iter().position(|c| c == "eft");
        let mut roles = rustc_hash::FxHashSet::default();
        for (i, line) in policy_text.lines().enumerate() {
            let f: Vec<&str> = line.trim().split(',').map(str::trim).collect();
            match f.first() {
                Some(&"p") => {
                    if let Some(v) = eft.and_then(|e| f.get(e + 1)) {
                        if *v != "allow" && *v != "deny" {
                            return Err(err(
                                policy,
                                Some(i + 1),
                                format!("the effect must be allow or deny, not `{v}`"),
                            ));
                        }
                    }
                }
                Some(&"g") => {
                    if let Some(r) = f.get(2) {
                        roles.insert(r.to_string());
                    }
                }
                _ => {}
            }
        }
        let src = source(&enforcer, &fields).map_err(|e| err(model, None, e))?;
        let started = std::time::Instant::now();
        let (fast, fallback) = match src.as_ref().map(fast::Fast::build) {
            Ok(Ok(f)) => (Some(f), None),
            Ok(Err(fast::BuildError::Rule { rule, message })) => {
                return Err(err(policy, line_of_rule(&policy_text, &rule), message))
            }
            Ok(Err(fast::BuildError::Unsupported(fast::Unsupported(why)))) => (None, Some(why)),
            Err(why) => (None, Some(why.clone())),
        };
        match (&fast, &fallback) {
            (Some(f), _) => {
                let (lines, dims, buckets) = f.shape();
                tracing::debug!(
                    lines,
                    dims,
                    buckets,
                    build_us = started.elapsed().as_micros() as u64,
                    "policy index built"
                );
            }
            (None, Some(why)) if main => tracing::warn!(
                model = %model.display(),
                unsupported = %why,
                "the fast policy evaluator does not cover this model; the casbin crate decides every request (milliseconds per decision on large policies)"
            ),
            _ => {}
        }
        let set = PolicySet {
            enforcer,
            fast,
            fallback,
            fields,
            model: model.to_path_buf(),
            policy: policy.to_path_buf(),
            hashes: (
                crate::session::sha256_hex(model_text.as_bytes()),
                crate::session::sha256_hex(policy_text.as_bytes()),
            ),
            roles,
            actions: Default::default(),
        };
        if set.fast.is_some() {
            // The fast build compiled every pattern and checked every type.
            return Ok(set);
        }
        // A pattern casbin cannot compile makes it panic on a request: every policy value
        // the matcher hands to regexMatch/keyMatch* is compiled here, once, the way that
        // function would, so a bad one is a load error with its line.
        let patterns = pattern_columns(&model_text, &columns);
        for (i, line) in policy_text.lines().enumerate() {
            let f: Vec<&str> = line.trim().split(',').map(str::trim).collect();
            if f.first() != Some(&"p") {
                continue;
            }
            for (col, func) in &patterns {
                let Some(v) = f.get(col + 1) else { continue };
                if let Err(e) = compile_like(func, v) {
                    return Err(err(policy, Some(i + 1), format!("`{v}` is not a valid pattern for {func}: {e}")));
                }
            }
        }
        // A matcher that cannot run (unknown function, type error) fails here, not on a
        // request.
        let probe = Request {
            sub: "custos-probe",
            groups: &[],
            dom: "",
            obj: "probe:/",
            act: "GET",
            mfa: false,
            breakglass: false,
            client: "127.0.0.1",
            hour: 0,
            route: "probe",
        };
        let m_line = definition_line(&model_text, "[matchers]", "m");
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set.enforce_one(&probe, "custos-probe"))) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(err(model, m_line, e.to_string())),
            Err(_) => return Err(err(model, m_line, "the matcher cannot be evaluated")),
        }
        Ok(set)
    }
}

/// What the fast evaluator reads, from the model casbin loaded (so both engines see the
/// same rules, deduplicated and ordered as casbin keeps them). `Err` names what is
/// missing or not covered.
pub(super) fn source<'a>(e: &'a Enforcer, fields: &[Field]) -> Result<Result<fast::Source<'a>, String>, String> {
    let m = e.get_model().get_model();
    let one = |sec: &str| m.get(sec).and_then(|s| s.get(sec));
    let (Some(r), Some(p), Some(mm), Some(ee)) = (one("r"), one("p"), one("m"), one("e")) else {
        return Err(
            "the model lacks one of [request_definition], [policy_definition], [matchers], [policy_effect]".into()
        );
    };
    if r.tokens.len() != fields.len() {
        return Err("the request definition could not be read".into());
    }
    if fields.len() > MAX_FIELDS {
        return Ok(Err(format!("more than {MAX_FIELDS} request tokens")));
    }
    let g = m
        .get("g")
        .map(|gs| {
            gs.iter()
                .map(|(name, a)| {
                    let arity = a.value.matches('_').count() as u8;
                    (name.clone(), arity, a.get_policy().iter().cloned().collect::<Vec<_>>())
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Ok(fast::Source {
        r: r.tokens.iter().zip(fields).map(|(t, f)| (t.clone(), f.ty())).collect(),
        p_tokens: &p.tokens,
        matcher: &mm.value,
        effect: &ee.value,
        g,
        policy: p.get_policy().iter().cloned().collect(),
    }))
}

/// The line of `rule` (casbin's fields, without the type) in the policy file.
pub(super) fn line_of_rule(text: &str, rule: &[String]) -> Option<usize> {
    text.lines()
        .position(|l| {
            let f: Vec<&str> = l.trim().split(',').map(|x| x.trim().trim_matches('"')).collect();
            f.len() == rule.len() + 1 && f[0].starts_with('p') && f[1..].iter().zip(rule).all(|(a, b)| a == b)
        })
        .map(|i| i + 1)
}

/// The policy columns the matcher passes to a pattern function, and which function:
/// `regexMatch(r.act, "^(?:" + p.act + ")$")` → (act, regexMatch).
pub(super) fn pattern_columns(model: &str, columns: &[String]) -> Vec<(usize, String)> {
    let Some(m) = model.lines().map(str::trim).find(|l| l.starts_with("m =") || l.starts_with("m=")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for func in ["regexMatch", "keyMatch", "keyMatch2", "keyMatch3", "keyMatch4", "keyMatch5"] {
        let open = format!("{func}(");
        let mut rest = m;
        while let Some(at) = rest.find(&open) {
            // Not the tail of a longer name (keyMatch inside keyMatch2 is found as such).
            let before = rest[..at].chars().last();
            let args_start = at + open.len();
            let mut depth = 1;
            let mut end = args_start;
            for (j, c) in rest[args_start..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = args_start + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if !before.is_some_and(|c| c.is_ascii_alphanumeric()) {
                let args = &rest[args_start..end];
                for (ci, c) in columns.iter().enumerate() {
                    if args.contains(&format!("p.{c}"))
                        && !out.iter().any(|(x, f): &(usize, String)| *x == ci && f == func)
                    {
                        out.push((ci, func.to_string()));
                    }
                }
            }
            rest = &rest[args_start..];
        }
    }
    out
}

/// Compiles `v` the way the casbin function `func` would, to refuse at load what casbin
/// would panic on at a request.
pub(super) fn compile_like(func: &str, v: &str) -> Result<(), pattern::PatternError> {
    let f = match func {
        "keyMatch" => matcher::Func::KeyMatch,
        "keyMatch2" => matcher::Func::KeyMatch2,
        "keyMatch3" => matcher::Func::KeyMatch3,
        "regexMatch" => matcher::Func::RegexMatch,
        _ => return Ok(()),
    };
    pattern::Pattern::compile(f, v).map(|_| ())
}

/// The tokens of `r = …` (without the `r_` prefix casbin adds).
pub(super) fn request_tokens(model: &str) -> Option<Vec<String>> {
    definition(model, "[request_definition]", "r")
}

/// The comma-separated tokens of `key = …` in `section` of a model (`r`, `p`).
pub(crate) fn definition(model: &str, section: &str, key: &str) -> Option<Vec<String>> {
    let mut in_section = false;
    for line in model.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t == section;
            continue;
        }
        if in_section {
            if let Some(rest) = t.strip_prefix(key).map(str::trim_start).and_then(|s| s.strip_prefix('=')) {
                return Some(rest.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
            }
        }
    }
    None
}

/// The line (1-based) of `key = …` in `section` of a model.
pub(crate) fn definition_line(model: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    for (i, line) in model.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t == section;
            continue;
        }
        if in_section && t.strip_prefix(key).map(str::trim_start).is_some_and(|s| s.starts_with('=')) {
            return Some(i + 1);
        }
    }
    None
}

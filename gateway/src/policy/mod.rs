//! Authorization at the level of the action: every request to a protected route becomes
//! casbin's request tuple and the `casbin` crate decides. Deny by default; with a model
//! whose effect is deny-overrides, an explicit deny wins. The tuple follows the model's
//! `[request_definition]`: each token is filled by name (see `policies/README.md`):
//!
//! | token | value |
//! |---|---|
//! | `sub` | the subject (`oidc.subject_claim`); the user's IdP groups are tried as `group:<name>` too |
//! | `dom` | the route's `domain` |
//! | `obj` | `<route resource>:<normalised path>` — the path the upstream receives |
//! | `act` | the HTTP method, or one of the gateway's own actions ([`actions`]: `custos:breakglass`, which no method can name and only a rule naming it grants) |
//! | `mfa`, `breakglass` | booleans |
//! | `client` | the client's IP address |
//! | `hour` | the hour of day, UTC, 0–23 |
//! | `route` | the route's name |
//!
//! Two engines decide the same way: the indexed evaluator ([`fast`]) for the models it
//! covers (nearly all in use: RBAC with hierarchy and domains, `g2`, keyMatch/2/3,
//! regexMatch, ipMatch, the three effects), and the `casbin` crate itself for the rest,
//! with a warning at load that names what the fast one lacks. Both are built from the one
//! model casbin loaded, and the differential tests hold them to the same decisions.
//!
//! What would fail on a request fails at load instead, with the file and the line: a
//! matcher that does not compile, an effect casbin does not evaluate, a name the matcher
//! uses that nothing defines (`r.foo`, `keyMatch9(…)`), a policy line with more or fewer
//! fields than its type's definition.
//!
//! The policy in force is swapped atomically (`arc-swap`): a request never takes a lock.

pub mod actions;
pub mod cases;
pub mod fast;
pub mod lint;
pub mod matcher;
pub mod pattern;

use arc_swap::ArcSwap;
use casbin::rhai::Dynamic;
use casbin::{CoreApi, Enforcer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a request is, for the policy.
pub struct Request<'a> {
    pub sub: &'a str,
    pub groups: &'a [String],
    pub dom: &'a str,
    pub obj: &'a str,
    pub act: &'a str,
    pub mfa: bool,
    pub breakglass: bool,
    pub client: &'a str,
    pub hour: i64,
    pub route: &'a str,
}

/// The decision, and the rule that made it (casbin's explain), as `p, a, b, c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub rule: Option<Arc<str>>,
    /// The identity the deciding rule applied to.
    pub via: Option<Via>,
}

/// Which of a request's identities a rule applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Subject,
    /// The request's `groups[i]`.
    Group(usize),
}

/// Which engine decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The indexed evaluator.
    Fast,
    /// The `casbin` crate.
    Casbin,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Fast => "fast",
            Engine::Casbin => "casbin",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Sub,
    Dom,
    Obj,
    Act,
    Mfa,
    Breakglass,
    Client,
    Hour,
    Route,
}

impl Field {
    fn ty(self) -> matcher::Ty {
        match self {
            Field::Mfa | Field::Breakglass => matcher::Ty::Bool,
            Field::Hour => matcher::Ty::Int,
            _ => matcher::Ty::Str,
        }
    }
}

/// At most this many request tokens (the fields Custos fills).
const MAX_FIELDS: usize = 9;

/// One loaded model + policy.
pub struct PolicySet {
    enforcer: Enforcer,
    fast: Option<fast::Fast>,
    /// Why the fast evaluator does not decide for this model (the feature it lacks).
    pub fallback: Option<String>,
    fields: Vec<Field>,
    pub model: PathBuf,
    pub policy: PathBuf,
    /// SHA-256 (hex) of the model and the policy file.
    pub hashes: (String, String),
    /// Names granted as roles (second field of `g` lines): no user may be one.
    roles: rustc_hash::FxHashSet<String>,
    /// Per gateway action a rule names: the policy that decides it ([`actions`]).
    actions: rustc_hash::FxHashMap<Box<str>, PolicySet>,
}

/// A policy error with the file (and line when known).
#[derive(Debug, Clone)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn err(file: &Path, line: Option<usize>, message: impl Into<String>) -> PolicyError {
    PolicyError { file: file.to_path_buf(), line, message: message.into() }
}

/// The subject the example model gives to anyone under an emergency grant: no user may
/// be called this.
pub const BREAKGLASS_SUBJECT: &str = "breakglass";

/// The group prefix: IdP group `X` is the identity `group:X`.
pub const GROUP_PREFIX: &str = "group:";

impl PolicySet {
    /// Loads and checks a model and a policy file.
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
            Ok(Err(e)) => return Err(err(model, m_line, e)),
            Err(_) => return Err(err(model, m_line, "the matcher cannot be evaluated")),
        }
        Ok(set)
    }

    fn args(&self, r: &Request<'_>, sub: &str) -> Vec<Dynamic> {
        self.fields
            .iter()
            .map(|f| match f {
                Field::Sub => Dynamic::from(sub.to_string()),
                Field::Dom => Dynamic::from(r.dom.to_string()),
                Field::Obj => Dynamic::from(r.obj.to_string()),
                Field::Act => Dynamic::from(r.act.to_string()),
                Field::Mfa => Dynamic::from(r.mfa),
                Field::Breakglass => Dynamic::from(r.breakglass),
                Field::Client => Dynamic::from(r.client.to_string()),
                // rhai's own integer type (casbin builds it with i32): an i64 would be a
                // foreign value that `r.hour >= 8` never matches.
                Field::Hour => Dynamic::from(r.hour as casbin::rhai::INT),
                Field::Route => Dynamic::from(r.route.to_string()),
            })
            .collect()
    }

    fn enforce_one(&self, r: &Request<'_>, sub: &str) -> Result<(bool, Vec<Vec<String>>), String> {
        self.enforcer.enforce_ex(self.args(r, sub)).map_err(|e| e.to_string())
    }

    /// The engine that decides requests.
    pub fn engine(&self) -> Engine {
        if self.fast.is_some() {
            Engine::Fast
        } else {
            Engine::Casbin
        }
    }

    /// One identity through one engine: the decision and the rule that made it, `rule`
    /// being `Some` on a deny only when a deny rule matched.
    fn outcome(&self, engine: Engine, r: &Request<'_>, who: &str) -> Result<fast::Outcome, String> {
        match (engine, &self.fast) {
            (Engine::Fast, Some(f)) => {
                let mut vals = [fast::Val::B(false); MAX_FIELDS];
                for (v, field) in vals.iter_mut().zip(&self.fields) {
                    *v = match field {
                        Field::Sub => fast::Val::S(who),
                        Field::Dom => fast::Val::S(r.dom),
                        Field::Obj => fast::Val::S(r.obj),
                        Field::Act => fast::Val::S(r.act),
                        Field::Mfa => fast::Val::B(r.mfa),
                        Field::Breakglass => fast::Val::B(r.breakglass),
                        Field::Client => fast::Val::S(r.client),
                        Field::Hour => fast::Val::I(r.hour),
                        Field::Route => fast::Val::S(r.route),
                    };
                }
                f.enforce(&vals[..self.fields.len()]).map_err(|_| "a request value the policy cannot match".to_string())
            }
            (Engine::Fast, None) => Err(format!(
                "the fast evaluator does not cover this model: {}",
                self.fallback.as_deref().unwrap_or("?")
            )),
            (Engine::Casbin, _) => {
                let (allow, rules) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.enforce_one(r, who)))
                        .unwrap_or_else(|_| Err("casbin panicked".into()))?;
                // Explain lists the allows that matched before the deny that stopped the
                // evaluation, last; with priority, the one deciding rule.
                let rule = if allow { rules.first() } else { rules.last() };
                Ok(fast::Outcome { allow, rule: rule.map(|p| Arc::from(fast::rule_text(p))) })
            }
        }
    }

    /// Decides `r`: the subject, then each of its groups as `group:<name>`. An explicit
    /// deny for any of them wins; otherwise any allow allows; otherwise deny.
    pub fn decide(&self, r: &Request<'_>) -> Decision {
        self.decide_as(r, &Default::default())
    }

    /// [`PolicySet::decide`] with IdP groups mapped to roles by `group_roles` (the rest
    /// are `group:<name>`).
    pub fn decide_as(&self, r: &Request<'_>, group_roles: &std::collections::BTreeMap<String, String>) -> Decision {
        match self.part(r.act) {
            Some(part) => part.decide_here(part.engine(), r, group_roles),
            None => Decision { allow: false, rule: None, via: None },
        }
    }

    /// The part of the policy that decides `act`: itself for a request's method, the
    /// action's own part for a gateway action (`None`, denied, when no rule names it).
    fn part(&self, act: &str) -> Option<&PolicySet> {
        if !actions::is_gateway_action(act) {
            return Some(self);
        }
        self.actions.get(act)
    }

    /// [`PolicySet::decide_as`] through a chosen engine (`policy test --engine`, the
    /// differential tests). The fast engine on a model it does not cover denies.
    pub fn decide_with(
        &self,
        engine: Engine,
        r: &Request<'_>,
        group_roles: &std::collections::BTreeMap<String, String>,
    ) -> Decision {
        match self.part(r.act) {
            Some(part) => part.decide_here(engine, r, group_roles),
            None => Decision { allow: false, rule: None, via: None },
        }
    }

    /// [`PolicySet::decide_with`] within this part of the policy.
    fn decide_here(
        &self,
        engine: Engine,
        r: &Request<'_>,
        group_roles: &std::collections::BTreeMap<String, String>,
    ) -> Decision {
        // A user whose name is a role's (or looks like a group identity) would hold it.
        if r.sub.starts_with(GROUP_PREFIX)
            || r.sub == BREAKGLASS_SUBJECT
            || self.roles.contains(r.sub)
            || group_roles.values().any(|v| v == r.sub)
        {
            return Decision { allow: false, rule: Some("subject is a role name".into()), via: None };
        }
        let mut allowed: Option<Decision> = None;
        // `group:<name>` spelled in a stack buffer: no allocation per request.
        let mut buf = [0u8; 256];
        for i in 0..=r.groups.len() {
            let (via, spelled);
            let who: &str = if i == 0 {
                via = Via::Subject;
                r.sub
            } else {
                via = Via::Group(i - 1);
                let g = &r.groups[i - 1];
                match group_roles.get(g) {
                    Some(role) => role,
                    None if GROUP_PREFIX.len() + g.len() <= buf.len() => {
                        let n = GROUP_PREFIX.len() + g.len();
                        buf[..GROUP_PREFIX.len()].copy_from_slice(GROUP_PREFIX.as_bytes());
                        buf[GROUP_PREFIX.len()..n].copy_from_slice(g.as_bytes());
                        std::str::from_utf8(&buf[..n]).unwrap_or_default()
                    }
                    None => {
                        spelled = format!("{GROUP_PREFIX}{g}");
                        &spelled
                    }
                }
            };
            match self.outcome(engine, r, who) {
                Ok(o) if o.allow => {
                    if allowed.is_none() {
                        allowed = Some(Decision { allow: true, rule: o.rule, via: Some(via) });
                    }
                }
                // A matching rule and still a deny: an explicit deny. It wins.
                Ok(o) if o.rule.is_some() => return Decision { allow: false, rule: o.rule, via: Some(via) },
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "policy evaluation failed; denying");
                    return Decision { allow: false, rule: Some("error".into()), via: None };
                }
            }
        }
        allowed.unwrap_or(Decision { allow: false, rule: None, via: None })
    }
}

/// What the fast evaluator reads, from the model casbin loaded (so both engines see the
/// same rules, deduplicated and ordered as casbin keeps them). `Err` names what is
/// missing or not covered.
fn source<'a>(e: &'a Enforcer, fields: &[Field]) -> Result<Result<fast::Source<'a>, String>, String> {
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
fn line_of_rule(text: &str, rule: &[String]) -> Option<usize> {
    text.lines()
        .position(|l| {
            let f: Vec<&str> = l.trim().split(',').map(|x| x.trim().trim_matches('"')).collect();
            f.len() == rule.len() + 1 && f[0].starts_with('p') && f[1..].iter().zip(rule).all(|(a, b)| a == b)
        })
        .map(|i| i + 1)
}

/// The policy columns the matcher passes to a pattern function, and which function:
/// `regexMatch(r.act, "^(?:" + p.act + ")$")` → (act, regexMatch).
fn pattern_columns(model: &str, columns: &[String]) -> Vec<(usize, String)> {
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
fn compile_like(func: &str, v: &str) -> Result<(), String> {
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
fn request_tokens(model: &str) -> Option<Vec<String>> {
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

/// What casbin says, without its debug wrapping (`Casbin Model Error: M("…")`).
fn casbin_message(e: &casbin::Error) -> String {
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
fn matcher_error(model: &Path, model_text: &str, msg: &str) -> PolicyError {
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
fn check_arity(m: &casbin::DefaultModel, policy: &Path, text: &str) -> Result<(), PolicyError> {
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
const EFFECTS: &[&str] = &[
    "some(where (p_eft == allow))",
    "some(where (p_eft == allow)) && !some(where (p_eft == deny))",
    "priority(p_eft) || deny",
];

/// The effect, read as casbin parsed it: one casbin knows, and never allow-by-default.
fn check_effect(enforcer: &Enforcer, model: &Path, model_text: &str) -> Result<(), PolicyError> {
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
fn check_names(enforcer: &Enforcer, model: &Path, model_text: &str) -> Result<(), PolicyError> {
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

pub use crate::config::policy::PolicyFiles;

impl PolicyFiles {
    /// Loads the files and runs the cases (when configured): the set only if all pass.
    pub async fn load_and_test(&self) -> Result<PolicySet, PolicyError> {
        let set = PolicySet::load(&self.model, &self.policy).await?;
        if let Some(c) = &self.cases {
            // `cases::load` names the file (and line) in its message: once is enough.
            let list = cases::load(c).map_err(|m| {
                let rest = m.strip_prefix(&format!("{}:", c.display())).unwrap_or(&m).trim_start();
                match rest.split_once(": ").map(|(l, msg)| (l.parse::<usize>(), msg)) {
                    Some((Ok(line), msg)) => err(c, Some(line), msg),
                    _ => err(c, None, rest),
                }
            })?;
            let failed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cases::run(&set, &list, &self.group_roles)))
                    .map_err(|_| err(c, None, "running the cases panicked"))?;
            if let Some(first) = failed.first() {
                return Err(err(c, None, format!("{} of {} cases fail; first: {first}", failed.len(), list.len())));
            }
        }
        Ok(set)
    }

    /// [`PolicyFiles::load_and_test`] outside any runtime (config checks, start).
    pub fn load_checked(&self) -> Result<PolicySet, PolicyError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| err(&self.policy, None, format!("cannot start a runtime: {e}")))?;
        rt.block_on(self.load_and_test())
    }

    /// The check `custos check` and `serve` make at load: the files load and their
    /// cases pass, or a config error at the key of the file at fault.
    pub fn check_config(cfg: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
        let Some(files) = &cfg.policy else { return Ok(()) };
        files.load_checked().map(drop).map_err(|e| {
            let key = if e.file == files.model {
                "policy.model"
            } else if Some(&e.file) == files.cases.as_ref() {
                "policy.cases"
            } else {
                "policy.policy"
            };
            crate::config::ConfigError { file: cfg.file.clone(), key: key.into(), line: None, message: e.to_string() }
        })
    }

    /// What the files hold now (SHA-256 of each), to see any change.
    fn stamp(&self) -> Vec<Option<String>> {
        std::iter::once(&self.model)
            .chain(std::iter::once(&self.policy))
            .chain(self.cases.iter())
            .map(|p| std::fs::read(p).ok().map(|b| crate::session::sha256_hex(&b)))
            .collect()
    }
}

/// Reloads the policy when its files change (polled) or on SIGHUP, in a thread of its
/// own: a new set goes in only if it loads and passes its cases; otherwise the last good
/// one stays. Both outcomes are audited.
pub fn watch(policy: Arc<Policy>, files: PolicyFiles, audit: Option<crate::audit::Audit>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("custos-policy".into()).spawn(move || {
        rt.block_on(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handler: policy reloads on file change only");
                    None
                }
            };
            // What is in force: the hashes of what was loaded (a change between the
            // start's load and here is seen at the first poll).
            let current = policy.current();
            let mut seen: Vec<Option<String>> = vec![Some(current.hashes.0.clone()), Some(current.hashes.1.clone())];
            if let Some(c) = &files.cases {
                seen.push(std::fs::read(c).ok().map(|b| crate::session::sha256_hex(&b)));
            }
            let mut tick = tokio::time::interval(files.poll);
            loop {
                let signalled = tokio::select! {
                    _ = tick.tick() => false,
                    Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                let now = files.stamp();
                if !signalled && now == seen {
                    continue;
                }
                if !signalled {
                    // A file being written: wait until two reads agree.
                    tokio::time::sleep(files.poll / 2).await;
                    if files.stamp() != now {
                        continue;
                    }
                }
                seen = now;
                let why = if signalled { "SIGHUP" } else { "file change" };
                match files.load_and_test().await {
                    Ok(set) => {
                        let hashes = format!("model={} policy={}", set.hashes.0, set.hashes.1);
                        let engine = set.engine();
                        policy.swap(set);
                        tracing::info!(why, %hashes, %engine, "policy reloaded");
                        if let Some(a) = &audit {
                            let mut ev = crate::audit::Event::new(crate::audit::Kind::PolicyReloaded);
                            ev.rule = Some(hashes);
                            ev.reason = Some(crate::audit::Reason::named(why));
                            a.append(ev);
                        }
                    }
                    Err(e) => {
                        tracing::error!(why, error = %e, "policy reload refused; the last good policy stays in force");
                        if let Some(a) = &audit {
                            let mut ev = crate::audit::Event::new(crate::audit::Kind::PolicyReloadRejected);
                            ev.reason = Some(crate::audit::Reason::message(e.to_string()));
                            a.append(ev);
                        }
                    }
                }
            }
        });
    })?;
    Ok(())
}

/// The policy in force, swapped whole on reload.
pub struct Policy {
    current: ArcSwap<PolicySet>,
    group_roles: std::collections::BTreeMap<String, String>,
    /// Counts the sets put in force, so that what was decided once and stays open (a
    /// tunnel) is decided again after a reload.
    reloads: tokio::sync::watch::Sender<u64>,
}

impl Policy {
    pub fn new(set: PolicySet) -> Policy {
        Policy::with_group_roles(set, Default::default())
    }

    /// With an explicit IdP group → role mapping (`[policy.group_roles]`).
    pub fn with_group_roles(set: PolicySet, group_roles: std::collections::BTreeMap<String, String>) -> Policy {
        Policy { current: ArcSwap::from_pointee(set), group_roles, reloads: tokio::sync::watch::Sender::new(0) }
    }

    /// Changes each time a new set is in force.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    pub fn decide(&self, r: &Request<'_>) -> Decision {
        self.current.load().decide_as(r, &self.group_roles)
    }

    pub fn swap(&self, set: PolicySet) {
        self.current.store(Arc::new(set));
        self.reloads.send_modify(|n| *n += 1);
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }
}

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
//! | `act` | the HTTP method (`breakglass` for emergency access) |
//! | `mfa`, `breakglass` | booleans |
//! | `client` | the client's IP address |
//! | `hour` | the hour of day, UTC, 0–23 |
//! | `route` | the route's name |
//!
//! The policy in force is swapped atomically (`arc-swap`): a request never takes a lock.

pub mod cases;
pub mod lint;

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
    pub rule: Option<String>,
    /// The identity (subject or `group:…`) the deciding rule applied to.
    pub via: Option<String>,
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

/// One loaded model + policy.
pub struct PolicySet {
    enforcer: Enforcer,
    fields: Vec<Field>,
    /// Whether the model's effect lets a deny rule override (then an explicit deny for
    /// any of the user's identities wins).
    pub model: PathBuf,
    pub policy: PathBuf,
    /// SHA-256 (hex) of the model and the policy file.
    pub hashes: (String, String),
    /// Names granted as roles (second field of `g` lines): no user may be one.
    roles: std::collections::HashSet<String>,
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

/// The group prefix: IdP group `X` is the identity `group:X`.
pub const GROUP_PREFIX: &str = "group:";

impl PolicySet {
    /// Loads and checks a model and a policy file.
    pub async fn load(model: &Path, policy: &Path) -> Result<PolicySet, PolicyError> {
        let model_text = std::fs::read_to_string(model).map_err(|e| err(model, None, format!("cannot read: {e}")))?;
        let policy_text =
            std::fs::read_to_string(policy).map_err(|e| err(policy, None, format!("cannot read: {e}")))?;
        check_csv(policy, &policy_text)?;
        let m = casbin::DefaultModel::from_str(&model_text).await.map_err(|e| err(model, None, e.to_string()))?;
        let adapter = casbin::StringAdapter::new(policy_text.clone());
        let enforcer = Enforcer::new(m, adapter).await.map_err(|e| err(policy, None, e.to_string()))?;
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
                        line_of(&model_text, &t),
                        format!("request token `{other}` is not one Custos fills (sub, dom, obj, act, mfa, breakglass, client, hour, route)"),
                    ))
                }
            });
        }
        // Deny by default: an effect that allows what no rule denies is refused.
        if let Some(l) = model_text.lines().position(|l| l.trim().replace(' ', "").starts_with("e=!some(")) {
            return Err(err(
                model,
                Some(l + 1),
                "an allow-by-default effect (`!some(where (p.eft == deny))`): Custos denies by default; use `some(where (p.eft == allow)) && !some(where (p.eft == deny))`",
            ));
        }
        let columns = lint::p_columns(&model_text);
        let eft = columns.iter().position(|c| c == "eft");
        let mut roles = std::collections::HashSet::new();
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
        let set = PolicySet {
            enforcer,
            fields,
            model: model.to_path_buf(),
            policy: policy.to_path_buf(),
            hashes: (
                crate::session::sha256_hex(model_text.as_bytes()),
                crate::session::sha256_hex(policy_text.as_bytes()),
            ),
            roles,
        };
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
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set.enforce_one(&probe, "custos-probe"))) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(err(model, line_of(&model_text, "m ="), e)),
            Err(_) => return Err(err(model, line_of(&model_text, "m ="), "the matcher cannot be evaluated")),
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

    /// Decides `r`: the subject, then each of its groups as `group:<name>`. An explicit
    /// deny for any of them wins; otherwise any allow allows; otherwise deny.
    pub fn decide(&self, r: &Request<'_>) -> Decision {
        self.decide_as(r, &Default::default())
    }

    /// [`PolicySet::decide`] with IdP groups mapped to roles by `group_roles` (the rest
    /// are `group:<name>`).
    pub fn decide_as(&self, r: &Request<'_>, group_roles: &std::collections::BTreeMap<String, String>) -> Decision {
        // A user whose name is a role's (or looks like a group identity) would hold it.
        if r.sub.starts_with(GROUP_PREFIX) || self.roles.contains(r.sub) || group_roles.values().any(|v| v == r.sub) {
            return Decision { allow: false, rule: Some("subject is a role name".into()), via: None };
        }
        let mut allowed: Option<Decision> = None;
        let identities = std::iter::once(r.sub.to_string()).chain(r.groups.iter().map(|g| match group_roles.get(g) {
            Some(role) => role.clone(),
            None => format!("{GROUP_PREFIX}{g}"),
        }));
        for who in identities {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.enforce_one(r, &who)))
                .unwrap_or_else(|_| Err("casbin panicked".into()));
            match outcome {
                Ok((true, rules)) => {
                    if allowed.is_none() {
                        allowed =
                            Some(Decision { allow: true, rule: rules.first().map(|p| rule_text(p)), via: Some(who) });
                    }
                }
                Ok((false, rules)) if !rules.is_empty() => {
                    // A matching rule and still false: an explicit deny. It wins. Explain
                    // lists the allows that matched too: name the deny.
                    let deny = rules.iter().rev().find(|p| p.last().is_some_and(|e| e == "deny")).or(rules.last());
                    return Decision { allow: false, rule: deny.map(|p| rule_text(p)), via: Some(who) };
                }
                Ok((false, _)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "policy evaluation failed; denying");
                    return Decision { allow: false, rule: Some("error".into()), via: None };
                }
            }
        }
        allowed.unwrap_or(Decision { allow: false, rule: None, via: None })
    }
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

/// Compiles `v` the way the casbin function `func` turns it into a regular expression.
fn compile_like(func: &str, v: &str) -> Result<(), String> {
    let re = match func {
        "keyMatch2" => {
            let v = v.replace("/*", "/.*");
            regex::Regex::new(r":[^/]+").map_err(|e| e.to_string())?.replace_all(&v, "[^/]+").to_string()
        }
        "keyMatch3" | "keyMatch4" => {
            let v = v.replace("/*", "/.*");
            regex::Regex::new(r"\{[^/]+?\}").map_err(|e| e.to_string())?.replace_all(&v, "[^/]+").to_string()
        }
        "keyMatch" | "keyMatch5" => return Ok(()),
        _ => v.to_string(),
    };
    regex::Regex::new(&re).map(|_| ()).map_err(|e| e.to_string().lines().last().unwrap_or("").trim().to_string())
}

fn rule_text(p: &[String]) -> String {
    format!("p, {}", p.join(", "))
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

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// The policy file line by line: each line `p, …` or `g, …` (or `g2`…, `p2`…), comments
/// and blank lines allowed. Errors name the line.
pub fn check_csv(file: &Path, text: &str) -> Result<(), PolicyError> {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = t.split(',').map(str::trim).collect();
        let kind = fields[0];
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

/// The files a gateway's policy comes from.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    pub model: PathBuf,
    pub policy: PathBuf,
    pub cases: Option<PathBuf>,
    pub poll: std::time::Duration,
    /// IdP group → the identity it is decided as; others are `group:<name>`.
    pub group_roles: std::collections::BTreeMap<String, String>,
}

impl PolicyFiles {
    /// Loads the files and runs the cases (when configured): the set only if all pass.
    pub async fn load_and_test(&self) -> Result<PolicySet, PolicyError> {
        let set = PolicySet::load(&self.model, &self.policy).await?;
        if let Some(c) = &self.cases {
            let list = cases::load(c).map_err(|m| PolicyError { file: c.clone(), line: None, message: m })?;
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
                        policy.swap(set);
                        tracing::info!(why, %hashes, "policy reloaded");
                        if let Some(a) = &audit {
                            let mut ev = crate::audit::Event::new(crate::audit::Kind::PolicyReloaded);
                            ev.rule = Some(hashes);
                            ev.reason = Some(why.into());
                            a.append(ev);
                        }
                    }
                    Err(e) => {
                        tracing::error!(why, error = %e, "policy reload refused; the last good policy stays in force");
                        if let Some(a) = &audit {
                            let mut ev = crate::audit::Event::new(crate::audit::Kind::PolicyReloadRejected);
                            ev.reason = Some(e.to_string());
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
}

impl Policy {
    pub fn new(set: PolicySet) -> Policy {
        Policy { current: ArcSwap::from_pointee(set), group_roles: Default::default() }
    }

    /// With an explicit IdP group → role mapping (`[policy.group_roles]`).
    pub fn with_group_roles(set: PolicySet, group_roles: std::collections::BTreeMap<String, String>) -> Policy {
        Policy { current: ArcSwap::from_pointee(set), group_roles }
    }

    pub fn decide(&self, r: &Request<'_>) -> Decision {
        self.current.load().decide_as(r, &self.group_roles)
    }

    pub fn swap(&self, set: PolicySet) {
        self.current.store(Arc::new(set));
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }
}

//! Policy tests: a cases file lists requests and the decision each must get; `custos
//! policy test` runs them all and reports every mismatch with the rule that decided it.
//! The format (TOML) is meant for security teams' own CI:
//!
//! ```toml
//! [[case]]
//! name = "a nurse reads notes"
//! sub = "bob"
//! groups = ["staff"]          # IdP groups (tried as group:<name>)
//! dom = "cardiology"
//! obj = "ehr:/patients/1/notes"
//! act = "GET"
//! mfa = false                 # attributes: mfa, breakglass, client, hour, route
//! expect = "allow"            # or "deny"
//! ```

use super::{PolicySet, Request};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: Option<String>,
    pub sub: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub dom: String,
    pub obj: String,
    pub act: String,
    #[serde(default)]
    pub mfa: bool,
    #[serde(default)]
    pub breakglass: bool,
    #[serde(default = "default_client")]
    pub client: String,
    #[serde(default)]
    pub hour: i64,
    #[serde(default)]
    pub route: String,
    pub expect: Expect,
}

fn default_client() -> String {
    "127.0.0.1".into()
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

/// One case that did not get its expected decision.
#[derive(Debug)]
pub struct Mismatch {
    pub index: usize,
    pub name: String,
    pub expected: Expect,
    pub rule: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (want, got) = match self.expected {
            Expect::Allow => ("allow", "deny"),
            Expect::Deny => ("deny", "allow"),
        };
        write!(f, "case {} ({}): expected {want}, got {got}", self.index + 1, self.name)?;
        match &self.rule {
            Some(r) => write!(f, " by `{r}`"),
            None => write!(f, " (no rule matched: default deny)"),
        }
    }
}

/// Reads a cases file; errors name the file (and line where the parser knows it).
pub fn load(path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let f: File = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(l) => format!("{}:{l}: {}", path.display(), e.message()),
            None => format!("{}: {}", path.display(), e.message()),
        }
    })?;
    if f.case.is_empty() {
        return Err(format!("{}: no [[case]]", path.display()));
    }
    if let Some((i, c)) = f.case.iter().enumerate().find(|(_, c)| !(0..=23).contains(&c.hour)) {
        return Err(format!("{}: case {}: `hour` is the hour of day, 0–23, not {}", path.display(), i + 1, c.hour));
    }
    Ok(f.case)
}

/// Runs every case on the engine the gateway uses; the mismatches.
pub fn run(set: &PolicySet, cases: &[Case], group_roles: &std::collections::BTreeMap<String, String>) -> Vec<Mismatch> {
    run_with(set, cases, group_roles, set.engine())
}

/// [`run`] on a chosen engine.
pub fn run_with(
    set: &PolicySet,
    cases: &[Case],
    group_roles: &std::collections::BTreeMap<String, String>,
    engine: super::Engine,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let r = Request {
            sub: &c.sub,
            groups: &c.groups,
            dom: &c.dom,
            obj: &c.obj,
            act: &c.act,
            mfa: c.mfa,
            breakglass: c.breakglass,
            client: &c.client,
            hour: c.hour,
            route: &c.route,
        };
        let d = set.decide_with(engine, &r, group_roles);
        let ok = matches!((c.expect, d.allow), (Expect::Allow, true) | (Expect::Deny, false));
        if !ok {
            out.push(Mismatch {
                index: i,
                name: c.name.clone().unwrap_or_else(|| format!("{} {} {}", c.sub, c.act, c.obj)),
                expected: c.expect,
                rule: d.rule.as_deref().map(str::to_string),
            });
        }
    }
    out
}

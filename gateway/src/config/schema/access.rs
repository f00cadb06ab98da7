//! `[policy]` and `[breakglass]` as written.

use crate::config::secret::SecretRef;
use serde::Deserialize;
use std::path::PathBuf;

/// `[policy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCfg {
    /// The casbin model (`.conf`), relative to this file.
    pub model: PathBuf,
    /// The casbin policy (`.csv`), relative to this file.
    pub policy: PathBuf,
    /// A cases file (`custos policy test` format) that a policy must pass to be loaded,
    /// at start and on every reload.
    pub cases: Option<PathBuf>,
    /// The files are checked for changes this often (milliseconds); SIGHUP reloads at
    /// once. Default 1000.
    #[serde(default = "default_policy_poll")]
    pub poll_ms: u64,
    /// `[policy.group_roles]`: IdP group → the identity it is decided as (a role name).
    /// Groups not listed are decided as `group:<name>`.
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, String>,
}

fn default_policy_poll() -> u64 {
    1000
}

/// `[breakglass]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakglassCfg {
    /// Seconds a declared emergency grant lasts unless the user asks for less. Default
    /// 3600 (60 minutes).
    #[serde(default = "default_bg_secs")]
    pub default_secs: u64,
    /// The longest grant (declared, or a sealed link's TTL), seconds. Default 14400 (4 h).
    #[serde(default = "default_bg_max_secs")]
    pub max_secs: u64,
    /// The longest justification, characters. Default 2000.
    #[serde(default = "default_bg_justification")]
    pub justification_max: usize,
    /// Declarations per user per day (UTC). Default 3.
    #[serde(default = "default_bg_per_day")]
    pub max_per_day: u64,
    /// Days the review record (with the justification) is kept in Redis. Default 2190.
    #[serde(default = "default_bg_retention")]
    pub retention_days: u64,
    /// Put the justification's text in audit records and alerts (it may hold PHI).
    /// Default false: its SHA-256 and length only.
    #[serde(default)]
    pub audit_justification: bool,
    /// The policy domain in which the review page asks whether a user may `custos:review`
    /// (object `custos:/breakglass/reviews`). Default empty.
    #[serde(default)]
    pub review_domain: String,
    /// `[[breakglass.alerts]]`: real-time alerts on every start and sealed-link use.
    #[serde(default)]
    pub alerts: Vec<BreakglassAlert>,
}

/// `[[breakglass.alerts]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakglassAlert {
    /// `https://…` (plain `http://` only to a loopback address).
    pub url: String,
    /// `slack` (an incoming-webhook message) or `json` (Custos's alert object).
    pub format: crate::config::breakglass::AlertFormat,
    /// The HMAC-SHA256 key: `{ file = … }` or `{ env = … }`. Required for `json`.
    pub secret: Option<SecretRef>,
    /// Gone (alerts are retried until taken); refused with a message saying so.
    pub max_tries: Option<u32>,
}

fn default_bg_secs() -> u64 {
    3600
}
fn default_bg_max_secs() -> u64 {
    14_400
}
fn default_bg_justification() -> usize {
    2000
}
fn default_bg_per_day() -> u64 {
    3
}
fn default_bg_retention() -> u64 {
    2190
}

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
mod check;
pub mod fast;
pub mod lint;
mod load;
pub mod matcher;
pub mod pattern;
mod reload;
mod request;

pub use check::check_csv;
pub(crate) use check::csv_fields;
pub(crate) use load::{definition, definition_line};
pub use reload::{watch, PolicyFiles};
pub use request::{Decision, EvalError, Request, Via};

use arc_swap::ArcSwap;
use casbin::Enforcer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A policy error with the file (and line when known): `FILE[:LINE]: MESSAGE`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

fn err(file: &Path, line: Option<usize>, message: impl Into<String>) -> PolicyError {
    PolicyError { file: file.to_path_buf(), line, message: message.into() }
}

/// The subject the example model gives to anyone under an emergency grant: no user may
/// be called this.
pub const BREAKGLASS_SUBJECT: &str = "breakglass";

/// The group prefix: IdP group `X` is the identity `group:X`.
pub const GROUP_PREFIX: &str = "group:";

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

    /// Whether `sub` (with `groups`) holds `role` in `dom` by the policy's role graph
    /// (`g` lines), directly or through a group.
    pub fn holds_role(&self, sub: &str, groups: &[String], role: &str, dom: &str) -> bool {
        self.current.load().holds_role(sub, groups, role, dom, &self.group_roles)
    }

    pub fn swap(&self, set: PolicySet) {
        self.current.store(Arc::new(set));
        self.reloads.send_modify(|n| *n += 1);
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }
}

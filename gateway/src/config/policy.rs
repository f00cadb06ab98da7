//! `[policy]`: where the casbin model, policy and cases files are, how often they are
//! checked for changes, and the IdP group → role map. Plain data: loading and testing
//! the files is `policy`'s (`PolicyFiles::check_config` runs at load).

use super::{schema, ConfigError, Validator};
use std::path::PathBuf;
use std::time::Duration;

/// The files a gateway's policy comes from.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    pub model: PathBuf,
    pub policy: PathBuf,
    pub cases: Option<PathBuf>,
    pub poll: Duration,
    /// IdP group → the identity it is decided as; others are `group:<name>`.
    pub group_roles: std::collections::BTreeMap<String, String>,
}

impl Validator<'_> {
    pub(super) fn policy(
        &self,
        raw: Option<&schema::PolicyCfg>,
        signed_in: bool,
    ) -> Result<Option<PolicyFiles>, ConfigError> {
        let Some(p) = raw else { return Ok(None) };
        if !signed_in {
            return Err(self.err("policy", "needs [oidc]: the policy decides for signed-in users"));
        }
        if p.poll_ms < 100 {
            return Err(self.err("policy.poll_ms", "must be at least 100"));
        }
        if let Some((g, _)) = p.group_roles.iter().find(|(g, r)| g.is_empty() || r.trim().is_empty()) {
            return Err(self.err(format!("policy.group_roles.{g}"), "group and role must not be empty"));
        }
        Ok(Some(PolicyFiles {
            model: self.path(&p.model),
            policy: self.path(&p.policy),
            cases: p.cases.as_ref().map(|c| self.path(c)),
            poll: Duration::from_millis(p.poll_ms),
            group_roles: p.group_roles.clone(),
        }))
    }
}

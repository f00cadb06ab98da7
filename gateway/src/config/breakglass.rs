//! `[breakglass]`: how long emergency grants last, how often one may be declared, how
//! long reviews are kept, and the real-time alert receivers.

use super::policy::PolicyFiles;
use super::secret::Secret;
use super::{schema, ConfigError, Validator};
use std::sync::Arc;
use std::time::Duration;

/// `[breakglass]`, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default: Duration,
    pub max: Duration,
    pub justification_max: usize,
    pub max_per_day: u64,
    pub retention: Duration,
    pub audit_justification: bool,
    /// The policy domain the review page's `custos:review` check is made in.
    pub review_domain: String,
    pub alerts: Vec<Alert>,
}

/// `breakglass.alerts[].format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// A Slack incoming-webhook message.
    Slack,
    /// Custos's alert object, signed.
    Json,
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub url: String,
    pub format: AlertFormat,
    pub secret: Option<Secret>,
}

impl Validator<'_> {
    pub(super) fn breakglass(
        &self,
        raw: Option<&schema::BreakglassCfg>,
        policy: Option<&PolicyFiles>,
        audit_enabled: bool,
    ) -> Result<Option<Arc<Settings>>, ConfigError> {
        let Some(b) = raw else { return Ok(None) };
        if policy.is_none() {
            return Err(self.err(
                "breakglass",
                "needs [policy] (and [oidc]): the policy says who may declare an emergency and what it opens",
            ));
        }
        if !audit_enabled {
            return Err(self.err(
                "audit.enabled",
                "[breakglass] needs the audit trail: every grant is recorded and its alerts are queued on the spool",
            ));
        }
        if b.max_secs == 0 || b.default_secs == 0 || b.default_secs > b.max_secs {
            return Err(self.err("breakglass.default_secs", "must be at least 1 and at most breakglass.max_secs"));
        }
        if b.justification_max < 10 {
            return Err(self.err("breakglass.justification_max", "must be at least 10"));
        }
        if b.max_per_day == 0 {
            return Err(self.err("breakglass.max_per_day", "must be at least 1"));
        }
        if b.retention_days == 0 {
            return Err(self.err("breakglass.retention_days", "must be at least 1"));
        }
        let mut alerts = Vec::new();
        for (i, a) in b.alerts.iter().enumerate() {
            let key = format!("breakglass.alerts[{i}]");
            let url = self.http_url(&format!("{key}.url"), &a.url, "an alert receiver")?;
            let secret = match &a.secret {
                Some(r) => Some(r.load(self.base).map_err(|m| self.err(format!("{key}.secret"), m))?),
                None if a.format == AlertFormat::Json => {
                    return Err(self.err(
                        format!("{key}.secret"),
                        "a `json` alert is signed: give `secret = { file = … }` or `{ env = … }`",
                    ))
                }
                None => None,
            };
            if a.max_tries.is_some() {
                return Err(self.err(
                    format!("{key}.max_tries"),
                    "is gone: an alert is queued on the audit spool and retried until the receiver takes it; remove the key",
                ));
            }
            alerts.push(Alert { url: url.to_string(), format: a.format, secret });
        }
        Ok(Some(Arc::new(Settings {
            default: Duration::from_secs(b.default_secs),
            max: Duration::from_secs(b.max_secs),
            justification_max: b.justification_max,
            max_per_day: b.max_per_day,
            retention: Duration::from_secs(b.retention_days * 86_400),
            audit_justification: b.audit_justification,
            review_domain: b.review_domain.clone(),
            alerts,
        })))
    }
}

//! `[audit]`: the spool (where, how large, how often a checkpoint), what to do when it
//! cannot be written, and the sinks it is delivered to, with their defaults.

use super::secret::SecretRef;
use super::{schema, ConfigError, Validator};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Records queued for the writer beyond which new access is refused (503 under
/// `on_failure = "deny"`) and refusal records are dropped (counted): the queue, and so
/// memory, stays bounded when requests arrive faster than the disk takes them.
/// Completion records of admitted requests are always queued; there is at most one
/// per admitted request.
pub const QUEUE_LIMIT: usize = 100_000;

/// What to do when the spool cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse access (503): no access without a record.
    #[default]
    Deny,
    /// Keep serving and raise an alert (log + metric).
    Allow,
}

/// Validated `[audit]` settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub enabled: bool,
    pub dir: PathBuf,
    pub on_failure: OnFailure,
    pub segment_bytes: u64,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    /// Ed25519 key (PKCS#8 PEM) for checkpoints; made in `dir` when not set.
    pub signing_key: Option<SecretRef>,
    pub key_base: PathBuf,
    /// `[audit.redis]`: the Redis Stream sink.
    pub redis: Option<RedisSinkSettings>,
    /// `[audit.file]`: the JSONL archive sink.
    pub file: Option<PathBuf>,
    /// `[audit.webhook]`: the signed webhook sink.
    pub webhook: Option<WebhookSinkSettings>,
    /// `[audit.otlp]`: (endpoint, timeout) of the OTLP/HTTP collector.
    pub otlp: Option<(String, Duration)>,
    /// See [`QUEUE_LIMIT`].
    pub queue_limit: usize,
    /// The longest wait between two delivery tries of a sink.
    pub retry_max: Duration,
    /// A sink that has taken nothing for this long raises an ALERT.
    pub sink_alert_after: Duration,
    /// The spool's size limit in bytes (0: none); see `audit::spool`.
    pub spool_max_bytes: u64,
}

/// Defaults of the delivery settings (`retry_max_ms`, `sink_alert_secs`,
/// `spool_max_bytes`).
pub const RETRY_MAX: Duration = Duration::from_secs(5);
pub const SINK_ALERT_AFTER: Duration = Duration::from_secs(300);
pub const SPOOL_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

#[derive(Clone)]
pub struct WebhookSinkSettings {
    pub url: String,
    pub secret: crate::config::secret::Secret,
    pub ca: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookSinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSinkSettings").field("url", &self.url).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct RedisSinkSettings {
    pub url: String,
    pub stream: String,
    pub maxlen: u64,
}

/// `<dir>/dead-letters/<sink>`: batches the receiver refused for good.
pub fn dead_letter_dir(dir: &Path, sink: &str) -> PathBuf {
    dir.join("dead-letters").join(sink)
}

impl Validator<'_> {
    pub(super) fn audit(&self, a: &schema::Audit) -> Result<AuditSettings, ConfigError> {
        if a.segment_bytes < 4096 {
            return Err(self.err("audit.segment_bytes", "must be at least 4096"));
        }
        if a.checkpoint_every == 0 {
            return Err(self.err("audit.checkpoint_every", "must be at least 1"));
        }
        if a.checkpoint_secs == 0 {
            return Err(self.err("audit.checkpoint_secs", "must be at least 1"));
        }
        self.at_most("audit.queue_limit", a.queue_limit, 10_000_000)?;
        if !(10..=3_600_000).contains(&a.retry_max_ms) {
            return Err(self.err("audit.retry_max_ms", "must be from 10 to 3600000 (one hour)"));
        }
        if a.sink_alert_secs == 0 {
            return Err(self.err("audit.sink_alert_secs", "must be at least 1"));
        }
        // The two newest segments always stay (the chain's head), so a limit must leave
        // room for more than those.
        if a.spool_max_bytes != 0 && a.spool_max_bytes < a.segment_bytes.saturating_mul(4) {
            return Err(self.err(
                "audit.spool_max_bytes",
                format!("must be 0 (no limit) or at least 4 × audit.segment_bytes ({})", a.segment_bytes * 4),
            ));
        }
        Ok(AuditSettings {
            enabled: a.enabled,
            dir: self.path(&a.dir),
            on_failure: a.on_failure,
            segment_bytes: a.segment_bytes,
            checkpoint_every: a.checkpoint_every,
            checkpoint_interval: Duration::from_secs(a.checkpoint_secs),
            signing_key: a.signing_key.clone(),
            key_base: self.base.to_path_buf(),
            redis: match &a.redis {
                None => None,
                Some(r) => {
                    let url = r.url.trim();
                    if !(url.starts_with("redis://")
                        || url.starts_with("rediss://")
                        || url.starts_with("redis+unix://"))
                    {
                        return Err(self.err("audit.redis.url", format!("`{url}` is not a redis:// URL")));
                    }
                    if redis::Client::open(url).is_err() {
                        return Err(self.err("audit.redis.url", format!("`{url}` is not a valid Redis URL")));
                    }
                    if r.stream.is_empty() {
                        return Err(self.err("audit.redis.stream", "must not be empty"));
                    }
                    Some(RedisSinkSettings { url: url.to_string(), stream: r.stream.clone(), maxlen: r.maxlen })
                }
            },
            file: a.file.as_ref().map(|f| self.path(&f.path)),
            otlp: match &a.otlp {
                None => None,
                Some(o) => {
                    let uri: http::Uri = o
                        .endpoint
                        .parse()
                        .map_err(|_| self.err("audit.otlp.endpoint", format!("`{}` is not a URL", o.endpoint)))?;
                    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                        return Err(
                            self.err("audit.otlp.endpoint", format!("`{}` must be http(s)://HOST:PORT", o.endpoint))
                        );
                    }
                    if o.timeout_secs == 0 {
                        return Err(self.err("audit.otlp.timeout_secs", "must be at least 1"));
                    }
                    Some((o.endpoint.clone(), Duration::from_secs(o.timeout_secs)))
                }
            },
            queue_limit: a.queue_limit,
            retry_max: Duration::from_millis(a.retry_max_ms),
            sink_alert_after: Duration::from_secs(a.sink_alert_secs),
            spool_max_bytes: a.spool_max_bytes,
            webhook: match &a.webhook {
                None => None,
                Some(w) => Some(self.webhook(w, &self.path(&a.dir))?),
            },
        })
    }

    fn webhook(&self, w: &schema::AuditWebhook, audit_dir: &Path) -> Result<WebhookSinkSettings, ConfigError> {
        let uri: http::Uri =
            w.url.parse().map_err(|_| self.err("audit.webhook.url", format!("`{}` is not a URL", w.url)))?;
        let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => {
                return Err(self.err(
                    "audit.webhook.url",
                    format!("`{}` must be https:// (plain http:// only to a loopback address)", w.url),
                ))
            }
        }
        let secret = w.secret.load(self.base).map_err(|m| self.err("audit.webhook.secret", m))?;
        if secret.expose().len() < 16 {
            return Err(self.err("audit.webhook.secret", "must be at least 16 bytes"));
        }
        let ca = match &w.ca {
            None => None,
            Some(p) => {
                self.certs("audit.webhook.ca", p)?;
                Some(std::fs::read(self.path(p)).map_err(|e| self.err("audit.webhook.ca", e.to_string()))?)
            }
        };
        if w.timeout_secs == 0 {
            return Err(self.err("audit.webhook.timeout_secs", "must be at least 1"));
        }
        if w.max_tries.is_some() {
            return Err(self.err(
                "audit.webhook.max_tries",
                "is gone: a batch is retried until the receiver takes it (or refuses it for good: then it is dead-lettered); remove the key",
            ));
        }
        if w.dead_letter.is_some() {
            return Err(self.err(
                "audit.webhook.dead_letter",
                format!(
                    "is gone: dead letters are kept in {} for `custos audit redeliver`; remove the key",
                    dead_letter_dir(audit_dir, "webhook").display()
                ),
            ));
        }
        Ok(WebhookSinkSettings { url: w.url.clone(), secret, ca, timeout: Duration::from_secs(w.timeout_secs) })
    }
}

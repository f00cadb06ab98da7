//! `[audit]` and its sinks as written.

use super::yes;
use crate::config::secret::SecretRef;
use serde::Deserialize;
use std::path::PathBuf;

/// `[audit]`: the hash-chained, metadata-only audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// Record every access decision. Default true; false is for benchmarks only.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The spool: segment files of this instance's chain, its instance id and, unless
    /// `signing_key` is set, its checkpoint key. Default `audit` beside the config.
    #[serde(default = "default_audit_dir")]
    pub dir: PathBuf,
    /// `"deny"` (default): answer 503 when the spool cannot be written.
    /// `"allow"`: keep serving and raise an alert.
    #[serde(default)]
    pub on_failure: crate::config::audit::OnFailure,
    /// A new segment file starts past this size. Default 64 MiB.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// A signed checkpoint after this many records… Default 1000.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// …or this many seconds, whichever comes first. Default 60.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// Ed25519 private key (PKCS#8 PEM) for checkpoints; default: made in `dir`.
    pub signing_key: Option<SecretRef>,
    /// `[audit.redis]`: deliver every record to a Redis Stream.
    pub redis: Option<AuditRedis>,
    /// `[audit.file]`: deliver every record to a JSONL archive file.
    pub file: Option<AuditFile>,
    /// `[audit.webhook]`: deliver every record to an HTTPS endpoint (a SIEM).
    pub webhook: Option<AuditWebhook>,
    /// `[audit.otlp]`: deliver every record as an OpenTelemetry log record, and each
    /// request as a span, to an OTLP/HTTP collector.
    pub otlp: Option<AuditOtlp>,
    /// Records waiting for the writer beyond which new access is refused. Default 100000.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// The longest wait between two delivery tries of a sink, in ms. Default 5000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// A sink that has taken nothing for this long raises an ALERT. Default 300.
    #[serde(default = "default_sink_alert_secs")]
    pub sink_alert_secs: u64,
    /// The spool's size limit (segment files); then `on_failure` applies. 0: none.
    /// Default 10 GiB.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
}

fn default_retry_max_ms() -> u64 {
    crate::config::audit::RETRY_MAX.as_millis() as u64
}
fn default_sink_alert_secs() -> u64 {
    crate::config::audit::SINK_ALERT_AFTER.as_secs()
}
fn default_spool_max_bytes() -> u64 {
    crate::config::audit::SPOOL_MAX_BYTES
}

fn default_queue_limit() -> usize {
    crate::config::audit::QUEUE_LIMIT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditOtlp {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`.
    pub endpoint: String,
    /// Seconds per export. Default 10.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditWebhook {
    /// `https://…` (plain `http://` only to a loopback address).
    pub url: String,
    /// The HMAC-SHA256 key shared with the receiver: `{ file = … }` or `{ env = … }`.
    pub secret: SecretRef,
    /// PEM CA bundle for the receiver's certificate. Default: the system's roots.
    pub ca: Option<PathBuf>,
    /// Gone (batches are retried until taken); refused with a message saying so.
    pub max_tries: Option<u32>,
    /// Gone (dead letters live in `dir/dead-letters/webhook/`); refused likewise.
    pub dead_letter: Option<PathBuf>,
    /// Seconds per try. Default 10.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRedis {
    /// `redis://host:port/db`.
    pub url: String,
    /// Stream key. Default `custos:audit`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Approximate cap on the stream's length. Default 1,000,000.
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
}

fn default_stream() -> String {
    "custos:audit".into()
}
fn default_maxlen() -> u64 {
    1_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// The archive file (relative to the config's folder).
    pub path: PathBuf,
}

fn default_audit_dir() -> PathBuf {
    PathBuf::from("audit")
}
fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_checkpoint_every() -> u64 {
    1000
}
fn default_checkpoint_secs() -> u64 {
    60
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: true,
            dir: default_audit_dir(),
            on_failure: Default::default(),
            segment_bytes: default_segment_bytes(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_secs: default_checkpoint_secs(),
            signing_key: None,
            redis: None,
            file: None,
            webhook: None,
            otlp: None,
            queue_limit: default_queue_limit(),
            retry_max_ms: default_retry_max_ms(),
            sink_alert_secs: default_sink_alert_secs(),
            spool_max_bytes: default_spool_max_bytes(),
        }
    }
}

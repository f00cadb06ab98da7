//! `[log]`: the output format and a `tracing` filter, checked at load.

use super::{schema, ConfigError, Validator};
pub use schema::LogFormat;

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Validator<'_> {
    pub(super) fn log(&self, raw: &schema::Log) -> Result<LogSettings, ConfigError> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.level) {
            return Err(self.err("log.level", format!("not a tracing filter: {e}")));
        }
        Ok(LogSettings { format: raw.format, level: raw.level.clone() })
    }
}

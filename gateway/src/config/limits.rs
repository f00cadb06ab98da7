//! `[limits]` and each route's `[routes.limits]`: sizes and timeouts, site-wide with
//! per-route overrides, each with a sane ceiling.

use super::{schema, ConfigError, Validator};
use std::time::Duration;

/// The largest `limits.max_header_bytes`: pingora's HTTP/1 reader itself stops at 1 MiB
/// (answering 400), so a limit must sit well below it to be the one that answers.
pub const MAX_HEADER_BYTES: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    pub client_read_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 10 * 1024 * 1024,
            client_read_timeout: Duration::from_secs(30),
            client_idle_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_read_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    pub(super) fn overlay(self, o: &schema::Limits) -> Limits {
        let secs = Duration::from_secs;
        Limits {
            max_header_bytes: o.max_header_bytes.unwrap_or(self.max_header_bytes),
            max_headers: o.max_headers.unwrap_or(self.max_headers),
            max_body_bytes: o.max_body_bytes.unwrap_or(self.max_body_bytes),
            client_read_timeout: o.client_read_timeout_secs.map_or(self.client_read_timeout, secs),
            client_idle_timeout: o.client_idle_timeout_secs.map_or(self.client_idle_timeout, secs),
            upstream_connect_timeout: o.upstream_connect_timeout_secs.map_or(self.upstream_connect_timeout, secs),
            upstream_read_timeout: o.upstream_read_timeout_secs.map_or(self.upstream_read_timeout, secs),
        }
    }
}

impl Validator<'_> {
    pub(super) fn check_limits(&self, key: &str, l: &Limits) -> Result<(), ConfigError> {
        if l.max_header_bytes < 1024 || l.max_header_bytes > MAX_HEADER_BYTES {
            return Err(
                self.err(format!("{key}.max_header_bytes"), format!("must be between 1024 and {MAX_HEADER_BYTES}"))
            );
        }
        if l.max_headers == 0 || l.max_headers > 256 {
            return Err(self.err(format!("{key}.max_headers"), "must be between 1 and 256"));
        }
        for (name, d) in [
            ("client_read_timeout_secs", l.client_read_timeout),
            ("client_idle_timeout_secs", l.client_idle_timeout),
            ("upstream_connect_timeout_secs", l.upstream_connect_timeout),
            ("upstream_read_timeout_secs", l.upstream_read_timeout),
        ] {
            if d.is_zero() {
                return Err(self.err(format!("{key}.{name}"), "must be at least 1 second"));
            }
            self.at_most(&format!("{key}.{name}"), d.as_secs(), 86_400)?;
        }
        Ok(())
    }
}

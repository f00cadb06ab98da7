//! `[headers]`: the configured identity headers to strip and the trusted proxies, and
//! the names the gateway itself strips, sets or reads (which a route's
//! `underscore_headers` may not spell), so validation and the proxy share one list.

use super::{schema, ConfigError, Validator};
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct HeaderSettings {
    /// Lower-case header names removed from every request (plus `x-custos-*`).
    pub strip: Vec<http::HeaderName>,
    pub trusted_proxies: Vec<IpNet>,
    /// Responses carry the request's `X-Request-Id` (`headers.echo_request_id`).
    pub echo_request_id: bool,
}

/// Every header in the gateway's namespace starts with this.
pub const IDENTITY_NAMESPACE: &str = "x-custos-";

/// Headers upstream frameworks read to re-route a request (IIS, Symfony, Zend) or to run
/// it as another method (Express, Rails, Laravel, Google APIs): the policy judged the
/// method and the path it saw, so these are removed from every request, whatever
/// `[headers] strip` says.
pub const OVERRIDES: [&str; 6] =
    ["x-original-url", "x-rewrite-url", "x-host", "x-http-method-override", "x-http-method", "x-method-override"];

/// Headers that name the client or the original scheme, host, port or prefix: kept only
/// from a trusted proxy, like `X-Forwarded-For`.
pub const CLIENT_NAMING: [&str; 17] = [
    "forwarded",
    "x-forwarded-scheme",
    "x-forwarded-protocol",
    "x-url-scheme",
    "front-end-https",
    "x-forwarded-server",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-ssl",
    "x-original-forwarded-for",
];

/// Headers the gateway writes itself, or reads to decide who is asking.
const SET_OR_READ: [&str; 11] = [
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "traceparent",
    "tracestate",
    "authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
];

/// Whether a header name (lower case, `_` read as `-`) is one the gateway strips, sets
/// or reads, so a route may not let its underscore spelling through.
pub fn reserved(name: &str, strip: &[http::HeaderName]) -> bool {
    let dashed = name.replace('_', "-");
    dashed.starts_with(IDENTITY_NAMESPACE)
        || strip.iter().any(|h| h.as_str() == dashed)
        || OVERRIDES.contains(&dashed.as_str())
        || CLIENT_NAMING.contains(&dashed.as_str())
        || SET_OR_READ.contains(&dashed.as_str())
}

impl Validator<'_> {
    pub(super) fn headers(&self, raw: &schema::Headers) -> Result<HeaderSettings, ConfigError> {
        let mut strip = Vec::with_capacity(raw.strip.len());
        for (i, h) in raw.strip.iter().enumerate() {
            let name = http::HeaderName::from_bytes(h.trim().as_bytes())
                .map_err(|_| self.err(format!("headers.strip[{i}]"), format!("`{h}` is not a header name")))?;
            strip.push(name);
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.trusted_proxies.iter().enumerate() {
            let net = p.parse::<IpNet>().or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                self.err(format!("headers.trusted_proxies[{i}]"), format!("`{p}` is not an IP or CIDR"))
            })?;
            trusted_proxies.push(net);
        }
        Ok(HeaderSettings { strip, trusted_proxies, echo_request_id: raw.echo_request_id })
    }
}

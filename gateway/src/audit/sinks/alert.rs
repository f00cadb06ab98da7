//! The break-glass alert receivers, as sinks: [`crate::access::breakglass::alert`] queues each
//! alert as a `breakglass.alert` record on the spool, and one alert sink per
//! `[[breakglass.alerts]]` receiver delivers it from there: as the Slack message or the
//! JSON alert object (with the record's `id`, so a receiver can drop a repeat), signed
//! as before (`x-custos-timestamp`, `x-custos-signature: v1=…` over `v1:{timestamp}:
//! {body}`; no other header carries meaning). So alerts get the audit sinks' guarantees:
//! they survive restarts, and a receiver that is down gets them once it is back,
//! retried with capped backoff for as long as it takes. Other records are skipped.
//!
//! What an alert says ([`AlertEvent`]), its Slack text and its signature are defined
//! here, beside their delivery: break-glass builds the events and queues them.

use super::{http_failure, Failure, Line, Sink};
use crate::audit::{Code, Kind};
use crate::config::breakglass::{Alert, AlertFormat};
use crate::config::clock::now_secs;
use crate::config::hash::hex_lower;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertKind {
    /// A declared emergency started.
    #[serde(rename = "breakglass.started")]
    Started,
    /// A sealed link was used.
    #[serde(rename = "breakglass.link_used")]
    LinkUsed,
    /// A used sealed link was presented again (and refused).
    #[serde(rename = "breakglass.link_reused")]
    LinkReused,
    /// A sealed link was spent by wrong TOTP codes.
    #[serde(rename = "breakglass.link_spent")]
    LinkSpent,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Started => "breakglass.started",
            AlertKind::LinkUsed => "breakglass.link_used",
            AlertKind::LinkReused => "breakglass.link_reused",
            AlertKind::LinkSpent => "breakglass.link_spent",
        }
    }

    /// The reason the alert's `breakglass.alert` record carries.
    pub fn code(self) -> Code {
        match self {
            AlertKind::Started => Code::AlertStarted,
            AlertKind::LinkUsed => Code::AlertLinkUsed,
            AlertKind::LinkReused => Code::AlertLinkReused,
            AlertKind::LinkSpent => Code::AlertLinkSpent,
        }
    }
}

/// What an alert says. No PHI: who, which route and scope, when, the grant, the case
/// reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertEvent {
    pub event: AlertKind,
    pub who: String,
    pub route: String,
    /// `route` (the whole route) or the path declared.
    pub scope: Option<String>,
    /// RFC 3339.
    pub when: String,
    pub grant: Option<String>,
    pub case_ref: Option<String>,
    pub expires: Option<u64>,
    pub justification_sha256: Option<String>,
    pub justification_len: Option<usize>,
    /// Only with `audit_justification = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

impl AlertEvent {
    /// An alert of `event` about `who` on `route`, now; the rest to fill in.
    pub fn new(event: AlertKind, who: &str, route: &str) -> AlertEvent {
        AlertEvent {
            event,
            who: who.to_string(),
            route: route.to_string(),
            scope: None,
            when: rfc3339(now_secs()),
            grant: None,
            case_ref: None,
            expires: None,
            justification_sha256: None,
            justification_len: None,
            justification: None,
        }
    }
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Signs an alert body as Custos does: `x-custos-signature: v1=<hex HMAC-SHA256(secret,
/// "v1:" + timestamp + ":" + body)>` with the timestamp in `x-custos-timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("v1:{timestamp}:").as_bytes());
    ctx.update(body);
    format!("v1={}", hex_lower(ctx.sign().as_ref()))
}

/// The Slack message of an alert.
pub fn slack_text(e: &AlertEvent) -> String {
    let what = match e.event {
        AlertKind::LinkUsed => "Sealed emergency link used",
        AlertKind::LinkReused => "SECOND USE of a sealed emergency link refused",
        AlertKind::LinkSpent => "Sealed emergency link SPENT by wrong TOTP codes (guessing?)",
        AlertKind::Started => "Break-glass emergency access started",
    };
    let mut t = format!(":rotating_light: *{what}*: `{}` on route `{}`", e.who, e.route);
    if let Some(s) = &e.scope {
        t.push_str(&format!(" (scope `{s}`)"));
    }
    t.push_str(&format!(" at {}", e.when));
    if let Some(g) = &e.grant {
        t.push_str(&format!(", grant `{g}`"));
    }
    if let Some(c) = &e.case_ref {
        t.push_str(&format!(", case `{c}`"));
    }
    t
}

pub struct AlertSink {
    name: String,
    alert: Alert,
    client: reqwest::Client,
    /// (first seq of the batch being tried, the last alert of it this receiver took):
    /// a retry of that batch skips what was taken.
    taken: Option<(u64, u64)>,
}

impl AlertSink {
    pub fn new(alert: &Alert) -> Result<AlertSink, String> {
        // Alerts go out through the host's proxy settings, as before (a chat service is
        // usually off-site).
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("breakglass.alerts: {e}"))?;
        Ok(AlertSink { name: sink_name(&alert.url), alert: alert.clone(), client, taken: None })
    }
}

/// `alert-` and 12 hex digits of the receiver URL's SHA-256: stable when receivers are
/// reordered, new when a URL changes, and no secret from a webhook URL's path in file
/// names, metrics or logs.
pub fn sink_name(url: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    format!("alert-{}", &hex::encode(d.as_ref())[..12])
}

fn body(format: AlertFormat, id: &str, alert: &serde_json::Value) -> Vec<u8> {
    match format {
        AlertFormat::Json => {
            let mut v = alert.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), id.into());
            }
            serde_json::to_vec(&v)
        }
        AlertFormat::Slack => {
            let text = serde_json::from_value::<AlertEvent>(alert.clone())
                .map(|e| slack_text(&e))
                .unwrap_or_else(|_| ":rotating_light: *Break-glass alert*".into());
            serde_json::to_vec(&serde_json::json!({ "text": text }))
        }
    }
    .unwrap_or_default()
}

#[async_trait]
impl Sink for AlertSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, batch: &[Line]) -> Result<(), Failure> {
        let Some(first) = batch.first().map(|l| l.record.seq) else { return Ok(()) };
        let skip = self.taken.filter(|t| t.0 == first).map_or(0, |t| t.1);
        for l in batch {
            let ev = &l.record.event;
            if l.record.seq <= skip {
                continue;
            }
            let Some(alert) = ev.alert.as_ref().filter(|_| ev.kind == Kind::BreakglassAlert) else { continue };
            let body = body(self.alert.format, &ev.id, alert);
            let ts = now_secs();
            let mut req = self.client.post(&self.alert.url).header("content-type", "application/json");
            if let Some(s) = &self.alert.secret {
                req = req
                    .header("x-custos-timestamp", ts.to_string())
                    .header("x-custos-signature", sign(s.expose(), ts, &body));
            }
            match req.body(body).send().await {
                Ok(r) if r.status().is_success() => self.taken = Some((first, l.record.seq)),
                Ok(r) => {
                    return Err(http_failure(
                        r.status().as_u16(),
                        format!("the alert receiver answered {}", r.status()),
                    ))
                }
                Err(e) => return Err(Failure::Retry(format!("cannot reach the alert receiver: {}", e.without_url()))),
            }
        }
        self.taken = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_kinds_are_named_as_before() {
        for k in [AlertKind::Started, AlertKind::LinkUsed, AlertKind::LinkReused, AlertKind::LinkSpent] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<AlertKind>(&format!("\"{}\"", k.as_str())).unwrap(), k);
            assert_eq!(k.code().as_str(), k.as_str());
        }
    }

    #[test]
    fn a_signature_is_the_hmac_of_version_timestamp_and_body() {
        // HMAC-SHA256("k", "v1:1:{}"), as receivers check it.
        let want = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k"), b"v1:1:{}");
        assert_eq!(sign(b"k", 1, b"{}"), format!("v1={}", hex::encode(want.as_ref())));
    }
}

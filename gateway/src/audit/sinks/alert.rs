//! The break-glass alert receivers, as sinks: [`crate::breakglass::alert`] queues each
//! alert as a `breakglass.alert` record on the spool, and one alert sink per
//! `[[breakglass.alerts]]` receiver delivers it from there: as the Slack message or the
//! JSON alert object (with the record's `id`, so a receiver can drop a repeat), signed
//! as before (`x-custos-timestamp`, `x-custos-signature: v1=…` over `v1:{timestamp}:
//! {body}`; no other header carries meaning). So alerts get the audit sinks' guarantees:
//! they survive restarts, and a receiver that is down gets them once it is back,
//! retried with capped backoff for as long as it takes. Other records are skipped.

use super::{http_failure, Failure, Line, Sink};
use crate::audit::Kind;
use crate::breakglass::{Alert, AlertEvent, AlertFormat};
use async_trait::async_trait;
use std::time::Duration;

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
                .map(|e| crate::breakglass::slack_text(&e))
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
            let ts = crate::session::now_secs();
            let mut req = self.client.post(&self.alert.url).header("content-type", "application/json");
            if let Some(s) = &self.alert.secret {
                req = req
                    .header("x-custos-timestamp", ts.to_string())
                    .header("x-custos-signature", crate::breakglass::sign(s.expose(), ts, &body));
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

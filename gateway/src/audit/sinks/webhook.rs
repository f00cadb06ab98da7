//! The webhook sink, for SIEMs: batches of chain lines POSTed as NDJSON, signed with
//! HMAC-SHA256 over `v1:{timestamp}:{body}` (the scheme Slack uses for its requests), in
//! `X-Custos-Timestamp` and `X-Custos-Signature: v1=<hex>`. A receiver recomputes the
//! HMAC with the shared secret, compares in constant time, and refuses timestamps more
//! than five minutes off. A batch that fails `max_tries` times goes to a dead-letter
//! file (counted in `custos_audit_dead_letter_total`) so the sink moves on; between
//! tries the delivery loop backs off.

use super::{Line, Sink};
use async_trait::async_trait;
use ring::hmac;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    key: hmac::Key,
    max_tries: u32,
    dead_letter: PathBuf,
    /// (first seq of the batch being tried, tries so far)
    tries: (u64, u32),
}

impl WebhookSink {
    pub fn new(
        url: String,
        secret: &[u8],
        ca: Option<&[u8]>,
        timeout: Duration,
        max_tries: u32,
        dead_letter: PathBuf,
    ) -> Result<WebhookSink, String> {
        let mut b = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(5)).no_proxy();
        if let Some(pem) = ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("audit.webhook.ca: {e}"))? {
                b = b.add_root_certificate(cert);
            }
        }
        let client = b.build().map_err(|e| format!("audit.webhook: {e}"))?;
        Ok(WebhookSink {
            client,
            url,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            max_tries: max_tries.max(1),
            dead_letter,
            tries: (0, 0),
        })
    }

    fn sign(&self, timestamp: u64, body: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(format!("v1:{timestamp}:").as_bytes());
        ctx.update(body);
        format!("v1={}", hex::encode(ctx.sign().as_ref()))
    }

    fn bury(&self, body: &[u8]) -> std::io::Result<()> {
        let mut f = crate::audit::private::file().create(true).append(true).open(&self.dead_letter)?;
        f.write_all(body)?;
        f.sync_data()
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn deliver(&mut self, batch: &[Line]) -> Result<(), String> {
        let Some(first) = batch.first().map(|l| l.record.seq) else { return Ok(()) };
        let last = batch.last().map_or(first, |l| l.record.seq);
        let mut body = Vec::with_capacity(batch.iter().map(|l| l.bytes.len() + 1).sum());
        for l in batch {
            body.extend_from_slice(&l.bytes);
            body.push(b'\n');
        }
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-ndjson")
            .header("x-custos-timestamp", ts.to_string())
            .header("x-custos-signature", self.sign(ts, &body))
            .header("x-custos-records", format!("{first}-{last}"))
            .body(body.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => {
                self.tries = (0, 0);
                return Ok(());
            }
            Ok(r) => format!("the receiver answered {}", r.status()),
            Err(e) => format!("cannot reach the receiver: {e}"),
        };
        if self.tries.0 != first {
            self.tries = (first, 0);
        }
        self.tries.1 += 1;
        if self.tries.1 >= self.max_tries {
            tracing::error!(first, last, tries = self.tries.1, error = %failure, "webhook gave up on a batch; written to the dead-letter file");
            self.bury(&body).map_err(|e| format!("{}: {e}", self.dead_letter.display()))?;
            crate::http::metrics::AUDIT_DEAD_LETTER.inc_by(batch.len() as u64);
            self.tries = (0, 0);
            return Ok(());
        }
        Err(failure)
    }
}

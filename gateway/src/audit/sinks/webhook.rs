//! The webhook sink, for SIEMs: batches of chain lines POSTed as NDJSON, signed with
//! HMAC-SHA256 over `v2:{timestamp}:{records}:{body}` in `X-Custos-Timestamp`,
//! `X-Custos-Records` (`{first seq}-{last seq}`) and `X-Custos-Signature: v2=<hex>`.
//! Every header that carries meaning is in the signed string, so none can be changed on
//! the way. A receiver recomputes the HMAC with the shared secret, compares in constant
//! time, and refuses timestamps more than five minutes off. Answers are read by
//! [`super::http_failure`]: a batch is retried until taken unless the receiver says the
//! payload itself is bad.

use super::{http_failure, Failure, Line, Sink};
use async_trait::async_trait;
use ring::hmac;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    key: hmac::Key,
}

impl WebhookSink {
    pub fn new(
        url: String,
        secret: &[u8],
        ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<WebhookSink, super::SinkError> {
        let mut b = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(5)).no_proxy();
        if let Some(pem) = ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(super::SinkError::WebhookCa)? {
                b = b.add_root_certificate(cert);
            }
        }
        let client = b.build().map_err(super::SinkError::WebhookClient)?;
        Ok(WebhookSink { client, url, key: hmac::Key::new(hmac::HMAC_SHA256, secret) })
    }
}

/// `v2=<hex HMAC-SHA256(key, "v2:{timestamp}:{records}:{body}")>`.
pub fn sign(key: &hmac::Key, timestamp: u64, records: &str, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(format!("v2:{timestamp}:{records}:").as_bytes());
    ctx.update(body);
    format!("v2={}", hex::encode(ctx.sign().as_ref()))
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn deliver(&mut self, batch: &[Line]) -> Result<(), Failure> {
        let Some(first) = batch.first().map(|l| l.record.seq) else { return Ok(()) };
        let last = batch.last().map_or(first, |l| l.record.seq);
        let mut body = Vec::with_capacity(batch.iter().map(|l| l.bytes.len() + 1).sum());
        for l in batch {
            body.extend_from_slice(&l.bytes);
            body.push(b'\n');
        }
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let records = format!("{first}-{last}");
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-ndjson")
            .header("x-custos-timestamp", ts.to_string())
            .header("x-custos-signature", sign(&self.key, ts, &records, &body))
            .header("x-custos-records", records)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(http_failure(r.status().as_u16(), format!("the receiver answered {}", r.status()))),
            Err(e) => Err(Failure::Retry(format!("cannot reach the receiver: {}", e.without_url()))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_record_range_is_signed() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
        let a = super::sign(&key, 1, "1-2", b"x\n");
        assert!(a.starts_with("v2="));
        assert_ne!(a, super::sign(&key, 1, "1-3", b"x\n"));
        assert_ne!(a, super::sign(&key, 2, "1-2", b"x\n"));
    }
}

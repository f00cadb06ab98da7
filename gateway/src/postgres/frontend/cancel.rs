//! Cancel requests across gateways. Behind a load balancer a client's CancelRequest (a
//! new connection) may reach another gateway than the one holding its connection: a key
//! no connection here holds is published on `<prefix>:pg-cancel` in Redis, and the
//! gateway that holds it sends the cancel upstream. Each gateway keeps one subscription
//! for it, made again when lost.

use super::Frontend;
use redis::{PushInfo, PushKind, Value};
use std::sync::Arc;
use std::time::Duration;

impl Frontend {
    fn cancel_channel(&self) -> Option<String> {
        self.auth.as_ref().map(|a| format!("{}:pg-cancel", a.store.kv().prefix()))
    }

    /// A CancelRequest: sent upstream only for a key a connection holds (here, or on
    /// another gateway sharing the Redis), within the per-address limit.
    pub(super) async fn cancel(&self, c: crate::postgres::messages::startup::Cancel, client: &str) {
        if self.cancels.hit(client) {
            tracing::info!("cancel requests over the per-address limit; dropped");
            return;
        }
        if let Some(h) = self.keys.find(c.pid, &c.secret) {
            h.cancel().await;
            return;
        }
        let (Some(auth), Some(channel)) = (self.auth.as_ref(), self.cancel_channel()) else { return };
        let msg = format!("{} {}", c.pid, hex::encode(&c.secret));
        let sent: Result<i64, _> = auth.store.kv().query(redis::cmd("PUBLISH").arg(channel).arg(msg)).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not pass a cancel request on to the other gateways");
        }
    }

    /// Subscribes to the other gateways' cancel requests, for as long as the process runs.
    pub(super) async fn cancels_from_others(self: Arc<Self>) {
        let (Some(auth), Some(channel)) = (self.auth.clone(), self.cancel_channel()) else { return };
        let mut backoff = Duration::from_millis(100);
        loop {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
            let cfg = redis::AsyncConnectionConfig::new().set_push_sender(tx);
            let connected = async {
                let mut conn = auth.store.kv().push_client().get_multiplexed_async_connection_with_config(&cfg).await?;
                conn.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(conn)
            };
            let conn = match tokio::time::timeout(Duration::from_secs(5), connected).await {
                Ok(Ok(c)) => c,
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            while let Some(push) = rx.recv().await {
                match push.kind {
                    PushKind::Message => {
                        if let Some((pid, secret)) = push.data.get(1).and_then(text).as_deref().and_then(parse) {
                            if let Some(h) = self.keys.find(pid, &secret) {
                                tokio::spawn(async move { h.cancel().await });
                            }
                        }
                    }
                    PushKind::Disconnection => break,
                    _ => {}
                }
            }
            drop(conn);
            tracing::warn!("cancel channel: connection lost; subscribing again");
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_string),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `<pid> <secret hex>`.
fn parse(msg: &str) -> Option<(i32, Vec<u8>)> {
    let (pid, secret) = msg.split_once(' ')?;
    Some((pid.parse().ok()?, hex::decode(secret).ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_published_key_reads_back() {
        assert_eq!(super::parse("1234 0a0b0c0d"), Some((1234, vec![10, 11, 12, 13])));
        assert_eq!(super::parse("x 00"), None);
        assert_eq!(super::parse("12 zz"), None);
    }
}

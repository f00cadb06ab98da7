//! The Redis Stream sink: each record XADDed to one stream (approximate MAXLEN), with the
//! instance, sequence number, event id and kind as fields and the chain line as
//! `record`. A short-lived marker per event id, checked before and set after the XADD in
//! one Lua script, keeps retries from adding duplicates (and a failed XADD leaves no
//! marker, so the retry adds the record). Checkpoints are also kept per instance in
//! `<stream>:checkpoint:<instance>` (only ever moving forward), so `custos audit verify
//! --redis` can tell when a file's tail was cut.

use super::{Failure, Line, Sink};
use crate::audit::Kind;
use async_trait::async_trait;
use redis::aio::ConnectionManager;

/// KEYS: marker, stream, checkpoint hash. ARGV: marker ttl, maxlen, seq, id, kind,
/// instance, record, checkpoint seq (or ""), checkpoint hash, key, sig.
const SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'instance', ARGV[6], 'seq', ARGV[3], 'id', ARGV[4], 'kind', ARGV[5], 'record', ARGV[7])
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
end
if ARGV[8] ~= '' then
  local cur = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
  if tonumber(ARGV[8]) > cur then
    redis.call('HSET', KEYS[3], 'seq', ARGV[8], 'hash', ARGV[9], 'key', ARGV[10], 'sig', ARGV[11])
  end
end
return 1
"#;

/// How long a delivered id is remembered for de-duplication.
const MARKER_TTL_SECS: u64 = 7 * 24 * 3600;

pub struct RedisSink {
    client: redis::Client,
    conn: Option<ConnectionManager>,
    stream: String,
    maxlen: u64,
}

impl RedisSink {
    pub fn new(url: &str, stream: String, maxlen: u64) -> Result<RedisSink, super::SinkError> {
        let client = redis::Client::open(url).map_err(super::SinkError::RedisUrl)?;
        Ok(RedisSink { client, conn: None, stream, maxlen })
    }
}

/// The Redis key holding `instance`'s latest checkpoint.
pub fn checkpoint_key(stream: &str, instance: &str) -> String {
    format!("{stream}:checkpoint:{instance}")
}

#[async_trait]
impl Sink for RedisSink {
    fn name(&self) -> &str {
        "redis"
    }

    async fn deliver(&mut self, batch: &[Line]) -> Result<(), Failure> {
        if self.conn.is_none() {
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                .set_response_timeout(Some(std::time::Duration::from_secs(5)))
                .set_number_of_retries(1);
            let m = ConnectionManager::new_with_config(self.client.clone(), cfg)
                .await
                .map_err(|e| Failure::Retry(e.to_string()))?;
            self.conn = Some(m);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut pipe = redis::pipe();
        for l in batch {
            let ev = &l.record.event;
            let kind =
                serde_json::to_value(ev.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let (cs, ch, ck, csig) = match (&ev.checkpoint, ev.kind) {
                (Some(c), Kind::AuditCheckpoint) => (c.seq.to_string(), c.hash.clone(), c.key.clone(), c.sig.clone()),
                _ => Default::default(),
            };
            pipe.cmd("EVAL")
                .arg(SCRIPT)
                .arg(3)
                .arg(format!("{}:seen:{}", self.stream, ev.id))
                .arg(&self.stream)
                .arg(checkpoint_key(&self.stream, &ev.instance))
                .arg(MARKER_TTL_SECS)
                .arg(self.maxlen)
                .arg(l.record.seq)
                .arg(&ev.id)
                .arg(kind)
                .arg(&ev.instance)
                .arg(&l.bytes[..])
                .arg(cs)
                .arg(ch)
                .arg(ck)
                .arg(csig);
        }
        // EVAL (not EVALSHA) keeps one round trip per batch simple and survives a
        // restarted Redis that lost its script cache.
        let result: redis::RedisResult<Vec<i64>> = pipe.query_async(conn).await;
        result.map(|_| ()).map_err(|e| Failure::Retry(e.to_string()))
    }
}

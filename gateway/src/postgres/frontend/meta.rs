//! The metadata of a database connection's records: client, database, connection id and
//! upstream on every one; the verb, objects and fingerprint of the statement it is about.
//! Never a literal, a parameter or a row: a statement reaches here only as what
//! `statements` made of it.

use super::relay::Described;
use crate::audit::{Event, Kind};

/// What every record about one connection carries.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub client: String,
    /// The `[[databases]]` name.
    pub database: String,
    /// The connection's id (a UUIDv7).
    pub id: String,
    /// The upstream `host:port`.
    pub upstream: String,
    /// The connection's trace (W3C ids, hex), its statements spans under its span.
    pub trace_id: String,
    pub span_id: String,
}

/// `n` random bytes as hex (trace and span ids).
pub fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let b = &mut b[..n.min(16)];
    // Without randomness the ids are zero: spans are then dropped by collectors, nothing
    // else depends on them.
    let _ = ring::rand::SystemRandom::new().fill(b);
    hex::encode(b)
}

impl ConnInfo {
    pub fn new(client: String, database: String, upstream: String) -> ConnInfo {
        ConnInfo {
            client,
            database,
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            upstream,
            trace_id: random_hex(16),
            span_id: random_hex(8),
        }
    }
}

/// One record's metadata.
pub struct StmtMeta<'a> {
    pub info: &'a ConnInfo,
    /// The statement, when it was described.
    pub described: Option<&'a Described>,
    /// A record of the connection itself (`verb`: `connect`), not of a statement.
    pub connect: bool,
}

impl crate::access::Meta for StmtMeta<'_> {
    fn event(&self, kind: Kind) -> Event {
        let mut ev = Event::new(kind);
        ev.client = Some(self.info.client.clone());
        ev.database = Some(self.info.database.clone());
        ev.connection = Some(self.info.id.clone());
        ev.upstream = Some(self.info.upstream.clone());
        ev.trace_id = Some(self.info.trace_id.clone());
        ev.span_id = Some(self.info.span_id.clone());
        match self.described {
            Some(d) => {
                ev.verb = Some(d.verb.to_string());
                ev.objects = d.objects.clone();
                ev.fingerprint = d.fingerprint.clone();
                ev.span_id = Some(d.span_id.clone());
                ev.parent_span_id = Some(self.info.span_id.clone());
            }
            None if self.connect => ev.verb = Some("connect".to_string()),
            None => {}
        }
        ev
    }
}

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
        match self.described {
            Some(d) => {
                ev.verb = Some(d.verb.to_string());
                ev.objects = d.objects.clone();
                ev.fingerprint = d.fingerprint.clone();
            }
            None if self.connect => ev.verb = Some("connect".to_string()),
            None => {}
        }
        ev
    }
}

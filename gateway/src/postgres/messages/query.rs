//! Query (`Q`): the simple protocol's statement string, which may hold several statements.

use bytes::BytesMut;

use super::{frame, put_cstr, Reader, WireError};

pub const TAG: u8 = super::tags::frontend::QUERY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub sql: &'a str,
}

impl<'a> Query<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Query<'a>, WireError> {
        let mut r = Reader::new(body);
        let sql = r.cstr()?;
        r.finish()?;
        Ok(Query { sql })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        frame(out, TAG, |b| put_cstr(b, self.sql));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::Message;

    #[test]
    fn round_trips() {
        let mut out = BytesMut::new();
        Query { sql: "SELECT 1; SELECT 2" }.encode(&mut out);
        assert_eq!(&out[..], b"Q\0\0\0\x17SELECT 1; SELECT 2\0");
        let m = Message::from_raw(out.freeze()).unwrap();
        assert_eq!(Query::decode(&m.body).unwrap().sql, "SELECT 1; SELECT 2");
    }

    #[test]
    fn what_follows_the_nul_is_refused() {
        // The server stops at the NUL and refuses the rest: so must what Custos audits.
        assert!(matches!(Query::decode(b"SELECT 1\0DROP TABLE t\0"), Err(WireError::Malformed(_))));
        assert!(matches!(Query::decode(b"SELECT 1"), Err(WireError::Truncated)));
    }
}

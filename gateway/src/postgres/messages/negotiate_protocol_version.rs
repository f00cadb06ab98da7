//! NegotiateProtocolVersion (`v`): the newest minor version the server speaks and the
//! protocol options (`_pq_.…`) it did not recognise. Custos sends it to a client asking
//! for a newer 3.x or for options, which then goes on at the version offered.

use bytes::{BufMut, BytesMut};

use super::{frame, put_cstr, Reader, WireError};

pub const TAG: u8 = super::tags::backend::NEGOTIATE_PROTOCOL_VERSION;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateProtocolVersion<'a> {
    pub newest_minor: u16,
    pub unrecognized: Vec<&'a str>,
}

impl<'a> NegotiateProtocolVersion<'a> {
    pub fn decode(body: &'a [u8]) -> Result<NegotiateProtocolVersion<'a>, WireError> {
        let mut r = Reader::new(body);
        let version = r.u32()?;
        if version >> 16 != 3 {
            return Err(WireError::Malformed("protocol major version"));
        }
        let count = r.i32()?;
        let count = usize::try_from(count).map_err(|_| WireError::Malformed("negative option count"))?;
        // Each name takes at least its NUL, so a count past the body is refused unread.
        if count > body.len() {
            return Err(WireError::Truncated);
        }
        let unrecognized = (0..count).map(|_| r.cstr()).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(NegotiateProtocolVersion { newest_minor: (version & 0xffff) as u16, unrecognized })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        frame(out, TAG, |b| {
            b.put_u32(3 << 16 | u32::from(self.newest_minor));
            b.put_i32(i32::try_from(self.unrecognized.len()).unwrap_or(i32::MAX));
            for name in &self.unrecognized {
                put_cstr(b, name);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::encoded;

    #[test]
    fn round_trips() {
        let v = NegotiateProtocolVersion { newest_minor: 2, unrecognized: vec!["_pq_.grease", "_pq_.other"] };
        let raw = encoded(|o| v.encode(o));
        assert_eq!(&raw[..13], b"v\0\0\0\x23\0\x03\0\x02\0\0\0\x02");
        assert_eq!(NegotiateProtocolVersion::decode(&raw[5..]).unwrap(), v);
        let none = NegotiateProtocolVersion { newest_minor: 0, unrecognized: vec![] };
        assert_eq!(NegotiateProtocolVersion::decode(&encoded(|o| none.encode(o))[5..]).unwrap(), none);
    }

    #[test]
    fn refuses_bad_counts() {
        assert!(NegotiateProtocolVersion::decode(b"\0\x03\0\0\xff\xff\xff\xff").is_err());
        assert!(NegotiateProtocolVersion::decode(b"\0\x03\0\0\x7f\xff\xff\xff").is_err());
        assert!(NegotiateProtocolVersion::decode(b"\0\x03\0\0\0\0\0\x01a\0b\0").is_err());
        assert!(NegotiateProtocolVersion::decode(b"\0\x02\0\0\0\0\0\0").is_err());
    }
}

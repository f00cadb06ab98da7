//! ParameterStatus (`S` from the server): a run-time parameter's value, sent at startup
//! and whenever a reported one changes (`server_version`, `client_encoding`, `TimeZone`…).

use bytes::BytesMut;

use super::{frame, put_cstr, Reader, WireError};

pub const TAG: u8 = super::tags::backend::PARAMETER_STATUS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    pub fn decode(body: &'a [u8]) -> Result<ParameterStatus<'a>, WireError> {
        let mut r = Reader::new(body);
        let (name, value) = (r.cstr()?, r.cstr()?);
        r.finish()?;
        Ok(ParameterStatus { name, value })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        frame(out, TAG, |b| {
            put_cstr(b, self.name);
            put_cstr(b, self.value);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::encoded;

    #[test]
    fn round_trips() {
        let p = ParameterStatus { name: "server_version", value: "15.8" };
        let raw = encoded(|o| p.encode(o));
        assert_eq!(&raw[..], b"S\0\0\0\x18server_version\x0015.8\0");
        assert_eq!(ParameterStatus::decode(&raw[5..]).unwrap(), p);
        assert!(ParameterStatus::decode(b"a\0").is_err());
        assert!(ParameterStatus::decode(b"a\0b\0c").is_err());
    }
}

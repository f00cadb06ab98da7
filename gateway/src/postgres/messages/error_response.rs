//! ErrorResponse (`E` from the server) and NoticeResponse (`N`), which share a body: typed
//! fields, each a byte and a string, ended by a zero byte. Custos reads the severity, the
//! SQLSTATE and the message (the completion record's SQLSTATE, a refusal's code) and
//! writes its own FATALs and ERRORs with S, V, C and M, as PostgreSQL does.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::{frame, put_cstr, Reader, WireError};

pub const TAG: u8 = super::tags::backend::ERROR_RESPONSE;
pub const NOTICE_TAG: u8 = super::tags::backend::NOTICE_RESPONSE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse<'a> {
    /// The untranslated severity (`V`), else the localised one (`S`): ERROR, FATAL, PANIC,
    /// WARNING, NOTICE…
    pub severity: Cow<'a, str>,
    /// The SQLSTATE (`C`).
    pub code: Cow<'a, str>,
    /// The primary message (`M`), in whatever encoding the server wrote it, read lossily:
    /// before startup ends that is the server's, not necessarily UTF-8.
    pub message: Cow<'a, str>,
}

impl<'a> ErrorResponse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<ErrorResponse<'a>, WireError> {
        let mut r = Reader::new(body);
        let (mut v, mut s, mut code, mut message) = (None, None, None, None);
        loop {
            let field = r.u8()?;
            if field == 0 {
                break;
            }
            let value = String::from_utf8_lossy(r.cstr_bytes()?);
            match field {
                b'V' => v = Some(value),
                b'S' => s = Some(value),
                b'C' => code = Some(value),
                b'M' => message = Some(value),
                _ => {}
            }
        }
        r.finish()?;
        Ok(ErrorResponse {
            severity: v.or(s).ok_or(WireError::Malformed("no severity"))?,
            code: code.ok_or(WireError::Malformed("no SQLSTATE"))?,
            message: message.ok_or(WireError::Malformed("no message"))?,
        })
    }

    pub fn fatal(code: &'a str, message: &'a str) -> ErrorResponse<'a> {
        ErrorResponse { severity: "FATAL".into(), code: code.into(), message: message.into() }
    }

    pub fn error(code: &'a str, message: &'a str) -> ErrorResponse<'a> {
        ErrorResponse { severity: "ERROR".into(), code: code.into(), message: message.into() }
    }

    pub fn is_fatal(&self) -> bool {
        matches!(&*self.severity, "FATAL" | "PANIC")
    }

    /// As an ErrorResponse.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_as(out, TAG);
    }

    /// As a NoticeResponse.
    pub fn encode_notice(&self, out: &mut BytesMut) {
        self.encode_as(out, NOTICE_TAG);
    }

    fn encode_as(&self, out: &mut BytesMut, tag: u8) {
        frame(out, tag, |b| {
            for (field, value) in
                [(b'S', &self.severity), (b'V', &self.severity), (b'C', &self.code), (b'M', &self.message)]
            {
                b.put_u8(field);
                put_cstr(b, value);
            }
            b.put_u8(0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::{encoded, Message};

    #[test]
    fn round_trips_what_custos_writes() {
        let e = ErrorResponse::fatal("28000", "connect with sslmode=verify-full");
        let m = Message::from_raw(encoded(|o| e.encode(o))).unwrap();
        assert_eq!(m.tag, TAG);
        assert_eq!(&m.body[..], b"SFATAL\0VFATAL\0C28000\0Mconnect with sslmode=verify-full\0\0");
        let back = ErrorResponse::decode(&m.body).unwrap();
        assert_eq!(back, e);
        assert!(back.is_fatal());
        let n = Message::from_raw(encoded(|o| ErrorResponse::error("42601", "x").encode_notice(o))).unwrap();
        assert_eq!(n.tag, NOTICE_TAG);
        assert!(!ErrorResponse::decode(&n.body).unwrap().is_fatal());
    }

    #[test]
    fn reads_a_servers_error_preferring_the_untranslated_severity() {
        let body = b"SFEHLER\0VERROR\0C42P01\0MRelation \xabt\xbb existiert nicht\0P15\0Fparse_relation.c\0\0";
        let e = ErrorResponse::decode(body).unwrap();
        assert_eq!((&*e.severity, &*e.code), ("ERROR", "42P01"));
        assert!(e.message.starts_with("Relation"));
        let old = ErrorResponse::decode(b"SFATAL\0C28P01\0Mno\0\0").unwrap();
        assert_eq!(&*old.severity, "FATAL");
    }

    #[test]
    fn refuses_incomplete_fields() {
        assert!(matches!(ErrorResponse::decode(b"SERROR\0C42601\0"), Err(WireError::Truncated)));
        assert!(matches!(ErrorResponse::decode(b"SERROR\0Mx\0\0"), Err(WireError::Malformed(_))));
        assert!(matches!(ErrorResponse::decode(b"SERROR\0C1\0Mx\0\0z"), Err(WireError::Malformed(_))));
    }
}

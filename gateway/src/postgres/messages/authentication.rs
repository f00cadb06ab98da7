//! Authentication (`R`): the server's requests during sign-in and its final Ok. Custos
//! reads them from the upstream to answer as asked, and sends Ok and CleartextPassword
//! to its own clients (a database token is a password, asked for inside TLS only).

use bytes::{BufMut, BytesMut};

use super::{frame, Reader, WireError};

pub const TAG: u8 = super::tags::backend::AUTHENTICATION;

/// The mechanism Custos speaks in a SASL exchange.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    /// The mechanisms the server offers, in its order.
    Sasl {
        mechanisms: Vec<&'a str>,
    },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    /// A method Custos does not speak (Kerberos 2, GSS 7 and 8, SSPI 9, or unknown).
    Other(i32),
}

impl<'a> Authentication<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Authentication<'a>, WireError> {
        let mut r = Reader::new(body);
        let got = match r.i32()? {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.bytes(4)?;
                Authentication::Md5Password { salt: [s[0], s[1], s[2], s[3]] }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    match r.cstr()? {
                        "" => break,
                        m => mechanisms.push(m),
                    }
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue(r.rest()),
            12 => Authentication::SaslFinal(r.rest()),
            // Methods Custos refuses carry data it does not read.
            other => {
                r.rest();
                Authentication::Other(other)
            }
        };
        r.finish()?;
        Ok(got)
    }

    pub fn encode_ok(out: &mut BytesMut) {
        frame(out, TAG, |b| b.put_i32(0));
    }

    pub fn encode_cleartext_password(out: &mut BytesMut) {
        frame(out, TAG, |b| b.put_i32(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::encoded;

    #[test]
    fn decodes_every_request() {
        let cases: [(&[u8], Authentication<'_>); 7] = [
            (b"\0\0\0\0", Authentication::Ok),
            (b"\0\0\0\x03", Authentication::CleartextPassword),
            (b"\0\0\0\x05\x01\x02\x03\x04", Authentication::Md5Password { salt: [1, 2, 3, 4] }),
            (
                b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0",
                Authentication::Sasl { mechanisms: vec!["SCRAM-SHA-256-PLUS", SCRAM_SHA_256] },
            ),
            (b"\0\0\0\x0br=abc,s=xyz,i=4096", Authentication::SaslContinue(b"r=abc,s=xyz,i=4096")),
            (b"\0\0\0\x0cv=sig", Authentication::SaslFinal(b"v=sig")),
            (b"\0\0\0\x07", Authentication::Other(7)),
        ];
        for (body, want) in cases {
            assert_eq!(Authentication::decode(body).unwrap(), want);
        }
    }

    #[test]
    fn refuses_short_or_padded_requests() {
        assert!(matches!(Authentication::decode(b"\0\0\0\x05\x01\x02"), Err(WireError::Truncated)));
        assert!(matches!(Authentication::decode(b"\0\0\0\0\0"), Err(WireError::Malformed(_))));
        assert!(matches!(Authentication::decode(b"\0\0\0\x0aSCRAM-SHA-256\0"), Err(WireError::Truncated)));
    }

    #[test]
    fn encodes_ok_and_the_password_request() {
        assert_eq!(&encoded(Authentication::encode_ok)[..], b"R\0\0\0\x08\0\0\0\0");
        assert_eq!(&encoded(Authentication::encode_cleartext_password)[..], b"R\0\0\0\x08\0\0\0\x03");
    }
}

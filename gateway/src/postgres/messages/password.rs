//! The client's answers to an authentication request, all tagged `p`: which one a message
//! is depends on what the server asked (the body does not say), so [`Password::decode`]
//! takes the expectation. Custos decodes them from clients (a database token arrives as a
//! cleartext password inside TLS) and encodes them to the upstream. Their contents are
//! credentials: `Debug` prints none of them.

use bytes::{BufMut, BytesMut};

use super::{frame, put_cstr, Reader, WireError};

pub const TAG: u8 = super::tags::frontend::PASSWORD;

/// What the server's last authentication request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expecting {
    /// AuthenticationCleartextPassword or MD5Password: a password string.
    Password,
    /// AuthenticationSASL: the chosen mechanism and its first message.
    SaslInitial,
    /// AuthenticationSASLContinue: the next message of the exchange.
    SaslResponse,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Password<'a> {
    Cleartext(&'a str),
    /// `data` is `None` when the client sent length -1 (no initial response).
    SaslInitial {
        mechanism: &'a str,
        data: Option<&'a [u8]>,
    },
    SaslResponse(&'a [u8]),
}

impl std::fmt::Debug for Password<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Password::Cleartext(_) => f.write_str("Cleartext(..)"),
            Password::SaslInitial { mechanism, .. } => write!(f, "SaslInitial({mechanism}, ..)"),
            Password::SaslResponse(_) => f.write_str("SaslResponse(..)"),
        }
    }
}

impl<'a> Password<'a> {
    pub fn decode(body: &'a [u8], expecting: Expecting) -> Result<Password<'a>, WireError> {
        let mut r = Reader::new(body);
        let got = match expecting {
            Expecting::Password => Password::Cleartext(r.cstr()?),
            Expecting::SaslInitial => {
                let mechanism = r.cstr()?;
                let data = match r.i32()? {
                    -1 => None,
                    n => Some(r.bytes(usize::try_from(n).map_err(|_| WireError::Malformed("SASL data length"))?)?),
                };
                Password::SaslInitial { mechanism, data }
            }
            Expecting::SaslResponse => Password::SaslResponse(r.rest()),
        };
        r.finish()?;
        Ok(got)
    }

    pub fn encode(&self, out: &mut BytesMut) {
        frame(out, TAG, |b| match *self {
            Password::Cleartext(p) => put_cstr(b, p),
            Password::SaslInitial { mechanism, data } => {
                put_cstr(b, mechanism);
                match data {
                    // SASL messages are a few hundred bytes; a length past i32 cannot be sent.
                    Some(d) => {
                        b.put_i32(i32::try_from(d.len()).unwrap_or(i32::MAX));
                        b.put_slice(d);
                    }
                    None => b.put_i32(-1),
                }
            }
            Password::SaslResponse(d) => b.put_slice(d),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::Message;

    fn round_trip(p: Password<'_>, expecting: Expecting) {
        let mut out = BytesMut::new();
        p.encode(&mut out);
        let m = Message::from_raw(out.freeze()).unwrap();
        assert_eq!(m.tag, TAG);
        assert_eq!(Password::decode(&m.body, expecting).unwrap(), p);
    }

    #[test]
    fn each_kind_round_trips() {
        round_trip(Password::Cleartext("s3cret"), Expecting::Password);
        round_trip(
            Password::SaslInitial { mechanism: "SCRAM-SHA-256", data: Some(b"n,,n=,r=abc") },
            Expecting::SaslInitial,
        );
        round_trip(Password::SaslInitial { mechanism: "SCRAM-SHA-256", data: None }, Expecting::SaslInitial);
        round_trip(Password::SaslResponse(b"c=biws,r=abc,p=xyz"), Expecting::SaslResponse);
        round_trip(Password::SaslResponse(b""), Expecting::SaslResponse);
    }

    #[test]
    fn the_expectation_decides_and_bad_lengths_are_refused() {
        let mut out = BytesMut::new();
        Password::SaslInitial { mechanism: "SCRAM-SHA-256", data: Some(b"abc") }.encode(&mut out);
        assert!(Password::decode(&out[5..], Expecting::Password).is_err());
        assert!(matches!(
            Password::decode(b"M\0\xff\xff\xff\xfe", Expecting::SaslInitial),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(Password::decode(b"M\0\0\0\0\x09abc", Expecting::SaslInitial), Err(WireError::Truncated)));
        assert!(matches!(Password::decode(b"pw", Expecting::Password), Err(WireError::Truncated)));
    }

    #[test]
    fn debug_prints_no_credential() {
        let shown = format!("{:?} {:?}", Password::Cleartext("hunter2"), Password::SaslResponse(b"p=proof"));
        assert!(!shown.contains("hunter2") && !shown.contains("proof"));
    }
}

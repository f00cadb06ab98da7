//! The first packet a client sends, which has no tag: a StartupMessage, or one of the
//! requests that share its framing (SSLRequest, GSSENCRequest, CancelRequest), told apart
//! by the code where a startup packet holds its protocol version.
//!
//! [`read_initial`] reads exactly one packet and nothing past it: after an SSLRequest the
//! next bytes are the TLS handshake, and bytes buffered from before it would be bytes no
//! handshake protected (the "buffer stuffing" of CVE-2021-23214). A client using
//! PostgreSQL 17's direct TLS opens with a TLS record instead (first byte
//! [`TLS_HANDSHAKE`]): peek for it before calling [`read_initial`].

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{frame_untagged, put_cstr, Reader, WireError};

/// PostgreSQL's own cap on a startup packet (`MAX_STARTUP_PACKET_LENGTH`), length included.
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// The first byte of a TLS handshake record: a direct-TLS client, not a startup packet.
pub const TLS_HANDSHAKE: u8 = 0x16;

pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Prefix of the startup keys that are protocol options rather than parameters.
pub const PROTOCOL_OPTION_PREFIX: &str = "_pq_.";
/// A cancel key's secret: 4 bytes in protocol 3.0, up to 256 from 3.2 on.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 4..=256;

/// What the client's first packet asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    /// A StartupMessage of protocol 3.x. `protocol_options` are the `_pq_.` keys (without
    /// their values), kept out of `params`: Custos knows none of them, so each is one to
    /// name in NegotiateProtocolVersion.
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
        protocol_options: Vec<String>,
    },
    /// A startup packet of a protocol major version other than 3.
    Unsupported {
        major: u16,
        minor: u16,
    },
    SslRequest,
    GssEncRequest,
    Cancel(Cancel),
}

/// A CancelRequest: the key the server handed out in BackendKeyData.
#[derive(Clone, PartialEq, Eq)]
pub struct Cancel {
    pub pid: i32,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Cancel {
    // The secret is what makes a cancel genuine: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl Cancel {
    pub fn encode(&self, out: &mut BytesMut) {
        frame_untagged(out, |b| {
            b.put_u32(CANCEL_REQUEST_CODE);
            b.put_i32(self.pid);
            b.put_slice(&self.secret);
        });
    }
}

impl Initial {
    /// Decodes a packet's contents after its length field.
    pub fn decode(packet: &[u8]) -> Result<Initial, WireError> {
        let mut r = Reader::new(packet);
        let code = r.u32()?;
        match code {
            SSL_REQUEST_CODE => r.finish().map(|()| Initial::SslRequest),
            GSSENC_REQUEST_CODE => r.finish().map(|()| Initial::GssEncRequest),
            CANCEL_REQUEST_CODE => {
                let pid = r.i32()?;
                let secret = r.rest();
                if !SECRET_LEN.contains(&secret.len()) {
                    return Err(WireError::Malformed("cancel key length"));
                }
                Ok(Initial::Cancel(Cancel { pid, secret: secret.to_vec() }))
            }
            _ => {
                let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
                if major == 1234 {
                    return Err(WireError::Malformed("unknown request code"));
                }
                if major != 3 {
                    return Ok(Initial::Unsupported { major, minor });
                }
                decode_startup(major, minor, r)
            }
        }
    }
}

/// The name/value pairs, ended by an empty name. A name given twice is malformed: which
/// one a reader takes would be a guess.
fn decode_startup(major: u16, minor: u16, mut r: Reader<'_>) -> Result<Initial, WireError> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut options = Vec::new();
    loop {
        let name = r.cstr()?;
        if name.is_empty() {
            break;
        }
        let value = r.cstr()?;
        if params.iter().any(|(n, _)| n == name) || options.iter().any(|n| n == name) {
            return Err(WireError::Malformed("startup parameter given twice"));
        }
        if name.starts_with(PROTOCOL_OPTION_PREFIX) {
            options.push(name.to_owned());
        } else {
            params.push((name.to_owned(), value.to_owned()));
        }
    }
    r.finish()?;
    Ok(Initial::Startup { major, minor, params, protocol_options: options })
}

/// Reads the client's first packet, exactly and no further (see the module's note).
/// `Ok(None)` when the client closed before sending anything.
pub async fn read_initial<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Initial>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(WireError::Truncated),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_STARTUP_PACKET {
        return Err(WireError::TooLong { len, max: MAX_STARTUP_PACKET });
    }
    if len < 8 {
        return Err(WireError::Malformed("startup packet length"));
    }
    let mut packet = vec![0u8; len - 4];
    r.read_exact(&mut packet).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::Truncated,
        _ => WireError::Io(e),
    })?;
    Initial::decode(&packet).map(Some)
}

/// A protocol 3.0 StartupMessage with these parameters (`user` among them), for the
/// upstream. Names and values must hold no NUL.
pub fn encode_startup<'a>(out: &mut BytesMut, params: impl IntoIterator<Item = (&'a str, &'a str)>) {
    frame_untagged(out, |b| {
        b.put_u32(3 << 16);
        for (name, value) in params {
            put_cstr(b, name);
            put_cstr(b, value);
        }
        b.put_u8(0);
    });
}

/// An SSLRequest, for the upstream.
pub fn encode_ssl_request(out: &mut BytesMut) {
    frame_untagged(out, |b| b.put_u32(SSL_REQUEST_CODE));
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<Option<Initial>, WireError> {
        let mut r = bytes;
        read_initial(&mut r).await
    }

    #[tokio::test]
    async fn startup_round_trips_and_keeps_protocol_options_apart() {
        let mut out = BytesMut::new();
        encode_startup(&mut out, [("user", "alice"), ("database", "ehr"), ("_pq_.grease", "x")]);
        let got = read(&out).await.unwrap().unwrap();
        assert_eq!(
            got,
            Initial::Startup {
                major: 3,
                minor: 0,
                params: vec![("user".into(), "alice".into()), ("database".into(), "ehr".into())],
                protocol_options: vec!["_pq_.grease".into()],
            }
        );
    }

    #[tokio::test]
    async fn minor_versions_are_read_as_sent() {
        let mut packet = (3u32 << 16 | 9999).to_be_bytes().to_vec();
        packet.extend_from_slice(b"user\0bob\0\0");
        let got = Initial::decode(&packet).unwrap();
        assert!(matches!(got, Initial::Startup { major: 3, minor: 9999, .. }));
        assert_eq!(Initial::decode(&(2u32 << 16).to_be_bytes()).unwrap(), Initial::Unsupported { major: 2, minor: 0 });
    }

    #[tokio::test]
    async fn requests_are_told_apart_by_their_code() {
        let mut out = BytesMut::new();
        encode_ssl_request(&mut out);
        assert_eq!(read(&out).await.unwrap(), Some(Initial::SslRequest));
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(read(&gss).await.unwrap(), Some(Initial::GssEncRequest));
        for secret in [vec![1, 2, 3, 4], vec![7; 32], vec![9; 256]] {
            let mut out = BytesMut::new();
            Cancel { pid: 42, secret: secret.clone() }.encode(&mut out);
            assert_eq!(read(&out).await.unwrap(), Some(Initial::Cancel(Cancel { pid: 42, secret })));
        }
    }

    #[tokio::test]
    async fn bad_packets_are_refused() {
        assert!(read(&[]).await.unwrap().is_none());
        assert!(matches!(read(&[0, 0]).await, Err(WireError::Truncated)));
        assert!(matches!(read(&[0, 0, 0x27, 0x11]).await, Err(WireError::TooLong { len: 10_001, .. })));
        // A direct-TLS ClientHello read as a length is over the cap, never allocated.
        assert!(matches!(read(&[0x16, 3, 1, 0, 0xc8]).await, Err(WireError::TooLong { .. })));
        assert!(matches!(read(&[0, 0, 0, 4]).await, Err(WireError::Malformed(_))));
        assert!(matches!(read(&[0, 0, 0, 20, 0, 3, 0, 0]).await, Err(WireError::Truncated)));
        // SSLRequest with a trailing byte, an unknown 1234.x code, short and long secrets.
        let bad: [&[u8]; 4] = [
            &[4, 0xd2, 0x16, 0x2f, 0],
            &[4, 0xd2, 0x16, 0x31],
            &[4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 1, 2, 3],
            &[&[4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1][..], &[0u8; 257][..]].concat(),
        ];
        for packet in bad {
            assert!(matches!(Initial::decode(packet), Err(WireError::Malformed(_))), "{packet:?}");
        }
        let mut v3 = (3u32 << 16).to_be_bytes().to_vec();
        for (body, why) in [
            (&b"user\0a\0user\0b\0\0"[..], "twice"),
            (b"user\0a\0", "no terminator"),
            (b"user\0a\0\0x", "trailing"),
            (b"user\0\xff\0\0", "not UTF-8"),
        ] {
            v3.truncate(4);
            v3.extend_from_slice(body);
            assert!(Initial::decode(&v3).is_err(), "{why}");
        }
    }

    #[tokio::test]
    async fn nothing_past_the_packet_is_read() {
        let mut out = BytesMut::new();
        encode_ssl_request(&mut out);
        out.extend_from_slice(b"stuffed");
        let mut r = &out[..];
        assert_eq!(read_initial(&mut r).await.unwrap(), Some(Initial::SslRequest));
        assert_eq!(r, b"stuffed");
    }

    #[test]
    fn cancel_debug_hides_the_secret() {
        let c = Cancel { pid: 7, secret: vec![0xab; 4] };
        assert!(!format!("{c:?}").contains("171"));
    }
}

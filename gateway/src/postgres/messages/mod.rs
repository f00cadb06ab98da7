//! The wire protocol's messages (PostgreSQL docs, "Message Formats"), one file each, and
//! the framing they share: the 5-byte header (tag, then a length that counts itself), a
//! cursor that reads a body without ever panicking, the encoder that patches the length
//! in, and [`read_message`], which reads one whole message, refusing an over-long one
//! before allocating for it.
//!
//! A [`Message`] keeps the bytes it arrived as, so a proxy forwards exactly what it
//! received ([`Message::raw`]) and decodes only the messages it must read. Decoders borrow
//! from the body; they are strict (trailing bytes are malformed, as PostgreSQL's own
//! `pq_getmsgend` makes them), so what Custos reads is what the server would execute.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub mod tags;

// Client → server.
pub mod bind;
pub mod close;
pub mod describe;
pub mod execute;
pub mod function_call;
pub mod parse;
pub mod password;
pub mod query;
pub mod startup;

// Server → client.
pub mod authentication;
pub mod backend_key_data;
pub mod command_complete;
pub mod error_response;
pub mod negotiate_protocol_version;
pub mod parameter_status;
pub mod ready_for_query;
pub mod row_description;

/// Why bytes on the wire are not a message Custos accepts.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The message ends before a field it must hold, or the peer closed mid-message.
    #[error("message truncated")]
    Truncated,
    /// The declared length is over what this connection accepts.
    #[error("message of {len} bytes is over the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// A field does not read as its format says.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A tagged message's header: its type byte and its length, which counts the 4 length
/// bytes themselves but not the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    pub len: u32,
}

impl Header {
    pub const SIZE: usize = 5;

    pub fn parse(bytes: [u8; Header::SIZE]) -> Result<Header, WireError> {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        if len < 4 {
            return Err(WireError::Malformed("length below 4"));
        }
        Ok(Header { tag: bytes[0], len })
    }

    /// The length of the body that follows the header.
    pub fn body_len(&self) -> usize {
        self.len as usize - 4
    }
}

/// One whole tagged message as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tag: u8,
    /// What follows the header (a slice of `raw`, not a copy).
    pub body: Bytes,
    raw: Bytes,
}

impl Message {
    /// A message from its whole encoding (tag, length, body), as [`frame`] writes it.
    pub fn from_raw(raw: Bytes) -> Result<Message, WireError> {
        let head: [u8; Header::SIZE] =
            raw.get(..Header::SIZE).and_then(|h| h.try_into().ok()).ok_or(WireError::Truncated)?;
        let header = Header::parse(head)?;
        if raw.len() != Header::SIZE + header.body_len() {
            return Err(WireError::Malformed("length does not match the message"));
        }
        Ok(Message { tag: header.tag, body: raw.slice(Header::SIZE..), raw })
    }

    /// The message's bytes exactly as received (tag, length, body): what is forwarded.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn into_raw(self) -> Bytes {
        self.raw
    }
}

/// Reads one whole tagged message. `buf` carries bytes read past the message to the next
/// call, so give the same buffer for the whole connection. `Ok(None)` is a clean end of
/// stream before a header; an end inside a message is [`WireError::Truncated`]. A length
/// over `max` is refused from the header alone, before any room is made for the body.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Message>, WireError> {
    if !fill(r, buf, Header::SIZE).await? {
        return Ok(None);
    }
    let head: [u8; Header::SIZE] = [buf[0], buf[1], buf[2], buf[3], buf[4]];
    let header = Header::parse(head)?;
    if header.len as usize > max {
        return Err(WireError::TooLong { len: header.len as usize, max });
    }
    let total = Header::SIZE + header.body_len();
    if !fill(r, buf, total).await? {
        return Err(WireError::Truncated);
    }
    Message::from_raw(buf.split_to(total).freeze()).map(Some)
}

/// Reads until `buf` holds `want` bytes. `false` when the stream ended with `buf` empty;
/// an end with some but not all of them is truncation.
pub(crate) async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut, want: usize) -> Result<bool, WireError> {
    // Read in chunks of at least this much, so small messages cost one read for many.
    const CHUNK: usize = 8 * 1024;
    while buf.len() < want {
        buf.reserve((want - buf.len()).max(CHUNK));
        if r.read_buf(buf).await? == 0 {
            return if buf.is_empty() { Ok(false) } else { Err(WireError::Truncated) };
        }
    }
    Ok(true)
}

/// A cursor over a message body. Every read checks the bytes are there; none panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Reader<'a> {
        Reader { rest: body }
    }

    /// A NUL-terminated string, which must be UTF-8 (Custos speaks only UTF8 as the client
    /// encoding, so anything else is malformed).
    pub fn cstr(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.cstr_bytes()?).map_err(|_| WireError::Malformed("string is not UTF-8"))
    }

    /// A NUL-terminated string in whatever encoding it came (the server's own messages
    /// before the session's encoding is set).
    pub fn cstr_bytes(&mut self) -> Result<&'a [u8], WireError> {
        let end = self.rest.iter().position(|&b| b == 0).ok_or(WireError::Truncated)?;
        let (s, rest) = (&self.rest[..end], &self.rest[end + 1..]);
        self.rest = rest;
        Ok(s)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn i16(&mut self) -> Result<i16, WireError> {
        self.array().map(i16::from_be_bytes)
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        self.array().map(i32::from_be_bytes)
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The end of the body: bytes left over are malformed, as the server holds them.
    pub fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed("trailing bytes"))
        }
    }
}

/// Writes one tagged message: the tag, a length placeholder, whatever `body` writes, then
/// the length patched in.
pub fn frame(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    frame_untagged(out, body);
}

/// Writes a message without a tag (the startup packet, CancelRequest, SSLRequest).
pub fn frame_untagged(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    body(out);
    // Custos encodes only small messages of its own; a body past 2 GiB cannot be framed
    // and is written with a length the peer refuses rather than one that wraps.
    let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes a NUL-terminated string. Callers pass strings read as C strings or checked to
/// hold no NUL (a NUL inside would end the field early on the other side).
pub fn put_cstr(out: &mut BytesMut, s: &str) {
    debug_assert!(!s.contains('\0'), "a C string with a NUL inside");
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

/// The whole encoding of a message, as bytes to write.
pub fn encoded(f: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::new();
    f(&mut out);
    out.freeze()
}

#[cfg(test)]
mod tests;

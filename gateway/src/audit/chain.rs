//! The hash chain's line format. Each line of a segment is
//! `{"seq":N,"prev":"<hex>","event":{…},"hash":"<hex>"}` where `hash` is SHA-256 over the
//! exact bytes of the line without its `,"hash":"…"` member (that is, with `}` right
//! after the event). Hashing the bytes as written, not a re-serialization, means the
//! verifier needs no canonical JSON: any changed byte changes the hash.

use super::event::Event;
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_OPEN: &[u8] = b",\"hash\":\"";
/// `,"hash":"` + 64 hex + `"}`
const HASH_SUFFIX_LEN: usize = HASH_OPEN.len() + 64 + 2;

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    prev: &'a str,
    event: &'a Event,
}

/// A parsed line.
#[derive(Debug, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    pub event: Event,
    pub hash: String,
}

/// Encodes one record; appends the line (with `\n`) to `out` and returns its hash.
pub fn encode(out: &mut Vec<u8>, seq: u64, prev: &str, event: &Event) -> String {
    let mut head = prev.to_string();
    encode_onto(out, seq, &mut head, event);
    head
}

/// [`encode`] for the writer: `head` holds the previous record's hash and is overwritten
/// with this record's, in place (no allocation per record).
pub fn encode_onto(out: &mut Vec<u8>, seq: u64, head: &mut String, event: &Event) {
    let start = out.len();
    serde_json::to_writer(&mut *out, &Body { seq, prev: head, event }).expect("an event always serializes");
    let mut hex = [0u8; 64];
    // A SHA-256 digest is 32 bytes: it always fills the 64 hex digits.
    let _ = hex::encode_to_slice(digest(&SHA256, &out[start..]), &mut hex);
    out.pop(); // the closing brace, written back after the hash
    out.extend_from_slice(HASH_OPEN);
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\"}\n");
    head.clear();
    head.extend(hex.iter().map(|&b| b as char));
}

/// Why a line does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not a record at all (not JSON, or fields missing).
    Malformed(String),
    /// The bytes do not hash to the hash the line carries.
    HashMismatch,
}

/// Parses `line` (without its `\n`) and checks that its hash covers its bytes.
pub fn decode(line: &[u8]) -> Result<Record, LineError> {
    if line.len() < HASH_SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
        return Err(LineError::Malformed("not a chain record".into()));
    }
    let split = line.len() - HASH_SUFFIX_LEN;
    if &line[split..split + HASH_OPEN.len()] != HASH_OPEN {
        return Err(LineError::Malformed("the hash is not the last member".into()));
    }
    let record: Record = serde_json::from_slice(line).map_err(|e| LineError::Malformed(e.to_string()))?;
    let mut body = Vec::with_capacity(split + 1);
    body.extend_from_slice(&line[..split]);
    body.push(b'}');
    if hex::encode(digest(&SHA256, &body)) != record.hash {
        return Err(LineError::HashMismatch);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::Kind;

    #[test]
    fn round_trip_and_any_changed_byte_is_caught() {
        let mut ev = Event::new(Kind::AccessDecision);
        ev.path = Some("/patients/1".into());
        let mut out = Vec::new();
        let hash = encode(&mut out, 7, GENESIS, &ev);
        let line = &out[..out.len() - 1];
        let rec = decode(line).unwrap();
        assert_eq!((rec.seq, rec.hash.as_str(), rec.event.path.as_deref()), (7, hash.as_str(), Some("/patients/1")));
        let text = String::from_utf8(line.to_vec()).unwrap();
        let edited = text.replace("/patients/1", "/patients/2");
        assert_eq!(decode(edited.as_bytes()).unwrap_err(), LineError::HashMismatch);
        let reseq = text.replace("\"seq\":7", "\"seq\":8");
        assert_eq!(decode(reseq.as_bytes()).unwrap_err(), LineError::HashMismatch);
    }
}

//! BackendKeyData (`K`): the key a client quotes in a CancelRequest. Custos reads the
//! upstream's (to cancel there) and hands clients its own, never the upstream's. The
//! secret is 4 bytes in protocol 3.0 and up to 256 from 3.2; `Debug` never shows it.

use bytes::{BufMut, BytesMut};

use super::startup::SECRET_LEN;
use super::{frame, Reader, WireError};

pub const TAG: u8 = super::tags::backend::BACKEND_KEY_DATA;

#[derive(Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    pub pid: i32,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for BackendKeyData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendKeyData").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl BackendKeyData {
    pub fn decode(body: &[u8]) -> Result<BackendKeyData, WireError> {
        let mut r = Reader::new(body);
        let pid = r.i32()?;
        let secret = r.rest();
        if !SECRET_LEN.contains(&secret.len()) {
            return Err(WireError::Malformed("cancel key length"));
        }
        Ok(BackendKeyData { pid, secret: secret.to_vec() })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        frame(out, TAG, |b| {
            b.put_i32(self.pid);
            b.put_slice(&self.secret);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::Message;

    #[test]
    fn round_trips_both_key_sizes() {
        for secret in [vec![1, 2, 3, 4], vec![5; 32]] {
            let key = BackendKeyData { pid: 4242, secret };
            let mut out = BytesMut::new();
            key.encode(&mut out);
            let m = Message::from_raw(out.freeze()).unwrap();
            assert_eq!(BackendKeyData::decode(&m.body).unwrap(), key);
        }
    }

    #[test]
    fn refuses_keys_of_the_wrong_size_and_hides_the_secret() {
        assert!(BackendKeyData::decode(b"\0\0\0\x01\x01\x02\x03").is_err());
        assert!(BackendKeyData::decode(&[0u8; 4 + 257]).is_err());
        let shown = format!("{:?}", BackendKeyData { pid: 1, secret: vec![0xee; 4] });
        assert!(!shown.contains("238"));
    }
}

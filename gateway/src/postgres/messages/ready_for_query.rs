//! ReadyForQuery (`Z`): the server awaits the next command, and says whether a
//! transaction is open. The end of startup, and of each simple query or Sync.

use bytes::{BufMut, BytesMut};

use super::{frame, Reader, WireError};

pub const TAG: u8 = super::tags::backend::READY_FOR_QUERY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block (commands are refused until it ends).
    Failed,
}

impl TransactionStatus {
    pub fn decode(body: &[u8]) -> Result<TransactionStatus, WireError> {
        let mut r = Reader::new(body);
        let status = match r.u8()? {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            _ => return Err(WireError::Malformed("transaction status")),
        };
        r.finish()?;
        Ok(status)
    }

    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }

    /// The ReadyForQuery message with this status.
    pub fn encode(self, out: &mut BytesMut) {
        frame(out, TAG, |b| b.put_u8(self.byte()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::messages::encoded;

    #[test]
    fn round_trips_each_status() {
        for s in [TransactionStatus::Idle, TransactionStatus::InTransaction, TransactionStatus::Failed] {
            let raw = encoded(|o| s.encode(o));
            assert_eq!(&raw[..5], b"Z\0\0\0\x05");
            assert_eq!(TransactionStatus::decode(&raw[5..]).unwrap(), s);
        }
        assert!(TransactionStatus::decode(b"X").is_err());
        assert!(TransactionStatus::decode(b"").is_err());
        assert!(TransactionStatus::decode(b"II").is_err());
    }
}

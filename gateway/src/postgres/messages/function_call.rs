//! FunctionCall (`F`): the legacy fast-path call of a function by its oid. Only the oid is
//! read (its arguments are values, never decoded), so a front end can refuse or audit it.

use super::{Reader, WireError};

pub const TAG: u8 = super::tags::frontend::FUNCTION_CALL;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCall {
    pub oid: u32,
}

impl FunctionCall {
    pub fn decode(body: &[u8]) -> Result<FunctionCall, WireError> {
        Reader::new(body).u32().map(|oid| FunctionCall { oid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_oid() {
        assert_eq!(FunctionCall::decode(b"\0\0\x04\x28\0\x01\0\0").unwrap().oid, 1064);
        assert!(matches!(FunctionCall::decode(b"\0\0"), Err(WireError::Truncated)));
    }
}

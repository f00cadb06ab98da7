//! Bind (`B`): which prepared statement a portal runs. Only the two names are read: the
//! parameter values are forwarded as received and never decoded nor kept, so no literal
//! from them can reach a record or a log.

use super::{Reader, WireError};

pub const TAG: u8 = super::tags::frontend::BIND;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
}

impl<'a> Bind<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Bind<'a>, WireError> {
        let mut r = Reader::new(body);
        Ok(Bind { portal: r.cstr()?, statement: r.cstr()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_names_only() {
        let body = b"p1\0s1\0\0\x01\0\0\0\x01\0\0\0\x05hello\0\0";
        assert_eq!(Bind::decode(body).unwrap(), Bind { portal: "p1", statement: "s1" });
        assert_eq!(Bind::decode(b"\0\0").unwrap(), Bind { portal: "", statement: "" });
        assert!(matches!(Bind::decode(b"p1\0s1"), Err(WireError::Truncated)));
    }
}

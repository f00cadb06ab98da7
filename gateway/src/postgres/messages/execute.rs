//! Execute (`E` from the client): runs a bound portal, at most `max_rows` rows at a time
//! (0 for all). Each one is a statement run, so each gets its records.

use super::{Reader, WireError};

pub const TAG: u8 = super::tags::frontend::EXECUTE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a str,
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Execute<'a>, WireError> {
        let mut r = Reader::new(body);
        let portal = r.cstr()?;
        let max_rows = r.i32()?;
        r.finish()?;
        Ok(Execute { portal, max_rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_portal_and_row_limit() {
        assert_eq!(Execute::decode(b"p\0\0\0\0\x0a").unwrap(), Execute { portal: "p", max_rows: 10 });
        assert_eq!(Execute::decode(b"\0\0\0\0\0").unwrap(), Execute { portal: "", max_rows: 0 });
        assert!(matches!(Execute::decode(b"p\0\0\0"), Err(WireError::Truncated)));
        assert!(matches!(Execute::decode(b"p\0\0\0\0\0\0"), Err(WireError::Malformed(_))));
    }
}

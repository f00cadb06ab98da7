//! Parse (`P`): a statement prepared under a name (empty for the unnamed one), with the
//! number of parameter types the client fixes. The types themselves are checked to be
//! there but not kept: Custos needs only what the statement is.

use super::{Reader, WireError};

pub const TAG: u8 = super::tags::frontend::PARSE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub param_types: u16,
}

impl<'a> Parse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Parse<'a>, WireError> {
        let mut r = Reader::new(body);
        let name = r.cstr()?;
        let query = r.cstr()?;
        let param_types = u16::try_from(r.i16()?).map_err(|_| WireError::Malformed("negative parameter count"))?;
        r.bytes(4 * usize::from(param_types))?;
        r.finish()?;
        Ok(Parse { name, query, param_types })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_name_query_and_count() {
        let body = b"s1\0SELECT $1::int\0\0\x01\0\0\0\x17";
        assert_eq!(Parse::decode(body).unwrap(), Parse { name: "s1", query: "SELECT $1::int", param_types: 1 });
        assert_eq!(Parse::decode(b"\0SELECT 1\0\0\0").unwrap().name, "");
    }

    #[test]
    fn refuses_bad_counts_and_trailing_bytes() {
        assert!(matches!(Parse::decode(b"\0q\0\xff\xff"), Err(WireError::Malformed(_))));
        assert!(matches!(Parse::decode(b"\0q\0\0\x02\0\0\0\x17"), Err(WireError::Truncated)));
        assert!(matches!(Parse::decode(b"\0q\0\0\0x"), Err(WireError::Malformed(_))));
    }
}

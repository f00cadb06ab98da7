//! RowDescription (`T`): the columns a result will have. Custos reads only how many (the
//! rows themselves pass through untouched); the per-column fields are not decoded.

use super::{Reader, WireError};

pub const TAG: u8 = super::tags::backend::ROW_DESCRIPTION;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDescription {
    pub fields: u16,
}

impl RowDescription {
    pub fn decode(body: &[u8]) -> Result<RowDescription, WireError> {
        let fields = Reader::new(body).i16()?;
        let fields = u16::try_from(fields).map_err(|_| WireError::Malformed("negative field count"))?;
        Ok(RowDescription { fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_field_count() {
        assert_eq!(RowDescription::decode(b"\0\x02id\0...").unwrap().fields, 2);
        assert_eq!(RowDescription::decode(b"\0\0").unwrap().fields, 0);
        assert!(RowDescription::decode(b"\x80\0").is_err());
        assert!(RowDescription::decode(b"\0").is_err());
    }
}

//! Describe (`D`): asks for a prepared statement's or a portal's shape. [`Target`] is
//! shared with Close, which names its object the same way.

use super::{Reader, WireError};

pub const TAG: u8 = super::tags::frontend::DESCRIBE;

/// A prepared statement (`S`) or a portal (`P`), by name (empty for the unnamed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Statement(&'a str),
    Portal(&'a str),
}

impl<'a> Target<'a> {
    /// The kind byte and the name, the whole of a Describe or Close body.
    pub fn decode(body: &'a [u8]) -> Result<Target<'a>, WireError> {
        let mut r = Reader::new(body);
        let kind = r.u8()?;
        let name = r.cstr()?;
        r.finish()?;
        match kind {
            b'S' => Ok(Target::Statement(name)),
            b'P' => Ok(Target::Portal(name)),
            _ => Err(WireError::Malformed("neither a statement nor a portal")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Describe<'a> {
    pub target: Target<'a>,
}

impl<'a> Describe<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Describe<'a>, WireError> {
        Target::decode(body).map(|target| Describe { target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_statements_and_portals() {
        assert_eq!(Describe::decode(b"Ss1\0").unwrap().target, Target::Statement("s1"));
        assert_eq!(Describe::decode(b"P\0").unwrap().target, Target::Portal(""));
        assert!(matches!(Describe::decode(b"Xs1\0"), Err(WireError::Malformed(_))));
        assert!(matches!(Describe::decode(b"S"), Err(WireError::Truncated)));
        assert!(matches!(Describe::decode(b"Ss\0\0"), Err(WireError::Malformed(_))));
    }
}

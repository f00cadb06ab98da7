//! Close (`C` from the client): drops a prepared statement or a portal, so the statements
//! Custos tracks per connection drop it too.

use super::describe::Target;
use super::WireError;

pub const TAG: u8 = super::tags::frontend::CLOSE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    pub target: Target<'a>,
}

impl<'a> Close<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Close<'a>, WireError> {
        Target::decode(body).map(|target| Close { target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_target() {
        assert_eq!(Close::decode(b"Sstmt\0").unwrap().target, Target::Statement("stmt"));
        assert_eq!(Close::decode(b"Pp\0").unwrap().target, Target::Portal("p"));
        assert!(Close::decode(b"").is_err());
    }
}

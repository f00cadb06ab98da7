//! CommandComplete (`C` from the server): the command tag that ends a statement's
//! results, and from it the rows returned or affected for the completion record.

use super::{Reader, WireError};

pub const TAG: u8 = super::tags::backend::COMMAND_COMPLETE;

/// The tags whose last word is a row count (`INSERT` has the legacy oid before it).
const COUNTED: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "COPY", "MOVE", "FETCH", "MERGE"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    pub tag: &'a str,
}

impl<'a> CommandComplete<'a> {
    pub fn decode(body: &'a [u8]) -> Result<CommandComplete<'a>, WireError> {
        let mut r = Reader::new(body);
        let tag = r.cstr()?;
        r.finish()?;
        Ok(CommandComplete { tag })
    }

    /// Rows returned or affected, for the commands whose tag carries them ("SELECT 5",
    /// "INSERT 0 3", "UPDATE 2"…); `None` for the others ("CREATE TABLE", "BEGIN").
    pub fn rows(&self) -> Option<u64> {
        let mut words = self.tag.split(' ');
        let verb = words.next()?;
        if !COUNTED.contains(&verb) {
            return None;
        }
        let rest: Vec<&str> = words.collect();
        let count = match (verb, rest.as_slice()) {
            ("INSERT", [_oid, n]) => n,
            ("INSERT", _) => return None,
            (_, [n]) => n,
            _ => return None,
        };
        count.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(tag: &str) -> Option<u64> {
        CommandComplete { tag }.rows()
    }

    #[test]
    fn counts_rows_of_the_counted_commands() {
        for (tag, n) in [
            ("SELECT 5", 5),
            ("INSERT 0 3", 3),
            ("UPDATE 2", 2),
            ("DELETE 1", 1),
            ("COPY 10", 10),
            ("MOVE 1", 1),
            ("FETCH 3", 3),
            ("MERGE 2", 2),
            ("SELECT 0", 0),
        ] {
            assert_eq!(rows(tag), Some(n), "{tag}");
        }
        for tag in ["CREATE TABLE", "BEGIN", "SET", "INSERT 3", "SELECT", "SELECT x", "UPDATE 1 2", ""] {
            assert_eq!(rows(tag), None, "{tag}");
        }
    }

    #[test]
    fn decodes_the_tag() {
        assert_eq!(CommandComplete::decode(b"SELECT 1\0").unwrap().tag, "SELECT 1");
        assert!(CommandComplete::decode(b"SELECT 1").is_err());
    }
}

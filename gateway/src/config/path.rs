//! Request paths, normalised once (RFC 3986 §6.2.2) into [`NormPath`], the one type that
//! routing, the policy and the upstream all use, so no two of them can disagree about
//! which resource a request names.
//!
//! What normalisation does: percent-decodes unreserved characters (`%41` → `A`,
//! `%2E` → `.`), upper-cases the hex of every other escape, merges repeated slashes,
//! removes `.` and `..` segments. What it refuses, because no single reading exists:
//! encoded `/` or `\` (`%2F`, `%5C`), a literal `\`, NUL (raw or `%00`), other control
//! characters (raw, or encoded: `%01`-`%1F`, `%7F`) and raw spaces, malformed escapes,
//! bytes that do not decode to UTF-8, a `..` that climbs above the root, and anything
//! that is not an origin-form path.

use std::fmt;

/// A normalised absolute path: starts with `/`, no empty, `.` or `..` segments, only
/// unambiguous escapes. Never carries the query string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormPath(String);

/// Why a path was refused (the gateway answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    EncodedSeparator,
    Nul,
    ForbiddenChar,
    EncodedControl,
    BadEscape,
    InvalidUtf8,
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "the path must start with /",
            PathError::EncodedSeparator => "the path contains an encoded / or \\",
            PathError::Nul => "the path contains NUL",
            PathError::ForbiddenChar => "the path contains a character that is not allowed",
            PathError::EncodedControl => "the path contains an encoded control character",
            PathError::BadEscape => "the path contains a malformed percent-escape",
            PathError::InvalidUtf8 => "the path does not decode to UTF-8",
            PathError::AboveRoot => "the path climbs above the root",
        })
    }
}

impl std::error::Error for PathError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

impl NormPath {
    /// Normalises the path part of a request target (everything before `?`).
    pub fn parse(raw: &[u8]) -> Result<NormPath, PathError> {
        if raw.first() != Some(&b'/') {
            return Err(PathError::NotOriginForm);
        }
        // Built without a trailing slash; the root is the empty string until the end.
        let mut out: Vec<u8> = Vec::with_capacity(raw.len());
        let mut non_ascii = false;
        let mut trailing_slash = false;
        let mut segments = raw[1..].split(|&b| b == b'/').peekable();
        while let Some(seg) = segments.next() {
            let last = segments.peek().is_none();
            if seg.is_empty() {
                trailing_slash = last;
                continue;
            }
            let start = out.len();
            out.push(b'/');
            let mut i = 0;
            while i < seg.len() {
                let b = seg[i];
                match b {
                    b'%' => {
                        let (Some(hi), Some(lo)) =
                            (seg.get(i + 1).copied().and_then(hex_val), seg.get(i + 2).copied().and_then(hex_val))
                        else {
                            return Err(PathError::BadEscape);
                        };
                        let v = hi << 4 | lo;
                        match v {
                            0 => return Err(PathError::Nul),
                            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                            // A decoded tab, CR, LF or other control byte means different
                            // things to different upstreams (log injection, header splitting
                            // in a redirect, a name that trims differently).
                            v if v < 0x20 || v == 0x7f => return Err(PathError::EncodedControl),
                            v if is_unreserved(v) => out.push(v),
                            v => {
                                non_ascii |= v >= 0x80;
                                out.extend_from_slice(&[b'%', HEX[(v >> 4) as usize], HEX[(v & 15) as usize]]);
                            }
                        }
                        i += 3;
                        continue;
                    }
                    0 => return Err(PathError::Nul),
                    b'\\' | b'#' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^' => {
                        return Err(PathError::ForbiddenChar)
                    }
                    b if b <= 0x20 || b == 0x7f => return Err(PathError::ForbiddenChar),
                    b if b >= 0x80 => {
                        // A raw non-ASCII byte is not valid in a URI; keep it as an escape
                        // so the upstream sees one spelling, and check the UTF-8 below.
                        non_ascii = true;
                        out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            match &out[start + 1..] {
                b"." => {
                    out.truncate(start);
                    trailing_slash = last;
                }
                b".." => {
                    out.truncate(start);
                    match out.iter().rposition(|&b| b == b'/') {
                        Some(parent) => out.truncate(parent),
                        None => return Err(PathError::AboveRoot),
                    }
                    trailing_slash = last;
                }
                _ => trailing_slash = false,
            }
        }
        if out.is_empty() || trailing_slash {
            out.push(b'/');
        }
        if non_ascii && !decodes_to_utf8(&out) {
            return Err(PathError::InvalidUtf8);
        }
        // Every byte pushed is ASCII: escapes were re-encoded above.
        String::from_utf8(out).map(NormPath).map_err(|_| PathError::InvalidUtf8)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Segment-boundary prefix match: `/api` matches `/api` and `/api/x`, never `/apix`.
    /// `prefix` is itself normalised and has no trailing slash unless it is `/`.
    pub fn starts_with_segments(&self, prefix: &str) -> bool {
        prefix == "/"
            || (self.0.starts_with(prefix) && matches!(self.0.as_bytes().get(prefix.len()), None | Some(b'/')))
    }

    /// The path with a segment-boundary `prefix` removed (`/api/x` less `/api` is `/x`).
    pub fn strip_segments(&self, prefix: &str) -> &str {
        if prefix == "/" || !self.starts_with_segments(prefix) {
            return &self.0;
        }
        match &self.0[prefix.len()..] {
            "" => "/",
            rest => rest,
        }
    }
}

fn decodes_to_utf8(escaped: &[u8]) -> bool {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        if escaped[i] == b'%' {
            // Only well-formed escapes were written.
            let v = hex_val(escaped[i + 1]).unwrap_or(0) << 4 | hex_val(escaped[i + 2]).unwrap_or(0);
            bytes.push(v);
            i += 3;
        } else {
            bytes.push(escaped[i]);
            i += 1;
        }
    }
    std::str::from_utf8(&bytes).is_ok()
}

impl fmt::Display for NormPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, PathError> {
        NormPath::parse(s.as_bytes()).map(|p| p.0)
    }

    #[test]
    fn normalises_what_has_one_reading() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/%2e%2E/b", "/b"),
            ("/%61%62c", "/abc"),
            ("/a%7e%2d", "/a~-"),
            ("/a%3f%3Fb", "/a%3F%3Fb"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/..a/b..", "/..a/b.."),
            ("/a/..", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "input {input}");
        }
    }

    #[test]
    fn refuses_what_is_ambiguous() {
        let cases = [
            ("a/b", PathError::NotOriginForm),
            ("*", PathError::NotOriginForm),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::ForbiddenChar),
            ("/a%00", PathError::Nul),
            ("/a\0", PathError::Nul),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%C3", PathError::InvalidUtf8),
            ("/%FF", PathError::InvalidUtf8),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc", PathError::AboveRoot),
            ("/a b", PathError::ForbiddenChar),
            ("/a%09b", PathError::EncodedControl),
            ("/a%0a", PathError::EncodedControl),
            ("/a%0D%0Ab", PathError::EncodedControl),
            ("/a%1f", PathError::EncodedControl),
            ("/a%7F", PathError::EncodedControl),
            ("/a%01/../b", PathError::EncodedControl),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn segment_boundaries() {
        let p = NormPath::parse(b"/api/x").unwrap();
        assert!(p.starts_with_segments("/api"));
        assert!(p.starts_with_segments("/"));
        assert!(!NormPath::parse(b"/apix").unwrap().starts_with_segments("/api"));
        assert_eq!(p.strip_segments("/api"), "/x");
        assert_eq!(NormPath::parse(b"/api").unwrap().strip_segments("/api"), "/");
    }
}

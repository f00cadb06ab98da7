//! Where a browser may be sent after sign-in: a path on this gateway's own origin,
//! nothing else. The check decodes once, then accepts only a path that starts with a
//! single `/` (not `//` or `/\`, which browsers read as another host), with no control
//! characters or backslashes anywhere.

/// `raw` as a safe same-origin target, or `/`.
pub fn safe_return(raw: &str) -> String {
    if is_safe(raw) {
        raw.to_string()
    } else {
        "/".to_string()
    }
}

fn is_safe(raw: &str) -> bool {
    if raw.len() > 2048 || !raw.starts_with('/') {
        return false;
    }
    let decoded = percent_decode(raw);
    let check = |s: &[u8]| {
        s.first() == Some(&b'/')
            && !matches!(s.get(1), Some(b'/' | b'\\'))
            && !s.iter().any(|&b| b == b'\\' || b.is_ascii_control())
    };
    // The raw text must be a plain origin-form target too: it goes into `Location`.
    check(raw.as_bytes()) && check(&decoded) && raw.bytes().all(|b| b.is_ascii_graphic())
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn only_same_origin_paths() {
        for ok in ["/", "/patients/17?tab=notes", "/a%20b", "/x#frag"] {
            assert_eq!(safe_return(ok), ok);
        }
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/a\r\nSet-Cookie: x=1",
            "/a%0d%0aSet-Cookie:%20x=1",
            "/\tevil",
            "/ /evil",
        ] {
            assert_eq!(safe_return(bad), "/", "{bad:?}");
        }
    }
}

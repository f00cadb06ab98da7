//! Hashes as lower-case hex: how tokens, session ids and justifications are stored and
//! compared without keeping the value itself.

/// SHA-256, lower-case hex. Written by hand: `hex::encode` goes through a `char`
/// iterator and showed in the per-request profile.
pub fn sha256_hex(b: &[u8]) -> String {
    hex_lower(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// Lower-case hex of `b`.
pub fn hex_lower(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.len() * 2);
    for &byte in b {
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 15) as usize] as char);
    }
    out
}

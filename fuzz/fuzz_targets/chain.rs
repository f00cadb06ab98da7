//! A chain line comes from a file anyone with disk access could have edited, and
//! `custos audit verify` reads it: decoding must never panic, and whatever decodes must
//! re-encode to the same bytes (the hash covers exactly what was written).
//! `cargo fuzz run chain`
#![no_main]
use custos::audit::chain::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = decode(data) {
        let mut out = Vec::new();
        let hash = encode(&mut out, rec.seq, &rec.prev, &rec.event);
        // Same record, same hash: only when the input was our own encoding.
        if out[..out.len() - 1] == *data {
            assert_eq!(hash, rec.hash);
        }
    }
});

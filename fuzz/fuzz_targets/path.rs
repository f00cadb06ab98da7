//! Path normalisation takes the untrusted request target: it must never panic, and its
//! output must be a fixed point with no segment left to remove. `cargo fuzz run path`
#![no_main]
use custos::http::path::NormPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = NormPath::parse(data) {
        let s = p.as_str();
        assert!(s.starts_with('/'));
        assert!(!s.contains("//") && !s.contains("/./") && !s.contains("/../"), "{s}");
        assert!(!s.ends_with("/.") && !s.ends_with("/.."), "{s}");
        assert!(!s.contains('\\') && !s.contains('\0'), "{s}");
        // No control character, raw or encoded.
        let b = s.as_bytes();
        assert!(!b.iter().any(|&c| c < 0x20 || c == 0x7f), "{s}");
        assert!(!b.windows(3).any(|w| w[0] == b'%' && (matches!(w[1], b'0' | b'1') || w == b"%7F")), "{s}");
        let again = NormPath::parse(s.as_bytes()).expect("a normalised path parses");
        assert_eq!(again.as_str(), s, "normalisation is not idempotent");
    }
});

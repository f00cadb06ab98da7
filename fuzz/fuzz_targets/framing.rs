//! The framing check takes raw, untrusted header bytes: it must never panic, and what it
//! accepts must be unambiguous: its lengths and its host. `cargo fuzz run framing`
#![no_main]
use custos::http::framing::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if check(data, 64 * 1024, 256).is_ok() {
        // Every line ending is CRLF.
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && data[i - 1] == b'\r', "accepted a bare LF");
            }
        }
        let text = data.to_ascii_lowercase();
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        let count = |name: &[u8]| lines.iter().filter(|l| l.starts_with(name)).count();
        let cl = count(b"content-length:");
        let te = count(b"transfer-encoding:");
        assert!(cl <= 1 && te <= 1 && !(cl == 1 && te == 1), "accepted ambiguous lengths");
        // One Host from HTTP/1.1 on, at most one before, and an authority.
        let hosts: Vec<&&[u8]> = lines.iter().skip(1).filter(|l| l.starts_with(b"host:")).collect();
        assert!(hosts.len() <= 1, "accepted two Hosts");
        if lines.first().is_some_and(|l| !l.ends_with(b" http/1.0\r")) {
            assert_eq!(hosts.len(), 1, "accepted an HTTP/1.1 request without Host");
        }
        for h in hosts {
            assert!(
                !h[5..].iter().any(|b| matches!(b, b'@' | b'/' | b'?' | b'#') || *b >= 0x80),
                "accepted Host {h:?}"
            );
        }
    }
});

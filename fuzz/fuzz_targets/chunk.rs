//! The chunk-size line (the vendored httparse's strict `parse_chunk_size`) takes untrusted
//! request body bytes: it must never panic, what it accepts must be the RFC 9112 §7.1 line
//! and nothing else, and it must decide the same way however the bytes are split across
//! reads (pingora calls it again with more bytes after `Partial`). `cargo fuzz run chunk`
#![no_main]
use httparse::{parse_chunk_size, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(512)];
    match parse_chunk_size(data) {
        Ok(Status::Complete((n, size))) => {
            let line = &data[..n];
            assert!(line.ends_with(b"\r\n"), "{line:?}");
            let body = &line[..n - 2];
            assert!(!body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0 || b == 0x7f), "{line:?}");
            assert!(!body.iter().any(|&b| b < 0x20 && b != b'\t'), "{line:?}");
            let digits = body.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            assert!((1..=16).contains(&digits), "{line:?}");
            let hex = std::str::from_utf8(&body[..digits]).unwrap();
            assert_eq!(u64::from_str_radix(hex, 16).unwrap(), size, "{line:?}");
            assert!(matches!(body.get(digits), None | Some(b';' | b' ' | b'\t')), "{line:?}");
            // Every shorter prefix is still undecided.
            for k in 0..n {
                assert_eq!(parse_chunk_size(&data[..k]), Ok(Status::Partial), "prefix {k} of {line:?}");
            }
        }
        Ok(Status::Partial) => {
            assert!(!data.contains(&b'\n'), "undecided past a line feed: {data:?}");
        }
        Err(_) => {
            // Refused once, refused with whatever follows.
            let mut more = data.to_vec();
            more.extend_from_slice(b"\r\n");
            assert!(parse_chunk_size(&more).is_err(), "{data:?}");
        }
    }
});

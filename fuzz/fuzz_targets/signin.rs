//! What a client controls at sign-in: the return target (`?rd=`, the page asked for) and
//! the `Cookie` header. Never a panic; a return target is always a same-origin path
//! (one leading `/`, no `//` or `/\`, no control characters, not even after decoding);
//! stripping the gateway's cookies leaves none of them. `cargo fuzz run signin`
#![no_main]
use custos::http::cookies;
use custos::identity::redirect::safe_return;
use libfuzzer_sys::fuzz_target;

const OURS: [&str; 2] = ["custos_session", "custos_session_login"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let target = safe_return(&text);
    let b = target.as_bytes();
    assert_eq!(b[0], b'/');
    assert!(target == "/" || !matches!(b.get(1), Some(b'/' | b'\\')), "{target:?}");
    assert!(b.iter().all(|c| c.is_ascii_graphic()), "{target:?}");
    let decoded: Vec<u8> = percent_decode(b);
    assert!(!matches!(decoded.get(1), Some(b'/' | b'\\')) && !decoded.iter().any(|c| c.is_ascii_control() || *c == b'\\'), "{target:?}");

    let Ok(mut req) = pingora::http::RequestHeader::build("GET", b"/", None) else { return };
    for line in data.split(|&c| c == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            let _ = req.append_header("cookie", v);
        }
    }
    let _ = cookies::get(&req, OURS[0]);
    if cookies::strip(&mut req, &OURS).is_ok() {
        for name in OURS {
            assert!(cookies::get(&req, name).is_none(), "{name} survived stripping");
        }
    }
});

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
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

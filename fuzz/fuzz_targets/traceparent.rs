//! `traceparent` is a client-sent header: parsing must never panic, and what is
//! accepted must produce a well-formed header for the upstream. `cargo fuzz run traceparent`
#![no_main]
use custos::http::trace::TraceContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut req) = pingora::http::RequestHeader::build("GET", b"/", None) else { return };
    let Ok(v) = http::HeaderValue::from_bytes(data) else { return };
    if req.insert_header("traceparent", v).is_err() {
        return;
    }
    let t = TraceContext::from_request(&req);
    let out = t.traceparent();
    let parts: Vec<&str> = out.split('-').collect();
    assert_eq!(parts.len(), 4);
    assert!(parts[1].len() == 32 && parts[2].len() == 16 && parts[1].bytes().all(|b| b.is_ascii_hexdigit()));
});

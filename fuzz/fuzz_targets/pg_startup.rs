//! The PostgreSQL startup packet, as a client sends it, through the decoder and the
//! judgement of its parameters (`options` split as the server splits them): never a
//! panic, and what is judged passes on no parameter outside the display settings.
#![no_main]
use custos::postgres::frontend::startup::judge;
use custos::postgres::messages::startup::Initial;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Initial::Startup { params, .. }) = Initial::decode(data) {
        if let Ok(s) = judge(&params) {
            assert!(!s.user.is_empty());
            for (name, _) in &s.passed {
                let n = name.to_ascii_lowercase();
                assert!(!matches!(n.as_str(), "options" | "search_path" | "role" | "replication"), "{name}");
            }
        }
    }
});

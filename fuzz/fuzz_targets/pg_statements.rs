//! The statement classifier takes any text a signed-in client sends: it must never panic
//! nor overflow, an empty result must mean the text holds no statement, and what it makes
//! of a text must not change when asked again or through the cache. `cargo fuzz run pg_statements`
#![no_main]
use std::num::NonZeroUsize;

use custos::postgres::statements::{classify, Cache};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let first = classify(sql);
    if let Ok(stmts) = &first {
        for s in stmts {
            assert!(!s.verb.as_str().is_empty());
            assert_eq!(s.fingerprint.to_string().len(), 16);
            assert!(s.objects.windows(2).all(|w| w[0] < w[1]), "objects sorted, no duplicate: {s:?}");
            if s.has_where.is_some() {
                assert!(!s.objects.is_empty(), "an UPDATE or DELETE names what it writes");
            }
        }
    }
    assert_eq!(classify(sql), first, "classification is deterministic");
    let mut cache = Cache::new(NonZeroUsize::MIN, 1 << 20);
    assert_eq!(cache.classify(sql).map(|s| s.to_vec()), first);
    assert_eq!(cache.classify(sql).map(|s| s.to_vec()), first);
});

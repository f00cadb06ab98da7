//! The parse cache: hits, misses, eviction, the size bound, refusals cached.

use std::num::NonZeroUsize;
use std::sync::Arc;

use super::*;

fn cache(entries: usize, max_text: usize) -> Cache {
    Cache::new(NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN), max_text)
}

#[test]
fn a_repeated_text_is_parsed_once_and_shared() {
    let mut c = cache(8, 1024);
    let a = c.classify("SELECT * FROM patients WHERE id = 1");
    let b = c.classify("SELECT * FROM patients WHERE id = 1");
    let (Ok(a), Ok(b)) = (a, b) else { panic!("parses") };
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!((c.hits(), c.misses(), c.len()), (1, 1, 1));
    // Another literal is another text.
    let _ = c.classify("SELECT * FROM patients WHERE id = 2");
    assert_eq!((c.hits(), c.misses(), c.len()), (1, 2, 2));
}

#[test]
fn least_recently_used_goes_first() {
    let mut c = cache(2, 1024);
    let _ = c.classify("SELECT 1");
    let _ = c.classify("SELECT 2");
    let _ = c.classify("SELECT 1"); // 1 is now the more recent
    let _ = c.classify("SELECT 3"); // evicts 2
    assert_eq!(c.len(), 2);
    let misses = c.misses();
    let _ = c.classify("SELECT 1");
    assert_eq!(c.misses(), misses, "1 was kept");
    let _ = c.classify("SELECT 2");
    assert_eq!(c.misses(), misses + 1, "2 was evicted");
}

#[test]
fn long_texts_are_classified_but_not_kept() {
    let mut c = cache(8, 32);
    let long = format!("SELECT * FROM patients WHERE id IN ({})", vec!["1"; 20].join(","));
    assert!(long.len() > 32);
    for _ in 0..2 {
        assert!(c.classify(&long).is_ok());
    }
    assert_eq!((c.hits(), c.misses(), c.len()), (0, 2, 0));
}

#[test]
fn a_refusal_is_cached_too() {
    let mut c = cache(8, 1024);
    assert_eq!(c.classify("SELEC 1").map(|_| ()), Err(Unparseable));
    assert_eq!(c.classify("SELEC 1").map(|_| ()), Err(Unparseable));
    assert_eq!((c.hits(), c.misses()), (1, 1));
}

#[test]
fn debug_shows_counts_not_texts() {
    let mut c = cache(8, 1024);
    let _ = c.classify("SELECT 'zebra-7731'");
    let shown = format!("{c:?}");
    assert!(!shown.contains("zebra"), "{shown}");
    assert!(shown.contains("misses: 1"), "{shown}");
}

//! How long a parse of a short SELECT and a cache hit take. Not a correctness test; run
//! it on its own (in a debug build the figures are only relative):
//! `cargo test -p custos --lib postgres::statements::tests::speed -- --ignored --nocapture`

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Instant;

use super::*;

const SHORT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213";

fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

#[test]
#[ignore]
fn speed() {
    let parse = per_call(2_000, || drop(black_box(classify(black_box(SHORT)))));
    let raw = per_call(2_000, || drop(black_box(pg_query::parse(black_box(SHORT), 0))));
    let summary = per_call(2_000, || drop(black_box(pg_query::summary(black_box(SHORT), 0, -1))));
    let fp = per_call(2_000, || drop(black_box(pg_query::fingerprint(black_box(SHORT), 0, 0))));
    let mut cache = Cache::new(NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN), 8192);
    let _ = cache.classify(SHORT);
    let hit = per_call(200_000, || drop(black_box(cache.classify(black_box(SHORT)))));
    eprintln!(
        "classify {parse:.0} ns (parse {raw:.0}, summary {summary:.0}, fingerprint {fp:.0}); cache hit {hit:.0} ns"
    );
}

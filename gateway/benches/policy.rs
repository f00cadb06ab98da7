//! Time per policy decision through Custos's policy layer, on generated RBAC +
//! `keyMatch2` + `regexMatch` policies of 1k and 10k rules with 1k users: the best rule
//! position (the first rule decides), the worst (the last rule decides), and a request
//! nothing allows. Prints p50/p99 per decision. The reference for the indexed evaluator.
//!
//!   cargo bench --bench policy            (POLICY_SIZES=1000,10000 POLICY_ITERS=200)
//!
//! Never run by CI.

use custos::policy::{PolicySet, Request};
use std::time::{Duration, Instant};

const MODEL: &str = "[request_definition]\nr = sub, obj, act\n\n[policy_definition]\np = sub, obj, act\n\n[role_definition]\ng = _, _\n\n[policy_effect]\ne = some(where (p.eft == allow))\n\n[matchers]\nm = g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && regexMatch(r.act, p.act)\n";

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sizes: Vec<usize> = std::env::var("POLICY_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let iters: usize = std::env::var("POLICY_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    println!("{:>6} {:<8} {:>12} {:>12}", "rules", "request", "p50_us", "p99_us");
    for n in sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let (model, policy) = (dir.path().join("m.conf"), dir.path().join("p.csv"));
        std::fs::write(&model, MODEL).unwrap();
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!("p, role{i}, /res{i}/:id, (GET)|(POST)\n"));
        }
        for u in 0..1000 {
            // user0 holds the first rule's role, user999 the last one's.
            let role = if u == 999 { n - 1 } else { u % n };
            text.push_str(&format!("g, user{u}, role{role}\n"));
        }
        std::fs::write(&policy, text).unwrap();
        let t = Instant::now();
        let set = PolicySet::load(&model, &policy).await.expect("the generated policy loads");
        println!("{n:>6} {:<8} {:>12.0} {:>12}", "load", t.elapsed().as_secs_f64() * 1e6, "-");
        let last = format!("/res{}/7", n - 1);
        let cases: [(&str, &str, &str, bool); 3] = [
            ("best", "user0", "/res0/7", true),
            ("worst", "user999", last.as_str(), true),
            ("denied", "user5", "/nothing/7", false),
        ];
        for (label, sub, obj, want) in cases {
            let r = Request {
                sub,
                groups: &[],
                dom: "",
                obj,
                act: "GET",
                mfa: false,
                breakglass: false,
                client: "127.0.0.1",
                hour: 0,
                route: "bench",
            };
            let rounds = if n >= 10_000 { iters.min(20) } else { iters };
            let mut times = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let t = Instant::now();
                let d = set.decide(&r);
                times.push(t.elapsed());
                assert_eq!(d.allow, want, "{label}");
            }
            println!("{n:>6} {label:<8} {:>12.1} {:>12.1}", pct(&mut times, 0.5), pct(&mut times, 0.99));
        }
    }
}

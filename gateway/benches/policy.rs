//! Time per policy decision on both engines side by side (the indexed evaluator and the
//! `casbin` crate), on generated policies of 1k and 10k rules with 1k users:
//!
//! - `narrow`: one role per rule (RBAC + keyMatch2 + regexMatch, the shape in issue 7);
//! - `wide`: 20 roles of N/20 rules each on distinct paths, deny-override, a domain
//!   column with `*`, and the shipped model's MFA clause: a role's bucket holds 500
//!   rules at 10k, so the path index decides.
//!
//! - `hipaa`: the shipped example (policies/hipaa_model.conf and hipaa_policy.csv as they
//!   are, plus `p, physician, cardiology, ehr:/plain, GET, allow`), decided as the gateway
//!   decides a signed-in user: the subject, then each IdP group as `group:<name>`.
//!
//! Requests: `best` (the role's first rule decides), `worst` (its last one), `denied`
//! (nothing matches); on `hipaa`: `best` (a physician reading /plain), `worst` (a nurse
//! deleting a record: deny), `denied` (a researcher on /patients: deny), `norole` (a user
//! in no group). Prints p50/p99 per decision, heap allocations per decision, and the
//! load (parse + casbin + index).
//!
//!   cargo bench --bench policy      (POLICY_SIZES=1000,10000 POLICY_ITERS=20000 POLICY_ENGINES=fast,casbin
//!                                   POLICY_SHAPES=narrow,wide,hipaa)
//!
//! Under callgrind (bench/policy-callgrind.sh) `POLICY_ONLY=engine:shape:size:request`
//! makes exactly `POLICY_CALLS` (10,000) decisions of one kind and times nothing.
//!
//! Never run by CI.

use custos::policy::{Engine, PolicySet, Request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts heap allocations, to show how many a decision makes.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NARROW: &str = "[request_definition]\nr = sub, obj, act\n\n[policy_definition]\np = sub, obj, act\n\n[role_definition]\ng = _, _\n\n[policy_effect]\ne = some(where (p.eft == allow))\n\n[matchers]\nm = g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && regexMatch(r.act, p.act)\n";

const WIDE: &str = "[request_definition]\nr = sub, dom, obj, act, mfa\n\n[policy_definition]\np = sub, dom, obj, act, eft\n\n[role_definition]\ng = _, _, _\n\n[policy_effect]\ne = some(where (p.eft == allow)) && !some(where (p.eft == deny))\n\n[matchers]\nm = g(r.sub, p.sub, r.dom) && (p.dom == \"*\" || r.dom == p.dom) && keyMatch2(r.obj, p.obj) && regexMatch(r.act, \"^(?:\" + p.act + \")$\") && (p.eft == \"deny\" || r.act == \"GET\" || r.mfa)\n";

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

/// One request of a shape: label, subject, IdP groups, object, action, the decision.
struct Req {
    label: &'static str,
    sub: String,
    groups: Vec<String>,
    obj: String,
    act: &'static str,
    allow: bool,
}

impl Req {
    fn new(label: &'static str, sub: &str, obj: String, allow: bool) -> Req {
        Req { label, sub: sub.into(), groups: Vec::new(), obj, act: "GET", allow }
    }
}

/// The shipped example policy's directory.
fn shipped(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (model, policy, requests, domain).
fn generate(shape: &str, n: usize) -> (String, String, Vec<Req>, &'static str) {
    let mut text = String::new();
    match shape {
        "hipaa" => {
            text = shipped("hipaa_policy.csv");
            text.push_str("\np, physician, cardiology, ehr:/plain, GET, allow\n");
            let who = |label, sub: &str, group: Option<&str>, obj: &str, act, allow| Req {
                label,
                sub: sub.into(),
                groups: group.into_iter().map(String::from).collect(),
                obj: obj.into(),
                act,
                allow,
            };
            let reqs = vec![
                who("best", "alice", Some("clinicians"), "ehr:/plain", "GET", true),
                who("worst", "nina", Some("staff"), "ehr:/patients/7", "DELETE", false),
                who("denied", "rita", Some("research"), "ehr:/patients/7", "GET", false),
                who("norole", "nobody", None, "ehr:/plain", "GET", false),
            ];
            (shipped("hipaa_model.conf"), text, reqs, "cardiology")
        }
        "narrow" => {
            for i in 0..n {
                text.push_str(&format!("p, role{i}, /res{i}/:id, (GET)|(POST)\n"));
            }
            for u in 0..1000 {
                // user0 holds the first rule's role, user999 the last one's.
                let role = if u == 999 { n - 1 } else { u % n };
                text.push_str(&format!("g, user{u}, role{role}\n"));
            }
            let reqs = vec![
                Req::new("best", "user0", "/res0/7".into(), true),
                Req::new("worst", "user999", format!("/res{}/7", n - 1), true),
                Req::new("denied", "user5", "/nothing/7".into(), false),
            ];
            (NARROW.into(), text, reqs, "ward")
        }
        _ => {
            let per = n / 20;
            for r in 0..20 {
                for i in 0..per {
                    text.push_str(&format!("p, role{r}, *, /r{r}/res{i}/:id, GET|POST, allow\n"));
                }
            }
            // One deny per role, last: every allowed request still looks for it.
            for r in 0..20 {
                text.push_str(&format!("p, role{r}, *, /r{r}/res{}/:id, DELETE, deny\n", per - 1));
            }
            for u in 0..1000 {
                text.push_str(&format!("g, user{u}, role{}, ward\n", u % 20));
            }
            let reqs = vec![
                Req::new("best", "user0", "/r0/res0/7".into(), true),
                Req::new("worst", "user0", format!("/r0/res{}/7", per - 1), true),
                Req::new("denied", "user0", "/r0/nothing/7".into(), false),
            ];
            (WIDE.into(), text, reqs, "ward")
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
    let only = std::env::var("POLICY_ONLY").ok();
    let sizes: Vec<usize> =
        env("POLICY_SIZES", "1000,10000").split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let iters: usize = env("POLICY_ITERS", "20000").parse().unwrap_or(20000);
    let engines: Vec<Engine> = env("POLICY_ENGINES", "fast,casbin")
        .split(',')
        .filter_map(|e| match e.trim() {
            "fast" => Some(Engine::Fast),
            "casbin" => Some(Engine::Casbin),
            _ => None,
        })
        .collect();
    let calls: usize = env("POLICY_CALLS", "10000").parse().unwrap_or(10_000);
    let roles = BTreeMap::new();
    if only.is_none() {
        println!(
            "{:<7} {:>6} {:<7} {:<8} {:>10} {:>10} {:>8}",
            "shape", "rules", "engine", "request", "p50_us", "p99_us", "allocs"
        );
    }
    let shapes = env("POLICY_SHAPES", "narrow,wide,hipaa");
    for shape in shapes.split(',').map(str::trim) {
        // The shipped example has one size: its own (printed as 0).
        let shape_sizes = if shape == "hipaa" { vec![0] } else { sizes.clone() };
        for &n in &shape_sizes {
            let dir = tempfile::tempdir().expect("temp dir");
            let (mp, pp) = (dir.path().join("m.conf"), dir.path().join("p.csv"));
            let (model, policy, reqs, dom) = generate(shape, n);
            std::fs::write(&mp, model).unwrap();
            std::fs::write(&pp, policy).unwrap();
            let t = Instant::now();
            let set = PolicySet::load(&mp, &pp).await.expect("the generated policy loads");
            let load = t.elapsed();
            assert_eq!(set.engine(), Engine::Fast, "{:?}", set.fallback);
            if only.is_none() {
                println!(
                    "{shape:<7} {n:>6} {:<7} {:<8} {:>10.0} {:>10}",
                    "both",
                    "load",
                    load.as_secs_f64() * 1e6,
                    "-"
                );
            }
            for &engine in &engines {
                for Req { label, sub, groups, obj, act, allow: want } in &reqs {
                    let r = Request {
                        sub,
                        groups,
                        dom,
                        obj,
                        act,
                        mfa: true,
                        breakglass: false,
                        client: "127.0.0.1",
                        hour: 0,
                        route: "bench",
                    };
                    if let Some(o) = &only {
                        if *o == format!("{engine}:{shape}:{n}:{label}") {
                            for _ in 0..calls {
                                std::hint::black_box(set.decide_with(engine, std::hint::black_box(&r), &roles));
                            }
                        }
                        continue;
                    }
                    let rounds = match engine {
                        Engine::Fast => iters,
                        Engine::Casbin if n >= 10_000 => 20,
                        Engine::Casbin => 200,
                    };
                    let mut times = Vec::with_capacity(rounds);
                    let before = ALLOCATIONS.load(Ordering::Relaxed);
                    for _ in 0..rounds {
                        let t = Instant::now();
                        let d = set.decide_with(engine, std::hint::black_box(&r), &roles);
                        times.push(t.elapsed());
                        assert_eq!(d.allow, *want, "{shape} {n} {engine} {label}");
                    }
                    let allocs = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / rounds as f64;
                    println!(
                        "{shape:<7} {n:>6} {engine:<7} {label:<8} {:>10.2} {:>10.2} {allocs:>8.1}",
                        pct(&mut times, 0.5),
                        pct(&mut times, 0.99)
                    );
                }
            }
        }
    }
}

//! The fast policy evaluator against the `casbin` crate: the same decision and the same
//! deciding rule, on casbin's own example models and policies and on seeded random
//! policies (role hierarchies, domains, resource roles, every covered pattern function,
//! deny rules, the three effects, Custos's attributes) with random requests.
//!
//!   CUSTOS_POLICY_DIFF_SEEDS=2000 cargo test --test e2e policy_engines   (CI runs 60)

use custos::policy::{Engine, PolicySet, Request};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/casbin-examples")
}

struct Req {
    sub: String,
    groups: Vec<String>,
    dom: String,
    obj: String,
    act: String,
    mfa: bool,
    client: String,
    hour: i64,
}

impl Req {
    fn as_request(&self) -> Request<'_> {
        Request {
            sub: &self.sub,
            groups: &self.groups,
            dom: &self.dom,
            obj: &self.obj,
            act: &self.act,
            mfa: self.mfa,
            breakglass: false,
            client: &self.client,
            hour: self.hour,
            route: "r",
        }
    }
}

/// Decides `r` on both engines; panics with the difference. Whether it allowed.
fn same(set: &PolicySet, r: &Req, what: &str) -> bool {
    let none = BTreeMap::new();
    let fast = set.decide_with(Engine::Fast, &r.as_request(), &none);
    let reference = set.decide_with(Engine::Casbin, &r.as_request(), &none);
    assert_eq!(
        fast, reference,
        "{what}: ({}, groups {:?}, {}, {}, {}, mfa={}, {}, hour {}): fast {fast:?}, casbin {reference:?}",
        r.sub, r.groups, r.dom, r.obj, r.act, r.mfa, r.client, r.hour
    );
    fast.allow
}

async fn load(model: &Path, policy: &Path) -> PolicySet {
    PolicySet::load(model, policy).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Every value in a column of the policy (by CSV position), and of `g` lines.
fn values(policy: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in policy.lines() {
        for f in line.split(',').skip(1) {
            out.insert(f.trim().to_string());
        }
    }
    out
}

#[tokio::test]
async fn casbin_fixtures_decide_alike_on_both_engines() {
    let cases = [
        ("basic_model.conf", "basic_policy.csv"),
        ("basic_with_root_model.conf", "basic_policy.csv"),
        ("basic_without_resources_model.conf", "basic_without_resources_policy.csv"),
        ("basic_without_users_model.conf", "basic_without_users_policy.csv"),
        ("rbac_model.conf", "rbac_policy.csv"),
        ("rbac_model.conf", "rbac_with_hierarchy_policy.csv"),
        ("rbac_with_domains_model.conf", "rbac_with_domains_policy.csv"),
        ("rbac_with_domains_model.conf", "rbac_with_hierarchy_with_domains_policy.csv"),
        ("rbac_with_resource_roles_model.conf", "rbac_with_resource_roles_policy.csv"),
        ("rbac_with_pattern_model.conf", "rbac_with_pattern_policy.csv"),
        ("rbac_with_deny_model.conf", "rbac_with_deny_policy.csv"),
        ("multi_section_model.conf", "multi_section_policy.csv"),
        ("keymatch_model.conf", "keymatch_policy.csv"),
        ("keymatch2_model.conf", "keymatch2_policy.csv"),
        ("ipmatch_model.conf", "ipmatch_policy.csv"),
        ("priority_model.conf", "priority_policy.csv"),
        ("custos_abac_model.conf", "custos_abac_policy.csv"),
    ];
    let mut compared = 0;
    for (m, p) in cases {
        let set = load(&dir().join(m), &dir().join(p)).await;
        assert_eq!(set.engine(), Engine::Fast, "{m}: {:?}", set.fallback);
        let text = std::fs::read_to_string(dir().join(p)).unwrap();
        let mut names = values(&text);
        names.extend(
            ["nobody", "/foo/bar", "/other", "data1", "GET", "read", "192.168.2.7", "10.0.9.9"].map(String::from),
        );
        let names: Vec<String> = names.into_iter().collect();
        let (mut allowed, mut n) = (0, 0);
        // Every token gets every name (the policy's values and some it lacks); mfa and
        // hour vary for the attribute model.
        for sub in &names {
            for obj in &names {
                for act in &names {
                    for (dom, mfa, hour) in [("domain1", false, 9), ("domain2", true, 3), ("other", true, 12)] {
                        let r = Req {
                            sub: sub.clone(),
                            groups: Vec::new(),
                            dom: dom.into(),
                            obj: obj.clone(),
                            act: act.clone(),
                            mfa,
                            client: sub.parse::<std::net::IpAddr>().map(|_| sub.clone()).unwrap_or("127.0.0.1".into()),
                            hour,
                        };
                        allowed += usize::from(same(&set, &r, m));
                        n += 1;
                    }
                }
            }
        }
        assert!(allowed > 0, "{m} + {p}: nothing allowed in {n}, the comparison proves little");
        compared += n;
    }
    assert!(compared > 10_000, "only {compared} decisions compared");
}

#[tokio::test]
async fn models_the_fast_evaluator_lacks_are_decided_by_casbin_with_the_feature_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, p) = (tmp.path().join("m.conf"), tmp.path().join("p.csv"));
    // casbin's `in` example, a pattern function outside the fast set, and a role
    // hierarchy deeper than casbin-rs follows.
    let chain: String = (0..12).map(|i| format!("g, r{i}, r{}\n", i + 1)).collect();
    let cases = [
        (
            std::fs::read_to_string(dir().join("rbac_model_matcher_using_in_op.conf")).unwrap(),
            "p, alice, data1, read\n".to_string(),
            "`in` operator",
            ("alice", "data2", "write", true),
        ),
        (
            std::fs::read_to_string(dir().join("keymatch_model.conf")).unwrap().replace("keyMatch(", "keyMatch4("),
            "p, alice, /a/{id}/b/{id}, GET\n".to_string(),
            "`keyMatch4`",
            ("alice", "/a/1/b/1", "GET", true),
        ),
        (
            std::fs::read_to_string(dir().join("rbac_model.conf")).unwrap(),
            format!("{chain}p, r12, data1, read\np, r8, data2, read\n"),
            "levels deep",
            ("r0_user", "data2", "read", false),
        ),
    ];
    let dup = "[request_definition]\nr = sub, obj, act\n\n[policy_definition]\np = sub, obj, act, obj\n\n[policy_effect]\ne = some(where (p.eft == allow))\n\n[matchers]\nm = r.sub == p.sub && r.obj == p.obj && r.act == p.act\n";
    let cases: Vec<_> = cases
        .into_iter()
        // A column named twice: the script engine reads the last one (casbin denies here).
        .chain([(
            dup.to_string(),
            "p, alice, api:/pub, GET, api:/admin\n".to_string(),
            "`p.obj` named twice",
            ("alice", "api:/pub", "GET", false),
        )])
        .collect();
    for (model, policy, feature, (sub, obj, act, want)) in cases {
        std::fs::write(&m, &model).unwrap();
        std::fs::write(&p, &policy).unwrap();
        let set = load(&m, &p).await;
        assert_eq!(set.engine(), Engine::Casbin, "{feature}");
        let why = set.fallback.clone().unwrap_or_default();
        assert!(why.contains(feature), "{feature}: {why}");
        let r = Req {
            sub: sub.into(),
            groups: vec![],
            dom: String::new(),
            obj: obj.into(),
            act: act.into(),
            mfa: false,
            client: "127.0.0.1".into(),
            hour: 0,
        };
        assert_eq!(set.decide(&r.as_request()).allow, want, "{feature}");
        // The fast engine asked for directly refuses rather than guess.
        let d = set.decide_with(Engine::Fast, &r.as_request(), &BTreeMap::new());
        assert!(!d.allow && d.rule.as_deref() == Some("error"), "{feature}: {d:?}");
    }
}

/// Requests where casbin's own keyMatch/ipMatch would panic (a non-ASCII path, a client
/// that is not an address), an effect column that is not the last, a `||` around
/// ipMatch: both engines give the same decision and rule.
#[tokio::test]
async fn edge_cases_decide_alike_on_both_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, p) = (tmp.path().join("m.conf"), tmp.path().join("p.csv"));
    let model = |r: &str, pd: &str, e: &str, matcher: &str| {
        format!("[request_definition]\nr = {r}\n\n[policy_definition]\np = {pd}\n\n[policy_effect]\ne = {e}\n\n[matchers]\nm = {matcher}\n")
    };
    let allow_override = "some(where (p.eft == allow))";
    let deny_override = "some(where (p.eft == allow)) && !some(where (p.eft == deny))";
    let nine: String = (0..9).map(|i| format!("p, alice, /z{i}*, allow\n")).collect();
    let cases = [
        (
            model("sub, obj", "sub, obj, eft", allow_override, "r.sub == p.sub && keyMatch(r.obj, p.obj)"),
            "p, alice, /a*, deny\np, alice, /*, allow\n".to_string(),
        ),
        (
            model("sub, obj", "sub, obj", allow_override, "keyMatch(r.obj, p.obj) && r.sub == p.sub"),
            "p, bob, /a*\np, alice, /*\n".to_string(),
        ),
        (
            model(
                "sub, obj",
                "sub, obj",
                allow_override,
                "(r.sub == p.sub || p.sub == \"*\") && keyMatch(r.obj, p.obj)",
            ),
            "p, *, /*\np, alice, /a*\n".to_string(),
        ),
        // A bucket large enough for the path index, with the `/a*` rule first.
        (
            model("sub, obj", "sub, obj, eft", deny_override, "r.sub == p.sub && keyMatch(r.obj, p.obj)"),
            format!("p, alice, /a*, deny\n{nine}p, alice, /*, allow\n"),
        ),
        (
            model(
                "sub, client",
                "sub, net",
                allow_override,
                "r.sub == p.sub && (p.net == \"any\" || ipMatch(r.client, p.net))",
            ),
            "p, alice, any\np, bob, 10.0.0.0/8\n".to_string(),
        ),
        (
            model("sub, obj", "sub, obj, eft, tag", deny_override, "r.sub == p.sub && r.obj == p.obj"),
            "p, alice, d, allow, deny\np, alice, d, deny, x\n".to_string(),
        ),
    ];
    let mut allowed = 0;
    for (model, policy) in cases {
        std::fs::write(&m, &model).unwrap();
        std::fs::write(&p, &policy).unwrap();
        let set = load(&m, &p).await;
        assert_eq!(set.engine(), Engine::Fast, "{model}: {:?}", set.fallback);
        for sub in ["alice", "bob"] {
            for obj in ["/é", "/a/é", "/é/a", "/a", "/b", "d", "/z1é"] {
                for client in ["", "10.0.0.1", "not-an-address", "::1"] {
                    let r = Req {
                        sub: sub.into(),
                        groups: vec![],
                        dom: String::new(),
                        obj: obj.into(),
                        act: "GET".into(),
                        mfa: false,
                        client: client.into(),
                        hour: 0,
                    };
                    allowed += usize::from(same(&set, &r, &format!("{model}\n{policy}")));
                }
            }
        }
    }
    assert!(allowed > 0);
}

/// splitmix64: a seeded sequence, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const EFFECTS: [&str; 3] = [
    "some(where (p.eft == allow))",
    "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    "priority(p.eft) || deny",
];

/// A random model and policy; the requests to try on it.
fn generate(rng: &mut Rng) -> (String, String, Vec<Req>) {
    let domains = rng.chance(40);
    let resource_roles = !domains && rng.chance(30);
    let attrs = rng.chance(30);
    let effect = *rng.pick(&EFFECTS);
    let with_eft = effect != EFFECTS[0] || rng.chance(50);
    let (obj_fn, objs, obj_patterns): (&str, &[&str], &[&str]) = match rng.below(4) {
        0 => (
            "keyMatch",
            &["/a/1", "/a/2", "/b/1", "/a", "/c/x/y", "/é/1"],
            &["/a/*", "/a/1", "/b/*", "*", "/c/*", "/a*"],
        ),
        1 => (
            "keyMatch2",
            &["/a/1", "/a/2", "/b/1", "/a", "/c/x/y"],
            &["/a/:id", "/a/*", "/:x/1", "/b/:id", "/c/*", "/a"],
        ),
        2 => ("keyMatch3", &["/a/1", "/a/2", "/b/1", "/a", "/c/x/y"], &["/a/{id}", "/a/*", "/{x}/1", "/c/{x}/y", "/a"]),
        _ => ("regexMatch", &["/a/1", "/a/22", "/b/1", "/a", "/c/x/y"], &["^/a/[0-9]+$", "/b", "^/c/", "1$", "^/a$"]),
    };
    let act_match =
        *rng.pick(&["r.act == p.act", "regexMatch(r.act, p.act)", "regexMatch(r.act, \"^(?:\" + p.act + \")$\")"]);
    let act_patterns: &[&str] = if act_match == "r.act == p.act" {
        &["GET", "POST", "DELETE", "custos:review"]
    } else {
        &["GET", "GET|POST", "(GET)|(DELETE)", ".*", "POST", "custos:review"]
    };
    let mut r = vec!["sub"];
    let mut p = vec!["sub"];
    if domains {
        r.push("dom");
        p.push("dom");
    }
    r.extend(["obj", "act"]);
    p.extend(["obj", "act"]);
    if attrs {
        r.extend(["mfa", "client", "hour"]);
        p.push("net");
    }
    if with_eft {
        p.push("eft");
    }
    let mut matcher = vec![if domains {
        "g(r.sub, p.sub, r.dom) && (p.dom == \"*\" || r.dom == p.dom)".to_string()
    } else {
        "g(r.sub, p.sub)".to_string()
    }];
    matcher.push(if resource_roles {
        format!("(g2(r.obj, p.obj) || {obj_fn}(r.obj, p.obj))")
    } else {
        format!("{obj_fn}(r.obj, p.obj)")
    });
    matcher.push(act_match.to_string());
    if attrs {
        matcher
            .push("ipMatch(r.client, p.net) && (r.mfa || r.act == \"GET\" || p.eft == \"deny\") && r.hour >= 8".into());
    }
    let mut matcher = matcher.join(" && ");
    if rng.chance(15) {
        matcher = format!("{matcher} || r.sub == \"root\"");
    }
    let roles_def = match (domains, resource_roles) {
        (true, _) => "g = _, _, _\n",
        (false, true) => "g = _, _\ng2 = _, _\n",
        _ => "g = _, _\n",
    };
    let model = format!(
        "[request_definition]\nr = {}\n\n[policy_definition]\np = {}\n\n[role_definition]\n{roles_def}\n[policy_effect]\ne = {effect}\n\n[matchers]\nm = {matcher}\n",
        r.join(", "),
        p.join(", ")
    );
    // Attribute models need the eft column for their `p.eft == "deny"` term.
    let model = if attrs && !with_eft { model.replace(" || p.eft == \"deny\"", "") } else { model };

    let nroles = 2 + rng.below(10);
    let nusers = 2 + rng.below(8);
    let doms = ["d1", "d2"];
    let nets = ["127.0.0.0/8", "10.0.0.0/16", "10.0.0.7", "::1"];
    let mut policy = String::new();
    // Roles in four levels, links one level up; sometimes a link back (a cycle).
    let level = |i: usize| i * 4 / nroles;
    for i in 0..nroles {
        for j in 0..nroles {
            let up = level(j) == level(i) + 1 && rng.chance(35);
            let back = j < i && rng.chance(3);
            if up || back {
                if domains {
                    policy.push_str(&format!("g, role{i}, role{j}, {}\n", rng.pick(&doms)));
                } else {
                    policy.push_str(&format!("g, role{i}, role{j}\n"));
                }
            }
        }
    }
    for u in 0..nusers {
        for _ in 0..rng.below(3) {
            let role = rng.below(nroles);
            if domains {
                policy.push_str(&format!("g, user{u}, role{role}, {}\n", rng.pick(&doms)));
            } else {
                policy.push_str(&format!("g, user{u}, role{role}\n"));
            }
        }
    }
    policy.push_str(&format!("g, group:ops, role{}{}\n", rng.below(nroles), if domains { ", d1" } else { "" }));
    if resource_roles {
        for o in objs {
            if rng.chance(50) {
                policy.push_str(&format!("g2, {o}, objgroup{}\n", rng.below(2)));
            }
        }
    }
    let nrules = 3 + rng.below(40);
    for _ in 0..nrules {
        let sub =
            if rng.chance(75) { format!("role{}", rng.below(nroles)) } else { format!("user{}", rng.below(nusers)) };
        let mut f = vec![sub];
        if domains {
            f.push(rng.pick(&["d1", "d2", "*"]).to_string());
        }
        let obj = if resource_roles && rng.chance(40) {
            format!("objgroup{}", rng.below(2))
        } else {
            rng.pick(obj_patterns).to_string()
        };
        f.push(obj);
        f.push(rng.pick(act_patterns).to_string());
        if attrs {
            f.push(rng.pick(&nets).to_string());
        }
        if with_eft {
            f.push(if rng.chance(25) { "deny" } else { "allow" }.to_string());
        }
        policy.push_str(&format!("p, {}\n", f.join(", ")));
    }

    let mut reqs = Vec::new();
    for _ in 0..150 {
        let sub = match rng.below(10) {
            0 => "nobody".to_string(),
            1 => "root".to_string(),
            _ => format!("user{}", rng.below(nusers)),
        };
        let groups = if rng.chance(20) { vec!["ops".to_string()] } else { vec![] };
        reqs.push(Req {
            sub,
            groups,
            dom: rng.pick(&["d1", "d2", "d3"]).to_string(),
            obj: rng.pick(objs).to_string(),
            act: if rng.chance(15) {
                rng.pick(&["custos:review", "custos:breakglass"])
            } else {
                rng.pick(&["GET", "POST", "DELETE"])
            }
            .to_string(),
            mfa: rng.chance(50),
            client: rng.pick(&["127.0.0.1", "10.0.0.7", "10.0.3.1", "::1", "192.168.1.1", ""]).to_string(),
            hour: rng.below(24) as i64,
        });
    }
    (model, policy, reqs)
}

#[tokio::test]
async fn random_policies_decide_alike_on_both_engines() {
    let seeds: u64 = std::env::var("CUSTOS_POLICY_DIFF_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let (m, p) = (tmp.path().join("m.conf"), tmp.path().join("p.csv"));
    let (mut decisions, mut allowed, mut denied_by_rule, mut fast_models) = (0usize, 0usize, 0usize, 0u64);
    let mut gateway_allowed = 0usize;
    for seed in 0..seeds {
        let mut rng = Rng(seed);
        let (model, policy, reqs) = generate(&mut rng);
        std::fs::write(&m, &model).unwrap();
        std::fs::write(&p, &policy).unwrap();
        let set = PolicySet::load(&m, &p).await.unwrap_or_else(|e| panic!("seed {seed}: {e}\n{model}\n{policy}"));
        if set.engine() != Engine::Fast {
            // Only a hierarchy too deep for casbin-rs's walk may fall back here.
            let why = set.fallback.clone().unwrap_or_default();
            assert!(why.contains("levels deep"), "seed {seed}: {why}\n{model}");
            continue;
        }
        fast_models += 1;
        for r in &reqs {
            let what = format!("seed {seed}\n{model}\n{policy}");
            let allow = same(&set, r, &what);
            allowed += usize::from(allow);
            let d = set.decide(&r.as_request());
            // A gateway action only by a rule that names it: no wildcard (`.*`), no
            // `|` alternative reaches one.
            if d.allow && r.act.starts_with("custos:") {
                let rule = d.rule.as_deref().unwrap_or_default();
                assert!(rule.split(", ").any(|f| f == r.act), "{what}: {} allowed by `{rule}`", r.act);
                gateway_allowed += 1;
            }
            denied_by_rule += usize::from(!d.allow && d.rule.is_some());
            decisions += 1;
        }
    }
    assert!(fast_models * 10 >= seeds * 9, "only {fast_models} of {seeds} models on the fast engine");
    // The generator must produce every outcome, or agreement proves little.
    assert!(allowed * 10 > decisions && allowed * 10 < decisions * 9, "{allowed} of {decisions} allowed");
    assert!(denied_by_rule > 0, "no explicit deny decided anything");
    assert!(gateway_allowed > 0, "no rule naming a gateway action granted it");
    eprintln!("policy engines: {decisions} decisions on {fast_models} random models agree ({allowed} allowed, {denied_by_rule} denied by a rule)");
}

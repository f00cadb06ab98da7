//! casbin on every request, through the gateway with real sign-ins: a nurse reads but
//! does not delete notes; a write to a clinical record needs MFA; an IdP group grants a
//! role; path tricks cannot reach a denied record; every decision names its rule.

use crate::harness::*;
use serde_json::Value;

async fn call(s: &Site, method: &str, path: &str, token: &str) -> reqwest::Response {
    client()
        .request(method.parse().unwrap(), format!("{}{path}", s.origin))
        .bearer_auth(token)
        .body("note")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_policy_decides_every_request_and_names_its_rule() {
    let (s, upstream) = policy_site().await;
    let dir = s.gw.audit_dir();
    // bob is in the IdP group `staff`, which the policy maps to `nurse` in cardiology.
    let nurse = tokens(&s.idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&s, "GET", "/patients/1/notes", &nurse).await.status(), 200);
    let allow =
        audit_has(&dir, |r| decision(r).as_deref() == Some("allow") && r.path.as_deref() == Some("/patients/1/notes"))
            .await;
    assert_eq!(allow.rule.as_deref(), Some("p, nurse, cardiology, ehr:/patients/*, GET, allow"));

    let r = call(&s, "DELETE", "/patients/1/notes", &nurse).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "error": "forbidden", "route": "ehr", "action": "DELETE" }));
    let deny =
        audit_has(&dir, |r| decision(r).as_deref() == Some("deny") && r.method.as_deref() == Some("DELETE")).await;
    assert_eq!(reason(&deny).as_deref(), Some("policy"));
    assert_eq!(deny.rule.as_deref(), Some("p, nurse, cardiology, ehr:/patients/*, DELETE, deny"));

    // Path tricks reach the same normalised object, which the policy denies.
    for path in
        ["/patients/3/notes", "/patients/1/../3/notes", "/patients/%33/notes", "/patients//3/notes", "/patients/./3"]
    {
        assert_eq!(call(&s, "GET", path, &nurse).await.status(), 403, "{path}");
    }
    assert_eq!(call(&s, "GET", "/patients/1/..%2F3/notes", &nurse).await.status(), 400);
    // Path parameters, which some upstreams drop before routing, are refused.
    assert_eq!(call(&s, "GET", "/patients/3;x/notes", &nurse).await.status(), 400);
    // The audit names the deny that decided, not an allow that also matched.
    let vip =
        audit_has(&dir, |r| decision(r).as_deref() == Some("deny") && r.path.as_deref() == Some("/patients/3/notes"))
            .await;
    assert_eq!(vip.rule.as_deref(), Some("p, nurse, cardiology, ehr:/patients/3/*, [A-Z]+, deny"));
    // Nothing of patient 3 reached the upstream, nor any DELETE.
    let seen = upstream.seen();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|x| !x.target.starts_with("/patients/3") && x.method != "DELETE"), "{seen:?}");

    // Writes to clinical records need MFA: alice (group clinicians → physician) without
    // her code is asked to step up (RFC 9470: the policy would allow it with MFA), with
    // it allowed.
    let one_factor = tokens(&s.idp, "alice", "alice-password", "").await["access_token"].as_str().unwrap().to_string();
    let r = call(&s, "POST", "/patients/1/notes", &one_factor).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_user_authentication"));
    assert_eq!(call(&s, "GET", "/patients/1", &one_factor).await.status(), 200);
    let mfa = tokens(&s.idp, "alice", "alice-password", "123456").await["access_token"].as_str().unwrap().to_string();
    let r = call(&s, "POST", "/patients/1/notes", &mfa).await;
    assert!(r.status().is_success(), "{}", r.status());
    let allow =
        audit_has(&dir, |r| decision(r).as_deref() == Some("allow") && r.method.as_deref() == Some("POST")).await;
    assert_eq!(
        allow.rule.as_deref(),
        Some("p, physician, cardiology, ehr:/patients/*, (GET)|(POST)|(PUT)|(PATCH), allow")
    );

    // A browser gets a page that names the route and the action, not the rule.
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients", "bob", "bob-password", None).await.status(), 302);
    let r = nav(&c, &format!("{}/patients/3", s.origin)).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("GET on ehr") && !page.contains("p, nurse"), "{page}");
}

fn policy_test(model: &std::path::Path, policy: &std::path::Path, cases: &std::path::Path) -> (i32, String) {
    policy_test_on("auto", model, policy, cases)
}

fn policy_test_on(
    engine: &str,
    model: &std::path::Path,
    policy: &std::path::Path,
    cases: &std::path::Path,
) -> (i32, String) {
    let out = std::process::Command::new(CUSTOS)
        .args(["policy", "test", "--engine", engine, "--model"])
        .arg(model)
        .arg("--policy")
        .arg(policy)
        .arg("--cases")
        .arg(cases)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// Every shipped policy passes its cases, and the same cases fail against the policy
/// with its allow rules removed (the cases test something); a mismatch names the rule.
#[test]
fn shipped_policies_pass_their_cases_and_the_cases_can_fail() {
    let dir = policies();
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let cases = entry.unwrap().path();
        let Some(stem) = cases.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix("_cases.toml")) else {
            continue;
        };
        let (model, policy) = (dir.join(format!("{stem}_model.conf")), dir.join(format!("{stem}_policy.csv")));
        let (code, out) = policy_test(&model, &policy, &cases);
        assert_eq!(code, 0, "{stem}: {out}");
        // The gateway's engine is the fast one for the shipped policies; casbin agrees.
        assert!(out.contains("fast engine"), "{stem}: {out}");
        let (code, out) = policy_test_on("casbin", &model, &policy, &cases);
        assert!(code == 0 && out.contains("casbin engine"), "{stem}: {out}");
        let tmp = tempfile::tempdir().unwrap();
        let stripped = tmp.path().join("no-allow.csv");
        let text = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(
            &stripped,
            text.lines().filter(|l| !l.trim_end().ends_with(", allow")).collect::<Vec<_>>().join("\n"),
        )
        .unwrap();
        for engine in ["fast", "casbin"] {
            let (code, out) = policy_test_on(engine, &model, &stripped, &cases);
            assert_eq!(code, 1, "{stem} ({engine}): the cases pass without any allow rule: {out}");
            assert!(out.contains("FAIL case"), "{out}");
        }
        ran += 1;
    }
    assert!(ran >= 1, "no policies/*_cases.toml found");

    // A mismatch names the rule that decided it; a broken cases file names its line.
    let tmp = tempfile::tempdir().unwrap();
    let wrong = tmp.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[[case]]\nname = \"nurse deletes\"\nsub = \"bob\"\ngroups = [\"staff\"]\ndom = \"cardiology\"\nobj = \"ehr:/patients/1/notes\"\nact = \"DELETE\"\nmfa = true\nexpect = \"allow\"\n",
    )
    .unwrap();
    let (code, out) = policy_test(&dir.join("hipaa_model.conf"), &dir.join("hipaa_policy.csv"), &wrong);
    assert_eq!(code, 1);
    assert!(out.contains("expected allow, got deny by `p, nurse, cardiology, ehr:/patients/*, DELETE, deny`"), "{out}");
    std::fs::write(&wrong, "[[case]]\nsub = \"bob\"\nobj = \"x\"\nact = \"GET\"\nexpect = \"maybe\"\n").unwrap();
    let (code, out) = policy_test(&dir.join("hipaa_model.conf"), &dir.join("hipaa_policy.csv"), &wrong);
    assert_eq!(code, 2);
    assert!(out.contains("wrong.toml:5"), "{out}");
    // An hour no clock shows (casbin would see it cut to 32 bits) is refused.
    std::fs::write(
        &wrong,
        "[[case]]\nsub = \"bob\"\nobj = \"x\"\nact = \"GET\"\nhour = 4294967296\nexpect = \"deny\"\n",
    )
    .unwrap();
    let (code, out) = policy_test(&dir.join("hipaa_model.conf"), &dir.join("hipaa_policy.csv"), &wrong);
    assert!(code == 2 && out.contains("case 1: `hour` is the hour of day, 0–23"), "{out}");
}

/// Hot reload: a changed policy is in force on the next requests without a restart; a
/// broken one, or one that fails its cases, changes nothing and is audited with why;
/// SIGHUP reloads and does not stop the gateway.
#[tokio::test]
async fn policy_reloads_only_when_it_loads_and_passes_its_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, policy, cases) = (tmp.path().join("m.conf"), tmp.path().join("p.csv"), tmp.path().join("c.toml"));
    std::fs::copy(policies().join("hipaa_model.conf"), &model).unwrap();
    std::fs::copy(policies().join("hipaa_policy.csv"), &policy).unwrap();
    std::fs::copy(policies().join("hipaa_cases.toml"), &cases).unwrap();
    let good = std::fs::read_to_string(&policy).unwrap();
    let (s, _upstream) = policy_site_with(&format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\ncases = \"{}\"\npoll_ms = 200\n",
        model.display(),
        policy.display(),
        cases.display()
    ))
    .await;
    let dir = s.gw.audit_dir();
    let nurse = tokens(&s.idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    let status = |path: &'static str| {
        let (url, t) = (format!("{}{path}", s.origin), nurse.clone());
        async move { client().get(url).bearer_auth(t).send().await.unwrap().status().as_u16() }
    };
    let count = |kind: &str| audit_records(&dir).iter().filter(|r| crate::harness::kind(&r.event) == kind).count();
    async fn until(mut f: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if f() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    }
    assert_eq!(status("/patients/2").await, 200);

    // A broken file: refused with its line, the last good policy stays.
    std::fs::write(&policy, format!("{good}\nq, nurse, cardiology\n")).unwrap();
    assert!(until(|| count("policy.reload_rejected") >= 1).await, "no policy.reload_rejected");
    let lines = good.lines().count() + 2;
    let rejected = audit_has(&dir, |r| kind(r) == "policy.reload_rejected").await;
    assert!(reason(&rejected).as_deref().unwrap().contains(&format!("p.csv:{lines}")), "{rejected:?}");
    assert_eq!(status("/patients/2").await, 200);

    // A good change: in force on the next requests.
    std::fs::write(&policy, format!("{good}\np, nurse, cardiology, ehr:/patients/2, GET, deny\n")).unwrap();
    assert!(until(|| count("policy.reloaded") >= 1).await, "no policy.reloaded");
    assert_eq!(status("/patients/2").await, 403, "the reloaded policy is not in force");
    let reloaded = audit_has(&dir, |r| kind(r) == "policy.reloaded").await;
    assert!(reloaded.rule.as_deref().unwrap().starts_with("model="), "{reloaded:?}");

    // A model that would deny everything, or panic on every request, written over the
    // good one: refused with the model's file and line, in the audit trail and the log,
    // without a panic; the policy in force stays.
    let good_model = std::fs::read_to_string(&model).unwrap();
    let (m_line, e_line) = (line_starting(&good_model, "m = "), line_starting(&good_model, "e = "));
    for (bad, at, what) in [
        (good_model.replace("|| r.mfa)", "|| r.foo)"), m_line, "`r.foo`"),
        (
            good_model.replace("e = some(where (p.eft == allow)) &&", "e = some(where (p.eft == allowed)) &&"),
            e_line,
            "effect",
        ),
    ] {
        let before = count("policy.reload_rejected");
        std::fs::write(&model, bad).unwrap();
        assert!(until(|| count("policy.reload_rejected") > before).await, "a broken model was not refused ({what})");
        let at = format!("m.conf:{at}:");
        audit_has(&dir, |r| {
            kind(r) == "policy.reload_rejected"
                && reason(r).as_deref().is_some_and(|m| m.contains(at.as_str()) && m.contains(what))
        })
        .await;
        assert!(
            s.gw.log().lines().any(|l| l.contains("policy reload refused") && l.contains(at.as_str())),
            "{}",
            s.gw.log()
        );
        assert_eq!(status("/patients/2").await, 403, "the last good policy is no longer in force");
    }
    assert!(!s.gw.log().contains("panicked"), "{}", s.gw.log());
    let before = count("policy.reloaded");
    std::fs::write(&model, &good_model).unwrap();
    assert!(until(|| count("policy.reloaded") > before).await, "the good model was not reloaded");

    // A change that fails the cases (the nurse role gone): refused, nothing changes.
    let before = count("policy.reload_rejected");
    std::fs::write(&policy, good.replace("g, group:staff, nurse, cardiology", "")).unwrap();
    assert!(until(|| count("policy.reload_rejected") > before).await);
    assert!(audit_records(&dir).iter().any(|r| reason(&r.event).as_deref().is_some_and(|m| m.contains("cases fail"))));
    assert_eq!(status("/patients/1").await, 200, "a policy that failed its cases was put in force");

    // SIGHUP reloads (here: refuses the same files again) and the gateway keeps serving.
    let before = count("policy.reload_rejected");
    let _ = std::process::Command::new(tool("kill", "procps")).args(["-HUP", &s.gw.pid().to_string()]).status();
    assert!(until(|| count("policy.reload_rejected") > before).await, "SIGHUP did not reload");
    assert_eq!(status("/patients/1").await, 200);
}

/// `custos ARGS…` with backtraces asked for (so a panic could not hide): exit code and
/// everything it printed.
fn custos(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = std::process::Command::new(CUSTOS).args(args).env("RUST_BACKTRACE", "1").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// The 1-based line of the first line of `text` that starts with `prefix`.
fn line_starting(text: &str, prefix: &str) -> usize {
    text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

/// Each kind of broken model or policy is reported by `policy lint`, `policy test` and
/// `custos check` with its own file and line, as an error, never as a panic: a matcher
/// that does not compile, an effect casbin does not evaluate, a request token or a
/// function the matcher names that nothing defines, a rule with the wrong number of
/// fields (on either engine).
#[test]
fn broken_policies_are_reported_with_their_file_and_line_never_a_panic() {
    let dir = policies();
    let model = std::fs::read_to_string(dir.join("hipaa_model.conf")).unwrap();
    let policy = std::fs::read_to_string(dir.join("hipaa_policy.csv")).unwrap();
    let (m_line, e_line) = (line_starting(&model, "m = "), line_starting(&model, "e = "));
    // Each bad line goes after a blank one.
    let last = policy.lines().count() + 2;
    let slow = model.replace("keyMatch3(r.obj, p.obj)", "keyMatch4(r.obj, p.obj)");
    let cases: Vec<(&str, String, String, String, &str)> = vec![
        (
            "a matcher syntax error",
            model.replace("m = (g(", "m = ((g("),
            policy.clone(),
            format!("m.conf:{m_line}:"),
            "the matcher does not compile",
        ),
        (
            "an invalid effect",
            model.replace("e = some(where (p.eft == allow)) &&", "e = some(where (p.eft == allowed)) &&"),
            policy.clone(),
            format!("m.conf:{e_line}:"),
            "is not one casbin evaluates",
        ),
        (
            "an undefined request token",
            model.replace("|| r.mfa)", "|| r.foo)"),
            policy.clone(),
            format!("m.conf:{m_line}:"),
            "`r.foo`, which is not defined",
        ),
        (
            "an undefined function",
            model.replace("keyMatch3(r.obj, p.obj)", "keyMatch9(r.obj, p.obj)"),
            policy.clone(),
            format!("m.conf:{m_line}:"),
            "`keyMatch9`, which is not a function",
        ),
        (
            "a short rule",
            model.clone(),
            format!("{policy}\np, nurse, cardiology, ehr:/x\n"),
            format!("p.csv:{last}:"),
            "this `p` line has 3 fields; the model's `p = sub, dom, obj, act, eft` has 5",
        ),
        (
            "a long rule on the casbin engine",
            slow.clone(),
            format!("{policy}\np, nurse, cardiology, ehr:/x, GET, allow, extra\n"),
            format!("p.csv:{last}:"),
            "this `p` line has 6 fields",
        ),
        (
            "a short assignment on the casbin engine",
            slow,
            format!("{policy}\ng, bob, nurse\n"),
            format!("p.csv:{last}:"),
            "this `g` line has 2 fields; the model's `g = _, _, _` has 3",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let (m, p, config) = (tmp.path().join("m.conf"), tmp.path().join("p.csv"), tmp.path().join("custos.toml"));
    std::fs::write(
        &config,
        format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n[oidc]\nissuer = \"http://127.0.0.1:4400\"\nclient_id = \"c\"\nclient_secret = {{ file = \"{}/ca.pem\" }}\nredirect_url = \"http://127.0.0.1:8080/.custos/callback\"\n[session]\nredis_url = \"redis://127.0.0.1:1/\"\n[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n[[routes]]\npublic = true\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n",
            certs().display(),
            m.display(),
            p.display()
        ),
    )
    .unwrap();
    let cases_file = dir.join("hipaa_cases.toml");
    for (what, model_text, policy_text, at, message) in &cases {
        std::fs::write(&m, model_text).unwrap();
        std::fs::write(&p, policy_text).unwrap();
        let runs = [
            (
                "policy lint",
                1,
                vec![
                    "policy".as_ref(),
                    "lint".as_ref(),
                    "--model".as_ref(),
                    m.as_os_str(),
                    "--policy".as_ref(),
                    p.as_os_str(),
                ],
            ),
            (
                "policy test",
                2,
                vec![
                    "policy".as_ref(),
                    "test".as_ref(),
                    "--model".as_ref(),
                    m.as_os_str(),
                    "--policy".as_ref(),
                    p.as_os_str(),
                    "--cases".as_ref(),
                    cases_file.as_os_str(),
                ],
            ),
            ("check", 2, vec!["check".as_ref(), "--config".as_ref(), config.as_os_str()]),
        ];
        for (command, want_code, args) in runs {
            let (code, out) = custos(&args);
            assert_eq!(code, want_code, "{what}: `custos {command}` exit code: {out}");
            let line = out
                .lines()
                .find(|l| l.contains(at.as_str()))
                .unwrap_or_else(|| panic!("{what}: `custos {command}` does not name `{at}`:\n{out}"));
            assert!(line.contains(message), "{what}: `custos {command}`: `{message}` is not in: {line}");
            assert!(!out.contains("panicked") && !out.contains("RUST_BACKTRACE"), "{what}: `custos {command}`:\n{out}");
        }
    }
    // The good files pass all three, so the cases above fail for their one defect.
    std::fs::write(&m, &model).unwrap();
    std::fs::write(&p, &policy).unwrap();
    let (code, out) = custos(&["check".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_eq!(code, 0, "{out}");
}

fn lint(model: &std::path::Path, policy: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(CUSTOS)
        .args(["policy", "lint", "--model"])
        .arg(model)
        .arg("--policy")
        .arg(policy)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn lint_reports_errors_with_lines_and_warns_about_dead_rules() {
    let model = policies().join("hipaa_model.conf");
    let (code, out) = lint(&model, &policies().join("hipaa_policy.csv"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors"), "{out}");

    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("p.csv");
    std::fs::write(
        &p,
        "p, nurse, cardiology, ehr:/patients/*, GET, allow\n\
         p, nurse, cardiology, ehr:/patients/*, .*, deny\n\
         p, surgeon, cardiology, ehr:/theatre/*, GET, allow\n\
         p, nurse, oncology, ehr:/x/*, GET, allow\n\
         p, nurse, cardiology, ehr:/patients/*, GET, allow\n\
         g, bob, nurse, cardiology\n\
         g, carol, porter, cardiology\n",
    )
    .unwrap();
    let (code, out) = lint(&model, &p);
    assert_eq!(code, 0, "warnings only: {out}");
    for want in [
        "p.csv:1: warning: this allow can never take effect: the deny on line 2 covers it",
        "p.csv:3: warning: `surgeon` has permissions but no `g` line grants it to anyone",
        "p.csv:4: warning: no `g` line assigns anyone in domain `oncology`",
        "p.csv:5: warning: the same rule as line 1",
        "p.csv:7: warning: role `porter` is granted but has no permissions",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }

    // Rules of an IdP group and of the emergency subject are held without a `g` line; a
    // name with rules that no `g` line names is not called a role outright; a user (only
    // ever in a `g` line's first column) is never called a role.
    std::fs::write(
        &p,
        "p, group:staff, cardiology, ehr:/wards/*, GET, allow\n\
         p, breakglass, cardiology, ehr:/patients/*, GET, allow\n\
         p, alice, cardiology, ehr:/theatre/*, GET, allow\n\
         p, nurse, cardiology, ehr:/patients/*, GET, allow\n\
         g, bob, nurse, cardiology\n\
         g, carol, porter, cardiology\n",
    )
    .unwrap();
    let (code, out) = lint(&model, &p);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("group:staff") && !out.contains("breakglass"), "{out}");
    assert!(
        out.contains("p.csv:3: warning: `alice` has permissions but no `g` line grants it to anyone (a role nobody holds, unless `alice` is a user's own name)"),
        "{out}"
    );
    assert!(out.contains("p.csv:6: warning: role `porter` is granted but has no permissions"), "{out}");
    for user in ["bob", "carol"] {
        assert!(!out.contains(&format!("`{user}`")), "a user is reported: {out}");
    }
    // The shipped policy, emergency rules included, has nothing to report.
    let (code, out) = lint(&model, &policies().join("hipaa_policy.csv"));
    assert!(code == 0 && out.contains("0 errors, 0 warnings"), "{out}");

    std::fs::write(&p, "p, nurse, cardiology, ehr:/patients/*, GET, allow\nthis is not a rule\n").unwrap();
    let (code, out) = lint(&model, &p);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("p.csv:2: error"), "{out}");
    std::fs::write(&p, "p, nurse, cardiology, ehr:/patients/*, (GET, allow\ng, bob, nurse, cardiology\n").unwrap();
    let (code, out) = lint(&model, &p);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("p.csv:1: error: action `(GET` is not a valid regular expression"), "{out}");
    // An object pattern casbin cannot compile is found at load, with its line.
    std::fs::write(&p, "p, nurse, cardiology, ehr:/patients/(x, GET, allow\ng, bob, nurse, cardiology\n").unwrap();
    let (code, out) = lint(&model, &p);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("p.csv:1: error: `ehr:/patients/(x` is not a valid pattern for keyMatch3"), "{out}");
    // An effect that is neither allow nor deny (a cut line), and an allow-by-default model.
    std::fs::write(&p, "p, nurse, cardiology, ehr:/patients/*, GET, de\ng, bob, nurse, cardiology\n").unwrap();
    let (code, out) = lint(&model, &p);
    assert!(code == 1 && out.contains("p.csv:1: error: the effect must be allow or deny"), "{out}");
    let open_model = tmp.path().join("open.conf");
    let open = std::fs::read_to_string(&model).unwrap().replace(
        "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
        "e = !some(where (p.eft == deny))",
    );
    std::fs::write(&open_model, open).unwrap();
    let (code, out) = lint(&open_model, &policies().join("hipaa_policy.csv"));
    assert!(code == 1 && out.contains("allow-by-default"), "{out}");
    // Spelled with a tab: still refused (read as casbin parsed it).
    std::fs::write(&open_model, std::fs::read_to_string(&open_model).unwrap().replace("e = !some", "e =\t!some"))
        .unwrap();
    let (code, out) = lint(&open_model, &policies().join("hipaa_policy.csv"));
    assert!(code == 1 && out.contains("allow-by-default"), "{out}");
    // A model the fast evaluator does not cover: a warning that names what, and the
    // cases still run on casbin (auto), while asking for the fast engine is refused.
    let slow_model = tmp.path().join("slow.conf");
    std::fs::write(
        &slow_model,
        std::fs::read_to_string(&model).unwrap().replace("keyMatch3(r.obj, p.obj)", "keyMatch4(r.obj, p.obj)"),
    )
    .unwrap();
    let (code, out) = lint(&slow_model, &policies().join("hipaa_policy.csv"));
    assert!(code == 0 && out.contains("warning: the fast evaluator does not cover the function `keyMatch4`"), "{out}");
    let cases = policies().join("hipaa_cases.toml");
    let (code, out) = policy_test(&slow_model, &policies().join("hipaa_policy.csv"), &cases);
    assert!(code == 0 && out.contains("casbin engine"), "{out}");
    let (code, out) = policy_test_on("fast", &slow_model, &policies().join("hipaa_policy.csv"), &cases);
    assert!(code == 2 && out.contains("keyMatch4"), "{out}");
}

/// `[policy.group_roles]`: an IdP group decided as a role named in config, instead of
/// `group:<name>`.
#[tokio::test]
async fn an_explicit_mapping_turns_an_idp_group_into_a_role() {
    let p = policies();
    let (s, _upstream) = policy_site_with(&format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n[policy.group_roles]\nstaff = \"billing\"\n",
        p.join("hipaa_model.conf").display(),
        p.join("hipaa_policy.csv").display()
    ))
    .await;
    let bob = tokens(&s.idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    // As billing, bob sees invoices and no longer the records his nurse role gave him.
    assert_ne!(call(&s, "GET", "/billing/invoices/7", &bob).await.status(), 403);
    assert_eq!(call(&s, "GET", "/patients/1", &bob).await.status(), 403);
    let allow = audit_has(&s.gw.audit_dir(), |r| decision(r).as_deref() == Some("allow")).await;
    assert_eq!(allow.rule.as_deref(), Some("p, billing, *, ehr:/billing/*, (GET)|(POST), allow"));
}

/// A model the fast evaluator does not cover still serves, decided by the `casbin`
/// crate, and the gateway says so at start, naming the feature; the shipped model runs
/// on the fast engine.
#[tokio::test]
async fn a_model_outside_the_fast_set_starts_with_a_warning_and_casbin_decides() {
    let p = policies();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.conf");
    std::fs::write(
        &model,
        std::fs::read_to_string(p.join("hipaa_model.conf"))
            .unwrap()
            .replace("keyMatch3(r.obj, p.obj)", "keyMatch4(r.obj, p.obj)"),
    )
    .unwrap();
    let (s, _upstream) = policy_site_with(&format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n",
        model.display(),
        p.join("hipaa_policy.csv").display()
    ))
    .await;
    let nurse = tokens(&s.idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&s, "GET", "/patients/1/notes", &nurse).await.status(), 200);
    assert_eq!(call(&s, "DELETE", "/patients/1/notes", &nurse).await.status(), 403);
    let log = s.gw.log();
    let warning = log.lines().find(|l| l.contains("fast policy evaluator does not cover")).unwrap_or_default();
    assert!(warning.contains("WARN") && warning.contains("the function `keyMatch4`"), "{log}");

    let (s, _upstream) = policy_site().await;
    assert_eq!(call(&s, "GET", "/patients/1/notes", &nurse).await.status(), 200);
    let log = s.gw.log();
    assert!(!log.contains("does not cover"), "{log}");
}

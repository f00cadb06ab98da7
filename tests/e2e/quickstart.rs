//! The quickstart (examples/quickstart.sh, examples/quickstart.toml) shows what it says
//! (`custos check` on it: config_errors.rs): its printed steps name the people of the
//! test provider, and those
//! steps work on the quickstart's own policy, break-glass and route settings (here on
//! ephemeral ports): a nurse reads notes, is asked to step up for a write, is refused a
//! delete, declares an emergency for a restricted record; the security lead and a
//! reviewer read the review queue, an administrator reads no record.

use crate::harness::*;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn quickstart() -> toml::Table {
    let text = std::fs::read_to_string(root().join("examples/quickstart.toml")).unwrap();
    text.parse().unwrap_or_else(|e| panic!("examples/quickstart.toml: {e}"))
}

#[test]
fn the_quickstart_runs_the_policy_and_its_message_names_the_providers_people() {
    let cfg = quickstart();
    assert!(cfg.contains_key("policy") && cfg.contains_key("breakglass"), "the quickstart runs without a policy");
    let script = std::fs::read_to_string(root().join("examples/quickstart.sh")).unwrap();
    let idp = std::fs::read_to_string(root().join("tests/idp/server.mjs")).unwrap();
    for who in ["nora", "alice", "bob", "sam", "adam", "rhea", "ravi", "rosa"] {
        assert!(script.contains(who), "quickstart.sh does not name {who}");
        assert!(idp.contains(&format!("  {who}: {{ password: '{who}-password'")), "tests/idp has no {who}");
    }
    // The emergency URL it prints names a route of its config.
    let routes = cfg["routes"].as_array().unwrap();
    let bg = script.split("/.custos/breakglass?route=").nth(1).expect("no emergency URL in the message");
    let route = bg.split('&').next().unwrap();
    assert!(routes.iter().any(|r| r["name"].as_str() == Some(route)), "no route {route}");
}

#[tokio::test]
async fn the_quickstart_steps_work_on_its_policy_and_break_glass() {
    let cfg = quickstart();
    let examples = root().join("examples");
    let policy = cfg["policy"].as_table().unwrap();
    let file = |k: &str| examples.join(policy[k].as_str().unwrap()).display().to_string();
    let breakglass = toml::to_string(&cfg["breakglass"]).unwrap();
    let policy = format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\ncases = \"{}\"\n",
        file("model"),
        file("policy"),
        file("cases")
    );
    let breakglass = format!("[breakglass]\n{breakglass}");
    // The quickstart's records route, in front of this test's demo upstream.
    let mut records = cfg["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == Some("demo-patients"))
        .expect("a demo-patients route")
        .as_table()
        .unwrap()
        .clone();
    let demo = demo().await;
    records.insert("upstream".into(), format!("http://{}", demo.addr).into());
    let mut t = toml::Table::new();
    t.insert("routes".into(), toml::Value::Array(vec![records.into()]));
    let routes = toml::to_string(&t).unwrap();
    let s = site(Opts { policy: &policy, breakglass: &breakglass, routes: Some(routes), ..Default::default() }).await;
    let at = |p: &str| format!("{}{p}", s.origin);

    // 1. nora, a nurse, signs in with her password only: reading needs no more.
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1/notes", "nora", "nora-password", None).await.status(), 302);
    assert_eq!(nav(&c, &at("/patients/1/notes")).await.status(), 200);
    // 2. A write needs her second factor: a step-up, not a plain refusal.
    let r = c.post(at("/patients/1/notes")).body("BP 120/80").send().await.unwrap();
    assert_eq!(r.status(), 401, "a write without MFA: {}", r.text().await.unwrap());
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("insufficient_user_authentication"), "{challenge}");
    audit_has(&s.gw.audit_dir(), |e| {
        e.method.as_deref() == Some("POST") && reason(e).as_deref() == Some("mfa_required")
    })
    .await;
    let login = "/.custos/login?rd=/patients/1/notes";
    assert_eq!(sign_in(&s, &c, login, "nora", "nora-password", Some("123456")).await.status(), 302);
    let r = c.post(at("/patients/1/notes")).body("BP 120/80").send().await.unwrap();
    assert_eq!(r.status(), 201, "a nurse with MFA adds a note");
    // 3. Never a delete, even with MFA.
    let r = c.delete(at("/patients/1/notes/1")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(demo.seen().iter().filter(|q| q.method == "DELETE").count(), 0, "a delete reached the upstream");
    // 4. The restricted record, then a declared emergency opens it.
    assert_eq!(nav(&c, &at("/patients/3")).await.status(), 403);
    let form = nav(&c, &at("/.custos/breakglass?route=demo-patients&path=/patients/3")).await;
    assert_eq!(form.status(), 200);
    let page = form.text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let why = "Patient collapsed in the waiting room; allergy list needed";
    let r = c
        .post(at("/.custos/breakglass"))
        .header("origin", s.origin.clone())
        .form(&[("csrf", csrf.as_str()), ("route", "demo-patients"), ("path", "/patients/3"), ("justification", why)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(nav(&c, &at("/patients/3")).await.status(), 200, "the declared emergency did not open the record");
    let started = audit_has(&s.gw.audit_dir(), |e| kind(e) == "breakglass.started").await;
    assert_eq!(subject(&started), Some("nora"));

    // 5. The security lead and a reviewer read the review queue; the administrator
    //    reads no record.
    for who in ["sam", "rhea"] {
        let b = browser();
        let pass = format!("{who}-password");
        let reviews = "/.custos/breakglass/reviews";
        assert_eq!(sign_in(&s, &b, reviews, who, &pass, Some("123456")).await.status(), 302);
        let r = nav(&b, &at(reviews)).await;
        assert_eq!(r.status(), 200, "{who} may not review");
        assert!(r.text().await.unwrap().contains(why), "{who} does not see nora's emergency");
    }
    let b = browser();
    assert_eq!(sign_in(&s, &b, "/patients/1", "adam", "adam-password", Some("123456")).await.status(), 302);
    assert_eq!(nav(&b, &at("/patients/1")).await.status(), 403, "the administrator read a record");
}

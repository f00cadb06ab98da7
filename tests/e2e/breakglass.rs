//! Break-glass emergency access, end to end with Redis, the IdP and the browser pages: a
//! declared emergency lets a nurse open the record policy refuses her, loudly (audit and
//! signed alerts, no justification text in either) and only for its time; with the IdP
//! stopped a sealed link works once and never twice, an expired one not at all; nobody
//! reviews their own emergency.

use crate::harness::*;
use crate::login::{audit_has, browser, nav, sign_in, site, Opts, Site};
use crate::policy::policies;
use crate::sinks::receiver;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ALERT_SECRET: &[u8] = b"a-break-glass-alert-secret";
const WHY: &str = "Patient in room 3 collapsed; I need the allergy list now";

/// An administrator token for `name`: (file holding the token, the tokens-file line).
fn admin_token(dir: &Path, name: &str) -> (PathBuf, String) {
    let out = Command::new(CUSTOS).args(["admin-token", name]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    let line = text.lines().nth(1).unwrap().split(':').nth(1).unwrap().trim().to_string();
    let f = dir.join(format!("{name}-token"));
    std::fs::write(&f, token).unwrap();
    (f, line)
}

/// A site on the example HIPAA policy with IdP group `clinicians` decided as `nurse`
/// (alice, who can do MFA, is then a nurse), `[breakglass]` with `extra` lines and
/// alerts in both formats to `rx`, and administrators carol and alice.
async fn bg_site(
    idp: &str,
    extra: &str,
    rx: std::net::SocketAddr,
    dir: &Path,
) -> (Site, demo_ephi::Demo, PathBuf, PathBuf) {
    bg_site_with(idp, "", extra, rx, dir).await
}

/// [`bg_site`] with extra `[session]` lines.
async fn bg_site_with(
    idp: &str,
    session_lines: &str,
    extra: &str,
    rx: std::net::SocketAddr,
    dir: &Path,
) -> (Site, demo_ephi::Demo, PathBuf, PathBuf) {
    let secret = dir.join("alert-secret");
    std::fs::write(&secret, ALERT_SECRET).unwrap();
    let (carol, l1) = admin_token(dir, "carol");
    let (alice, l2) = admin_token(dir, "alice");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{l1}\n{l2}\n")).unwrap();
    let p = policies();
    // The example policy, plus: alice audits (she reviews on the page) and, by a `g` line
    // too, nurses (what a sealed session of hers has); dave is a nurse.
    let policy = dir.join("policy.csv");
    let text = std::fs::read_to_string(p.join("hipaa_policy.csv")).unwrap();
    std::fs::write(
        &policy,
        format!("{text}\ng, alice, auditor, cardiology\ng, alice, nurse, cardiology\ng, dave, nurse, cardiology\n"),
    )
    .unwrap();
    let demo = demo().await;
    let routes = format!(
        "[[routes]]\nname = \"ehr\"\nupstream = \"http://{}\"\nrequire_mfa = false\nresource = \"ehr\"\ndomain = \"cardiology\"\n",
        demo.addr
    );
    let session = format!(
        "{session_lines}\n[policy]\nmodel = \"{m}\"\npolicy = \"{p}\"\n[policy.group_roles]\nclinicians = \"nurse\"\n\n[breakglass]\n{extra}\n\
         [[breakglass.alerts]]\nurl = \"http://{rx}/slack\"\nformat = \"slack\"\nsecret = {{ file = \"{s}\" }}\n\
         [[breakglass.alerts]]\nurl = \"http://{rx}/json\"\nformat = \"json\"\nsecret = {{ file = \"{s}\" }}\n",
        m = p.join("hipaa_model.conf").display(),
        p = policy.display(),
        s = secret.display(),
    );
    let s =
        site(Opts { idp, session: &session, routes: Some(routes), admin_tokens: Some(&tokens), ..Default::default() })
            .await;
    (s, demo, carol, alice)
}

fn cli(s: &Site, token: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(CUSTOS)
        .args(["breakglass", "--admin", &format!("http://{}", s.gw.admin), "--token-file"])
        .arg(token)
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The value of the hidden field `name` in a page.
fn field(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The current code of a TOTP secret (base32), as an authenticator app shows it.
fn totp_now(secret: &str) -> String {
    let key = totp_rs::Secret::Encoded(secret.to_string()).to_bytes().unwrap();
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, key).generate_current().unwrap()
}

/// Everything the audit directory holds, as text.
fn audit_text(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()));
    }
    all
}

async fn alerts(rx: &crate::sinks::Receiver, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let got = rx.taken.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("only {:?} alerts", rx.taken.lock().unwrap());
}

#[tokio::test]
async fn a_declared_emergency_opens_a_refused_record_loudly_and_only_for_its_time() {
    let rx = receiver(ALERT_SECRET, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, _demo, carol, alice_admin) = bg_site(
        idp_url(),
        "max_secs = 8\ndefault_secs = 8\nmax_per_day = 2\nreview_domain = \"cardiology\"",
        rx.addr,
        dir.path(),
    )
    .await;
    let audit = s.gw.audit_dir();
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    // As a nurse, alice may not open the restricted record.
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 403);

    // The emergency URL an EHR links to: a form, bound to her session.
    let url = format!("{}/.custos/breakglass?route=ehr&path=/patients/3", s.origin);
    let r = nav(&c, &url).await;
    assert_eq!(r.status(), 200);
    let form = r.text().await.unwrap();
    let csrf = field(&form, "csrf");
    let post = |fields: Vec<(&'static str, String)>| {
        c.post(format!("{}/.custos/breakglass", s.origin)).header("origin", s.origin.clone()).form(&fields).send()
    };
    let base = |csrf: &str, why: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("route", "ehr".to_string()),
            ("path", "/patients/3".to_string()),
            ("justification", why.to_string()),
            ("case_ref", "INC-4242".to_string()),
            ("minutes", "60".to_string()),
        ]
    };
    // A forged form (no token of this session), and an empty justification: refused.
    assert_eq!(post(base("0000", WHY)).await.unwrap().status(), 403);
    assert_eq!(post(base(&csrf, "   ")).await.unwrap().status(), 400);
    let declared = std::time::Instant::now();
    let r = post(base(&csrf, WHY)).await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()["location"], "/patients/3");

    // Now the record opens, and the decision says it was under the grant.
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 200);
    let started = audit_has(&audit, |e| e["kind"] == "breakglass.started").await;
    let grant = started["grant"].as_str().unwrap().to_string();
    assert_eq!(started["actor"]["subject"], "alice");
    assert_eq!(started["breakglass"], true);
    assert_eq!(started["case_ref"], "INC-4242");
    assert_eq!(started["justification_sha256"], crate::login::sha256(WHY));
    assert_eq!(started["justification_len"], WHY.chars().count());
    audit_has(&audit, |e| {
        e["kind"] == "access.decision" && e["path"] == "/patients/3" && e["decision"] == "allow" && e["grant"] == grant
    })
    .await;

    // Alerts: a Slack message and the signed JSON object, each verified by the receiver
    // (the first try was answered 500: retried), with no justification text.
    let got = alerts(&rx, 2).await;
    assert_eq!(rx.bad_signatures.load(std::sync::atomic::Ordering::SeqCst), 0);
    let json: Value =
        got.iter().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["grant"].is_string())).unwrap();
    assert_eq!(json["who"], "alice");
    assert_eq!(json["route"], "ehr");
    assert_eq!(json["grant"], grant.as_str());
    assert_eq!(json["case_ref"], "INC-4242");
    assert!(got.iter().any(|l| l.contains("\"text\"") && l.contains("alice") && l.contains(&grant)), "{got:?}");
    assert!(!got.iter().any(|l| l.contains("allergy")), "an alert carried the justification: {got:?}");

    // The grant ends on time (its 8 s, and some slack for a loaded machine): the record
    // is refused again and the end is recorded.
    let ended = until_status(&c, &format!("{}/patients/3", s.origin), 403).await;
    assert!(ended - declared < Duration::from_secs(8 + 15), "the grant lasted {:?}", ended - declared);
    audit_has(&audit, |e| e["kind"] == "breakglass.ended" && e["grant"] == grant && e["reason"] == "expired").await;

    // A second declaration today is allowed (max 2), a third is not.
    let r = nav(&c, &url).await;
    let csrf = field(&r.text().await.unwrap(), "csrf");
    assert_eq!(post(base(&csrf, WHY)).await.unwrap().status(), 303);
    assert_eq!(post(base(&csrf, WHY)).await.unwrap().status(), 429);
    // bob (no MFA) is sent to step up; a researcher-like user without the action cannot
    // declare: the policy decides (covered by the cases); here bob's browser is redirected.
    let b = browser();
    assert_eq!(sign_in(&s, &b, "/patients/1", "bob", "bob-password", None).await.status(), 302);
    let r = nav(&b, &url).await;
    assert_eq!(r.status(), 302, "one factor is not enough to declare");

    // Review: alice may not review her own emergency; carol may, once.
    let (ok, out) = cli(&s, &carol, &["list", "--unreviewed"]);
    assert!(ok && out.contains(&grant) && out.contains(WHY), "{out}");
    let (ok, out) = cli(&s, &alice_admin, &["review", &grant, "--verdict", "justified", "--note", "mine"]);
    assert!(!ok && out.contains("403"), "{out}");
    let (ok, out) = cli(&s, &carol, &["review", &grant, "--verdict", "justified", "--note", "code blue, confirmed"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&s, &carol, &["list", "--unreviewed"]);
    assert!(ok && !out.contains(&grant), "{out}");
    audit_has(&audit, |e| e["kind"] == "breakglass.reviewed" && e["grant"] == grant && e["reason"] == "justified")
        .await;
    audit_has(&audit, |e| e["kind"] == "breakglass.denied" && e["reason"] == "self_review").await;

    // The review page: dave used a sealed link (no code); alice, an auditor with MFA,
    // reviews it there; her own emergency she may not; bob (one factor) must step up.
    let (ok, out) = cli(
        &s,
        &carol,
        &["issue", "--user", "dave", "--route", "ehr", "--path", "/patients/1", "--ttl", "8s", "--totp"],
    );
    assert!(ok, "{out}");
    let link: Value = serde_json::from_str(&out).unwrap();
    let d = browser();
    let token = field(&nav(&d, link["url"].as_str().unwrap()).await.text().await.unwrap(), "t");
    let r = d
        .post(format!("{}/.custos/breakglass/link", s.origin))
        .form(&[
            ("t", token),
            ("code", totp_now(link["totp_secret"].as_str().unwrap())),
            ("justification", "Night shift, chart needed".to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // dave's sealed session opens the records while its grant lasts (checked at once: the
    // grant is short).
    assert_eq!(nav(&d, &format!("{}/patients/1", s.origin)).await.status(), 200);
    let daves = audit_has(&audit, |e| e["kind"] == "breakglass.link_used" && e["actor"]["subject"] == "dave").await;
    let daves = daves["grant"].as_str().unwrap().to_string();
    let reviews = format!("{}/.custos/breakglass/reviews", s.origin);
    let page = nav(&c, &reviews).await.text().await.unwrap();
    assert!(page.contains(&daves) && page.contains("Night shift, chart needed"), "{page}");
    audit_has(&audit, |e| e["kind"] == "breakglass.reviews_read" && e["actor"]["subject"] == "alice").await;
    let csrf = field(&page, "csrf");
    let review = |id: String| {
        c.post(&reviews)
            .header("origin", s.origin.clone())
            .form(&[
                ("csrf", csrf.clone()),
                ("id", id),
                ("verdict", "unjustified".to_string()),
                ("note", "no patient on that ward".to_string()),
            ])
            .send()
    };
    assert_eq!(review(daves.clone()).await.unwrap().status(), 303);
    audit_has(&audit, |e| {
        e["kind"] == "breakglass.reviewed"
            && e["grant"] == daves
            && e["actor"]["subject"] == "alice"
            && e["reason"] == "unjustified"
    })
    .await;
    let second = audit_has(&audit, |e| {
        e["kind"] == "breakglass.started" && e["grant"] != grant && e["actor"]["subject"] == "alice"
    })
    .await;
    let second = second["grant"].as_str().unwrap().to_string();
    assert_eq!(review(second.clone()).await.unwrap().status(), 403, "her own");
    assert_eq!(nav(&b, &reviews).await.status(), 302, "bob has one factor: step up first");
    // Signing out ends the grant, on the record.
    let r = c.post(format!("{}/.custos/logout", s.origin)).send().await.unwrap();
    assert!(r.status().is_redirection() || r.status() == 200, "{}", r.status());
    audit_has(&audit, |e| e["kind"] == "breakglass.ended" && e["grant"] == second && e["reason"] == "logout").await;

    // dave's sealed session lives only as long as its grant: then he is sent to sign in.
    until_status(&d, &format!("{}/patients/1", s.origin), 302).await;
    audit_has(&audit, |e| e["kind"] == "breakglass.ended" && e["grant"] == daves && e["reason"] == "expired").await;

    // The trail holds every step, and never the justification's text.
    let text = audit_text(&audit);
    assert!(!text.contains("allergy"), "the audit trail holds the justification");
}

#[tokio::test]
async fn with_the_idp_down_a_sealed_link_works_once_and_an_expired_one_not_at_all() {
    let port = free_port();
    let idp = IdpServer::start(port);
    let idp_url = format!("http://127.0.0.1:{port}");
    // Wait for the provider to answer before the site registers its client.
    for _ in 0..100 {
        if client().get(format!("{idp_url}/.well-known/openid-configuration")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rx = receiver(ALERT_SECRET, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, _demo, carol, _) = bg_site(&idp_url, "max_secs = 3600", rx.addr, dir.path()).await;
    let audit = s.gw.audit_dir();
    let (ok, out) = cli(
        &s,
        &carol,
        &["issue", "--user", "alice", "--route", "ehr", "--path", "/patients/1", "--ttl", "30m", "--totp"],
    );
    assert!(ok, "{out}");
    let issued: Value = serde_json::from_str(&out).unwrap();
    let url = issued["url"].as_str().unwrap().to_string();
    let secret = issued["totp_secret"].as_str().unwrap().to_string();
    let (ok, out) = cli(
        &s,
        &carol,
        &["issue", "--user", "alice", "--route", "ehr", "--path", "/patients/1", "--ttl", "1s", "--totp"],
    );
    assert!(ok, "{out}");
    let short: Value = serde_json::from_str(&out).unwrap();
    // Only for someone the policy lets declare there, by its g lines: not erin (no
    // roles), not outside the records.
    for args in [
        ["--user", "erin", "--path", "/patients/1", "--totp"],
        ["--user", "alice", "--path", "/billing/1", "--totp"],
        // Without a code the session has no second factor, which declaring on records needs.
        ["--user", "alice", "--path", "/patients/1", "--ttl=1h"],
    ] {
        let (ok, out) = cli(&s, &carol, &[&["issue", "--route", "ehr"][..], &args[..]].concat());
        assert!(!ok && out.contains("403") && out.contains("g lines"), "{args:?}: {out}");
    }
    drop(idp);

    let c = browser();
    // Opening the link uses nothing (a link scanner may fetch it).
    let r = nav(&c, &url).await;
    assert_eq!(r.status(), 200);
    let token = field(&r.text().await.unwrap(), "t");
    let code = totp_now(&secret);
    let use_link = |code: String| {
        c.post(format!("{}/.custos/breakglass/link", s.origin))
            .form(&[("t", token.clone()), ("code", code), ("justification", WHY.to_string())])
            .send()
    };
    assert_eq!(use_link("000000".into()).await.unwrap().status(), 403, "a wrong code");
    let r = use_link(code.clone()).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/patients/1");
    // A session for alice with her policy roles only (the g lines): the records open.
    assert_eq!(nav(&c, &format!("{}/patients/1", s.origin)).await.status(), 200);
    let used = audit_has(&audit, |e| e["kind"] == "breakglass.link_used").await;
    assert_eq!(used["actor"]["subject"], "alice");
    assert_eq!(used["target"], "admin:carol");
    audit_has(&audit, |e| e["kind"] == "breakglass.started" && e["reason"] == "sealed_link").await;

    // Never twice: refused and alerted.
    let again = browser();
    let r = again
        .post(format!("{}/.custos/breakglass/link", s.origin))
        .form(&[("t", token.clone()), ("code", code), ("justification", WHY.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let got = alerts(&rx, 4).await;
    assert!(got.iter().any(|l| l.contains("breakglass.link_reused")), "{got:?}");
    assert!(got.iter().any(|l| l.contains("SECOND USE") && l.contains("alice")), "{got:?}");
    // Presented again: no second alert (one per link), still refused.
    let r = again
        .post(format!("{}/.custos/breakglass/link", s.origin))
        .form(&[("t", token.clone()), ("justification", WHY.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.taken.lock().unwrap().len(), 4, "a second alert for the same link");
    // carol may not issue a link to herself.
    let (ok, out) = cli(&s, &carol, &["issue", "--user", "Carol@hospital.example", "--route", "ehr", "--ttl", "10m"]);
    assert!(!ok && out.contains("403"), "{out}");
    audit_has(&audit, |e| e["kind"] == "breakglass.denied" && e["reason"] == "link_used").await;

    // Past its time: refused as expired, not as unknown.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = nav(&browser(), short["url"].as_str().unwrap()).await;
    assert_eq!(r.status(), 410);
    audit_has(&audit, |e| e["kind"] == "breakglass.denied" && e["reason"] == "link_expired").await;
    let r = nav(&browser(), &format!("{}/.custos/breakglass/link?t=forged", s.origin)).await;
    assert_eq!(r.status(), 404);
    assert!(!audit_text(&audit).contains("allergy"), "the audit trail holds the justification");
}

/// Navigates to `url` until it answers `status` (a grant running out), for up to 60 s;
/// returns when it first did.
async fn until_status(c: &reqwest::Client, url: &str, status: u16) -> std::time::Instant {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = nav(c, url).await.status();
        if got == status {
            return std::time::Instant::now();
        }
        assert!(std::time::Instant::now() < deadline, "{url} still answers {got}, not {status}, after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Declares an emergency through the form at `url` (ehr, /patients/3).
async fn declare(s: &Site, c: &reqwest::Client, url: &str) -> reqwest::Response {
    let csrf = field(&nav(c, url).await.text().await.unwrap(), "csrf");
    c.post(format!("{}/.custos/breakglass", s.origin))
        .form(&[("csrf", csrf), ("route", "ehr".into()), ("path", "/patients/3".into()), ("justification", WHY.into())])
        .send()
        .await
        .unwrap()
}

/// A grant whose session times out (automatic logoff), or that the provider signs out
/// over the back channel, ends with it, on the record.
#[tokio::test]
async fn a_grant_ends_with_its_session_on_idle_timeout_and_provider_logout() {
    let rx = receiver(ALERT_SECRET, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let session = "idle_timeout_secs = 5\ntouch_interval_secs = 1\n";
    let (s, _demo, _, _) = bg_site_with(idp_url(), session, "", rx.addr, dir.path()).await;
    let audit = s.gw.audit_dir();
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    let url = format!("{}/.custos/breakglass?route=ehr&path=/patients/3", s.origin);
    assert_eq!(declare(&s, &c, &url).await.status(), 303);
    let started = audit_has(&audit, |e| e["kind"] == "breakglass.started").await;
    // Past the 5 s (whole seconds: 6 s is past it whatever the rounding).
    tokio::time::sleep(Duration::from_millis(6000)).await;
    // Idle past the timeout: sent to sign in again, and the grant's end is recorded.
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 302);
    audit_has(&audit, |e| {
        e["kind"] == "breakglass.ended" && e["grant"] == started["grant"] && e["reason"] == "session_idle_timeout"
    })
    .await;

    // Again, then the provider ends alice's sessions over the back channel.
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    assert_eq!(declare(&s, &c, &url).await.status(), 303);
    let again = audit_has(&audit, |e| e["kind"] == "breakglass.started" && e["grant"] != started["grant"]).await;
    let client_id = {
        let text = std::fs::read_to_string(s.gw.dir.path().join("custos.toml")).unwrap();
        text.lines().find_map(|l| l.strip_prefix("client_id = \"")).unwrap().trim_end_matches('"').to_string()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let payload = serde_json::json!({ "iss": s.idp, "aud": client_id, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": "alice" });
    let token = crate::bearer::signed(&s.idp, serde_json::json!({ "typ": "logout+jwt" }), payload).await;
    let r = client()
        .post(format!("{}/.custos/backchannel-logout", s.origin))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    audit_has(&audit, |e| {
        e["kind"] == "breakglass.ended" && e["grant"] == again["grant"] && e["reason"] == "backchannel_logout"
    })
    .await;
}

/// Alerts are queued durably and retried until taken: with both receivers down when the
/// emergency is declared, and up only 10 s (and many more tries than the old five) later,
/// each still gets its alert, signed, once.
#[tokio::test]
async fn an_alert_reaches_a_receiver_that_comes_back_later() {
    use std::time::Instant;
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let dir = tempfile::tempdir().unwrap();
    let fast = format!("\n[audit]\n{}", crate::sinks::FAST_RETRY);
    let (s, _demo, _carol, _alice) = bg_site_with(idp_url(), &fast, "", addr, dir.path()).await;
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    let r = declare(&s, &c, &format!("{}/.custos/breakglass?route=ehr&path=/patients/3", s.origin)).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let declared = Instant::now();
    let started = audit_has(&s.gw.audit_dir(), |e| e["kind"] == "breakglass.started").await;
    let failures = "custos_audit_sink_failures_total{sink=\"alert-";
    let deadline = declared + Duration::from_secs(40);
    while (declared.elapsed() < Duration::from_secs(10)
        || crate::sinks::metric(&s.gw, failures).await.unwrap_or(0.0) < 12.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rx = crate::sinks::receiver_on(port, ALERT_SECRET, 0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.taken.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = rx.taken.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "alerts received once the receivers were back: {got:?}");
    assert_eq!(rx.bad_signatures.load(std::sync::atomic::Ordering::SeqCst), 0);
    let json: Value =
        got.iter().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["grant"].is_string())).unwrap();
    assert_eq!(json["grant"], started["grant"]);
    assert_eq!(json["who"], "alice");
    assert!(json["id"].is_string(), "the alert has an id a receiver can de-duplicate by: {json}");
    assert!(got.iter().any(|l| l.contains("\"text\"") && l.contains(started["grant"].as_str().unwrap())), "{got:?}");
}

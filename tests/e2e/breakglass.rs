//! Break-glass emergency access, end to end with Redis, the IdP and the browser pages: a
//! declared emergency lets a nurse open the record policy refuses her, loudly (audit and
//! signed alerts, no justification text in either) and only for its time; with the IdP
//! stopped a sealed link works once and never twice, an expired one not at all, and its
//! printed end is the end of access; a grant opens only what was declared; wrong codes
//! spend a link loudly; every end is recorded on time, once, across gateways; nobody
//! reviews their own emergency, and a sealed session reviews nothing.

use crate::harness::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ALERT_SECRET: &[u8] = b"a-break-glass-alert-secret";
const WHY: &str = "Patient in room 3 collapsed; I need the allergy list now";

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
    bg_site_sharing(idp, session_lines, extra, rx, dir, None).await
}

/// [`bg_site_with`] on the Redis key prefix `prefix` (gateways that share it share
/// sessions and grants).
async fn bg_site_sharing(
    idp: &str,
    session_lines: &str,
    extra: &str,
    rx: std::net::SocketAddr,
    dir: &Path,
    prefix: Option<String>,
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
    let policy = format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n[policy.group_roles]\nclinicians = \"nurse\"\n",
        p.join("hipaa_model.conf").display(),
        policy.display(),
    );
    let breakglass = format!(
        "[breakglass]\n{extra}\n\
         [[breakglass.alerts]]\nurl = \"http://{rx}/slack\"\nformat = \"slack\"\nsecret = {{ file = \"{s}\" }}\n\
         [[breakglass.alerts]]\nurl = \"http://{rx}/json\"\nformat = \"json\"\nsecret = {{ file = \"{s}\" }}\n",
        s = secret.display(),
    );
    let s = site(Opts {
        idp,
        session: session_lines,
        policy: &policy,
        breakglass: &breakglass,
        routes: Some(routes),
        admin_tokens: Some(&tokens),
        prefix,
        ..Default::default()
    })
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

/// Waits until the clock reads `secs` (unix seconds) or later.
async fn until(secs: u64) {
    while now_secs() < secs {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alerts(rx: &Receiver, n: usize) -> Vec<String> {
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
    let started = audit_has(&audit, |e| kind(e) == "breakglass.started").await;
    let grant = started.grant.clone().unwrap();
    assert_eq!(subject(&started), Some("alice"));
    assert_eq!(started.breakglass, Some(true));
    assert_eq!(started.case_ref.as_deref(), Some("INC-4242"));
    assert_eq!(started.justification_sha256.as_deref(), Some(&*sha256(WHY)));
    assert_eq!(started.justification_len, Some(WHY.chars().count()));
    audit_has(&audit, |e| {
        kind(e) == "access.decision"
            && e.path.as_deref() == Some("/patients/3")
            && decision(e).as_deref() == Some("allow")
            && e.grant.as_deref() == Some(&*grant)
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
    audit_has(&audit, |e| {
        kind(e) == "breakglass.ended" && e.grant.as_deref() == Some(&*grant) && reason(e).as_deref() == Some("expired")
    })
    .await;

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

    // Review: alice may not review her own emergency; carol may, once. A note is plain
    // text, like a justification: no control characters.
    let (ok, out) = cli(&s, &carol, &["list", "--unreviewed"]);
    assert!(ok && out.contains(&grant) && out.contains(WHY), "{out}");
    for note in ["fine\u{1b}[2J\u{1b}[Hall clear", "ok\u{7}", "ok\u{7f}"] {
        let (ok, out) = cli(&s, &carol, &["review", &grant, "--verdict", "justified", "--note", note]);
        assert!(!ok && out.contains("400") && out.contains("control characters"), "{note:?}: {out}");
    }
    let (ok, out) = cli(&s, &alice_admin, &["review", &grant, "--verdict", "justified", "--note", "mine"]);
    assert!(!ok && out.contains("403"), "{out}");
    let (ok, out) = cli(&s, &carol, &["review", &grant, "--verdict", "justified", "--note", "code blue, confirmed"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&s, &carol, &["list", "--unreviewed"]);
    assert!(ok && !out.contains(&grant), "{out}");
    audit_has(&audit, |e| {
        kind(e) == "breakglass.reviewed"
            && e.grant.as_deref() == Some(&*grant)
            && reason(e).as_deref() == Some("justified")
    })
    .await;
    audit_has(&audit, |e| kind(e) == "breakglass.denied" && reason(e).as_deref() == Some("self_review")).await;

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
    let daves = audit_has(&audit, |e| kind(e) == "breakglass.link_used" && subject(e) == Some("dave")).await;
    let daves = daves.grant.clone().unwrap();
    let reviews = format!("{}/.custos/breakglass/reviews", s.origin);
    let page = nav(&c, &reviews).await.text().await.unwrap();
    assert!(page.contains(&daves) && page.contains("Night shift, chart needed"), "{page}");
    audit_has(&audit, |e| kind(e) == "breakglass.reviews_read" && subject(e) == Some("alice")).await;
    let csrf = field(&page, "csrf");
    let review_with = |id: String, note: &str| {
        c.post(&reviews)
            .header("origin", s.origin.clone())
            .form(&[
                ("csrf", csrf.clone()),
                ("id", id),
                ("verdict", "unjustified".to_string()),
                ("note", note.to_string()),
            ])
            .send()
    };
    let review = |id: String| review_with(id, "no patient on that ward");
    let r = review_with(daves.clone(), "no patient\u{8}\u{8}\u{8}ward cleared").await.unwrap();
    assert_eq!(r.status(), 400, "a note with control characters");
    assert!(r.text().await.unwrap().contains("control characters"));
    assert_eq!(review(daves.clone()).await.unwrap().status(), 303);
    audit_has(&audit, |e| {
        kind(e) == "breakglass.reviewed"
            && e.grant.as_deref() == Some(&*daves)
            && subject(e) == Some("alice")
            && reason(e).as_deref() == Some("unjustified")
    })
    .await;
    let second = audit_has(&audit, |e| {
        kind(e) == "breakglass.started" && e.grant.as_deref() != Some(&*grant) && subject(e) == Some("alice")
    })
    .await;
    let second = second.grant.clone().unwrap();
    assert_eq!(review(second.clone()).await.unwrap().status(), 403, "her own");
    assert_eq!(nav(&b, &reviews).await.status(), 302, "bob has one factor: step up first");
    // Signing out ends the grant, on the record.
    let r = c.post(format!("{}/.custos/logout", s.origin)).send().await.unwrap();
    assert!(r.status().is_redirection() || r.status() == 200, "{}", r.status());
    audit_has(&audit, |e| {
        kind(e) == "breakglass.ended" && e.grant.as_deref() == Some(&*second) && reason(e).as_deref() == Some("logout")
    })
    .await;

    // dave's sealed session lives only as long as its grant: then he is sent to sign in.
    let end = link["expires"].as_u64().unwrap();
    audit_by(&[&audit], end + 10, |e| {
        kind(e) == "breakglass.ended" && e.grant.as_deref() == Some(&*daves) && reason(e).as_deref() == Some("expired")
    })
    .await;
    assert_eq!(nav(&d, &format!("{}/patients/1", s.origin)).await.status(), 302);

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
    let used = audit_has(&audit, |e| kind(e) == "breakglass.link_used").await;
    assert_eq!(subject(&used), Some("alice"));
    assert_eq!(used.target.as_deref(), Some("admin:carol"));
    audit_has(&audit, |e| kind(e) == "breakglass.started" && reason(e).as_deref() == Some("sealed_link")).await;

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
    audit_has(&audit, |e| kind(e) == "breakglass.denied" && reason(e).as_deref() == Some("link_used")).await;

    // Past its time: refused as expired, not as unknown.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = nav(&browser(), short["url"].as_str().unwrap()).await;
    assert_eq!(r.status(), 410);
    audit_has(&audit, |e| kind(e) == "breakglass.denied" && reason(e).as_deref() == Some("link_expired")).await;
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
    let started = audit_has(&audit, |e| kind(e) == "breakglass.started").await;
    // Past the 5 s (whole seconds: 6 s is past it whatever the rounding).
    tokio::time::sleep(Duration::from_millis(6000)).await;
    // Idle past the timeout: sent to sign in again, and the grant's end is recorded.
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 302);
    audit_has(&audit, |e| {
        kind(e) == "breakglass.ended"
            && e.grant == started.grant
            && reason(e).as_deref() == Some("session_idle_timeout")
    })
    .await;

    // Again, then the provider ends alice's sessions over the back channel.
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    assert_eq!(declare(&s, &c, &url).await.status(), 303);
    let again = audit_has(&audit, |e| kind(e) == "breakglass.started" && e.grant != started.grant).await;
    let client_id = {
        let text = std::fs::read_to_string(s.gw.dir.path().join("custos.toml")).unwrap();
        text.lines().find_map(|l| l.strip_prefix("client_id = \"")).unwrap().trim_end_matches('"').to_string()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let payload = serde_json::json!({ "iss": s.idp, "aud": client_id, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": "alice" });
    let token = signed(&s.idp, serde_json::json!({ "typ": "logout+jwt" }), payload).await;
    let r = client()
        .post(format!("{}/.custos/backchannel-logout", s.origin))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    audit_has(&audit, |e| {
        kind(e) == "breakglass.ended" && e.grant == again.grant && reason(e).as_deref() == Some("backchannel_logout")
    })
    .await;
}

/// The grant is what was declared: the record asked for (the form's default), or the
/// whole route when the person chose so; the scope is in the audit record, the alert
/// and the review record.
#[tokio::test]
async fn a_grant_opens_only_the_record_declared_unless_the_whole_route_was() {
    let rx = receiver(ALERT_SECRET, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, _demo, carol, _) = bg_site(idp_url(), "", rx.addr, dir.path()).await;
    let audit = s.gw.audit_dir();
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    let url = format!("{}/.custos/breakglass?route=ehr&path=/patients/1", s.origin);
    let form = nav(&c, &url).await.text().await.unwrap();
    assert!(
        form.contains("name=\"scope\" value=\"path\" checked") && form.contains("name=\"scope\" value=\"route\""),
        "the form offers this record (the default) or the whole route: {form}"
    );
    let csrf = field(&form, "csrf");
    let declare = |scope: Option<&str>| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("route", "ehr".to_string()),
            ("path", "/patients/1".to_string()),
            ("justification", WHY.to_string()),
        ];
        if let Some(v) = scope {
            f.push(("scope", v.to_string()));
        }
        c.post(format!("{}/.custos/breakglass", s.origin)).header("origin", s.origin.clone()).form(&f).send()
    };
    // Declared for /patients/1: the restricted /patients/3 stays refused.
    let r = declare(None).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/patients/1");
    let first = audit_has(&audit, |e| kind(e) == "breakglass.started").await;
    assert_eq!(first.scope.as_deref(), Some("/patients/1"));
    let first = first.grant.clone().unwrap();
    assert_eq!(nav(&c, &format!("{}/patients/1", s.origin)).await.status(), 200);
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 403, "outside what was declared");
    audit_has(&audit, |e| {
        kind(e) == "access.decision" && e.path.as_deref() == Some("/patients/1") && e.grant.as_deref() == Some(&*first)
    })
    .await;
    let outside = records_in(&[&audit], |e| kind(e) == "access.decision" && e.path.as_deref() == Some("/patients/3"));
    assert!(outside.iter().all(|e| decision(e).as_deref() == Some("deny") && e.grant.is_none()), "{outside:?}");
    // The alert and the review record say what it covers.
    let got = alerts(&rx, 2).await;
    let json: Value = got
        .iter()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["grant"] == first.as_str()))
        .unwrap();
    assert_eq!(json["scope"], "/patients/1");
    assert!(got.iter().any(|l| l.contains("\"text\"") && l.contains("/patients/1")), "{got:?}");
    let (ok, out) = cli(&s, &carol, &["list"]);
    let listed: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{ok} {out}"));
    let rec = listed["grants"].as_array().unwrap().iter().find(|g| g["id"] == first.as_str()).unwrap().clone();
    assert_eq!(rec["scope"], "/patients/1", "{out}");

    // Declared for the whole route: it opens, and the first grant ends, replaced.
    assert_eq!(declare(Some("route")).await.unwrap().status(), 303);
    let second =
        audit_has(&audit, |e| kind(e) == "breakglass.started" && e.grant.as_deref() != Some(first.as_str())).await;
    assert_eq!(second.scope.as_deref(), Some("route"));
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 200);
    audit_has(&audit, |e| {
        kind(e) == "breakglass.ended" && e.grant.as_deref() == Some(&*first) && reason(e).as_deref() == Some("replaced")
    })
    .await;

    // An administrator ends the session: the grant ends with it, recorded once.
    let second = second.grant.clone().unwrap();
    let out = Command::new(CUSTOS)
        .args(["session", "revoke", "--user", "alice", "--admin", &format!("http://{}", s.gw.admin), "--token-file"])
        .arg(&carol)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let e = audit_has(&audit, |e| kind(e) == "breakglass.ended" && e.grant.as_deref() == Some(second.as_str())).await;
    assert_eq!((reason(&e).as_deref(), e.scope.as_deref()), (Some("revoked"), Some("route")));
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 302);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ends = records_in(&[&audit], |e| kind(e) == "breakglass.ended");
    assert_eq!(ends.len(), 2, "{ends:?}");
}

/// A sealed link's printed end is the end of access, however late it is used; it covers
/// the record it was issued for; its session neither reads nor writes reviews (alice is
/// an auditor by a `g` line, so her sealed session has the role); its end is recorded
/// without a further request.
#[tokio::test]
async fn a_sealed_link_ends_at_its_printed_time_opens_its_record_only_and_cannot_review() {
    let rx = receiver(ALERT_SECRET, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, _demo, carol, _) =
        bg_site(idp_url(), "max_secs = 3600\nreview_domain = \"cardiology\"", rx.addr, dir.path()).await;
    let audit = s.gw.audit_dir();
    let (ok, out) = cli(
        &s,
        &carol,
        &["issue", "--user", "alice", "--route", "ehr", "--path", "/patients/1", "--ttl", "12s", "--totp"],
    );
    assert!(ok, "{out}");
    let issued: Value = serde_json::from_str(&out).unwrap();
    let end = issued["expires"].as_u64().unwrap();
    let shown = issued["access_ends"].as_str().unwrap_or_else(|| panic!("no access_ends printed: {out}")).to_string();
    assert_eq!(issued["scope"], "/patients/1");
    // Used late, with 5 of its 12 seconds gone.
    until(end - 7).await;
    let c = browser();
    let page = nav(&c, issued["url"].as_str().unwrap()).await.text().await.unwrap();
    assert!(page.contains(&shown), "the page shows when access ends: {page}");
    let r = c
        .post(format!("{}/.custos/breakglass/link", s.origin))
        .form(&[
            ("t", field(&page, "t")),
            ("code", totp_now(issued["totp_secret"].as_str().unwrap())),
            ("justification", WHY.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = cookie_value(&r, "custos_session").unwrap();
    let used = audit_has(&audit, |e| kind(e) == "breakglass.link_used").await;
    let grant = used.grant.clone().unwrap();
    assert_eq!(used.scope.as_deref(), Some("/patients/1"));
    assert_eq!(nav(&c, &format!("{}/patients/1", s.origin)).await.status(), 200);
    assert_eq!(nav(&c, &format!("{}/patients/3", s.origin)).await.status(), 403, "outside the link's record");

    // No reviews: not the queue, not a verdict (with a valid form token), not the admin
    // API (administrators' tokens only; a session cookie opens nothing there).
    let reviews = format!("{}/.custos/breakglass/reviews", s.origin);
    assert_eq!(nav(&c, &reviews).await.status(), 403, "a sealed session read the review queue");
    let csrf = sha256(&format!("custos-breakglass-form:{cookie}"));
    let r = c
        .post(&reviews)
        .header("origin", s.origin.clone())
        .form(&[
            ("csrf", csrf),
            ("id", uuid::Uuid::new_v4().to_string()),
            ("verdict", "justified".to_string()),
            ("note", "fine".to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a sealed session reviewed");
    let sealed = |e: &Event| kind(e) == "breakglass.denied" && reason(e).as_deref() == Some("sealed_session");
    let deadline = now_secs() + 5;
    while records_in(&[&audit], sealed).len() < 2 {
        assert!(now_secs() <= deadline, "no two sealed_session refusals on the record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client()
        .get(format!("http://{}/breakglass", s.gw.admin))
        .header("cookie", format!("custos_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // At the printed end, not 12 s after its use (end + 5 at the earliest): the end is on
    // the record without a further request (the grant's timer; the sweep otherwise), and
    // access is over.
    let ended = audit_by(&[&audit], end + 4, |e| {
        kind(e) == "breakglass.ended"
            && e.grant.as_deref() == Some(grant.as_str())
            && reason(e).as_deref() == Some("expired")
    })
    .await;
    assert_eq!(subject(&ended), Some("alice"));
    assert_eq!(ended.scope.as_deref(), Some("/patients/1"));
    assert_eq!(nav(&c, &format!("{}/patients/1", s.origin)).await.status(), 302, "the sealed session outlived its end");
}

/// Five wrong codes spend a sealed link, with a real-time alert; whoever presents the
/// link later is told it was spent by failed codes (not "used"), on the page and in the
/// audit record.
#[tokio::test]
async fn a_sealed_link_spent_by_wrong_codes_is_alerted_and_says_so_later() {
    let rx = receiver(ALERT_SECRET, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, _demo, carol, _) = bg_site(idp_url(), "max_secs = 3600", rx.addr, dir.path()).await;
    let audit = s.gw.audit_dir();
    let (ok, out) = cli(
        &s,
        &carol,
        &["issue", "--user", "alice", "--route", "ehr", "--path", "/patients/1", "--ttl", "30m", "--totp"],
    );
    assert!(ok, "{out}");
    let issued: Value = serde_json::from_str(&out).unwrap();
    let c = browser();
    let token = field(&nav(&c, issued["url"].as_str().unwrap()).await.text().await.unwrap(), "t");
    let try_code = |code: String| {
        c.post(format!("{}/.custos/breakglass/link", s.origin))
            .form(&[("t", token.clone()), ("code", code), ("justification", WHY.to_string())])
            .send()
    };
    let wrong = if totp_now(issued["totp_secret"].as_str().unwrap()) == "000000" { "111111" } else { "000000" };
    for i in 1..=5 {
        let r = try_code(wrong.into()).await.unwrap();
        assert_eq!(r.status(), 403);
        let text = r.text().await.unwrap();
        assert_eq!(text.contains("spent"), i == 5, "try {i}: {text}");
    }
    audit_has(&audit, |e| kind(e) == "breakglass.denied" && reason(e).as_deref() == Some("totp_tries")).await;
    let got = alerts(&rx, 2).await;
    assert!(got.iter().any(|l| l.contains("\"breakglass.link_spent\"") && l.contains("alice")), "{got:?}");
    assert!(got.iter().any(|l| l.contains("SPENT") && l.contains("/patients/1")), "{got:?}");

    // The right code now: refused, and why.
    let r = try_code(totp_now(issued["totp_secret"].as_str().unwrap())).await.unwrap();
    assert_eq!(r.status(), 410);
    let text = r.text().await.unwrap();
    assert!(text.contains("spent by failed codes") && !text.contains("has been used"), "{text}");
    audit_has(&audit, |e| kind(e) == "breakglass.denied" && reason(e).as_deref() == Some("link_spent_by_failed_codes"))
        .await;
    assert!(records_in(&[&audit], |e| reason(e).as_deref() == Some("link_used")).is_empty(), "told as a second use");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.taken.lock().unwrap().len(), 2, "{:?}", rx.taken.lock().unwrap());
}

/// A grant's end is recorded when it comes, with no further request, exactly once
/// across two gateways sharing the Redis; and still when the gateway that made the
/// grant died before its end.
#[tokio::test]
async fn every_grant_end_is_recorded_on_time_once_across_gateways_even_if_its_gateway_died() {
    let rx = receiver(ALERT_SECRET, 0).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let prefix = format!("custos:test:{}", uuid::Uuid::now_v7().simple());
    let limits = "max_secs = 2\ndefault_secs = 2";
    let (a, _demo_a, _, _) = bg_site_sharing(idp_url(), "", limits, rx.addr, da.path(), Some(prefix.clone())).await;
    let (b, _demo_b, _, _) = bg_site_sharing(idp_url(), "", limits, rx.addr, db.path(), Some(prefix)).await;
    let dirs = [a.gw.audit_dir(), b.gw.audit_dir()];
    let c = browser();
    assert_eq!(sign_in(&a, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    let url = format!("{}/.custos/breakglass?route=ehr&path=/patients/3", a.origin);
    let ended = |g: String| move |e: &Event| kind(e) == "breakglass.ended" && e.grant.as_deref() == Some(g.as_str());

    // Both gateways up: one `expired`, within seconds of the end, and never a second.
    assert_eq!(declare(&a, &c, &url).await.status(), 303);
    let end = now_secs() + 2;
    let g1 = audit_has(&dirs[0], |e| kind(e) == "breakglass.started").await.grant.clone().unwrap();
    let e = audit_by(&dirs, end + 5, ended(g1.clone())).await;
    assert_eq!(reason(&e).as_deref(), Some("expired"));
    assert_eq!(subject(&e), Some("alice"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(records_in(&dirs, ended(g1.clone())).len(), 1, "one end, once");

    // The gateway that made the grant dies: the other records its end.
    assert_eq!(declare(&a, &c, &url).await.status(), 303);
    let end = now_secs() + 2;
    let g2 = audit_has(&dirs[0], |e| kind(e) == "breakglass.started" && e.grant.as_deref() != Some(g1.as_str()))
        .await
        .grant
        .unwrap();
    let _ = Command::new("kill").args(["-KILL", &a.gw.pid().to_string()]).status();
    let e = audit_by(&dirs[1..], end + 5, ended(g2.clone())).await;
    assert_eq!(reason(&e).as_deref(), Some("expired"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(records_in(&dirs, ended(g2)).len(), 1, "one end, once");
}

/// A grant whose session times out before the grant's end, with no request after: its
/// end is still recorded at the grant's time, and as the session's timeout.
#[tokio::test]
async fn a_grant_outlived_by_no_request_ends_on_the_record_as_its_session_timed_out() {
    let rx = receiver(ALERT_SECRET, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let session = "idle_timeout_secs = 2\ntouch_interval_secs = 1\n";
    let (s, _demo, _, _) =
        bg_site_with(idp_url(), session, "max_secs = 4\ndefault_secs = 4", rx.addr, dir.path()).await;
    let audit = s.gw.audit_dir();
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    let url = format!("{}/.custos/breakglass?route=ehr&path=/patients/3", s.origin);
    assert_eq!(declare(&s, &c, &url).await.status(), 303);
    let end = now_secs() + 4;
    let g = audit_has(&audit, |e| kind(e) == "breakglass.started").await.grant.clone().unwrap();
    let e =
        audit_by(&[&audit], end + 5, |e| kind(e) == "breakglass.ended" && e.grant.as_deref() == Some(g.as_str())).await;
    assert_eq!(reason(&e).as_deref(), Some("session_idle_timeout"));
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
    let fast = format!("\n[audit]\n{}", FAST_RETRY);
    let (s, _demo, _carol, _alice) = bg_site_with(idp_url(), &fast, "", addr, dir.path()).await;
    let c = browser();
    assert_eq!(sign_in(&s, &c, "/patients/1", "alice", "alice-password", Some("123456")).await.status(), 302);
    let r = declare(&s, &c, &format!("{}/.custos/breakglass?route=ehr&path=/patients/3", s.origin)).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let declared = Instant::now();
    let started = audit_has(&s.gw.audit_dir(), |e| kind(e) == "breakglass.started").await;
    let failures = "custos_audit_sink_failures_total{sink=\"alert-";
    let deadline = declared + Duration::from_secs(40);
    while (declared.elapsed() < Duration::from_secs(10) || metric(&s.gw, failures).await.unwrap_or(0.0) < 12.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rx = receiver_on(port, ALERT_SECRET, 0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.taken.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = rx.taken.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "alerts received once the receivers were back: {got:?}");
    assert_eq!(rx.bad_signatures.load(std::sync::atomic::Ordering::SeqCst), 0);
    let json: Value =
        got.iter().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["grant"].is_string())).unwrap();
    assert_eq!(json["grant"].as_str(), started.grant.as_deref());
    assert_eq!(json["who"], "alice");
    assert!(json["id"].is_string(), "the alert has an id a receiver can de-duplicate by: {json}");
    assert!(got.iter().any(|l| l.contains("\"text\"") && l.contains(started.grant.as_deref().unwrap())), "{got:?}");
}

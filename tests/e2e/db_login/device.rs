//! `custos db login --no-browser`: the URL and the code, the person's confirmation, and
//! what keeps a login link sent to someone else from giving the sender their token.

use super::*;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Reads the command line's stderr until it has printed the URL and the code to compare.
async fn url_and_code(err: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> (String, String, String) {
    let mut lines = Vec::new();
    let mut line = String::new();
    while err.read_line(&mut line).await.unwrap() > 0 {
        lines.push(std::mem::take(&mut line));
        let all = lines.concat();
        if let Some(at) = all.find("must show the code ") {
            let rest = &all[at + "must show the code ".len()..];
            let code = rest.split(' ').next().unwrap().to_string();
            let host = rest.split("the computer ").nth(1).unwrap().split(". ").next().unwrap().to_string();
            let url = all.lines().find(|l| l.contains("/.custos/db/login?")).unwrap().trim().to_string();
            return (url, code, host);
        }
    }
    panic!("the command line printed no URL and code: {}", lines.concat());
}

/// The confirmation page's form token.
fn form_token(page: &str) -> String {
    page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

/// Without a browser: the command line prints a URL and a code; the person signs in
/// wherever, sees the same code and host name, confirms, and the command line's poll
/// gets the token.
#[tokio::test]
async fn without_a_browser_the_person_confirms_the_code_and_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let mut child = tokio::process::Command::new(CUSTOS)
        .args(["db", "login", "ehr", "--no-browser", "--gateway", &s.origin, "--print", "password"])
        .env("HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (url, code, host) = tokio::time::timeout(Duration::from_secs(30), url_and_code(&mut err)).await.unwrap();
    assert!(url.starts_with(&format!("{}/.custos/db/login?db=ehr&device=", s.origin)), "{url}");
    assert_eq!(code.len(), 9, "{code}");

    // Not signed in yet: through the sign-in (with MFA) and back to the page.
    let c = browser();
    let r = nav(&c, &url).await;
    assert_eq!(r.status(), 302);
    let callback = idp_login(&c, &s.idp, &location(&r), "alice", "alice-password", Some("123456")).await;
    let r = nav(&c, &callback).await;
    assert_eq!(r.status(), 302);
    let back = location(&r);
    assert!(url.ends_with(&back), "not sent back to the page: {back}");
    let r = nav(&c, &url).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains(&code) && page.contains(&host) && page.contains("127.0.0.1"), "{page}");
    let r = c
        .post(format!("{}/.custos/db/login", s.origin))
        .form(&[("db", "ehr"), ("device", url.rsplit('=').next().unwrap()), ("csrf", &form_token(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8_lossy(&out.stdout);
    let token = out.trim().strip_prefix("PGPASSWORD=").unwrap_or_else(|| panic!("{out}"));
    let rec = token_record(&s, token).expect("no token record");
    assert_eq!(rec["subject"], "alice");
    let issued = audit_has(&s.gw.audit_dir(), |r| kind(r) == "db.token_issued").await;
    assert_eq!(reason(&issued).as_deref(), Some("device"));
    assert!(!audit_text(&s).contains(token));
}

/// An attacker starts a device login and sends its URL to alice. What stands between the
/// attacker and alice's token:
/// - signing in through the link releases nothing: only alice's own click on the
///   gateway's page, which shows the attacker's code, host name and address with a
///   warning, confirms it;
/// - that click cannot be forged from another site: the form's token is bound to
///   alice's browser session and to this login (the attacker's own token does not fit);
/// - the token goes only to whoever holds the verifier: someone else who has the URL (a
///   forwarded link, a screen share) gets nothing and ends the login;
/// - a login is confirmed once: if someone else confirms first, the owner's page says so.
#[tokio::test]
async fn a_device_login_link_sent_to_someone_else_does_not_give_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let start = |challenge: String| {
        let origin = s.origin.clone();
        async move {
            let r = client()
                .post(format!("{origin}/.custos/db/device"))
                .form(&[("db", "ehr"), ("challenge", challenge.as_str()), ("host", "attacker-box")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let (attacker_verifier, challenge) = pkce();
    let d = start(challenge).await;
    let url = d["url"].as_str().unwrap().to_string();
    let device = d["device"].as_str().unwrap().to_string();
    let poll = |verifier: String, device: String| token_req_owned(&s, device, verifier);

    // alice follows the link and signs in.
    let (alice, alice_id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let r = nav(&alice, &url).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let code = d["user_code"].as_str().unwrap();
    assert!(page.contains(&format!("{}-{}", &code[..4], &code[4..])), "the page does not show the code: {page}");
    assert!(page.contains("attacker-box") && page.contains("If someone sent you this link"), "{page}");
    let (status, v) = poll(attacker_verifier.clone(), device.clone()).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("authorization_pending")), "signing in alone released it");

    // A forged confirmation: no form token, or the attacker's own (made for their session).
    let (_attacker, attacker_id) = signed_in(&s, "/patients", "nora", "nora-password", Some("123456")).await;
    let r = nav(&_attacker, &url).await;
    let attacker_token = form_token(&r.text().await.unwrap());
    for csrf in ["", attacker_token.as_str()] {
        let r = client()
            .post(format!("{}/.custos/db/login", s.origin))
            .header("cookie", format!("custos_session={alice_id}"))
            .header("origin", "https://evil.example")
            .form(&[("db", "ehr"), ("device", device.as_str()), ("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a confirmation forged from another site was taken");
    }
    let (status, v) = poll(attacker_verifier.clone(), device.clone()).await;
    assert_eq!(v["error"], "authorization_pending", "{status} {v}");
    assert_ne!(attacker_id, alice_id);

    // Someone with the URL but not the verifier: nothing, and the login is over.
    let (other_verifier, _) = pkce();
    let (status, v) = poll(other_verifier, device.clone()).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("verifier")));
    let (status, v) = poll(attacker_verifier, device.clone()).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("device")), "{v}");

    // Confirmed once: a login someone else confirmed first is refused to its owner's page.
    let (owner_verifier, challenge) = pkce();
    let d = start(challenge).await;
    let url = d["url"].as_str().unwrap().to_string();
    let device = d["device"].as_str().unwrap().to_string();
    let r = nav(&_attacker, &url).await;
    let token = form_token(&r.text().await.unwrap());
    let r = _attacker
        .post(format!("{}/.custos/db/login", s.origin))
        .form(&[("db", "ehr"), ("device", device.as_str()), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = nav(&alice, &url).await;
    assert_eq!(r.status(), 409, "the owner was not told someone else confirmed");
    let (status, v) = poll(owner_verifier, device).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"], "nora", "the token is the confirming person's, and the command line prints whose");
    let dir_a = s.gw.audit_dir();
    audit_has(&dir_a, |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("csrf")).await;
    audit_has(&dir_a, |r| kind(r) == "db.login_refused" && reason(r).as_deref() == Some("device_confirmed")).await;
    let issued = records_eventually(&s, 1, |r| kind(r) == "db.token_issued").await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(subject(&issued[0]), Some("nora"));
}

async fn token_req_owned(s: &Site, device: String, verifier: String) -> (u16, Value) {
    token_req(s, &[("device", &device), ("verifier", &verifier)]).await
}

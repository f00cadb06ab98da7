//! Browser sign-in through the real OpenID provider (tests/idp), sessions in the real
//! Redis, and what a security team expects of them: PKCE/state/nonce, login CSRF,
//! replay, tampered tokens, MFA and step-up, idle and absolute timeouts, fixation, open
//! redirects, the cookie kept from the upstream, and failing closed when Redis or the
//! provider is down. One test drives headless Chromium through the whole flow.

use crate::harness::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[tokio::test]
async fn sign_in_with_mfa_reaches_the_upstream_without_the_gateway_cookie_then_logout() {
    let s = site(Opts::default()).await;
    let c = browser();
    let r = nav(&c, &format!("{}/patients/1?tab=notes", s.origin)).await;
    assert_eq!(r.status(), 302);
    let auth = location(&r);
    for p in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "response_type=code",
        "acr_values=urn%3Acustos%3Amfa",
    ] {
        assert!(auth.contains(p), "authorization URL lacks {p}: {auth}");
    }
    let pre = set_cookies(&r);
    assert!(
        pre.iter()
            .any(|c| c.starts_with("custos_session_login=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")),
        "{pre:?}"
    );

    let callback = idp_login(&c, &s.idp, &auth, "alice", "alice-password", Some("123456")).await;
    let r = nav(&c, &callback).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/patients/1?tab=notes", "not sent back to the page asked for");
    let set = set_cookies(&r);
    let session_cookie = set.iter().find(|c| c.starts_with("custos_session=")).unwrap_or_else(|| panic!("{set:?}"));
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(session_cookie.contains(attr), "{session_cookie}");
    }
    let id = cookie_value(&r, "custos_session").unwrap();
    assert_eq!(id.len(), 64);

    // The page, with a cookie of the upstream's own beside ours.
    let r = c
        .get(format!("{}/patients/1?tab=notes", s.origin))
        .header("cookie", format!("theme=dark; custos_session={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.demo.seen();
    let last = seen.iter().rev().find(|x| x.target.starts_with("/patients/1")).expect("forwarded");
    let cookies: Vec<&str> = last.headers.iter().filter(|(k, _)| k == "cookie").map(|(_, v)| v.as_str()).collect();
    assert!(cookies.iter().all(|v| !v.contains("custos_session")), "gateway cookie reached the upstream: {cookies:?}");
    assert!(cookies.iter().any(|v| v.contains("theme=dark")), "the upstream's own cookie was lost: {cookies:?}");

    // Redis holds the session under the id's hash only.
    let mut conn = redis::Client::open(s.redis.as_str()).unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", s.prefix)).query(&mut conn).unwrap();
    assert!(keys.contains(&format!("{}:s:{}", s.prefix, sha256(&id))), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains(&id)));

    let dir = s.gw.audit_dir();
    let login = audit_has(&dir, |r| kind(r) == "auth.login").await;
    assert_eq!(subject(&login), Some("alice"));
    assert_eq!(login.actor.as_ref().map(|a| a.groups.as_slice()), Some(&["clinicians".to_string()][..]));
    assert_eq!(login.session.as_deref(), Some(&*sha256(&id)));
    assert_eq!(login.mfa, Some(true));
    let allow = audit_has(&dir, |r| kind(r) == "access.decision" && decision(r).as_deref() == Some("allow")).await;
    assert_eq!(subject(&allow), Some("alice"));
    assert_eq!(allow.session.as_deref(), Some(&*sha256(&id)));
    let text = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    assert!(!text.contains(&id), "the session id itself is in the audit trail");
    assert!(!text.contains("eyJ"), "a token is in the audit trail");

    // A link from another site cannot sign the user out: it gets a button to press.
    let r = c.get(format!("{}/.custos/logout", s.origin)).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("method=\"post\""));
    assert_eq!(
        nav(&c, &format!("{}/patients/1", s.origin)).await.status(),
        200,
        "a cross-site link signed the user out"
    );

    // Logout: the session ends server-side, the cookie is cleared, the IdP's logout follows.
    let r = nav(&c, &format!("{}/.custos/logout", s.origin)).await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with(&format!("{}/session/end", s.idp)), "{}", location(&r));
    assert!(set_cookies(&r).iter().any(|c| c.starts_with("custos_session=signed-out;")), "{:?}", set_cookies(&r));
    let again = client()
        .get(format!("{}/patients/1", s.origin))
        .header("cookie", format!("custos_session={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401, "a logged-out session still works");
    // The next sign-in in this browser makes the provider authenticate again: no silent
    // sign-in through the provider's own session.
    let r = nav(&c, &format!("{}/", s.origin)).await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).contains("prompt=login"), "{}", location(&r));
    let out = audit_has(&dir, |r| kind(r) == "auth.logout").await;
    assert_eq!(subject(&out), Some("alice"));
    assert_eq!(out.session.as_deref(), Some(&*sha256(&id)));
}

#[tokio::test]
async fn non_browsers_get_401_and_public_routes_need_no_session() {
    let s = site(Opts::default()).await;
    let r = client().get(format!("{}/patients", s.origin)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"custos\"");
    let r = client().post(format!("{}/", s.origin)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 401, "a form POST is not redirected to sign-in");
    // A forged id of the right shape is just not a session.
    let r = client()
        .get(format!("{}/", s.origin))
        .header("cookie", format!("custos_session={}", "a".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(format!("{}/plain", s.origin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        s.demo.seen().iter().all(|x| x.target != "/patients" && x.target != "/"),
        "an unauthenticated request was forwarded"
    );
    let deny = audit_has(&s.gw.audit_dir(), |r| {
        kind(r) == "access.decision" && reason(r).as_deref() == Some("unauthenticated")
    })
    .await;
    assert_eq!(deny.status, Some(401));
}

#[tokio::test]
async fn a_callback_works_once_and_only_in_the_browser_that_started_it() {
    let s = site(Opts::default()).await;
    let a = browser();
    let r = nav(&a, &format!("{}/", s.origin)).await;
    let callback = idp_login(&a, &s.idp, &location(&r), "bob", "bob-password", None).await;

    // Login CSRF: the same callback URL in another browser is refused…
    let other = browser();
    let r = nav(&other, &callback).await;
    assert_eq!(r.status(), 403);
    assert!(cookie_value(&r, "custos_session").is_none());
    // …and does not use up the sign-in of the browser it belongs to.
    let r = nav(&a, &callback).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    assert!(cookie_value(&r, "custos_session").is_some());
    // Replayed in the right browser: the state is used up.
    let r = nav(&a, &callback).await;
    assert_eq!(r.status(), 403);
    // A made-up state.
    let forged = callback.replace("state=", "state=x");
    assert_eq!(nav(&a, &forged).await.status(), 403);

    let dir = s.gw.audit_dir();
    audit_has(&dir, |r| kind(r) == "auth.login_failed" && reason(r).as_deref() == Some("browser_binding")).await;
    audit_has(&dir, |r| kind(r) == "auth.login_failed" && reason(r).as_deref() == Some("state")).await;
    let ok = audit_has(&dir, |r| kind(r) == "auth.login").await;
    assert_eq!(subject(&ok), Some("bob"));
    assert_eq!(ok.mfa, Some(false));
}

#[tokio::test]
async fn a_token_with_another_nonce_or_an_altered_payload_is_refused() {
    // Nonce: the code comes back for an authorization request with another nonce (an
    // injected code), so the ID token's nonce is not the one this sign-in kept.
    let s = site(Opts::default()).await;
    let c = browser();
    let r = nav(&c, &format!("{}/", s.origin)).await;
    let auth = location(&r);
    let nonce = auth.split("nonce=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let swapped = auth.replace(&format!("nonce={nonce}"), "nonce=attacker-chosen-nonce");
    let callback = idp_login(&c, &s.idp, &swapped, "bob", "bob-password", None).await;
    let r = nav(&c, &callback).await;
    assert_eq!(r.status(), 403);
    assert!(cookie_value(&r, "custos_session").is_none());
    audit_has(&s.gw.audit_dir(), |r| kind(r) == "auth.login_failed" && reason(r).as_deref() == Some("nonce")).await;

    // Signature: the IdP hands this client ID tokens altered after signing.
    let t = site(Opts { client_name: "tamper", ..Default::default() }).await;
    let c = browser();
    let r = sign_in(&t, &c, "/", "bob", "bob-password", None).await;
    assert_eq!(r.status(), 403);
    assert!(cookie_value(&r, "custos_session").is_none());
    let failed = audit_has(&t.gw.audit_dir(), |r| kind(r) == "auth.login_failed").await;
    assert_eq!(reason(&failed).as_deref(), Some("signature"));
    assert!(audit_records(&t.gw.audit_dir()).iter().all(|r| kind(&r.event) != "auth.login"));
}

#[tokio::test]
async fn mfa_routes_refuse_one_factor_and_step_up() {
    let s = site(Opts::default()).await;
    // Bob has no second factor: signing in for an MFA route fails, audited as such.
    let bob = browser();
    let r = sign_in(&s, &bob, "/patients", "bob", "bob-password", None).await;
    assert_eq!(r.status(), 403);
    assert!(cookie_value(&r, "custos_session").is_none());
    let f =
        audit_has(&s.gw.audit_dir(), |r| kind(r) == "auth.login_failed" && reason(r).as_deref() == Some("mfa")).await;
    assert_eq!(subject(&f), Some("bob"));

    // Alice signs in with her password only, for a page that does not need MFA.
    let c = browser();
    let r = sign_in(&s, &c, "/", "alice", "alice-password", None).await;
    assert_eq!(r.status(), 302);
    let first = cookie_value(&r, "custos_session").unwrap();
    assert_eq!(nav(&c, &format!("{}/", s.origin)).await.status(), 200);
    // An MFA route (and the site default) sends her through sign-in again, asking for more.
    for path in ["/patients/2", "/admin"] {
        let r = nav(&c, &format!("{}{path}", s.origin)).await;
        assert_eq!(r.status(), 302, "{path} was not refused");
        let l = location(&r);
        assert!(l.starts_with(&s.idp), "{l}");
        for p in ["prompt=login", "acr_values=urn%3Acustos%3Amfa", "max_age=300"] {
            assert!(l.contains(p), "step-up lacks {p}: {l}");
        }
    }
    assert!(s.demo.seen().iter().all(|x| !x.target.starts_with("/patients") && !x.target.starts_with("/admin")));
    // An API client with that session gets the RFC 9470 challenge.
    let r = client()
        .get(format!("{}/patients/2", s.origin))
        .header("cookie", format!("custos_session={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_user_authentication"));

    // The step-up with her one-time code: a new session, the old one ended.
    let r = nav(&c, &format!("{}/patients/2", s.origin)).await;
    let callback = idp_login(&c, &s.idp, &location(&r), "alice", "alice-password", Some("123456")).await;
    let r = nav(&c, &callback).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/patients/2");
    let second = cookie_value(&r, "custos_session").unwrap();
    assert_ne!(first, second);
    assert_eq!(nav(&c, &format!("{}/patients/2", s.origin)).await.status(), 200);
    let old = client()
        .get(format!("{}/", s.origin))
        .header("cookie", format!("custos_session={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the pre-step-up session lives on");
    audit_has(&s.gw.audit_dir(), |r| kind(r) == "access.decision" && reason(r).as_deref() == Some("mfa_step_up")).await;
}

#[tokio::test]
async fn idle_timeout_and_absolute_lifetime_end_sessions() {
    let s = site(Opts {
        session: "idle_timeout_secs = 5\nabsolute_timeout_secs = 20\ntouch_interval_secs = 1",
        ..Default::default()
    })
    .await;
    let api = |id: &str| {
        let url = format!("{}/", s.origin);
        let cookie = format!("custos_session={id}");
        async move { client().get(url).header("cookie", cookie).send().await.unwrap().status().as_u16() }
    };
    // Idle: kept alive by requests every second for longer than the timeout, then logged
    // off after 5 s of silence, long before the absolute lifetime. (Times are whole
    // seconds and last-seen is written every second, so expiry is accurate to within a
    // second: the test leaves that margin on both sides, and a loaded machine has 3 s
    // between two requests before the session lapses.)
    let c = browser();
    let r = sign_in(&s, &c, "/", "alice", "alice-password", None).await;
    let idle = cookie_value(&r, "custos_session").unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(api(&idle).await, 200, "an active session was logged off");
    }
    tokio::time::sleep(Duration::from_millis(6200)).await;
    assert_eq!(api(&idle).await, 401, "an idle session still works");
    // Automatic logoff means the person signs in again: the provider's own session (still
    // alive in this browser) must not sign them back in silently.
    let r = nav(&c, &format!("{}/", s.origin)).await;
    assert_eq!(r.status(), 302);
    let again = location(&r);
    assert!(again.contains("prompt=login") && again.contains("max_age=0"), "{again}");
    let callback = idp_login(&c, &s.idp, &again, "alice", "alice-password", None).await;
    assert_eq!(nav(&c, &callback).await.status(), 302);
    let ev = audit_has(&s.gw.audit_dir(), |r| kind(r) == "session.idle_timeout").await;
    assert_eq!(ev.session.as_deref(), Some(&*sha256(&idle)));
    assert_eq!(subject(&ev), Some("alice"));

    // Absolute: active all along, still ended at 20 s (timed from before the sign-in,
    // which a loaded machine may make slow).
    let c = browser();
    let started = std::time::Instant::now();
    let r = sign_in(&s, &c, "/", "alice", "alice-password", None).await;
    let abs = cookie_value(&r, "custos_session").unwrap();
    let mut ended = None;
    while started.elapsed() < Duration::from_secs(40) {
        if api(&abs).await != 200 {
            ended = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ended = ended.expect("the session outlived its absolute lifetime");
    assert!(ended >= Duration::from_secs(19), "ended too early: {ended:?}");
    let ev = audit_has(&s.gw.audit_dir(), |r| kind(r) == "session.expired").await;
    assert_eq!(ev.session.as_deref(), Some(&*sha256(&abs)));
}

#[tokio::test]
async fn a_cookie_planted_before_sign_in_does_not_survive_it() {
    let s = site(Opts::default()).await;
    let planted = "b".repeat(64);
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(&format!("custos_session={planted}; Path=/"), &s.origin.parse().unwrap());
    let c = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let r = nav(&c, &format!("{}/", s.origin)).await;
    assert_eq!(r.status(), 302);
    let callback = idp_login(&c, &s.idp, &location(&r), "bob", "bob-password", None).await;
    let r = nav(&c, &callback).await;
    assert_eq!(r.status(), 302);
    let issued = cookie_value(&r, "custos_session").unwrap();
    assert_ne!(issued, planted);
    let with_planted = client()
        .get(format!("{}/", s.origin))
        .header("cookie", format!("custos_session={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_planted.status(), 401);
    let with_issued = client()
        .get(format!("{}/", s.origin))
        .header("cookie", format!("custos_session={issued}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_issued.status(), 200);
}

#[tokio::test]
async fn off_site_targets_after_sign_in_land_on_the_front_page() {
    let s = site(Opts::default()).await;
    let enc = |t: &str| url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
    let cases = [
        ("https://evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("https:evil.example", "/"),
        ("/patients/2?x=1", "/patients/2?x=1"),
    ];
    for (rd, want) in cases {
        let c = browser();
        let r = nav(&c, &format!("{}/.custos/login?rd={}", s.origin, enc(rd))).await;
        assert_eq!(r.status(), 302);
        let callback = idp_login(&c, &s.idp, &location(&r), "alice", "alice-password", Some("123456")).await;
        let r = nav(&c, &callback).await;
        assert_eq!(r.status(), 302);
        assert_eq!(location(&r), want, "rd={rd}");
    }
}

#[tokio::test]
async fn redis_down_refuses_with_503_and_recovers_when_it_returns() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let redis = format!("redis://127.0.0.1:{port}/");
    let mut server = Some(start_redis_persistent(port, data.path()));
    let s = site(Opts { redis: &redis, ..Default::default() }).await;
    let c = browser();
    let r = sign_in(&s, &c, "/", "bob", "bob-password", None).await;
    let id = cookie_value(&r, "custos_session").unwrap();
    let get = |path: &str| {
        let url = format!("{}{path}", s.origin);
        let cookie = format!("custos_session={id}");
        async move { client().get(url).header("cookie", cookie).send().await.unwrap() }
    };
    assert_eq!(get("/").await.status(), 200);
    let forwarded = s.demo.seen().len();

    server.take(); // killed
    let r = get("/").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("session store"));
    assert_eq!(nav(&browser(), &format!("{}/", s.origin)).await.status(), 503, "a new visitor was not refused");
    let ready = client().get(format!("{}/.custos/readyz", s.origin)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("redis: down"));
    assert_eq!(s.demo.seen().len(), forwarded, "a request was forwarded while Redis was down");
    audit_has(&s.gw.audit_dir(), |r| reason(r).as_deref() == Some("session_store_unavailable")).await;

    let _back = start_redis_persistent(port, data.path());
    let mut status = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        status = get("/").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "did not recover after Redis came back");
    assert_eq!(client().get(format!("{}/.custos/readyz", s.origin)).send().await.unwrap().status(), 200);
}

/// `rediss://` with a CA, an ACL user and its password from a file; a wrong password is
/// a Redis that is down (503), never an open door.
#[tokio::test]
async fn sessions_over_tls_redis_with_an_acl_user() {
    let port = free_port();
    let c = certs().display().to_string();
    let args: Vec<String> = [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &format!("{c}/server.pem"),
        "--tls-key-file",
        &format!("{c}/server-key.pem"),
        "--tls-ca-cert-file",
        &format!("{c}/ca.pem"),
        "--tls-auth-clients",
        "no",
        "--user",
        "default",
        "off",
        "--user",
        "custos",
        "on",
        ">s3ssion-store-pass",
        "~*",
        "&*",
        "+@all",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _redis = start_redis_with(port, &args);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "s3ssion-store-pass\n").unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "not-the-password").unwrap();
    let url = format!("rediss://localhost:{port}/");
    let session = |pw: &Path| {
        format!(
            "redis_username = \"custos\"\nredis_password = {{ file = \"{}\" }}\nredis_ca = \"{c}/ca.pem\"",
            pw.display()
        )
    };

    let good_session = session(&good);
    let s = site(Opts { redis: &url, session: &good_session, ..Default::default() }).await;
    let b = browser();
    let r = sign_in(&s, &b, "/patients/3", "alice", "alice-password", Some("123456")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(nav(&b, &format!("{}/patients/3", s.origin)).await.status(), 200);
    assert!(client()
        .get(format!("{}/.custos/readyz", s.origin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("redis: ok"));

    let bad_session = session(&bad);
    let t = site(Opts { redis: &url, session: &bad_session, ..Default::default() }).await;
    assert_eq!(nav(&browser(), &format!("{}/patients/3", t.origin)).await.status(), 503);
    assert_eq!(client().get(format!("{}/.custos/readyz", t.origin)).send().await.unwrap().status(), 503);
}

#[tokio::test]
async fn idp_down_keeps_existing_sessions_and_refuses_new_sign_ins_clearly() {
    let port = free_port();
    let idp = format!("http://127.0.0.1:{port}");
    let server = IdpServer::start(port);
    let s = site(Opts { idp: &idp, ..Default::default() }).await;
    let c = browser();
    let r = sign_in(&s, &c, "/", "bob", "bob-password", None).await;
    assert_eq!(r.status(), 302);
    drop(server);
    // The gateway remembers the provider's reachability for a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    assert_eq!(nav(&c, &format!("{}/", s.origin)).await.status(), 200, "the existing session stopped working");
    let r = nav(&browser(), &format!("{}/", s.origin)).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("identity provider"));
    let ready = client().get(format!("{}/.custos/readyz", s.origin)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = ready.text().await.unwrap();
    assert!(text.contains("idp: down") && text.contains("redis: ok"), "{text}");
}

#[tokio::test]
async fn over_tls_the_cookies_are_host_prefixed_and_secure() {
    let demo = demo().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "unused-secret").unwrap();
    let tls = free_port();
    // No sign-in is completed here: the provider is only discovered.
    let config = format!(
        "[oidc]\nissuer = \"{}\"\nclient_id = \"x\"\nclient_secret = {{ file = \"{}\" }}\nredirect_url = \"https://localhost:{tls}/.custos/callback\"\n\
         [session]\nredis_url = \"{}\"\nkey_prefix = \"custos:test:tls\"\n[[routes]]\nname = \"app\"\nupstream = \"http://{}\"\n",
        idp_url(),
        secret.path().display(),
        redis_url(),
        demo.addr
    );
    let gw = Gateway::builder().config(&config).tls_port(tls).start().await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs().join("ca.pem")).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", gw.tls)
        .no_proxy()
        .build()
        .unwrap();
    let r = c.get(format!("https://localhost:{tls}/")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302);
    let set = set_cookies(&r);
    let login = set.iter().find(|c| c.starts_with("__Host-custos_session_login=")).unwrap_or_else(|| panic!("{set:?}"));
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure", "Max-Age="] {
        assert!(login.contains(attr), "{login}");
    }
    assert!(!login.contains("Domain"), "{login}");
    // Another name for the same gateway: the sign-in starts over on the origin, where
    // the cookies live.
    let r = c.get(format!("https://127.0.0.1:{tls}/patients?x=1")).header("accept", "text/html").send().await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 302);
        assert_eq!(location(&r), format!("https://localhost:{tls}/.custos/login?rd=%2Fpatients%3Fx%3D1"));
        assert!(set_cookies(&r).is_empty());
    }
}

#[tokio::test]
async fn sign_ins_started_from_one_address_are_bounded() {
    let s = site(Opts { oidc: "max_logins_per_minute = 3", ..Default::default() }).await;
    // The count is per UTC minute: the four sign-ins must fall in one. Start with 20 s of
    // the minute left at least, and start over in a fresh minute if a loaded machine still
    // crossed into the next one.
    let minute = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60;
    let fresh_minute = || async {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        if now.as_secs() % 60 >= 40 {
            tokio::time::sleep(Duration::from_secs(60) - Duration::from_secs(now.as_secs() % 60)).await;
        }
    };
    let mut statuses = Vec::new();
    for _attempt in 0..2 {
        fresh_minute().await;
        let started = minute();
        statuses.clear();
        for _ in 0..4 {
            statuses.push(nav(&browser(), &format!("{}/", s.origin)).await.status().as_u16());
        }
        if minute() == started {
            break;
        }
        // Wait out the minute the next attempt's count would share with this one.
        tokio::time::sleep(Duration::from_secs(
            61 - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60,
        ))
        .await;
    }
    assert_eq!(statuses, [302, 302, 302, 429]);
    // Another name for the gateway is sent to its origin first.
    let other = format!("http://localhost:{}", s.gw.http.port());
    let r = nav(&browser(), &format!("{other}/patients/1")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), format!("{}/.custos/login?rd=%2Fpatients%2F1", s.origin));
}

/// Headless Chromium through the real sign-in: the page asked for, then the IdP's form,
/// then the page again, signed in.
#[tokio::test]
async fn chromium_signs_in_end_to_end() {
    let s = site(Opts::default()).await;
    let dir: PathBuf = node_dir();
    let url = format!("{}/patients/1", s.origin);
    let out = tokio::process::Command::new(tool("node", "nodejs"))
        .arg("browser-login.mjs")
        .args([url.as_str(), "alice", "alice-password", "123456"])
        .env("CHROMIUM", tool("chromium", "chromium"))
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .unwrap_or_else(|_| panic!("the browser run took over 180 s"))
        .unwrap_or_else(|e| panic!("running node browser-login.mjs: {e}"));
    assert!(out.status.success(), "browser run failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(v["loginPage"].as_str().unwrap().starts_with(&s.idp), "{v}");
    assert_eq!(v["url"], url);
    assert!(v["text"].as_str().unwrap().contains("Ada"), "not the patient record: {v}");
    let cookie =
        v["cookies"].as_array().unwrap().iter().find(|c| c["name"] == "custos_session").expect("no session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Lax");
    let login = audit_has(&s.gw.audit_dir(), |r| kind(r) == "auth.login").await;
    assert_eq!(subject(&login), Some("alice"));
    assert_eq!(login.mfa, Some(true));
}

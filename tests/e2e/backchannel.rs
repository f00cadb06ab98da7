//! OpenID Connect Back-Channel Logout: the provider ends the user's session there, posts
//! a signed logout token to the gateway, and the gateway's session ends at once; tokens
//! that are not valid logout tokens (wrong audience, no event, a nonce, a replayed jti)
//! are refused and end nothing.

use crate::harness::*;
use serde_json::json;

async fn post_logout_token(s: &Site, token: &str) -> u16 {
    client()
        .post(format!("{}/.custos/backchannel-logout", s.origin))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn signing_out_at_the_provider_ends_the_gateway_session() {
    let s = site(Opts::default()).await;
    let c = browser();
    let r = sign_in(&s, &c, "/", "bob", "bob-password", None).await;
    assert_eq!(r.status(), 302);
    let id = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str().unwrap().strip_prefix("custos_session=").map(|v| v.split(';').next().unwrap().to_string())
        })
        .unwrap();
    assert_eq!(status_with(&s, &id).await, 200);

    // Hostile or malformed logout tokens end nothing.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let event = json!({ "http://schemas.openid.net/event/backchannel-logout": {} });
    let client_id = {
        let text = std::fs::read_to_string(s.gw.dir.path().join("custos.toml")).unwrap();
        text.lines().find_map(|l| l.strip_prefix("client_id = \"")).unwrap().trim_end_matches('"').to_string()
    };
    let base = json!({ "iss": s.idp, "aud": client_id, "iat": now, "jti": "j-1", "events": event, "sub": "bob" });
    let with = |k: &str, v: serde_json::Value| {
        let mut p = base.clone();
        if v.is_null() {
            p.as_object_mut().unwrap().remove(k);
        } else {
            p[k] = v;
        }
        p
    };
    for bad in [
        with("aud", json!("someone-else")),
        with("events", serde_json::Value::Null),
        with("nonce", json!("n")),
        with("iat", json!(now - 3600)),
        with("sub", serde_json::Value::Null),
    ] {
        let token = signed(&s.idp, json!({ "typ": "logout+jwt" }), bad).await;
        assert_eq!(post_logout_token(&s, &token).await, 400);
    }
    assert_eq!(post_logout_token(&s, "not-a-jwt").await, 400);
    assert_eq!(status_with(&s, &id).await, 200, "an invalid logout token ended the session");

    // The user signs out at the provider (its own logout page); the provider tells the
    // gateway over the back channel.
    let r = nav(&c, &format!("{}/session/end", s.idp)).await;
    let page = r.text().await.unwrap();
    let xsrf = page.split("name=\"xsrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = c
        .post(format!("{}/session/end/confirm", s.idp))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the provider did not sign the user out");
    let mut status = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        status = status_with(&s, &id).await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if status != 401 {
        let recs: Vec<String> = audit_records(&s.gw.audit_dir())
            .iter()
            .filter(|r| kind(&r.event) == "auth.backchannel_logout")
            .map(|r| format!("{:?}", r.event))
            .collect();
        panic!("the provider's logout did not end the gateway session: {recs:#?}\n{}", s.gw.log());
    }
    let ev = audit_has(&s.gw.audit_dir(), |r| {
        kind(r) == "auth.backchannel_logout" && decision(r).as_deref() == Some("allow")
    })
    .await;
    assert_eq!(subject(&ev), Some("bob"));

    // A replayed logout token is refused.
    let token = signed(&s.idp, json!({ "typ": "logout+jwt" }), with("jti", json!("j-replay"))).await;
    assert_eq!(post_logout_token(&s, &token).await, 200);
    assert_eq!(post_logout_token(&s, &token).await, 400);
    audit_has(&s.gw.audit_dir(), |r| kind(r) == "auth.backchannel_logout" && reason(r).as_deref() == Some("replay"))
        .await;
}

/// Re-validation: a user disabled at the provider loses access within the interval; a
/// provider that cannot be reached leaves live sessions alone.
#[tokio::test]
async fn a_user_disabled_at_the_provider_loses_access_within_the_interval() {
    let port = free_port();
    let idp = format!("http://127.0.0.1:{port}");
    let server = IdpServer::start(port);
    let s = site(Opts { idp: &idp, session: "revalidate_secs = 1", ..Default::default() }).await;
    let cookie = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .find_map(|v| {
                v.to_str().unwrap().strip_prefix("custos_session=").map(|v| v.split(';').next().unwrap().to_string())
            })
            .unwrap()
    };
    let bob = cookie(&sign_in(&s, &browser(), "/", "bob", "bob-password", None).await);
    let alice = cookie(&sign_in(&s, &browser(), "/", "alice", "alice-password", None).await);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(status_with(&s, &bob).await, 200, "re-validation refused a valid session");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(status_with(&s, &bob).await, 200, "the rotated refresh token was not kept");

    let r = client().post(format!("{idp}/test/disable/bob")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(status_with(&s, &bob).await, 401, "a user disabled at the provider kept access");
    let ev = audit_has(&s.gw.audit_dir(), |r| kind(r) == "session.revoked_by_idp").await;
    assert_eq!(subject(&ev), Some("bob"));

    // The provider down: alice's session goes on past the interval.
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(status_with(&s, &alice).await, 200, "an unreachable provider ended a session");
    assert_eq!(status_with(&s, &alice).await, 200);
}

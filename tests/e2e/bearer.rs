//! Bearer tokens (RFC 9068 access tokens from the real provider) for APIs and CLIs:
//! accepted with the MFA rule applied, absent upstream, and every hostile variant refused
//! with its own audit reason and a generic 401; a key rotation at the provider is picked
//! up after an unknown `kid`.

use crate::harness::*;
use base64::Engine;
use serde_json::{json, Value};

const API: &str = "api_audience = \"urn:custos:api\"\njwks_min_refresh_secs = 1";

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

async fn get(s: &Site, path: &str, token: &str) -> reqwest::Response {
    client().get(format!("{}{path}", s.origin)).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn bearer_tokens_are_checked_like_sessions_and_hostile_ones_refused() {
    let s = site(Opts { oidc: API, ..Default::default() }).await;
    let alice = tokens(&s.idp, "alice", "alice-password", "123456").await;
    let at = alice["access_token"].as_str().unwrap().to_string();

    // Accepted, MFA route included; the token does not reach the upstream.
    let r = get(&s, "/patients/1", &at).await;
    assert_eq!(r.status(), 200);
    let seen = s.demo.seen();
    let last = seen.iter().rev().find(|x| x.target == "/patients/1").unwrap();
    assert!(last.header("authorization").is_none(), "the consumed bearer token reached the upstream");
    let allow =
        audit_has(&s.gw.audit_dir(), |r| kind(r) == "access.decision" && decision(r).as_deref() == Some("allow")).await;
    assert_eq!(subject(&allow), Some("alice"));
    assert_eq!(allow.mfa, Some(true));

    // One factor: fine where MFA is not needed, the RFC 9470 challenge where it is.
    let bob = tokens(&s.idp, "bob", "bob-password", "").await;
    let bt = bob["access_token"].as_str().unwrap();
    assert_eq!(get(&s, "/", bt).await.status(), 200);
    let r = get(&s, "/patients", bt).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_user_authentication"));

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let good = |extra: Value| {
        let mut p = json!({ "iss": s.idp, "aud": "urn:custos:api", "sub": "alice", "iat": now, "exp": now + 600,
                            "amr": ["pwd", "otp"] });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let at_header = json!({ "typ": "at+jwt" });
    // The signer itself works: a token it makes with good claims is accepted.
    let control = signed(&s.idp, at_header.clone(), good(json!({}))).await;
    assert_eq!(get(&s, "/patients/1", &control).await.status(), 200, "the test signer's token should pass");

    let parts: Vec<&str> = at.split('.').collect();
    let mut altered_claims = payload(&at);
    altered_claims["sub"] = json!("mallory");
    let jwks = client().get(format!("{}/jwks", s.idp)).send().await.unwrap().bytes().await.unwrap();
    let hmac_input =
        format!("{}.{}", b64(br#"{"alg":"HS256","typ":"at+jwt"}"#), b64(good(json!({})).to_string().as_bytes()));
    let hmac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &jwks), hmac_input.as_bytes());
    let cases: Vec<(&str, String)> = vec![
        (
            "alg_none",
            format!("{}.{}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#), b64(good(json!({})).to_string().as_bytes())),
        ),
        ("alg_hmac", format!("{hmac_input}.{}", b64(hmac.as_ref()))),
        ("issuer", signed(&s.idp, at_header.clone(), good(json!({ "iss": "https://evil.example" }))).await),
        ("audience", signed(&s.idp, at_header.clone(), good(json!({ "aud": "urn:other:api" }))).await),
        ("typ", signed(&s.idp, json!({ "typ": "JWT" }), good(json!({}))).await),
        ("typ", alice["id_token"].as_str().unwrap().to_string()),
        ("expired", signed(&s.idp, at_header.clone(), good(json!({ "iat": now - 7200, "exp": now - 3600 }))).await),
        // Beyond the default leeway (at most 30 s).
        ("expired", signed(&s.idp, at_header.clone(), good(json!({ "iat": now - 600, "exp": now - 45 }))).await),
        ("issued_in_future", signed(&s.idp, at_header.clone(), good(json!({ "iat": now + 3600 }))).await),
        // The provider's key is an RS256 key (its JWK says so): a PS256 signature made
        // with that same RSA key is not one it verifies (RFC 8725 §3.1).
        ("key_algorithm", signed(&s.idp, json!({ "typ": "at+jwt", "alg": "PS256" }), good(json!({}))).await),
        ("not_yet_valid", signed(&s.idp, at_header.clone(), good(json!({ "nbf": now + 3600 }))).await),
        ("signature", format!("{}.{}.{}", parts[0], b64(altered_claims.to_string().as_bytes()), parts[2])),
        ("unknown_key", signed(&s.idp, json!({ "typ": "at+jwt", "kid": "no-such-key" }), good(json!({}))).await),
    ];
    // Every variant is tried before any failure is reported: all that get through, at once.
    let mut accepted = Vec::new();
    for (i, (reason, token)) in cases.iter().enumerate() {
        if get(&s, "/", token).await.status() != 401 {
            accepted.push(format!("case {i} ({reason})"));
        }
    }
    assert!(accepted.is_empty(), "hostile tokens accepted: {accepted:?}");
    for (reason, token) in &cases {
        let r = get(&s, "/", token).await;
        assert_eq!(r.status(), 401, "{reason}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"custos\", error=\"invalid_token\"", "{reason}");
        let body = r.text().await.unwrap();
        assert!(!body.contains(reason), "the page tells the client why: {body}");
        let want = format!("bearer_{reason}");
        audit_has(&s.gw.audit_dir(), |r| {
            decision(r).as_deref() == Some("deny") && crate::harness::reason(r).as_deref() == Some(want.as_str())
        })
        .await;
    }
    assert!(s.demo.seen().iter().all(|x| x.header("authorization").is_none()));
}

/// `oidc.clock_skew_secs` is the leeway for `exp`, `nbf` and `iat` alike: a token off by
/// less is accepted, one off by more refused, each with its reason.
#[tokio::test]
async fn the_clock_leeway_is_the_configured_one() {
    let s = site(Opts { oidc: "api_audience = \"urn:custos:api\"\nclock_skew_secs = 20", ..Default::default() }).await;
    // (claim, seconds from now, accepted?, the refusal's reason)
    let cases = [
        ("exp", -5, true, ""),
        ("exp", -40, false, "bearer_expired"),
        ("nbf", 5, true, ""),
        ("nbf", 40, false, "bearer_not_yet_valid"),
        ("iat", 5, true, ""),
        ("iat", 40, false, "bearer_issued_in_future"),
    ];
    for (claim, shift, accepted, reason) in cases {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut p = json!({ "iss": s.idp, "aud": "urn:custos:api", "sub": "alice", "iat": now - 1, "exp": now + 600,
                            "amr": ["pwd", "otp"] });
        p[claim] = json!(now + shift);
        let token = signed(&s.idp, json!({ "typ": "at+jwt" }), p).await;
        let status = get(&s, "/", &token).await.status();
        if accepted {
            assert_eq!(status, 200, "{claim} {shift:+} s is within the leeway");
        } else {
            assert_eq!(status, 401, "{claim} {shift:+} s is beyond the leeway");
            audit_has(&s.gw.audit_dir(), |r| {
                decision(r).as_deref() == Some("deny") && crate::harness::reason(r).as_deref() == Some(reason)
            })
            .await;
        }
    }
}

/// The subject comes from `oidc.subject_claim` only, and an e-mail address names a user
/// only when the provider vouches for it: an access token with an unverified `email`
/// is refused, never taken as its `sub` instead.
#[tokio::test]
async fn an_unverified_email_never_names_a_bearer() {
    let s =
        site(Opts { oidc: "api_audience = \"urn:custos:api\"\nsubject_claim = \"email\"", ..Default::default() }).await;
    let at = tokens(&s.idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    assert!(payload(&at)["email_verified"].is_null(), "the test IdP now vouches for email in access tokens");
    assert_eq!(get(&s, "/", &at).await.status(), 401);
    audit_has(&s.gw.audit_dir(), |r| reason(r).as_deref() == Some("bearer_subject_claim")).await;
}

#[tokio::test]
async fn a_route_may_pass_the_token_on_and_a_rotated_key_is_picked_up() {
    let port = free_port();
    let idp = format!("http://127.0.0.1:{port}");
    let first = IdpServer::start(port);
    let demo = demo().await;
    let s = site(Opts {
        idp: &idp,
        oidc: API,
        routes: Some(format!(
            "[[routes]]\nname = \"passes-token\"\nupstream = \"http://{}\"\nrequire_mfa = false\nforward_authorization = true\n",
            demo.addr
        )),
        ..Default::default()
    })
    .await;
    let old = tokens(&idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&s, "/debug/x", &old).await.status(), 200);
    let seen = demo.seen();
    assert_eq!(seen.last().unwrap().header("authorization"), Some(format!("Bearer {old}").as_str()));

    // The provider restarts with a new signing key.
    drop(first);
    let _second = IdpServer::start(port);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let new = tokens(&idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&s, "/debug/y", &new).await.status(), 200, "the new key was not fetched");
    audit_has(&s.gw.audit_dir(), |r| decision(r).as_deref() == Some("allow") && r.path.as_deref() == Some("/debug/y"))
        .await;
}

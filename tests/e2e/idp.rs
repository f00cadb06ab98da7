//! The test identity provider itself: a full authorization-code flow with PKCE through
//! its login pages, for an account with two factors and one without, so sign-in tests
//! stand on a provider that is known to issue the `amr`/`acr` they check.

use crate::harness::*;
use base64::Engine;
use serde_json::Value;

/// Follows redirects by hand until `stop` matches, returning that location.
async fn follow(c: &reqwest::Client, idp: &str, mut url: String, stop: &str) -> String {
    for _ in 0..10 {
        if url.starts_with(stop) {
            return url;
        }
        let r = c.get(&url).send().await.unwrap();
        match r.headers().get("location") {
            Some(l) => {
                let l = l.to_str().unwrap();
                url = if l.starts_with("http") { l.to_string() } else { format!("{idp}{l}") };
            }
            None => return url,
        }
    }
    panic!("too many redirects");
}

/// The token endpoint's answer for a code flow with PKCE through the login page
/// (`otp` empty: one factor). Its `access_token` is a JWT for `urn:custos:api`.
pub async fn tokens(idp: &str, user: &str, password: &str, otp: &str) -> Value {
    let redirect = format!("http://127.0.0.1:{}/.custos/callback", free_port());
    let (id, secret) = register_client(idp, &redirect, &redirect, "idp-test").await;
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let verifier = "a-pkce-code-verifier-of-sufficient-length-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let auth = format!(
        "{}/auth?client_id={id}&response_type=code&scope=openid%20email%20profile%20groups&redirect_uri={}&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256",
        idp,
        urlencode(&redirect)
    );
    let login = follow(&c, idp, auth, &format!("{idp}/interaction/")).await;
    let page = c.get(&login).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"username\""), "{page}");
    let r = c
        .post(format!("{login}/login"))
        .form(&[("username", user), ("password", password), ("otp", otp)])
        .send()
        .await
        .unwrap();
    let next = r.headers()["location"].to_str().unwrap().to_string();
    let back = follow(&c, idp, next, &redirect).await;
    assert!(back.starts_with(&redirect), "{back}");
    let code = back.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert!(back.contains("state=s1"));
    let token: Value = c
        .post(format!("{idp}/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(token["id_token"].is_string(), "{token}");
    token
}

/// The payload of a compact JWT.
pub fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

async fn sign_in(user: &str, password: &str, otp: &str) -> Value {
    payload(tokens(idp_url(), user, password, otp).await["id_token"].as_str().unwrap())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_test_idp_signs_in_with_and_without_mfa() {
    let alice = sign_in("alice", "alice-password", "123456").await;
    assert_eq!(alice["sub"], "alice");
    assert_eq!(alice["nonce"], "n1");
    assert_eq!(alice["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(alice["acr"], "urn:custos:mfa");
    let bob = sign_in("bob", "bob-password", "").await;
    assert_eq!(bob["amr"], serde_json::json!(["pwd"]));
    assert_eq!(bob["acr"], "urn:custos:pwd");
    // Access tokens are RFC 9068 JWTs for the API audience, with the sign-in's methods.
    let t = tokens(idp_url(), "alice", "alice-password", "123456").await;
    let at = t["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(at.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    let claims = payload(at);
    assert_eq!((claims["aud"].as_str(), claims["sub"].as_str()), (Some("urn:custos:api"), Some("alice")));
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
}

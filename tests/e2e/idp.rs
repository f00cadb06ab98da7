//! The test identity provider itself: a full authorization-code flow with PKCE through
//! its login pages, for an account with two factors and one without, so sign-in tests
//! stand on a provider that is known to issue the `amr`/`acr` they check.

use crate::harness::*;
use base64::Engine;
use serde_json::Value;

async fn sign_in(user: &str, password: &str, otp: &str) -> Value {
    payload(tokens(idp_url(), user, password, otp).await["id_token"].as_str().unwrap())
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

//! The identity the gateway asserts to upstreams: the demo service verifies it with the
//! gateway's published keys; a client cannot bring its own; a forged or altered one is
//! refused by the upstream; plain identity headers only where a route asks for them.

use crate::harness::*;
use base64::Engine;
use serde_json::{json, Value};

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[tokio::test]
async fn upstreams_verify_who_is_calling_and_refuse_forgeries() {
    // A P-256 key from a file (ES256).
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("assertion-key.pem");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    std::fs::write(&key, pem).unwrap();
    let oidc = format!(
        "api_audience = \"urn:custos:api\"\n\n[upstream_identity]\nsigning_key = {{ file = \"{}\" }}\nmax_groups = 10\n",
        key.display()
    );
    // `[upstream_identity]` is its own table: it goes after [oidc]'s keys, before [oidc.mfa].
    let s = site(Opts { oidc: &oidc, ..Default::default() }).await;

    let jwks: Value =
        client().get(format!("{}/.custos/jwks.json", s.origin)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");

    // A signed-in browser: the upstream knows it is alice, with her session's hash.
    let c = browser();
    let r = sign_in(&s, &c, "/whoami", "alice", "alice-password", None).await;
    assert_eq!(r.status(), 302);
    let r = nav(&c, &format!("{}/whoami", s.origin)).await;
    assert_eq!(r.status(), 200);
    let who: Value = r.json().await.unwrap();
    assert_eq!(who["verified"], true);
    assert_eq!(who["claims"]["sub"], "alice");
    assert_eq!(who["claims"]["aud"], "app");
    assert_eq!(who["claims"]["groups"], json!(["clinicians"]));
    assert_eq!(who["claims"]["amr"], json!(["pwd"]));
    assert_eq!(who["claims"]["sid"].as_str().unwrap().len(), 64);
    let seen = s.demo.seen();
    let assertion =
        seen.iter().rev().find(|x| x.target == "/whoami").unwrap().header("x-custos-assertion").unwrap().to_string();
    assert!(
        seen.iter().all(|x| x.header("x-custos-user").is_none()),
        "plain identity headers without the route asking"
    );

    // A bearer token: the same, for the API caller.
    let at = tokens(&s.idp, "bob", "bob-password", "").await["access_token"].as_str().unwrap().to_string();
    let r = client().get(format!("{}/whoami", s.origin)).bearer_auth(&at).send().await.unwrap();
    let who: Value = r.json().await.unwrap();
    assert_eq!((who["verified"].as_bool(), who["claims"]["sub"].as_str()), (Some(true), Some("bob")), "{who}");

    // A client's own assertion never reaches the upstream: on a public route the demo
    // sees none at all.
    let forged_via_gateway = client()
        .get(format!("{}/plain", s.origin))
        .header("x-custos-assertion", &assertion)
        .header("x-custos-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(forged_via_gateway.status(), 200);
    let last = s.demo.seen().into_iter().rev().find(|x| x.target == "/plain").unwrap();
    assert!(last.header("x-custos-assertion").is_none() && last.header("x-custos-user").is_none());

    // Straight at the upstream: an altered assertion, and one signed with another key
    // under the gateway's kid, are refused.
    let whoami = |a: String| {
        let url = format!("http://{}/whoami", s.demo.addr);
        async move { client().get(url).header("x-custos-assertion", a).send().await.unwrap() }
    };
    assert_eq!(whoami(assertion.clone()).await.status(), 200, "the real assertion, replayed within its life");
    let parts: Vec<&str> = assertion.split('.').collect();
    let mut claims = payload(&assertion);
    claims["sub"] = json!("admin");
    let altered = format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2]);
    assert_eq!(whoami(altered).await.status(), 401);
    let other = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref(),
        &rng,
    )
    .unwrap();
    let input = format!("{}.{}", parts[0], b64(claims.to_string().as_bytes()));
    let sig = other.sign(&rng, input.as_bytes()).unwrap();
    assert_eq!(whoami(format!("{input}.{}", b64(sig.as_ref()))).await.status(), 401);
    let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims.to_string().as_bytes()));
    assert_eq!(whoami(none).await.status(), 401);
}

#[tokio::test]
async fn plain_identity_headers_only_where_a_route_asks() {
    let demo = demo().await;
    let routes = format!(
        "[[routes]]\nname = \"legacy\"\nupstream = \"http://{}\"\nrequire_mfa = false\nidentity_headers = true\n",
        demo.addr
    );
    let s = site(Opts { oidc: "api_audience = \"urn:custos:api\"", routes: Some(routes), ..Default::default() }).await;
    let at = tokens(&s.idp, "alice", "alice-password", "").await["access_token"].as_str().unwrap().to_string();
    let r = client()
        .get(format!("{}/debug/who", s.origin))
        .bearer_auth(&at)
        .header("x-custos-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last = demo.seen().into_iter().last().unwrap();
    assert_eq!(last.header("x-custos-user"), Some("alice"));
    assert_eq!(last.header("x-custos-groups"), Some("clinicians"));
    assert!(last.header("x-custos-assertion").is_some());
}

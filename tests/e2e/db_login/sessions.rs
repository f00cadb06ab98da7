//! A database token is a session of its own: refused as a browser's cookie, ended by
//! the provider's back-channel logout, listed, capped and revoked like any session.

use super::*;

/// A token is a database's credential: as a browser's session cookie it is no session.
#[tokio::test]
async fn a_token_is_refused_as_a_browser_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let s = db_site(dir.path(), Opts::default()).await;
    let (c, id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&c, &s, "ehr", &challenge).await;
    let (status, v) = token_req(&s, &[("code", &code), ("verifier", &verifier)]).await;
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap();
    assert_eq!(status_with(&s, token).await, 401, "a database token worked as a session cookie");
    let r = browser()
        .get(format!("{}/patients/1", s.origin))
        .header("accept", "text/html")
        .header("cookie", format!("custos_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a browser with a token for a cookie is sent to sign in");
    // And it makes no further token either.
    let r = client()
        .get(login_url(&s, "ehr", "&port=40001", &challenge))
        .header("cookie", format!("custos_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(token_record(&s, token).is_some(), "refusing it ended it");
    assert_eq!(status_with(&s, &id).await, 200);

    // Signing out of the browser leaves the token: it is a session of its own.
    let r = nav(&c, &format!("{}/.custos/logout", s.origin)).await;
    assert_eq!(r.status(), 302);
    assert_eq!(status_with(&s, &id).await, 401);
    assert!(token_record(&s, token).is_some(), "the browser's logout ended the database token");

    // Signing out at the provider (back-channel logout) ends the token with the browser's
    // session: it was made from that provider session.
    let client_id = {
        let text = std::fs::read_to_string(s.gw.dir.path().join("custos.toml")).unwrap();
        text.lines().find_map(|l| l.strip_prefix("client_id = \"")).unwrap().trim_end_matches('"').to_string()
    };
    let claims = serde_json::json!({
        "iss": s.idp, "aud": client_id, "iat": now_secs(), "jti": uuid::Uuid::new_v4().to_string(), "sub": "alice",
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    let logout = signed(&s.idp, serde_json::json!({ "typ": "logout+jwt" }), claims).await;
    let r = client()
        .post(format!("{}/.custos/backchannel-logout", s.origin))
        .form(&[("logout_token", logout.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(token_record(&s, token).is_none(), "the provider's logout left the database token");
    assert_eq!(status_with(&s, &id).await, 401);
}

/// A token is a session of the user's: listed, counted in `max_sessions_per_user`, and
/// ended by `custos session revoke`, by its hash or with the user's, on its own.
#[tokio::test]
async fn tokens_are_listed_capped_and_revoked_like_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (token_file, line) = admin_token(dir.path(), "ops");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let s = db_site(
        dir.path(),
        Opts { admin_tokens: Some(&tokens), session: "max_sessions_per_user = 3", ..Default::default() },
    )
    .await;
    let (c, id) = signed_in(&s, "/patients", "alice", "alice-password", Some("123456")).await;
    let get = || {
        let (c, s) = (c.clone(), &s);
        async move {
            // Sessions made in one second are of no order: the cap ends the oldest.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let (verifier, challenge) = pkce();
            let code = code_for(&c, s, "ehr", &challenge).await;
            let (status, v) = token_req(s, &[("code", &code), ("verifier", &verifier)]).await;
            assert_eq!(status, 200, "{v}");
            v["token"].as_str().unwrap().to_string()
        }
    };
    let first = get().await;
    let second = get().await;
    let admin = format!("http://{}", s.gw.admin);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(CUSTOS)
            .arg("session")
            .args(args)
            .args(["--admin", &admin, "--token-file"])
            .arg(&token_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let listed = cli(&["list", "--user", "alice"]);
    let hashes: Vec<&str> =
        listed["sessions"].as_array().unwrap().iter().map(|x| x["session"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 3, "{listed}");
    for t in [&id, &first, &second] {
        assert!(hashes.contains(&&*sha256(t)), "{listed}");
    }
    let dbs: Vec<&Value> = listed["sessions"].as_array().unwrap().iter().map(|x| &x["db"]).collect();
    assert_eq!(dbs.iter().filter(|d| **d == "ehr").count(), 2, "the listing says which are database tokens: {listed}");

    // Revoked by its hash: that token alone, announced on the session-end channel (what
    // closes its connections on every gateway).
    let (tx, rx) = std::sync::mpsc::channel();
    let (redis_url, channel, want) = (s.redis.clone(), format!("{}:ended", s.prefix), sha256(&first));
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(redis_url.as_str()).unwrap().get_connection().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut ps = conn.as_pubsub();
        ps.subscribe(&channel).unwrap();
        tx.send(String::new()).unwrap();
        while let Ok(m) = ps.get_message() {
            let text: String = m.get_payload().unwrap();
            if text.ends_with(&want) {
                let _ = tx.send(text);
                return;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("subscribed");
    let out = cli(&["revoke", "--session", &sha256(&first)]);
    assert_eq!(out["revoked"], 1, "{out}");
    let announced = rx.recv_timeout(Duration::from_secs(20)).expect("the end was not announced");
    assert_eq!(announced, format!("session_revoked {}", sha256(&first)));
    assert!(token_record(&s, &first).is_none());
    assert!(token_record(&s, &second).is_some());
    assert_eq!(status_with(&s, &id).await, 200, "revoking a token ended the browser's session");

    // At the cap again, then one more: the oldest (the browser's) ends.
    let third = get().await;
    assert_eq!(status_with(&s, &id).await, 200);
    let fourth = get().await;
    assert_eq!(status_with(&s, &id).await, 401, "the cap did not count the tokens");
    assert!(token_record(&s, &fourth).is_some());

    // With the user: every token.
    let out = cli(&["revoke", "--user", "alice"]);
    assert_eq!(out["revoked"], 3, "{out}");
    for t in [&second, &third, &fourth] {
        assert!(token_record(&s, t).is_none());
    }
    let ev = audit_has(&s.gw.audit_dir(), |r| {
        kind(r) == "admin.session_revoked" && r.session.as_deref() == Some(&*sha256(&first))
    })
    .await;
    assert_eq!(ev.target.as_deref(), Some("alice"));
}

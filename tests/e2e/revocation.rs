//! Revocation that takes effect at once, on every gateway sharing the Redis: two
//! gateway processes, a session made on one, listed and revoked with `custos session`
//! through the other's admin listener (administrator tokens, audited by name), refused
//! on the next request on the first; and a cap on sessions per user.

use crate::harness::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn cli(s: &Site, token: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(CUSTOS)
        .arg("session")
        .args(args)
        .args(["--admin", &format!("http://{}", s.gw.admin)])
        .arg("--token-file")
        .arg(token)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn a_session_revoked_through_one_gateway_is_refused_at_once_by_another() {
    // An administrator token, and the tokens file that holds only its hash.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(CUSTOS).args(["admin-token", "ops-oncall"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    let line = text.lines().nth(1).unwrap().split(':').nth(1).unwrap().trim().to_string();
    assert!(!line.contains(&token), "the tokens file would hold the token itself");
    std::fs::write(dir.path().join("tokens"), format!("# administrators\n{line}\n")).unwrap();
    std::fs::write(dir.path().join("my-token"), &token).unwrap();
    std::fs::write(dir.path().join("wrong-token"), "not-a-token").unwrap();
    let tokens = dir.path().join("tokens");

    let prefix = format!("custos:test:{}", uuid::Uuid::now_v7().simple());
    let a = site(Opts { prefix: Some(prefix.clone()), ..Default::default() }).await;
    let b = site(Opts { prefix: Some(prefix.clone()), admin_tokens: Some(&tokens), ..Default::default() }).await;

    let r = sign_in(&a, &browser(), "/", "alice", "alice-password", None).await;
    let first = cookie_value(&r, "custos_session").expect("a session cookie");
    let r = sign_in(&a, &browser(), "/", "alice", "alice-password", None).await;
    let second = cookie_value(&r, "custos_session").expect("a session cookie");
    assert_eq!(status_with(&a, &first).await, 200);
    assert_eq!(status_with(&b, &first).await, 200, "a session made on one gateway is not honoured by another");

    // Listing: through the other gateway's admin listener.
    let (ok, out) = cli(&b, &dir.path().join("my-token"), &["list", "--user", "alice"]);
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let hashes: Vec<&str> =
        listed["sessions"].as_array().unwrap().iter().map(|s| s["session"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 2, "{out}");
    let (ok, out) = cli(&b, &dir.path().join("wrong-token"), &["list", "--user", "alice"]);
    assert!(!ok && out.contains("401"), "{out}");

    // One session by its hash, then the user: refused on the next request, everywhere.
    let first_hash = sha256(&first);
    let (ok, out) = cli(&b, &dir.path().join("my-token"), &["revoke", "--session", &first_hash]);
    assert!(ok && out.contains("\"revoked\":1"), "{out}");
    assert_eq!(status_with(&a, &first).await, 401, "a revoked session still works on the other gateway");
    assert_eq!(status_with(&a, &second).await, 200, "revoking one session ended another");
    let (ok, out) = cli(&b, &dir.path().join("my-token"), &["revoke", "--user", "alice"]);
    assert!(ok && out.contains("\"revoked\":1"), "{out}");
    assert_eq!(status_with(&a, &second).await, 401);
    assert_eq!(status_with(&b, &second).await, 401);

    let dir_b = b.gw.audit_dir();
    let ev =
        audit_has(&dir_b, |r| kind(r) == "admin.session_revoked" && r.session.as_deref() == Some(first_hash.as_str()))
            .await;
    assert_eq!(subject(&ev), Some("admin:ops-oncall"));
    assert_eq!(ev.target.as_deref(), Some("alice"));
    audit_has(&dir_b, |r| kind(r) == "admin.sessions_listed" && r.target.as_deref() == Some("alice")).await;
    audit_has(&dir_b, |r| kind(r) == "admin.denied").await;
}

#[tokio::test]
async fn sessions_per_user_can_be_capped() {
    let s = site(Opts { session: "max_sessions_per_user = 2", ..Default::default() }).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = sign_in(&s, &browser(), "/", "bob", "bob-password", None).await;
        ids.push(cookie_value(&r, "custos_session").expect("a session cookie"));
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    assert_eq!(status_with(&s, &ids[0]).await, 401, "the oldest session outlived the cap");
    assert_eq!(status_with(&s, &ids[1]).await, 200);
    assert_eq!(status_with(&s, &ids[2]).await, 200);
}

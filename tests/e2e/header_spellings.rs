//! Identity headers under every spelling an upstream maps to the same name: headers with
//! `_` are dropped (CGI, WSGI, PHP read `x_custos_user` as `X-Custos-User`) unless a
//! route lets a harmless one through; the headers that re-route a request or change its
//! method never pass; the ones that name the client pass only from a trusted proxy.

use crate::harness::*;

/// What a client sends: underscored spellings of identity and forwarding headers, the
/// override headers, and the headers that name the client.
const SENT: &str = "x_custos_user: mallory\r\nX_Custos_Groups: admins\r\nremote_user: mallory\r\n\
    X_Forwarded_For: 10.9.9.9\r\nX_Request_Id: forged-id\r\nx_legacy_id: 42\r\n\
    X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Host: evil.example\r\n\
    X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n\
    X-Real-IP: 10.9.9.9\r\nX-Client-IP: 10.9.9.9\r\nTrue-Client-IP: 10.9.9.9\r\n\
    X-Forwarded-Port: 8443\r\nX-Forwarded-Prefix: /admin\r\nX-Forwarded-Uri: /admin\r\n\
    X-Forwarded-Ssl: on\r\nX-Original-Forwarded-For: 10.9.9.9\r\nAccept: application/json\r\n";

const OVERRIDES: [&str; 6] =
    ["x-original-url", "x-rewrite-url", "x-host", "x-http-method-override", "x-http-method", "x-method-override"];

const CLIENT_NAMING: [&str; 8] = [
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-ssl",
    "x-original-forwarded-for",
];

/// Sends [`SENT`] through `gw`; what the upstream received.
async fn through(gw: &Gateway, demo: &demo_ephi::Demo) -> demo_ephi::Seen {
    let before = demo.seen().len();
    let req = format!("GET /patients/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{SENT}\r\n");
    let (status, text) = raw_status(gw.http, req.as_bytes()).await.unwrap();
    assert_eq!(status, 200, "{text}");
    let seen = demo.seen();
    assert_eq!(seen.len(), before + 1);
    seen[before].clone()
}

#[tokio::test]
async fn every_spelling_of_an_identity_header_is_dropped_and_client_names_need_a_trusted_proxy() {
    let demo = demo().await;
    let route = format!("{}underscore_headers = [\"x_legacy_id\"]\n", route_all(demo.addr));
    let untrusted = Gateway::builder().config(&route).start().await;
    let trusted =
        Gateway::builder().config(format!("[headers]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{route}")).start().await;

    for (gw, from_proxy) in [(&untrusted, false), (&trusted, true)] {
        let seen = through(gw, &demo).await;
        let what = if from_proxy { "from a trusted proxy" } else { "from a client" };
        // Only the route's own underscored header passes.
        let underscored: Vec<&str> = seen.headers.iter().map(|(k, _)| k.as_str()).filter(|k| k.contains('_')).collect();
        assert_eq!(underscored, ["x_legacy_id"], "{what}");
        assert_eq!(seen.header("x_legacy_id"), Some("42"));
        // The gateway's own headers are its own, under any spelling sent.
        assert_ne!(seen.header("x-request-id"), Some("forged-id"), "{what}");
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{what}: no chain was sent in its real name");
        for h in OVERRIDES {
            assert_eq!(seen.header(h), None, "{h} reached the upstream {what}");
        }
        for h in CLIENT_NAMING {
            let want = if from_proxy { Some(()) } else { None };
            assert_eq!(seen.header(h).map(|_| ()), want, "{h} {what}");
        }
        assert_eq!(seen.header("accept"), Some("application/json"));
    }
    assert_eq!(through(&trusted, &demo).await.header("x-real-ip"), Some("10.9.9.9"));

    // A route may not let through an underscored spelling of a header Custos strips or
    // sets: a load error that names the key.
    for name in
        ["x_custos_user", "remote_user", "X_Forwarded_For", "x_request_id", "x_http_method_override", "x_real_ip"]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            format!("[listen]\nhttp = \"127.0.0.1:0\"\n{}underscore_headers = [\"{name}\"]\n", route_all(demo.addr)),
        )
        .unwrap();
        let out = std::process::Command::new(CUSTOS).args(["check", "--config"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains("`routes[0].underscore_headers[0]`"), "{name}: {err}");
    }
}

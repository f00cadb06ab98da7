//! Proxying, routing misses, identity-header hygiene, forwarding headers, upstream
//! failure, limits and metrics.

use crate::harness::*;

#[tokio::test]
async fn get_and_post_reach_the_upstream_with_their_bodies() {
    let demo = demo().await;
    let gw = Gateway::builder().route(route_all(demo.addr)).start().await;
    let c = client();

    let r = c.get(gw.url("/patients/2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["name"], "Ben Example");

    let r = c.post(gw.url("/patients/3/notes")).body("synthetic note: follow up in 2 weeks").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let notes: Vec<String> = c.get(gw.url("/patients/3/notes")).send().await.unwrap().json().await.unwrap();
    assert_eq!(notes, ["synthetic note: follow up in 2 weeks"]);

    let r = c.delete(gw.url("/patients/3/notes/1")).send().await.unwrap();
    assert_eq!(r.status(), 204);

    let posted = demo.seen().into_iter().find(|s| s.method == "POST").expect("the POST reached the upstream");
    assert_eq!(posted.body, b"synthetic note: follow up in 2 weeks");
}

#[tokio::test]
async fn unmatched_requests_get_404_and_are_never_forwarded() {
    let demo = demo().await;
    let gw = Gateway::builder()
        .config(format!(
            "[[routes]]\npublic = true\nname = \"api\"\npath = \"/api\"\nupstream = \"http://{}\"\n\
         [[routes]]\npublic = true\nname = \"ehr\"\nhost = \"ehr.example.org\"\nupstream = \"http://{}\"\n",
            demo.addr, demo.addr
        ))
        .start()
        .await;
    let c = client();
    for path in ["/", "/apix", "/patients", "/.custos/unknown"] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains(path.trim_start_matches('/')) || path == "/", "page echoes input: {body}");
    }
    // A host with routes of its own.
    let r = c.get(gw.url("/patients")).header("host", "EHR.example.org:443").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(demo.seen().len(), 1, "only the matched request was forwarded");
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let demo = demo().await;
    let gw = Gateway::builder()
        .config("[headers]\nstrip = [\"x-forwarded-user\", \"x-remote-user\", \"remote-user\", \"x-ehr-role\"]\n")
        .route(route_all(demo.addr))
        .start()
        .await;
    let r = client()
        .get(gw.url("/debug/headers"))
        .header("X-Custos-User", "mallory")
        .header("x-custos-groups", "admins")
        .header("X-Forwarded-User", "mallory")
        .header("X-Remote-User", "mallory")
        .header("Remote-User", "mallory")
        .header("X-Ehr-Role", "admin")
        .header("X-Forwarded-For", "10.9.9.9")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "for=10.9.9.9")
        .header("X-Request-Id", "trace-me-123")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let seen = demo.seen().pop().unwrap();
    for h in [
        "x-custos-user",
        "x-custos-groups",
        "x-forwarded-user",
        "x-remote-user",
        "remote-user",
        "x-ehr-role",
        "forwarded",
    ] {
        assert_eq!(seen.header(h), None, "{h} reached the upstream");
    }
    // The client-supplied chain is not trusted: the gateway writes its own.
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some(gw.http.to_string().as_str()));
    assert_eq!(seen.header("x-request-id"), Some("trace-me-123"));
    assert_eq!(seen.header("accept"), Some("application/json"));

    // A malformed request id is replaced.
    client().get(gw.url("/debug/h")).header("X-Request-Id", "bad id;<script>").send().await.unwrap();
    let id = demo.seen().pop().unwrap().header("x-request-id").unwrap().to_string();
    assert!(uuid_like(&id), "generated id {id}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test]
async fn a_trusted_proxy_chain_is_appended_to() {
    let demo = demo().await;
    let gw = Gateway::builder()
        .config("[headers]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
        .route(route_all(demo.addr))
        .start()
        .await;
    client()
        .get(gw.url("/debug/h"))
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    let seen = demo.seen().pop().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn upstream_down_gives_a_plain_502_and_is_counted() {
    let closed = free_port();
    let gw = Gateway::builder()
        .config(format!("[[routes]]\npublic = true\nname = \"down\"\nupstream = \"http://127.0.0.1:{closed}\"\n"))
        .start()
        .await;
    let r = client().get(gw.url("/patients?name=<script>")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let body = r.text().await.unwrap();
    assert!(body.starts_with("502 Bad Gateway"), "{body}");
    assert!(!body.contains("script") && !body.contains("patients"), "echoes input: {body}");

    let metrics = scrape_until(
        &gw,
        &[r#"custos_requests_total{route="down",status="502"} 1"#, r#"custos_upstream_errors_total{route="down"} 1"#],
    )
    .await;
    assert!(metrics.contains(r#"custos_upstream_errors_total{route="down"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"custos_requests_total{route="down",status="502"} 1"#), "{metrics}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let demo = demo().await;
    let gw = Gateway::builder().route(route_all(demo.addr)).start().await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/patients")).send().await.unwrap().status(), 200);
    }
    assert_eq!(c.get(gw.url("/patients/99")).send().await.unwrap().status(), 404);
    // One scrape collects the families one after another, so wait for all three.
    let m = scrape_until(
        &gw,
        &[
            r#"custos_request_duration_seconds_count{route="demo"} 4"#,
            r#"custos_requests_total{route="demo",status="404"} 1"#,
            r#"custos_requests_total{route="demo",status="200"} 3"#,
        ],
    )
    .await;
    assert!(m.contains(r#"custos_requests_total{route="demo",status="200"} 3"#), "{m}");
    assert!(m.contains(r#"custos_requests_total{route="demo",status="404"} 1"#), "{m}");
    assert!(m.contains(r#"custos_request_duration_seconds_count{route="demo"} 4"#), "{m}");
    // The metrics are not on the proxy listener.
    assert_eq!(c.get(gw.url("/metrics")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn limits_refuse_large_bodies_and_headers() {
    let demo = demo().await;
    let gw = Gateway::builder()
        .config(format!(
            "[limits]\nmax_headers = 20\n{}\n[routes.limits]\nmax_body_bytes = 1000\n",
            route_all(demo.addr)
        ))
        .start()
        .await;
    let c = client();
    let r = c.post(gw.url("/patients/1/notes")).body(vec![b'a'; 1001]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r = c.post(gw.url("/patients/1/notes")).body(vec![b'a'; 1000]).send().await.unwrap();
    assert_eq!(r.status(), 201);

    // A chunked body over the limit is cut off, never delivered whole.
    let chunk = format!("{:x}\r\n{}\r\n", 1500, "b".repeat(1500));
    let req =
        format!("POST /patients/2/notes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}0\r\n\r\n");
    let (status, _) = raw_status(gw.http, req.as_bytes()).await.unwrap();
    assert!(status == 413 || status == 0, "status {status}");
    assert!(demo.seen().iter().all(|s| s.body.len() <= 1000), "an oversized body was delivered");

    let mut req = String::from("GET /patients HTTP/1.1\r\nHost: t\r\n");
    for i in 0..25 {
        req.push_str(&format!("X-Filler-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let (status, _) = raw_status(gw.http, req.as_bytes()).await.unwrap();
    assert_eq!(status, 431);
}

#[tokio::test]
async fn health_endpoints_answer_on_the_reserved_prefix() {
    let demo = demo().await;
    let gw = Gateway::builder().route(route_all(demo.addr)).start().await;
    for p in ["/.custos/healthz", "/.custos/readyz"] {
        let r = client().get(gw.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    assert!(demo.seen().is_empty(), "gateway endpoints were forwarded");
}

/// Metrics are recorded after the response is sent: scrape until every `want` shows,
/// for at most 30 seconds, and return the last scrape.
async fn scrape_until(gw: &Gateway, wants: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = client().get(format!("http://{}/metrics", gw.admin)).send().await.unwrap().text().await.unwrap();
        if wants.iter().all(|w| m.contains(w)) || std::time::Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn timeouts_bound_slow_upstreams_and_silent_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let demo = demo().await;
    // Separate routes, so that each timeout is the only one that can fire.
    let gw = Gateway::builder()
        .config(format!(
            "[[routes]]\npublic = true\nname = \"slow-upstream\"\npath = \"/slow\"\nupstream = \"http://{0}\"\n\
         [routes.limits]\nupstream_read_timeout_secs = 1\n\
         [[routes]]\npublic = true\nname = \"silent-client\"\npath = \"/debug\"\nupstream = \"http://{0}\"\n\
         [routes.limits]\nclient_read_timeout_secs = 1\nupstream_read_timeout_secs = 30\n",
            demo.addr
        ))
        .start()
        .await;
    // An upstream silent for longer than its read timeout: 504, not a hung request (the
    // upstream would take 30 s; the bounds leave room for a loaded machine).
    let started = std::time::Instant::now();
    let r = client().get(gw.url("/slow?ms=30000")).timeout(std::time::Duration::from_secs(60)).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "took {:?}", started.elapsed());

    // A client that promises a body and goes silent is cut off.
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"POST /debug/slowloris HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the gateway kept a silent client's connection open");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let text = String::from_utf8_lossy(&out);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn the_request_id_echo_can_be_turned_off() {
    let demo = demo().await;
    let gw =
        Gateway::builder().config("[headers]\necho_request_id = false\n").route(route_all(demo.addr)).start().await;
    let r = client().get(gw.url("/debug/headers")).header("X-Request-Id", "trace-me-456").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("x-request-id"), None, "echoed although turned off");
    // The upstream still gets it, and so does a request without one (a new id).
    assert_eq!(demo.seen().pop().unwrap().header("x-request-id"), Some("trace-me-456"));
    let r = client().get(gw.url("/debug/headers")).send().await.unwrap();
    assert_eq!(r.headers().get("x-request-id"), None);
    assert!(uuid_like(demo.seen().pop().unwrap().header("x-request-id").unwrap()));
}

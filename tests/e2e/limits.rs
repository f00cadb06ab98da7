//! The size limits answer what the README says, on raw sockets: a request line over
//! `max_header_bytes` gets 414, headers over it (or over `max_headers`) 431; each is on
//! the record and nothing is forwarded.

use crate::harness::*;

#[tokio::test]
async fn a_long_request_line_gets_414_and_large_headers_get_431() {
    let demo = demo().await;
    let gw = Gateway::builder()
        .config("[limits]\nmax_header_bytes = 8192\nmax_headers = 50\n")
        .route(route_all(demo.addr))
        .start()
        .await;
    let send = |head: String| {
        let addr = gw.http;
        async move { raw_status(addr, format!("{head}Host: t\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap() }
    };

    let (status, text) = send(format!("GET /patients/{} HTTP/1.1\r\n", "1".repeat(9000))).await;
    assert_eq!(status, 414, "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    let (status, text) = send(format!("GET /patients/1 HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(9000))).await;
    assert_eq!(status, 431, "{text}");
    let many: String = (0..60).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
    let (status, text) = send(format!("GET /patients/1 HTTP/1.1\r\n{many}")).await;
    assert_eq!(status, 431, "{text}");
    // A request line and headers that together pass the limit: the headers are too large.
    let (status, _) =
        send(format!("GET /patients/{} HTTP/1.1\r\nX-Big: {}\r\n", "1".repeat(5000), "a".repeat(5000))).await;
    assert_eq!(status, 431);
    // Under the limits, served.
    let (status, _) = send(format!("GET /patients/1?{} HTTP/1.1\r\n", "q".repeat(4000))).await;
    assert_eq!(status, 200);

    assert_eq!(demo.seen().len(), 1, "only the request within the limits was forwarded");
    let reasons = || -> Vec<String> {
        audit_records(&gw.audit_dir())
            .into_iter()
            .filter(|r| kind(&r.event) == "access.decision" && decision(&r.event).as_deref() == Some("deny"))
            .map(|r| {
                format!(
                    "{} {}",
                    r.event.status.map_or("null".into(), |s| s.to_string()),
                    reason(&r.event).as_deref().unwrap_or("")
                )
            })
            .collect()
    };
    let want = ["414 uri_too_long", "431 header_too_large", "431 header_too_large", "431 header_too_large"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reasons() != want && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(reasons(), want);
}

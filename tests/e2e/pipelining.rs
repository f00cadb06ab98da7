//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests written together in one write are
//! each answered, in order, whichever part of the gateway answers them (the upstream, a
//! refusal, a redirect, a gateway endpoint). A gateway that cannot answer a queued
//! request must say `Connection: close` on the response before it, never drop it
//! silently behind a `keep-alive`. The last request of each batch asks to close, so the
//! exchange ends when the gateway closes the connection, never on a timeout.

use crate::harness::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One response: status, its `Connection` header, its body.
#[derive(Debug)]
struct Resp {
    status: u16,
    connection: String,
    body: String,
}

/// Writes `batch` in one write and reads until the gateway closes the connection (at
/// most 10 s); the responses, split by their `Content-Length`.
async fn exchange(addr: SocketAddr, batch: &str) -> Vec<Resp> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(batch.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the gateway did not close the connection: {:?}", String::from_utf8_lossy(&raw)),
        }
    }
    let mut out = Vec::new();
    let mut rest = &raw[..];
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
                .unwrap_or("")
                .to_string()
        };
        let len: usize = header("content-length").parse().unwrap_or(0);
        let body_end = (end + 4 + len).min(rest.len());
        out.push(Resp {
            status: head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0),
            connection: header("connection").to_ascii_lowercase(),
            body: String::from_utf8_lossy(&rest[end + 4..body_end]).into_owned(),
        });
        rest = &rest[body_end..];
    }
    out
}

/// Every request answered in order (status and a piece of the body), or the answers
/// stop after one that says `Connection: close`.
fn assert_in_order(name: &str, got: &[Resp], want: &[(u16, &str)]) {
    assert!(!got.is_empty(), "{name}: no response");
    for (i, (r, (status, marker))) in got.iter().zip(want).enumerate() {
        assert_eq!(r.status, *status, "{name}: response {i}: {got:?}");
        assert!(r.body.contains(marker), "{name}: response {i} is not the answer to request {i}: {got:?}");
        if i + 1 < got.len() {
            assert_ne!(r.connection, "close", "{name}: a response after Connection: close: {got:?}");
        }
    }
    let last = got.last().unwrap();
    assert!(
        got.len() == want.len() || last.connection == "close",
        "{name}: {} of {} requests answered, and the last answer said `Connection: {}`: {got:?}",
        got.len(),
        want.len(),
        last.connection
    );
}

/// A name, the requests written together, and the answers wanted (status, a piece of
/// the body).
type Case<'a> = (&'a str, String, Vec<(u16, &'a str)>);

const CLOSE: &str = "Connection: close\r\n";

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let demo = demo().await;
    let gw = Gateway::builder()
        .config(format!(
            "[[routes]]\npublic = true\nname = \"debug\"\npath = \"/debug\"\nupstream = \"http://{}\"\n",
            demo.addr
        ))
        .start()
        .await;
    let cases: Vec<Case> = vec![
        (
            "GET then GET",
            get("/debug/one", "") + get("/debug/two", CLOSE).as_str(),
            vec![(200, "/debug/one"), (200, "/debug/two")],
        ),
        (
            "three GETs",
            get("/debug/a1", "") + get("/debug/a2", "").as_str() + get("/debug/a3", CLOSE).as_str(),
            vec![(200, "/debug/a1"), (200, "/debug/a2"), (200, "/debug/a3")],
        ),
        (
            "POST with a body then GET",
            "POST /debug/post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".to_string()
                + get("/debug/after-post", CLOSE).as_str(),
            vec![(200, "/debug/post"), (200, "/debug/after-post")],
        ),
        (
            "chunked POST then GET",
            "POST /debug/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_string()
                + get("/debug/after-chunked", CLOSE).as_str(),
            vec![(200, "/debug/chunked"), (200, "/debug/after-chunked")],
        ),
        (
            "a gateway 404 then GET",
            get("/nothing-here", "") + get("/debug/after-404", CLOSE).as_str(),
            vec![(404, "No service"), (200, "/debug/after-404")],
        ),
        (
            "a gateway endpoint then GET",
            get("/.custos/healthz", "") + get("/debug/after-health", CLOSE).as_str(),
            vec![(200, "ok"), (200, "/debug/after-health")],
        ),
        (
            "a bad path then GET",
            get("/debug/a%2fb", "") + get("/debug/after-bad-path", CLOSE).as_str(),
            vec![(400, "path"), (200, "/debug/after-bad-path")],
        ),
    ];
    for (name, batch, want) in &cases {
        let got = exchange(gw.http, batch).await;
        assert_in_order(name, &got, want);
    }
    // What the upstream answered it received once each, in order.
    let targets: Vec<String> = demo.seen().iter().map(|s| s.target.clone()).collect();
    let want: Vec<&str> = cases.iter().flat_map(|(_, _, w)| w.iter().map(|(_, m)| *m)).collect();
    let answered: Vec<&str> = want.iter().copied().filter(|m| targets.iter().any(|t| t == m)).collect();
    assert_eq!(targets, answered, "the upstream saw requests out of order or twice");
}

#[tokio::test]
async fn pipelined_requests_behind_a_sign_in_refusal_or_redirect_are_answered() {
    let s = site(Opts::default()).await;
    let addr = s.gw.http;
    // 401 for a client that is not a browser, 302 to sign in for one that is.
    let cases: Vec<Case> = vec![
        ("401 then GET", get("/patients/1", "") + get("/plain", CLOSE).as_str(), vec![(401, "Sign in"), (200, "ok")]),
        (
            "302 then GET",
            get("/patients/1", "Accept: text/html\r\n") + get("/plain", CLOSE).as_str(),
            vec![(302, "Found"), (200, "ok")],
        ),
    ];
    for (name, batch, want) in &cases {
        let got = exchange(addr, batch).await;
        assert_in_order(name, &got, want);
    }
}

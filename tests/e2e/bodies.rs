//! Request bodies: a chunked body with bad framing, or one over `max_body_bytes`, stops at
//! once. The upstream receives nothing past the fault (never more than the limit), its
//! connection is closed rather than pooled, and the completion record names the reason.
//! The upstream here is a raw TCP listener that never answers and records, per
//! connection, every byte it received and whether the gateway closed it (`Recorder`).

use crate::harness::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The payload bytes of the chunked body after the head in `raw` (what the gateway wrote
/// upstream, canonically framed), and whether its last chunk arrived.
fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
    let Some(start) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return (Vec::new(), false) };
    let mut rest = &raw[start + 4..];
    let mut data = Vec::new();
    loop {
        let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else { return (data, false) };
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap(), 16).unwrap();
        rest = &rest[nl + 2..];
        if size == 0 {
            return (data, true);
        }
        let take = size.min(rest.len());
        data.extend_from_slice(&rest[..take]);
        if take < size || rest.len() < size + 2 {
            return (data, false);
        }
        rest = &rest[size + 2..];
    }
}

/// Writes `head` and then `body` in pieces of `piece` bytes over one connection, and
/// reads until the gateway closes it (10 s at most): the status and whether it closed.
async fn send(addr: SocketAddr, head: &str, body: &[u8], piece: usize) -> (u16, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for p in body.chunks(piece.max(1)) {
        // The gateway may stop reading (and close) before everything is written.
        if s.write_all(p).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&out);
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, closed)
}

#[tokio::test]
async fn bad_chunked_framing_and_oversized_bodies_stop_at_once() {
    let up = Recorder::start().await;
    let mut gw = Gateway::builder().config(format!(
        "[[routes]]\npublic = true\nname = \"up\"\nupstream = \"http://{}\"\n[routes.limits]\nmax_body_bytes = 1000\nupstream_read_timeout_secs = 30\n",
        up.addr
    )).start()
    .await;
    let head = |path: &str| format!("POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    // Each fault is followed by what must never reach the upstream ("SECRET"), and sent
    // twice: as the first chunk line, and after a good chunk ("hello").
    let faults: Vec<(&str, &[u8])> = vec![
        ("not-hex", b"zz\r\n"),
        ("negative", b"-6\r\n"),
        ("huge", b"fffffffffffffffff\r\n"),
        ("overflow", b"ffffffffffffffff\r\n"),
        ("bare-lf-size", b"6\n"),
        ("bare-cr-ext", b"6;a\rb\r\n"),
        // Not refused, known limit (README): pingora's chunk reader (httparse) takes
        // any byte in a chunk extension and reads a line without digits as the last
        // chunk. What it decodes is framed anew for the upstream, so the upstream and
        // the gateway still agree on where the body ends.
    ];
    let mut bad = Vec::new();
    for (name, line) in &faults {
        let tail = [*line, b"SECRET\r\n0\r\n\r\n"].concat();
        bad.push((format!("/first/{name}"), tail.clone()));
        bad.push((format!("/second/{name}"), [&b"5\r\nhello\r\n"[..], &tail].concat()));
    }
    for (path, body) in
        [("bare-lf-data", &b"6\r\nSECRET\n0\r\n\r\n"[..]), ("no-crlf-after-data", b"6\r\nSECRETxx0\r\n\r\n")]
    {
        bad.push((format!("/first/{path}"), body.to_vec()));
    }
    for (path, body) in &bad {
        let (status, closed) = send(gw.http, &head(path), body, body.len()).await;
        assert!(status == 400 && closed, "{path}: want 400 and a closed connection, got {status} (closed {closed})");
        if path.starts_with("/first/") {
            // Refused before anything went upstream, the head included.
            assert!(up.conn(path).is_none(), "{path}: the upstream received {:?}", up.conn(path));
        } else {
            let got = up.closed_conn(path).await;
            let (data, done) = dechunk(&got);
            assert!(!done && data.len() <= 5, "{path}: the upstream received {:?}", String::from_utf8_lossy(&got));
        }
    }

    // Over the limit: 30 chunks of 100 bytes, sent slowly enough that the upstream
    // could receive each one as it comes.
    let chunk = format!("64\r\n{}\r\n", "b".repeat(100));
    let body = chunk.repeat(30) + "0\r\n\r\n";
    let (status, closed) = send(gw.http, &head("/too-large"), body.as_bytes(), chunk.len()).await;
    assert!(status == 413 && closed, "too large: got {status} (closed {closed})");
    let got = up.closed_conn("/too-large").await;
    let (data, done) = dechunk(&got);
    assert!(!done && data.len() <= 1000, "the upstream received {} bytes of an over-limit body", data.len());

    // The control: a well-framed body with a valid extension is forwarded whole.
    let ok = b"5;name=\"v\"\r\nhello\r\n0\r\n\r\n";
    let conns = up.connections();
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    s.write_all(head("/good").as_bytes()).await.unwrap();
    s.write_all(ok).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = up.received(conns);
        if dechunk(&got) == (b"hello".to_vec(), true) {
            break;
        }
        assert!(Instant::now() < deadline, "the good body did not arrive: {:?}", String::from_utf8_lossy(&got));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(s);

    gw.stop().await;
    let records = audit_records(&gw.audit_dir());
    let find = |kind: &str, path: &str| {
        records
            .iter()
            .find(|r| crate::harness::kind(&r.event) == kind && r.event.path.as_deref() == Some(&*path))
            .map(|r| r.event.clone())
            .unwrap_or_else(|| panic!("no {kind} record for {path}"))
    };
    for (path, reason) in bad.iter().map(|(p, _)| (p.as_str(), "bad_framing")).chain([("/too-large", "body_too_large")])
    {
        assert_eq!(decision(&find("access.decision", path)).as_deref(), Some("allow"), "{path}");
        let done = find("access.completed", path);
        assert_eq!(crate::harness::reason(&done).as_deref(), Some(reason), "{path}: {done:?}");
    }
}

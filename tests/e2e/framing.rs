//! Request smuggling: ambiguous framing is refused with 400 and never forwarded. Each
//! payload carries a second, smuggled request after the first; the upstream must see
//! neither.

use crate::harness::*;

const SMUGGLED: &str = "GET /debug/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn ambiguous_framing_is_refused_and_nothing_is_forwarded() {
    let demo = demo().await;
    let gw = Gateway::builder().route(route_all(demo.addr)).start().await;
    let cases: Vec<(&str, String)> = vec![
        ("CL and TE", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE and CL", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("duplicate CL", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab{SMUGGLED}")),
        ("conflicting CL", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 44\r\n\r\nab{SMUGGLED}")),
        ("CL list", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\nab{SMUGGLED}")),
        ("TE gzip, chunked", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE identity", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nab{SMUGGLED}")),
        ("TE xchunked", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE twice", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("space before colon (TE)", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("space before colon (CL)", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length : 2\r\n\r\nab{SMUGGLED}")),
        ("bare LF", format!("POST /debug/a HTTP/1.1\nHost: t\nContent-Length: 2\n\nab{SMUGGLED}")),
        ("bare LF in one header", format!("GET /debug/a HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n{SMUGGLED}")),
        ("obs-fold", format!("POST /debug/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n x\r\n\r\n0\r\n\r\n{SMUGGLED}")),
    ];
    for (name, payload) in &cases {
        let (status, text) = raw_status(gw.http, payload.as_bytes()).await.unwrap();
        assert!(status == 400, "{name}: want 400, got {status}: {text:?}");
        assert_eq!(responses(&text), 1, "{name}: more than one response: {text:?}");
    }
    // Give anything that slipped through time to arrive.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(demo.seen().is_empty(), "the upstream saw: {:?}", demo.seen());

    // The control: well-framed requests on the same path are forwarded, so the check
    // above can fail.
    let ok = "POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab";
    let (status, text) = raw_status(gw.http, ok.as_bytes()).await.unwrap();
    assert_eq!(status, 200, "{text}");
    let chunked = "POST /debug/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    assert_eq!(raw_status(gw.http, chunked.as_bytes()).await.unwrap().0, 200);
    let seen = demo.seen();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/debug/a", "/debug/c"]);
    assert_eq!(seen[0].body, b"ab");
    assert_eq!(seen[1].body, b"ab");
}

/// RFC 9112 §3.2: an HTTP/1.1 request has one `Host`, and it is an authority. Without
/// one, with two, or with one that parsers read differently (a path, userinfo, a space,
/// bytes beyond ASCII), the gateway cannot know which host's routes apply: 400, and
/// nothing forwarded. A `Content-Length` with a leading zero is refused the same way.
#[tokio::test]
async fn host_and_content_length_have_one_reading() {
    let demo = demo().await;
    let gw = Gateway::builder().route(route_all(demo.addr)).start().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no Host", b"GET /debug/a HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec()),
        ("two Hosts", b"GET /debug/a HTTP/1.1\r\nHost: t\r\nHost: admin.example\r\n\r\n".to_vec()),
        ("two Hosts, HTTP/1.0", b"GET /debug/a HTTP/1.0\r\nHost: t\r\nhost: t\r\n\r\n".to_vec()),
        ("a path in Host", b"GET /debug/a HTTP/1.1\r\nHost: admin.example/x\r\n\r\n".to_vec()),
        ("userinfo in Host", b"GET /debug/a HTTP/1.1\r\nHost: a@admin.example\r\n\r\n".to_vec()),
        ("a space in Host", b"GET /debug/a HTTP/1.1\r\nHost: admin.example t\r\n\r\n".to_vec()),
        ("a bad port", b"GET /debug/a HTTP/1.1\r\nHost: t:80x\r\n\r\n".to_vec()),
        ("non-UTF-8 Host", b"GET /debug/a HTTP/1.1\r\nHost: t\xff\xfe\r\n\r\n".to_vec()),
        ("Content-Length 05", b"POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length: 05\r\n\r\nhello".to_vec()),
        ("Content-Length 00", b"POST /debug/a HTTP/1.1\r\nHost: t\r\nContent-Length: 00\r\n\r\n".to_vec()),
    ];
    for (name, payload) in &cases {
        let (status, text) = raw_status(gw.http, payload).await.unwrap();
        assert_eq!(status, 400, "{name}: {text:?}");
        assert_eq!(responses(&text), 1, "{name}: more than one response: {text:?}");
    }
    assert!(demo.seen().is_empty(), "the upstream saw: {:?}", demo.seen());

    // The controls: HTTP/1.0 without Host, a Host with a port, an IPv6 literal.
    for ok in [
        "GET /debug/h10 HTTP/1.0\r\n\r\n",
        "GET /debug/port HTTP/1.1\r\nHost: t:8080\r\nConnection: close\r\n\r\n",
        "GET /debug/v6 HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n",
        "POST /debug/cl HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ] {
        let (status, text) = raw_status(gw.http, ok.as_bytes()).await.unwrap();
        assert_eq!(status, 200, "{ok:?}: {text}");
    }
    let targets: Vec<String> = demo.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, ["/debug/h10", "/debug/port", "/debug/v6", "/debug/cl"]);
}

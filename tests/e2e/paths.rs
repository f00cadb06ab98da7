//! Path normalisation as the upstream sees it: the normalised path (less the route's
//! strip prefix) plus the untouched query, or a 400 and nothing forwarded. Sent over raw
//! TCP because HTTP clients normalise paths themselves.

use crate::harness::*;

#[tokio::test]
async fn the_upstream_receives_exactly_the_normalised_path() {
    let demo = demo().await;
    let gw = Gateway::builder().config(format!(
        "[[routes]]\npublic = true\nname = \"api\"\npath = \"/api\"\nstrip_prefix = \"/api\"\nupstream = \"http://{0}\"\n\
         [[routes]]\npublic = true\nname = \"debug\"\npath = \"/debug\"\nupstream = \"http://{0}\"\n",
        demo.addr
    )).start()
    .await;

    let forwarded = [
        ("/debug/a/../b", "/debug/b"),
        ("/debug/./a/./b/", "/debug/a/b/"),
        ("//debug///x//y", "/debug/x/y"),
        ("/debug/%61%62%63", "/debug/abc"),
        ("/debug/%7euser%2Dx", "/debug/~user-x"),
        ("/debug/a%3fb", "/debug/a%3Fb"),
        ("/debug/caf%c3%a9", "/debug/caf%C3%A9"),
        ("/debug/x?a=%2e%2e/../&b=%2F", "/debug/x?a=%2e%2e/../&b=%2F"),
        ("/%64ebug/x", "/debug/x"),
        // Segment boundaries and the strip prefix.
        ("/api", "/"),
        ("/api/debug/q", "/debug/q"),
        // The route is chosen on the normalised path: this is the api route.
        ("/debug/../api/debug/z", "/debug/z"),
        ("/debug/%2e%2e/api/w", "/w"),
    ];
    for (sent, want) in forwarded {
        let before = demo.seen().len();
        let req = format!("GET {sent} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_status(gw.http, req.as_bytes()).await.unwrap();
        assert!(status == 200 || status == 404, "{sent}: {text}");
        let seen = demo.seen();
        assert_eq!(seen.len(), before + 1, "{sent} was not forwarded once");
        assert_eq!(seen[before].target, want, "{sent}");
    }

    let refused = [
        ("/debug/a%2fb", 400),
        ("/debug/a%2Fb", 400),
        ("/debug/a%5cb", 400),
        ("/debug/a\\b", 400),
        ("/debug/a%00b", 400),
        // Every encoded control character, like NUL (the query is not the path: it is
        // forwarded untouched).
        ("/debug/a%09b", 400),
        ("/debug/a%0Ab", 400),
        ("/debug/a%0db", 400),
        ("/debug/a%0D%0AX-Injected:%201", 400),
        ("/debug/a%01", 400),
        ("/debug/a%1F", 400),
        ("/debug/a%7f", 400),
        ("/debug/%ff", 400),
        ("/debug/%c3", 400),
        ("/debug/%zz", 400),
        ("/../debug/x", 400),
        ("/debug/../../x", 400),
        ("/apix", 404),
        ("/debugger", 404),
    ];
    for (sent, want) in refused {
        let req = format!("GET {sent} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_status(gw.http, req.as_bytes()).await.unwrap();
        assert_eq!(status, want, "{sent}: {text}");
    }
    let total = forwarded.len();
    assert_eq!(demo.seen().len(), total, "a refused path reached the upstream: {:?}", demo.seen().last());
}

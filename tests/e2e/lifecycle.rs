//! SIGTERM drains: an in-flight slow request finishes, new connections are refused, and
//! the process exits once idle, before the grace period ends.

use crate::harness::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    let demo = demo().await;
    let mut gw = Gateway::builder().route(route_all(demo.addr)).grace(60).start().await;
    let url = gw.url("/slow?ms=6000");
    let slow =
        tokio::spawn(
            async move { client().get(url).timeout(Duration::from_secs(60)).send().await.map(|r| r.status()) },
        );
    wait_until_upstream_has_it(&demo).await;
    assert_eq!(demo.seen().len(), 1, "the slow request never reached the upstream");
    let sent = Instant::now();
    let kill =
        std::process::Command::new(tool("kill", "procps")).args(["-TERM", &gw.pid().to_string()]).status().unwrap();
    assert!(kill.success());

    // Draining, while the slow request is still in flight: new connections are no longer
    // served (once the gateway has taken the signal in).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Refused or cut off; a timeout would be a slow machine, not a refusal.
        let r = client().get(gw.url("/patients")).timeout(Duration::from_secs(10)).send().await;
        if r.is_err_and(|e| !e.is_timeout()) {
            break;
        }
        assert!(Instant::now() < deadline, "still serving new requests 30 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!slow.is_finished(), "the slow request ended before draining could be seen");

    let status = slow.await.unwrap().expect("the in-flight request failed");
    assert_eq!(status, 200);

    // And the process exits once idle, well before the 60 s grace period.
    let exit = wait_exit(&mut gw, sent, Duration::from_secs(40)).await;
    assert!(exit.success(), "exit {exit:?}: {}", gw.log());
}

/// Waits (at most 30 s) until the demo upstream has received a request.
async fn wait_until_upstream_has_it(demo: &demo_ephi::Demo) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo.seen().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the process to exit, failing once `within` has passed since `start`.
async fn wait_exit(gw: &mut Gateway, start: Instant, within: Duration) -> std::process::ExitStatus {
    loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "custos still running after {within:?}; log tail: {}", tail(&gw.log()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tail(log: &str) -> String {
    log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn sigterm_ends_requests_that_outlast_the_grace_period() {
    let demo = demo().await;
    let mut gw = Gateway::builder().route(route_all(demo.addr)).grace(1).start().await;
    let url = gw.url("/slow?ms=60000");
    let slow =
        tokio::spawn(
            async move { client().get(url).timeout(Duration::from_secs(90)).send().await.map(|r| r.status()) },
        );
    wait_until_upstream_has_it(&demo).await;
    std::process::Command::new(tool("kill", "procps")).args(["-TERM", &gw.pid().to_string()]).status().unwrap();
    // Long before the request's 60 s.
    let exit = wait_exit(&mut gw, Instant::now(), Duration::from_secs(20)).await;
    assert!(exit.success(), "{exit:?}");
    assert!(slow.await.unwrap().is_err(), "a request past the grace period was not cut off");
    // The log stays small: no error loop while stopping (the admin listener once spun).
    assert!(gw.log().len() < 64 * 1024, "log grew to {} bytes", gw.log().len());
}

#[tokio::test]
async fn sigint_exits_at_once() {
    let demo = demo().await;
    let mut gw = Gateway::builder().route(route_all(demo.addr)).grace(60).start().await;
    std::process::Command::new(tool("kill", "procps")).args(["-INT", &gw.pid().to_string()]).status().unwrap();
    let exit = wait_exit(&mut gw, Instant::now(), Duration::from_secs(20)).await;
    assert_eq!(exit.code(), Some(130));
    assert!(gw.log().len() < 64 * 1024, "log grew to {} bytes", gw.log().len());
}

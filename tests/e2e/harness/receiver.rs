//! HTTP receivers the gateway delivers to: the audit webhook and break-glass alerts (signed
//! requests checked as a receiver must), and an OTLP/HTTP collector stand-in.

/// A SIEM's webhook endpoint, or a break-glass alert receiver: verifies each request's
/// signature the way a receiver must (constant-time, timestamp within 5 min): on
/// `/ingest` (the audit webhook) HMAC-SHA256 over `v2:{timestamp}:{records}:{body}` with
/// `{records}` from `x-custos-records`, elsewhere (alerts) over `v1:{timestamp}:{body}`.
/// It answers 500 to the first `fail_first` requests, 400 to a body holding the text in
/// `refuse` (while set), and keeps what it took.
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    pub taken: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub bad_signatures: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub refuse: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

pub async fn receiver(secret: &'static [u8], fail_first: usize) -> Receiver {
    receiver_on(0, secret, fail_first).await
}

/// [`receiver`] on a given port (0: any), e.g. one a gateway has been failing to reach.
pub async fn receiver_on(port: u16, secret: &'static [u8], fail_first: usize) -> Receiver {
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(Mutex::new(Vec::new()));
    let bad = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let refuse: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (t, b, r) = (taken.clone(), bad.clone(), refuse.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (t, b, seen, r) = (t.clone(), b.clone(), seen.clone(), r.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (t, b, seen, r) = (t.clone(), b.clone(), seen.clone(), r.clone());
                    async move {
                        let header = |name: &str| {
                            req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
                        };
                        let (ts, sig, records) =
                            (header("x-custos-timestamp"), header("x-custos-signature"), header("x-custos-records"));
                        let webhook = req.uri().path().starts_with("/ingest");
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                        let fresh = ts.parse::<u64>().is_ok_and(|t| t.abs_diff(now) <= 300);
                        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                        let (scheme, mut msg) = if webhook {
                            ("v2=", format!("v2:{ts}:{records}:").into_bytes())
                        } else {
                            ("v1=", format!("v1:{ts}:").into_bytes())
                        };
                        msg.extend_from_slice(&body);
                        let tag = sig.strip_prefix(scheme).and_then(|h| hex::decode(h).ok()).unwrap_or_default();
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let refused = r.lock().unwrap().as_ref().is_some_and(|m| text.contains(m.as_str()));
                        let status = if !fresh || ring::hmac::verify(&key, &msg, &tag).is_err() {
                            b.fetch_add(1, Ordering::SeqCst);
                            401
                        } else if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                            500
                        } else if refused {
                            400
                        } else {
                            let mut t = t.lock().unwrap();
                            t.extend(text.lines().map(String::from));
                            200
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder().status(status).body(Full::new(bytes::Bytes::new())).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Receiver { addr, taken, bad_signatures: bad, refuse, _task: task }
}

/// Delivery retries back off to at most this (instead of 5 s), so a test sees many tries
/// in little time.
pub const FAST_RETRY: &str = "retry_max_ms = 200\n";

/// An OTLP/HTTP collector stand-in: decodes the real protobuf requests; answers 503 to
/// the first `fail_traces` trace exports.
pub struct Collector {
    pub addr: std::net::SocketAddr,
    pub fail_traces: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>>>,
    pub spans: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
    _task: tokio::task::JoinHandle<()>,
}

pub async fn collector() -> Collector {
    use http_body_util::{BodyExt, Full};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let fail_traces = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (l, s, f) = (logs.clone(), spans.clone(), fail_traces.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (l, s, f) = (l.clone(), s.clone(), f.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (l, s, f) = (l.clone(), s.clone(), f.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let unavailable = path == "/v1/traces"
                            && f.fetch_update(
                                std::sync::atomic::Ordering::SeqCst,
                                std::sync::atomic::Ordering::SeqCst,
                                |n| n.checked_sub(1),
                            )
                            .is_ok();
                        if unavailable {
                            return Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder().status(503).body(Full::new(bytes::Bytes::new())).unwrap(),
                            );
                        }
                        let ctype =
                            req.headers().get("content-type").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let ok = ctype == b"application/x-protobuf"
                            && match path.as_str() {
                                "/v1/logs" => ExportLogsServiceRequest::decode(body).map(|r| {
                                    for rl in r.resource_logs {
                                        for sl in rl.scope_logs {
                                            l.lock().unwrap().extend(sl.log_records);
                                        }
                                    }
                                }),
                                "/v1/traces" => ExportTraceServiceRequest::decode(body).map(|r| {
                                    for rs in r.resource_spans {
                                        for ss in rs.scope_spans {
                                            s.lock().unwrap().extend(ss.spans);
                                        }
                                    }
                                }),
                                _ => Ok(()),
                            }
                            .is_ok();
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(if ok { 200 } else { 400 })
                                .body(Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Collector { addr, fail_traces, logs, spans, _task: task }
}

//! The admin listener: Prometheus metrics at `/metrics`, nothing else. It is a separate
//! listener so that it can be bound to a private address.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, TextEncoder};

pub struct Admin;

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, ctype, body) = if session.req_header().uri.path() == "/metrics" {
            let mut buf = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&prometheus::gather(), &mut buf) {
                Ok(()) => (200, encoder.format_type().to_string(), buf),
                Err(_) => (500, "text/plain".to_string(), b"metrics encoding failed\n".to_vec()),
            }
        } else {
            (404, "text/plain".to_string(), b"not found\n".to_vec())
        };
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .body(body)
            .unwrap_or_default()
    }
}

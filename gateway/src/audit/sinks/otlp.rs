//! The OpenTelemetry sink: OTLP over HTTP with protobuf (`/v1/logs`, `/v1/traces`),
//! messages from the `opentelemetry-proto` crate. Every record becomes a log record
//! (body: the chain line; attributes: event id, kind, sequence number, and the request's
//! metadata; trace and span ids when known), and every `access.completed` record also
//! becomes the request's server span (start = end − duration) with a child span per
//! timed phase (`audit`: the durable decision record; `upstream`: until the upstream's
//! response header), so traces reach the
//! collector through the same durable, at-least-once path as the audit trail. A request
//! refused by the gateway (an `access.decision` deny: unauthenticated, denied by the
//! policy, a bad path…) has no completion record; its decision record becomes its span.
//!
//! No duplicates on retry: a batch counts as delivered when the collector has taken
//! both its logs and its spans, and a retry sends only the part it has not taken yet (a
//! batch whose logs were taken and whose spans failed retries only its spans). A
//! partial success (the collector took the request but rejected some items) is not
//! retried, as OTLP requires; it is logged. What a restart between delivery and the
//! cursor's save sends again carries the same ids (`custos.event.id` on every log
//! record, stable span ids), for a collector to de-duplicate.

use super::{http_failure, Failure, Line, Sink};
use crate::audit::{Event, Kind};
use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

pub struct OtlpSink {
    client: reqwest::Client,
    logs_url: String,
    traces_url: String,
    /// (first, last) seq of the batch whose logs the collector has taken, while its
    /// spans are still being retried.
    logs_taken: Option<(u64, u64)>,
}

impl OtlpSink {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<OtlpSink, super::SinkError> {
        let base = endpoint.trim_end_matches('/');
        let client =
            reqwest::Client::builder().timeout(timeout).no_proxy().build().map_err(super::SinkError::OtlpClient)?;
        Ok(OtlpSink {
            client,
            logs_url: format!("{base}/v1/logs"),
            traces_url: format!("{base}/v1/traces"),
            logs_taken: None,
        })
    }

    /// POSTs one export; the answer's body (an `Export…ServiceResponse`) on 2xx.
    async fn post(&self, url: &str, body: Vec<u8>) -> Result<bytes::Bytes, Failure> {
        let r = self
            .client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("{url}: {}", e.without_url())))?;
        let status = r.status();
        if !status.is_success() {
            return Err(http_failure(status.as_u16(), format!("{url}: the collector answered {status}")));
        }
        Ok(r.bytes().await.unwrap_or_default())
    }
}

/// Logs a partial success: the collector took the request but rejected `rejected` items
/// (OTLP: such a request must not be sent again).
fn partial(what: &str, rejected: i64, message: &str) {
    if rejected > 0 || !message.is_empty() {
        tracing::warn!(rejected, message, "the OTLP collector rejected some {what} of a batch it took; not sent again");
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

fn unix_nanos(rfc3339: &str) -> u64 {
    time::OffsetDateTime::parse(rfc3339, &Rfc3339).map_or(0, |t| t.unix_timestamp_nanos().max(0) as u64)
}

fn kind_name(k: Kind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// Request metadata shared by log records and spans, in OpenTelemetry's names.
fn request_attributes(ev: &Event) -> Vec<KeyValue> {
    let mut a = Vec::new();
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            a.push(s(k, v));
        }
    };
    opt("http.request.method", &ev.method);
    opt("url.path", &ev.path);
    opt("http.route", &ev.route);
    opt("client.address", &ev.client);
    opt("custos.request_id", &ev.request_id);
    opt("custos.reason", &ev.reason.as_ref().map(|r| r.as_str().to_string()));
    opt("custos.rule", &ev.rule);
    opt("db.namespace", &ev.database);
    opt("db.operation.name", &ev.verb);
    opt("db.response.status_code", &ev.sqlstate);
    opt("custos.connection", &ev.connection);
    if ev.database.is_some() {
        a.push(s("db.system.name", "postgresql"));
    }
    if let Some(d) = ev.decision {
        a.push(s("custos.decision", if d == crate::audit::Decision::Allow { "allow" } else { "deny" }));
    }
    if let Some(st) = ev.status {
        a.push(kv("http.response.status_code", any_value::Value::IntValue(st.into())));
    }
    a
}

fn hex_bytes(v: &Option<String>) -> Vec<u8> {
    v.as_deref().and_then(|h| hex::decode(h).ok()).unwrap_or_default()
}

fn resource(instance: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![s("service.name", "custos"), s("service.instance.id", instance)],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "custos.audit".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

#[async_trait]
impl Sink for OtlpSink {
    fn name(&self) -> &str {
        "otlp"
    }

    async fn deliver(&mut self, batch: &[Line]) -> Result<(), Failure> {
        let Some(instance) = batch.first().map(|l| l.record.event.instance.clone()) else { return Ok(()) };
        let range = (batch.first().map_or(0, |l| l.record.seq), batch.last().map_or(0, |l| l.record.seq));
        let mut logs = Vec::with_capacity(batch.len());
        let mut spans = Vec::new();
        for l in batch {
            let ev = &l.record.event;
            let t = unix_nanos(&ev.time);
            let mut attributes = vec![
                s("custos.event.id", &ev.id),
                s("custos.event.kind", &kind_name(ev.kind)),
                kv("custos.seq", any_value::Value::IntValue(l.record.seq as i64)),
            ];
            attributes.extend(request_attributes(ev));
            logs.push(LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t,
                severity_number: 9, // INFO
                severity_text: "INFO".into(),
                event_name: kind_name(ev.kind),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(String::from_utf8_lossy(&l.bytes).into_owned())),
                }),
                attributes,
                trace_id: hex_bytes(&ev.trace_id),
                span_id: hex_bytes(&ev.span_id),
                ..Default::default()
            });
            let refused = ev.kind == Kind::AccessDecision && ev.decision == Some(crate::audit::Decision::Deny);
            if (ev.kind == Kind::AccessCompleted || refused) && ev.trace_id.is_some() && ev.span_id.is_some() {
                let duration = ev.duration_ms.map_or(0, |d| (d * 1e6) as u64);
                let failed = match &ev.verb {
                    // A database record: its SQLSTATE says (none: the connection's own end).
                    Some(_) => refused || ev.sqlstate.as_deref().is_some_and(|s| s != "00000" && s != "57P01"),
                    None => ev.status.is_none_or(|s| s >= 500 || s == 0),
                };
                // A refused request: the span is its decision (no upstream phases).
                let start = t.saturating_sub(duration);
                for phase in &ev.phases {
                    // Stable ids across retries: derived from the event id and the phase.
                    let id =
                        ring::digest::digest(&ring::digest::SHA256, format!("{}:{}", ev.id, phase.name).as_bytes());
                    let p_start = start + (phase.start_ms * 1e6) as u64;
                    spans.push(Span {
                        trace_id: hex_bytes(&ev.trace_id),
                        span_id: id.as_ref()[..8].to_vec(),
                        parent_span_id: hex_bytes(&ev.span_id),
                        name: phase.name.clone(),
                        kind: span::SpanKind::Internal as i32,
                        start_time_unix_nano: p_start,
                        end_time_unix_nano: p_start + (phase.duration_ms * 1e6) as u64,
                        ..Default::default()
                    });
                }
                spans.push(Span {
                    trace_id: hex_bytes(&ev.trace_id),
                    span_id: hex_bytes(&ev.span_id),
                    parent_span_id: hex_bytes(&ev.parent_span_id),
                    name: match (&ev.verb, &ev.database) {
                        (Some(verb), Some(db)) => format!("{verb} {db}"),
                        _ => format!("{} {}", ev.method.as_deref().unwrap_or("HTTP"), ev.route.as_deref().unwrap_or("-")),
                    },
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: t,
                    attributes: request_attributes(ev),
                    status: Some(Status {
                        code: if failed { status::StatusCode::Error } else { status::StatusCode::Unset } as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        if self.logs_taken != Some(range) {
            let logs = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: resource(&instance),
                    scope_logs: vec![ScopeLogs { scope: scope(), log_records: logs, ..Default::default() }],
                    ..Default::default()
                }],
            };
            let answer = self.post(&self.logs_url, logs.encode_to_vec()).await?;
            if let Some(p) = ExportLogsServiceResponse::decode(answer).ok().and_then(|r| r.partial_success) {
                partial("log records", p.rejected_log_records, &p.error_message);
            }
            self.logs_taken = Some(range);
        }
        if !spans.is_empty() {
            let traces = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: resource(&instance),
                    scope_spans: vec![ScopeSpans { scope: scope(), spans, ..Default::default() }],
                    ..Default::default()
                }],
            };
            let answer = self.post(&self.traces_url, traces.encode_to_vec()).await?;
            if let Some(p) = ExportTraceServiceResponse::decode(answer).ok().and_then(|r| r.partial_success) {
                partial("spans", p.rejected_spans, &p.error_message);
            }
        }
        self.logs_taken = None;
        Ok(())
    }
}

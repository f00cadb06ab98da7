//! Prometheus metrics, served by the admin listener: requests by route and status,
//! latency by route, upstream errors by route, the audit spool's and sinks' state, and
//! the session cache's hits and misses.
//! A leaf: every layer counts here, and it imports nothing of Custos.

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use std::sync::LazyLock;

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("custos_requests_total", "Requests answered, by route and status.", &["route", "status"])
        .expect("metric registers once")
});

pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "custos_request_duration_seconds",
        "Time from request header to the end of the response, by route.",
        &["route"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

pub static UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "custos_upstream_errors_total",
        "Failed upstream connections or exchanges, by route.",
        &["route"]
    )
    .expect("metric registers once")
});

pub static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("custos_decisions_total", "Access decisions, by result.", &["decision"])
        .expect("metric registers once")
});

/// `custos_decisions_total{decision="allow"}` and `{decision="deny"}`, resolved once (not
/// looked up by label on every request).
pub static ALLOWED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| DECISIONS.with_label_values(&["allow"]));
pub static DENIED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| DECISIONS.with_label_values(&["deny"]));

pub static AUDIT_RECORDS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!("custos_audit_records_total", "Records made durable in the audit spool.")
        .expect("metric registers once")
});

pub static AUDIT_FAILURES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!("custos_audit_failures_total", "Records the audit spool could not write.")
        .expect("metric registers once")
});

pub static AUDIT_FSYNC: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "custos_audit_commit_seconds",
        "Time to write and fdatasync one group of audit records.",
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5]
    )
    .expect("metric registers once")
});

pub static AUDIT_SINK_LAG: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "custos_audit_sink_lag_records",
        "Durable records a sink has not taken yet.",
        &["sink"]
    )
    .expect("metric registers once")
});

pub static AUDIT_SINK_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "custos_audit_sink_failures_total",
        "Failed deliveries to a sink (each retried).",
        &["sink"]
    )
    .expect("metric registers once")
});

pub static AUDIT_SINK_DELIVERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("custos_audit_sink_delivered_total", "Records a sink has taken.", &["sink"])
        .expect("metric registers once")
});

pub static AUDIT_DEAD_LETTER: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "custos_audit_dead_letter_total",
        "Records a sink's receiver refused for good (400, 413, 422), kept in dead-letters/<sink>/."
    )
    .expect("metric registers once")
});

pub static AUDIT_SPOOL_DEPTH: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "custos_audit_spool_depth_records",
        "Durable records the slowest sink has not taken yet (0 without sinks)."
    )
    .expect("metric registers once")
});

pub static AUDIT_DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "custos_audit_dropped_total",
        "Records of refused requests not written because the audit writer was over its queue limit."
    )
    .expect("metric registers once")
});

pub static AUDIT_SPOOL_BYTES: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "custos_audit_spool_bytes",
        "Bytes of the spool's segment files (at audit.spool_max_bytes, audit.on_failure applies)."
    )
    .expect("metric registers once")
});

pub static AUDIT_SINK_OLDEST: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "custos_audit_sink_oldest_seconds",
        "Age of the oldest record a failing sink is still trying to deliver (0 when it is taking them).",
        &["sink"]
    )
    .expect("metric registers once")
});

/// Registers every metric so the first scrape lists them all.
pub fn init() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&LATENCY);
    LazyLock::force(&UPSTREAM_ERRORS);
    LazyLock::force(&DECISIONS);
    LazyLock::force(&AUDIT_RECORDS);
    LazyLock::force(&AUDIT_FAILURES);
    LazyLock::force(&AUDIT_FSYNC);
    LazyLock::force(&AUDIT_SINK_LAG);
    LazyLock::force(&AUDIT_SINK_FAILURES);
    LazyLock::force(&AUDIT_SINK_DELIVERED);
    LazyLock::force(&AUDIT_DEAD_LETTER);
    LazyLock::force(&AUDIT_SPOOL_DEPTH);
    LazyLock::force(&AUDIT_DROPPED);
    LazyLock::force(&AUDIT_SPOOL_BYTES);
    LazyLock::force(&AUDIT_SINK_OLDEST);
    LazyLock::force(&SESSION_CACHE_HITS);
    LazyLock::force(&SESSION_CACHE_MISSES);
    LazyLock::force(&DB_CONNECTIONS);
    LazyLock::force(&DB_CONNECTS);
    LazyLock::force(&DB_STATEMENTS);
    LazyLock::force(&DB_PARSE_CACHE);
    LazyLock::force(&DB_UPSTREAM_ERRORS);
}

/// Statuses whose per-route counters are resolved once (see `routes::RouteEntry`).
pub const STATUSES: [&str; 15] =
    ["200", "204", "301", "302", "304", "400", "401", "403", "404", "413", "431", "500", "502", "503", "504"];

/// Status codes as static label values (no formatting per request).
pub fn status_label(status: u16) -> &'static str {
    const LABELS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    match status {
        200 => "200",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "none",
        s => LABELS.get((s / 100).saturating_sub(1) as usize).copied().unwrap_or("other"),
    }
}

pub static SESSION_CACHE_HITS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "custos_session_cache_hits_total",
        "Session loads answered from the gateway's session cache (no Redis call)."
    )
    .expect("metric registers once")
});

pub static SESSION_CACHE_MISSES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "custos_session_cache_misses_total",
        "Session loads read from Redis with the session cache on (not held, or the cache not live)."
    )
    .expect("metric registers once")
});

pub static DB_CONNECTIONS: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "custos_db_connections",
        "Signed-in database connections open now, by database.",
        &["database"]
    )
    .expect("metric registers once")
});

pub static DB_CONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "custos_db_connects_total",
        "Database connection attempts, by database and outcome (`allowed`, or the refusal's reason).",
        &["database", "outcome"]
    )
    .expect("metric registers once")
});

pub static DB_STATEMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "custos_db_statements_total",
        "Statements answered, by database, verb and outcome (`ok`, `error`, `refused`, `not_run`).",
        &["database", "verb", "outcome"]
    )
    .expect("metric registers once")
});

pub static DB_PARSE_CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "custos_db_parse_cache_total",
        "Statement texts looked up in the parse cache, by result (`hit`, `miss`).",
        &["result"]
    )
    .expect("metric registers once")
});

pub static DB_UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "custos_db_upstream_errors_total",
        "Upstream database connections that failed (`refused`: authentication or startup; `unavailable`).",
        &["database", "kind"]
    )
    .expect("metric registers once")
});

//! Request logging and Prometheus metrics: one log line and one observation per
//! request, labelled with the route template (never the concrete path, which can
//! hold user ids).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::service::notifier::Notifier;
use crate::storage::Storage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    pool_size: Gauge,
    pool_idle: Gauge,
    long_polls: Gauge,
    storage: Arc<dyn Storage>,
    notifier: Arc<Notifier>,
}

impl Metrics {
    pub fn new(storage: Arc<dyn Storage>, notifier: Arc<Notifier>) -> Self {
        let mut registry = Registry::with_prefix("kith");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: HistogramFamily = Family::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0])
        });
        let pool_size = Gauge::default();
        let pool_idle = Gauge::default();
        registry.register("http_requests", "HTTP requests by method, endpoint and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by endpoint", durations.clone());
        registry.register("db_pool_connections", "Open database connections", pool_size.clone());
        registry.register("db_pool_idle_connections", "Idle database connections", pool_idle.clone());
        let long_polls = Gauge::default();
        registry.register("sync_long_polls", "/sync requests waiting for something to arrive", long_polls.clone());
        Self { registry, requests, durations, pool_size, pool_idle, long_polls, storage, notifier }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let stats = self.storage.pool_stats();
        self.pool_size.set(i64::from(stats.size));
        self.pool_idle.set(i64::from(stats.idle));
        self.long_polls.set(self.notifier.waiting_count());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        out
    }
}

/// Middleware: logs one line per request (method, path without query, status,
/// duration) and records the request in the metrics.
pub async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    // The query string is never logged: it can carry an access token.
    let path = request.uri().path().to_owned();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    tracing::info!(target: "kith::http", %method, %path, status, ms = %format_args!("{:.2}", elapsed.as_secs_f64() * 1000.0), "request");
    metrics
        .requests
        .get_or_create(&RequestLabels { method: method.to_string(), endpoint: endpoint.clone(), status })
        .inc();
    metrics.durations.get_or_create(&EndpointLabels { endpoint }).observe(elapsed.as_secs_f64());
    response
}

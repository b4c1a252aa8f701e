//! Request logging and Prometheus metrics: one log line and one observation per
//! request, labelled with the route template (never the concrete path, which can
//! hold user ids).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
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
    method: &'static str,
    endpoint: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Arc<str>,
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
///
/// A plain service rather than `axum::middleware::from_fn`: that boxes its
/// future and the next service per request, and every waiting long-poll holds
/// them (with the path and route copied into Strings) for as long as it waits.
/// Here the waiting request holds an `Instant`, the route template (shared) and,
/// only when the log line is wanted, the path.
#[derive(Clone)]
pub struct ObserveLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, metrics: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
{
    type Response = axum::http::Response<B>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The query string is never logged: it can carry an access token.
        let path = tracing::enabled!(target: "kith::http", tracing::Level::INFO)
            .then(|| Box::<str>::from(request.uri().path()));
        ObserveFuture {
            start: Instant::now(),
            method: method_label(request.method()),
            endpoint: request.extensions().get::<MatchedPath>().cloned(),
            path,
            metrics: self.metrics.clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        method: &'static str,
        endpoint: Option<MatchedPath>,
        path: Option<Box<str>>,
        metrics: Arc<Metrics>,
    }
}

impl<F, B, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, E>>,
{
    type Output = Result<axum::http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let elapsed = this.start.elapsed();
            let status = response.status().as_u16();
            if let Some(path) = this.path {
                let method = *this.method;
                tracing::info!(target: "kith::http", %method, %path, status, ms = %format_args!("{:.2}", elapsed.as_secs_f64() * 1000.0), "request");
            }
            let endpoint: Arc<str> = Arc::from(this.endpoint.as_ref().map_or("unmatched", MatchedPath::as_str));
            this.metrics
                .requests
                .get_or_create(&RequestLabels { method: this.method, endpoint: endpoint.clone(), status })
                .inc();
            this.metrics.durations.get_or_create(&EndpointLabels { endpoint }).observe(elapsed.as_secs_f64());
        }
        Poll::Ready(result)
    }
}

/// The method as a label: the standard ones by name, any other as "other" (a
/// label per made-up method would let clients grow the metrics without end).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_method_route_template_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let storage = crate::storage::open(&url, 2).await.unwrap();
        let metrics = Arc::new(Metrics::new(storage.clone(), Arc::new(Notifier::new(storage))));
        let app = Router::new().route("/rooms/{id}", get(|| async { "ok" })).layer(ObserveLayer(metrics.clone()));
        for (method, uri) in [("GET", "/rooms/a"), ("GET", "/rooms/b"), ("BREW", "/rooms/c"), ("GET", "/nope")] {
            let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let text = metrics.render();
        // Two GETs of one route template, counted together; never the concrete path.
        assert!(
            text.contains(r#"kith_http_requests_total{method="GET",endpoint="/rooms/{id}",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"method="other",endpoint="/rooms/{id}",status="405"} 1"#), "{text}");
        assert!(text.contains(r#"method="GET",endpoint="unmatched",status="404"} 1"#), "{text}");
        assert!(!text.contains("/rooms/a"), "{text}");
        assert!(text.contains(r#"kith_http_request_duration_seconds_count{endpoint="/rooms/{id}"} 3"#), "{text}");
    }
}

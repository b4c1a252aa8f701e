//! The HTTP layer: routes, extractors and the tower stack. Handlers extract and
//! authenticate, call one service, and shape the response; no SQL, no rules.

mod admin;
mod client;
pub mod extract;
mod media;
mod server_keys;

use std::any::Any;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any as AnyOrigin, CorsLayer};

use crate::error::Error;
use crate::metrics::{self, Metrics};
use crate::service::Services;

#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub metrics: Arc<Metrics>,
}

/// The client-facing router (client-server API, keys, well-known, admin).
pub fn router(state: AppState) -> Router {
    let body_limit = state.services.config.limits.max_request_body_bytes;
    Router::new()
        .merge(client::routes())
        .merge(media::routes())
        .merge(server_keys::routes())
        .merge(admin::routes())
        .route("/health", get(health))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        // One `layer` call: each call wraps every route again, and each
        // wrapping boxes the request's future once more (memory held by every
        // waiting long-poll). Outermost first: a panic becomes a 500 that is
        // still logged, counted and CORS-headed.
        .layer(
            tower::ServiceBuilder::new()
                .layer(cors())
                .layer(metrics::ObserveLayer(state.metrics.clone()))
                .layer(DefaultBodyLimit::max(body_limit))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(tower::layer::layer_fn(RefuseEncodedNul)),
        )
}

/// The router of the metrics listener: health and Prometheus metrics.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/metrics",
            get(|axum::extract::State(state): axum::extract::State<AppState>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
            }),
        )
        .with_state(state)
}

/// The CORS headers the spec asks of every client API response.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AnyOrigin)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([HeaderName::from_static("x-requested-with"), header::CONTENT_TYPE, header::AUTHORIZATION])
}

async fn health() -> &'static str {
    "OK"
}

async fn unknown_endpoint() -> Error {
    Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request")
}

async fn method_not_allowed() -> Error {
    Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed for this endpoint")
}

/// Refuses a URL that encodes a NUL (`%00`) with 400 M_INVALID_PARAM: path and
/// query values (state keys, event types, ids) end up in database columns, and
/// PostgreSQL text cannot hold a NUL (the write failed with a 500). A plain
/// service rather than `from_fn`, whose future is boxed twice per request.
#[derive(Clone)]
struct RefuseEncodedNul<S>(S);

impl<S> tower::Service<axum::extract::Request> for RefuseEncodedNul<S>
where
    S: tower::Service<axum::extract::Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let encodes_nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
        let uri = request.uri();
        if encodes_nul(uri.path()) || uri.query().is_some_and(encodes_nul) {
            let refusal = Error::invalid_param("The URL contains a NUL character").into_response();
            return futures_util::future::Either::Left(std::future::ready(Ok(refusal)));
        }
        futures_util::future::Either::Right(self.0.call(request))
    }
}

/// A panicking handler answers 500 M_UNKNOWN; the detail goes to the log only.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "request handler panicked");
    Error::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Internal server error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("secret detail")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_m_unknown_and_hides_the_detail() {
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "ok" }))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(cors());
        let response = app.clone().oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key("access-control-allow-origin"));
        let body = axum::body::to_bytes(response.into_body(), 10_000).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errcode"], "M_UNKNOWN");
        assert!(!body.to_string().contains("secret detail"));
        // The service goes on serving.
        let response = app.oneshot(Request::get("/fine").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_url_that_encodes_a_nul_is_refused_with_400() {
        let app =
            Router::new().route("/state/{key}", get(|| async { "ok" })).layer(tower::layer::layer_fn(RefuseEncodedNul));
        for uri in ["/state/a%00b", "/state/k?from=x%00"] {
            let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            let body = axum::body::to_bytes(response.into_body(), 10_000).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["errcode"], "M_INVALID_PARAM");
        }
        for uri in ["/state/a%2500b", "/state/k?from=100"] {
            let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{uri}: not a NUL");
        }
    }
}

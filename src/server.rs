//! The standalone server's router: health, readiness, metrics, OpenAPI, the
//! admin API and the demo protected API. `main` and the tests build the same
//! app with [`app`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::admin::{self, AdminAuth, AdminState};
use crate::gate::TokenGate;
use crate::response::error_response;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const HEALTH_BODY: &str = r#"{"success": true, "data": {"status": "ok"}}"#;
const READY_BODY: &str = r#"{"success": true, "data": {"status": "ready"}}"#;
const PROVIDERS_BODY: &str = r#"{"success": true, "data": [{"id": "github", "name": "GitHub Actions"}, {"id": "gitlab", "name": "GitLab CI"}, {"id": "circleci", "name": "CircleCI"}]}"#;
const EXTERNAL_TESTS_BODY: &str = r#"{"success": true, "data": [{"id": "et_001", "provider": "github", "name": "checkout flow", "status": "passed"}, {"id": "et_002", "provider": "gitlab", "name": "login flow", "status": "failed"}]}"#;

/// What the server's routes need.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The token engine.
    pub gate: TokenGate,
    /// The admin credential.
    pub admin: Arc<AdminAuth>,
}

fn static_json(body: &'static str) -> Response {
    let mut response = Response::new(Body::from(Bytes::from_static(body.as_bytes())));
    // Room for the rate-limit headers and hyper's own, without regrowing.
    *response.headers_mut() = http::HeaderMap::with_capacity(12);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The whole server: `/health`, `/ready`, `/metrics`, `/openapi.json`,
/// `/admin/...` and the demo API under `/api/v1`.
pub fn app(state: AppState) -> Router {
    // Everything under /api/v1, unknown paths included, is behind the gate:
    // without a valid token nobody learns which routes exist.
    // (Full paths and a catch-all route rather than `nest`, which rewrites
    // every request's URI.)
    let demo_api = Router::new()
        .route(
            "/api/v1/external_tests/providers",
            get(|| async { static_json(PROVIDERS_BODY) }),
        )
        .route(
            "/api/v1/external_tests",
            get(|| async { static_json(EXTERNAL_TESTS_BODY) }),
        )
        .route(
            "/api/v1/{*rest}",
            any(|| async { error_response(StatusCode::NOT_FOUND, "Not found") }),
        )
        .layer(state.gate.layer());

    let admin_api = admin::router(AdminState {
        gate: state.gate.clone(),
        auth: Arc::clone(&state.admin),
    });

    Router::new()
        .route("/health", get(|| async { static_json(HEALTH_BODY) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .with_state(state)
        .merge(admin_api)
        .merge(demo_api)
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async {
            error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // A request the server could not finish in time is its fault: 503.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }))
        .layer(middleware::from_fn(envelope_errors))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        // Outermost, so no trace or log below ever sees the token.
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.gate.store().ping().await {
        Ok(()) => static_json(READY_BODY),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            crate::response::unavailable()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.gate.refresh_gauges();
    let mut response = state.gate.metrics().render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// Safety net: any error response that is not already JSON (from a tower
/// layer, a timeout, a body limit) is rewritten into the error envelope.
async fn envelope_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large (limit 1 MB)",
        StatusCode::REQUEST_TIMEOUT => "Request timed out",
        StatusCode::SERVICE_UNAVAILABLE => "Service temporarily unavailable",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        s if s.is_server_error() => "Internal server error",
        _ => status.canonical_reason().unwrap_or("Bad request"),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    let mut envelope = error_response(status, message);
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE {
            envelope.headers_mut().append(name.clone(), value.clone());
        }
    }
    envelope
}

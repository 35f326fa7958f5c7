//! The standalone server's router: health, readiness, metrics, OpenAPI, the
//! admin API and the demo protected API. `main` and the tests build the same
//! app with [`app`].
//!
//! Every request gets an `x-request-id` (the client's, when well-formed, or a
//! generated one), echoed on the response and recorded in the request's
//! tracing span. The span is at `debug` level under the target
//! `tokengate::request`, so it costs nothing at the default `info`;
//! `RUST_LOG=info,tokengate::request=debug` attaches the id (and method and
//! URI) to every log line written while a request is served. The
//! `Authorization` header is marked sensitive before any of this sees it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use tokengate::http::{
    SettingsConfig, admin_router, error_response, github_leak_router, settings_router,
};

pub use crate::state::AppState;

use crate::ops::{health, metrics, ready};
use crate::request_id::{RequestIdLayer, X_REQUEST_ID};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The whole server: `/health`, `/ready`, `/metrics`, `/openapi.json`,
/// `/admin/...`, the demo API under `/api/v1`, and the Settings > API Tokens
/// page and API under `/settings/api-tokens` when `state.settings` is set.
pub fn app(state: AppState) -> Router {
    let (admin_api, admin_doc) = admin_router(state.gate.clone(), Arc::clone(&state.admin));
    let mut documents = vec![admin_doc];
    let leaks_api = state.github_keys.clone().map(|(keys, file)| {
        let (router, document) = github_leak_router(state.gate.clone(), keys, file);
        documents.push(document);
        router
    });
    let mut settings_page = Router::new();
    if let Some(sign_in) = &state.settings {
        // The auth proxy is the reverse proxy whose X-Forwarded-Host/-Proto count.
        let config =
            SettingsConfig::default().with_trusted_proxies(sign_in.trusted_proxies().clone());
        let (router, document) = settings_router(state.gate.clone(), sign_in.clone(), config);
        documents.push(document);
        settings_page = router;
    }
    let document = crate::openapi::document(documents);
    let demo_api = crate::demo::router(&state.gate);

    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || crate::openapi::serve(document.clone())),
        )
        .with_state(state)
        .merge(admin_api)
        .merge(demo_api)
        .merge(leaks_api.unwrap_or_default())
        .merge(settings_page)
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
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // A 503 during an outage is logged once by whatever noticed the
                // outage, not once per request.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(RequestIdLayer)
        // Outermost, so no trace or log below ever sees the token.
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
}

/// The span of one request. Its fields are only computed when the span is
/// enabled (`tokengate::request=debug`), so by default it costs one check.
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!(
        target: "tokengate::request",
        "request",
        method = %request.method(),
        // The path only: a client that puts its token in the query string
        // (which is refused) must not get it written to the log.
        path = %request.uri().path(),
        version = ?request.version(),
        request_id = request
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .unwrap_or_default(),
    )
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

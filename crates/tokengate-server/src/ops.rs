//! The operational routes: liveness, readiness and metrics (no auth).

use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use tokengate::http::{ApiError, SuccessEnvelope};
use utoipa::ToResponse;
use utoipa::openapi::response::Response as ResponseObject;
use utoipa::openapi::{Ref, RefOr};

use crate::state::AppState;

const HEALTH_BODY: &str = r#"{"success": true, "data": {"status": "ok"}}"#;
const READY_BODY: &str = r#"{"success": true, "data": {"status": "ready"}}"#;

fn static_json(body: &'static str) -> Response {
    let mut response = Response::new(Body::from(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A reference to the library's shared 503 response component.
pub(crate) struct ServiceUnavailable;

impl<'s> ToResponse<'s> for ServiceUnavailable {
    fn response() -> (&'s str, RefOr<ResponseObject>) {
        (
            "ServiceUnavailable",
            RefOr::Ref(Ref::from_response_name("ServiceUnavailable")),
        )
    }
}

/// The body of `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerStatus {
    /// `ok` (health) or `ready` (readiness).
    #[schema(example = "ok")]
    status: String,
}

/// Liveness: answers without any I/O.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "ops_health",
    tag = "operations",
    responses((status = 200, description = "The process is serving", body = SuccessEnvelope<ServerStatus>,
        example = json!({"success": true, "data": {"status": "ok"}}))),
)]
pub(crate) async fn health() -> Response {
    static_json(HEALTH_BODY)
}

/// Readiness: pings the database.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ops_ready",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = SuccessEnvelope<ServerStatus>,
            example = json!({"success": true, "data": {"status": "ready"}})),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    // Logged when readiness changes, not at every probe of a load balancer.
    static FAILING: AtomicBool = AtomicBool::new(false);
    match state.gate.ping().await {
        Ok(()) => {
            if FAILING.swap(false, Ordering::Relaxed) {
                tracing::info!("readiness check passes again");
            }
            static_json(READY_BODY)
        }
        Err(e) => {
            if !FAILING.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "readiness check failed");
            }
            ApiError::Unavailable.into_response()
        }
    }
}

/// Prometheus metrics in the OpenMetrics text format.
///
/// Requests through the gate by outcome, cache hits and misses, argon2
/// verifications and their duration, rate-limiter state, admin operations.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "ops_metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")),
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state.gate.refresh_gauges();
    let mut text = state.gate.metrics().render();
    if let Some(webhooks) = &state.webhooks {
        // Before the closing `# EOF`.
        let at = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(at, &webhooks.render_metrics());
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static bodies are exactly what the OpenAPI document describes.
    #[test]
    fn static_bodies_match_their_documented_types() {
        for (body, status) in [(HEALTH_BODY, "ok"), (READY_BODY, "ready")] {
            let parsed: SuccessEnvelope<ServerStatus> = serde_json::from_str(body).unwrap();
            assert!(parsed.success);
            assert_eq!(parsed.data.status, status);
        }
    }
}

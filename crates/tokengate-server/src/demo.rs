//! The demo protected API: `GET /api/v1/external_tests` and
//! `GET /api/v1/external_tests/providers`, so the documented `curl` calls
//! work verbatim against a local server. Everything under `/api/v1`,
//! unknown paths and wrong methods included, is behind the gate: without a
//! valid token nobody learns which routes exist. Each route needs a scope
//! ([`SCOPES`]): a token created with other scopes gets the 403 that names it.

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::{any, get};
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use tokengate::http::{ApiError, SuccessEnvelope};
use tokengate::{TokenGate, require_scope};
use utoipa::OpenApi;

/// The scopes of the demo API, declared to the gate.
pub const SCOPES: [&str; 2] = ["providers:read", "tests:read"];

const PROVIDERS_BODY: &str = r#"{"success": true, "data": [{"id": "github", "name": "GitHub Actions"}, {"id": "gitlab", "name": "GitLab CI"}, {"id": "circleci", "name": "CircleCI"}]}"#;
const EXTERNAL_TESTS_BODY: &str = r#"{"success": true, "data": [{"id": "et_001", "provider": "github", "name": "checkout flow", "status": "passed"}, {"id": "et_002", "provider": "gitlab", "name": "login flow", "status": "failed"}]}"#;

/// The demo API's routes, behind `gate`.
pub(crate) fn router(gate: &TokenGate) -> Router {
    // (Full paths and a catch-all route rather than `nest`, which rewrites
    // every request's URI.)
    Router::new()
        // A wrong method is answered behind the gate too, like an unknown path.
        .route(
            "/api/v1/external_tests/providers",
            get(require_scope!("providers:read", providers)).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/external_tests",
            get(require_scope!("tests:read", external_tests)).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/{*rest}",
            any(|| async { ApiError::response(StatusCode::NOT_FOUND, "Not found") }),
        )
        .layer(gate.layer())
}

/// The demo API's OpenAPI paths (the gate's contract is added by the server).
#[derive(OpenApi)]
#[openapi(paths(providers, external_tests))]
pub(crate) struct DemoDoc;

/// 405 for the demo API's read-only routes.
async fn method_not_allowed() -> Response {
    let mut response = ApiError::response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET,HEAD"));
    response
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

/// A CI provider of the demo API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Provider {
    /// Stable identifier, e.g. `github`.
    #[schema(example = "github")]
    id: String,
    /// Display name, e.g. `GitHub Actions`.
    #[schema(example = "GitHub Actions")]
    name: String,
}

/// An external test run of the demo API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExternalTest {
    /// Stable identifier, e.g. `et_001`.
    #[schema(example = "et_001")]
    id: String,
    /// The [`Provider`] id that ran it.
    #[schema(example = "github")]
    provider: String,
    /// What was tested.
    #[schema(example = "checkout flow")]
    name: String,
    /// `passed` or `failed`.
    #[schema(example = "passed")]
    status: String,
}

/// List the CI providers.
///
/// A demo route of the protected API: like every route under `/api/v1`, it
/// needs an API token of a plan with API access and is rate limited per token.
// The gate's 401/403/429/503 responses and rate-limit headers are added to
// every `/api/v1` operation by `crate::openapi`, as the layer adds them.
#[utoipa::path(
    get,
    path = "/api/v1/external_tests/providers",
    operation_id = "api_list_providers",
    tag = "demo api",
    security(("api_token" = ["providers:read"])),
    responses((status = 200, description = "The providers", body = SuccessEnvelope<Vec<Provider>>)),
)]
async fn providers() -> Response {
    static_json(PROVIDERS_BODY)
}

/// List external test runs.
///
/// A demo route of the protected API, behind the gate like the providers.
#[utoipa::path(
    get,
    path = "/api/v1/external_tests",
    operation_id = "api_list_external_tests",
    tag = "demo api",
    security(("api_token" = ["tests:read"])),
    responses((status = 200, description = "The test runs", body = SuccessEnvelope<Vec<ExternalTest>>)),
)]
async fn external_tests() -> Response {
    static_json(EXTERNAL_TESTS_BODY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static bodies are exactly what the OpenAPI document describes.
    #[test]
    fn static_bodies_match_their_documented_types() {
        let providers: SuccessEnvelope<Vec<Provider>> =
            serde_json::from_str(PROVIDERS_BODY).unwrap();
        assert!(providers.success);
        assert_eq!(providers.data[0].id, "github");
        let tests: SuccessEnvelope<Vec<ExternalTest>> =
            serde_json::from_str(EXTERNAL_TESTS_BODY).unwrap();
        assert_eq!(tests.data.len(), 2);
    }
}

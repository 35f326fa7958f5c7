//! The server's OpenAPI 3.1 document, served at `GET /openapi.json`: the
//! library's admin API (which brings the shared error responses and
//! security schemes), the demo API with the gate's contract, and the
//! operational routes. Each operation is described next to its handler.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

/// Routes under this prefix are behind the gate and get its contract.
const GATED_PREFIX: &str = "/api/v1/";

/// The operational routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tokengate",
        version = env!("CARGO_PKG_VERSION"),
        description = "API tokens shown once, argon2id at rest, and the gate in front of the API.\n\n\
            `/admin` manages plans, accounts and tokens with `Authorization: Bearer $ADMIN_TOKEN`. \
            `/api/v1` is the demo protected API: every request carries `Authorization: Bearer <token>`, \
            is rate limited per token over any rolling hour, and every authenticated response carries \
            `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`. \
            With `SETTINGS_AUTH_HEADER` set, `/settings/api-tokens` serves the Settings > API Tokens \
            page and its API for the account an authenticating proxy signed in.\n\n\
            Every success body is `{\"success\": true, \"data\": ...}` and every error body is \
            `{\"success\": false, \"error\": \"<message>\"}` with `Content-Type: application/json`.",
    ),
    paths(
        crate::ops::health,
        crate::ops::ready,
        crate::ops::metrics,
        openapi_document,
    ),
    tags(
        (name = "plans", description = "Plans: API access and requests per rolling hour"),
        (name = "accounts", description = "The host application's accounts and their plans"),
        (name = "tokens", description = "API tokens: shown once at creation, listed without secrets"),
        (name = "audit", description = "The audit log, and leaked-token reports"),
        (name = "demo api", description = "The protected API, behind the gate"),
        (name = "operations", description = "Health, readiness, metrics and this document (no auth)"),
    ),
)]
struct ServerDoc;

/// The whole document, serialized once.
pub(crate) fn document(routers: Vec<OpenApi>) -> Bytes {
    let mut document = ServerDoc::openapi();
    document.merge(crate::demo::DemoDoc::openapi());
    document.merge(crate::forward::VerifyDoc::openapi());
    for router in routers {
        document.merge(router);
    }
    tokengate::http::document_gated_routes(&mut document, GATED_PREFIX);
    Bytes::from(document.to_pretty_json().unwrap_or_else(|_| "{}".into()))
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json")),
)]
#[allow(dead_code)] // Documents the route that `serve` answers.
pub(crate) async fn openapi_document() {}

/// Serves the document.
pub(crate) async fn serve(document: Bytes) -> Response {
    let mut response = document.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

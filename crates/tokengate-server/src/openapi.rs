//! The server's OpenAPI 3.1 document, served at `GET /openapi.json`: the
//! library's admin API (which brings the shared error responses and
//! security schemes), the demo API with the gate's contract, and the
//! operational routes. Each operation is described next to its handler.
//!
//! What only the server knows is added here, once, to every operation: the
//! `x-request-id` header its stack puts on every response, the `servers`
//! entry, the Settings sign-in header (`SETTINGS_AUTH_HEADER`) as the
//! settings routes' security scheme, and `security: []` on every route that
//! needs no credential, so that generated clients and linters never have to
//! guess.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use utoipa::OpenApi as _;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Routes under this prefix are behind the gate and get its contract.
const GATED_PREFIX: &str = "/api/v1/";

/// The tag of the Settings > API Tokens routes (the library's).
const SETTINGS_TAG: &str = "settings";

/// The security scheme of the settings routes: the auth proxy's sign-in header.
const SETTINGS_SCHEME: &str = "settings_sign_in";

/// The response header every answer carries (`stack.rs`).
const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// The operational routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tokengate",
        version = env!("CARGO_PKG_VERSION"),
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
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

/// The whole document, serialized once. `settings_header` is the sign-in
/// header of the settings routes, when they are served.
pub(crate) fn document(routers: Vec<OpenApi>, settings_header: Option<&str>) -> Bytes {
    Bytes::from(
        build(routers, settings_header)
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".into()),
    )
}

/// The whole document.
pub(crate) fn build(routers: Vec<OpenApi>, settings_header: Option<&str>) -> OpenApi {
    let mut document = ServerDoc::openapi();
    document.merge(crate::demo::DemoDoc::openapi());
    document.merge(crate::forward::VerifyDoc::openapi());
    for router in routers {
        document.merge(router);
    }
    tokengate::http::document_gated_routes(&mut document, GATED_PREFIX);
    document_body_deadlines(&mut document);
    document.servers = Some(vec![
        ServerBuilder::new()
            .url("/")
            .description(Some("This server (the document is served by it)"))
            .build(),
    ]);
    if let Some(header) = settings_header {
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                SETTINGS_SCHEME,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    header.to_owned(),
                    format!(
                        "The signed-in account's id, set by the authenticating proxy in front \
                         of tokengate (`SETTINGS_AUTH_HEADER={header}`) and believed only from \
                         `SETTINGS_TRUSTED_PROXIES`."
                    ),
                ))),
            );
    }
    for_each_operation(&mut document, |operation| {
        document_security(operation, settings_header.is_some());
        document_request_id(operation.responses.responses.values_mut());
    });
    if let Some(components) = &mut document.components {
        document_request_id(components.responses.values_mut());
    }
    remove_unused_schemas(&mut document);
    document
}

/// Drops the schemas nothing refers to: each route's body types are
/// registered on their own, but a generic envelope (`SuccessEnvelope<Plan>`)
/// writes its `data` out in full, so the bare `Plan` would be listed and
/// never used (a lint warning, and dead types in generated clients).
fn remove_unused_schemas(document: &mut OpenApi) {
    loop {
        let text = serde_json::to_string(&*document).unwrap_or_default();
        let Some(components) = &mut document.components else {
            return;
        };
        let before = components.schemas.len();
        components
            .schemas
            .retain(|name, _| text.contains(&format!("\"#/components/schemas/{name}\"")));
        if components.schemas.len() == before {
            return;
        }
    }
}

fn for_each_operation(document: &mut OpenApi, mut f: impl FnMut(&mut Operation)) {
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            f(operation);
        }
    }
}

/// The settings routes need the sign-in header; a route that declares no
/// requirement needs nothing (`security: []`, said rather than left out).
fn document_security(operation: &mut Operation, settings_scheme: bool) {
    let is_settings = operation
        .tags
        .as_ref()
        .is_some_and(|tags| tags.iter().any(|tag| tag == SETTINGS_TAG));
    if is_settings && settings_scheme {
        operation.security = Some(vec![SecurityRequirement::new::<_, _, String>(
            SETTINGS_SCHEME,
            [],
        )]);
    } else if operation.security.is_none() {
        operation.security = Some(Vec::new());
    }
}

/// Adds `X-Request-Id` to every response written out (references get it
/// from their component).
fn document_request_id<'a>(
    responses: impl Iterator<Item = &'a mut RefOr<utoipa::openapi::response::Response>>,
) {
    for response in responses {
        if let RefOr::T(response) = response {
            response.headers.insert(
                REQUEST_ID_HEADER.to_owned(),
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String).build())
                    .description(Some(
                        "The request's id: the client's `x-request-id` when it is 1 to 128 \
                         visible ASCII characters, else a generated one (32 hex digits). The \
                         server's log lines and audit events of this request carry it.",
                    ))
                    .build(),
            );
        }
    }
}

/// Every operation with a request body may answer 408 (the server's body
/// deadlines, `stack.rs`).
fn document_body_deadlines(document: &mut OpenApi) {
    let timed_out = ResponseBuilder::new()
        .description(
            "The request body did not arrive within `BODY_TIMEOUT_SECS`, or fell behind \
             `BODY_MIN_RATE` bytes per second; the connection is closed after this answer.",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .example(Some(serde_json::json!({
                    "success": false,
                    "error": "Request body timed out: send the whole body within BODY_TIMEOUT_SECS, at BODY_MIN_RATE bytes per second or faster",
                })))
                .build(),
        )
        .build();
    for_each_operation(document, |operation| {
        if operation.request_body.is_some() {
            operation
                .responses
                .responses
                .entry("408".to_owned())
                .or_insert_with(|| RefOr::T(timed_out.clone()));
        }
    });
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "ops_openapi",
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

//! OpenAPI 3.1 pieces shared by tokengate's routers: the error responses,
//! the two bearer security schemes, and the gate's contract for protected routes.
//!
//! Each operation is described next to its handler (`#[utoipa::path]`).
//! [`document_gated_routes`] adds the gate's contract to every operation
//! under a prefix, once, the way [`TokenGateLayer`](crate::TokenGateLayer)
//! adds it to every gated route: the `api_token` requirement, the
//! 401/403/429/503 responses (shared components; their examples are the
//! exact bodies of the contract) and the `X-RateLimit-*`, `RateLimit-Policy`
//! and `RateLimit` headers on successes and 429s. (Edits of a router's own
//! operations, such as naming them after their surface, are in
//! `operations.rs`.)

use utoipa::openapi::OpenApi;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as ResponseObject, ResponseBuilder};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi as _, ToResponse};

use super::envelope::ErrorEnvelope;
use super::operations::for_each_operation;
use crate::response::{FORBIDDEN_BODY, UNAUTHORIZED_BODY, UNAVAILABLE_BODY, rate_limited_body};

/// Name of the security scheme of `/admin`: `Authorization: Bearer $ADMIN_TOKEN`.
const ADMIN_TOKEN_SCHEME: &str = "admin_token";
/// Name of the security scheme of gated routes: `Authorization: Bearer <API token>`.
const API_TOKEN_SCHEME: &str = "api_token";

/// The components every tokengate router refers to.
#[derive(utoipa::OpenApi)]
#[openapi(
    components(
        schemas(ErrorEnvelope),
        responses(
            AdminUnauthorized,
            BadRequest,
            NotFound,
            Conflict,
            TokenCapReached,
            PlanWithoutApiAccess,
            PayloadTooLarge,
            ServiceUnavailable,
        ),
    ),
    modifiers(&AdminScheme),
)]
pub(crate) struct SharedComponents;

/// The shared components, to merge into a router's document.
pub(crate) fn shared_components() -> OpenApi {
    SharedComponents::openapi()
}

/// Adds the gate's contract to every operation whose path starts with
/// `prefix` (e.g. `/api/v1/`): the `api_token` security requirement, the
/// 401/403/429/503 responses with their exact bodies, and the rate-limit
/// headers on successes.
pub fn document_gated_routes(openapi: &mut OpenApi, prefix: &str) {
    let mut gated_scopes = Vec::new();
    for_each_operation(openapi, |path, operation| {
        if path.starts_with(prefix) {
            gated_scopes.extend(required_scopes(operation));
        }
    });
    gated_scopes.sort();
    gated_scopes.dedup();
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        API_TOKEN_SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("prefix (default `iit_`) + 70 URL-safe characters")
                .description(Some(
                    "An API token, created in Settings > API Tokens (or with the admin \
                     API or the CLI) and shown once.",
                ))
                .build(),
        ),
    );
    for (name, response) in [
        ApiUnauthorized::response(),
        ApiRateLimited::response(),
        ServiceUnavailable::response(),
    ] {
        components.responses.insert(name.to_owned(), response);
    }
    components.responses.insert(
        response_name::<ApiForbidden>().to_owned(),
        RefOr::T(forbidden_with_scopes(&gated_scopes)),
    );
    components.schemas.insert(
        "ErrorEnvelope".to_owned(),
        <ErrorEnvelope as utoipa::PartialSchema>::schema(),
    );
    for_each_operation(openapi, |path, operation| {
        if path.starts_with(prefix) {
            add_gate_contract(operation);
        }
    });
}

/// The `admin_token` security scheme.
struct AdminScheme;

impl Modify for AdminScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_TOKEN_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token: `ADMIN_TOKEN`, or the one generated and printed \
                         once at first start (`tokengate admin-token reset` replaces it).",
                    ))
                    .build(),
            ),
        );
    }
}

/// An error response whose body is the [`ErrorEnvelope`], with `example` as its message.
pub(crate) fn error_response(description: &str, example: &str) -> ResponseBuilder {
    error_response_with_body(
        description,
        serde_json::json!({"success": false, "error": example}),
    )
}

fn error_response_with_body(description: &str, example: serde_json::Value) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
            .example(Some(example))
            .build(),
    )
}

/// The example of a fixed contract body, from its exact bytes.
fn contract_example(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_default()
}

fn integer_header(minimum: u64, description: &str) -> Header {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .build();
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

fn string_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String).build())
        .description(Some(description))
        .build()
}

/// The headers of every authenticated `/api/v1` response, 200 and 429 alike.
fn rate_limit_headers() -> [(&'static str, Header); 5] {
    [
        (
            "X-RateLimit-Limit",
            integer_header(0, "The plan's requests per rolling hour."),
        ),
        (
            "X-RateLimit-Remaining",
            integer_header(0, "Requests left in the rolling hour after this one."),
        ),
        (
            "X-RateLimit-Reset",
            integer_header(
                0,
                "Unix time (seconds, rounded up) at which `X-RateLimit-Remaining` next grows.",
            ),
        ),
        (
            "RateLimit-Policy",
            string_header("IETF draft: `\"hourly\";q=<limit>;w=3600`."),
        ),
        (
            "RateLimit",
            string_header("IETF draft: `\"hourly\";r=<remaining>;t=<seconds until reset>`."),
        ),
    ]
}

/// Implements [`ToResponse`] for a marker type, naming the component after it.
macro_rules! response_component {
    ($(#[$doc:meta])* $name:ident => $build:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl ToResponse<'static> for $name {
            fn response() -> (&'static str, RefOr<ResponseObject>) {
                (stringify!($name), RefOr::T($build))
            }
        }
    };
}

response_component! {
    /// 401 on `/admin`: the admin token is missing or wrong (an API token gets the same answer).
    AdminUnauthorized => error_response(
        "Missing or wrong admin token; an API token gets the same answer.",
        "Invalid or missing admin token",
    )
    .header("WWW-Authenticate", string_header("`Bearer realm=\"admin\"`"))
    .build()
}

response_component! {
    /// 400: bad JSON, missing or unknown fields, or an invalid value.
    BadRequest => error_response(
        "Bad JSON, a missing or unknown field, an invalid name, an unknown plan, \
         or an `expires_at` in the past; the message says which.",
        "Invalid request body: unknown field `plan_name`, expected `plan`",
    )
    .build()
}

response_component! {
    /// 404: the account or token does not exist.
    NotFound => error_response("The account or token does not exist.", "Token not found").build()
}

response_component! {
    /// 409: the request conflicts with the current state.
    Conflict => error_response(
        "The token is revoked, expired or already rotated (in its grace period), \
         so it cannot be rotated; or a rotation with a grace period would leave more tokens \
         authenticating than the plan's `max_tokens` (tokens in grace count).",
        "Token is revoked and cannot be rotated",
    )
    .build()
}

response_component! {
    /// 409 on token creation: the account already has its plan's `max_tokens` live tokens.
    TokenCapReached => error_response(
        "The account already has as many live tokens as its plan's `max_tokens` allows; \
         revoke one (or let one expire) to create another.",
        "This account already has 2 active tokens, the most its plan (team) allows; \
         revoke one (or let one expire) to create another",
    )
    .build()
}

response_component! {
    /// 403 on token creation or rotation: the account's plan has no API access.
    PlanWithoutApiAccess => error_response_with_body(
        "The account's plan has no API access, so the account gets no new tokens \
         (created or rotated) on any surface: move it to a plan with API access first. \
         The contract's body.",
        contract_example(FORBIDDEN_BODY),
    )
    .build()
}

response_component! {
    /// 413: the request body is over 1 MB.
    PayloadTooLarge => error_response(
        "The request body is over the limit (1 MB).",
        "Request body too large (limit 1 MB)",
    )
    .build()
}

response_component! {
    /// 503: a backend (database, shared rate limiter) is unavailable; never reported as 401.
    ServiceUnavailable => error_response_with_body(
        "A backend (the database or the shared rate limiter) is unavailable. \
         Retry; a token is never refused with 401 because it could not be checked.",
        contract_example(UNAVAILABLE_BODY),
    )
    .header("Retry-After", integer_header(1, "Seconds to wait before retrying."))
    .build()
}

response_component! {
    /// The contract's 401 on `/api/v1`.
    ApiUnauthorized => error_response_with_body(
        "The token is missing, malformed, unknown, wrong, revoked or expired. \
         The body is exactly `{\"success\": false, \"error\": \"Invalid or missing API token\"}` \
         in every case.",
        contract_example(UNAUTHORIZED_BODY),
    )
    .header(
        "WWW-Authenticate",
        string_header(
            "`Bearer realm=\"api\"` without credentials; \
             `Bearer realm=\"api\", error=\"invalid_token\"` with a bad one (RFC 6750).",
        ),
    )
    .build()
}

response_component! {
    /// The contract's 403 on `/api/v1` (no API access), and the 403 of a
    /// missing scope; [`document_gated_routes`] lists the scopes it finds.
    ApiForbidden => forbidden_with_scopes(&[])
}

response_component! {
    /// The contract's 429 on `/api/v1`.
    ApiRateLimited => {
        let mut response = error_response_with_body(
            "Over the plan's requests per rolling hour. The body's N equals `Retry-After`: \
             `{\"success\": false, \"error\": \"Rate limit exceeded. Try again in N seconds.\"}`. \
             Rejected requests do not count against the limit. The same status and body, \
             with `Retry-After` but without the `X-RateLimit-*` headers (no token was \
             authenticated), answer too many failed verifications of one token id from \
             one client address.",
            contract_example(&rate_limited_body(42)),
        )
        .header(
            "Retry-After",
            integer_header(1, "Seconds until a request can be admitted: `max(1, ceil(reset - now))`."),
        );
        for (name, header) in rate_limit_headers() {
            response = response.header(name, header);
        }
        response.build()
    }
}

/// The scopes an operation declares it needs (`security(("api_token" = [...]))`).
fn required_scopes(operation: &Operation) -> Vec<String> {
    let Some(requirements) = &operation.security else {
        return Vec::new();
    };
    serde_json::to_value(requirements)
        .ok()
        .and_then(|value| {
            value
                .get(0)?
                .get(API_TOKEN_SCHEME)?
                .as_array()
                .map(|scopes| {
                    scopes
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
        })
        .unwrap_or_default()
}

/// The 403 of an operation that needs scopes: no API access, or a token
/// without the scope (that one carries the rate-limit headers: the request
/// was counted).
fn forbidden_with_scopes(scopes: &[String]) -> ResponseObject {
    let mut examples = vec![(
        "no_api_access".to_owned(),
        utoipa::openapi::example::ExampleBuilder::new()
            .summary("The plan has no API access")
            .value(Some(contract_example(FORBIDDEN_BODY)))
            .build(),
    )];
    for scope in scopes {
        examples.push((
            format!("missing_scope_{scope}"),
            utoipa::openapi::example::ExampleBuilder::new()
                .summary(format!("The token lacks the scope {scope}"))
                .value(Some(serde_json::json!({
                    "success": false,
                    "error": format!("Token is missing the required scope: {scope}"),
                })))
                .build(),
        ));
    }
    let mut response = ResponseBuilder::new()
        .description(format!(
            "The plan has no API access (the contract's 403), or the token lacks the scope \
             the route needs (its `api_token` security requirement names it; scopes: {}): \
             `Token is missing the required scope: SCOPE`, counted and with the rate-limit \
             headers.",
            scopes.join(", ")
        ))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .examples_from_iter(examples)
                .build(),
        );
    for (name, header) in rate_limit_headers() {
        response = response.header(name, header);
    }
    response.build()
}

fn add_gate_contract(operation: &mut Operation) {
    let scopes = required_scopes(operation);
    operation.security = Some(vec![SecurityRequirement::new(
        API_TOKEN_SCHEME,
        scopes.clone(),
    )]);
    let responses = &mut operation.responses.responses;
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if status.starts_with('2') {
            for (name, header) in rate_limit_headers() {
                response.headers.insert(name.to_owned(), header);
            }
        }
    }
    for (status, name) in [
        ("401", response_name::<ApiUnauthorized>()),
        ("403", response_name::<ApiForbidden>()),
        ("429", response_name::<ApiRateLimited>()),
        ("503", response_name::<ServiceUnavailable>()),
    ] {
        responses.insert(status.to_owned(), RefOr::Ref(Ref::from_response_name(name)));
    }
}

fn response_name<R: ToResponse<'static>>() -> &'static str {
    R::response().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gated_routes_get_the_contract() {
        let mut openapi = utoipa::openapi::OpenApiBuilder::new()
            .paths(
                utoipa::openapi::PathsBuilder::new()
                    .path(
                        "/api/v1/x",
                        utoipa::openapi::PathItem::new(
                            utoipa::openapi::HttpMethod::Get,
                            utoipa::openapi::path::OperationBuilder::new()
                                .response("200", ResponseBuilder::new().description("ok")),
                        ),
                    )
                    .path(
                        "/health",
                        utoipa::openapi::PathItem::new(
                            utoipa::openapi::HttpMethod::Get,
                            utoipa::openapi::path::OperationBuilder::new()
                                .response("200", ResponseBuilder::new().description("ok")),
                        ),
                    ),
            )
            .build();
        document_gated_routes(&mut openapi, "/api/v1/");
        let json = serde_json::to_value(&openapi).unwrap();
        let gated = &json["paths"]["/api/v1/x"]["get"];
        assert_eq!(gated["security"][0]["api_token"], serde_json::json!([]));
        assert!(gated["responses"]["429"].is_object());
        assert!(gated["responses"]["200"]["headers"]["X-RateLimit-Remaining"].is_object());
        let open = &json["paths"]["/health"]["get"];
        assert!(open["security"].is_null());
        let examples = &json["components"]["responses"];
        assert_eq!(
            examples["ApiUnauthorized"]["content"]["application/json"]["example"],
            serde_json::from_str::<serde_json::Value>(UNAUTHORIZED_BODY).unwrap()
        );
    }
}

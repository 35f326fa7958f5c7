//! The admin API: plans, accounts and tokens, behind `Authorization: Bearer $ADMIN_TOKEN`.
//!
//! | method & path | does |
//! | --- | --- |
//! | `GET /admin/plans` · `PUT /admin/plans/{plan}` | list / upsert plans |
//! | `PUT /admin/accounts/{account_id}` · `GET /admin/accounts/{account_id}` | upsert / read an account |
//! | `POST /admin/accounts/{account_id}/tokens` | create a token: `201`, plaintext in `data.token`, once |
//! | `GET /admin/accounts/{account_id}/tokens` | list an account's tokens (never a secret) |
//! | `GET /admin/tokens/{token_id}` · `DELETE /admin/tokens/{token_id}` | read / revoke (idempotent) |
//! | `POST /admin/tokens/{token_id}/rotate` | new token, old one stops after `grace_seconds` |
//!
//! Each handler carries its own OpenAPI description; [`admin_router`]
//! returns the router together with the document of its routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::admin_auth::AdminAuth;
use super::envelope::{
    ApiError, JsonBody, PathParam, SuccessEnvelope, error_response, success_response,
};
use super::openapi::{
    AdminUnauthorized, BadRequest, Conflict, NotFound, PayloadTooLarge, ServiceUnavailable,
};
use crate::bearer::bearer_token;
use crate::gate::TokenGate;
use crate::manage::{CreatedToken, RotatedToken, TokenSpec};
use crate::store::{Account, Plan, TokenRecord};
use crate::token::TokenId;

/// State of the admin router.
#[derive(Clone, Debug)]
struct AdminState {
    gate: TokenGate,
    auth: Arc<AdminAuth>,
}

/// The admin routes (under `/admin`), guarded by `auth`, and their OpenAPI
/// description (merge it into your document).
pub fn admin_router(gate: TokenGate, auth: Arc<AdminAuth>) -> (Router, OpenApi) {
    let state = AdminState { gate, auth };
    let (router, document) =
        OpenApiRouter::<AdminState>::with_openapi(super::openapi::shared_components())
            .routes(or_405(routes!(list_scopes)))
            .routes(or_405(routes!(list_plans)))
            .routes(or_405(routes!(put_plan)))
            .routes(or_405(routes!(put_account, get_account)))
            .routes(or_405(routes!(create_token, list_tokens)))
            .routes(or_405(routes!(get_token, revoke_token)))
            .routes(or_405(routes!(rotate_token)))
            .split_for_parts();
    // Wrong methods and unknown paths are answered behind the admin check
    // too, so anything under /admin without the admin token is the same 401.
    // (The routes themselves are public: /openapi.json lists them.)
    let not_found = || async { ApiError::NotFound("Not found".into()) };
    let router = router
        .route("/admin", any(not_found))
        .route("/admin/{*rest}", any(not_found))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state);
    (router, document)
}

/// A wrong method on a known path: 405 in the envelope.
fn or_405(routes: UtoipaMethodRouter<AdminState>) -> UtoipaMethodRouter<AdminState> {
    let (schemas, paths, method_router) = routes;
    let not_allowed =
        || async { error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed") };
    (schemas, paths, method_router.fallback(not_allowed))
}

async fn require_admin(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    // An API token, a wrong admin token and a malformed header all get the same answer.
    match bearer_token(request.headers()) {
        Ok(token) if state.auth.accepts(token) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// `PUT /admin/plans/{plan}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanBody {
    /// Whether the plan may call the API.
    api_access: bool,
    /// Requests per token in any rolling hour.
    #[schema(example = 1000)]
    requests_per_hour: u32,
    /// Requests for all of an account's tokens together in any rolling
    /// hour; null or absent: no account-wide ceiling.
    #[serde(default)]
    #[schema(example = 5000)]
    account_requests_per_hour: Option<u32>,
    /// Most live tokens per account; null or absent: no cap.
    #[serde(default)]
    #[schema(example = 10)]
    max_tokens: Option<u32>,
}

/// `PUT /admin/accounts/{account_id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountBody {
    /// The plan name, e.g. `pro`.
    #[schema(example = "pro")]
    plan: String,
}

/// `POST /admin/accounts/{account_id}/tokens` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenBody {
    /// A label, 1–200 characters.
    #[schema(min_length = 1, max_length = 200, example = "CI")]
    name: String,
    /// Optional expiry, RFC 3339, in the future.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
    /// What the token may do: scope names (see `GET /admin/scopes`); absent
    /// or null, every scope (`["*"]`).
    #[serde(default)]
    #[schema(example = json!(["tests:read"]))]
    scopes: Option<Vec<String>>,
}

/// `POST /admin/tokens/{token_id}/rotate` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    /// Seconds the old token keeps working (0, the default, stops it at once; at most 30 days).
    #[serde(default, deserialize_with = "null_as_zero")]
    #[schema(maximum = 2_592_000, example = 3600)]
    grace_seconds: u64,
    /// Expiry of the new token, RFC 3339 (default: the old token's expiry).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
}

/// `"grace_seconds": null` means the default, like leaving it out.
fn null_as_zero<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(0))
}

/// A created token: the only response that ever holds the plaintext.
// No `Debug`: it would print the token.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedTokenView {
    /// The public token id.
    id: String,
    /// The owning account.
    account_id: String,
    /// The token's label.
    name: String,
    /// The plaintext token. Shown once: it cannot be retrieved again.
    token: String,
    /// The last four characters of the token.
    hint: String,
    /// Creation time, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// Expiry, RFC 3339 UTC, or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
    /// What the token may do: `["*"]` (every scope) or scope names.
    #[schema(example = json!(["tests:read"]))]
    scopes: Vec<String>,
    /// For a rotation: the replaced token, with its new expiry or revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces: Option<TokenRecord>,
}

impl CreatedTokenView {
    pub(crate) fn new(
        record: TokenRecord,
        token: &crate::PlaintextToken,
        replaces: Option<TokenRecord>,
    ) -> Self {
        Self {
            id: record.id.to_string(),
            account_id: record.account_id,
            name: record.name,
            // The one deliberate exposure of a plaintext token.
            token: token.expose_secret().to_owned(),
            hint: record.hint,
            created_at: record.created_at,
            expires_at: record.expires_at,
            scopes: record.scopes,
            replaces,
        }
    }
}

/// A token id from a path. A whole token in its place (a common mix-up)
/// gets a 400 that says to use the id, without echoing the token.
pub(crate) fn parse_token_id(gate: &TokenGate, text: &str) -> Result<TokenId, ApiError> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    if gate.format().is_well_formed(text) {
        return Err(ApiError::BadRequest(format!(
            "That is a whole API token, not a token id: use its id, the 20 characters after the \"{}\" prefix (as listed). Never put a token in a URL.",
            gate.format().prefix()
        )));
    }
    Err(ApiError::NotFound("Token not found".into()))
}

/// List the scopes tokens may be created with.
///
/// Declared by the application (`TokenGateBuilder::with_scopes`); a token
/// created without `scopes` has every scope, shown as `["*"]`.
#[utoipa::path(
    get,
    path = "/admin/scopes",
    tag = "tokens",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The known scopes, sorted", body = SuccessEnvelope<Vec<String>>,
            example = json!({"success": true, "data": ["providers:read", "tests:read"]})),
        (status = 401, response = AdminUnauthorized),
    )
)]
async fn list_scopes(State(state): State<AdminState>) -> Response {
    success_response(StatusCode::OK, &state.gate.scopes())
}

/// List plans.
#[utoipa::path(
    get,
    path = "/admin/plans",
    tag = "plans",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every plan", body = SuccessEnvelope<Vec<Plan>>),
        (status = 401, response = AdminUnauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn list_plans(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let plans: Vec<Plan> = state.gate.plans().await?;
    Ok(success_response(StatusCode::OK, &plans))
}

/// Create or edit a plan.
///
/// Applies on the next request of every token on the plan, in every running server.
#[utoipa::path(
    put,
    path = "/admin/plans/{plan}",
    tag = "plans",
    security(("admin_token" = [])),
    params(("plan" = String, Path, description = "Plan name: 1 to 64 of a-z, 0-9, '_' and '-'", example = "pro")),
    request_body(content = PlanBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The plan as stored", body = SuccessEnvelope<Plan>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn put_plan(
    State(state): State<AdminState>,
    PathParam(name): PathParam,
    JsonBody(body): JsonBody<PlanBody>,
) -> Result<Response, ApiError> {
    let plan = Plan::new(name, body.api_access, body.requests_per_hour)
        .with_account_requests_per_hour(body.account_requests_per_hour)
        .with_max_tokens(body.max_tokens);
    let plan = state.gate.set_plan(&plan).await?;
    Ok(success_response(StatusCode::OK, &plan))
}

/// Create an account or move it to another plan.
///
/// A plan change applies to the account's tokens on their next request.
#[utoipa::path(
    put,
    path = "/admin/accounts/{account_id}",
    tag = "accounts",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The host application's account id (1 to 255 characters)", example = "acct_42")),
    request_body(content = AccountBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The account as stored", body = SuccessEnvelope<Account>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn put_account(
    State(state): State<AdminState>,
    PathParam(account_id): PathParam,
    JsonBody(body): JsonBody<AccountBody>,
) -> Result<Response, ApiError> {
    let account: Account = state.gate.set_account_plan(&account_id, &body.plan).await?;
    Ok(success_response(StatusCode::OK, &account))
}

/// Read an account.
#[utoipa::path(
    get,
    path = "/admin/accounts/{account_id}",
    tag = "accounts",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The host application's account id (1 to 255 characters)", example = "acct_42")),
    responses(
        (status = 200, description = "The account", body = SuccessEnvelope<Account>),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get_account(
    State(state): State<AdminState>,
    PathParam(account_id): PathParam,
) -> Result<Response, ApiError> {
    let account = state
        .gate
        .account(&account_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(account_not_found(&account_id)))?;
    Ok(success_response(StatusCode::OK, &account))
}

/// Create a token for an account.
///
/// `data.token` is the plaintext token: this response is the only place it
/// ever appears, so store it now. Only its argon2id hash is kept.
#[utoipa::path(
    post,
    path = "/admin/accounts/{account_id}/tokens",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The host application's account id (1 to 255 characters)", example = "acct_42")),
    request_body(content = CreateTokenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The new token, plaintext included (shown once)", body = SuccessEnvelope<CreatedTokenView>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn create_token(
    State(state): State<AdminState>,
    PathParam(account_id): PathParam,
    JsonBody(body): JsonBody<CreateTokenBody>,
) -> Result<Response, ApiError> {
    let spec = TokenSpec::new(body.name)
        .expires_at(body.expires_at)
        .scopes(body.scopes);
    let CreatedToken { record, token } = state.gate.create_token_with(&account_id, spec).await?;
    let view = CreatedTokenView::new(record, &token, None);
    Ok(success_response(StatusCode::CREATED, &view))
}

/// List an account's tokens, revoked and expired ones included; never a secret.
#[utoipa::path(
    get,
    path = "/admin/accounts/{account_id}/tokens",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The host application's account id (1 to 255 characters)", example = "acct_42")),
    responses(
        (status = 200, description = "The account's tokens, without secrets", body = SuccessEnvelope<Vec<TokenRecord>>),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn list_tokens(
    State(state): State<AdminState>,
    PathParam(account_id): PathParam,
) -> Result<Response, ApiError> {
    let tokens = state.gate.tokens(&account_id).await?;
    Ok(success_response(StatusCode::OK, &tokens))
}

/// Read a token (never its secret).
#[utoipa::path(
    get,
    path = "/admin/tokens/{token_id}",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("token_id" = String, Path, description = "The public token id (20 characters, as listed)", example = "J_5Z2qBcVZzDTNAxMf0J")),
    responses(
        (status = 200, description = "The token, without its secret", body = SuccessEnvelope<TokenRecord>),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get_token(
    State(state): State<AdminState>,
    PathParam(token_id): PathParam,
) -> Result<Response, ApiError> {
    let id = parse_token_id(&state.gate, &token_id)?;
    let token = state
        .gate
        .token(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Token not found".into()))?;
    Ok(success_response(StatusCode::OK, &token))
}

/// Revoke a token.
///
/// Idempotent: revoking a revoked token answers the same record. The next
/// request with the token gets 401, in every running server within a second.
#[utoipa::path(
    delete,
    path = "/admin/tokens/{token_id}",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("token_id" = String, Path, description = "The public token id (20 characters, as listed)", example = "J_5Z2qBcVZzDTNAxMf0J")),
    responses(
        (status = 200, description = "The token, now with `revoked_at`", body = SuccessEnvelope<TokenRecord>),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn revoke_token(
    State(state): State<AdminState>,
    PathParam(token_id): PathParam,
) -> Result<Response, ApiError> {
    let id = parse_token_id(&state.gate, &token_id)?;
    let token = state.gate.revoke_token(&id).await?;
    Ok(success_response(StatusCode::OK, &token))
}

/// Replace a token with a new one, for the same account and name.
///
/// The old token keeps working for `grace_seconds` (0, the default, stops it
/// at once). `data.token` is the new plaintext token, shown once;
/// `data.replaces` is the old token with its new expiry or revocation.
#[utoipa::path(
    post,
    path = "/admin/tokens/{token_id}/rotate",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("token_id" = String, Path, description = "The public token id (20 characters, as listed)", example = "J_5Z2qBcVZzDTNAxMf0J")),
    request_body(
        content = RotateBody,
        content_type = "application/json",
        description = "May be empty, which means `{}`: no grace period (the old token stops at once), and the new token keeps the old one's expiry",
    ),
    responses(
        (status = 201, description = "The new token, plaintext included (shown once)", body = SuccessEnvelope<CreatedTokenView>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn rotate_token(
    State(state): State<AdminState>,
    PathParam(token_id): PathParam,
    JsonBody(body): JsonBody<RotateBody>,
) -> Result<Response, ApiError> {
    let id = parse_token_id(&state.gate, &token_id)?;
    let RotatedToken { old, record, token } = state
        .gate
        .rotate_token(
            &id,
            Duration::from_secs(body.grace_seconds),
            body.expires_at,
        )
        .await?;
    let view = CreatedTokenView::new(record, &token, Some(old));
    Ok(success_response(StatusCode::CREATED, &view))
}

/// "Account not found", with how to create it.
pub(crate) fn account_not_found(account_id: &str) -> String {
    format!(
        "Account {account_id:?} not found; create it with PUT /admin/accounts/{{account_id}} and a body such as {{\"plan\": \"pro\"}}"
    )
}

//! The admin API: plans, accounts and tokens, behind `Authorization: Bearer $ADMIN_TOKEN`.
//!
//! | method & path | does |
//! | --- | --- |
//! | `GET /admin/plans` · `PUT /admin/plans/{plan}` · `PATCH /admin/plans/{plan}` | list / create or replace / change some settings of a plan |
//! | `PUT /admin/accounts/{account_id}` · `GET /admin/accounts/{account_id}` | upsert / read an account |
//! | `POST /admin/accounts/{account_id}/tokens` | create a token: `201`, plaintext in `data.token`, once |
//! | `GET /admin/accounts/{account_id}/tokens` | list an account's tokens (never a secret) |
//! | `GET /admin/tokens/{token_id}` · `DELETE /admin/tokens/{token_id}` | read / revoke (idempotent) |
//! | `POST /admin/tokens/{token_id}/rotate` | new token, old one stops after `grace_seconds` |
//! | `GET /admin/tokens/{token_id}/usage` | requests per hour, admitted and rate limited |
//! | `GET /admin/audit` | the audit log, newest first, filtered and paged |
//! | `POST /admin/leaks` | report leaked tokens: each of ours is revoked |
//! | `GET /admin/scopes` | the scopes tokens may be created with |
//!
//! Each handler carries its own OpenAPI description; [`admin_router`]
//! returns the router together with the document of its routes. Changes
//! are made as the actor `admin`, with the request's address and id, for
//! the audit log.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::StatusCode;
use serde::Deserialize;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::admin_auth::AdminAuth;
use super::envelope::{ApiError, JsonBody, PathParam, SuccessEnvelope};
use super::openapi::{
    AdminUnauthorized, BadRequest, NotFound, PayloadTooLarge, ServiceUnavailable,
};
use super::origin::RequestOrigin;
use crate::bearer::bearer_token;
use crate::gate::TokenGate;
use crate::manage::Manager;
use crate::manage::{ManageError, PlanUpdate};
use crate::store::{Account, Plan};

mod reports;
mod tokens;

use reports::{__path_audit, __path_report_leaks, audit, report_leaks};
// For the settings page's own token and security-log routes.
#[cfg(feature = "settings")]
pub(crate) use reports::{AuditPage, audit_page, audit_query};
#[cfg(feature = "settings")]
pub(crate) use tokens::parse_token_id;
use tokens::{
    __path_create_token, __path_get_token, __path_list_tokens, __path_revoke_token,
    __path_rotate_token, __path_token_usage, create_token, get_token, list_tokens, revoke_token,
    rotate_token, token_usage,
};

/// State of the admin router.
#[derive(Clone, Debug)]
pub(crate) struct AdminState {
    gate: TokenGate,
    manager: Manager,
    auth: Arc<AdminAuth>,
}

/// The admin routes (under `/admin`), guarded by `auth`, and their OpenAPI
/// description (merge it into your document).
pub fn admin_router(gate: TokenGate, auth: Arc<AdminAuth>) -> (Router, OpenApi) {
    let state = AdminState {
        manager: Manager::new(&gate),
        gate,
        auth,
    };
    let (router, document) =
        OpenApiRouter::<AdminState>::with_openapi(super::openapi::shared_components())
            .routes(or_405(routes!(list_scopes)))
            .routes(or_405(routes!(list_plans)))
            .routes(or_405(routes!(put_plan, patch_plan)))
            .routes(or_405(routes!(put_account, get_account)))
            .routes(or_405(routes!(create_token, list_tokens)))
            .routes(or_405(routes!(get_token, revoke_token)))
            .routes(or_405(routes!(rotate_token)))
            .routes(or_405(routes!(token_usage)))
            .routes(or_405(routes!(audit)))
            .routes(or_405(routes!(report_leaks)))
            .split_for_parts();
    let mut document = document;
    super::operations::prefix_operation_ids(&mut document, "admin");
    super::operations::optional_request_body(
        &mut document,
        "/admin/tokens/{token_id}/rotate",
        "post",
    );
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
        || async { ApiError::response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed") };
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

/// `PATCH /admin/plans/{plan}` body: only the fields present change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanPatchBody {
    /// Whether the plan may call the API; absent: unchanged (not nullable).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    api_access: Option<bool>,
    /// Requests per token in any rolling hour; absent: unchanged (not nullable).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = u32, example = 5000)]
    requests_per_hour: Option<u32>,
    /// The account-wide ceiling; absent: unchanged; null: removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, example = 20000)]
    account_requests_per_hour: Option<Option<u32>>,
    /// The cap on live tokens per account; absent: unchanged; null: removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, example = 10)]
    max_tokens: Option<Option<u32>>,
}

/// A field that is present, null or not: `Some(value)`, so that an absent
/// field (serde's default, `None`) differs from `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `PUT /admin/accounts/{account_id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountBody {
    /// The plan name, e.g. `pro`.
    #[schema(example = "pro")]
    plan: String,
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
    SuccessEnvelope::response(StatusCode::OK, &state.gate.scopes())
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
    let plans: Vec<Plan> = state.manager.plans().await?;
    Ok(SuccessEnvelope::response(StatusCode::OK, &plans))
}

/// Create or replace a plan.
///
/// Replaces the whole plan: an absent `account_requests_per_hour` or
/// `max_tokens` means none (`PATCH` changes only what it is given).
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
    origin: RequestOrigin,
    PathParam(name): PathParam,
    JsonBody(body): JsonBody<PlanBody>,
) -> Result<Response, ApiError> {
    let plan = Plan::new(name, body.api_access, body.requests_per_hour)
        .with_account_requests_per_hour(body.account_requests_per_hour)
        .with_max_tokens(body.max_tokens);
    let plan = state
        .manager
        .acting_as(origin.actor("admin"))
        .set_plan(&plan)
        .await?;
    Ok(SuccessEnvelope::response(StatusCode::OK, &plan))
}

/// Change some settings of a plan.
///
/// Only the fields in the body change; `null` removes an optional limit
/// (`account_requests_per_hour`, `max_tokens`). The plan must exist (`PUT`
/// creates one). Applies on the next request of every token on the plan.
#[utoipa::path(
    patch,
    path = "/admin/plans/{plan}",
    tag = "plans",
    operation_id = "admin_patch_plan",
    security(("admin_token" = [])),
    params(("plan" = String, Path, description = "Plan name: 1 to 64 of a-z, 0-9, '_' and '-'", example = "team")),
    request_body(content = PlanPatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The plan as stored", body = SuccessEnvelope<Plan>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn patch_plan(
    State(state): State<AdminState>,
    origin: RequestOrigin,
    PathParam(name): PathParam,
    JsonBody(body): JsonBody<PlanPatchBody>,
) -> Result<Response, ApiError> {
    let mut update = PlanUpdate::default();
    if let Some(api_access) = body.api_access {
        update = update.api_access(api_access);
    }
    if let Some(requests_per_hour) = body.requests_per_hour {
        update = update.requests_per_hour(requests_per_hour);
    }
    if let Some(ceiling) = body.account_requests_per_hour {
        update = update.account_requests_per_hour(ceiling);
    }
    if let Some(max_tokens) = body.max_tokens {
        update = update.max_tokens(max_tokens);
    }
    let plan = state
        .manager
        .acting_as(origin.actor("admin"))
        .update_plan(&name, &update)
        .await
        .map_err(|e| match e {
            // Here the plan is the resource: unknown is 404, as for an account.
            ManageError::UnknownPlan { plan, .. } => ApiError::NotFound(format!(
                "Plan {plan:?} not found (PUT /admin/plans/{plan} creates it)"
            )),
            other => other.into(),
        })?;
    Ok(SuccessEnvelope::response(StatusCode::OK, &plan))
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
    origin: RequestOrigin,
    PathParam(account_id): PathParam,
    JsonBody(body): JsonBody<AccountBody>,
) -> Result<Response, ApiError> {
    let account: Account = state
        .manager
        .acting_as(origin.actor("admin"))
        .set_account_plan(&account_id, &body.plan)
        .await?;
    Ok(SuccessEnvelope::response(StatusCode::OK, &account))
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
        (status = 400, response = BadRequest),
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
        .manager
        .account(&account_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(account_not_found(&account_id)))?;
    Ok(SuccessEnvelope::response(StatusCode::OK, &account))
}

/// "Account not found", with how to create it.
pub(crate) fn account_not_found(account_id: &str) -> String {
    format!(
        "Account {account_id:?} not found; create it with PUT /admin/accounts/{{account_id}} and a body such as {{\"plan\": \"pro\"}}"
    )
}

//! The admin API's token routes: create (shown once), list and read (with
//! the last 24 hours' requests), revoke, rotate, and hourly usage.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AdminState;
use crate::gate::TokenGate;
use crate::http::envelope::{ApiError, JsonBody, PathParam, SuccessEnvelope};
use crate::http::openapi::{
    AdminUnauthorized, BadRequest, Conflict, NotFound, PayloadTooLarge, PlanWithoutApiAccess,
    ServiceUnavailable, TokenCapReached,
};
use crate::http::origin::RequestOrigin;
use crate::manage::Manager;
use crate::manage::{CreatedToken, TokenSpec};
use crate::store::{TokenRecord, UsageHour};
use crate::token::TokenId;

/// `POST /admin/accounts/{account_id}/tokens` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTokenBody {
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
pub(super) struct RotateBody {
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

/// A token as listed: never its secret, with its recent use.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenView {
    #[serde(flatten)]
    record: TokenRecord,
    /// Requests admitted in the last 24 hours (counted up to 10 s ago).
    requests_24h: u64,
}

/// Views of `tokens`, with one query for their recent use.
pub(crate) async fn views(
    manager: &Manager,
    tokens: Vec<TokenRecord>,
) -> Result<Vec<TokenView>, ApiError> {
    let ids: Vec<TokenId> = tokens.iter().map(|t| t.id).collect();
    let totals = manager.requests_24h(&ids).await?;
    Ok(tokens
        .into_iter()
        .map(|record| TokenView {
            requests_24h: totals.get(&record.id).copied().unwrap_or(0),
            record,
        })
        .collect())
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
        (status = 403, response = PlanWithoutApiAccess),
        (status = 404, response = NotFound),
        (status = 409, response = TokenCapReached),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn create_token(
    State(state): State<AdminState>,
    origin: RequestOrigin,
    PathParam(account_id): PathParam,
    JsonBody(body): JsonBody<CreateTokenBody>,
) -> Result<Response, ApiError> {
    let spec = TokenSpec::new(body.name)
        .expires_at(body.expires_at)
        .scopes(body.scopes);
    let CreatedToken { record, token } = state
        .manager
        .acting_as(origin.actor("admin"))
        .create_token_with(&account_id, spec)
        .await?;
    let view = CreatedTokenView::new(record, &token, None);
    Ok(SuccessEnvelope::response(StatusCode::CREATED, &view))
}

/// List an account's tokens, revoked and expired ones included; never a secret.
#[utoipa::path(
    get,
    path = "/admin/accounts/{account_id}/tokens",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("account_id" = String, Path, description = "The host application's account id (1 to 255 characters)", example = "acct_42")),
    responses(
        (status = 200, description = "The account's tokens, without secrets", body = SuccessEnvelope<Vec<TokenView>>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn list_tokens(
    State(state): State<AdminState>,
    PathParam(account_id): PathParam,
) -> Result<Response, ApiError> {
    let tokens = state.manager.tokens(&account_id).await?;
    Ok(SuccessEnvelope::response(
        StatusCode::OK,
        &views(&state.manager, tokens).await?,
    ))
}

/// Read a token (never its secret).
#[utoipa::path(
    get,
    path = "/admin/tokens/{token_id}",
    tag = "tokens",
    security(("admin_token" = [])),
    params(("token_id" = String, Path, description = "The public token id (20 characters, as listed)", example = "J_5Z2qBcVZzDTNAxMf0J")),
    responses(
        (status = 200, description = "The token, without its secret", body = SuccessEnvelope<TokenView>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn get_token(
    State(state): State<AdminState>,
    PathParam(token_id): PathParam,
) -> Result<Response, ApiError> {
    let id = parse_token_id(&state.gate, &token_id)?;
    let token = state
        .manager
        .token(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Token not found".into()))?;
    let view = views(&state.manager, vec![token]).await?.remove(0);
    Ok(SuccessEnvelope::response(StatusCode::OK, &view))
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
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn revoke_token(
    State(state): State<AdminState>,
    origin: RequestOrigin,
    PathParam(token_id): PathParam,
) -> Result<Response, ApiError> {
    let id = parse_token_id(&state.gate, &token_id)?;
    let token = state
        .manager
        .acting_as(origin.actor("admin"))
        .revoke_token(&id)
        .await?;
    Ok(SuccessEnvelope::response(StatusCode::OK, &token))
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
        (status = 403, response = PlanWithoutApiAccess),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn rotate_token(
    State(state): State<AdminState>,
    origin: RequestOrigin,
    PathParam(token_id): PathParam,
    JsonBody(body): JsonBody<RotateBody>,
) -> Result<Response, ApiError> {
    let id = parse_token_id(&state.gate, &token_id)?;
    let (old, CreatedToken { record, token }) = state
        .manager
        .acting_as(origin.actor("admin"))
        .rotate_token(
            &id,
            Duration::from_secs(body.grace_seconds),
            body.expires_at,
        )
        .await?;
    let view = CreatedTokenView::new(record, &token, Some(old));
    Ok(SuccessEnvelope::response(StatusCode::CREATED, &view))
}

/// `GET /admin/tokens/{token_id}/usage` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageQuery {
    /// How many hours back, 1 to 2160 (90 days). Default 24.
    #[param(minimum = 1, maximum = 2160, example = 24)]
    hours: Option<u32>,
}

/// A token's hourly usage.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct UsageView {
    /// The token.
    #[schema(value_type = String)]
    token_id: TokenId,
    /// One entry per hour, oldest first, zeros included.
    hours: Vec<UsageHour>,
}

/// A token's requests per hour: admitted, and refused by the rate limit.
///
/// Counts from every instance add up; they reach the database every 10 s
/// (the last-use flush), and are kept 90 days.
#[utoipa::path(
    get,
    path = "/admin/tokens/{token_id}/usage",
    tag = "tokens",
    security(("admin_token" = [])),
    params(
        ("token_id" = String, Path, description = "The public token id (20 characters, as listed)", example = "J_5Z2qBcVZzDTNAxMf0J"),
        UsageQuery,
    ),
    responses(
        (status = 200, description = "The hourly series", body = SuccessEnvelope<UsageView>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn token_usage(
    State(state): State<AdminState>,
    PathParam(token_id): PathParam,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("Invalid query: {}", e.body_text())))?;
    let id = parse_token_id(&state.gate, &token_id)?;
    if state.manager.token(&id).await?.is_none() {
        return Err(ApiError::NotFound("Token not found".into()));
    }
    let hours = state
        .manager
        .token_usage(&id, query.hours.unwrap_or(24))
        .await?;
    Ok(SuccessEnvelope::response(
        StatusCode::OK,
        &UsageView {
            token_id: id,
            hours,
        },
    ))
}

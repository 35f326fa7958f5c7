//! The admin API's oversight routes: the audit log, and leak reports from
//! scanners other than GitHub and from support staff.

use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::http::envelope::{ApiError, JsonBody, SuccessEnvelope};
use crate::http::openapi::{AdminUnauthorized, BadRequest, PayloadTooLarge, ServiceUnavailable};
use crate::http::origin::RequestOrigin;
use crate::manage::{LeakOutcome, LeakReport};
use crate::store::{AuditEvent, AuditQuery};
use crate::token::TokenId;

/// Most tokens one `POST /admin/leaks` may report.
const MAX_LEAKS_PER_REQUEST: usize = 10_000;

/// `GET /admin/audit` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditParams {
    /// Only this account's events.
    #[param(example = "acct_42")]
    account_id: Option<String>,
    /// Only this token's events (its public id, 20 characters).
    #[param(min_length = 20, max_length = 20, example = "J_5Z2qBcVZzDTNAxMf0J")]
    token_id: Option<String>,
    /// Only this action, e.g. `token.revoked`.
    #[param(example = "token.revoked")]
    action: Option<String>,
    /// At most this many, 1 to 500. Default 100.
    #[param(minimum = 1, maximum = 500, example = 100)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[param(pattern = "^[0-9]+$", example = "1234")]
    before: Option<String>,
}

/// A page of audit events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    /// Newest first.
    events: Vec<AuditEvent>,
    /// Pass as `before` for the next (older) page; null on the last page.
    next: Option<String>,
}

/// Reads an audit query from request parameters.
pub(crate) fn audit_query(
    account_id: Option<String>,
    token_id: Option<&str>,
    action: Option<String>,
    limit: Option<u32>,
    before: Option<&str>,
) -> Result<AuditQuery, ApiError> {
    let token_id = token_id
        .map(|id| {
            id.parse::<TokenId>().map_err(|_| {
                ApiError::BadRequest("token_id is not a token id (20 characters, as listed)".into())
            })
        })
        .transpose()?;
    let before = before
        .map(|cursor| {
            cursor.parse::<i64>().map_err(|_| {
                ApiError::BadRequest("before must be a `next` cursor from a previous page".into())
            })
        })
        .transpose()?;
    Ok(AuditQuery {
        account_id,
        token_id,
        action,
        before,
        limit: limit.unwrap_or(100),
    })
}

/// One page of events for `query`, with the cursor of the next.
pub(crate) async fn audit_page(
    manager: &crate::manage::Manager,
    query: &AuditQuery,
) -> Result<AuditPage, ApiError> {
    let events = manager.audit_events(query).await?;
    let next = (events.len() == query.limit as usize)
        .then(|| events.last().map(|event| event.id.to_string()))
        .flatten();
    Ok(AuditPage { events, next })
}

/// Read the audit log: who created, revoked, rotated or reported which
/// token, changed which plan, when and from where.
///
/// Newest first; page with `before`. Events are never a secret or a hash.
/// Kept `AUDIT_RETENTION_DAYS` (400 by default).
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "audit",
    security(("admin_token" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of events", body = SuccessEnvelope<AuditPage>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn audit(
    State(state): State<AdminState>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::BadRequest(format!("Invalid query: {}", e.body_text())))?;
    let query = audit_query(
        params.account_id,
        params.token_id.as_deref(),
        params.action,
        params.limit,
        params.before.as_deref(),
    )?;
    Ok(SuccessEnvelope::response(
        StatusCode::OK,
        &audit_page(&state.manager, &query).await?,
    ))
}

/// `POST /admin/leaks` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LeaksBody {
    /// The leaked strings (whole tokens).
    #[schema(example = json!(["iit_..."]))]
    tokens: Vec<String>,
    /// Where they were found.
    #[serde(default)]
    #[schema(example = "https://pastebin.example/abc")]
    url: String,
    /// What found them (a scanner's name, `support`, ...).
    #[serde(default)]
    #[schema(example = "support")]
    source: String,
}

/// What a leak report did to one reported string.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct LeakResult {
    /// Lowercase hex SHA-256 of the reported string (never the string).
    token_hash: String,
    /// `revoked`, `already_revoked` or `not_ours`.
    #[schema(example = "revoked")]
    status: &'static str,
    /// The token's id, for a token of ours.
    #[schema(value_type = Option<String>)]
    token_id: Option<TokenId>,
}

/// Report leaked tokens: each of ours is revoked at once.
///
/// For secret scanners other than GitHub (which has `POST /leaks/github`)
/// and for support staff. A string that is not a token of ours (malformed,
/// unknown id, or another secret) changes nothing. Each revocation leaves a
/// `token.leaked` audit event with the URL and source.
#[utoipa::path(
    post,
    path = "/admin/leaks",
    tag = "audit",
    security(("admin_token" = [])),
    request_body(content = LeaksBody, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per reported string, in order", body = SuccessEnvelope<Vec<LeakResult>>),
        (status = 400, response = BadRequest),
        (status = 401, response = AdminUnauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn report_leaks(
    State(state): State<AdminState>,
    origin: RequestOrigin,
    JsonBody(body): JsonBody<LeaksBody>,
) -> Result<Response, ApiError> {
    if body.tokens.len() > MAX_LEAKS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_LEAKS_PER_REQUEST} tokens per report"
        )));
    }
    let management = state.manager.acting_as(origin.actor("admin"));
    let mut results = Vec::with_capacity(body.tokens.len());
    for token in &body.tokens {
        let report = LeakReport {
            token,
            url: &body.url,
            source: &body.source,
            kind: "",
        };
        let outcome = management.revoke_leaked(report).await?;
        let (status, token_id) = match outcome {
            LeakOutcome::Revoked(id) => ("revoked", Some(id)),
            LeakOutcome::AlreadyRevoked(id) => ("already_revoked", Some(id)),
            LeakOutcome::NotOurs => ("not_ours", None),
        };
        results.push(LeakResult {
            token_hash: crate::manage::token_hash(token),
            status,
            token_id,
        });
    }
    Ok(SuccessEnvelope::response(StatusCode::OK, &results))
}

//! The signed-in account's JSON API: its plan, and its own tokens.
//!
//! Every handler works on the account that [`SignIn`](super::SignIn)
//! names, never on one from the request: a token id of another account is
//! answered exactly like an unknown one (404), and nothing changes. The
//! lifecycle rules themselves (validation, rotation, what a revocation
//! does) are [`TokenGate`]'s, shared with the admin API and the CLI.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::Response;
use http::StatusCode;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response as ResponseObject;
use utoipa::{ToResponse, ToSchema};

use super::TrustedProxies;
use super::guard::CROSS_SITE_MESSAGE;
use super::sign_in::DynSignIn;
use crate::gate::TokenGate;
use crate::http::admin::{AuditPage, audit_page, audit_query, parse_token_id};
use crate::http::envelope::{ApiError, JsonBody, PathParam, SuccessEnvelope, success_response};
use crate::http::openapi::{BadRequest, Conflict, PayloadTooLarge, ServiceUnavailable};
use crate::http::origin::RequestOrigin;
use crate::manage::{
    Actor, CreatedToken, Management, RotatedToken, TokenSpec, validate_account_id,
};
use crate::response::FORBIDDEN_BODY;
use crate::store::{Plan, TokenRecord};
use crate::token::PlaintextToken;

/// State of the settings API.
#[derive(Clone)]
pub(super) struct SettingsState {
    pub(super) gate: TokenGate,
    pub(super) sign_in: Arc<dyn DynSignIn>,
    /// Whose `X-Forwarded-For` names the client, for the security log.
    pub(super) trusted_proxies: Arc<TrustedProxies>,
}

/// The answer when nobody is signed in.
pub(crate) const NOT_SIGNED_IN: &str = "Sign in to manage API tokens";

/// The expiry presets of `expires_in_days`, in days.
const EXPIRY_PRESETS: [i64; 4] = [7, 30, 60, 90];

/// The signed-in account's id, and who is acting (`settings:<account>`,
/// from the client's address, with the request id): the extractor every
/// handler starts with.
pub(super) struct SignedIn(String, Actor);

impl SignedIn {
    /// Changes made by the signed-in user, named in the audit log.
    fn manage<'g>(&self, gate: &'g TokenGate) -> Management<'g> {
        gate.acting_as(self.1.clone())
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not one.
fn client_ip(parts: &Parts, trusted: &TrustedProxies) -> Option<IpAddr> {
    let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    let mut client = peer.ip().to_canonical();
    if !trusted.contains(client) {
        return Some(client);
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    Some(client)
}

impl FromRequestParts<SettingsState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SettingsState,
    ) -> Result<Self, Self::Rejection> {
        let not_signed_in = || ApiError::NotSignedIn(NOT_SIGNED_IN.into());
        let account_id = state
            .sign_in
            .signed_in_account(parts)
            .await
            .ok_or_else(not_signed_in)?;
        if validate_account_id(&account_id).is_err() {
            tracing::warn!("the sign-in answered an invalid account id; treated as signed out");
            return Err(not_signed_in());
        }
        let origin = RequestOrigin {
            ip: client_ip(parts, &state.trusted_proxies),
            ..RequestOrigin::of(parts)
        };
        let actor = origin.actor(format!("settings:{account_id}"));
        Ok(Self(account_id, actor))
    }
}

// ------------------------------------------------------------------- views

/// The signed-in account: its plan and what the plan allows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettingsAccount {
    /// The signed-in account's id.
    #[schema(example = "acct_42")]
    account_id: String,
    /// The account's plan, or null for an account tokengate does not know yet
    /// (it has no API access until an operator puts it on a plan).
    #[schema(example = "pro")]
    plan: Option<String>,
    /// Whether the plan may call the API (and so create tokens).
    api_access: bool,
    /// Requests per token in any rolling hour (0 without API access).
    #[schema(example = 1000)]
    requests_per_hour: u32,
    /// Requests per rolling hour for all the account's tokens together, if the plan sets a ceiling.
    account_requests_per_hour: Option<u32>,
    /// Most live tokens the plan allows, if it sets a cap.
    max_tokens: Option<u32>,
    /// Tokens that work now (not revoked, expired or replaced by a rotation).
    live_tokens: usize,
    /// The scopes a new token can be limited to (the gate's declared
    /// scopes); empty when the API has none.
    scopes: Vec<String>,
}

/// One of the account's tokens, never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettingsToken {
    /// The public token id.
    #[schema(example = "J_5Z2qBcVZzDTNAxMf0J")]
    id: String,
    /// The token's label.
    #[schema(example = "CI")]
    name: String,
    /// The last four characters of the token.
    #[schema(example = "81Dw")]
    hint: String,
    /// Creation time, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// Last authenticated use (up to a few seconds behind), or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<OffsetDateTime>,
    /// When it stops working, or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
    /// When it was revoked, or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<OffsetDateTime>,
    /// `revoked` or `rotated`, or null; `rotated` without `revoked_at` still
    /// works until `expires_at` (a grace period).
    revoked_reason: Option<String>,
    /// For a rotated token, the id of its successor.
    replaced_by: Option<String>,
    /// What the token may do; `["*"]` is everything.
    #[schema(example = json!(["*"]))]
    scopes: Vec<String>,
    /// Requests admitted in the last 24 hours (counted up to 10 s ago);
    /// absent in the answer to a change.
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_24h: Option<u64>,
}

impl From<TokenRecord> for SettingsToken {
    fn from(record: TokenRecord) -> Self {
        Self {
            id: record.id.to_string(),
            name: record.name,
            hint: record.hint,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            revoked_reason: record.revoked_reason,
            replaced_by: record.replaced_by.map(|id| id.to_string()),
            scopes: record.scopes,
            requests_24h: None,
        }
    }
}

/// A new token: the only answer that holds its plaintext.
// No `Debug`: it would print the token.
#[derive(Serialize, ToSchema)]
pub(crate) struct SettingsNewToken {
    /// The public token id.
    #[schema(example = "J_5Z2qBcVZzDTNAxMf0J")]
    id: String,
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
    /// What the token may do; `["*"]` is everything.
    scopes: Vec<String>,
    /// For a rotation: the replaced token, with its new expiry or revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces: Option<SettingsToken>,
}

impl SettingsNewToken {
    fn new(record: TokenRecord, token: &PlaintextToken, replaces: Option<TokenRecord>) -> Self {
        Self {
            id: record.id.to_string(),
            name: record.name,
            // The one deliberate exposure of the plaintext.
            token: token.expose_secret().to_owned(),
            hint: record.hint,
            created_at: record.created_at,
            expires_at: record.expires_at,
            scopes: record.scopes,
            replaces: replaces.map(SettingsToken::from),
        }
    }
}

/// `POST {prefix}/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsCreateBody {
    /// A label, 1–200 characters.
    #[schema(min_length = 1, max_length = 200, example = "CI deploy")]
    name: String,
    /// Expiry, RFC 3339, in the future; null or absent: no expiry.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-01-01T00:00:00Z")]
    expires_at: Option<OffsetDateTime>,
    /// Instead of `expires_at`: expire in 7, 30, 60 or 90 days.
    #[schema(example = 30)]
    #[serde(default)]
    expires_in_days: Option<i64>,
    /// What the token may do; absent or `["*"]`: everything.
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// `POST {prefix}/tokens/{id}/rotate` body (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsRotateBody {
    /// Seconds the old token keeps working (0, the default, stops it at once; at most 30 days).
    #[serde(default)]
    #[schema(maximum = 2_592_000, example = 3600)]
    grace_seconds: Option<u64>,
    /// Expiry of the new token, RFC 3339 (default: the old token's expiry).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
}

impl SettingsCreateBody {
    /// The expiry asked for, from `expires_at` or `expires_in_days`.
    fn expiry(&self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, ApiError> {
        match (self.expires_at, self.expires_in_days) {
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "Give expires_at or expires_in_days, not both".into(),
            )),
            (None, Some(days)) if EXPIRY_PRESETS.contains(&days) => {
                Ok(Some(now + time::Duration::days(days)))
            }
            (None, Some(_)) => Err(ApiError::BadRequest(
                "expires_in_days must be 7, 30, 60 or 90".into(),
            )),
            (at, None) => Ok(at),
        }
    }
}

// ---------------------------------------------------------------- handlers

/// The plan of `account_id`, if the account exists and its plan does.
async fn plan_of(gate: &TokenGate, account_id: &str) -> Result<Option<Plan>, ApiError> {
    let Some(account) = gate.account(account_id).await? else {
        return Ok(None);
    };
    let plans = gate.plans().await?;
    Ok(plans.into_iter().find(|plan| plan.name == account.plan))
}

/// The account's tokens; none for an account tokengate does not know.
async fn tokens_of(gate: &TokenGate, account_id: &str) -> Result<Vec<TokenRecord>, ApiError> {
    match gate.tokens(account_id).await {
        Ok(tokens) => Ok(tokens),
        Err(crate::manage::ManageError::UnknownAccount(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The account's token `id`; another account's token is "not found", like an unknown one.
async fn own_token(gate: &TokenGate, account_id: &str, id: &str) -> Result<TokenRecord, ApiError> {
    let id = parse_token_id(gate, id)?;
    match gate.token(&id).await? {
        Some(token) if token.account_id == account_id => Ok(token),
        _ => Err(ApiError::NotFound("Token not found".into())),
    }
}

/// The documented 403 when the account's plan has no API access.
fn no_api_access() -> ApiError {
    // The message of the contract's fixed body (a test checks the bytes).
    ApiError::Forbidden("API access not available on your subscription plan".into())
}

/// The signed-in account: plan, API access and limits.
#[utoipa::path(
    get,
    path = "/account",
    tag = "settings",
    responses(
        (status = 200, description = "The signed-in account", body = SuccessEnvelope<SettingsAccount>),
        (status = 401, response = NotSignedIn),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn get_account(
    State(state): State<SettingsState>,
    SignedIn(account_id, _): SignedIn,
) -> Result<Response, ApiError> {
    let account = state.gate.account(&account_id).await?;
    let plan = match &account {
        Some(account) => (state.gate.plans().await?)
            .into_iter()
            .find(|plan| plan.name == account.plan),
        None => None,
    };
    let now = state.gate.now();
    let live_tokens = tokens_of(&state.gate, &account_id)
        .await?
        .iter()
        .filter(|token| is_live(token, now))
        .count();
    let api_access = plan.as_ref().is_some_and(|plan| plan.api_access);
    let view = SettingsAccount {
        account_id,
        plan: account.map(|account| account.plan),
        api_access,
        requests_per_hour: plan
            .as_ref()
            .filter(|plan| plan.api_access)
            .map_or(0, |plan| plan.requests_per_hour),
        account_requests_per_hour: plan
            .as_ref()
            .filter(|plan| plan.api_access)
            .and_then(|plan| plan.account_requests_per_hour),
        max_tokens: plan.as_ref().and_then(|plan| plan.max_tokens),
        live_tokens,
        scopes: state.gate.scopes().to_vec(),
    };
    Ok(success_response(StatusCode::OK, &view))
}

/// Whether a token works at `now` and has not been replaced by a rotation.
fn is_live(token: &TokenRecord, now: OffsetDateTime) -> bool {
    token.revoked_at.is_none()
        && token.expires_at.is_none_or(|at| at > now)
        && token.revoked_reason.is_none()
}

/// The signed-in account's tokens, revoked and expired ones included; never a secret.
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "settings",
    responses(
        (status = 200, description = "The account's tokens, without secrets", body = SuccessEnvelope<Vec<SettingsToken>>),
        (status = 401, response = NotSignedIn),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn list_tokens(
    State(state): State<SettingsState>,
    SignedIn(account_id, _): SignedIn,
) -> Result<Response, ApiError> {
    let records = tokens_of(&state.gate, &account_id).await?;
    let ids: Vec<_> = records.iter().map(|token| token.id).collect();
    let totals = state.gate.requests_24h(&ids).await?;
    let tokens: Vec<SettingsToken> = records
        .into_iter()
        .map(|record| {
            let requests = totals.get(&record.id).copied().unwrap_or(0);
            SettingsToken {
                requests_24h: Some(requests),
                ..SettingsToken::from(record)
            }
        })
        .collect();
    Ok(success_response(StatusCode::OK, &tokens))
}

/// Generate a new token for the signed-in account.
///
/// `data.token` is the plaintext token: this response is the only place it
/// ever appears (`Cache-Control: no-store`). Only plans with API access may
/// create tokens.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "settings",
    request_body(content = SettingsCreateBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The new token, plaintext included (shown once)", body = SuccessEnvelope<SettingsNewToken>),
        (status = 400, response = BadRequest),
        (status = 401, response = NotSignedIn),
        (status = 403, response = SettingsForbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = NotJson),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn create_token(
    State(state): State<SettingsState>,
    signed_in: SignedIn,
    JsonBody(body): JsonBody<SettingsCreateBody>,
) -> Result<Response, ApiError> {
    let account_id = &signed_in.0;
    if !plan_of(&state.gate, account_id)
        .await?
        .is_some_and(|plan| plan.api_access)
    {
        return Err(no_api_access());
    }
    let expires_at = body.expiry(state.gate.now())?;
    let spec = TokenSpec::new(body.name)
        .expires_at(expires_at)
        .scopes(body.scopes);
    let CreatedToken { record, token } = signed_in
        .manage(&state.gate)
        .create_token_with(account_id, spec)
        .await?;
    let view = SettingsNewToken::new(record, &token, None);
    Ok(success_response(StatusCode::CREATED, &view))
}

/// Revoke one of the signed-in account's tokens.
///
/// Idempotent. Another account's token id is 404, like an unknown one.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "settings",
    params(("id" = String, Path, description = "The public token id (as listed)", example = "J_5Z2qBcVZzDTNAxMf0J")),
    responses(
        (status = 200, description = "The token, now with `revoked_at`", body = SuccessEnvelope<SettingsToken>),
        (status = 401, response = NotSignedIn),
        (status = 403, response = SettingsForbidden),
        (status = 404, response = TokenNotFound),
        (status = 415, response = NotJson),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn revoke_token(
    State(state): State<SettingsState>,
    signed_in: SignedIn,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let token = own_token(&state.gate, &signed_in.0, &id).await?;
    let revoked = signed_in
        .manage(&state.gate)
        .revoke_token(&token.id)
        .await?;
    Ok(success_response(
        StatusCode::OK,
        &SettingsToken::from(revoked),
    ))
}

/// Replace one of the signed-in account's tokens with a new one.
///
/// The old token keeps working for `grace_seconds` (0 stops it at once).
/// `data.token` is the new plaintext token, shown once; `data.replaces` is
/// the old token with its new expiry or revocation.
#[utoipa::path(
    post,
    path = "/tokens/{id}/rotate",
    tag = "settings",
    params(("id" = String, Path, description = "The public token id (as listed)", example = "J_5Z2qBcVZzDTNAxMf0J")),
    request_body(content = SettingsRotateBody, content_type = "application/json", description = "May be empty: no grace period"),
    responses(
        (status = 201, description = "The new token, plaintext included (shown once)", body = SuccessEnvelope<SettingsNewToken>),
        (status = 400, response = BadRequest),
        (status = 401, response = NotSignedIn),
        (status = 403, response = SettingsForbidden),
        (status = 404, response = TokenNotFound),
        (status = 409, response = Conflict),
        (status = 415, response = NotJson),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn rotate_token(
    State(state): State<SettingsState>,
    signed_in: SignedIn,
    PathParam(id): PathParam,
    JsonBody(body): JsonBody<SettingsRotateBody>,
) -> Result<Response, ApiError> {
    let account_id = &signed_in.0;
    let token = own_token(&state.gate, account_id, &id).await?;
    if !plan_of(&state.gate, account_id)
        .await?
        .is_some_and(|plan| plan.api_access)
    {
        return Err(no_api_access());
    }
    let grace = Duration::from_secs(body.grace_seconds.unwrap_or(0));
    let RotatedToken { old, record, token } = signed_in
        .manage(&state.gate)
        .rotate_token(&token.id, grace, body.expires_at)
        .await?;
    let view = SettingsNewToken::new(record, &token, Some(old));
    Ok(success_response(StatusCode::CREATED, &view))
}

/// `GET {prefix}/audit` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct SecurityLogParams {
    /// At most this many, 1 to 500. Default 100.
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    before: Option<String>,
}

/// The signed-in account's security log: who created, revoked, rotated or
/// reported its tokens and changed its plan, when and from where.
///
/// Newest first; page with `before`. Never a secret.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "settings",
    params(SecurityLogParams),
    responses(
        (status = 200, description = "A page of the account's events", body = SuccessEnvelope<AuditPage>),
        (status = 400, response = BadRequest),
        (status = 401, response = NotSignedIn),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn security_log(
    State(state): State<SettingsState>,
    SignedIn(account_id, _): SignedIn,
    params: Result<Query<SecurityLogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::BadRequest(format!("Invalid query: {}", e.body_text())))?;
    let query = audit_query(
        Some(account_id),
        None,
        None,
        params.limit,
        params.before.as_deref(),
    )?;
    Ok(success_response(
        StatusCode::OK,
        &audit_page(&state.gate, &query).await?,
    ))
}

// ------------------------------------------------------- OpenAPI responses

fn error_component(description: &str, example: &str) -> RefOr<ResponseObject> {
    RefOr::T(crate::http::openapi::error_response(description, example).build())
}

/// 401: nobody is signed in.
pub(crate) struct NotSignedIn;

impl ToResponse<'static> for NotSignedIn {
    fn response() -> (&'static str, RefOr<ResponseObject>) {
        (
            "NotSignedIn",
            error_component(
                "Nobody is signed in (the host application's session, or the auth proxy's header from a trusted proxy).",
                NOT_SIGNED_IN,
            ),
        )
    }
}

/// 403: another site's request, or a plan without API access.
pub(crate) struct SettingsForbidden;

impl ToResponse<'static> for SettingsForbidden {
    fn response() -> (&'static str, RefOr<ResponseObject>) {
        let body: serde_json::Value = serde_json::from_str(FORBIDDEN_BODY).unwrap_or_default();
        (
            "SettingsForbidden",
            error_component(
                &format!(
                    "A state change from another site (`Sec-Fetch-Site` or `Origin`): \
                     `{CROSS_SITE_MESSAGE}`. Or, creating or rotating a token, the account's \
                     plan has no API access: the contract's body, shown."
                ),
                body["error"].as_str().unwrap_or_default(),
            ),
        )
    }
}

/// 404: no such token in the signed-in account.
pub(crate) struct TokenNotFound;

impl ToResponse<'static> for TokenNotFound {
    fn response() -> (&'static str, RefOr<ResponseObject>) {
        (
            "TokenNotFound",
            error_component(
                "No such token in the signed-in account (another account's token is answered the same way).",
                "Token not found",
            ),
        )
    }
}

/// 415: a state change without `Content-Type: application/json`.
pub(crate) struct NotJson;

impl ToResponse<'static> for NotJson {
    fn response() -> (&'static str, RefOr<ResponseObject>) {
        (
            "NotJson",
            error_component(
                "State changes must say `Content-Type: application/json` (so an HTML form cannot forge them); DELETE too, with an empty body.",
                "Content-Type must be application/json",
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn body(json: &str) -> SettingsCreateBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn expiry_from_a_date_or_a_preset() {
        let now = datetime!(2026-06-01 12:00 UTC);
        assert_eq!(body(r#"{"name": "a"}"#).expiry(now).unwrap(), None);
        assert_eq!(
            body(r#"{"name": "a", "expires_at": null}"#)
                .expiry(now)
                .unwrap(),
            None
        );
        assert_eq!(
            body(r#"{"name": "a", "expires_at": "2027-01-01T00:00:00Z"}"#)
                .expiry(now)
                .unwrap(),
            Some(datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(
            body(r#"{"name": "a", "expires_in_days": 30}"#)
                .expiry(now)
                .unwrap(),
            Some(datetime!(2026-07-01 12:00 UTC))
        );
        for bad in [
            r#"{"name": "a", "expires_in_days": 31}"#,
            r#"{"name": "a", "expires_in_days": 30, "expires_at": "2027-01-01T00:00:00Z"}"#,
        ] {
            assert_eq!(
                body(bad).expiry(now).unwrap_err().status_code(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_plan_refusal_is_the_contract_body() {
        let body = crate::http::envelope::to_json(&crate::http::envelope::ErrorEnvelope {
            success: false,
            error: no_api_access().to_string(),
        })
        .unwrap();
        assert_eq!(std::str::from_utf8(&body).unwrap(), FORBIDDEN_BODY);
    }
}

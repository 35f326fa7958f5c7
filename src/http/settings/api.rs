//! The signed-in account's JSON API: the handlers, and the extractor each
//! one starts with (who is signed in, and who is acting for the audit log).
//!
//! Every handler works on the account that [`SignIn`](super::SignIn)
//! names, never on one from the request: a token id of another account is
//! answered exactly like an unknown one (404), and nothing changes. This
//! module owns that scoping and the refusal of plans without API access; it
//! must not hold a lifecycle rule (validation, rotation, what a revocation
//! does: [`TokenGate`]'s, shared with the admin API and the CLI), nor define
//! the JSON it speaks (`views.rs`) or document its errors (`responses.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::Response;
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;

use super::TrustedProxies;
use super::responses::{NOT_SIGNED_IN, NotJson, NotSignedIn, SettingsForbidden, TokenNotFound};
use super::sign_in::DynSignIn;
use super::views::{
    SettingsAccount, SettingsCreateBody, SettingsNewToken, SettingsRotateBody, SettingsToken,
};
use crate::gate::TokenGate;
use crate::http::admin::{AuditPage, audit_page, audit_query, parse_token_id};
use crate::http::envelope::{ApiError, JsonBody, PathParam, SuccessEnvelope};
use crate::http::openapi::{
    BadRequest, Conflict, PayloadTooLarge, ServiceUnavailable, TokenCapReached,
};
use crate::http::origin::RequestOrigin;
use crate::manage::{
    Actor, CreatedToken, ManageError, Management, Manager, TokenSpec, counts_against_the_cap,
    has_api_access, validate_account_id,
};
use crate::store::TokenRecord;

/// State of the settings API.
#[derive(Clone)]
pub(super) struct SettingsState {
    pub(super) gate: TokenGate,
    pub(super) manager: Manager,
    pub(super) sign_in: Arc<dyn DynSignIn>,
    /// Whose `X-Forwarded-For` names the client, for the security log.
    pub(super) trusted_proxies: Arc<TrustedProxies>,
}

/// The signed-in account's id, and who is acting (`settings:<account>`,
/// from the client's address, with the request id): the extractor every
/// handler starts with.
pub(super) struct SignedIn(String, Actor);

impl SignedIn {
    /// Changes made by the signed-in user, named in the audit log.
    fn manage<'m>(&self, manager: &'m Manager) -> Management<'m> {
        manager.acting_as(self.1.clone())
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

// ---------------------------------------------------------------- handlers

/// The account's tokens; none for an account tokengate does not know.
async fn tokens_of(manager: &Manager, account_id: &str) -> Result<Vec<TokenRecord>, ApiError> {
    match manager.tokens(account_id).await {
        Ok(tokens) => Ok(tokens),
        Err(crate::manage::ManageError::UnknownAccount(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The account's token `id`; another account's token is "not found", like an unknown one.
async fn own_token(
    gate: &TokenGate,
    manager: &Manager,
    account_id: &str,
    id: &str,
) -> Result<TokenRecord, ApiError> {
    let id = parse_token_id(gate, id)?;
    match manager.token(&id).await? {
        Some(token) if token.account_id == account_id => Ok(token),
        _ => Err(ApiError::NotFound("Token not found".into())),
    }
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
    let account = state.manager.account(&account_id).await?;
    let plan = match &account {
        Some(account) => state.manager.plan(&account.plan).await?,
        None => None,
    };
    let now = state.manager.now();
    let live_tokens = tokens_of(&state.manager, &account_id)
        .await?
        .iter()
        .filter(|token| counts_against_the_cap(token, now))
        .count();
    let api_access = has_api_access(plan.as_ref());
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
    Ok(SuccessEnvelope::response(StatusCode::OK, &view))
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
    let records = tokens_of(&state.manager, &account_id).await?;
    let ids: Vec<_> = records.iter().map(|token| token.id).collect();
    let totals = state.manager.requests_24h(&ids).await?;
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
    Ok(SuccessEnvelope::response(StatusCode::OK, &tokens))
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
        (status = 409, response = TokenCapReached),
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
    let expires_at = body.expiry(state.manager.now())?;
    let spec = TokenSpec::new(body.name)
        .expires_at(expires_at)
        .scopes(body.scopes);
    let CreatedToken { record, token } = signed_in
        .manage(&state.manager)
        .create_token_with(account_id, spec)
        .await
        .map_err(|e| match e {
            // An account tokengate does not know has no plan, so no access.
            ManageError::UnknownAccount(_) => {
                ApiError::Forbidden(crate::response::NO_API_ACCESS_MESSAGE.into())
            }
            other => other.into(),
        })?;
    let view = SettingsNewToken::new(record, &token, None);
    Ok(SuccessEnvelope::response(StatusCode::CREATED, &view))
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
        (status = 400, response = BadRequest),
        (status = 401, response = NotSignedIn),
        (status = 403, response = SettingsForbidden),
        (status = 404, response = TokenNotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = NotJson),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub(super) async fn revoke_token(
    State(state): State<SettingsState>,
    signed_in: SignedIn,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let token = own_token(&state.gate, &state.manager, &signed_in.0, &id).await?;
    let revoked = signed_in
        .manage(&state.manager)
        .revoke_token(&token.id)
        .await?;
    Ok(SuccessEnvelope::response(
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
        (status = 413, response = PayloadTooLarge),
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
    let token = own_token(&state.gate, &state.manager, account_id, &id).await?;
    let grace = Duration::from_secs(body.grace_seconds.unwrap_or(0));
    let (old, CreatedToken { record, token }) = signed_in
        .manage(&state.manager)
        .rotate_token(&token.id, grace, body.expires_at)
        .await?;
    let view = SettingsNewToken::new(record, &token, Some(old));
    Ok(SuccessEnvelope::response(StatusCode::CREATED, &view))
}

/// `GET {prefix}/audit` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SecurityLogParams {
    /// At most this many, 1 to 500. Default 100.
    #[param(minimum = 1, maximum = 500, example = 100)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[param(pattern = "^[0-9]+$", example = "1234")]
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
    Ok(SuccessEnvelope::response(
        StatusCode::OK,
        &audit_page(&state.manager, &query).await?,
    ))
}

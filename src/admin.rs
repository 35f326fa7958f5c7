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

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::bearer::bearer_token;
use crate::error::{ApiError, JsonBody, PathParam};
use crate::gate::TokenGate;
use crate::manage::{CreatedToken, RotatedToken};
use crate::openapi::{
    AdminUnauthorized, BadRequest, Conflict, NotFound, PayloadTooLarge, ServiceUnavailable,
    SuccessEnvelope,
};
use crate::response::{error_response, success_response};
use crate::store::{Account, Plan, StoreError, TokenRecord, TokenStore};
use crate::token::TokenId;

/// Settings key of the SHA-256 (hex) of a generated admin token.
const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";
/// Prefix of generated admin tokens; distinct from API tokens on purpose.
pub const ADMIN_TOKEN_PREFIX: &str = "tgadmin_";

/// The admin credential, kept only as its SHA-256 and compared in constant time.
///
/// SHA-256 rather than argon2 is deliberate: a generated admin token has 256
/// random bits, so there is nothing to brute-force, and admin requests stay
/// cheap. An operator-chosen `ADMIN_TOKEN` should be as long and random.
#[derive(Clone)]
pub struct AdminAuth {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth(<redacted>)")
    }
}

/// A newly generated admin token. Redacted in `Debug`.
pub struct GeneratedAdminToken(String);

impl GeneratedAdminToken {
    /// The token, to print once.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for GeneratedAdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedAdminToken(<redacted>)")
    }
}

impl AdminAuth {
    /// Accepts exactly `token`.
    pub fn from_token(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the admin token, in time independent of its content.
    pub fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }

    /// The stored admin credential, or a new one if none exists yet.
    ///
    /// Returns the plaintext only when it was just generated, so the caller can
    /// show it once; the store keeps only its SHA-256.
    pub async fn load_or_generate(
        store: &dyn TokenStore,
    ) -> Result<(Self, Option<GeneratedAdminToken>), StoreError> {
        if let Some(hex) = store.get_setting(ADMIN_TOKEN_SETTING).await? {
            if let Some(digest) = decode_hex(&hex) {
                return Ok((Self { digest }, None));
            }
            tracing::warn!("stored admin token hash is corrupt; generating a new admin token");
        }
        Self::generate(store).await
    }

    /// Generates a new admin token, replacing any stored one.
    pub async fn generate(
        store: &dyn TokenStore,
    ) -> Result<(Self, Option<GeneratedAdminToken>), StoreError> {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let token = format!("{ADMIN_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let auth = Self::from_token(&token);
        store
            .put_setting(ADMIN_TOKEN_SETTING, &encode_hex(&auth.digest))
            .await?;
        Ok((auth, Some(GeneratedAdminToken(token))))
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// State of the admin router.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The gate whose tokens are managed.
    pub gate: TokenGate,
    /// The admin credential.
    pub auth: Arc<AdminAuth>,
}

/// The admin routes (under `/admin`), guarded by the admin token.
pub fn router(state: AdminState) -> Router {
    // Wrong methods and unknown paths are answered behind the admin check
    // too, so anything under /admin without the admin token is the same 401.
    // (The routes themselves are public: /openapi.json lists them.)
    let not_allowed =
        || async { error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed") };
    let not_found = || async { ApiError::NotFound("Not found".into()) };
    Router::new()
        .route("/admin/plans", get(list_plans).fallback(not_allowed))
        .route("/admin/plans/{plan}", put(put_plan).fallback(not_allowed))
        .route(
            "/admin/accounts/{account_id}",
            put(put_account).get(get_account).fallback(not_allowed),
        )
        .route(
            "/admin/accounts/{account_id}/tokens",
            post(create_token).get(list_tokens).fallback(not_allowed),
        )
        .route(
            "/admin/tokens/{token_id}",
            get(get_token).delete(revoke_token).fallback(not_allowed),
        )
        .route(
            "/admin/tokens/{token_id}/rotate",
            post(rotate_token).fallback(not_allowed),
        )
        .route("/admin", any(not_found))
        .route("/admin/{*rest}", any(not_found))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state)
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
pub struct PlanBody {
    /// Whether the plan may call the API.
    pub api_access: bool,
    /// Requests per token in any rolling hour.
    #[schema(example = 1000)]
    pub requests_per_hour: u32,
}

/// `PUT /admin/accounts/{account_id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    /// The plan name, e.g. `pro`.
    #[schema(example = "pro")]
    pub plan: String,
}

/// `POST /admin/accounts/{account_id}/tokens` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// A label, 1–200 characters.
    #[schema(min_length = 1, max_length = 200, example = "CI")]
    pub name: String,
    /// Optional expiry, RFC 3339, in the future.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// `POST /admin/tokens/{token_id}/rotate` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Seconds the old token keeps working (0, the default, stops it at once; at most 30 days).
    #[serde(default, deserialize_with = "null_as_zero")]
    #[schema(maximum = 2_592_000, example = 3600)]
    pub grace_seconds: u64,
    /// Expiry of the new token, RFC 3339 (default: the old token's expiry).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// `"grace_seconds": null` means the default, like leaving it out.
fn null_as_zero<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(0))
}

/// A created token: the only response that ever holds the plaintext.
// No `Debug`: it would print the token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedTokenView {
    /// The public token id.
    pub id: String,
    /// The owning account.
    pub account_id: String,
    /// The token's label.
    pub name: String,
    /// The plaintext token. Shown once: it cannot be retrieved again.
    pub token: String,
    /// The last four characters of the token.
    pub hint: String,
    /// Creation time, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Expiry, RFC 3339 UTC, or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// For a rotation: the replaced token, with its new expiry or revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<TokenRecord>,
}

impl CreatedTokenView {
    fn new(
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
            replaces,
        }
    }
}

fn parse_token_id(text: &str) -> Result<TokenId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound("Token not found".into()))
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
    let plans: Vec<Plan> = state.gate.store().list_plans().await?;
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
    let plan = state
        .gate
        .set_plan(&name, body.api_access, body.requests_per_hour)
        .await?;
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
        .store()
        .get_account(&account_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Account not found".into()))?;
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
    let CreatedToken { record, token } = state
        .gate
        .create_token(&account_id, &body.name, body.expires_at)
        .await?;
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
    let tokens = state.gate.store().list_tokens(&account_id).await?;
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
    let id = parse_token_id(&token_id)?;
    let token = state
        .gate
        .store()
        .get_token(&id)
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
    let id = parse_token_id(&token_id)?;
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
    let id = parse_token_id(&token_id)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_auth_accepts_only_its_token() {
        let auth = AdminAuth::from_token("tgadmin_secret");
        assert!(auth.accepts("tgadmin_secret"));
        assert!(!auth.accepts("tgadmin_secreT"));
        assert!(!auth.accepts(""));
        assert_eq!(format!("{auth:?}"), "AdminAuth(<redacted>)");
    }

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 32] = Sha256::digest(b"x").into();
        assert_eq!(decode_hex(&encode_hex(&bytes)), Some(bytes));
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(&"g".repeat(64)), None);
    }
}

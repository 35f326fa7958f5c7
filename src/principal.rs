//! The authenticated principal, and the axum extractor that hands it to handlers.
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use tokengate::Principal;
//!
//! async fn whoami(principal: Principal) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({
//!         "account": principal.account_id(),
//!         "plan": principal.plan(),
//!     }))
//! }
//!
//! // Mount behind `TokenGateLayer`; without it the extractor answers 500
//! // and names the missing layer.
//! let app: Router = Router::new().route("/api/v1/whoami", get(whoami));
//! ```

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::Response;
use http::StatusCode;
use http::request::Parts;

use crate::limit::{Decision, Quota};
use crate::response::{PolicyHeaders, fixed};
use crate::scope::Scopes;
use crate::store::Credential;
use crate::token::TokenId;

const HOUR_SECS: u64 = 3600;

/// Who is calling: the token, its account, its plan's limits and its
/// scopes. Cheap to clone.
#[derive(Clone)]
pub struct Principal(Arc<PrincipalData>);

struct PrincipalData {
    token_id: TokenId,
    /// The rate window it counts in: its own id, or the one it shares with
    /// the token it was rotated from.
    window_id: TokenId,
    account_id: String,
    plan: String,
    requests_per_hour: u32,
    account_requests_per_hour: Option<u32>,
    scopes: Scopes,
    /// Header values for the token's limit, and for the account's.
    headers: (PolicyHeaders, Option<PolicyHeaders>),
}

impl Principal {
    /// The principal of a verified credential.
    pub(crate) fn of(credential: &Credential) -> Self {
        let plan = &credential.plan;
        Self(Arc::new(PrincipalData {
            token_id: credential.token_id,
            window_id: credential.window_id.unwrap_or(credential.token_id),
            account_id: credential.account_id.clone(),
            plan: plan.name.clone(),
            requests_per_hour: plan.requests_per_hour,
            account_requests_per_hour: plan.account_requests_per_hour,
            scopes: Scopes::from_names(&credential.scopes),
            headers: (
                PolicyHeaders::new(plan.requests_per_hour, HOUR_SECS),
                plan.account_requests_per_hour
                    .map(|limit| PolicyHeaders::new(limit, HOUR_SECS)),
            ),
        }))
    }

    /// What its requests count against: its token's window (shared across
    /// a rotation) and its account's, if the plan has a ceiling.
    pub(crate) fn quota(&self) -> Quota<'_> {
        let data = &*self.0;
        Quota {
            token_id: data.token_id,
            window_id: data.window_id,
            requests_per_hour: data.requests_per_hour,
            account: data
                .account_requests_per_hour
                .map(|ceiling| (data.account_id.as_str(), ceiling)),
        }
    }

    /// Prebuilt rate-limit header values for the window a decision describes.
    pub(crate) fn policy_headers(&self, decision: &Decision) -> &PolicyHeaders {
        match &self.0.headers {
            (_, Some(account)) if account.describes(decision) => account,
            (token, _) => token,
        }
    }

    /// The public id of the token used.
    pub fn token_id(&self) -> TokenId {
        self.0.token_id
    }

    /// The host application's account id.
    pub fn account_id(&self) -> &str {
        &self.0.account_id
    }

    /// The account's plan name.
    pub fn plan(&self) -> &str {
        &self.0.plan
    }

    /// The plan's hourly request limit per token.
    pub fn requests_per_hour(&self) -> u32 {
        self.0.requests_per_hour
    }

    /// The plan's hourly ceiling for all of the account's tokens together, if it has one.
    pub fn account_requests_per_hour(&self) -> Option<u32> {
        self.0.account_requests_per_hour
    }

    /// Whether the token may use `scope` (a token created without scopes has every scope).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.allows(scope)
    }

    /// The token's scopes; `["*"]` means every scope.
    pub fn scopes(&self) -> Vec<String> {
        self.0.scopes.names()
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("token_id", &self.0.token_id)
            .field("account_id", &self.0.account_id)
            .field("plan", &self.0.plan)
            .field("requests_per_hour", &self.0.requests_per_hour)
            .field(
                "account_requests_per_hour",
                &self.0.account_requests_per_hour,
            )
            .field("scopes", &self.0.scopes)
            .finish()
    }
}

/// The extractor's answer on a route that `TokenGateLayer` does not guard
/// (a bug in the app, logged): a 500 that names the missing layer.
fn missing_token_gate_layer() -> Response {
    tracing::error!(
        "the Principal extractor was used on a route without TokenGateLayer; add .layer(gate.layer()) to it"
    );
    fixed(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"success": false, "error": "Internal error: route is missing TokenGateLayer"}"#,
    )
}

/// The principal the gate admitted. On a route that `TokenGateLayer` does
/// not guard, the rejection is a 500 that names the missing layer.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(missing_token_gate_layer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

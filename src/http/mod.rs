//! The HTTP side: the admin API router, the Settings > API Tokens router
//! (page and API), the JSON envelope and its error type, and the OpenAPI
//! pieces. Mount the routers you need in your app; the standalone server
//! mounts them all.
//!
//! Dependencies point one way: `envelope` and `operations` (edits of a
//! router's OpenAPI operations) are leaves; `openapi` describes the envelope
//! and the contract; the routers use them and the gate.

mod admin;
mod admin_auth;
mod check;
pub(crate) mod envelope;
#[cfg(feature = "github-leaks")]
mod github;
#[cfg(feature = "github-leaks")]
mod leaks;
mod openapi;
mod operations;
mod origin;
#[cfg(feature = "settings")]
mod settings;

pub use crate::redact::redact_token_shaped;
pub use admin::admin_router;
pub use admin_auth::{AdminAuth, AdminTokenOrigin};
pub use check::GateAnswer;
pub use envelope::{ApiError, SuccessEnvelope};
#[cfg(feature = "github-leaks")]
#[cfg_attr(docsrs, doc(cfg(feature = "github-leaks")))]
pub use github::GithubKeys;
#[cfg(feature = "github-leaks")]
#[cfg_attr(docsrs, doc(cfg(feature = "github-leaks")))]
pub use leaks::github_leak_router;
pub use openapi::document_gated_routes;
#[cfg(feature = "settings")]
#[cfg_attr(docsrs, doc(cfg(feature = "settings")))]
pub use settings::{ProxyHeaderSignIn, SettingsConfig, SignIn, TrustedProxies, settings_router};

use crate::manage::ManageError;

/// How a management failure is answered over HTTP: what went wrong and
/// what to do about it, never an internal cause.
impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Invalid(message) => ApiError::BadRequest(message),
            ManageError::UnknownAccount(account) => {
                ApiError::NotFound(admin::account_not_found(&account))
            }
            ManageError::UnknownPlan { plan, closest } => ApiError::BadRequest(match closest {
                Some(closest) => format!(
                    "Unknown plan {plan:?}: did you mean {closest:?}? (GET /admin/plans lists them)"
                ),
                None => format!("Unknown plan {plan:?} (GET /admin/plans lists them)"),
            }),
            ManageError::UnknownToken(_) => ApiError::NotFound("Token not found".into()),
            ManageError::TokenRevoked(_) => {
                ApiError::Conflict("Token is revoked and cannot be rotated".into())
            }
            ManageError::TokenExpired(_) => {
                ApiError::Conflict("Token has expired and cannot be rotated".into())
            }
            ManageError::Scope(message) => ApiError::BadRequest(message),
            ManageError::TooManyTokens { plan, max } => ApiError::Conflict(format!(
                "This account already has {max} active tokens, the most its plan ({plan}) allows; revoke one (or let one expire) to create another"
            )),
            ManageError::GraceOverTokenCap { plan, max } => ApiError::Conflict(format!(
                "A rotation with a grace period keeps the old token working beside the new one, and this account already has {max} active tokens, the most its plan ({plan}) allows (tokens in a grace period count); rotate with grace_seconds 0, or revoke a token first"
            )),
            ManageError::NoApiAccess { .. } => {
                ApiError::Forbidden(crate::response::NO_API_ACCESS_MESSAGE.into())
            }
            ManageError::TokenAlreadyRotated { successor, .. } => {
                ApiError::Conflict(match successor {
                    Some(successor) => format!(
                        "Token was already rotated; rotate its successor {successor} instead"
                    ),
                    None => "Token was already rotated; rotate its successor instead".into(),
                })
            }
            ManageError::Unavailable(cause) => {
                tracing::error!(error = %cause, "store unavailable");
                ApiError::Unavailable
            }
            ManageError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                ApiError::Internal
            }
        }
    }
}

//! The settings API's error answers as OpenAPI response components: 401
//! signed out, 403 cross-site or no API access, 404 another account's
//! token, 415 not JSON.
//!
//! This module owns how those answers are documented (and the signed-out
//! message itself). It must not answer a request: the handlers answer
//! through `ApiError`, the guard through its own refusals, and these
//! components only describe what they send.

use utoipa::ToResponse;
use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response as ResponseObject;

use super::guard::CROSS_SITE_MESSAGE;
use crate::response::FORBIDDEN_BODY;

/// The answer when nobody is signed in.
pub(crate) const NOT_SIGNED_IN: &str = "Sign in to manage API tokens";

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
                "A state change with a body (or a `Content-Type`) must say `Content-Type: application/json`, so an HTML form cannot forge it; a request with no body and no `Content-Type` (a `DELETE`, a rotation without options) needs none.",
                "Content-Type must be application/json",
            ),
        )
    }
}

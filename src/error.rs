//! The one error type at the HTTP boundary of the admin API, and the request
//! extractors that turn every malformed input into it.
//!
//! Every error leaves as `{"success": false, "error": "<message>"}` with
//! `Content-Type: application/json`. Internal causes are logged, never sent.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::manage::ManageError;
use crate::response::error_response;

/// An admin API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is invalid; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong admin token.
    #[error("Invalid or missing admin token")]
    Unauthorized,
    /// 404: the named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("Request body too large (limit 1 MB)")]
    PayloadTooLarge,
    /// 503: the database is unavailable.
    #[error("Service temporarily unavailable")]
    Unavailable,
    /// 500: a bug; details are in the log.
    #[error("Internal server error")]
    Internal,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status_code(), &self.to_string());
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(r#"Bearer realm="admin""#),
                );
            }
            // Like the gate's 503: a database hiccup is worth retrying soon.
            ApiError::Unavailable => {
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Invalid(message) => ApiError::BadRequest(message),
            ManageError::UnknownAccount => ApiError::NotFound("Account not found".into()),
            ManageError::UnknownPlan => ApiError::BadRequest("Unknown plan".into()),
            ManageError::UnknownToken => ApiError::NotFound("Token not found".into()),
            ManageError::TokenRevoked => {
                ApiError::Conflict("Token is revoked and cannot be rotated".into())
            }
            ManageError::TokenExpired => {
                ApiError::Conflict("Token has expired and cannot be rotated".into())
            }
            ManageError::TokenAlreadyRotated => {
                ApiError::Conflict("Token was already rotated; rotate its successor instead".into())
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

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ManageError::from(e).into()
    }
}

/// A JSON request body. Unlike `axum::Json` it does not insist on a
/// `Content-Type` (so `curl -d` works), rejects unknown fields, and answers
/// every failure with the error envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(ref e)
                        if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                    {
                        ApiError::PayloadTooLarge
                    }
                    _ => ApiError::BadRequest("Could not read the request body".into()),
                })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            // An empty body means "all defaults"; required fields still fail below.
            return serde_json::from_slice(b"{}")
                .map(JsonBody)
                .map_err(|e| ApiError::BadRequest(json_error_message(&e)));
        }
        // Every body is an object (serde would also take a struct as an array).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::BadRequest(
                "Invalid request body: expected a JSON object".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(json_error_message(&e)))
    }
}

fn json_error_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let mut detail = e.to_string();
    // serde may quote input back; keep messages short.
    if detail.len() > 200 {
        let mut cut = 200;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    // Say what serde means in the words of JSON, not of Rust types.
    let detail = if detail.contains("component could not be parsed") {
        // The only time fields are expiries.
        format!("expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z ({detail})")
    } else {
        detail
            .replace(
                "expected u32",
                "expected a whole number from 0 to 4294967295",
            )
            .replace("expected u64", "expected a whole number of at least 0")
            .replace("expected a boolean", "expected true or false")
    };
    let detail = match detail.find("expected struct ") {
        Some(at) => {
            let end = detail[at + 16..]
                .find(|c: char| !c.is_alphanumeric())
                .map_or(detail.len(), |n| at + 16 + n);
            format!("{}expected a JSON object{}", &detail[..at], &detail[end..])
        }
        None => detail,
    };
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!("Invalid JSON: {detail}"),
        Category::Data => format!("Invalid request body: {detail}"),
    }
}

/// One path segment as a string, with the error envelope on failure.
#[derive(Debug, Clone)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(segment)| PathParam(segment))
            .map_err(|_| ApiError::BadRequest("Invalid path parameter".into()))
    }
}

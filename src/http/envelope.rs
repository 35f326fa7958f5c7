//! The JSON envelope of every answer, and the one error type of the HTTP
//! routers (admin, settings, leak reports).
//!
//! Success: `{"success": true, "data": ...}`; error: `{"success": false,
//! "error": "<message>"}`, always `Content-Type: application/json`. Bodies
//! are written by one serializer, with the separators of the documented
//! bodies (`": "` and `", "`), so the contract's fixed bodies in
//! `response.rs` are exactly what this module would write for them (a test
//! checks it). Internal causes are logged, never sent.
//!
//! This module is a leaf: it imports nothing else of the crate.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Every error body of every endpoint: `{"success": false, "error": "<message>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"success": false, "error": "Invalid or missing API token"})))]
pub(crate) struct ErrorEnvelope {
    /// Always `false`.
    #[schema(schema_with = always_false)]
    pub success: bool,
    /// What went wrong, for people; internal causes are logged, never sent.
    pub error: String,
}

/// Every success body: `{"success": true, "data": <data>}`; `data` is an
/// object, or an array for lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuccessEnvelope<T> {
    /// Always `true`.
    #[schema(schema_with = always_true)]
    pub success: bool,
    /// The result.
    pub data: T,
}

impl<T: Serialize> SuccessEnvelope<T> {
    /// `data` in the envelope, `{"success": true, "data": <data>}`, written
    /// byte for byte like tokengate's own answers (so your routes behind the
    /// gate answer in the same style as its 401/403/429).
    ///
    /// ```
    /// use http::StatusCode;
    /// use serde_json::json;
    /// use tokengate::http::SuccessEnvelope;
    ///
    /// let response = SuccessEnvelope::response(StatusCode::OK, &json!({"plan": "pro"}));
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// ```
    pub fn response(status: StatusCode, data: &T) -> Response {
        #[derive(Serialize)]
        struct Borrowed<'a, T> {
            success: bool,
            data: &'a T,
        }
        match to_json(&Borrowed {
            success: true,
            data,
        }) {
            Ok(body) => json_response(status, body),
            Err(e) => {
                tracing::error!(error = %e, "failed to serialize a response");
                ApiError::Internal.into_response()
            }
        }
    }
}

fn always_false() -> utoipa::openapi::Schema {
    constant_bool(false)
}

fn always_true() -> utoipa::openapi::Schema {
    constant_bool(true)
}

fn constant_bool(value: bool) -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([value]))
        .description(Some(format!("Always `{value}`.")))
        .build()
        .into()
}

/// JSON with `": "` after keys and `", "` between members, the style of the
/// documented bodies.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Serializes `value` in the envelope's JSON style.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, Spaced,
    ))?;
    Ok(out)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// An error of the admin, settings and leak-report routes. Every variant
/// leaves as the error envelope with its status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is invalid; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 401 on `/admin`: missing or wrong admin token.
    #[error("Invalid or missing admin token")]
    Unauthorized,
    /// 401 with another message (the settings page's sign-in, leak reports).
    #[error("{0}")]
    NotSignedIn(String),
    /// 403: the request is understood and refused; the message says why.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("Request body too large (limit 1 MB)")]
    PayloadTooLarge,
    /// 415: a state-changing request without `Content-Type: application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 503: the database is unavailable.
    #[error("Service temporarily unavailable")]
    Unavailable,
    /// 500: a bug; details are in the log.
    #[error("Internal server error")]
    Internal,
}

impl ApiError {
    /// An error envelope, `{"success": false, "error": "<message>"}`, with
    /// any status: for answers no variant covers (a fallback's 404, a 405).
    pub fn response(status: StatusCode, message: &str) -> Response {
        let envelope = ErrorEnvelope {
            success: false,
            error: message.to_owned(),
        };
        // A struct of a bool and a string always serializes.
        json_response(status, to_json(&envelope).unwrap_or_default())
    }

    /// Reads a request body the way every admin route does: a JSON object
    /// (an empty body is `{}`), refused with a 400 whose message says what
    /// is wrong in the words of JSON (`Invalid JSON: ...`, `Invalid request
    /// body: ...`). For handlers that must check something before the body,
    /// as the server's `/v1/verify` checks its caller.
    pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
        parse_json_object(body)
    }

    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::NotSignedIn(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Self::response(self.status_code(), &self.to_string());
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="admin""#),
                );
            }
            // Like the gate's 503: a database hiccup is worth retrying soon.
            ApiError::Unavailable => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON request body. Unlike `axum::Json` it does not insist on a
/// `Content-Type` (so `curl -d` works on the admin API), rejects unknown
/// fields, and answers every failure with the error envelope.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonBody<T>(pub(crate) T);

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
        parse_json_object(&bytes).map(JsonBody)
    }
}

/// Parses a JSON object body; an empty body means `{}` (all defaults).
pub(crate) fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    // Every body is an object (serde would also take a struct as an array).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "Invalid request body: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(json_error_message(&e)))
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
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(segment)| PathParam(segment))
            .map_err(|_| ApiError::BadRequest("Invalid path parameter".into()))
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn envelopes_escape_messages_and_use_the_documented_separators() {
        let r = ApiError::response(StatusCode::BAD_REQUEST, "bad \"name\"\n");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body(r).await,
            r#"{"success": false, "error": "bad \"name\"\n"}"#
        );
        let r =
            SuccessEnvelope::response(StatusCode::OK, &serde_json::json!({"a": [1, 2], "b": {}}));
        assert_eq!(
            body(r).await,
            r#"{"success": true, "data": {"a": [1, 2], "b": {}}}"#
        );
    }

    #[test]
    fn bodies_must_be_objects() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Body {
            #[serde(default)]
            n: u32,
        }
        assert!(parse_json_object::<Body>(b"").is_ok());
        assert!(parse_json_object::<Body>(b" {\"n\": 3} ").is_ok());
        for bad in [&b"[]"[..], b"null", b"{\"n\": -1}", b"{"] {
            let e = parse_json_object::<Body>(bad).unwrap_err();
            assert_eq!(e.status_code(), StatusCode::BAD_REQUEST, "{e}");
        }
    }

    /// The contract's fixed bodies (`response.rs`) are what the envelope's
    /// serializer writes for them.
    #[test]
    fn contract_bodies_are_envelopes_to_the_byte() {
        for (body, message) in [
            (
                crate::response::UNAUTHORIZED_BODY,
                "Invalid or missing API token",
            ),
            (
                crate::response::FORBIDDEN_BODY,
                crate::response::NO_API_ACCESS_MESSAGE,
            ),
            (
                crate::response::UNAVAILABLE_BODY,
                "Service temporarily unavailable",
            ),
            (
                crate::response::rate_limited_body(7).as_str(),
                "Rate limit exceeded. Try again in 7 seconds.",
            ),
        ] {
            let envelope = ErrorEnvelope {
                success: false,
                error: message.to_owned(),
            };
            let written = to_json(&envelope).unwrap();
            assert_eq!(std::str::from_utf8(&written).unwrap(), body);
        }
    }
}

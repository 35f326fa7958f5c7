//! Requests in process (`oneshot` on a router) and what the contract says they answer.

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The 401 body, byte for byte.
pub const UNAUTHORIZED: &str = r#"{"success": false, "error": "Invalid or missing API token"}"#;
/// The 403 body, byte for byte.
pub const FORBIDDEN: &str =
    r#"{"success": false, "error": "API access not available on your subscription plan"}"#;
/// The 503 body, byte for byte.
pub const UNAVAILABLE: &str = r#"{"success": false, "error": "Service temporarily unavailable"}"#;

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl TestResponse {
    /// The body as JSON (panics, showing the body, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// A header as text (panics if missing).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}: {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// A numeric header.
    pub fn header_u64(&self, name: &str) -> u64 {
        self.header(name).parse().unwrap()
    }

    /// Asserts the error envelope with exactly this message.
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), "application/json");
        let json = self.json();
        assert_eq!(json["success"], false, "{}", self.body);
        assert_eq!(json["error"], message, "{}", self.body);
        assert_eq!(json.as_object().unwrap().len(), 2, "{}", self.body);
    }

    /// Asserts an error envelope with any message.
    pub fn assert_envelope(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), "application/json");
        let json = self.json();
        assert_eq!(json["success"], false, "{}", self.body);
        assert!(json["error"].is_string(), "{}", self.body);
    }
}

/// Sends `request` through `router` and reads the whole response.
pub async fn send(router: &Router, request: Request<Body>) -> TestResponse {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    TestResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A well-formed token for `good`'s id (default `iit_` prefix) with another
/// secret, made from `seed`, and a correct checksum: it passes every check
/// but the secret's.
pub fn forge_wrong_secret(good: &str, seed: impl std::fmt::Display) -> String {
    use base64::Engine;
    let text = format!("iit_{}{:W>44}", &good[4..24], seed);
    let checksum = crc32fast::hash(text.as_bytes()).to_be_bytes();
    format!(
        "{text}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(checksum)
    )
}

//! Shared test helpers: an in-process app on a temporary SQLite file, a store
//! that fails on demand, and a real server process spoken to over HTTP.
#![allow(dead_code)]

#[cfg(all(feature = "postgres", feature = "redis"))]
pub mod backends;
pub mod flaky;
pub mod process;
pub mod proxy;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tempfile::TempDir;
use tokengate::server::{AppState, app};
use tokengate::{AdminAuth, Argon2Params, SqliteStore, TokenGate, TokenGateBuilder, TokenStore};
use tower::ServiceExt;

pub use flaky::FlakyStore;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const UNAUTHORIZED: &str = r#"{"success": false, "error": "Invalid or missing API token"}"#;
pub const FORBIDDEN: &str =
    r#"{"success": false, "error": "API access not available on your subscription plan"}"#;
pub const UNAVAILABLE: &str = r#"{"success": false, "error": "Service temporarily unavailable"}"#;

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}: {:?}", self.headers))
            .to_str()
            .unwrap()
    }

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

/// The whole server app, in process, on a temporary SQLite file.
pub struct TestApp {
    pub gate: TokenGate,
    pub router: Router,
    pub store: Arc<FlakyStore>,
    pub dir: TempDir,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|b| b).await
    }

    /// Cheap argon2 (the default parameters are tested elsewhere), plus `configure`.
    pub async fn with(configure: impl FnOnce(TokenGateBuilder) -> TokenGateBuilder) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let sqlite = SqliteStore::connect(&url).await.unwrap();
        sqlite.migrate().await.unwrap();
        let store = Arc::new(FlakyStore::new(sqlite));
        let builder = TokenGate::builder(store.clone())
            .with_argon2_params(Argon2Params::insecure_fast_for_tests());
        let gate = configure(builder).build().unwrap();
        let router = app(AppState {
            gate: gate.clone(),
            admin: Arc::new(AdminAuth::from_token(ADMIN_TOKEN)),
        });
        Self {
            gate,
            router,
            store,
            dir,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let request = request
            .body(body.map(|b| Body::from(b.to_owned())).unwrap_or_default())
            .unwrap();
        send(&self.router, request).await
    }

    pub async fn admin(&self, method: Method, uri: &str, body: Option<&str>) -> TestResponse {
        self.call(method, uri, Some(&format!("Bearer {ADMIN_TOKEN}")), body)
            .await
    }

    pub async fn api(&self, token: &str) -> TestResponse {
        self.call(
            Method::GET,
            "/api/v1/external_tests",
            Some(&format!("Bearer {token}")),
            None,
        )
        .await
    }

    /// Puts `account` on `plan` and returns a fresh token for it.
    pub async fn token_for(&self, account: &str, plan: &str) -> String {
        self.gate.set_account_plan(account, plan).await.unwrap();
        self.gate
            .create_token(account, "test", None)
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned()
    }
}

/// A well-formed token for `good`'s id (default `iit_` prefix) with another
/// secret, made from `seed`, and a correct checksum: it passes every check
/// but argon2.
pub fn forge_wrong_secret(good: &str, seed: impl std::fmt::Display) -> String {
    use base64::Engine;
    let text = format!("iit_{}{:W>44}", &good[4..24], seed);
    let checksum = crc32fast::hash(text.as_bytes()).to_be_bytes();
    format!(
        "{text}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(checksum)
    )
}

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

//! The whole server app in process on a temporary SQLite file, and a typed
//! admin client for it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Method, Request};
use serde_json::json;
use tempfile::TempDir;
use tokengate::http::AdminAuth;
use tokengate::{Argon2Params, Manager, SqliteStore, TokenGate, TokenGateBuilder, TokenStore};
use tokengate_server::server::{AppState, app};
pub use tokengate_testkit::{FORBIDDEN, FlakyStore, TestResponse, UNAUTHORIZED, UNAVAILABLE, send};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The whole server app, in process, on a temporary SQLite file.
pub struct TestApp {
    pub gate: TokenGate,
    pub router: Router,
    pub store: Arc<FlakyStore>,
    /// Holds the database file for the app's lifetime.
    _dir: TempDir,
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
            .with_argon2_params(Argon2Params::insecure_fast_for_tests())
            .with_scopes(tokengate_server::demo::SCOPES);
        let gate = configure(builder).build().unwrap();
        let router = app(AppState::new(
            gate.clone(),
            AdminAuth::from_token(ADMIN_TOKEN).unwrap(),
        ));
        Self {
            gate,
            router,
            store,
            _dir: dir,
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

    /// The typed admin client.
    pub fn admin_api(&self) -> AdminClient<'_> {
        AdminClient { app: self }
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
        // Tokens are made on a plan with API access; then the account
        // moves to `plan` (it may have none: its tokens then get the 403).
        Manager::new(&self.gate)
            .set_account_plan(account, "pro")
            .await
            .unwrap();
        let token = Manager::new(&self.gate)
            .create_token(account, "test", None)
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        Manager::new(&self.gate)
            .set_account_plan(account, plan)
            .await
            .unwrap();
        token
    }
}

/// The admin API, one method per route, each asserting success and
/// returning `data`.
pub struct AdminClient<'a> {
    app: &'a TestApp,
}

impl AdminClient<'_> {
    async fn ok(
        &self,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let body = body.map(|b| b.to_string());
        let response = self.app.admin(method.clone(), uri, body.as_deref()).await;
        assert!(
            response.status.is_success(),
            "{method} {uri}: {} {}",
            response.status,
            response.body
        );
        let json = response.json();
        assert_eq!(json["success"], true, "{}", response.body);
        json["data"].clone()
    }

    pub async fn set_plan(
        &self,
        name: &str,
        api_access: bool,
        requests_per_hour: u32,
    ) -> serde_json::Value {
        self.ok(
            Method::PUT,
            &format!("/admin/plans/{name}"),
            Some(json!({"api_access": api_access, "requests_per_hour": requests_per_hour})),
        )
        .await
    }

    pub async fn set_account(&self, account: &str, plan: &str) -> serde_json::Value {
        self.ok(
            Method::PUT,
            &format!("/admin/accounts/{account}"),
            Some(json!({"plan": plan})),
        )
        .await
    }

    /// Creates a token; returns `data` (with the plaintext in `data.token`).
    pub async fn create_token(&self, account: &str, name: &str) -> serde_json::Value {
        self.ok(
            Method::POST,
            &format!("/admin/accounts/{account}/tokens"),
            Some(json!({"name": name})),
        )
        .await
    }

    pub async fn tokens(&self, account: &str) -> serde_json::Value {
        self.ok(
            Method::GET,
            &format!("/admin/accounts/{account}/tokens"),
            None,
        )
        .await
    }

    pub async fn revoke(&self, token_id: &str) -> serde_json::Value {
        self.ok(Method::DELETE, &format!("/admin/tokens/{token_id}"), None)
            .await
    }

    pub async fn rotate(&self, token_id: &str, grace_seconds: u64) -> serde_json::Value {
        self.ok(
            Method::POST,
            &format!("/admin/tokens/{token_id}/rotate"),
            Some(json!({"grace_seconds": grace_seconds})),
        )
        .await
    }
}

//! The settings router (`oneshot`, in process): the signed-in account's own
//! tokens only, browser safety (cross-site 403, JSON 415, security headers),
//! sign-in by a trusted proxy's header, the plan rule, and the OpenAPI
//! description. The page itself is driven in a real browser by the
//! server's tests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{HeaderName, Method, Request, StatusCode};
use serde_json::{Value, json};
use tokengate::http::{ProxyHeaderSignIn, SettingsConfig, TrustedProxies, settings_router};
use tokengate::{Argon2Params, Manager, SqliteStore, TokenGate, TokenStore};
use tokengate_testkit::{FORBIDDEN, TestResponse, send};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const PREFIX: &str = "/settings/api-tokens";
const NOT_SIGNED_IN: &str = r#"{"success": false, "error": "Sign in to manage API tokens"}"#;
const CROSS_SITE: &str = r#"{"success": false, "error": "Cross-site request refused"}"#;
const NOT_JSON: &str = r#"{"success": false, "error": "Content-Type must be application/json"}"#;
const PROXY: &str = "127.0.0.1:40000";
const SCOPES: [&str; 2] = ["reports:read", "reports:write"];

struct App {
    gate: TokenGate,
    settings: Router,
    /// A protected API route behind the gate, to try tokens on.
    api: Router,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    app_with(SettingsConfig::default()).await
}

async fn app_with(config: SettingsConfig) -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("settings.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let gate = TokenGate::builder(Arc::new(store))
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .with_scopes(SCOPES)
        .build()
        .unwrap();
    let sign_in = ProxyHeaderSignIn::new(
        HeaderName::from_static("x-forwarded-user"),
        TrustedProxies::loopback(),
    );
    let (settings, _) = settings_router(gate.clone(), sign_in, config);
    let api = Router::new()
        .route("/api/v1/me", get(|| async { "ok" }))
        .layer(gate.layer());
    Manager::new(&gate)
        .set_account_plan("acct_a", "pro")
        .await
        .unwrap();
    Manager::new(&gate)
        .set_account_plan("acct_b", "pro")
        .await
        .unwrap();
    Manager::new(&gate)
        .set_account_plan("acct_free", "free")
        .await
        .unwrap();
    App {
        gate,
        settings,
        api,
        _dir: dir,
    }
}

/// A request as the page sends it, through the trusted proxy that signed `account` in.
struct Call {
    method: Method,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    peer: Option<&'static str>,
}

impl Call {
    fn new(method: Method, path: &str) -> Self {
        let mut headers = vec![];
        if method != Method::GET {
            headers.push(("content-type", "application/json".to_owned()));
            headers.push(("sec-fetch-site", "same-origin".to_owned()));
        }
        Self {
            method,
            uri: format!("{PREFIX}{path}"),
            headers,
            body: None,
            peer: Some(PROXY),
        }
    }

    fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }

    fn post(path: &str, body: Value) -> Self {
        Self::new(Method::POST, path).body(body.to_string())
    }

    fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path)
    }

    fn by(self, account: &str) -> Self {
        self.header("x-forwarded-user", account)
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    fn without(mut self, name: &'static str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    fn body(mut self, body: String) -> Self {
        self.body = Some(body);
        self
    }

    fn via_peer(mut self, peer: Option<&'static str>) -> Self {
        self.peer = peer;
        self
    }

    async fn send(self, app: &App) -> TestResponse {
        let mut request = Request::builder().method(self.method).uri(self.uri);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let mut request = request
            .body(self.body.map(Body::from).unwrap_or_default())
            .unwrap();
        if let Some(peer) = self.peer {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        }
        send(&app.settings, request).await
    }
}

impl App {
    /// `data` of a successful call.
    async fn ok(&self, call: Call, status: u16) -> Value {
        let response = call.send(self).await;
        assert_eq!(response.status.as_u16(), status, "{}", response.body);
        let json = response.json();
        assert_eq!(json["success"], true, "{}", response.body);
        json["data"].clone()
    }

    async fn create(&self, account: &str, name: &str) -> Value {
        self.ok(
            Call::post("/tokens", json!({"name": name, "expires_at": null})).by(account),
            201,
        )
        .await
    }

    async fn api_status(&self, token: &str) -> StatusCode {
        let request = Request::builder()
            .uri("/api/v1/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        send(&self.api, request).await.status
    }

    /// The account's tokens, revoked ones included.
    async fn all_tokens(&self, account: &str) -> Vec<tokengate::TokenRecord> {
        Manager::new(&self.gate).tokens(account).await.unwrap()
    }

    async fn live_tokens(&self, account: &str) -> usize {
        self.all_tokens(account)
            .await
            .iter()
            .filter(|t| t.revoked_at.is_none())
            .count()
    }
}

#[tokio::test]
async fn a_signed_in_user_creates_lists_rotates_and_revokes_own_tokens() {
    let app = app().await;

    let account = app.ok(Call::get("/account").by("acct_a"), 200).await;
    assert_eq!(
        account,
        json!({
            "account_id": "acct_a", "plan": "pro", "api_access": true,
            "requests_per_hour": 1000, "account_requests_per_hour": null,
            "max_tokens": null, "live_tokens": 0,
            "scopes": ["reports:read", "reports:write"],
        })
    );

    let response = Call::post(
        "/tokens",
        json!({"name": "CI deploy", "expires_in_days": 30}),
    )
    .by("acct_a")
    .send(&app)
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.header("cache-control"), "no-store");
    let created = response.json()["data"].clone();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("iit_"), "{created}");
    assert_eq!(created["name"], "CI deploy");
    assert_eq!(created["scopes"], json!(["*"]));
    assert_eq!(created["hint"], token[token.len() - 4..]);
    let expires = time::OffsetDateTime::parse(
        created["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_30_days = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    assert!(
        (expires - in_30_days).abs() < time::Duration::minutes(1),
        "{expires}"
    );
    assert_eq!(app.api_status(&token).await, 200);

    // The list never holds the secret.
    let response = Call::get("/tokens").by("acct_a").send(&app).await;
    assert!(!response.body.contains(&token));
    assert!(!response.body.contains(&token[24..]));
    let list = response.json()["data"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let id = created["id"].as_str().unwrap();
    assert_eq!(list[0]["id"], id);
    for field in [
        "name",
        "hint",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_reason",
        "replaced_by",
        "scopes",
    ] {
        assert!(list[0].get(field).is_some(), "{field} missing: {}", list[0]);
    }
    assert_eq!(
        app.ok(Call::get("/account").by("acct_a"), 200).await["live_tokens"],
        1
    );

    // Rotate with a grace period: both work until it ends.
    let rotated = app
        .ok(
            Call::post(
                &format!("/tokens/{id}/rotate"),
                json!({"grace_seconds": 3600}),
            )
            .by("acct_a"),
            201,
        )
        .await;
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert_eq!(rotated["replaces"]["id"], id);
    assert_eq!(rotated["replaces"]["revoked_reason"], "rotated");
    assert!(rotated["replaces"]["expires_at"].is_string());
    assert_eq!(app.api_status(&token).await, 200);
    assert_eq!(app.api_status(&new_token).await, 200);

    // Revoke the new one: the next request with it is a 401.
    let new_id = rotated["id"].as_str().unwrap();
    let revoked = app
        .ok(Call::delete(&format!("/tokens/{new_id}")).by("acct_a"), 200)
        .await;
    assert!(revoked["revoked_at"].is_string());
    assert!(revoked.get("token").is_none());
    assert_eq!(app.api_status(&new_token).await, 401);
}

#[tokio::test]
async fn another_accounts_token_is_404_and_untouched() {
    let app = app().await;
    let theirs = app.create("acct_b", "B's token").await;
    let (id, token) = (
        theirs["id"].as_str().unwrap(),
        theirs["token"].as_str().unwrap(),
    );

    let not_found = r#"{"success": false, "error": "Token not found"}"#;
    for call in [
        Call::delete(&format!("/tokens/{id}")),
        Call::post(&format!("/tokens/{id}/rotate"), json!({"grace_seconds": 0})),
        Call::post(&format!("/tokens/{id}/rotate"), json!({})),
    ] {
        let response = call.by("acct_a").send(&app).await;
        assert_eq!(response.status, 404, "{}", response.body);
        assert_eq!(response.body, not_found);
    }
    // Exactly what an id that does not exist gets.
    let unknown = tokengate::test_util::mint(&tokengate::TokenFormat::default()).0;
    let response = Call::delete(&format!("/tokens/{unknown}"))
        .by("acct_a")
        .send(&app)
        .await;
    assert_eq!(
        (response.status.as_u16(), response.body.as_str()),
        (404, not_found)
    );

    let list = app.ok(Call::get("/tokens").by("acct_a"), 200).await;
    assert_eq!(list, json!([]));
    let stored = Manager::new(&app.gate).tokens("acct_b").await.unwrap();
    assert_eq!(stored.len(), 1, "no rotation happened");
    assert_eq!(stored[0].revoked_at, None);
    assert_eq!(stored[0].revoked_reason, None);
    assert_eq!(app.api_status(token).await, 200);
}

#[tokio::test]
async fn cross_site_state_changes_are_refused_and_change_nothing() {
    let app = app().await;
    let mine = app.create("acct_a", "mine").await;
    let id = mine["id"].as_str().unwrap();
    let create = || Call::post("/tokens", json!({"name": "forged"})).by("acct_a");

    for call in [
        create().header("sec-fetch-site", "cross-site"),
        create().header("sec-fetch-site", "same-site"),
        create()
            .without("sec-fetch-site")
            .header("host", "app.example")
            .header("origin", "https://evil.example"),
        create().without("sec-fetch-site").header("origin", "null"),
        Call::delete(&format!("/tokens/{id}"))
            .by("acct_a")
            .header("sec-fetch-site", "cross-site"),
        Call::post(&format!("/tokens/{id}/rotate"), json!({}))
            .by("acct_a")
            .header("sec-fetch-site", "cross-site"),
    ] {
        let response = call.send(&app).await;
        assert_eq!(response.status, 403, "{}", response.body);
        assert_eq!(response.body, CROSS_SITE);
        assert_eq!(response.header("content-security-policy"), CSP);
    }
    assert_eq!(app.all_tokens("acct_a").await.len(), 1);
    assert_eq!(app.live_tokens("acct_a").await, 1);
    assert_eq!(app.api_status(mine["token"].as_str().unwrap()).await, 200);

    // The same origin, said either way, passes.
    app.ok(create(), 201).await;
    let same_origin = create()
        .without("sec-fetch-site")
        .header("host", "app.example")
        .header("origin", "http://app.example");
    app.ok(same_origin, 201).await;
    assert_eq!(app.live_tokens("acct_a").await, 3);
}

#[tokio::test]
async fn state_changes_must_be_json() {
    let app = app().await;
    let mine = app.create("acct_a", "mine").await;
    let id = mine["id"].as_str().unwrap();
    let form = || {
        Call::new(Method::POST, "/tokens")
            .by("acct_a")
            .body("name=forged".into())
    };
    for call in [
        form().header("content-type", "application/x-www-form-urlencoded"),
        form().header("content-type", "text/plain"),
        form().header("content-type", "multipart/form-data; boundary=x"),
        form().without("content-type"),
        // A DELETE with a body is held to the same rule.
        Call::delete(&format!("/tokens/{id}"))
            .by("acct_a")
            .without("content-type")
            .body("name=forged".into()),
        Call::delete(&format!("/tokens/{id}"))
            .by("acct_a")
            .header("content-type", "application/x-www-form-urlencoded"),
    ] {
        let response = call.send(&app).await;
        assert_eq!(response.status, 415, "{}", response.body);
        assert_eq!(response.body, NOT_JSON);
    }
    assert_eq!(app.all_tokens("acct_a").await.len(), 1);
    assert_eq!(app.live_tokens("acct_a").await, 1);
    // With a charset parameter it is JSON.
    let charset = Call::post("/tokens", json!({"name": "ok"}))
        .by("acct_a")
        .header("content-type", "application/json; charset=utf-8");
    app.ok(charset, 201).await;
}

#[tokio::test]
async fn a_bodyless_delete_needs_no_content_type_but_must_be_same_origin() {
    let app = app().await;
    let mine = app.create("acct_a", "mine").await;
    let id = mine["id"].as_str().unwrap();
    let delete = || {
        Call::delete(&format!("/tokens/{id}"))
            .by("acct_a")
            .without("content-type")
    };
    // Cross-site, said either way: still refused, the token still works.
    for call in [
        delete().header("sec-fetch-site", "cross-site"),
        delete()
            .without("sec-fetch-site")
            .header("host", "app.example")
            .header("origin", "https://evil.example"),
    ] {
        let response = call.send(&app).await;
        assert_eq!(response.status, 403, "{}", response.body);
        assert_eq!(response.body, CROSS_SITE);
    }
    assert_eq!(app.api_status(mine["token"].as_str().unwrap()).await, 200);

    // What a generated client sends: no body, no Content-Type.
    let revoked = app.ok(delete(), 200).await;
    assert_eq!(revoked["id"], id);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(
        app.api_status(mine["token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );

    // A rotation without options needs no body either.
    let other = app.create("acct_a", "other").await;
    let rotate = Call::new(
        Method::POST,
        &format!("/tokens/{}/rotate", other["id"].as_str().unwrap()),
    )
    .by("acct_a")
    .without("content-type");
    let rotated = app.ok(rotate, 201).await;
    assert_eq!(rotated["replaces"]["id"], other["id"]);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = app().await;
    let page = Call::get("").send(&app).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(page.body.contains("<h1 id=\"tg-title\">API Tokens</h1>"));
    assert!(
        page.body
            .contains(r#"<body data-api-base="/settings/api-tokens">"#)
    );
    assert!(
        page.body
            .contains(r#"src="/settings/api-tokens/assets/settings.js""#)
    );
    assert!(!page.body.contains("{{PREFIX}}"));
    assert!(!page.body.contains("<script>"), "no inline script");

    let script = Call::get("/assets/settings.js").send(&app).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    let style = Call::get("/assets/settings.css").send(&app).await;
    assert_eq!(style.header("content-type"), "text/css; charset=utf-8");
    let cached = Call::get("/assets/settings.css")
        .header("if-none-match", style.header("etag"))
        .send(&app)
        .await;
    assert_eq!(cached.status, 304);

    let responses = [
        page,
        script,
        style,
        Call::get("/account").by("acct_a").send(&app).await,
        Call::get("/tokens").send(&app).await,            // 401
        Call::get("/nope").by("acct_a").send(&app).await, // 404
        Call::new(Method::PUT, "/tokens")
            .by("acct_a")
            .send(&app)
            .await, // 405
    ];
    for response in &responses {
        assert_eq!(
            response.header("content-security-policy"),
            CSP,
            "{}",
            response.body
        );
        assert_eq!(response.header("referrer-policy"), "no-referrer");
        assert_eq!(response.header("x-content-type-options"), "nosniff");
        assert_eq!(response.header("x-frame-options"), "DENY");
        assert_eq!(
            response.header("cross-origin-resource-policy"),
            "same-origin"
        );
    }
    assert_eq!(responses[0].header("cache-control"), "no-store");
    assert_eq!(responses[1].header("cache-control"), "no-cache");
    assert_eq!(responses[3].header("cache-control"), "no-store");
    responses[5].assert_error(404, "Not found");
    responses[6].assert_error(405, "Method not allowed");

    // A trailing slash finds the page.
    let slash = Call::get("/").send(&app).await;
    assert_eq!(slash.status, 308);
    assert_eq!(slash.header("location"), PREFIX);
}

#[tokio::test]
async fn without_sign_in_the_api_is_401() {
    let app = app().await;
    for call in [
        Call::get("/account"),
        Call::get("/tokens"),
        Call::post("/tokens", json!({"name": "x"})),
        Call::get("/account").header("x-forwarded-user", ""),
        Call::get("/account").header("x-forwarded-user", "   "),
        // Not a valid account id: signed out, not an error page.
        Call::get("/account").header("x-forwarded-user", &"a".repeat(256)),
    ] {
        let response = call.send(&app).await;
        assert_eq!(response.status, 401, "{}", response.body);
        assert_eq!(response.body, NOT_SIGNED_IN);
    }
    assert!(app.all_tokens("acct_a").await.is_empty());
    // The page itself holds no data: it loads and says to sign in again.
    assert_eq!(Call::get("").send(&app).await.status, 200);
}

#[tokio::test]
async fn a_sign_in_header_from_an_untrusted_peer_is_401() {
    let app = app().await;
    for peer in [Some("203.0.113.9:40000"), Some("[2001:db8::1]:40000"), None] {
        for call in [
            Call::get("/account"),
            Call::post("/tokens", json!({"name": "x"})),
        ] {
            let response = call.by("acct_a").via_peer(peer).send(&app).await;
            assert_eq!(response.status, 401, "{peer:?}: {}", response.body);
            assert_eq!(response.body, NOT_SIGNED_IN);
        }
    }
    assert!(app.all_tokens("acct_a").await.is_empty());
    // From the proxy it works; but the header twice is ambiguous, so nobody.
    assert_eq!(
        Call::get("/account").by("acct_a").send(&app).await.status,
        200
    );
    let mut twice = Call::get("/account").by("acct_a");
    twice.headers.push(("x-forwarded-user", "acct_b".into()));
    assert_eq!(twice.send(&app).await.status, 401);
}

#[tokio::test]
async fn a_plan_without_api_access_cannot_create_or_rotate() {
    let app = app().await;
    let account = app.ok(Call::get("/account").by("acct_free"), 200).await;
    assert_eq!(account["plan"], "free");
    assert_eq!(account["api_access"], false);
    assert_eq!(account["requests_per_hour"], 0);

    let response = Call::post("/tokens", json!({"name": "x"}))
        .by("acct_free")
        .send(&app)
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.body, FORBIDDEN);

    // A token made while the account was on Pro cannot be rotated on Free,
    // but can still be revoked.
    Manager::new(&app.gate)
        .set_account_plan("acct_free", "pro")
        .await
        .unwrap();
    let old = app.create("acct_free", "old").await;
    Manager::new(&app.gate)
        .set_account_plan("acct_free", "free")
        .await
        .unwrap();
    let id = old["id"].as_str().unwrap();
    let rotate = Call::post(&format!("/tokens/{id}/rotate"), json!({}))
        .by("acct_free")
        .send(&app)
        .await;
    assert_eq!(
        (rotate.status.as_u16(), rotate.body.as_str()),
        (403, FORBIDDEN)
    );
    assert_eq!(app.all_tokens("acct_free").await.len(), 1);
    app.ok(Call::delete(&format!("/tokens/{id}")).by("acct_free"), 200)
        .await;
    assert_eq!(app.api_status(old["token"].as_str().unwrap()).await, 401);

    // An account tokengate does not know has no plan, no tokens and no access.
    let stranger = app.ok(Call::get("/account").by("acct_new"), 200).await;
    assert_eq!(stranger["plan"], Value::Null);
    assert_eq!(stranger["api_access"], false);
    assert_eq!(
        app.ok(Call::get("/tokens").by("acct_new"), 200).await,
        json!([])
    );
    let response = Call::post("/tokens", json!({"name": "x"}))
        .by("acct_new")
        .send(&app)
        .await;
    assert_eq!(response.body, FORBIDDEN);
}

#[tokio::test]
async fn invalid_requests_are_400_and_create_nothing() {
    let app = app().await;
    for (body, says) in [
        (json!({"name": ""}), "name must be 1 to 200 characters"),
        (
            json!({"name": "x".repeat(201)}),
            "name must be 1 to 200 characters",
        ),
        (
            json!({"name": "x", "expires_in_days": 31}),
            "expires_in_days must be 7, 30, 60 or 90",
        ),
        (
            json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at must be in the future",
        ),
        (json!({"name": "x", "expires_at": "tomorrow"}), "RFC 3339"),
        (
            json!({"name": "x", "scopes": ["admin"]}),
            r#"unknown scope "admin"; known scopes: reports:read, reports:write"#,
        ),
        (
            json!({"name": "x", "plan": "enterprise"}),
            "unknown field `plan`",
        ),
    ] {
        let response = Call::post("/tokens", body.clone())
            .by("acct_a")
            .send(&app)
            .await;
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert!(
            response.json()["error"].as_str().unwrap().contains(says),
            "{body}: {}",
            response.body
        );
    }
    // A whole token where the id belongs is refused without echoing it.
    let mine = app.create("acct_a", "mine").await;
    let token = mine["token"].as_str().unwrap();
    let response = Call::delete(&format!("/tokens/{token}"))
        .by("acct_a")
        .send(&app)
        .await;
    assert_eq!(response.status, 400);
    assert!(!response.body.contains(token));
    assert_eq!(app.all_tokens("acct_a").await.len(), 1);
    assert_eq!(app.live_tokens("acct_a").await, 1);
}

#[tokio::test]
async fn a_custom_prefix_moves_the_page_and_the_api() {
    let config = SettingsConfig::default().with_prefix("/me/tokens").unwrap();
    let app = app_with(config).await;
    let request = |uri: &str| {
        let mut request = Request::builder()
            .uri(uri)
            .header("x-forwarded-user", "acct_a")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(PROXY.parse().unwrap()));
        request
    };
    let page = send(&app.settings, request("/me/tokens")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"data-api-base="/me/tokens""#));
    let account = send(&app.settings, request("/me/tokens/account")).await;
    assert_eq!(account.json()["data"]["account_id"], "acct_a");
    assert_eq!(send(&app.settings, request(PREFIX)).await.status, 404);
}

#[tokio::test]
async fn openapi_documents_the_settings_routes() {
    let gate = app().await.gate;
    let sign_in = ProxyHeaderSignIn::new(
        HeaderName::from_static("x-forwarded-user"),
        TrustedProxies::none(),
    );
    let (_, document) = settings_router(gate, sign_in, SettingsConfig::default());
    let json = serde_json::to_value(&document).unwrap();
    let paths = json["paths"].as_object().unwrap();
    let mut operations: Vec<String> = vec![];
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            assert_eq!(operation["tags"], json!(["settings"]), "{method} {path}");
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            operations.push(format!("{method} {path}"));
        }
    }
    operations.sort();
    assert_eq!(
        operations,
        [
            "delete /settings/api-tokens/tokens/{id}",
            "get /settings/api-tokens/account",
            "get /settings/api-tokens/audit",
            "get /settings/api-tokens/tokens",
            "post /settings/api-tokens/tokens",
            "post /settings/api-tokens/tokens/{id}/rotate",
        ]
    );
    let created = &paths["/settings/api-tokens/tokens"]["post"]["responses"];
    assert!(created["201"].is_object() && created["403"].is_object() && created["415"].is_object());
    // Every referenced component exists.
    let text = json.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let pointer = &reference[1..reference.find('"').unwrap()];
        assert!(json.pointer(pointer).is_some(), "dangling $ref {pointer}");
    }
    assert!(json["tags"][0]["name"] == "settings");
}

#[tokio::test]
async fn scopes_limits_and_recent_use_are_the_accounts() {
    let app = app().await;
    Manager::new(&app.gate)
        .set_plan(
            &tokengate::Plan::new("team", true, 2)
                .with_account_requests_per_hour(Some(500))
                .with_max_tokens(Some(2)),
        )
        .await
        .unwrap();
    Manager::new(&app.gate)
        .set_account_plan("acct_a", "team")
        .await
        .unwrap();
    let account = app.ok(Call::get("/account").by("acct_a"), 200).await;
    assert_eq!(account["account_requests_per_hour"], 500);
    assert_eq!(account["max_tokens"], 2);

    let reader = app
        .ok(
            Call::post(
                "/tokens",
                json!({"name": "reader", "scopes": ["reports:read"]}),
            )
            .by("acct_a"),
            201,
        )
        .await;
    assert_eq!(reader["scopes"], json!(["reports:read"]));
    let stored = Manager::new(&app.gate)
        .token(&reader["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.scopes, ["reports:read"]);

    // Three calls on a 2/hour plan: two admitted, then a 429.
    let token = reader["token"].as_str().unwrap();
    for _ in 0..3 {
        app.api_status(token).await;
    }
    app.gate.flush_last_use().await.unwrap();
    let listed = app.ok(Call::get("/tokens").by("acct_a"), 200).await;
    assert_eq!(listed[0]["requests_24h"], 2, "{listed}");

    // The plan's cap: a third live token is refused with a 409 that says why.
    app.create("acct_a", "second").await;
    let third = Call::post("/tokens", json!({"name": "third"}))
        .by("acct_a")
        .send(&app)
        .await;
    assert_eq!(third.status, StatusCode::CONFLICT, "{}", third.body);
    assert!(third.body.contains("revoke one"), "{}", third.body);
}

#[tokio::test]
async fn the_security_log_holds_the_accounts_own_events_by_its_user() {
    let app =
        app_with(SettingsConfig::default().with_trusted_proxies(TrustedProxies::loopback())).await;
    let created = app.create("acct_a", "laptop").await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.ok(
        Call::delete(&format!("/tokens/{id}"))
            .by("acct_a")
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-request-id", "req-from-the-page"),
        200,
    )
    .await;
    app.create("acct_b", "theirs").await;
    Manager::new(&app.gate)
        .create_token("acct_a", "by the app", None)
        .await
        .unwrap();

    let page = app.ok(Call::get("/audit").by("acct_a"), 200).await;
    let events = page["events"].as_array().unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("token.created", "app"),
            ("token.revoked", "settings:acct_a"),
            ("token.created", "settings:acct_a"),
            ("account.created", "app"),
        ]
    );
    assert!(events.iter().all(|e| e["account_id"] == "acct_a"));
    // The client behind the trusted proxy, not the proxy.
    assert_eq!(events[1]["source_ip"], "198.51.100.7");
    assert_eq!(events[1]["request_id"], "req-from-the-page");
    assert_eq!(events[2]["source_ip"], "127.0.0.1");
    assert_eq!(events[1]["token_id"], id.as_str());
    assert!(
        !page
            .to_string()
            .contains(created["token"].as_str().unwrap())
    );

    // Paged with `before`.
    let first = app.ok(Call::get("/audit?limit=3").by("acct_a"), 200).await;
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    let next = first["next"].as_str().unwrap();
    let rest = app
        .ok(
            Call::get(&format!("/audit?limit=3&before={next}")).by("acct_a"),
            200,
        )
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next"], Value::Null);

    // Another account's filters cannot be asked for; bad paging is a 400.
    for query in ["account_id=acct_b", "limit=0", "before=x"] {
        let response = Call::get(&format!("/audit?{query}"))
            .by("acct_a")
            .send(&app)
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}");
    }
    let anonymous = Call::get("/audit").send(&app).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body, NOT_SIGNED_IN);
}

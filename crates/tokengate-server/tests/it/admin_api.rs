//! Every admin endpoint, success and failure, against the real router in process.

use crate::support::{ADMIN_TOKEN, TestApp, UNAUTHORIZED};
use http::Method;
use serde_json::Value;
use tokengate::Manager;

const TOKEN_FIELDS: [&str; 12] = [
    "id",
    "account_id",
    "name",
    "hint",
    "created_at",
    "last_used_at",
    "expires_at",
    "revoked_at",
    "revoked_reason",
    "replaced_by",
    "scopes",
    "requests_24h",
];

async fn create(app: &TestApp, account: &str, body: &str) -> crate::support::TestResponse {
    app.admin(
        Method::POST,
        &format!("/admin/accounts/{account}/tokens"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn admin_routes_require_the_admin_token_and_reject_api_tokens_identically() {
    let app = TestApp::new().await;
    let api_token = app.token_for("acct_1", "pro").await;
    let answers: Vec<_> = [
        None,
        Some("Bearer wrong-admin-token".to_owned()),
        Some(format!("Bearer {api_token}")),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(format!("Bearer {ADMIN_TOKEN} extra")),
    ]
    .into_iter()
    .map(|auth| {
        let app = &app;
        async move {
            app.call(Method::GET, "/admin/plans", auth.as_deref(), None)
                .await
        }
    })
    .collect();
    for answer in answers {
        let response = answer.await;
        response.assert_error(401, "Invalid or missing admin token");
        assert_eq!(
            response.header("www-authenticate"),
            r#"Bearer realm="admin""#
        );
    }
    // And the admin token is not an API token.
    let response = app.api(ADMIN_TOKEN).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.body, UNAUTHORIZED);
}

#[tokio::test]
async fn plans_are_seeded_listed_and_upserted() {
    let app = TestApp::new().await;
    let response = app.admin(Method::GET, "/admin/plans", None).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        serde_json::json!({"success": true, "data": [
            {"name": "enterprise", "api_access": true, "requests_per_hour": 10000,
             "account_requests_per_hour": null, "max_tokens": null},
            {"name": "free", "api_access": false, "requests_per_hour": 0,
             "account_requests_per_hour": null, "max_tokens": null},
            {"name": "pro", "api_access": true, "requests_per_hour": 1000,
             "account_requests_per_hour": null, "max_tokens": null},
        ]})
    );

    let response = app
        .admin(
            Method::PUT,
            "/admin/plans/team",
            Some(r#"{"api_access": true, "requests_per_hour": 5000}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json()["data"],
        serde_json::json!({"name": "team", "api_access": true, "requests_per_hour": 5000,
                           "account_requests_per_hour": null, "max_tokens": null})
    );
    let response = app
        .admin(
            Method::PUT,
            "/admin/plans/pro",
            Some(r#"{"api_access": true, "requests_per_hour": 1200}"#),
        )
        .await;
    assert_eq!(response.json()["data"]["requests_per_hour"], 1200);
    let plans = app.admin(Method::GET, "/admin/plans", None).await.json();
    assert_eq!(plans["data"].as_array().unwrap().len(), 4);
}

/// `PUT` replaces the whole plan (absent limits are none); `PATCH` changes
/// only the fields it is given, `null` removing an optional limit.
#[tokio::test]
async fn put_replaces_a_plan_and_patch_changes_only_what_it_is_given() {
    let app = TestApp::new().await;
    let plan = |body: &str| {
        let app = &app;
        let body = body.to_owned();
        async move {
            let response = app
                .admin(Method::PATCH, "/admin/plans/team", Some(&body))
                .await;
            assert_eq!(response.status, 200, "{body}: {}", response.body);
            response.json()["data"].clone()
        }
    };
    // PATCH does not create: 404 in the envelope, nothing stored.
    app.admin(
        Method::PATCH,
        "/admin/plans/team",
        Some(r#"{"requests_per_hour": 5}"#),
    )
    .await
    .assert_error(
        404,
        "Plan \"team\" not found (PUT /admin/plans/team creates it)",
    );
    let response = app
        .admin(
            Method::PUT,
            "/admin/plans/team",
            Some(
                r#"{"api_access": true, "requests_per_hour": 1000,
                    "account_requests_per_hour": 3000, "max_tokens": 10}"#,
            ),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);

    let team = |access: bool, per_hour: u32, ceiling: Option<u32>, max: Option<u32>| {
        serde_json::json!({"name": "team", "api_access": access, "requests_per_hour": per_hour,
                           "account_requests_per_hour": ceiling, "max_tokens": max})
    };
    assert_eq!(
        plan(r#"{"requests_per_hour": 5000}"#).await,
        team(true, 5000, Some(3000), Some(10)),
        "PATCH keeps the limits it was not given"
    );
    assert_eq!(
        plan(r#"{"max_tokens": null}"#).await,
        team(true, 5000, Some(3000), None),
        "null removes a limit"
    );
    assert_eq!(plan("{}").await, team(true, 5000, Some(3000), None));
    assert_eq!(
        plan(r#"{"api_access": false, "account_requests_per_hour": null, "max_tokens": 2}"#).await,
        team(false, 5000, None, Some(2))
    );
    // The same rules as PUT: no API access with 0 requests is fine, with access it is not.
    app.admin(
        Method::PATCH,
        "/admin/plans/team",
        Some(r#"{"api_access": true, "requests_per_hour": 0}"#),
    )
    .await
    .assert_error(
        400,
        "requests_per_hour must be at least 1 for a plan with API access",
    );
    for body in [r#"{"x": 1}"#, r#"{"requests_per_hour": null}"#, "[]"] {
        app.admin(Method::PATCH, "/admin/plans/team", Some(body))
            .await
            .assert_envelope(400);
    }

    // PUT replaces: the limits it is not given are gone.
    let response = app
        .admin(
            Method::PUT,
            "/admin/plans/team",
            Some(r#"{"api_access": true, "requests_per_hour": 7}"#),
        )
        .await;
    assert_eq!(response.json()["data"], team(true, 7, None, None));
    let plans = app.admin(Method::GET, "/admin/plans", None).await.json();
    let stored = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "team")
        .cloned();
    assert_eq!(stored, Some(team(true, 7, None, None)));
}

#[tokio::test]
async fn plan_upserts_reject_bad_input() {
    let app = TestApp::new().await;
    for (path, body) in [
        ("/admin/plans/team", "{not json"),
        ("/admin/plans/team", r#"{"api_access": true}"#),
        (
            "/admin/plans/team",
            r#"{"api_access": "yes", "requests_per_hour": 1}"#,
        ),
        (
            "/admin/plans/team",
            r#"{"api_access": true, "requests_per_hour": -1}"#,
        ),
        (
            "/admin/plans/team",
            r#"{"api_access": true, "requests_per_hour": 1, "x": 1}"#,
        ),
        ("/admin/plans/team", ""),
        (
            "/admin/plans/Bad%20Name",
            r#"{"api_access": true, "requests_per_hour": 1}"#,
        ),
        ("/admin/plans/team", "[]"),
    ] {
        let response = app.admin(Method::PUT, path, Some(body)).await;
        response.assert_envelope(400);
    }
    // API access with no requests would answer every call with a 429 whose
    // "try again" never comes true; no access with 0 is the free plan.
    app.admin(
        Method::PUT,
        "/admin/plans/team",
        Some(r#"{"api_access": true, "requests_per_hour": 0}"#),
    )
    .await
    .assert_error(
        400,
        "requests_per_hour must be at least 1 for a plan with API access",
    );
    let response = app
        .admin(
            Method::PUT,
            "/admin/plans/team",
            Some(r#"{"api_access": false, "requests_per_hour": 0}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test]
async fn accounts_are_upserted_and_read() {
    let app = TestApp::new().await;
    let response = app
        .admin(
            Method::PUT,
            "/admin/accounts/acct_1",
            Some(r#"{"plan": "pro"}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let data = &response.json()["data"];
    assert_eq!(data["id"], "acct_1");
    assert_eq!(data["plan"], "pro");
    let created_at = data["created_at"].as_str().unwrap().to_owned();
    assert!(created_at.ends_with('Z'), "{created_at}");

    let response = app
        .admin(
            Method::PUT,
            "/admin/accounts/acct_1",
            Some(r#"{"plan": "enterprise"}"#),
        )
        .await;
    assert_eq!(response.json()["data"]["plan"], "enterprise");
    assert_eq!(response.json()["data"]["created_at"], created_at.as_str());

    let response = app.admin(Method::GET, "/admin/accounts/acct_1", None).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["data"]["plan"], "enterprise");

    // Injection-shaped ids are just ids.
    let response = app
        .admin(
            Method::PUT,
            "/admin/accounts/x'%3B%20DROP%20TABLE%20accounts%3B--",
            Some(r#"{"plan": "pro"}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["data"]["id"], "x'; DROP TABLE accounts;--");
    let response = app.admin(Method::GET, "/admin/plans", None).await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn account_errors() {
    let app = TestApp::new().await;
    app.admin(Method::GET, "/admin/accounts/nobody", None)
        .await
        .assert_error(404, &account_not_found("nobody"));
    app.admin(
        Method::PUT,
        "/admin/accounts/acct_1",
        Some(r#"{"plan": "platinum"}"#),
    )
    .await
    .assert_error(
        400,
        r#"Unknown plan "platinum" (GET /admin/plans lists them)"#,
    );
    app.admin(
        Method::PUT,
        "/admin/accounts/acct_1",
        Some(r#"{"plan": "Pro"}"#),
    )
    .await
    .assert_error(
        400,
        r#"Unknown plan "Pro": did you mean "pro"? (GET /admin/plans lists them)"#,
    );
    for body in [
        "{",
        "{}",
        r#"{"plan": 3}"#,
        r#"{"plan": "pro", "extra": true}"#,
    ] {
        app.admin(Method::PUT, "/admin/accounts/acct_1", Some(body))
            .await
            .assert_envelope(400);
    }
    let long_id = "a".repeat(256);
    app.admin(
        Method::PUT,
        &format!("/admin/accounts/{long_id}"),
        Some(r#"{"plan": "pro"}"#),
    )
    .await
    .assert_envelope(400);
}

#[tokio::test]
async fn token_creation_shows_the_token_once() {
    let app = TestApp::new().await;
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "pro")
        .await
        .unwrap();
    let response = create(&app, "acct_1", r#"{"name": "CI"}"#).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let data = response.json()["data"].clone();
    let token = data["token"].as_str().unwrap();
    assert!(app.gate.format().is_well_formed(token));
    assert_eq!(&token[4..24], data["id"].as_str().unwrap());
    assert_eq!(data["name"], "CI");
    assert_eq!(data["account_id"], "acct_1");
    assert_eq!(data["hint"], &token[token.len() - 4..]);
    assert_eq!(data["expires_at"], Value::Null);
    assert!(data["created_at"].as_str().unwrap().ends_with('Z'));

    // It works, and no other response ever shows it again.
    assert_eq!(app.api(token).await.status, 200);
    let id = data["id"].as_str().unwrap();
    let listed = app
        .admin(Method::GET, "/admin/accounts/acct_1/tokens", None)
        .await;
    let shown = app
        .admin(Method::GET, &format!("/admin/tokens/{id}"), None)
        .await;
    for response in [&listed, &shown] {
        assert_eq!(response.status, 200);
        assert!(!response.body.contains(token), "{}", response.body);
        assert!(!response.body.contains(&token[24..68]), "{}", response.body);
        assert!(!response.body.contains("argon2"), "{}", response.body);
    }
    let listed = listed.json()["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    let fields: Vec<_> = listed[0].as_object().unwrap().keys().cloned().collect();
    let mut expected: Vec<_> = TOKEN_FIELDS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut fields_sorted = fields.clone();
    fields_sorted.sort();
    assert_eq!(fields_sorted, expected);
    assert_eq!(shown.json()["data"], listed[0]);
}

#[tokio::test]
async fn token_creation_validates_input() {
    let app = TestApp::new().await;
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "pro")
        .await
        .unwrap();
    create(&app, "nobody", r#"{"name": "CI"}"#)
        .await
        .assert_error(404, &account_not_found("nobody"));
    let ok_name = "n".repeat(200);
    let response = create(&app, "acct_1", &format!(r#"{{"name": "{ok_name}"}}"#)).await;
    assert_eq!(response.status, 201, "{}", response.body);
    let long_name = "n".repeat(201);
    create(&app, "acct_1", &format!(r#"{{"name": "{long_name}"}}"#))
        .await
        .assert_error(400, "name must be 1 to 200 characters");
    let huge_name = "n".repeat(100_000);
    create(&app, "acct_1", &format!(r#"{{"name": "{huge_name}"}}"#))
        .await
        .assert_error(400, "name must be 1 to 200 characters");
    for body in [
        "",
        "{",
        "{}",
        r#"{"name": ""}"#,
        r#"{"name": 5}"#,
        r#"{"name": "CI", "expires_at": "tomorrow"}"#,
        r#"{"name": "CI", "scopes": ["all"]}"#,
        r#"{"name": "a\u0000b"}"#,
    ] {
        create(&app, "acct_1", body).await.assert_envelope(400);
    }
    create(
        &app,
        "acct_1",
        r#"{"name": "CI", "expires_at": "2001-01-01T00:00:00Z"}"#,
    )
    .await
    .assert_error(400, "expires_at must be in the future");

    let response = create(
        &app,
        "acct_1",
        r#"{"name": "CI", "expires_at": "2099-01-01T12:00:00+02:00"}"#,
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(
        response.json()["data"]["expires_at"],
        "2099-01-01T10:00:00Z"
    );
}

#[tokio::test]
async fn token_lookup_errors() {
    let app = TestApp::new().await;
    app.admin(Method::GET, "/admin/accounts/nobody/tokens", None)
        .await
        .assert_error(404, &account_not_found("nobody"));
    let unknown = tokengate::TokenId::random();
    for path in [
        format!("/admin/tokens/{unknown}"),
        "/admin/tokens/short".to_owned(),
        "/admin/tokens/'%20OR%201=1%20--".to_owned(),
    ] {
        app.admin(Method::GET, &path, None)
            .await
            .assert_error(404, "Token not found");
        app.admin(Method::DELETE, &path, None)
            .await
            .assert_error(404, "Token not found");
        app.admin(Method::POST, &format!("{path}/rotate"), None)
            .await
            .assert_error(404, "Token not found");
    }
}

#[tokio::test]
async fn revoke_is_idempotent_and_effective_on_the_next_request() {
    let app = TestApp::new().await;
    let token = app.token_for("acct_1", "pro").await;
    let id = &token[4..24];
    assert_eq!(app.api(&token).await.status, 200);

    let first = app
        .admin(Method::DELETE, &format!("/admin/tokens/{id}"), None)
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let revoked_at = first.json()["data"]["revoked_at"].clone();
    assert!(revoked_at.is_string());
    assert_eq!(first.json()["data"]["revoked_reason"], "revoked");
    assert_eq!(app.api(&token).await.body, UNAUTHORIZED);

    let second = app
        .admin(Method::DELETE, &format!("/admin/tokens/{id}"), None)
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["data"]["revoked_at"], revoked_at);
}

#[tokio::test]
async fn rotation_without_grace_stops_the_old_token_at_once() {
    let app = TestApp::new().await;
    let old = app.token_for("acct_1", "pro").await;
    assert_eq!(app.api(&old).await.status, 200);
    let response = app
        .admin(
            Method::POST,
            &format!("/admin/tokens/{}/rotate", &old[4..24]),
            None,
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let data = response.json()["data"].clone();
    let new = data["token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(data["name"], "test");
    assert_eq!(data["account_id"], "acct_1");
    assert_eq!(data["replaces"]["id"], &old[4..24]);
    assert_eq!(data["replaces"]["revoked_reason"], "rotated");
    assert_eq!(app.api(&old).await.body, UNAUTHORIZED);
    assert_eq!(app.api(new).await.status, 200);
}

#[tokio::test]
async fn rotation_with_grace_keeps_the_old_token_until_then() {
    let app = TestApp::new().await;
    let old = app.token_for("acct_1", "pro").await;
    let response = app
        .admin(
            Method::POST,
            &format!("/admin/tokens/{}/rotate", &old[4..24]),
            Some(r#"{"grace_seconds": 2}"#),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let data = response.json()["data"].clone();
    assert!(data["replaces"]["expires_at"].is_string());
    assert_eq!(data["replaces"]["revoked_at"], Value::Null);
    let new = data["token"].as_str().unwrap().to_owned();
    assert_eq!(app.api(&old).await.status, 200);
    assert_eq!(app.api(&new).await.status, 200);
    // Just inside the grace, on the gate's test clock, then past it.
    app.gate.step_wall_clock(time::Duration::seconds(1));
    assert_eq!(app.api(&old).await.status, 200);
    app.gate.step_wall_clock(time::Duration::milliseconds(1100));
    assert_eq!(app.api(&old).await.body, UNAUTHORIZED);
    assert_eq!(app.api(&new).await.status, 200);
}

#[tokio::test]
async fn rotation_errors() {
    let app = TestApp::new().await;
    let token = app.token_for("acct_1", "pro").await;
    let path = format!("/admin/tokens/{}/rotate", &token[4..24]);
    for body in [
        "{",
        r#"{"grace_seconds": -1}"#,
        r#"{"grace_seconds": "1h"}"#,
        r#"{"grace": 1}"#,
    ] {
        app.admin(Method::POST, &path, Some(body))
            .await
            .assert_envelope(400);
    }
    for (body, message) in [
        (
            r#"{"grace_seconds": "1h"}"#,
            r#"Invalid request body: invalid type: string "1h", expected a whole number of at least 0 at line 1 column 22"#,
        ),
        ("[]", "Invalid request body: expected a JSON object"),
        ("null", "Invalid request body: expected a JSON object"),
        (
            r#"{"expires_at": "tomorrow"}"#,
            "Invalid request body: expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z",
        ),
    ] {
        let response = app.admin(Method::POST, &path, Some(body)).await;
        assert_eq!(response.status, 400, "{body}");
        assert!(
            response.json()["error"]
                .as_str()
                .unwrap()
                .starts_with(message),
            "{body}: {}",
            response.body
        );
    }
    app.admin(Method::POST, &path, Some(r#"{"grace_seconds": 2592001}"#))
        .await
        .assert_error(400, "grace_seconds must be at most 2592000 (30 days)");
    Manager::new(&app.gate)
        .revoke_token(&token[4..24].parse().unwrap())
        .await
        .unwrap();
    app.admin(Method::POST, &path, None)
        .await
        .assert_error(409, "Token is revoked and cannot be rotated");
}

/// The successor keeps the old token's expiry; a token in its grace period or
/// past its expiry cannot be rotated (that would mint a live token from a dead one).
#[tokio::test]
async fn rotation_keeps_the_expiry_and_refuses_expired_or_rotated_tokens() {
    let app = TestApp::new().await;
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "pro")
        .await
        .unwrap();
    let response = create(
        &app,
        "acct_1",
        r#"{"name": "ci", "expires_at": "2999-06-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let id = response.json()["data"]["id"].as_str().unwrap().to_owned();
    let rotate = |id: String, body: Option<&'static str>| {
        let app = &app;
        async move {
            app.admin(Method::POST, &format!("/admin/tokens/{id}/rotate"), body)
                .await
        }
    };
    let rotated = rotate(id.clone(), Some(r#"{"grace_seconds": 60}"#)).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let data = rotated.json()["data"].clone();
    assert_eq!(data["expires_at"], "2999-06-01T00:00:00Z");
    rotate(id.clone(), None).await.assert_error(
        409,
        &format!(
            "Token was already rotated; rotate its successor {} instead",
            data["id"].as_str().unwrap()
        ),
    );
    // An explicit expiry wins.
    let successor = data["id"].as_str().unwrap().to_owned();
    let rotated = rotate(successor, Some(r#"{"expires_at": "2998-01-01T00:00:00Z"}"#)).await;
    assert_eq!(rotated.json()["data"]["expires_at"], "2998-01-01T00:00:00Z");

    let expiring = create(&app, "acct_1", r#"{"name": "short"}"#).await;
    let expiring_id = expiring.json()["data"]["id"].as_str().unwrap().to_owned();
    // Two seconds: time enough to create it on a loaded machine.
    let soon = (Manager::new(&app.gate).now() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let short = create(
        &app,
        "acct_1",
        &format!(r#"{{"name": "short", "expires_at": "{soon}"}}"#),
    )
    .await;
    assert_eq!(short.status, 201, "{}", short.body);
    let short_id = short.json()["data"]["id"].as_str().unwrap().to_owned();
    app.gate.step_wall_clock(time::Duration::milliseconds(3100));
    rotate(short_id, None)
        .await
        .assert_error(409, "Token has expired and cannot be rotated");
    // A token without an expiry still rotates into one without (and a null
    // grace period is the default, like leaving it out).
    let rotated = rotate(expiring_id, Some(r#"{"grace_seconds": null}"#)).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert_eq!(
        rotated.json()["data"]["replaces"]["revoked_reason"],
        "rotated"
    );
    assert_eq!(rotated.json()["data"]["expires_at"], Value::Null);
}

#[tokio::test]
async fn oversized_bodies_and_unknown_routes_get_the_envelope() {
    let app = TestApp::new().await;
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "pro")
        .await
        .unwrap();
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    create(&app, "acct_1", &big)
        .await
        .assert_error(413, "Request body too large (limit 1 MB)");
    app.admin(Method::GET, "/admin/nothing", None)
        .await
        .assert_error(404, "Not found");
    app.call(Method::GET, "/nothing", None, None)
        .await
        .assert_error(404, "Not found");
    app.admin(Method::PATCH, "/admin/plans", None)
        .await
        .assert_error(405, "Method not allowed");
    // Without the admin token, nobody learns which admin routes exist.
    for (method, path) in [
        (Method::GET, "/admin/nothing"),
        (Method::GET, "/admin"),
        (Method::PATCH, "/admin/plans"),
        (Method::POST, "/admin/tokens/x"),
    ] {
        app.call(method.clone(), path, None, None)
            .await
            .assert_error(401, "Invalid or missing admin token");
    }
    app.admin(Method::POST, "/admin/tokens/x", None)
        .await
        .assert_error(405, "Method not allowed");
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    create(&app, "acct_1", &nested).await.assert_envelope(400);
}

#[tokio::test]
async fn unknown_api_paths_are_behind_the_gate() {
    let app = TestApp::new().await;
    let token = app.token_for("acct_1", "pro").await;
    let response = app
        .call(Method::GET, "/api/v1/secret-route", None, None)
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.body, UNAUTHORIZED);
    let response = app
        .call(
            Method::GET,
            "/api/v1/secret-route",
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    response.assert_error(404, "Not found");
    assert_eq!(response.header("x-ratelimit-limit"), "1000");
    assert_eq!(response.header("x-ratelimit-remaining"), "999");
    // A wrong method on a known API route is behind the gate too, and counted.
    let wrong_method = |bearer: Option<String>| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/external_tests",
                bearer.as_deref(),
                None,
            )
            .await
        }
    };
    assert_eq!(wrong_method(None).await.body, UNAUTHORIZED);
    let response = wrong_method(Some(format!("Bearer {token}"))).await;
    response.assert_error(405, "Method not allowed");
    assert_eq!(response.header("allow"), "GET,HEAD");
    assert_eq!(response.header("x-ratelimit-remaining"), "998");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::new().await;
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.body,
        r#"{"success": true, "data": {"status": "ok"}}"#
    );
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, 200);
    app.store.fail(true);
    app.call(Method::GET, "/ready", None, None)
        .await
        .assert_error(503, "Service temporarily unavailable");
    // Liveness does no I/O.
    assert_eq!(
        app.call(Method::GET, "/health", None, None).await.status,
        200
    );
    app.admin(Method::GET, "/admin/plans", None)
        .await
        .assert_error(503, "Service temporarily unavailable");
}

fn account_not_found(account: &str) -> String {
    format!(
        "Account {account:?} not found; create it with PUT /admin/accounts/{{account_id}} and a body such as {{\"plan\": \"pro\"}}"
    )
}

/// Scopes and account-wide limits through the admin API and the demo API.
#[tokio::test]
async fn scopes_ceilings_and_caps_through_the_admin_api() {
    let app = TestApp::new().await;
    let admin = app.admin_api();
    let scopes = app.admin(Method::GET, "/admin/scopes", None).await;
    assert_eq!(
        scopes.json(),
        serde_json::json!({"success": true, "data": ["providers:read", "tests:read"]})
    );

    let plan = admin.set_plan("small", true, 100).await;
    assert_eq!(plan["max_tokens"], serde_json::Value::Null);
    let capped = app
        .admin(
            Method::PUT,
            "/admin/plans/small",
            Some(r#"{"api_access": true, "requests_per_hour": 100, "account_requests_per_hour": 150, "max_tokens": 2}"#),
        )
        .await;
    assert_eq!(capped.json()["data"]["account_requests_per_hour"], 150);
    assert_eq!(capped.json()["data"]["max_tokens"], 2);
    admin.set_account("acct_1", "small").await;

    // A token for one scope: its route 200, the other 403, counted.
    let created = app
        .admin(
            Method::POST,
            "/admin/accounts/acct_1/tokens",
            Some(r#"{"name": "providers only", "scopes": ["providers:read"]}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.json()["data"]["scopes"],
        serde_json::json!(["providers:read"])
    );
    let token = created.json()["data"]["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let allowed = app
        .call(
            Method::GET,
            "/api/v1/external_tests/providers",
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!(allowed.status, 200);
    let denied = app.api(&token).await;
    denied.assert_error(403, "Token is missing the required scope: tests:read");
    // Both windows are in play (token 100/h, account 150/h): the token's binds.
    assert_eq!(denied.header("x-ratelimit-limit"), "100");
    assert_eq!(denied.header("x-ratelimit-remaining"), "98");

    // Unknown scopes are named; the cap is a 409 that says how to free a slot.
    app.admin(
        Method::POST,
        "/admin/accounts/acct_1/tokens",
        Some(r#"{"name": "x", "scopes": ["tests:write"]}"#),
    )
    .await
    .assert_error(
        400,
        r#"unknown scope "tests:write"; known scopes: providers:read, tests:read"#,
    );
    admin.create_token("acct_1", "second").await;
    app.admin(
        Method::POST,
        "/admin/accounts/acct_1/tokens",
        Some(r#"{"name": "third"}"#),
    )
    .await
    .assert_error(
        409,
        "This account already has 2 active tokens, the most its plan (small) allows; revoke one (or let one expire) to create another",
    );
    let listed = admin.tokens("acct_1").await;
    admin.revoke(listed[0]["id"].as_str().unwrap()).await;
    admin.create_token("acct_1", "third").await;
}

/// One rule on every surface: a plan without API access gets no new tokens,
/// created or rotated, answered with the contract's 403 body; its existing
/// tokens can still be listed and revoked.
#[tokio::test]
async fn plans_without_api_access_get_no_tokens_through_the_admin_api_or_the_library() {
    let app = TestApp::new().await;
    let old = app.token_for("acct_free", "free").await;
    let response = create(&app, "acct_free", r#"{"name": "CI"}"#).await;
    assert_eq!(
        (response.status.as_u16(), response.body.as_str()),
        (403, crate::support::FORBIDDEN)
    );
    let rotate = app
        .admin(
            Method::POST,
            &format!("/admin/tokens/{}/rotate", &old[4..24]),
            None,
        )
        .await;
    assert_eq!(
        (rotate.status.as_u16(), rotate.body.as_str()),
        (403, crate::support::FORBIDDEN)
    );
    let refused = Manager::new(&app.gate)
        .create_token("acct_free", "CI", None)
        .await;
    assert!(
        matches!(&refused, Err(tokengate::ManageError::NoApiAccess { plan }) if plan == "free"),
        "{refused:?}"
    );
    // Nothing was created; the old token is still there, and revocable.
    let tokens = app
        .admin(Method::GET, "/admin/accounts/acct_free/tokens", None)
        .await;
    assert_eq!(tokens.json()["data"].as_array().unwrap().len(), 1);
    let revoke = app
        .admin(
            Method::DELETE,
            &format!("/admin/tokens/{}", &old[4..24]),
            None,
        )
        .await;
    assert_eq!(revoke.status, 200, "{}", revoke.body);
    // Back on a plan with access, tokens are made again.
    Manager::new(&app.gate)
        .set_account_plan("acct_free", "pro")
        .await
        .unwrap();
    assert_eq!(
        create(&app, "acct_free", r#"{"name": "CI"}"#).await.status,
        201
    );
}

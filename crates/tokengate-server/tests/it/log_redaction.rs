//! Nothing token-shaped reaches a log, at any level: a token a client puts
//! in a path, a query string or a header other than `Authorization` is
//! replaced by `[redacted]` (the request id is replaced by a fresh one).

use serde_json::{Value, json};

use crate::process::{Server, admin_header, base_env, client};

async fn admin(server: &Server, method: reqwest::Method, path: &str, body: Value) -> Value {
    let mut request = client()
        .request(method, server.url(path))
        .header("authorization", admin_header());
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json::<Value>().await.unwrap()["data"].clone()
}

#[tokio::test]
async fn a_token_in_a_path_a_query_or_a_header_never_reaches_the_log_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path());
    env.retain(|(key, _)| key != "RUST_LOG");
    env.extend([
        ("RUST_LOG".into(), "trace".into()),
        ("SETTINGS_AUTH_HEADER".into(), "X-Forwarded-User".into()),
        ("SETTINGS_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()),
    ]);
    let server = Server::start(dir.path(), &env);
    admin(
        &server,
        reqwest::Method::PUT,
        "/admin/accounts/acct_1",
        json!({"plan": "pro"}),
    )
    .await;
    let created = admin(
        &server,
        reqwest::Method::POST,
        "/admin/accounts/acct_1/tokens",
        json!({"name": "CI"}),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let secret = token[24..68].to_owned();

    let path = format!("/settings/api-tokens/tokens/{token}");
    // A cross-site attempt (logged at info) and a same-site one.
    for origin in ["https://evil.example", server.base.as_str()] {
        let response = client()
            .delete(server.url(&path))
            .header("x-forwarded-user", "acct_1")
            .header("origin", origin)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let response = client()
        .get(server.url(&format!("/admin/tokens/{token}?token={token}")))
        .header("authorization", admin_header())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let response = client()
        .get(server.url(&format!(
            "/api/v1/external_tests?api_key={token}&s={secret}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    for header in ["x-request-id", "x-api-key", "x-forwarded-uri"] {
        let response = client()
            .get(server.url("/health"))
            .header(header, &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let echoed = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(echoed, token, "a token-shaped request id is replaced");
    }
    let response = client()
        .get(server.url("/api/v1/external_tests"))
        .bearer_auth(&token)
        .header("x-request-id", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The audit log keeps request ids too.
    let response = client()
        .put(server.url("/admin/accounts/acct_2"))
        .header("authorization", admin_header())
        .header("x-request-id", &token)
        .json(&json!({"plan": "pro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let audit = admin(&server, reqwest::Method::GET, "/admin/audit", json!(null)).await;
    let log = server.log_text();
    for text in [log.as_str(), &audit.to_string()] {
        assert!(!text.contains(&token), "the token is in:\n{text}");
        assert!(!text.contains(&secret), "the secret part is in:\n{text}");
        assert!(
            !text.contains(&token[24..50]),
            "part of the secret is in:\n{text}"
        );
    }
    // The lines are there, with the token replaced.
    assert!(
        log.contains("/settings/api-tokens/tokens/[redacted]"),
        "{log}"
    );
    assert!(log.contains("cross-site request refused"), "{log}");
    assert!(log.contains("api_key=[redacted]&s=[redacted]"), "{log}");
    server.assert_no_panic();
}

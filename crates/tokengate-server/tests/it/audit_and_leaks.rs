//! Issue 14 over HTTP: `GET /admin/audit`, `GET /admin/tokens/{id}/usage`
//! and `requests_24h`, `POST /admin/leaks`, and GitHub's secret scanning
//! partner endpoint `POST /leaks/github` signed with a generated P-256 key.

use axum::body::Body;
use base64::Engine;
use http::{Method, Request, StatusCode};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rand_core::OsRng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokengate::Manager;
use tokengate::http::{AdminAuth, GithubKeys};
use tokengate_server::server::{AppState, app};

use crate::support::{ADMIN_TOKEN, TestApp, UNAUTHORIZED, send};
use tokengate_testkit::forge_wrong_secret;

const KEY_ID: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";

/// The test app with `POST /leaks/github` enabled for one generated key,
/// registered as [`KEY_ID`].
async fn app_with_github_key() -> (TestApp, SigningKey) {
    let key = SigningKey::random(&mut OsRng);
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let file = json!({"public_keys": [{"key_identifier": KEY_ID, "key": pem, "is_current": true}]});
    let keys = GithubKeys::from_json(&file.to_string()).unwrap();
    let mut test_app = TestApp::new().await;
    test_app.router = app(AppState::new(
        test_app.gate.clone(),
        AdminAuth::from_token(ADMIN_TOKEN).unwrap(),
    )
    .with_github_keys(keys, None));
    (test_app, key)
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn report(tokens: &[&str]) -> Vec<u8> {
    let entries: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            json!({
                "token": token,
                "type": "tokengate_api_token",
                "url": format!("https://github.com/octocat/hello/blob/main/f{i}.env"),
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&entries).unwrap()
}

async fn post_report(
    app: &TestApp,
    body: Vec<u8>,
    key_id: Option<&str>,
    signature: Option<&str>,
) -> crate::support::TestResponse {
    let mut request = Request::post("/leaks/github").header("content-type", "application/json");
    if let Some(key_id) = key_id {
        request = request.header("github-public-key-identifier", key_id);
    }
    if let Some(signature) = signature {
        request = request.header("github-public-key-signature", signature);
    }
    send(&app.router, request.body(Body::from(body)).unwrap()).await
}

async fn leaked_events(app: &TestApp) -> Vec<Value> {
    let page = app
        .admin(Method::GET, "/admin/audit?action=token.leaked", None)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.json()["data"]["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_signed_report_revokes_the_live_token_and_labels_every_string() {
    let (app, key) = app_with_github_key().await;
    let live = app.token_for("acme", "pro").await;
    let revoked = app.token_for("acme", "pro").await;
    app.admin_api()
        .revoke(&app.gate.format().token_id(&revoked).unwrap().to_string())
        .await;
    let foreign = forge_wrong_secret(&live, "github");
    let strings = [
        live.as_str(),
        revoked.as_str(),
        foreign.as_str(),
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "iit_garbage",
    ];
    assert_eq!(app.api(&live).await.status, StatusCode::OK);
    let body = report(&strings);
    let signature = sign(&key, &body);
    let response = post_report(&app, body, Some(KEY_ID), Some(&signature)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        response.headers["content-type"], "application/json",
        "GitHub's feedback is JSON"
    );
    let expected: Vec<Value> = strings
        .iter()
        .zip([
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive",
            "false_positive",
        ])
        .map(|(token, label)| {
            json!({"token_hash": sha256_hex(token), "token_type": "tokengate_api_token", "label": label})
        })
        .collect();
    assert_eq!(response.json(), Value::Array(expected));
    assert!(
        !response.body.contains(&live),
        "the answer never repeats a token"
    );

    // The next request with it is refused; the owner's other tokens are untouched.
    let next = app.api(&live).await;
    assert_eq!(next.status, StatusCode::UNAUTHORIZED);
    assert_eq!(next.body, UNAUTHORIZED);

    // One `token.leaked` event, by GitHub, with the URL and source.
    let events = leaked_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["actor"], "leak-report:github");
    assert_eq!(
        event["token_id"],
        app.gate.format().token_id(&live).unwrap().to_string()
    );
    assert_eq!(
        event["details"]["url"],
        "https://github.com/octocat/hello/blob/main/f0.env"
    );
    assert_eq!(event["details"]["source"], "content");
    let listed = app.admin_api().tokens("acme").await;
    let leaked = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == event["token_id"])
        .unwrap();
    assert_eq!(leaked["revoked_reason"], "leaked");
}

#[tokio::test]
async fn an_unsigned_tampered_or_foreign_report_is_401_and_revokes_nothing() {
    let (app, key) = app_with_github_key().await;
    let token = app.token_for("acme", "pro").await;
    let body = report(&[&token]);
    let good = sign(&key, &body);
    let stranger = sign(&SigningKey::random(&mut OsRng), &body);
    let mut tampered = body.clone();
    // Same token, another URL: the signature no longer matches.
    let at = tampered.iter().position(|b| *b == b'f').unwrap();
    tampered[at] = b'g';

    let refused = [
        ("no headers", body.clone(), None, None),
        ("no signature", body.clone(), Some(KEY_ID), None),
        ("no key id", body.clone(), None, Some(good.as_str())),
        ("unknown key id", body.clone(), Some("0000"), Some(&good)),
        ("tampered body", tampered, Some(KEY_ID), Some(&good)),
        (
            "another key's signature",
            body.clone(),
            Some(KEY_ID),
            Some(&stranger),
        ),
        ("not base64", body.clone(), Some(KEY_ID), Some("%%%")),
        ("empty signature", body.clone(), Some(KEY_ID), Some("")),
    ];
    for (case, body, key_id, signature) in refused {
        let response = post_report(&app, body, key_id, signature).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(
            response.body, r#"{"success": false, "error": "Invalid or missing GitHub signature"}"#,
            "{case}"
        );
    }
    assert_eq!(app.api(&token).await.status, StatusCode::OK);
    assert!(leaked_events(&app).await.is_empty());

    // A signed body that is not a report is a 400 in the envelope.
    let junk = b"{\"token\": 1}".to_vec();
    let signature = sign(&key, &junk);
    let response = post_report(&app, junk, Some(KEY_ID), Some(&signature)).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert_eq!(response.json()["success"], false);
}

#[tokio::test]
async fn without_keys_the_route_does_not_exist() {
    let app = TestApp::new().await;
    let response = app
        .call(Method::POST, "/leaks/github", None, Some("[]"))
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_thousand_matches_in_one_report() {
    let (app, key) = app_with_github_key().await;
    Manager::new(&app.gate)
        .set_account_plan("acme", "pro")
        .await
        .unwrap();
    let mut live = Vec::new();
    for i in 0..200 {
        let created = Manager::new(&app.gate)
            .create_token("acme", &format!("t{i}"), None)
            .await
            .unwrap();
        live.push(created.token.expose_secret().to_owned());
    }
    // 200 real tokens, 800 well-formed strings with real ids and wrong secrets.
    let mut strings: Vec<String> = live.clone();
    for i in 0..800 {
        strings.push(forge_wrong_secret(&live[i % live.len()], i));
    }
    let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
    let body = report(&refs);
    let signature = sign(&key, &body);
    let started = std::time::Instant::now();
    let response = post_report(&app, body, Some(KEY_ID), Some(&signature)).await;
    let took = started.elapsed();
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let feedback = response.json();
    let labels: Vec<_> = feedback
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(labels.len(), 1000);
    assert!(labels[..200].iter().all(|l| l == "true_positive"));
    assert!(labels[200..].iter().all(|l| l == "false_positive"));
    for token in &live {
        assert_eq!(app.api(token).await.status, StatusCode::UNAUTHORIZED);
    }
    // Informational (timing is measured by benchmarks, not asserted): GitHub
    // gives a partner 30 s.
    eprintln!("1000-entry report answered in {took:?}");
}

#[tokio::test]
async fn admin_leak_reports_revoke_and_say_what_they_did() {
    let app = TestApp::new().await;
    let token = app.token_for("acme", "pro").await;
    let id = app.gate.format().token_id(&token).unwrap().to_string();
    let body = json!({"tokens": [token, "not-a-token"], "url": "https://paste.example/1", "source": "support"});
    let response = app
        .admin(Method::POST, "/admin/leaks", Some(&body.to_string()))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        response.json()["data"],
        json!([
            {"token_hash": sha256_hex(&token), "status": "revoked", "token_id": id},
            {"token_hash": sha256_hex("not-a-token"), "status": "not_ours", "token_id": null},
        ])
    );
    assert!(!response.body.contains(&token));
    assert_eq!(app.api(&token).await.status, StatusCode::UNAUTHORIZED);
    let again = app
        .admin(Method::POST, "/admin/leaks", Some(&body.to_string()))
        .await;
    assert_eq!(again.json()["data"][0]["status"], "already_revoked");
    let events = leaked_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor"], "admin");
    assert_eq!(events[0]["details"]["url"], "https://paste.example/1");

    // Admin-only, and a bad body is a 400 naming the field.
    let anonymous = app
        .call(Method::POST, "/admin/leaks", None, Some(&body.to_string()))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let bad = app
        .admin(Method::POST, "/admin/leaks", Some(r#"{"token": "x"}"#))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"].as_str().unwrap().contains("token"),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn the_audit_api_pages_filters_and_names_the_request() {
    let app = TestApp::new().await;
    let api = app.admin_api();
    api.set_plan("team", true, 10).await;
    api.set_account("acme", "team").await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(
            api.create_token("acme", name).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A request id given by the caller is recorded with the change.
    let request = Request::delete(format!("/admin/tokens/{}", ids[0]))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("x-request-id", "change-ticket-123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app.router, request).await.status, StatusCode::OK);

    // Two per page, newest first, with a `next` cursor until the last page.
    let mut actions = Vec::new();
    let mut uri = "/admin/audit?limit=2".to_owned();
    loop {
        let page = app.admin(Method::GET, &uri, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let data = &page.json()["data"];
        for event in data["events"].as_array().unwrap() {
            assert_eq!(event["actor"], "admin");
            actions.push(event["action"].as_str().unwrap().to_owned());
        }
        match data["next"].as_str() {
            Some(next) => uri = format!("/admin/audit?limit=2&before={next}"),
            None => break,
        }
    }
    assert_eq!(
        actions,
        [
            "token.revoked",
            "token.created",
            "token.created",
            "token.created",
            "account.created",
            "plan.created"
        ]
    );

    let by_token = app
        .admin(
            Method::GET,
            &format!("/admin/audit?token_id={}", ids[0]),
            None,
        )
        .await
        .json();
    let events = by_token["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["request_id"], "change-ticket-123");
    assert_eq!(by_token["data"]["next"], Value::Null);

    for (query, error) in [
        ("limit=0", "limit must be 1 to 500"),
        ("limit=501", "limit must be 1 to 500"),
        ("before=yesterday", "before must be a `next` cursor"),
        ("token_id=nope", "token_id is not a token id"),
        ("acount_id=acme", "unknown field `acount_id`"),
    ] {
        let response = app
            .admin(Method::GET, &format!("/admin/audit?{query}"), None)
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}");
        let message = response.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(error), "{query}: {message}");
    }
    let anonymous = app.call(Method::GET, "/admin/audit", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn usage_is_served_per_hour_and_summed_in_token_views() {
    let app = TestApp::new().await;
    app.admin_api().set_plan("tiny", true, 3).await;
    let token = app.token_for("acme", "tiny").await;
    let id = app.gate.format().token_id(&token).unwrap().to_string();
    for _ in 0..5 {
        app.api(&token).await;
    }
    app.gate.flush_last_use().await.unwrap();

    let usage = app
        .admin(Method::GET, &format!("/admin/tokens/{id}/usage"), None)
        .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    let data = &usage.json()["data"];
    assert_eq!(data["token_id"], id.as_str());
    let hours = data["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    let now = hours.last().unwrap();
    assert_eq!(
        (now["admitted"].as_u64(), now["limited"].as_u64()),
        (Some(3), Some(2))
    );
    assert!(now["hour"].as_str().unwrap().ends_with(":00:00Z"), "{now}");

    let week = app
        .admin(
            Method::GET,
            &format!("/admin/tokens/{id}/usage?hours=168"),
            None,
        )
        .await;
    assert_eq!(week.json()["data"]["hours"].as_array().unwrap().len(), 168);

    let listed = app.admin_api().tokens("acme").await;
    assert_eq!(listed[0]["requests_24h"], 3);
    let shown = app
        .admin(Method::GET, &format!("/admin/tokens/{id}"), None)
        .await;
    assert_eq!(shown.json()["data"]["requests_24h"], 3);

    for (uri, status) in [
        (
            format!("/admin/tokens/{id}/usage?hours=0"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/admin/tokens/{id}/usage?hours=2161"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/admin/tokens/{id}/usage?hours=x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/tokens/AAAAAAAAAAAAAAAAAAAA/usage".to_owned(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = app.admin(Method::GET, &uri, None).await;
        assert_eq!(response.status, status, "{uri}: {}", response.body);
        assert_eq!(response.json()["success"], false);
    }
}

/// A body that never ends: the endpoint must refuse what it can without it.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

fn endless_body() -> Body {
    Body::new(Endless)
}

/// The handler read the whole body before it even checked that a signature
/// header was there: slow uploads held connections at the cap.
#[tokio::test]
async fn a_report_is_refused_before_its_body_is_read() {
    let (app, key) = app_with_github_key().await;
    let signature = sign(&key, b"[]");
    let other_key = "0".repeat(64);
    for (key_id, signature, declared, status) in [
        (
            None,
            Some(signature.as_str()),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (Some(KEY_ID), None, None, StatusCode::UNAUTHORIZED),
        (
            Some(other_key.as_str()),
            Some(signature.as_str()),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(KEY_ID),
            Some("not base64!"),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(KEY_ID),
            Some(signature.as_str()),
            Some("1048577"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let mut request = Request::post("/leaks/github").header("content-type", "application/json");
        if let Some(key_id) = key_id {
            request = request.header("github-public-key-identifier", key_id);
        }
        if let Some(signature) = signature {
            request = request.header("github-public-key-signature", signature);
        }
        if let Some(length) = declared {
            request = request.header("content-length", length);
        }
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            send(&app.router, request.body(endless_body()).unwrap()),
        )
        .await
        .unwrap_or_else(|_| panic!("{key_id:?} {signature:?} {declared:?}: the body was awaited"));
        assert_eq!(response.status, status, "{}", response.body);
        assert_eq!(response.json()["success"], false);
    }
}

/// The documented maximum (10,000) did not fit the 1 MB body limit with
/// GitHub-length URLs, and `[{"token":"x"}]` was accepted with an empty type.
#[tokio::test]
async fn over_the_most_matches_is_413_naming_it_and_an_incomplete_entry_400_naming_its_index() {
    let (app, key) = app_with_github_key().await;
    let strings: Vec<String> = (0..1001).map(|i| format!("iit_{i:070}")).collect();
    let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
    let body = report(&refs);
    assert!(body.len() < 1024 * 1024);
    let signature = sign(&key, &body);
    let response = post_report(&app, body, Some(KEY_ID), Some(&signature)).await;
    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.body
    );
    assert!(
        response.json()["error"]
            .as_str()
            .unwrap()
            .contains("at most 1000 matches per request"),
        "{}",
        response.body
    );

    let body = br#"[{"token":"a","type":"t","url":"","source":"content"},{"token":"x"}]"#.to_vec();
    let signature = sign(&key, &body);
    let response = post_report(&app, body, Some(KEY_ID), Some(&signature)).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert_eq!(
        response.json()["error"],
        "entry 1 of the report (counting from 0) needs \"token\", \"type\", \"url\" and \"source\" as strings: \"type\" is missing or null"
    );
}

//! `x-request-id`: generated or kept, echoed on every response, and recorded
//! in the request's span (so in JSON logs), never next to a token.

use std::collections::HashSet;

use crate::process::{Server, base_env, client};
use crate::support::{TestApp, TestResponse, send};
use http::{Method, Request};

/// 128 random bits, as 32 lowercase hex digits.
fn is_generated_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn get(app: &TestApp, uri: &str, request_id: Option<&str>) -> TestResponse {
    let mut request = Request::builder().method(Method::GET).uri(uri);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    send(&app.router, request.body(Default::default()).unwrap()).await
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::new().await;
    let mut seen = HashSet::new();
    // Success, the gate's 401, the admin 401, unknown routes.
    for uri in ["/health", "/api/v1/external_tests", "/admin/plans", "/nope"] {
        for _ in 0..2 {
            let response = get(&app, uri, None).await;
            let id = response.header("x-request-id").to_owned();
            assert!(is_generated_id(&id), "{uri}: {id}");
            assert!(seen.insert(id), "{uri}: ids are unique");
        }
    }
}

#[tokio::test]
async fn a_well_formed_incoming_id_is_kept_and_a_malformed_one_replaced() {
    let app = TestApp::new().await;
    let kept = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
    for uri in ["/health", "/api/v1/external_tests"] {
        let response = get(&app, uri, Some(kept)).await;
        assert_eq!(response.header("x-request-id"), kept, "{uri}");
    }
    let too_long = "a".repeat(129);
    for malformed in [too_long.as_str(), "two words", ""] {
        let response = get(&app, "/health", Some(malformed)).await;
        let id = response.header("x-request-id");
        assert!(is_generated_id(id), "{malformed:?} -> {id}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path());
    env.retain(|(k, _)| k != "RUST_LOG");
    env.push(("RUST_LOG".into(), "info,tokengate::request=debug".into()));
    env.push(("LOG_FORMAT".into(), "json".into()));
    let mut server = Server::start(dir.path(), &env);

    let bearer = "Bearer iit_notarealtokenbutitshouldnotbelogged";
    let response = client()
        .get(server.url("/api/v1/external_tests"))
        .header("authorization", bearer)
        .header("x-request-id", "req-from-the-test-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], "req-from-the-test-42");
    // A token put in the query string is refused, and not logged either.
    let response = client()
        .get(server.url("/api/v1/external_tests?access_token=iit_notarealtokeninthequerystring"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(server.signal("TERM").success());

    let log = server.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(!lines.is_empty(), "no JSON log lines:\n{log}");
    let in_request: Vec<_> = lines
        .iter()
        .filter(|line| line["span"]["request_id"] == "req-from-the-test-42")
        .collect();
    assert!(
        !in_request.is_empty(),
        "no line in the request's span:\n{log}"
    );
    assert!(
        in_request
            .iter()
            .any(|line| line["span"]["path"] == "/api/v1/external_tests"),
        "{log}"
    );
    assert!(
        !log.contains("notarealtoken"),
        "the token was logged:\n{log}"
    );
}

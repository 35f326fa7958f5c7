//! Request bodies have deadlines: what can be refused is refused before the
//! body is read, a body slower than its deadlines is answered 408 and its
//! connection closed, and at the connection cap connections stuck in slow
//! bodies are reclaimed like idle ones.

use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine;
use http::{Request, StatusCode};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rand_core::OsRng;
use tokengate::http::{AdminAuth, ProxyHeaderSignIn};
use tokengate_server::server::{AppState, app as app_router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{Server, base_env};
use crate::serve_loop::{HEALTH, closed_within, request};
use crate::support::{ADMIN_TOKEN, TestApp, send};

const KEY_ID: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";

/// A body that never ends.
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

/// A wrong admin credential and a declared length over the limit are
/// answered without waiting for the body.
#[tokio::test]
async fn the_admin_api_refuses_before_reading_the_body() {
    let app = TestApp::new().await;
    for (authorization, length, status) in [
        (None, None, StatusCode::UNAUTHORIZED),
        (
            Some("Bearer wrong-admin-token-0123456789"),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(ADMIN_TOKEN),
            Some("1048577"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let mut request =
            Request::put("/admin/accounts/acct_1").header("content-type", "application/json");
        if let Some(token) = authorization {
            let token = token.trim_start_matches("Bearer ");
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(length) = length {
            request = request.header("content-length", length);
        }
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            send(&app.router, request.body(Body::new(Endless)).unwrap()),
        )
        .await
        .unwrap_or_else(|_| panic!("{authorization:?} {length:?}: the body was awaited"));
        assert_eq!(response.status, status, "{}", response.body);
        assert_eq!(response.json()["success"], false);
    }
}

/// The Settings API refuses a peer it does not trust before reading the body.
#[tokio::test]
async fn the_settings_api_refuses_before_reading_the_body() {
    let mut app = TestApp::new().await;
    let sign_in = ProxyHeaderSignIn::new(
        http::HeaderName::from_static("x-forwarded-user"),
        "192.0.2.0/24".parse().unwrap(),
    );
    app.router = app_router(
        AppState::new(
            app.gate.clone(),
            AdminAuth::from_token(ADMIN_TOKEN).unwrap(),
        )
        .with_settings(sign_in),
    );
    let request = Request::post("/settings/api-tokens/tokens")
        .header("content-type", "application/json")
        .header("x-forwarded-user", "acct_1")
        .body(Body::new(Endless))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), send(&app.router, request))
        .await
        .expect("the body was awaited");
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.body
    );
}

fn env_with(dir: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir);
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push(((*key).into(), (*value).into()));
    }
    env
}

/// Reads everything until the server closes the connection (at most `limit`).
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> String {
    let mut data = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut data))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&data).into_owned()
}

#[tokio::test]
async fn a_body_past_its_deadline_is_408_in_the_envelope_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &env_with(dir.path(), &[("BODY_TIMEOUT_SECS", "0.3")]),
    );
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(
            format!(
                "PUT /admin/accounts/acct_1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"plan\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let response = read_to_close(&mut stream, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{response}"
    );
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: close\r\n"), "{response}");
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with(
            r#"{"success": false, "error": "Request body timed out: send the whole body within BODY_TIMEOUT_SECS, at BODY_MIN_RATE bytes per second or faster"}"#
        ),
        "{response}"
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");

    // The OpenAPI document lists it for every operation with a body.
    let document: serde_json::Value = crate::process::client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let responses = &document["paths"]["/admin/accounts/{account_id}"]["put"]["responses"];
    assert!(responses["408"].is_object(), "{responses}");
    server.assert_no_panic();
}

/// The attack of issue 26: 600 connections to `POST /leaks/github`, each
/// declaring a 1 MB body and sending one byte of it, against
/// `MAX_CONNECTIONS=500`. The cap closed only idle connections, so
/// `/health` timed out. The body deadlines are long here (30 s, no minimum
/// rate), so only the cap's reclaiming can free a slot.
#[tokio::test]
async fn at_the_cap_slow_uploads_are_reclaimed_and_health_answers_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::random(&mut OsRng);
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let keys = serde_json::json!({"public_keys": [{"key_identifier": KEY_ID, "key": pem, "is_current": true}]});
    let keys_file = dir.path().join("github-keys.json");
    std::fs::write(&keys_file, keys.to_string()).unwrap();
    let signature: Signature = key.sign(b"not the body");
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let server = Server::start(
        dir.path(),
        &env_with(
            dir.path(),
            &[
                ("MAX_CONNECTIONS", "500"),
                ("BODY_TIMEOUT_SECS", "30"),
                ("BODY_MIN_RATE", "0"),
                ("GITHUB_SECRET_SCANNING_KEYS", keys_file.to_str().unwrap()),
            ],
        ),
    );
    let head = format!(
        "POST /leaks/github HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         github-public-key-identifier: {KEY_ID}\r\ngithub-public-key-signature: {signature}\r\n\
         content-length: 1000000\r\n\r\n["
    );
    let mut uploads = Vec::with_capacity(600);
    for _ in 0..600 {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        uploads.push(stream);
    }

    for attempt in 0..3 {
        let started = Instant::now();
        let mut health = TcpStream::connect(server.addr()).await.unwrap();
        let answered =
            tokio::time::timeout(Duration::from_secs(1), request(&mut health, HEALTH)).await;
        let took = started.elapsed();
        let (status, _) =
            answered.unwrap_or_else(|_| panic!("attempt {attempt}: no /health within 1 s"));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    // The oldest uploads were the ones closed.
    let took = closed_within(&mut uploads[0], Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2));
    assert!(
        server.log_text().contains("connection limit reached"),
        "{}",
        server.log_text()
    );
    server.assert_no_panic();
}

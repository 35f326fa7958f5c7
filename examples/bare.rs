//! A bare axum app: `GET /health` answering what the tokengate server's
//! `/health` answers, with nothing else around it. `scripts/loadtest.sh`
//! (scenario `stack`) compares the server with it to measure what the
//! server's per-request stack (request id, span, timeout, body limit, panic
//! catcher, error envelope) costs.
//!
//! It also answers `/forward-auth` (any method) with an empty `200`: the
//! cheapest answer a forward-auth server can give, which the `proxy`
//! scenario puts behind the shipped nginx config to measure what nginx's
//! auth subrequest costs by itself, whoever answers it.
//!
//! ```sh
//! BIND_ADDR=127.0.0.1:3001 cargo run --release --example bare
//! ```

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::{any, get};
use http::HeaderValue;
use http::header::CONTENT_TYPE;

/// The body of the server's `/health`, byte for byte.
const HEALTH_BODY: &str = r#"{"success": true, "data": {"status": "ok"}}"#;

async fn health() -> Response {
    let mut response = Response::new(Body::from(Bytes::from_static(HEALTH_BODY.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Allowed, with nothing to say.
async fn allow() -> Response {
    Response::new(Body::empty())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let app = Router::new()
        .route("/health", get(health))
        .route("/forward-auth", any(allow));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, app).await
}

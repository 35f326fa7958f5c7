//! Embedding tokengate in your own axum app: your routes behind
//! `gate.layer()`, the caller read with the `Principal` extractor.
//!
//! ```sh
//! cargo run --example embed
//! # then paste the printed curl command into another shell; Ctrl-C to stop
//! ```
//!
//! The database is in memory, so the account and token it creates at start
//! vanish at exit; `DATABASE_URL=sqlite://embed.db cargo run --example embed`
//! keeps them in a file instead. `BIND_ADDR` changes the address
//! (default `127.0.0.1:3000`).
//!
//! `/health` and `/api/v1/ping` answer the same `ok`, one open and one
//! guarded: `scripts/loadtest.sh` (scenario `embedded`) compares them to
//! measure what the gate costs; `/api/v1/ping/scoped` also requires the
//! `hello:read` scope (scenario `scope`: what the scope check costs). For
//! that it sets `DEMO_REQUESTS_PER_HOUR`, the demo account's limit
//! (default: the `pro` plan's 1,000 per hour). `/floor` is the contract's
//! floor (scenario `peer`): the same `ok` plus the five rate-limit headers
//! as static values, no gate at all.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;
use tokengate::http::SuccessEnvelope;
use tokengate::{
    Manager, Plan, Principal, SqliteStore, TokenGate, TokenSpec, TokenStore, require_scope,
};
use tracing_subscriber::EnvFilter;

/// `GET /api/v1/hello`: only reached with a valid token of a plan with API access.
async fn hello(principal: Principal) -> String {
    format!(
        "hello, {} (plan {}, token {})\n",
        principal.account_id(),
        principal.plan(),
        principal.token_id()
    )
}

/// `GET /api/v1/usage`: the caller's limits, in the same envelope as
/// tokengate's answers (`{"success": true, "data": ...}`, written the same
/// way). Needs the `usage:read` scope.
async fn usage(principal: Principal) -> Response {
    let data = json!({
        "account_id": principal.account_id(),
        "plan": principal.plan(),
        "requests_per_hour": principal.requests_per_hour(),
    });
    SuccessEnvelope::response(StatusCode::OK, &data)
}

/// `GET /health` (open) and `GET /api/v1/ping` (guarded): the same answer.
async fn ok() -> &'static str {
    "ok\n"
}

/// `GET /floor`: what any route under the contract answers at least, `ok`
/// and the five rate-limit headers, here static values as long as the
/// guarded route's at the load test's limit (4,000,000,000 an hour).
async fn floor() -> Response {
    const HEADERS: [(HeaderName, HeaderValue); 5] = [
        (
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from_static("4000000000"),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from_static("3999999999"),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from_static("1767225600"),
        ),
        (
            HeaderName::from_static("ratelimit-policy"),
            HeaderValue::from_static("\"hourly\";q=4000000000;w=3600"),
        ),
        (
            HeaderName::from_static("ratelimit"),
            HeaderValue::from_static("\"hourly\";r=3999999999;t=3600"),
        ),
    ];
    let mut response = Response::new("ok\n".into());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in HEADERS {
        headers.insert(name, value);
    }
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();

    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".to_owned());
    let store = SqliteStore::connect(&url).await?;
    store.migrate().await?; // embedded migrations; also seeds the free/pro/enterprise plans
    let gate = TokenGate::builder(Arc::new(store))
        .with_cache_ttl(Duration::from_secs(60))
        .with_scopes(["hello:read", "usage:read"]) // the scopes your routes may require
        .build()?;
    gate.restore_rate_windows().await?; // the windows saved at the last shutdown
    let maintenance = gate.spawn_maintenance(); // change feed, last_used_at flushing

    // In a real app, your Settings > API Tokens page calls these: the
    // management component, given what it needs by the gate.
    let manager = Manager::new(&gate);
    let plan = match std::env::var("DEMO_REQUESTS_PER_HOUR") {
        Ok(limit) => {
            manager
                .set_plan(&Plan::new("demo", true, limit.parse()?))
                .await?;
            "demo"
        }
        Err(_) => "pro",
    };
    manager.set_account_plan("acct_demo", plan).await?;
    let created = manager
        .create_token("acct_demo", "embed example", None)
        .await?;
    let token = created.token.expose_secret(); // the only time the plaintext exists
    // A second token that may only say hello: /api/v1/usage answers it 403.
    let hello_only = manager
        .create_token_with(
            "acct_demo",
            TokenSpec::new("hello only").scopes(Some(["hello:read"])),
        )
        .await?;

    // The layer guards the routes added before it; /health, added after, is open.
    let app = Router::new()
        .route("/api/v1/hello", get(hello))
        // A route that needs a scope: the check wraps the handler (one line).
        .route("/api/v1/usage", get(require_scope!("usage:read", usage)))
        .route("/api/v1/ping", get(ok))
        .route("/api/v1/ping/scoped", get(require_scope!("hello:read", ok)))
        .layer(gate.layer())
        .route("/health", get(ok))
        .route("/floor", get(floor));

    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}; try:\n");
    println!("  curl -i http://{addr}/api/v1/hello -H 'Authorization: Bearer {token}'");
    println!("  curl -s http://{addr}/api/v1/usage -H 'Authorization: Bearer {token}'");
    println!("  curl -i http://{addr}/api/v1/hello   # no token: 401");
    println!(
        "  curl -i http://{addr}/api/v1/usage -H 'Authorization: Bearer {}'   # no usage:read scope: 403\n",
        hello_only.token.expose_secret()
    );

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    maintenance.shutdown().await; // writes pending last_used_at times, saves the windows
    Ok(())
}

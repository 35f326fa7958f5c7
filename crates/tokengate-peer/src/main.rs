//! The peer of `scripts/loadtest.sh`'s scenario `peer`: what an axum user
//! would assemble instead of tokengate, measured against tokengate's guarded
//! route (`examples/embed.rs`) with the same handler and the same request.
//!
//! * authentication: a `from_fn` middleware that looks the SHA-256 of the
//!   bearer token up in a `HashMap` loaded at start (no revocation, no
//!   expiry, no scopes, no usage counting);
//! * rate limit: `tower_governor` 0.8 (GCRA, keyed by the bearer token,
//!   `use_headers()`: `X-RateLimit-Limit` and `X-RateLimit-Remaining`), with
//!   `PEER_REQUESTS_PER_HOUR` (default 4,000,000,000, never reached) as its
//!   burst and hourly rate.
//!
//! `GET /api/v1/ping` is guarded, `GET /health` open; both answer `ok\n`.
//! The tokens it accepts are `PEER_TOKENS` (comma-separated) plus 1,000
//! random others, so the map is not a single entry.
//!
//! ```sh
//! PEER_TOKENS=iit_... BIND_ADDR=127.0.0.1:3002 cargo run --release -p tokengate-peer
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

/// Who a token belongs to, put in the request extensions for the handlers.
#[derive(Clone, Debug)]
struct Caller {
    #[expect(dead_code, reason = "read by real handlers; `ok` does not need it")]
    account_id: Arc<str>,
}

type Tokens = Arc<HashMap<[u8; 32], Caller>>;

/// The rate-limit key: the request's `Authorization` value (a cheap clone of
/// the request's bytes).
#[derive(Clone, Debug)]
struct BearerKey;

impl KeyExtractor for BearerKey {
    type Key = HeaderValue;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        request
            .headers()
            .get(AUTHORIZATION)
            .cloned()
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

async fn authenticate(State(tokens): State<Tokens>, mut request: Request, next: Next) -> Response {
    let caller = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| tokens.get(&<[u8; 32]>::from(Sha256::digest(token.as_bytes()))))
        .cloned();
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(CONTENT_TYPE, "application/json")],
            r#"{"success": false, "error": "Invalid or missing API token"}"#,
        )
            .into_response(),
    }
}

/// The handler of every route here and in the embed example.
async fn ok() -> &'static str {
    "ok\n"
}

/// 1,000 tokens nobody sends, so the map has the size of a small deployment.
fn filler(count: usize) -> impl Iterator<Item = String> {
    let seed = std::collections::hash_map::RandomState::new();
    (0..count).map(move |i| {
        let mut hasher = seed.build_hasher();
        hasher.write_usize(i);
        format!("iit_filler_{:016x}", hasher.finish())
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut tokens = HashMap::new();
    let given = std::env::var("PEER_TOKENS").unwrap_or_default();
    for (i, token) in given
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .chain(filler(1000))
        .enumerate()
    {
        let caller = Caller {
            account_id: format!("acct_{i}").into(),
        };
        tokens.insert(<[u8; 32]>::from(Sha256::digest(token.as_bytes())), caller);
    }
    let per_hour: u32 = std::env::var("PEER_REQUESTS_PER_HOUR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000_000);
    #[expect(
        clippy::expect_used,
        reason = "the period and the burst are both at least 1, the only way `finish` fails"
    )]
    let governor = GovernorConfigBuilder::default()
        .key_extractor(BearerKey)
        .per_nanosecond((3_600_000_000_000 / u64::from(per_hour.max(1))).max(1))
        .burst_size(per_hour.max(1))
        .use_headers()
        .finish()
        .expect("a positive period and burst");

    // One `.layer` for both middlewares, as tokengate's one `.layer(gate.layer())`.
    let guard = tower::ServiceBuilder::new()
        .layer(from_fn_with_state(Arc::new(tokens), authenticate))
        .layer(tower_governor::GovernorLayer::new(governor));
    let app = Router::new()
        .route("/api/v1/ping", get(ok))
        .layer(guard)
        .route("/health", get(ok));

    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, app).await
}

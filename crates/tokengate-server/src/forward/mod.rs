//! Guarding any stack: `/forward-auth` answers a reverse proxy's auth
//! subrequest (nginx `auth_request`, Caddy and Traefik forward auth), and
//! `POST /v1/verify` answers an application that has no proxy. Both give the
//! gate's answer to the byte, as [`tokengate::http::GateAnswer::for_request`] builds
//! it, and count a request once.
//!
//! `path.rs` normalizes a requested path (or refuses an ambiguous one),
//! `rules.rs` reads `FORWARD_AUTH_ROUTES` and finds a request's scopes,
//! `forward_auth.rs` and `verify.rs` are the two handlers.

mod forward_auth;
pub mod path;
pub mod rules;
mod verify;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, post};
use tokengate::TokenGate;
use tokengate::http::{AdminAuth, TrustedProxies};

pub use path::{AmbiguousPath, normalize};
pub use rules::RouteRules;
pub(crate) use verify::VerifyDoc;

/// What the two routes need.
#[derive(Clone, Debug)]
pub struct ForwardAuth {
    /// Scopes per route.
    pub rules: Arc<RouteRules>,
    /// The peers `/forward-auth` answers; anyone else gets 404.
    pub trusted_proxies: TrustedProxies,
    /// `VERIFY_TOKEN`: a credential that can call `/v1/verify` and nothing else.
    pub verify: Option<Arc<AdminAuth>>,
}

impl Default for ForwardAuth {
    /// No route rules, loopback proxies, no verify-only credential.
    fn default() -> Self {
        Self {
            rules: Arc::default(),
            trusted_proxies: TrustedProxies::loopback(),
            verify: None,
        }
    }
}

/// Shared by both handlers behind one `Arc`: axum clones a route's state
/// for every request, and `ForwardAuth` holds the trusted proxies' list.
#[derive(Debug)]
struct ForwardState {
    gate: TokenGate,
    admin: Arc<AdminAuth>,
    config: ForwardAuth,
}

/// `/forward-auth` (any method) and `POST /v1/verify`.
pub(crate) fn router(gate: TokenGate, admin: Arc<AdminAuth>, config: ForwardAuth) -> Router {
    let state = Arc::new(ForwardState {
        gate,
        admin,
        config,
    });
    Router::new()
        .route("/forward-auth", any(forward_auth::forward_auth))
        .route("/v1/verify", post(verify::verify))
        .with_state(state)
}

//! The route layer that requires a scope.
//!
//! A token carries a set of scopes chosen at creation (names of
//! `[a-z0-9_.:-]`, 1–64 characters, at most 32 per token), or every scope
//! (`*`, the default, and what tokens made before scopes existed have). A
//! route says which scope it needs in one line:
//!
//! ```
//! use axum::{Router, routing::get};
//! use tokengate::require_scope;
//!
//! # fn gate_layer() -> tower::layer::util::Identity { tower::layer::util::Identity::new() }
//! let app: Router = Router::new()
//!     .route("/api/v1/reports", get(|| async { "reports" }).route_layer(require_scope("reports:read")))
//!     // The gate runs first (outermost), then the scope check.
//!     .layer(gate_layer());
//! # let _ = app;
//! ```
//!
//! A token without the scope gets `403` with exactly
//! `{"success": false, "error": "Token is missing the required scope: SCOPE"}`;
//! the request was admitted by the rate limiter, so it counts and carries the
//! `X-RateLimit-*` headers. Handlers can also ask
//! [`Principal::has_scope`](crate::Principal::has_scope). The scopes are part
//! of the cached principal: checking one costs no I/O.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::{Either, Ready, ready};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, StatusCode};
use tower::{Layer, Service};

use crate::principal::Principal;
use crate::scope::is_valid_name;

/// A route layer that lets a request through only if its token has `scope`.
///
/// Put it on routes behind [`TokenGateLayer`](crate::TokenGateLayer) (the
/// gate must run first: `route_layer` inside, `layer(gate.layer())` outside).
/// Without a principal in the request (no gate in front) the answer is a
/// 500 that names the missing layer.
///
/// # Panics
///
/// If `scope` is not a valid scope name: a typo in a route is a bug to see
/// at start-up, not a silent 403 in production.
pub fn require_scope(scope: &str) -> RequireScopeLayer {
    assert!(
        is_valid_name(scope),
        "require_scope({scope:?}): scope names are 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-'"
    );
    let body =
        format!(r#"{{"success": false, "error": "Token is missing the required scope: {scope}"}}"#);
    RequireScopeLayer {
        scope: scope.into(),
        body: Bytes::from(body),
    }
}

/// The layer made by [`require_scope`].
#[derive(Clone, Debug)]
pub struct RequireScopeLayer {
    scope: Arc<str>,
    body: Bytes,
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequireScopeLayer`].
#[derive(Clone, Debug)]
pub struct RequireScope<S> {
    inner: S,
    layer: RequireScopeLayer,
}

impl<S, B> Service<Request<B>> for RequireScope<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match request.extensions().get::<Principal>() {
            Some(principal) if principal.has_scope(&self.layer.scope) => {
                Either::Left(self.inner.call(request))
            }
            Some(_) => Either::Right(ready(Ok(json(
                StatusCode::FORBIDDEN,
                self.layer.body.clone(),
            )))),
            None => {
                tracing::error!(
                    scope = %self.layer.scope,
                    "require_scope on a route without TokenGateLayer in front; add .layer(gate.layer()) outside it"
                );
                Either::Right(ready(Ok(json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Bytes::from_static(
                        br#"{"success": false, "error": "Internal error: route is missing TokenGateLayer"}"#,
                    ),
                ))))
            }
        }
    }
}

fn json(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "scope names are")]
    fn a_malformed_required_scope_is_a_bug_seen_at_start_up() {
        let _ = require_scope("Reports Read");
    }
}

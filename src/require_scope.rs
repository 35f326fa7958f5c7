//! Requiring a scope: on a handler ([`require_scope!`](crate::require_scope!))
//! or on a route ([`RequireScopeLayer`]).
//!
//! A token carries a set of scopes chosen at creation (names of
//! `[a-z0-9_.:-]`, 1–64 characters, at most 32 per token), or every scope
//! (`*`, the default, and what tokens made before scopes existed have). A
//! route says which scope it needs in one line:
//!
//! ```
//! use axum::{Router, routing::get};
//! use tokengate::{RequireScopeLayer, require_scope};
//!
//! # fn gate_layer() -> tower::layer::util::Identity { tower::layer::util::Identity::new() }
//! async fn reports() -> &'static str { "reports" }
//!
//! let app: Router = Router::new()
//!     // On the handler: the scope is checked when the program compiles,
//!     // and nothing is added per request but the check itself.
//!     .route("/api/v1/reports", get(require_scope!("reports:read", reports)))
//!     // On every method of a route, with a scope known only at run time
//!     // (axum then boxes the route a second time):
//!     .route("/api/v1/exports", get(reports).post(reports).route_layer(RequireScopeLayer::new("exports:write")))
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
//!
//! Why a macro for the handler form: axum clones a route's handler for every
//! request, and a handler that holds its scope as a value is no longer
//! zero-sized, so each clone is an allocation (two per request, measured in
//! BENCHMARKS.md). The macro puts the scope in a type instead.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::handler::Handler;
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::{Either, Ready, ready};
use http::header::CONTENT_TYPE;
use http::{Extensions, HeaderValue, Request, StatusCode};
use tower::{Layer, Service};

use crate::principal::Principal;
use crate::response::missing_scope_body;
use crate::scope::is_valid_name;

/// A route layer that lets a request through only if its token has `scope`.
///
/// For a single handler prefer [`require_scope!`](crate::require_scope!),
/// which checks the name when the program compiles and adds nothing per
/// request; this layer is for a route's every method
/// (`.route_layer(RequireScopeLayer::new("x"))`) and for scopes known only at run
/// time. Put it behind [`TokenGateLayer`](crate::TokenGateLayer): the gate
/// must run first, so `layer(gate.layer())` goes outside. Without a
/// principal in the request (no gate in front) the answer is a 500 that
/// names the missing layer.
#[derive(Clone, Debug)]
pub struct RequireScopeLayer(Arc<Required>);

impl RequireScopeLayer {
    /// The layer for `scope`.
    ///
    /// # Panics
    ///
    /// If `scope` is not a valid scope name: a typo in a route is a bug to see
    /// at start-up, not a silent 403 in production.
    pub fn new(scope: &str) -> Self {
        assert!(
            is_valid_name(scope),
            "RequireScopeLayer::new({scope:?}): scope names are 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-'"
        );
        let body = missing_scope_body(scope);
        Self(Arc::new(Required {
            scope: scope.into(),
            body: Bytes::from(body),
        }))
    }
}

#[derive(Debug)]
struct Required {
    scope: Box<str>,
    /// The 403 body, built once.
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
        let required = &self.layer.0;
        match refusal(request.extensions(), &required.scope, || {
            required.body.clone()
        }) {
            None => Either::Left(self.inner.call(request)),
            Some(refused) => Either::Right(ready(Ok(refused))),
        }
    }
}

/// The answer for a request that may not go on: 403 with `forbidden_body`
/// when its token lacks `scope`, 500 when no gate put a principal in front.
fn refusal(
    extensions: &Extensions,
    scope: &str,
    forbidden_body: impl FnOnce() -> Bytes,
) -> Option<Response> {
    match extensions.get::<Principal>() {
        Some(principal) if principal.has_scope(scope) => None,
        Some(_) => Some(json(StatusCode::FORBIDDEN, forbidden_body())),
        None => {
            tracing::error!(
                scope,
                "require_scope on a route without TokenGateLayer in front; add .layer(gate.layer()) outside it"
            );
            Some(json(
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(
                    br#"{"success": false, "error": "Internal error: route is missing TokenGateLayer"}"#,
                ),
            ))
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

/// A handler that answers only tokens with a scope:
/// `require_scope!("reports:read", handler)`.
///
/// Use it where a handler goes (`get(require_scope!("reports:read", reports))`),
/// on routes behind [`TokenGateLayer`](crate::TokenGateLayer). A token
/// without the scope gets the contract's 403 naming it (counted, with the
/// rate-limit headers); without a gate in front the answer is a 500 that
/// names the missing layer.
///
/// The scope name is checked when the program compiles (1 to 64 characters
/// of `a-z`, `0-9`, `_`, `.`, `:` and `-`), and it lives in a type, so the
/// handler stays zero-sized: per request the check is a lookup in the
/// request's extensions and a binary search of the token's scopes, with no
/// allocation. (A handler wrapper holding its scope as a value would cost
/// two allocations per request: axum clones a route's handler for every
/// request. Measured in BENCHMARKS.md.)
///
/// ```compile_fail
/// # async fn reports() {}
/// // A malformed scope name does not compile.
/// let _ = tokengate::require_scope!("Reports Read", reports);
/// ```
#[macro_export]
macro_rules! require_scope {
    ($scope:literal, $handler:expr $(,)?) => {{
        const _: () = ::core::assert!(
            $crate::__private::is_valid_scope($scope),
            "require_scope!: scope names are 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-'"
        );
        #[derive(Clone, Copy)]
        struct Scope;
        impl $crate::__private::ScopeName for Scope {
            const NAME: &'static str = $scope;
            const FORBIDDEN: &'static str = ::core::concat!(
                r#"{"success": false, "error": "Token is missing the required scope: "#,
                $scope,
                r#""}"#
            );
        }
        $crate::__private::Scoped::<_, Scope>::new($handler)
    }};
}

/// What `require_scope!` expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Whether `name` is a well-formed scope name (at compile time).
    pub const fn is_valid_scope(name: &str) -> bool {
        is_valid_name(name)
    }

    /// A scope name carried by a type.
    pub trait ScopeName: Copy + Send + Sync + 'static {
        /// The scope.
        const NAME: &'static str;
        /// The 403 body naming it.
        const FORBIDDEN: &'static str;
    }

    /// A handler behind a scope check; zero-sized when the handler is.
    #[derive(Debug)]
    pub struct Scoped<H, N> {
        handler: H,
        name: PhantomData<fn() -> N>,
    }

    impl<H, N> Scoped<H, N> {
        /// `handler`, behind the check for `N`.
        pub fn new(handler: H) -> Self {
            Self {
                handler,
                name: PhantomData,
            }
        }
    }

    impl<H: Clone, N> Clone for Scoped<H, N> {
        fn clone(&self) -> Self {
            Self::new(self.handler.clone())
        }
    }

    impl<H, T, St, N> Handler<T, St> for Scoped<H, N>
    where
        H: Handler<T, St>,
        N: ScopeName,
    {
        type Future = Either<H::Future, Ready<Response>>;

        fn call(self, request: axum::extract::Request, state: St) -> Self::Future {
            let forbidden = || Bytes::from_static(N::FORBIDDEN.as_bytes());
            match refusal(request.extensions(), N::NAME, forbidden) {
                None => Either::Left(self.handler.call(request, state)),
                Some(refused) => Either::Right(ready(refused)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "scope names are")]
    fn a_malformed_required_scope_is_a_bug_seen_at_start_up() {
        let _ = RequireScopeLayer::new("Reports Read");
    }

    #[test]
    fn the_handler_form_is_zero_sized_for_a_zero_sized_handler() {
        async fn handler() {}
        let scoped = crate::require_scope!("reports:read", handler);
        assert_eq!(std::mem::size_of_val(&scoped), 0);
        assert_eq!(
            std::mem::size_of_val(&RequireScopeLayer::new("reports:read")),
            std::mem::size_of::<usize>()
        );
    }
}

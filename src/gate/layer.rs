//! [`TokenGateLayer`]: the tower middleware that enforces the API contract.
//!
//! For every request: authenticate the bearer token, check the plan, apply the
//! hourly limit, then call the inner service with the [`Principal`] in the
//! request extensions and add the rate-limit headers to its response.
//! Rejections are answered by [`Rejection`]'s response (`response.rs`), so
//! the bodies are exactly the documented ones.
//!
//! One path per request: the gate answers from memory when it can (a cached
//! token and a local limiter: no allocation, no future of ours); otherwise
//! one boxed future finishes the job, starting from wherever the fast path
//! stopped, so a token is never authenticated twice.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use tokengate::{Principal, SqliteStore, TokenGate, TokenStore};
//!
//! async fn hello(principal: Principal) -> String {
//!     format!("hello, {}", principal.account_id())
//! }
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let gate = TokenGate::new(Arc::new(store))?;
//!
//! let app: Router = Router::new()
//!     .route("/api/v1/hello", get(hello))
//!     .layer(gate.layer());
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{Quick, TokenGate};
use crate::bearer::single_authorization;
use crate::limit::Decision;
use crate::metrics::Outcome;
use crate::principal::Principal;
use crate::response::{self, PolicyHeaders, Rejection};

/// Guards a service with a [`TokenGate`]: 401/403/429/503 per the contract,
/// `X-RateLimit-*` headers on every authenticated response.
#[derive(Clone, Debug)]
pub struct TokenGateLayer {
    gate: TokenGate,
}

impl TokenGateLayer {
    /// A layer that authenticates and rate-limits with `gate`.
    ///
    /// The layer takes a built [`TokenGate`] rather than a store: the same
    /// gate must be shared with whatever revokes tokens (the admin API, your
    /// own code), so a revocation empties the very cache the layer reads.
    pub fn new(gate: TokenGate) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for TokenGateLayer {
    type Service = TokenGateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenGateService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The service made by [`TokenGateLayer`].
#[derive(Clone, Debug)]
pub struct TokenGateService<S> {
    inner: S,
    gate: TokenGate,
}

impl<S, B> Service<Request<B>> for TokenGateService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let gate = &self.gate;
        match gate.check_now(single_authorization(request.headers())) {
            Quick::Admitted(principal, decision) => {
                gate.metrics().record_outcome(Outcome::Ok);
                let policy = principal.policy_headers(&decision).clone();
                request.extensions_mut().insert(principal);
                ResponseFuture::new(State::Inner {
                    future: self.inner.call(request),
                    headers: Some((decision, policy)),
                })
            }
            Quick::Rejected(rejection) => ResponseFuture::new(State::Rejected {
                response: Some(reject(gate, rejection)),
            }),
            Quick::Limited(principal, decision) => ResponseFuture::new(State::Rejected {
                response: Some(rate_limited(gate, &principal, &decision)),
            }),
            Quick::NeedsLimiter(principal) => ResponseFuture::new(State::Slow {
                future: self.call_slow(request, Some(principal)),
            }),
            Quick::NeedsStore => ResponseFuture::new(State::Slow {
                future: self.call_slow(request, None),
            }),
        }
    }
}

impl<S> TokenGateService<S> {
    /// The store, argon2 or a shared limiter is needed: an owned, boxed future
    /// that continues from `authenticated` when the fast path got that far.
    fn call_slow<B>(
        &mut self,
        mut request: Request<B>,
        authenticated: Option<Principal>,
    ) -> BoxFuture<'static, Result<Response, S::Error>>
    where
        S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        let gate = self.gate.clone();
        // Owned (a cheap `Bytes` clone), so the future does not borrow the request.
        let authorization = single_authorization(request.headers()).cloned();
        // The clone is not ready; take the ready one (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let principal = match authenticated {
                Some(principal) => principal,
                None => match gate.authenticate_bearer(authorization).await {
                    Ok(principal) => principal,
                    Err(rejection) => return Ok(reject(&gate, rejection)),
                },
            };
            let decision = match gate.check_rate_limit(&principal).await {
                Ok(decision) => decision,
                Err(Rejection::RateLimited(decision)) => {
                    return Ok(rate_limited(&gate, &principal, &decision));
                }
                Err(rejection) => return Ok(reject(&gate, rejection)),
            };
            gate.metrics().record_outcome(Outcome::Ok);
            let policy = principal.policy_headers(&decision).clone();
            request.extensions_mut().insert(principal);
            let mut response = inner.call(request).await?;
            response::write_rate_limit_headers_with(&decision, &policy, response.headers_mut());
            Ok(response)
        })
    }
}

/// The 429 for an authenticated principal, with its plan's prebuilt values
/// (also the forward-auth and verify answers', `http/check.rs`).
pub(crate) fn rate_limited(
    gate: &TokenGate,
    principal: &Principal,
    decision: &Decision,
) -> Response {
    gate.metrics().record_outcome(Outcome::RateLimited);
    tracing::debug!(?decision, "request rate-limited");
    response::too_many_requests_with(decision, principal.policy_headers(decision))
}

/// A rejection's documented response, counted in the metrics.
pub(crate) fn reject(gate: &TokenGate, rejection: Rejection) -> Response {
    gate.metrics().record_outcome(rejection.outcome());
    tracing::debug!(?rejection, "request rejected");
    rejection.into_response()
}

pin_project! {
    /// The future of [`TokenGateService`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        // Admitted from memory: the inner service's future, then our headers.
        Inner {
            #[pin]
            future: F,
            headers: Option<(Decision, PolicyHeaders)>,
        },
        // Rejected from memory.
        Rejected {
            response: Option<Response>,
        },
        // Needed the store, argon2 or a shared limiter.
        Slow {
            future: BoxFuture<'static, Result<Response, E>>,
        },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn new(state: State<F, E>) -> Self {
        Self { state }
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, headers } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some((decision, policy)) = headers.take() {
                    response::write_rate_limit_headers_with(
                        &decision,
                        &policy,
                        response.headers_mut(),
                    );
                }
                Poll::Ready(Ok(response))
            }
            #[expect(
                clippy::expect_used,
                reason = "a future polled after it returned Ready is a bug in the caller (Future's contract)"
            )]
            StateProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            StateProj::Slow { future } => future.as_mut().poll(cx),
        }
    }
}

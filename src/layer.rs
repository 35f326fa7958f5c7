//! [`TokenGateLayer`]: the tower middleware that enforces the API contract.
//!
//! For every request: authenticate the bearer token, check the plan, apply the
//! hourly limit, then call the inner service with the [`Principal`] in the
//! request extensions and add the rate-limit headers to its response.
//! Rejections are answered by the functions in [`crate::response`], so the
//! bodies are exactly the documented ones.
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
//! let _maintenance = gate.spawn_maintenance();
//!
//! let app: Router = Router::new()
//!     .route("/api/v1/hello", get(hello))
//!     .layer(gate.layer());
//! # let _ = app;
//! // With the peer address, failed verifications are throttled per client:
//! // axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::bearer::single_authorization;
use crate::extract::Principal;
use crate::gate::{Rejection, TokenGate};
use crate::limit::Decision;
use crate::metrics::Outcome;
use crate::response::{self, PolicyHeaders};
use crate::throttle::Source;

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

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::MissingToken => response::unauthorized(false),
            Rejection::InvalidToken => response::unauthorized(true),
            Rejection::NoApiAccess => response::forbidden(),
            Rejection::TooManyFailures(retry_after) => response::throttled(retry_after),
            Rejection::RateLimited(decision) => response::too_many_requests(&decision),
            Rejection::Unavailable => response::unavailable(),
        }
    }
}

impl Rejection {
    fn outcome(&self) -> Outcome {
        match self {
            Rejection::MissingToken | Rejection::InvalidToken => Outcome::Unauthorized,
            Rejection::NoApiAccess => Outcome::Forbidden,
            Rejection::TooManyFailures(_) | Rejection::RateLimited(_) => Outcome::RateLimited,
            Rejection::Unavailable => Outcome::Unavailable,
        }
    }
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
        // Fast path, no allocation of our own: a cached token and the local
        // limiter answer synchronously, and the inner service is called directly.
        let cached = gate.authenticate_cached(single_authorization(request.headers()), || {
            client_address(&request)
        });
        let admitted = match cached {
            Some(Ok(principal)) => match gate.check_rate_limit_local(&principal) {
                Some(Ok(decision)) => Some(Ok((principal, decision))),
                Some(Err(rejection)) => Some(Err(rejection)),
                None => None,
            },
            Some(Err(rejection)) => Some(Err(rejection)),
            None => None,
        };
        match admitted {
            Some(Ok((principal, decision))) => {
                gate.metrics().record_outcome(Outcome::Ok);
                let policy = principal.policy_headers().clone();
                request.extensions_mut().insert(principal);
                ResponseFuture::Inner {
                    future: self.inner.call(request),
                    headers: Some((decision, policy)),
                }
            }
            Some(Err(rejection)) => ResponseFuture::Rejected {
                response: Some(reject(gate, rejection)),
            },
            None => ResponseFuture::Slow {
                future: self.call_slow(request),
            },
        }
    }
}

impl<S> TokenGateService<S> {
    /// The store, argon2 or a shared limiter is needed: an owned, boxed future.
    fn call_slow<B>(
        &mut self,
        mut request: Request<B>,
    ) -> BoxFuture<'static, Result<Response, S::Error>>
    where
        S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        let gate = self.gate.clone();
        // Owned (a cheap `Bytes` clone), so the future does not borrow the request.
        let authorization = single_authorization(request.headers()).cloned();
        let source = Source::of(client_address(&request));
        // The clone is not ready; take the ready one (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let admitted = async {
                let principal: Principal = gate
                    .authenticate_authorization(authorization, source)
                    .await?;
                let decision = gate.check_rate_limit(&principal).await?;
                Ok::<_, Rejection>((principal, decision))
            }
            .await;
            let (principal, decision) = match admitted {
                Ok(admitted) => admitted,
                Err(rejection) => return Ok(reject(&gate, rejection)),
            };
            gate.metrics().record_outcome(Outcome::Ok);
            let policy = principal.policy_headers().clone();
            request.extensions_mut().insert(principal);
            let mut response = inner.call(request).await?;
            response::write_rate_limit_headers_with(&decision, &policy, response.headers_mut());
            Ok(response)
        })
    }
}

/// The peer's address, when the server provides axum's `ConnectInfo`
/// (`into_make_service_with_connect_info::<SocketAddr>()`): failed
/// verifications are then throttled per client, not only per token id.
fn client_address<B>(request: &Request<B>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

fn reject(gate: &TokenGate, rejection: Rejection) -> Response {
    gate.metrics().record_outcome(rejection.outcome());
    tracing::debug!(?rejection, "request rejected");
    rejection.into_response()
}

pin_project! {
    /// The future of [`TokenGateService`].
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // pin_project! cannot document a pinned field
    pub enum ResponseFuture<F, E> {
        /// Admitted from memory: the inner service's future, then our headers.
        Inner {
            #[pin]
            future: F,
            headers: Option<(Decision, PolicyHeaders)>,
        },
        /// Rejected from memory.
        Rejected {
            response: Option<Response>,
        },
        /// Needed the store, argon2 or a shared limiter.
        Slow {
            future: BoxFuture<'static, Result<Response, E>>,
        },
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { future, headers } => {
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
            ResponseFutureProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            ResponseFutureProj::Slow { future } => future.as_mut().poll(cx),
        }
    }
}

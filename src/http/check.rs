//! One request checked the way [`TokenGateLayer`](crate::TokenGateLayer)
//! checks it, for a caller that relays the answer instead of calling an
//! inner service: a reverse proxy's auth subrequest (forward auth), or an
//! application in another language asking over HTTP (a verify API).
//!
//! The answer is the layer's to the byte: `200` with the rate-limit headers
//! when the request may go on; otherwise the contract's 401, 403, the
//! scope's 403 (counted, with the rate-limit headers), 429 or 503. An
//! admitted request counts once in the token's window and in the account's.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tokengate::http::GateAnswer;
//! use tokengate::{SqliteStore, TokenGate, TokenStore};
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let gate = TokenGate::new(Arc::new(store))?;
//!
//! let answer = GateAnswer::for_token(&gate, "not-a-token", &["reports:read"]).await;
//! assert_eq!(answer.response.status(), 401);
//! assert!(answer.principal.is_none());
//! # Ok(())
//! # }
//! ```

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;

use crate::bearer::single_authorization;
use crate::gate::{Quick, TokenGate};
use crate::limit::Decision;
use crate::metrics::Outcome;
use crate::principal::Principal;
use crate::response::{Rejection, missing_scope, write_rate_limit_headers_with};

/// The gate's answer to one request: what to relay, and who asked.
#[derive(Debug)]
#[non_exhaustive]
pub struct GateAnswer {
    /// `200` with an empty body and the rate-limit headers when the request
    /// may go on; otherwise the contract's response (status, headers, body).
    pub response: Response,
    /// The authenticated principal: set when the request was admitted, and
    /// for a token that lacks the route's scope (its 403 was counted).
    pub principal: Option<Principal>,
}

impl GateAnswer {
    /// Whether the request may go on.
    pub fn is_allowed(&self) -> bool {
        self.response.status().is_success()
    }

    /// The 429, with the principal's prebuilt header values (the layer's).
    fn rate_limited(gate: &TokenGate, principal: &Principal, decision: &Decision) -> Self {
        Self {
            response: crate::gate::rate_limited(gate, principal, decision),
            principal: None,
        }
    }

    /// A rejection's documented response (the layer's).
    fn refused(gate: &TokenGate, rejection: Rejection) -> Self {
        Self {
            response: crate::gate::reject(gate, rejection),
            principal: None,
        }
    }
}

impl GateAnswer {
    /// Checks a request by its `Authorization` header (one `Bearer` token);
    /// the token must have every scope in `scopes`. Takes the layer's path: a
    /// cached token and a local limiter are answered from memory.
    pub async fn for_request<S: AsRef<str> + Sync>(
        gate: &TokenGate,
        headers: &HeaderMap,
        scopes: &[S],
    ) -> Self {
        let authorization = single_authorization(headers);
        let principal = match gate.check_now(authorization) {
            Quick::Admitted(principal, decision) => {
                return admitted(gate, principal, &decision, scopes);
            }
            Quick::Limited(principal, decision) => {
                return Self::rate_limited(gate, &principal, &decision);
            }
            Quick::Rejected(rejection) => return Self::refused(gate, rejection),
            Quick::NeedsLimiter(principal) => principal,
            Quick::NeedsStore => match gate.authenticate_bearer(authorization.cloned()).await {
                Ok(principal) => principal,
                Err(rejection) => return Self::refused(gate, rejection),
            },
        };
        admit(gate, principal, scopes).await
    }

    /// Checks a bare token (an empty one is a missing token); it must have
    /// every scope in `scopes`.
    pub async fn for_token<S: AsRef<str> + Sync>(
        gate: &TokenGate,
        token: &str,
        scopes: &[S],
    ) -> Self {
        if token.is_empty() {
            return Self::refused(gate, Rejection::MissingToken);
        }
        match gate.authenticate_token(token).await {
            Ok(principal) => admit(gate, principal, scopes).await,
            Err(rejection) => Self::refused(gate, rejection),
        }
    }
}

/// The limiter, then the scopes.
async fn admit<S: AsRef<str> + Sync>(
    gate: &TokenGate,
    principal: Principal,
    scopes: &[S],
) -> GateAnswer {
    match gate.check_rate_limit(&principal).await {
        Ok(decision) => admitted(gate, principal, &decision, scopes),
        Err(Rejection::RateLimited(decision)) => {
            GateAnswer::rate_limited(gate, &principal, &decision)
        }
        Err(rejection) => GateAnswer::refused(gate, rejection),
    }
}

/// An admitted request's answer: a token without one of `scopes` was
/// admitted by the limiter, so its 403 (naming the first scope it lacks)
/// counts and carries the headers, as behind the layer.
fn admitted<S: AsRef<str>>(
    gate: &TokenGate,
    principal: Principal,
    decision: &Decision,
    scopes: &[S],
) -> GateAnswer {
    gate.metrics().record_outcome(Outcome::Ok);
    let lacking = scopes
        .iter()
        .map(AsRef::as_ref)
        .find(|s| !principal.has_scope(s));
    let mut response = match lacking {
        Some(scope) => missing_scope(scope),
        None => Response::new(Body::from(Bytes::new())),
    };
    write_rate_limit_headers_with(
        decision,
        principal.policy_headers(decision),
        response.headers_mut(),
    );
    GateAnswer {
        response,
        principal: Some(principal),
    }
}

//! Where a request comes from, for the audit log: the client address (when
//! the server provides axum's `ConnectInfo<SocketAddr>`) and the request id
//! (`x-request-id`, set by the server or a proxy in front).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;

use crate::manage::Actor;

/// Longest request id copied into an audit event.
const MAX_REQUEST_ID: usize = 128;

/// The client address and request id of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestOrigin {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) request_id: Option<String>,
}

impl RequestOrigin {
    pub(crate) fn of(parts: &Parts) -> Self {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip().to_canonical());
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| (1..=MAX_REQUEST_ID).contains(&id.len()))
            .map(str::to_owned);
        Self { ip, request_id }
    }

    /// The actor `name`, acting through this request.
    pub(crate) fn actor(&self, name: impl Into<String>) -> Actor {
        Actor::new(name)
            .from_ip(self.ip)
            .with_request_id(self.request_id.clone())
    }
}

impl Actor {
    /// The actor `name`, acting through the request of `parts`: its client
    /// address (from axum's `ConnectInfo<SocketAddr>`, when the server
    /// provides it) and its `x-request-id`, for the audit log.
    pub fn for_request(name: impl Into<String>, parts: &Parts) -> Self {
        RequestOrigin::of(parts).actor(name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

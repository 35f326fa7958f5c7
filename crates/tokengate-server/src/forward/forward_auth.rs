//! `/forward-auth`: a reverse proxy asks whether a request may go on.
//!
//! The proxy sends the client's `Authorization`, and the original method
//! and URI in `X-Forwarded-Method` / `X-Forwarded-Uri` (Caddy, Traefik) or
//! `X-Original-Method` / `X-Original-URI` (nginx). Allowed: `200`, the
//! rate-limit headers (for the client) and the identity headers (for the
//! upstream). Denied: the contract's response, which the proxy relays.
//!
//! nginx's `auth_request` relays only 2xx, 401 and 403, and never a body.
//! A proxy that sends `X-Tokengate-Proxy: nginx` therefore also gets the
//! denial's status and body in `X-Tokengate-Status` and `X-Tokengate-Body`,
//! from which its `error_page` renders the exact response without asking
//! again (so a denied request counts once, like any other). That answer
//! has an empty body: nginx keeps an upstream connection for the next
//! subrequest only when the answer to a subrequest has no body, so with the
//! body there every denial (a 429 flood, say) cost nginx a new connection to
//! tokengate, and left a socket in TIME_WAIT.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tokengate::Principal;
use tokengate::http::{ApiError, GateAnswer};

use super::ForwardState;
use super::path::normalize;

/// The identity headers of an allowed request, for the upstream.
const ACCOUNT_ID: HeaderName = HeaderName::from_static("x-tokengate-account-id");
const TOKEN_ID: HeaderName = HeaderName::from_static("x-tokengate-token-id");
const PLAN: HeaderName = HeaderName::from_static("x-tokengate-plan");
const SCOPES: HeaderName = HeaderName::from_static("x-tokengate-scopes");

const PROXY: &str = "x-tokengate-proxy";
const STATUS: HeaderName = HeaderName::from_static("x-tokengate-status");
const BODY: HeaderName = HeaderName::from_static("x-tokengate-body");

pub(crate) async fn forward_auth(
    State(state): State<Arc<ForwardState>>,
    request: Request,
) -> Response {
    let trusted = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| state.config.trusted_proxies.contains(peer.ip()));
    let headers = request.headers();
    if !trusted {
        // As for any route that does not exist.
        return ApiError::response(StatusCode::NOT_FOUND, "Not found");
    }
    let for_nginx = headers
        .get(PROXY)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"nginx"));
    let forged = if for_nginx {
        unstrippable_header(headers)
    } else {
        None
    };
    let response = match original_request(headers) {
        _ if forged.is_some() => ApiError::response(
            StatusCode::BAD_REQUEST,
            &format!(
                "Request headers starting with X-Tokengate- are tokengate's own: remove {}",
                forged.unwrap_or_default()
            ),
        ),
        Ok((method, path)) => {
            let scopes = state.config.rules.required_scopes(method, &path);
            let answer = GateAnswer::for_request(&state.gate, headers, scopes).await;
            let mut response = answer.response;
            if response.status().is_success()
                && let Some(principal) = &answer.principal
            {
                add_identity(principal, response.headers_mut());
            }
            response
        }
        Err(message) => ApiError::response(StatusCode::BAD_REQUEST, &message),
    };
    if for_nginx && !response.status().is_success() {
        return with_denial_in_headers(response).await;
    }
    response
}

/// The headers the shipped nginx config sets itself on the way to the
/// upstream (replacing whatever the client sent).
const NGINX_REPLACES: [&str; 7] = [
    "x-tokengate-account-id",
    "x-tokengate-token-id",
    "x-tokengate-plan",
    "x-tokengate-scopes",
    PROXY,
    "x-tokengate-status",
    "x-tokengate-body",
];

/// A client's own `X-Tokengate-*` header that nginx would pass on to the
/// upstream: nginx cannot drop headers by prefix (Caddy's config does), so
/// such a request is refused before it is counted, and never reaches it.
fn unstrippable_header(headers: &HeaderMap) -> Option<String> {
    headers
        .keys()
        .map(HeaderName::as_str)
        .find(|name| name.starts_with("x-tokengate-") && !NGINX_REPLACES.contains(name))
        .map(str::to_owned)
}

/// The original method and normalized path, or why they cannot be trusted.
fn original_request(headers: &HeaderMap) -> Result<(&str, String), String> {
    let method = one_of(headers, "x-forwarded-method", "x-original-method")?;
    let uri = one_of(headers, "x-forwarded-uri", "x-original-uri")?;
    let path = normalize(uri).map_err(|e| format!("Ambiguous request path refused: {e}"))?;
    Ok((method, path))
}

/// The value of exactly one of two headers, sent once.
fn one_of<'a>(headers: &'a HeaderMap, first: &str, second: &str) -> Result<&'a str, String> {
    let mut values = headers.get_all(first).iter().chain(headers.get_all(second));
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(format!(
            "Forward auth needs exactly one {first} or {second} header from the proxy"
        ));
    };
    value
        .to_str()
        .map_err(|_| format!("Forward auth: {first}/{second} is not ASCII"))
}

/// Adds the identity headers of `principal`, for the upstream.
fn add_identity(principal: &Principal, headers: &mut HeaderMap) {
    let token_id = principal.token_id().to_string();
    let scopes = principal.scopes().join(" ");
    for (name, value) in [
        (ACCOUNT_ID, principal.account_id()),
        (TOKEN_ID, token_id.as_str()),
        (PLAN, principal.plan()),
        (SCOPES, scopes.as_str()),
    ] {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                headers.insert(name, value);
            }
            Err(_) => tracing::warn!(header = %name, "identity value cannot be a header; left out"),
        }
    }
}

/// The denial with its status and body in headers, for nginx, and no body:
/// `auth_request` never relays one, and nginx closes the connection of an
/// answer that has one instead of keeping it for the next check.
async fn with_denial_in_headers(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    // Our denials are small, fixed bodies already in memory.
    let bytes = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    parts
        .headers
        .insert(STATUS, HeaderValue::from(parts.status.as_u16()));
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes) {
        parts.headers.insert(BODY, value);
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::empty())
}

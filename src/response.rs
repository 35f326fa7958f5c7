//! The documented responses, each built by exactly one function.
//!
//! The contract (DESIGN.md) fixes these bodies to the byte:
//!
//! * 401 `{"success": false, "error": "Invalid or missing API token"}`
//! * 403 `{"success": false, "error": "API access not available on your subscription plan"}`
//! * 429 `{"success": false, "error": "Rate limit exceeded. Try again in N seconds."}`
//! * 503 `{"success": false, "error": "Service temporarily unavailable"}`
//!
//! and every authenticated response carries `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset`, plus the IETF draft's
//! `RateLimit-Policy` and `RateLimit` fields. The fixed bodies are static
//! bytes, so a flood of bad tokens costs no formatting and no allocation for
//! the body.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::limit::Decision;
use crate::metrics::Outcome;

/// Why a request was not let through: each variant is one documented answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// 401: no bearer credentials (no `Authorization` header, or one with
    /// another scheme such as `Basic`); the challenge names no error code.
    MissingToken,
    /// 401: malformed, unknown, wrong, revoked or expired token.
    InvalidToken,
    /// 403: the plan has no API access.
    NoApiAccess,
    /// 429: over the plan's limit.
    RateLimited(Decision),
    /// 503: a backend could not answer.
    Unavailable,
}

impl Rejection {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Rejection::MissingToken | Rejection::InvalidToken => Outcome::Unauthorized,
            Rejection::NoApiAccess => Outcome::Forbidden,
            Rejection::RateLimited(_) => Outcome::RateLimited,
            Rejection::Unavailable => Outcome::Unavailable,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::MissingToken => unauthorized(false),
            Rejection::InvalidToken => unauthorized(true),
            Rejection::NoApiAccess => forbidden(),
            Rejection::RateLimited(decision) => too_many_requests(&decision),
            Rejection::Unavailable => unavailable(),
        }
    }
}

/// The 401 body, byte for byte.
pub(crate) const UNAUTHORIZED_BODY: &str =
    r#"{"success": false, "error": "Invalid or missing API token"}"#;
/// The 403 message: a plan without API access (the contract's words).
pub(crate) const NO_API_ACCESS_MESSAGE: &str = "API access not available on your subscription plan";
/// The 403 body, byte for byte.
pub(crate) const FORBIDDEN_BODY: &str =
    r#"{"success": false, "error": "API access not available on your subscription plan"}"#;
/// The 503 body, byte for byte.
pub(crate) const UNAVAILABLE_BODY: &str =
    r#"{"success": false, "error": "Service temporarily unavailable"}"#;

/// `X-RateLimit-Limit`: requests allowed per hour.
pub(crate) static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`: requests left in the current rolling hour.
pub(crate) static X_RATELIMIT_REMAINING: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`: Unix second at which `Remaining` next grows.
pub(crate) static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// IETF draft `RateLimit-Policy`: `"hourly";q=<limit>;w=<window seconds>`.
pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// IETF draft `RateLimit`: `"hourly";r=<remaining>;t=<seconds until reset>`.
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

const JSON: HeaderValue = HeaderValue::from_static("application/json");
// RFC 6750 §3: no error code when the request carried no credentials at all.
const CHALLENGE_MISSING: HeaderValue = HeaderValue::from_static(r#"Bearer realm="api""#);
const CHALLENGE_INVALID: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="api", error="invalid_token""#);

/// A response with a fixed JSON body.
pub(crate) fn fixed(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// 401 for a missing, malformed, unknown, wrong, revoked or expired token.
///
/// `credentials_present` only changes the `WWW-Authenticate` challenge
/// (RFC 6750 §3); the body is the same in every case, so a caller learns
/// nothing about why a token failed.
pub(crate) fn unauthorized(credentials_present: bool) -> Response {
    let mut response = fixed(StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY);
    let challenge = if credentials_present {
        CHALLENGE_INVALID
    } else {
        CHALLENGE_MISSING
    };
    response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    response
}

/// 403 for a valid token whose plan has no API access.
pub(crate) fn forbidden() -> Response {
    fixed(StatusCode::FORBIDDEN, FORBIDDEN_BODY)
}

/// The scope 403's body, naming the missing `scope`.
pub(crate) fn missing_scope_body(scope: &str) -> String {
    format!(r#"{{"success": false, "error": "Token is missing the required scope: {scope}"}}"#)
}

/// 403 for a token without the route's `scope` (the caller adds the
/// rate-limit headers: the request was counted).
pub(crate) fn missing_scope(scope: &str) -> Response {
    let mut response = Response::new(Body::from(missing_scope_body(scope)));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// 503 for a backend fault: never a 401 for a token we could not check.
pub(crate) fn unavailable() -> Response {
    let mut response = fixed(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The 429 body for a wait of `retry_after_secs`.
pub(crate) fn rate_limited_body(retry_after_secs: u64) -> String {
    format!(
        r#"{{"success": false, "error": "Rate limit exceeded. Try again in {retry_after_secs} seconds."}}"#
    )
}

/// 429 with `Retry-After` (equal to the N in the body) and the rate-limit headers.
pub(crate) fn too_many_requests(decision: &Decision) -> Response {
    too_many_requests_with(
        decision,
        &PolicyHeaders::uninterned(decision.limit, decision.window_secs),
    )
}

/// Like [`too_many_requests`], with the plan's prebuilt values (the layer's
/// 429: a flood of them takes no lock and builds no header value for the plan).
pub(crate) fn too_many_requests_with(decision: &Decision, policy: &PolicyHeaders) -> Response {
    let retry_after = decision.retry_after_secs();
    let mut response = throttled(retry_after);
    write_rate_limit_headers_with(decision, policy, response.headers_mut());
    response
}

/// Headers a 429 carries: `Content-Type`, `Retry-After`, the five rate-limit
/// fields, and room for `Content-Length` and a server's `X-Request-Id`.
const THROTTLED_HEADERS: usize = 10;

/// 429 with `Retry-After` (and, from the caller, the rate-limit headers).
///
/// A flood of these is answered from memory, so each costs only what it
/// must: the body and the changing values are cut from the per-thread
/// buffer (no `malloc` of their own, no `fmt`), and the header map is sized
/// once for everything it will hold (a default one would grow from 6 to 12
/// entries on the way).
fn throttled(retry_after_secs: u64) -> Response {
    const PREFIX: &[u8] = br#"{"success": false, "error": "Rate limit exceeded. Try again in "#;
    const SUFFIX: &[u8] = br#" seconds."}"#;
    let mut digits = itoa::Buffer::new();
    let seconds = digits.format(retry_after_secs).as_bytes();
    let body = per_request_bytes(&[PREFIX, seconds, SUFFIX]);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let mut headers = HeaderMap::with_capacity(THROTTLED_HEADERS);
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(
        RETRY_AFTER,
        per_request_value(seconds).unwrap_or_else(|| HeaderValue::from(retry_after_secs)),
    );
    *response.headers_mut() = headers;
    response
}

type Interned = HashMap<(u32, u64), (HeaderValue, HeaderValue)>;
/// Interned `(X-RateLimit-Limit, RateLimit-Policy)` values per (limit, window).
static INTERNED: Mutex<Option<Interned>> = Mutex::new(None);

/// The rate-limit header values that depend only on the plan, built once per
/// cached token instead of once per request.
#[derive(Clone, Debug)]
pub(crate) struct PolicyHeaders {
    limit: u32,
    window_secs: u64,
    limit_value: HeaderValue,
    policy_value: HeaderValue,
}

impl PolicyHeaders {
    /// Values for `limit` requests per `window_secs`, interned.
    ///
    /// Values for up to 1,024 distinct plans are interned as `'static`
    /// strings: cloning them then touches no shared reference count, which
    /// matters when every core serves the same hot token. This takes a
    /// process-wide lock, so it runs when a token's principal is built (a
    /// cache miss), never per request: a request reuses its principal's
    /// values, and a response without a principal uses
    /// [`uninterned`](Self::uninterned).
    pub(crate) fn new(limit: u32, window_secs: u64) -> Self {
        let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        let interned = interned.get_or_insert_with(HashMap::new);
        if let Some((limit_value, policy_value)) = interned.get(&(limit, window_secs)) {
            return Self {
                limit,
                window_secs,
                limit_value: limit_value.clone(),
                policy_value: policy_value.clone(),
            };
        }
        if interned.len() >= 1024 {
            return Self::uninterned(limit, window_secs);
        }
        let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
        let values = (
            HeaderValue::from_static(leak(limit.to_string())),
            HeaderValue::from_static(leak(policy_text(limit, window_secs))),
        );
        interned.insert((limit, window_secs), values.clone());
        Self {
            limit,
            window_secs,
            limit_value: values.0,
            policy_value: values.1,
        }
    }

    /// Values for `limit` requests per `window_secs`, built without a lock.
    pub(crate) fn uninterned(limit: u32, window_secs: u64) -> Self {
        Self {
            limit,
            window_secs,
            limit_value: HeaderValue::from(limit),
            policy_value: HeaderValue::try_from(policy_text(limit, window_secs))
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        }
    }

    /// Whether these values are the ones for `decision`'s window.
    pub(crate) fn describes(&self, decision: &Decision) -> bool {
        self.limit == decision.limit && self.window_secs == decision.window_secs
    }
}

/// The policy's name in `RateLimit-Policy` and `RateLimit`, from the
/// window's length: `hourly` for the contract's hour.
fn policy_label(window_secs: u64) -> &'static str {
    match window_secs {
        60 => "minutely",
        3600 => "hourly",
        86_400 => "daily",
        _ => "window",
    }
}

/// `RateLimit-Policy`: `"<label>";q=<limit>;w=<window seconds>`.
fn policy_text(limit: u32, window_secs: u64) -> String {
    format!(
        "\"{}\";q={limit};w={window_secs}",
        policy_label(window_secs)
    )
}

/// Bytes of per-request header values cut from one thread's buffer.
const ARENA_BYTES: usize = 8 * 1024;

/// A header value that changes per request (`X-RateLimit-Reset`, `RateLimit`,
/// a `Remaining` above 10,000), cut from a per-thread buffer instead of
/// allocated: the value shares the buffer's allocation (one reference count,
/// no `malloc`/`free` per value; a new 8 KiB buffer every ~300 values). The
/// values live as long as the response; a buffer is freed with its last one.
fn per_request_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(per_request_bytes(&[bytes])).ok()
}

/// The concatenation of `parts`, cut from this thread's buffer (see
/// [`per_request_value`]).
fn per_request_bytes(parts: &[&[u8]]) -> Bytes {
    thread_local! {
        static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let len = parts.iter().map(|part| part.len()).sum();
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() < len {
            *arena = BytesMut::with_capacity(ARENA_BYTES.max(len));
        }
        for part in parts {
            arena.extend_from_slice(part);
        }
        arena.split().freeze()
    })
}

/// `HeaderValue`s for 0..=10,000 (every Pro and Enterprise `Remaining`),
/// built once from one leaked string, so the common case allocates nothing.
fn count_value(n: u32) -> HeaderValue {
    const SMALL: u32 = 10_000;
    static TABLE: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    if n > SMALL {
        let mut digits = itoa::Buffer::new();
        return per_request_value(digits.format(n).as_bytes())
            .unwrap_or_else(|| HeaderValue::from(n));
    }
    let table = TABLE.get_or_init(|| {
        let text: String = (0..=SMALL).map(|i| i.to_string()).collect();
        let text: &'static str = Box::leak(text.into_boxed_str());
        let mut start = 0;
        (0..=SMALL)
            .map(|i| {
                let len = if i == 0 { 1 } else { i.ilog10() as usize + 1 };
                let value = HeaderValue::from_static(&text[start..start + len]);
                start += len;
                value
            })
            .collect()
    });
    table[n as usize].clone()
}

/// Adds `X-RateLimit-*`, `RateLimit-Policy` and `RateLimit` for a decision.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn write_rate_limit_headers(decision: &Decision, headers: &mut HeaderMap) {
    write_rate_limit_headers_with(
        decision,
        &PolicyHeaders::uninterned(decision.limit, decision.window_secs),
        headers,
    );
}

/// Like [`write_rate_limit_headers`], reusing the plan's prebuilt values.
pub(crate) fn write_rate_limit_headers_with(
    decision: &Decision,
    policy: &PolicyHeaders,
    headers: &mut HeaderMap,
) {
    let fresh;
    let policy = if policy.describes(decision) {
        policy
    } else {
        fresh = PolicyHeaders::uninterned(decision.limit, decision.window_secs);
        &fresh
    };
    headers.reserve(5);
    headers.insert(X_RATELIMIT_LIMIT.clone(), policy.limit_value.clone());
    headers.insert(
        X_RATELIMIT_REMAINING.clone(),
        count_value(decision.remaining),
    );
    let reset = decision.reset_unix_secs();
    let mut digits = itoa::Buffer::new();
    headers.insert(
        X_RATELIMIT_RESET.clone(),
        per_request_value(digits.format(reset).as_bytes())
            .unwrap_or_else(|| HeaderValue::from(reset)),
    );
    headers.insert(RATELIMIT_POLICY.clone(), policy.policy_value.clone());
    // `"hourly";r=<remaining>;t=<seconds>`, assembled without `fmt`.
    let mut buf = [0u8; 48];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    let mut digits = itoa::Buffer::new();
    push(b"\"");
    push(policy_label(decision.window_secs).as_bytes());
    push(b"\";r=");
    push(digits.format(decision.remaining).as_bytes());
    push(b";t=");
    push(digits.format(decision.reset_in_secs()).as_bytes());
    if let Some(value) = per_request_value(&buf[..len]) {
        headers.insert(RATELIMIT.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn contract_bodies_are_exact() {
        let r = unauthorized(true);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="api", error="invalid_token""#
        );
        assert_eq!(
            body(r).await,
            r#"{"success": false, "error": "Invalid or missing API token"}"#
        );
        assert_eq!(
            unauthorized(false).headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="api""#
        );
        let r = forbidden();
        assert_eq!(r.status(), 403);
        assert_eq!(
            body(r).await,
            r#"{"success": false, "error": "API access not available on your subscription plan"}"#
        );
        let r = unavailable();
        assert_eq!(r.status(), 503);
        assert_eq!(
            body(r).await,
            r#"{"success": false, "error": "Service temporarily unavailable"}"#
        );
    }

    #[tokio::test]
    async fn too_many_requests_agrees_with_retry_after() {
        let decision = Decision {
            allowed: false,
            limit: 1000,
            remaining: 0,
            reset_at_ms: 1_800_000_042_500,
            now_ms: 1_800_000_000_000,
            window_secs: 3600,
        };
        let r = too_many_requests(&decision);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[RETRY_AFTER], "43");
        assert_eq!(r.headers()["x-ratelimit-limit"], "1000");
        assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
        assert_eq!(r.headers()["x-ratelimit-reset"], "1800000043");
        assert_eq!(r.headers()["ratelimit-policy"], "\"hourly\";q=1000;w=3600");
        assert_eq!(r.headers()["ratelimit"], "\"hourly\";r=0;t=43");
        assert_eq!(
            body(r).await,
            r#"{"success": false, "error": "Rate limit exceeded. Try again in 43 seconds."}"#
        );
    }

    /// The 429 written without `fmt` is the envelope's, byte for byte, for
    /// any wait, and its `Retry-After` is the same number.
    #[tokio::test]
    async fn the_429_body_is_the_envelope_for_every_wait() {
        for secs in [1, 9, 10, 99, 3599, 3600, 86_400, u64::MAX] {
            let r = throttled(secs);
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(r.headers()[RETRY_AFTER], secs.to_string().as_str());
            assert_eq!(body(r).await, rate_limited_body(secs));
        }
    }

    /// Prebuilt values serve only their own plan: a decision for another limit
    /// or another window gets its own values.
    #[test]
    fn prebuilt_policy_values_are_used_only_for_their_own_plan() {
        let decision = Decision {
            allowed: true,
            limit: 1000,
            remaining: 999,
            reset_at_ms: 1_800_000_042_500,
            now_ms: 1_800_000_000_000,
            window_secs: 3600,
        };
        for (limit, window_secs) in [(1000, 3600), (100, 3600), (1000, 60), (100, 60)] {
            let mut headers = HeaderMap::new();
            let policy = PolicyHeaders::new(limit, window_secs);
            write_rate_limit_headers_with(&decision, &policy, &mut headers);
            assert_eq!(headers["x-ratelimit-limit"], "1000", "{policy:?}");
            assert_eq!(headers["ratelimit-policy"], "\"hourly\";q=1000;w=3600");
            assert_eq!(headers["ratelimit"], "\"hourly\";r=999;t=43");
        }
    }

    /// A flood of 429s must not serialise the cores: building one takes no
    /// process-wide lock (here held by the test while a 429 is built).
    #[test]
    fn a_429_takes_no_process_wide_lock() {
        let decision = Decision {
            allowed: false,
            limit: 4321,
            remaining: 0,
            reset_at_ms: 1_800_000_042_500,
            now_ms: 1_800_000_000_000,
            window_secs: 3600,
        };
        let policy = PolicyHeaders::new(4321, 3600);
        let held = INTERNED.lock().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let public = Rejection::RateLimited(decision).into_response();
            let prebuilt = too_many_requests_with(&decision, &policy);
            let _ = done.send((public.headers().clone(), prebuilt.headers().clone()));
        });
        // Generous: the work takes microseconds; a lock would never finish.
        let (public, prebuilt) = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("building a 429 waited for the interning lock");
        drop(held);
        for headers in [public, prebuilt] {
            assert_eq!(headers["x-ratelimit-limit"], "4321");
            assert_eq!(headers["ratelimit-policy"], "\"hourly\";q=4321;w=3600");
        }
    }

    /// The policy's label follows the window's length.
    #[test]
    fn the_policy_label_is_the_window_length() {
        for (window_secs, label) in [
            (3600, "hourly"),
            (60, "minutely"),
            (86_400, "daily"),
            (90, "window"),
        ] {
            let decision = Decision {
                allowed: true,
                limit: 10,
                remaining: 9,
                reset_at_ms: 1_800_000_042_500,
                now_ms: 1_800_000_000_000,
                window_secs,
            };
            let mut headers = HeaderMap::new();
            write_rate_limit_headers(&decision, &mut headers);
            assert_eq!(
                headers["ratelimit-policy"],
                format!("\"{label}\";q=10;w={window_secs}").as_str()
            );
            assert_eq!(
                headers["ratelimit"],
                format!("\"{label}\";r=9;t=43").as_str()
            );
            let mut prebuilt = HeaderMap::new();
            write_rate_limit_headers_with(
                &decision,
                &PolicyHeaders::new(10, window_secs),
                &mut prebuilt,
            );
            assert_eq!(prebuilt, headers);
        }
    }

    /// Values cut from the per-thread buffer are each their own bytes, also
    /// across a buffer change, and invalid bytes are refused as before.
    #[test]
    fn per_request_values_keep_their_own_bytes() {
        let values: Vec<(String, HeaderValue)> = (0..2 * ARENA_BYTES / 10)
            .map(|i| {
                let text = format!("{}", 1_800_000_000u64 + u64::try_from(i).unwrap());
                let value = per_request_value(text.as_bytes()).unwrap();
                (text, value)
            })
            .collect();
        for (text, value) in &values {
            assert_eq!(value, text.as_str());
        }
        assert!(per_request_value(b"bad\nvalue").is_none());
        let long = "7".repeat(ARENA_BYTES + 1);
        assert_eq!(per_request_value(long.as_bytes()).unwrap(), long.as_str());
    }

    #[test]
    fn count_values_match_their_numbers() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            999,
            1000,
            9999,
            10_000,
            10_001,
            u32::MAX,
        ] {
            assert_eq!(count_value(n), n.to_string().as_str());
        }
    }
}

//! The server's per-request stack, as one tower layer with one future:
//!
//! - the `Authorization` header is marked sensitive before anything else
//!   sees the request, so no `Debug` of it prints the token;
//! - an `x-request-id` is kept or generated (`request_id.rs`) and echoed on
//!   the response;
//! - a tracing span `request` (target `tokengate::request`, level `debug`)
//!   with the method, path, query, version and request id (anything
//!   token-shaped in the path and query replaced by `[redacted]`; the request
//!   id is never token-shaped, see `request_id.rs`), and one `debug` line when
//!   the response is ready; when that level is off (the default `info`)
//!   neither is built;
//! - request bodies are limited to [`MAX_BODY_BYTES`]: a larger
//!   `Content-Length` is answered 413 at once, and a body without one stops
//!   at the limit (axum's extractors then answer 413);
//! - request bodies have deadlines ([`BodyDeadlines`]): a body still
//!   arriving after `BODY_TIMEOUT_SECS`, or falling behind `BODY_MIN_RATE`
//!   bytes per second after its first seconds, fails, and the request is
//!   answered 408 in the envelope with `connection: close`, whatever the
//!   handler made of the failed read;
//! - a request still unanswered 30 s after it first had to wait is answered
//!   503: the timer is only armed when the handler does not answer on its
//!   first poll, so a request answered from memory costs no timer;
//! - a panic in a handler is answered 500 (the panic hook still logs it);
//! - any error response that is not JSON (a body limit, an extractor's
//!   plain-text rejection) is rewritten into the error envelope.
//!
//! tower-http's layers did the same, one wrapper each: one future, one
//! response body to box and one header map pass per layer, a timer per
//! request and a span per request even when nothing would record it.
//! `/health` through this stack costs a few hundred nanoseconds more than
//! a bare axum route (BENCHMARKS.md).

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::response::Response;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use pin_project_lite::pin_project;
use tokengate::http::{ApiError, redact_token_shaped};
use tokio::time::{Instant, Sleep};
use tracing::Span;

pub use crate::body_deadline::BodyDeadlines;
use crate::body_deadline::DeadlineBody;
use crate::request_id::{X_REQUEST_ID, request_id};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a request may take once it had to wait for something.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The per-request stack of the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StackLayer {
    body: BodyDeadlines,
}

impl StackLayer {
    pub(crate) fn new(body: BodyDeadlines) -> Self {
        Self { body }
    }
}

impl<S> tower::Layer<S> for StackLayer {
    type Service = Stack<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Stack {
            inner,
            body: self.body,
        }
    }
}

/// The service made by [`StackLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Stack<S> {
    inner: S,
    body: BodyDeadlines,
}

impl<S> tower::Service<Request> for Stack<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = StackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        mark_sensitive(request.headers_mut());
        let id = request_id(request.headers_mut());
        let span = request_span(&request);
        let trace = (!span.is_disabled()).then(|| (span, Instant::now()));
        let _entered = trace.as_ref().map(|(span, _)| span.enter());
        let mut body_expired = None;
        let state = match limit_body(&mut request, self.body, &mut body_expired) {
            Some(too_large) => State::Answered {
                response: Some(too_large),
            },
            None => match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
                Ok(future) => State::Running {
                    future,
                    timer: None,
                },
                Err(_) => State::Answered {
                    response: Some(panicked()),
                },
            },
        };
        drop(_entered);
        StackFuture {
            state,
            id: Some(id),
            trace,
            body_expired,
        }
    }
}

/// Marks every `Authorization` field sensitive (redacted in `Debug`).
fn mark_sensitive(headers: &mut HeaderMap) {
    if let http::header::Entry::Occupied(mut entry) = headers.entry(AUTHORIZATION) {
        for value in entry.iter_mut() {
            value.set_sensitive(true);
        }
    }
}

/// The span of one request. Its fields are only computed when the span is
/// enabled (`tokengate::request=debug`), so by default it costs one check.
fn request_span(request: &Request) -> Span {
    tracing::debug_span!(
        target: "tokengate::request",
        "request",
        method = %request.method(),
        // A client that puts its token in the path or the query string
        // (which is refused) must not get it written to the log.
        path = %redact_token_shaped(request.uri().path()),
        query = %request.uri().query().map(redact_token_shaped).unwrap_or_default(),
        version = ?request.version(),
        request_id = request
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .unwrap_or_default(),
    )
}

/// A 413 to answer for a declared length over the limit; otherwise a body
/// that can carry anything is wrapped so that it stops at the limit and
/// fails past its deadlines (`expired` is then set). An empty body (every
/// `GET`) is left as it is.
fn limit_body(
    request: &mut Request,
    deadlines: BodyDeadlines,
    expired: &mut Option<Arc<AtomicBool>>,
) -> Option<Response> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let limit = match declared {
        Some(length) if length > MAX_BODY_BYTES as u64 => {
            return Some(ApiError::response(
                StatusCode::PAYLOAD_TOO_LARGE,
                TOO_LARGE_MESSAGE,
            ));
        }
        Some(length) => usize::try_from(length).unwrap_or(usize::MAX),
        None => MAX_BODY_BYTES,
    };
    if !request.body().is_end_stream() {
        let body = std::mem::take(request.body_mut());
        let limited = http_body_util::Limited::new(body, limit);
        let flag = Arc::new(AtomicBool::new(false));
        *request.body_mut() = Body::new(DeadlineBody::new(limited, deadlines, Arc::clone(&flag)));
        *expired = Some(flag);
    }
    None
}

const TOO_LARGE_MESSAGE: &str = "Request body too large (limit 1 MB)";

fn panicked() -> Response {
    ApiError::response(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// 408 for a body past its deadlines; the connection is closed after it
/// (the rest of the body is never read).
fn body_timed_out() -> Response {
    let mut response = ApiError::response(
        StatusCode::REQUEST_TIMEOUT,
        "Request body timed out: send the whole body within BODY_TIMEOUT_SECS, at BODY_MIN_RATE bytes per second or faster",
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn timed_out() -> Response {
    ApiError::response(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service temporarily unavailable",
    )
}

pin_project! {
    /// The future of [`Stack`].
    pub(crate) struct StackFuture<F> {
        #[pin]
        state: State<F>,
        id: Option<HeaderValue>,
        trace: Option<(Span, Instant)>,
        // Set when the request's body passed a deadline.
        body_expired: Option<Arc<AtomicBool>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            future: F,
            // Armed at the first `Pending` (see the module docs).
            #[pin]
            timer: Option<Sleep>,
        },
        Answered {
            response: Option<Response>,
        },
    }
}

impl<F> Future for StackFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.trace.as_ref().map(|(span, _)| span.enter());
        let response = match this.state.project() {
            #[expect(
                clippy::expect_used,
                reason = "a future polled after it returned Ready is a bug in the caller (Future's contract)"
            )]
            StateProj::Answered { response } => response
                .take()
                .expect("StackFuture polled after completion"),
            StateProj::Running { future, mut timer } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Ready(Ok(response))) => response,
                    Ok(Poll::Ready(Err(never))) => match never {},
                    Err(_) => panicked(),
                    Ok(Poll::Pending) => {
                        if timer.is_none() {
                            timer.set(Some(tokio::time::sleep(REQUEST_TIMEOUT)));
                        }
                        match timer.as_pin_mut().map(|timer| timer.poll(cx)) {
                            Some(Poll::Ready(())) => timed_out(),
                            _ => return Poll::Pending,
                        }
                    }
                }
            }
        };
        let expired = this
            .body_expired
            .as_ref()
            .is_some_and(|expired| expired.load(Ordering::Relaxed));
        let mut response = if expired {
            body_timed_out()
        } else {
            into_envelope(response)
        };
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        if let Some((_, started)) = &*this.trace {
            tracing::debug!(
                target: "tokengate::request",
                status = response.status().as_u16(),
                latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "finished processing request"
            );
        }
        Poll::Ready(Ok(response))
    }
}

/// Safety net: any error response that is not already JSON (a body limit,
/// an extractor's rejection) is rewritten into the error envelope.
fn into_envelope(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => TOO_LARGE_MESSAGE,
        StatusCode::REQUEST_TIMEOUT => "Request timed out",
        StatusCode::SERVICE_UNAVAILABLE => "Service temporarily unavailable",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        s if s.is_server_error() => "Internal server error",
        _ => status.canonical_reason().unwrap_or("Bad request"),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    let mut envelope = ApiError::response(status, message);
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE {
            envelope.headers_mut().append(name.clone(), value.clone());
        }
    }
    envelope
}

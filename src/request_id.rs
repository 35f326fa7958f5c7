//! Request ids for the server's logs: `x-request-id` is kept when the client
//! (or a proxy in front) sends a well-formed one, generated otherwise, and
//! echoed on every response.
//!
//! A generated id is a random per-process prefix and a counter, e.g.
//! `Xk3Jd9xQ-4097`: unique across restarts and instances (48 random bits)
//! without a syscall, a lock or a shared cache line per request. Each thread
//! takes counter values in blocks, so ids are unique but not ordered.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use rand::RngCore;
use rand::rngs::OsRng;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The request id header.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id that is kept (Heroku's router uses 200).
const MAX_INCOMING_LEN: usize = 128;

/// Counter values a thread takes from the shared counter at a time.
const BLOCK: u64 = 4096;

/// Keeps a well-formed incoming `x-request-id` or sets a fresh one, and
/// copies it onto the response. One layer rather than tower-http's three
/// (set, propagate, sanitize): each wrapper adds a future to move and a
/// header or extension to allocate, on every request, `/health` included.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RequestIdService<S> {
    inner: S,
}

impl<S, B, R> tower::Service<Request<B>> for RequestIdService<S>
where
    S: tower::Service<Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = match request.headers().get(&X_REQUEST_ID) {
            Some(value) if is_well_formed(value.as_bytes()) => value.clone(),
            _ => {
                let id = new_id();
                request
                    .headers_mut()
                    .insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        RequestIdFuture {
            future: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project! {
    /// The future of [`RequestIdService`].
    pub(crate) struct RequestIdFuture<F> {
        #[pin]
        future: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(response))
    }
}

fn new_id() -> HeaderValue {
    HeaderValue::from_bytes(next_id(&mut [0u8; ID_CAPACITY]))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

const PREFIX_LEN: usize = 8;
/// Prefix, '-', and up to 20 digits of a u64.
const ID_CAPACITY: usize = PREFIX_LEN + 1 + 20;

fn process_prefix() -> &'static [u8; PREFIX_LEN] {
    static PREFIX: OnceLock<[u8; PREFIX_LEN]> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut random = [0u8; 6];
        OsRng.fill_bytes(&mut random);
        let mut prefix = [0u8; PREFIX_LEN];
        // 6 bytes are exactly 8 base64 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(random, &mut prefix);
        prefix
    })
}

fn next_counter() -> u64 {
    static SHARED: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        // (next value, end of this thread's block); empty until first use.
        static RESERVED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    RESERVED.with(|reserved| {
        let (mut next, mut end) = reserved.get();
        if next == end {
            next = SHARED.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        reserved.set((next + 1, end));
        next
    })
}

/// Writes the next id into `buf` and returns it.
fn next_id(buf: &mut [u8; ID_CAPACITY]) -> &[u8] {
    buf[..PREFIX_LEN].copy_from_slice(process_prefix());
    buf[PREFIX_LEN] = b'-';
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(next_counter()).as_bytes();
    let len = PREFIX_LEN + 1 + digits.len();
    buf[PREFIX_LEN + 1..len].copy_from_slice(digits);
    &buf[..len]
}

fn is_well_formed(id: &[u8]) -> bool {
    (1..=MAX_INCOMING_LEN).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn generate() -> String {
        new_id().to_str().unwrap().to_owned()
    }

    #[test]
    fn generated_ids_share_a_prefix_and_are_unique_across_threads() {
        let ids: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..5000).map(|_| generate()).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().unwrap())
                .collect()
        });
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let prefix = &ids[0][..PREFIX_LEN + 1];
        for id in &ids {
            assert!(id.starts_with(prefix), "{id}");
            assert!(is_well_formed(id.as_bytes()), "{id}");
            assert!(
                id[PREFIX_LEN + 1..].bytes().all(|b| b.is_ascii_digit()),
                "{id}"
            );
        }
    }

    #[tokio::test]
    async fn well_formed_ids_are_kept_and_others_replaced() {
        use tower::{Layer, ServiceExt};
        let echo = tower::service_fn(|request: Request<()>| async move {
            let seen = request.headers().get(&X_REQUEST_ID).cloned();
            Ok::<_, std::convert::Infallible>(http::Response::new(seen))
        });
        let service = RequestIdLayer.layer(echo);
        let call = |value: Option<&'static [u8]>| {
            let service = service.clone();
            async move {
                let mut request = Request::new(());
                if let Some(value) = value {
                    request
                        .headers_mut()
                        .insert(&X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
                }
                let response = service.oneshot(request).await.unwrap();
                let echoed = response.headers()[&X_REQUEST_ID].clone();
                assert_eq!(
                    Some(&echoed),
                    response.body().as_ref(),
                    "handler saw the same id"
                );
                echoed.as_bytes().to_vec()
            }
        };
        let kept = b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
        assert_eq!(call(Some(kept)).await, kept);
        assert_eq!(call(Some(&[b'a'; 128])).await, [b'a'; 128]);
        for bad in [&[b'a'; 129][..], b"", b"two words", b"caf\xc3\xa9"] {
            let replaced = call(Some(bad)).await;
            assert_ne!(replaced, bad);
            assert!(is_well_formed(&replaced));
        }
        let fresh = call(None).await;
        assert!(fresh.starts_with(process_prefix()));
    }
}

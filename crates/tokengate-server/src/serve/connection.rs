//! One accepted connection: hyper's HTTP/1.1 state machine plus the timers
//! hyper does not have.
//!
//! hyper's own `header_read_timeout` is off. Its timer restarts as soon as a
//! keep-alive connection goes idle, so it is also the idle timeout: with it,
//! an idle limit longer than the header limit is impossible. Instead each
//! connection task keeps one `Sleep` and these rules:
//!
//! - before the first request completes its head: `header_read_timeout`
//!   from accept (a silent or half-sent first request);
//! - idle after a response: `idle_timeout` from the end of that response;
//! - once a byte of the next request has arrived: `header_read_timeout` from
//!   that byte;
//! - while a request is in the service: no limit here (the router's own
//!   timeout and body deadlines bound it); but while it waits for more of
//!   its body, the registry may pick the connection at the cap, and it is
//!   then dropped at once, like an idle one.
//!
//! The timer is lazy: requests only store timestamps in atomics, and the
//! task looks at them when its `Sleep` fires (at the earliest moment any rule
//! could expire: at most the shorter of the two timeouts from the last look,
//! so either timeout is honoured exactly whatever their relation), so a
//! request costs no timer operation.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::Oneshot;

use super::Shared;

/// "No byte of a next request yet".
const NONE: u64 = u64::MAX;

/// How long a connection asked to close may take to finish what hyper is
/// still writing when no request is in the service (a slow reader).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// What the accept loop, the registry and the connection's own task know
/// about one connection. Written only by the connection's task (single
/// writer: plain loads and stores), read by the registry when it picks
/// connections to evict.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) id: u64,
    epoch: Instant,
    /// Nanoseconds since `epoch`.
    accepted: u64,
    /// A request is in the service (HTTP/1.1: at most one at a time).
    busy: AtomicBool,
    /// Requests handed to the service so far.
    requests: AtomicU64,
    /// When the connection last became idle (accept, or end of a response).
    idle_since: AtomicU64,
    /// First byte read while idle, or [`NONE`].
    first_byte: AtomicU64,
    /// When the request in the service started.
    busy_since: AtomicU64,
    /// The request in the service is waiting for more of its body (its last
    /// read of it was `Pending`).
    waiting_for_body: AtomicBool,
    /// Chosen for eviction (or already closing): not chosen twice.
    closing: AtomicBool,
    close: Notify,
}

/// Why a connection was closed by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
    Shutdown,
}

impl ConnState {
    pub(crate) fn new(id: u64, epoch: Instant) -> Self {
        let accepted = nanos_since(epoch);
        Self {
            id,
            epoch,
            accepted,
            busy: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(accepted),
            first_byte: AtomicU64::new(NONE),
            busy_since: AtomicU64::new(accepted),
            waiting_for_body: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        nanos_since(self.epoch)
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Idle, or stuck waiting for a request body, and not yet asked to
    /// close: the registry may evict it; the smaller the key, the longer it
    /// has been idle (or its request has been running).
    pub(crate) fn eviction_key(&self) -> Option<u64> {
        if self.closing.load(Relaxed) {
            return None;
        }
        if !self.busy.load(Relaxed) {
            return Some(self.idle_since.load(Relaxed));
        }
        self.is_waiting_for_body()
            .then(|| self.busy_since.load(Relaxed))
    }

    /// A request is in the service and waiting for more of its body: a slow
    /// upload, which is reclaimed at the cap like an idle connection.
    fn is_waiting_for_body(&self) -> bool {
        self.busy.load(Relaxed) && self.waiting_for_body.load(Relaxed)
    }

    /// Asks the connection's task to close it (gracefully: a request in
    /// flight is answered first). Returns false if it was already closing.
    pub(crate) fn request_close(&self) -> bool {
        if self.closing.swap(true, Relaxed) {
            return false;
        }
        self.close.notify_one();
        true
    }

    fn on_bytes_read(&self) {
        if !self.busy.load(Relaxed) && self.first_byte.load(Relaxed) == NONE {
            self.first_byte.store(self.now(), Relaxed);
        }
    }

    fn request_started(&self) {
        self.busy_since.store(self.now(), Relaxed);
        self.waiting_for_body.store(false, Relaxed);
        self.busy.store(true, Relaxed);
        self.requests
            .store(self.requests.load(Relaxed) + 1, Relaxed);
    }

    fn request_finished(&self) {
        self.waiting_for_body.store(false, Relaxed);
        self.idle_since.store(self.now(), Relaxed);
        self.first_byte.store(NONE, Relaxed);
        self.busy.store(false, Relaxed);
    }

    /// The timer rules of the module doc: `(expiry, wake)`, where `expiry`
    /// is when the connection is closed (if nothing happens before) and
    /// `wake` the moment to look again (never later than any rule could
    /// expire).
    fn next_check(&self, now: u64, header: u64, idle: u64) -> (Option<(u64, CloseReason)>, u64) {
        if self.busy.load(Relaxed) {
            return (None, now.saturating_add(header.min(idle)));
        }
        let expiry = if self.requests.load(Relaxed) == 0 {
            (
                self.accepted.saturating_add(header),
                CloseReason::HeaderTimeout,
            )
        } else {
            match self.first_byte.load(Relaxed) {
                NONE => (
                    self.idle_since.load(Relaxed).saturating_add(idle),
                    CloseReason::IdleTimeout,
                ),
                first => (first.saturating_add(header), CloseReason::HeaderTimeout),
            }
        };
        // A byte may arrive any time from now and start a header deadline,
        // or a request may start and end and start an idle one.
        let wake = expiry.0.min(now.saturating_add(header.min(idle)));
        (Some(expiry), wake)
    }
}

/// A configured duration in nanoseconds; absurdly long ones (centuries)
/// become merely very long, so that sums cannot overflow.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX / 4)
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(Instant::now().duration_since(epoch).as_nanos()).unwrap_or(NONE - 1)
}

/// Serves one connection until it ends, times out, is evicted, or the
/// server shuts down.
pub(crate) async fn run<S>(
    stream: TcpStream,
    remote: SocketAddr,
    state: Arc<ConnState>,
    service: S,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    if *shutdown.borrow_and_update() {
        return;
    }
    let io = TokioIo::new(TrackedIo {
        io: stream,
        state: Arc::clone(&state),
    });
    let service = ConnService {
        inner: service,
        state: Arc::clone(&state),
        remote,
    };
    let mut conn = pin!(shared.http1.serve_connection(io, service));
    let header = nanos(shared.config.header_read_timeout);
    let idle = nanos(shared.config.idle_timeout);
    // The first look: a first request may end, and its idle deadline
    // start, before the header deadline (an idle timeout shorter than the
    // header one).
    let timer =
        tokio::time::sleep_until(state.instant(state.accepted.saturating_add(header.min(idle))));
    let mut timer = pin!(timer);
    // Set once the connection was asked to close: from then on it is
    // dropped when it stays unfinished past this while no request is in
    // the service.
    let mut close_by: Option<Instant> = None;
    let mut shutting_down = false;
    loop {
        let reason = tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(target: "tokengate::connection", %remote, error = %e, "connection error");
                }
                return;
            }
            () = timer.as_mut() => {
                let now = Instant::now();
                if let Some(deadline) = close_by {
                    if now >= deadline
                        && (!state.busy.load(Relaxed) || state.is_waiting_for_body())
                    {
                        return;
                    }
                    timer.as_mut().reset(now + CLOSE_LINGER);
                    continue;
                }
                let (expiry, wake) = state.next_check(state.now(), header, idle);
                match expiry {
                    Some((at, reason)) if at <= state.now() => reason,
                    _ => {
                        timer.as_mut().reset(state.instant(wake));
                        continue;
                    }
                }
            }
            () = state.close.notified(), if close_by.is_none() => CloseReason::Evicted,
            _ = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                CloseReason::Shutdown
            }
        };
        if close_by.is_some() {
            // Already closing; only a shutdown can arrive here. The server's
            // deadline bounds what is left.
            continue;
        }
        if reason == CloseReason::Evicted && state.is_waiting_for_body() {
            // A slow upload at the cap: dropped like an idle connection
            // (its handler with it), not waited for.
            tracing::debug!(target: "tokengate::connection", %remote, "closing a connection stuck in a request body");
            return;
        }
        state.closing.store(true, Relaxed);
        tracing::debug!(target: "tokengate::connection", %remote, ?reason, "closing connection");
        // Idle (in hyper's view): closed now. A request in flight: answered,
        // with `connection: close`.
        conn.as_mut().graceful_shutdown();
        if state.requests.load(Relaxed) == 0 {
            // No request was ever handed to the service, so nothing is owed;
            // hyper would wait for a half-sent first request to complete.
            return;
        }
        // Past this, a connection with no request in the service is dropped
        // (hyper still writing to a slow reader, or an unread request body);
        // one with a request waits for it (bounded by the router's timeout,
        // or by the server's shutdown deadline).
        let deadline = Instant::now() + CLOSE_LINGER;
        close_by = Some(deadline);
        timer.as_mut().reset(deadline);
    }
}

/// The per-connection service: hands each request to the router with the
/// peer address as axum's `ConnectInfo`, and marks the connection busy
/// until the response head is ready.
struct ConnService<S> {
    inner: S,
    state: Arc<ConnState>,
    remote: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = InFlight<Oneshot<S, Request<Body>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut request = request.map(|body| {
            if hyper::body::Body::is_end_stream(&body) {
                // No body (every GET): nothing to wait for.
                Body::new(body)
            } else {
                let state = Arc::clone(&self.state);
                Body::new(TrackedBody { body, state })
            }
        });
        request.extensions_mut().insert(ConnectInfo(self.remote));
        self.state.request_started();
        InFlight {
            future: self.inner.clone().oneshot(request),
            guard: Some(BusyGuard(Arc::clone(&self.state))),
        }
    }
}

/// A request body that tells its connection when it waits for more bytes
/// (see [`ConnState::is_waiting_for_body`]).
struct TrackedBody {
    body: Incoming,
    state: Arc<ConnState>,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        self.state
            .waiting_for_body
            .store(polled.is_pending(), Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.state.waiting_for_body.store(false, Relaxed);
    }
}

/// Marks the connection idle again when the response is ready (or the
/// request future is dropped).
struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

pin_project! {
    /// The future of [`ConnService`].
    pub(crate) struct InFlight<F> {
        #[pin]
        future: F,
        guard: Option<BusyGuard>,
    }
}

impl<F: Future> Future for InFlight<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        this.guard.take();
        Poll::Ready(output)
    }
}

/// The TCP stream, noting the first byte of each request that arrives
/// while the connection is idle.
struct TrackedIo {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_bytes_read();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn state() -> ConnState {
        let mut state = ConnState::new(1, Instant::now());
        state.accepted = 0;
        state.idle_since = AtomicU64::new(0);
        state
    }

    #[test]
    fn first_request_gets_the_header_timeout_from_accept() {
        let state = state();
        assert_eq!(
            state.next_check(3 * S, 10 * S, 75 * S),
            (Some((10 * S, CloseReason::HeaderTimeout)), 10 * S)
        );
        // Bytes trickling in do not move the deadline.
        state.first_byte.store(9 * S, Relaxed);
        assert_eq!(state.next_check(9 * S, 10 * S, 75 * S).0.unwrap().0, 10 * S);
    }

    #[test]
    fn idle_keep_alive_gets_the_idle_timeout_then_the_header_timeout_from_the_first_byte() {
        let state = state();
        state.request_started();
        assert_eq!(state.next_check(S, 10 * S, 75 * S), (None, 11 * S));
        state.request_finished();
        let idle_since = state.idle_since.load(Relaxed);
        let (expiry, wake) = state.next_check(idle_since, 10 * S, 75 * S);
        assert_eq!(
            expiry,
            Some((idle_since + 75 * S, CloseReason::IdleTimeout))
        );
        assert_eq!(
            wake,
            idle_since + 10 * S,
            "woken in time for a header deadline"
        );
        state.first_byte.store(idle_since + 40 * S, Relaxed);
        let (expiry, _) = state.next_check(idle_since + 41 * S, 10 * S, 75 * S);
        assert_eq!(
            expiry,
            Some((idle_since + 50 * S, CloseReason::HeaderTimeout))
        );
    }

    #[test]
    fn an_idle_timeout_shorter_than_the_header_timeout_is_looked_at_in_time() {
        let state = state();
        // Before the first request: woken by the shorter idle timeout, since
        // a request may start and end before the header deadline.
        assert_eq!(
            state.next_check(S / 10, 10 * S, 2 * S),
            (Some((10 * S, CloseReason::HeaderTimeout)), S / 10 + 2 * S)
        );
        state.request_started();
        state.request_finished();
        let idle_since = state.idle_since.load(Relaxed);
        assert_eq!(
            state.next_check(idle_since, 10 * S, 2 * S),
            (
                Some((idle_since + 2 * S, CloseReason::IdleTimeout)),
                idle_since + 2 * S
            )
        );
    }

    #[test]
    fn eviction_skips_busy_and_closing_connections() {
        let state = state();
        assert_eq!(state.eviction_key(), Some(0));
        state.request_started();
        assert_eq!(state.eviction_key(), None);
        // Waiting for more of its body: evictable, as old as its request.
        state.busy_since.store(5, Relaxed);
        state.waiting_for_body.store(true, Relaxed);
        assert_eq!(state.eviction_key(), Some(5));
        state.waiting_for_body.store(false, Relaxed);
        assert_eq!(state.eviction_key(), None);
        state.request_finished();
        assert!(state.request_close());
        assert!(!state.request_close());
        assert_eq!(state.eviction_key(), None);
    }
}

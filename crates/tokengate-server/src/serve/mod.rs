//! The server's accept loop: HTTP/1.1 through hyper, with the limits
//! `axum::serve` does not have.
//!
//! - **Header-read timeout**: a connection that sends nothing, or a request
//!   head that does not complete, within [`ServeConfig::with_header_read_timeout`]
//!   (from accept for the first request, from its first byte for later ones)
//!   is closed.
//! - **Idle timeout**: a keep-alive connection idle for
//!   [`ServeConfig::with_idle_timeout`] after a response is closed.
//! - **Connection cap**: at most `max_connections` are open. When a client
//!   connects at the cap, the connections idle longest are closed (a batch at
//!   a time) and the new one is served as soon as a slot frees; a connection
//!   whose request is waiting for more of its body (a slow upload) counts as
//!   idle since its request started, and is dropped with its request. The
//!   cap is reported by one warning line per
//!   [`ServeConfig::with_cap_warning_interval`].
//! - **Bounded shutdown**: when `shutdown` completes, the listener is closed,
//!   idle connections are closed at once, requests in flight are answered
//!   (with `connection: close`), and after
//!   [`ServeConfig::with_shutdown_deadline`] whatever is left is dropped.
//!
//! Handlers see the peer address as axum's `ConnectInfo<SocketAddr>`, as with
//! `into_make_service_with_connect_info::<SocketAddr>()`.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tokengate_server::serve::{ServeConfig, default_max_connections, raise_open_file_limit, serve};
//!
//! # async fn run() -> std::io::Result<()> {
//! let files = raise_open_file_limit()?;
//! let config = ServeConfig::new(default_max_connections(files));
//! let router = Router::new().route("/health", get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let report = serve(listener, router, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! assert_eq!(report.unfinished_connections, 0);
//! # Ok(()) }
//! ```

mod connection;
mod limits;
mod registry;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::Request;
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use limits::{
    MAX_CONNECTIONS_CEILING, MIN_CONNECTIONS, RESERVED_FILES, default_max_connections,
    raise_open_file_limit,
};

use connection::ConnState;
use registry::{EVICTION_BATCH, Registered, Registry};

/// While at the cap, how long to wait for the closed connections to free a
/// slot before closing the next batch.
const EVICTION_RETRY: Duration = Duration::from_millis(250);

/// Pause after an accept error that is not about one connection (out of
/// file descriptors, out of memory): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The limits of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeConfig {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    shutdown_deadline: Duration,
    cap_warning_interval: Duration,
}

impl ServeConfig {
    /// Default header-read timeout (`HEADER_READ_TIMEOUT_SECS`): 10 s, generous
    /// for any real client on a slow link, short for a slowloris.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default idle keep-alive timeout (`IDLE_TIMEOUT_SECS`): 75 s, nginx's
    /// `keepalive_timeout`, longer than the 60 s idle timeout of common load
    /// balancers so they, not we, close their pooled connections.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
    /// Default shutdown deadline: 10 s.
    pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
    /// Default spacing of the "at the connection cap" warning: 60 s.
    pub const DEFAULT_CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

    /// Defaults, with at most `max_connections` open connections (at least 1);
    /// see [`default_max_connections`].
    pub fn new(max_connections: usize) -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: max_connections.max(1),
            shutdown_deadline: Self::DEFAULT_SHUTDOWN_DEADLINE,
            cap_warning_interval: Self::DEFAULT_CAP_WARNING_INTERVAL,
        }
    }

    /// Time a client has to send a complete request head: from accept for
    /// the first request, from the request's first byte for later ones.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Time a keep-alive connection may stay idle after a response.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Time requests in flight get to finish after the shutdown signal.
    pub fn with_shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Least time between two "at the connection cap" warnings.
    pub fn with_cap_warning_interval(mut self, interval: Duration) -> Self {
        self.cap_warning_interval = interval;
        self
    }

    /// The connection cap.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// How [`serve`] ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeReport {
    /// Connections still open at the shutdown deadline, dropped with
    /// whatever request they were serving.
    pub unfinished_connections: usize,
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    config: ServeConfig,
    http1: http1::Builder,
    registry: Registry,
    epoch: Instant,
}

/// Serves `service` (an axum `Router`) on `listener` until `shutdown`
/// completes, then shuts down within the configured deadline. See the
/// module docs for the limits applied.
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    config: ServeConfig,
    shutdown: F,
) -> ServeReport
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    let mut http1 = http1::Builder::new();
    // Our own timers replace hyper's (see `connection`).
    http1.header_read_timeout(None).keep_alive(true);
    let shared = Arc::new(Shared {
        http1,
        registry: Registry::default(),
        epoch: Instant::now(),
        config,
    });
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut warnings = CapWarning::default();
    let mut next_id: u64 = 0;

    'accept: loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if joined.is_err_and(|e| e.is_panic()) {
                    tracing::error!("a connection task panicked");
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    warnings.accept_error(&shared.config, &e);
                    // Most likely out of file descriptors: idle connections go first.
                    shared.registry.close_oldest_idle(EVICTION_BATCH);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => loop {
                warnings.at_cap(&shared.config);
                shared.registry.close_oldest_idle(EVICTION_BATCH);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'accept,
                    slot = Arc::clone(&slots).acquire_owned() => {
                        #[expect(clippy::expect_used, reason = "this function owns the semaphore and never closes it")]
                        break slot.expect("the semaphore is never closed");
                    }
                    () = tokio::time::sleep(EVICTION_RETRY) => {}
                }
            },
        };
        // Responses are written whole by hyper: Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let state = Arc::new(ConnState::new(next_id, shared.epoch));
        shared.registry.insert(Arc::clone(&state));
        let registered = Registered {
            shared: Arc::clone(&shared),
            id: next_id,
        };
        let task = connection::run(
            stream,
            remote,
            state,
            service.clone(),
            Arc::clone(&shared),
            stop_rx.clone(),
        );
        tasks.spawn(async move {
            let _slot = slot;
            let _registered = registered;
            task.await;
        });
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + shared.config.shutdown_deadline;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => return ServeReport::default(),
            Err(_) => {
                let unfinished_connections = tasks.len();
                // Not awaited: a handler blocking its thread must not hold
                // the shutdown.
                tasks.abort_all();
                tasks.detach_all();
                return ServeReport {
                    unfinished_connections,
                };
            }
        }
    }
}

/// Errors about one connection (reset before it was accepted): the next
/// accept is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The rate limit on the cap and accept-error warnings.
#[derive(Debug, Default)]
struct CapWarning {
    last: Option<Instant>,
    /// Times the cap was hit since the last line.
    hits: u64,
}

impl CapWarning {
    fn due(&mut self, config: &ServeConfig) -> Option<u64> {
        self.hits += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < config.cap_warning_interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.hits))
    }

    fn at_cap(&mut self, config: &ServeConfig) {
        if let Some(hits) = self.due(config) {
            tracing::warn!(
                max_connections = config.max_connections,
                hits,
                "connection limit reached: closing the longest-idle connections to serve new \
                 clients (raise MAX_CONNECTIONS, or the open-file limit, if this is normal load)"
            );
        }
    }

    fn accept_error(&mut self, config: &ServeConfig, error: &io::Error) {
        if let Some(hits) = self.due(config) {
            tracing::warn!(%error, hits, "cannot accept connections: closing idle connections");
        }
    }
}

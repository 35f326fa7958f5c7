//! The accept loop (`tokengate_server::serve`) over real loopback sockets:
//! header-read and idle timeouts, the connection cap, the bounded shutdown.
//! Timeouts are short (hundreds of ms); an upper bound on elapsed time is
//! at least 5 times the timer it checks (or the wait it tells apart from),
//! so a loaded CI machine does not fail them.
//!
//! `SERVE_BASELINE=axum cargo test -p tokengate-server --test it serve_loop`
//! runs the same tests against `axum::serve` (the server's accept loop
//! before this one), to see which of them it fails.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tokengate_server::serve::{ServeConfig, ServeReport, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";

fn router() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow"
            }),
        )
        .route("/hang", get(std::future::pending::<&'static str>))
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ServeReport>,
}

impl Server {
    async fn start(config: ServeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = if std::env::var("SERVE_BASELINE").as_deref() == Ok("axum") {
            tokio::spawn(async move {
                let serving = axum::serve(
                    listener,
                    router().into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown);
                let deadline = Duration::from_millis(600);
                match tokio::time::timeout(deadline, serving.into_future()).await {
                    Ok(_) => ServeReport::default(),
                    Err(_) => panic!("axum::serve did not finish within {deadline:?}"),
                }
            })
        } else {
            tokio::spawn(serve(listener, router(), config, shutdown))
        };
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Stops the server and returns its report and how long it took.
    async fn stop(mut self) -> (ServeReport, Duration) {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        let report = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returned")
            .unwrap();
        (report, started.elapsed())
    }
}

fn config() -> ServeConfig {
    ServeConfig::new(1000)
        .with_header_read_timeout(Duration::from_millis(300))
        .with_idle_timeout(Duration::from_millis(800))
        .with_shutdown_deadline(Duration::from_millis(600))
}

/// Waits until the server closes `stream` (EOF or reset), at most `limit`;
/// returns how long that took. Response bytes are skipped.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(started + limit, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a request on `stream` and reads one response (small, with
/// content-length); returns its status line and body.
pub async fn request(stream: &mut TcpStream, raw: &[u8]) -> (String, String) {
    stream.write_all(raw).await.unwrap();
    read_response(stream).await
}

pub async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if text.len() >= end + 4 + length {
                let status = head.lines().next().unwrap().to_owned();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_by_the_header_timeout() {
    let server = Server::start(config()).await;
    let mut stream = server.connect().await;
    let took = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn a_half_sent_first_request_is_closed_by_the_header_timeout_even_if_it_trickles() {
    let server = Server::start(config()).await;
    let mut stream = server.connect().await;
    let started = Instant::now();
    // One byte every 50 ms: the deadline counts from accept, not from the last byte.
    for byte in b"GET /health HTTP/1.1\r\nhost: x\r\n" {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_millis(1200) {
            break;
        }
    }
    let took = started.elapsed() + closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_idle_timeout_not_the_header_timeout() {
    let server = Server::start(config()).await;
    let mut stream = server.connect().await;
    let (status, body) = request(&mut stream, HEALTH).await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    let took = closed_within(&mut stream, Duration::from_secs(4)).await;
    // Idle 800 ms, longer than the 300 ms header timeout (hyper's own timer
    // would close it at 300 ms).
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_millis(4000), "{took:?}");
}

/// `IDLE_TIMEOUT_SECS=2` with the 10 s header timeout closed idle
/// connections after ~10 s: the lazy timer still slept on the header
/// deadline of the first request. (Closed within 5 idle timeouts here, far
/// before the 20 s header timeout.)
#[tokio::test]
async fn an_idle_timeout_shorter_than_the_header_timeout_is_honoured() {
    let idle = Duration::from_millis(200);
    let server = Server::start(
        config()
            .with_header_read_timeout(Duration::from_secs(20))
            .with_idle_timeout(idle),
    )
    .await;
    for _ in 0..2 {
        let mut stream = server.connect().await;
        let (status, _) = request(&mut stream, HEALTH).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let took = closed_within(&mut stream, Duration::from_secs(3)).await;
        assert!(took >= idle - Duration::from_millis(50), "{took:?}");
        assert!(took < idle * 5, "{took:?}");
    }
}

#[tokio::test]
async fn a_keep_alive_connection_is_reused_and_its_next_head_gets_the_header_timeout() {
    let header = Duration::from_millis(100);
    let server = Server::start(
        config()
            .with_header_read_timeout(header)
            .with_idle_timeout(Duration::from_secs(10)),
    )
    .await;
    let mut stream = server.connect().await;
    for _ in 0..3 {
        let (status, _) = request(&mut stream, HEALTH).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        tokio::time::sleep(header * 2).await; // > header timeout, < idle
    }
    stream.write_all(b"GET /hea").await.unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert!(took >= header - Duration::from_millis(20), "{took:?}");
    assert!(took < header * 5, "{took:?}");
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let server = Server::start(config()).await;
    let mut stream = server.connect().await;
    let local = stream.local_addr().unwrap();
    let (status, body) = request(&mut stream, b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, local.to_string());
}

#[tokio::test]
async fn at_the_cap_idle_connections_are_closed_oldest_first_for_a_new_client() {
    let cap = 32;
    let server = Server::start(
        ServeConfig::new(cap)
            .with_header_read_timeout(Duration::from_secs(60))
            .with_idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..cap {
        let mut stream = server.connect().await;
        let (status, _) = request(&mut stream, HEALTH).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        idle.push(stream);
    }
    let started = Instant::now();
    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{}/health", server.addr))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("served within 2 s at the cap");
    assert_eq!(response.status(), 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The oldest idle connection was among those closed.
    closed_within(&mut idle[0], Duration::from_secs(1)).await;
    // The newest idle connections (outside the first batch) still work.
    let (status, _) = request(idle.last_mut().unwrap(), HEALTH).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn at_the_cap_half_sent_requests_are_closed_for_a_new_client() {
    let cap = 32;
    let server = Server::start(
        ServeConfig::new(cap)
            .with_header_read_timeout(Duration::from_secs(60))
            .with_idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..cap {
        let mut stream = server.connect().await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nx-slow")
            .await
            .unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut stream = server.connect().await;
    let (status, _) = request(&mut stream, HEALTH).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn at_the_cap_requests_in_flight_are_not_cut() {
    let server = Server::start(ServeConfig::new(2)).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = server.connect().await;
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = server.connect().await;
    let (status, _) = request(&mut third, HEALTH).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for stream in &mut busy {
        let (status, body) = read_response(stream).await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "slow")
        );
    }
}

/// Captures log output of the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn at_the_cap_one_warning_line_per_interval() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let cap = 4;
    let server = Server::start(
        ServeConfig::new(cap)
            .with_header_read_timeout(Duration::from_secs(60))
            .with_idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..40 {
        let mut stream = server.connect().await;
        let (status, _) = request(&mut stream, HEALTH).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        open.push(stream);
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("connection limit reached").count(),
        1,
        "{logs}"
    );
    assert_eq!(logs.lines().count(), 1, "{logs}");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_answers_requests_in_flight() {
    let server = Server::start(
        config()
            .with_header_read_timeout(Duration::from_secs(30))
            .with_shutdown_deadline(Duration::from_secs(5)),
    )
    .await;
    let mut idle = server.connect().await;
    request(&mut idle, HEALTH).await;
    let mut busy = server.connect().await;
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut half_sent = server.connect().await;
    half_sent.write_all(b"GET /health HT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = tokio::spawn(server.stop());
    // At once: not at the 5 s shutdown deadline (nor the 30 s header timeout).
    let took = closed_within(&mut idle, Duration::from_secs(4)).await;
    assert!(took < Duration::from_secs(1), "idle closed in {took:?}");
    let took = closed_within(&mut half_sent, Duration::from_secs(4)).await;
    assert!(
        took < Duration::from_secs(1),
        "half-sent closed in {took:?}"
    );
    let (status, body) = read_response(&mut busy).await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "slow")
    );
    closed_within(&mut busy, Duration::from_secs(1)).await;
    let (report, took) = stopping.await.unwrap();
    assert_eq!(report.unfinished_connections, 0);
    // The 400 ms handler, well before the 5 s deadline.
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test]
async fn shutdown_with_a_hung_handler_returns_at_the_deadline() {
    let server = Server::start(config()).await; // deadline 600 ms
    let addr = server.addr;
    let mut hung = server.connect().await;
    hung.write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut silent = server.connect().await; // no request yet
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (report, took) = server.stop().await;
    assert_eq!(report.unfinished_connections, 1);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_millis(3000), "{took:?}");
    closed_within(&mut hung, Duration::from_secs(1)).await;
    closed_within(&mut silent, Duration::from_secs(1)).await;
    // The listener is closed.
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Why hyper's own `header_read_timeout` is not used: its timer restarts as
/// soon as a keep-alive connection goes idle, so it is also an idle timeout
/// (an idle limit longer than the header limit is impossible). It does
/// apply to the first request from accept (hyper >= 1.3, PR #3185).
#[tokio::test]
async fn hypers_header_read_timeout_also_closes_idle_keep_alive_connections() {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from(
                        "ok",
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(300))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let mut keep_alive = TcpStream::connect(addr).await.unwrap();
    request(&mut keep_alive, HEALTH).await;
    // Closed by the 300 ms timer (without it, never: `closed_within` panics).
    let took = closed_within(&mut keep_alive, Duration::from_secs(3)).await;
    assert!(
        took < Duration::from_millis(1500),
        "idle closed by the header timer after {took:?}"
    );
}

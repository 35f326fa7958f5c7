//! The server binary's connection limits over real sockets: the header-read
//! and idle timeouts, and the connection cap under a small open-file limit.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::process::{Server, base_env, client};
use crate::serve_loop::{HEALTH, closed_within, request};

fn env_with(dir: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir);
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push(((*key).into(), (*value).into()));
    }
    env
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed_by_their_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with(
        dir.path(),
        &[
            ("HEADER_READ_TIMEOUT_SECS", "1"),
            ("IDLE_TIMEOUT_SECS", "3"),
        ],
    );
    let server = Server::start(dir.path(), &env);
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let mut half_sent = TcpStream::connect(server.addr()).await.unwrap();
    half_sent
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    let (status, _) = request(&mut idle, HEALTH).await;
    assert_eq!(status, "HTTP/1.1 200 OK");

    let took = closed_within(&mut silent, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(800), "silent: {took:?}");
    closed_within(&mut half_sent, Duration::from_secs(6)).await;
    // Idle after a response: the idle timeout (3 s), not the header one (1 s).
    let took = took + closed_within(&mut idle, Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(2500), "idle: {took:?}");
    server.assert_no_panic();
}

/// The server may hold 512 open files; clients open more keep-alive
/// connections than that and leave them idle. The default cap (the limit
/// minus 256) keeps files for the database, and at the cap the longest-idle
/// connections are closed, so a new client is served at once, with one
/// warning line. (`axum::serve` without a cap stops accepting at the file
/// limit, and new clients wait in the kernel's backlog.)
#[tokio::test]
async fn at_the_connection_cap_a_new_client_gets_health_within_two_seconds() {
    const PRLIMIT: &str = "/usr/bin/prlimit";
    if !std::path::Path::new(PRLIMIT).exists() {
        panic!("{PRLIMIT} (util-linux) is needed to give the server a small open-file limit");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_under(
        dir.path(),
        &base_env(dir.path()),
        &[PRLIMIT, "--nofile=512:512", "--"],
    );
    assert!(
        server.log_text().contains("max_connections=256"),
        "the default cap derives from the file limit:\n{}",
        server.log_text()
    );
    let mut open = Vec::new();
    let mut unanswered = 0;
    for _ in 0..600 {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream.write_all(HEALTH).await.unwrap();
        let answered = tokio::time::timeout(
            Duration::from_secs(2),
            crate::serve_loop::read_response(&mut stream),
        )
        .await;
        match answered {
            Ok((status, _)) => assert_eq!(status, "HTTP/1.1 200 OK"),
            Err(_) => {
                unanswered += 1;
                break;
            }
        }
        open.push(stream);
    }
    let started = Instant::now();
    let response = client()
        .get(server.url("/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let took = started.elapsed();
    let status = response.map(|r| r.status().as_u16());
    assert_eq!(
        (unanswered, status.as_ref().ok()),
        (0, Some(&200)),
        "a new client at the cap: {status:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    eprintln!("/health with 600 idle connections against a cap of 256: {took:?}");
    let log = server.log_text();
    assert_eq!(
        log.matches("connection limit reached").count(),
        1,
        "one warning line while at the cap:\n{log}"
    );
    assert!(server.is_running());
    server.assert_no_panic();
}

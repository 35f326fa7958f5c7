//! A `redis-server` of a test's own, on a free loopback port, without
//! persistence (`--save "" --appendonly no`, as most cache deployments run)
//! or with AOF: killed with SIGKILL and started again on the same port, to
//! stage the loss of every window (or a restart that keeps them).
//!
//! Without the binary a test prints a loud SKIPPED line and returns; with
//! `TOKENGATE_REQUIRE_BACKENDS=1` (set by `.ci/run`) it fails instead.
//! `TOKENGATE_TEST_REDIS_SERVER` names another binary.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed) `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    binary: String,
    port: u16,
    child: Option<Child>,
    /// Its working directory (a replica writes the primary's RDB there),
    /// removed on drop.
    dir: std::path::PathBuf,
    /// With AOF (`appendfsync always`).
    aof: bool,
}

fn binary() -> String {
    std::env::var("TOKENGATE_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

impl RedisServer {
    /// Starts one on a free port, or `None` (after a loud skip notice) when
    /// there is no `redis-server` to run.
    pub async fn start() -> Option<Self> {
        Self::start_with(false).await
    }

    /// One with AOF (`appendonly yes`, `appendfsync always`): a restart keeps
    /// every write.
    pub async fn start_persistent() -> Option<Self> {
        Self::start_with(true).await
    }

    async fn start_with(aof: bool) -> Option<Self> {
        let binary = binary();
        if let Err(e) = Command::new(&binary).arg("--version").output() {
            let required = std::env::var("TOKENGATE_REQUIRE_BACKENDS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{binary} is required (TOKENGATE_REQUIRE_BACKENDS=1) but cannot run: {e}"
            );
            eprintln!(
                "\n*** SKIPPED: {binary} cannot run ({e}). Install Redis, or set TOKENGATE_TEST_REDIS_SERVER. CI sets TOKENGATE_REQUIRE_BACKENDS=1 and fails instead. ***\n"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("tokengate-redis-{}", tokengate::TokenId::random()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            binary,
            port,
            child: None,
            dir,
            aof,
        };
        server.restart().await;
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would; waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)):
    /// empty, or with what its AOF kept. Waits until it answers PING (at most 10 s).
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut command = Command::new(&self.binary);
            command
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--daemonize", "no", "--dir"])
                .arg(&self.dir)
                // A replica's first sync starts at once, not after the
                // default 5 s wait for more replicas (diskless sync).
                .args(["--repl-diskless-sync-delay", "0"]);
            if self.aof {
                command.args(["--appendonly", "yes", "--appendfsync", "always"]);
            } else {
                command.args(["--appendonly", "no"]);
            }
            let child = command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            self.child = Some(child);
            if self.answers(deadline).await {
                return;
            }
            // The port may still be held by the killed one: try again.
            self.kill();
            assert!(Instant::now() < deadline, "redis-server did not start");
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one command to the server (e.g. `["FLUSHALL"]`, `["REPLICAOF", "NO", "ONE"]`).
    pub async fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async(&mut connection).await.unwrap()
    }

    async fn answers(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            let client = redis::Client::open(self.url()).unwrap();
            if let Ok(Ok(mut connection)) = tokio::time::timeout(
                Duration::from_millis(500),
                client.get_multiplexed_async_connection(),
            )
            .await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The real `tokengate` binary, started on a free loopback port and spoken to over HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::ADMIN_TOKEN;

pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

/// Environment for a test server: its own database in `dir`, cheap argon2, a known admin token.
pub fn base_env(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "DATABASE_URL".into(),
            format!("sqlite://{}", dir.join("tokengate.db").display()),
        ),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ("ARGON2_MEMORY_KIB".into(), "64".into()),
        ("ARGON2_ITERATIONS".into(), "1".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// Runs a CLI command to completion with `env`, in `dir` (so no stray `.env` is read).
pub fn cli(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run tokengate")
}

/// [`cli`] for a command that might not end (a `serve` expected to be
/// refused): killed, and the test failed, after `limit`.
pub fn cli_within(dir: &Path, env: &[(String, String)], args: &[&str], limit: Duration) -> Output {
    let out = dir.join(format!("cli-{}.out", unique()));
    let err = dir.join(format!("cli-{}.err", unique()));
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run tokengate");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tokengate {args:?} still running after {limit:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `tokengate serve` and waits until it listens.
    pub fn start(dir: &Path, env: &[(String, String)]) -> Self {
        Self::start_under(dir, env, &[])
    }

    /// [`start`](Self::start) through `wrapper`, a command that execs the
    /// rest of its arguments (e.g. `prlimit --nofile=512 --`), so the
    /// server keeps the child's process id.
    pub fn start_under(dir: &Path, env: &[(String, String)], wrapper: &[&str]) -> Self {
        Self::spawn(dir, env, wrapper, &[])
    }

    /// [`start`](Self::start) with command-line arguments (e.g. `serve --flag`).
    pub fn start_with_args(dir: &Path, env: &[(String, String)], args: &[&str]) -> Self {
        Self::spawn(dir, env, &[], args)
    }

    fn spawn(dir: &Path, env: &[(String, String)], wrapper: &[&str], args: &[&str]) -> Self {
        let log = dir.join(format!("server-{}.log", unique()));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        command.args(args);
        // `env_clear` below: the wrapper is found by an absolute path.
        let child = command
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn tokengate");
        let mut server = Self {
            child,
            base: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = server.log_text();
            if let Some(at) = text.find("listening on http://") {
                let rest = &text[at + "listening on ".len()..];
                // Text logs end the address with a space, JSON logs (LOG_FORMAT=json) with a quote.
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"')
                    .unwrap_or(rest.len());
                server.base = rest[..end].to_owned();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited with {status} before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "server did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) and waits for the exit.
    pub fn signal(&mut self, name: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server ignored SIG{name}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A blocking-free HTTP client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn admin_header() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

impl Server {
    /// `host:port` of the listener, for raw TCP clients.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Asserts the server log shows no panic (a panic caught by a tower
    /// layer still prints "panicked at" through the panic hook).
    pub fn assert_no_panic(&self) {
        let log = self.log_text();
        assert!(
            !log.contains("panicked") && !log.contains("RUST_BACKTRACE"),
            "the server panicked:\n{log}"
        );
    }
}

//! Real nginx and Caddy, started on free loopback ports with the shipped
//! configs (`deploy/`), only their addresses substituted, in front of a tiny
//! upstream that echoes what it received.
//!
//! A missing nginx or caddy skips the test loudly, unless
//! `TOKENGATE_REQUIRE_PROXIES=1` (as `.ci/run` sets) or `CI=true`: then it fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const REQUIRE_ENV: &str = "TOKENGATE_REQUIRE_PROXIES";

/// Defaults of the shipped configs, replaced in the tests.
const TOKENGATE_DEFAULT: &str = "127.0.0.1:8080";
const UPSTREAM_DEFAULT: &str = "127.0.0.1:3000";
const PROXY_DEFAULT: &str = "127.0.0.1:8000";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Whether a missing proxy must fail the test.
fn proxies_required() -> bool {
    match std::env::var(REQUIRE_ENV).as_deref() {
        Ok("1") | Ok("true") => true,
        Ok(_) => false,
        Err(_) => std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
    }
}

/// The program, found on `PATH` or in `/usr/sbin`, or `None` after saying
/// loudly why the test is skipped (a panic when proxies are required).
pub fn find_or_skip(program: &str, test: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            !proxies_required(),
            "{test}: {program} not found; {REQUIRE_ENV}/CI demands it (apt-get install nginx caddy)"
        );
        eprintln!(
            "SKIPPED {test}: {program} not found (apt-get install nginx caddy; {REQUIRE_ENV}=1 makes this a failure)"
        );
    }
    found
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The echo upstream: every request answers 200 with a JSON object of the
/// headers it received (names in lower case, repeated values joined by
/// `, `), its method, target and body length.
pub async fn start_upstream() -> SocketAddr {
    async fn echo(request: Request) -> axum::response::Response {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in request.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let method = request.method().to_string();
        let target = request.uri().to_string();
        let body: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        axum::Json(serde_json::json!({
            "method": method, "target": target, "body_len": body.len(), "headers": headers,
        }))
        .into_response()
    }
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A proxy process, stopped on drop.
pub struct Proxy {
    child: Child,
    pub base: String,
    pub addr: String,
    log: PathBuf,
}

impl Drop for Proxy {
    /// SIGTERM, so nginx's master stops its workers too (a SIGKILL would
    /// orphan them); SIGKILL only if it is still running 10 s later.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn wait_listening(mut self, name: &str) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return self;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{name} exited with {status}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "{name} did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The shipped config with its three addresses replaced.
fn substituted(path: &str, tokengate: &str, upstream: SocketAddr, proxy: &str) -> String {
    std::fs::read_to_string(repo_file(path))
        .unwrap()
        .replace(TOKENGATE_DEFAULT, tokengate)
        .replace(UPSTREAM_DEFAULT, &upstream.to_string())
        .replace(PROXY_DEFAULT, proxy)
}

/// nginx with `deploy/nginx/tokengate.conf` included in a minimal `http {}`.
pub fn start_nginx(program: &Path, dir: &Path, tokengate: &str, upstream: SocketAddr) -> Proxy {
    let proxy = format!("127.0.0.1:{}", free_port());
    let site = substituted("deploy/nginx/tokengate.conf", tokengate, upstream, &proxy);
    std::fs::write(dir.join("tokengate.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         access_log off;\n\
         client_body_temp_path {d}/client_body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         include {d}/tokengate.conf;\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let log = dir.join("nginx-error.log");
    let global = format!(
        "daemon off; pid {d}/nginx.pid; error_log {} warn;{}",
        log.display(),
        if is_root() { " user root;" } else { "" }
    );
    let child = Command::new(program)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", &global])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nginx.stderr")).unwrap())
        .spawn()
        .expect("start nginx");
    Proxy {
        child,
        base: format!("http://{proxy}"),
        addr: proxy,
        log: dir.join("nginx.stderr"),
    }
    .wait_listening("nginx")
}

/// Caddy with `deploy/caddy/Caddyfile` imported after global options that
/// keep it to itself (no admin endpoint, no certificates).
pub fn start_caddy(program: &Path, dir: &Path, tokengate: &str, upstream: SocketAddr) -> Proxy {
    let proxy = format!("127.0.0.1:{}", free_port());
    let site = substituted("deploy/caddy/Caddyfile", tokengate, upstream, &proxy);
    std::fs::write(dir.join("site.caddy"), site).unwrap();
    let main = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\nimport {}\n",
        dir.join("site.caddy").display()
    );
    std::fs::write(dir.join("Caddyfile"), main).unwrap();
    let log = dir.join("caddy.log");
    let child = Command::new(program)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start caddy");
    Proxy {
        child,
        base: format!("http://{proxy}"),
        addr: proxy,
        log,
    }
    .wait_listening("caddy")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Names in lower case, in order, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The only value of `name`, if any (two values fail the test).
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} repeated: {self:?}");
        all.first().copied()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `method target` sent byte for byte (no client-side normalization of the
/// path), with `headers`, over a fresh connection.
pub async fn raw(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes))
        .await
        .expect("response within 30 s")
        .unwrap();
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

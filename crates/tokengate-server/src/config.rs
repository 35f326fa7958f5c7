//! Configuration shared by every subcommand: from flags, the environment and `.env`.
//!
//! Every check here answers with one line for `error: ...` on stderr (exit 1).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use http::HeaderName;
use tokengate::http::{AdminAuth, ProxyHeaderSignIn, TrustedProxies};
use tokengate::{Argon2Params, LimiterFailurePolicy, TokenFormat};
use tokengate_server::forward::{ForwardAuth, RouteRules};
use tokengate_server::server::BodyDeadlines;

/// Options every subcommand understands. Each flag also reads an environment
/// variable (shown in `--help`), and `.env` in the working directory is loaded first.
#[derive(Args)]
pub(crate) struct Common {
    /// Database: `sqlite://path/to/file.db` (created if missing) or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://tokengate.db",
        global = true
    )]
    pub(crate) database_url: String,

    /// Say which database a command opened, and what it changed there.
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,

    /// Prefix of API tokens: 2-16 of a-z, 0-9 and '_', ending with '_'.
    /// Changing it invalidates every existing token.
    #[arg(
        long,
        env = "TOKEN_PREFIX",
        default_value = "iit_",
        global = true,
        hide = true
    )]
    pub(crate) token_prefix: String,

    /// argon2id memory cost in KiB for new hashes (OWASP: 19456).
    #[arg(
        long,
        env = "ARGON2_MEMORY_KIB",
        default_value_t = 19_456,
        global = true,
        hide = true
    )]
    pub argon2_memory_kib: u32,

    /// argon2id passes for new hashes (OWASP: 2).
    #[arg(
        long,
        env = "ARGON2_ITERATIONS",
        default_value_t = 2,
        global = true,
        hide = true
    )]
    pub argon2_iterations: u32,

    /// argon2id parallelism for new hashes (OWASP: 1).
    #[arg(
        long,
        env = "ARGON2_PARALLELISM",
        default_value_t = 1,
        global = true,
        hide = true
    )]
    pub argon2_parallelism: u32,

    /// Scopes per route for /forward-auth and /v1/verify: a TOML file of
    /// [[route]] tables (path, optional methods, scopes). Its scopes are
    /// the server's: tokens may be created with them.
    #[arg(long, env = "FORWARD_AUTH_ROUTES", global = true)]
    pub(crate) forward_auth_routes: Option<std::path::PathBuf>,

    /// Log format on stderr (any case).
    #[arg(long, env = "LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text, global = true, hide = true)]
    pub(crate) log_format: LogFormat,

    /// `WEBHOOK_*`: the webhooks' delivery and targets.
    #[command(flatten)]
    pub(crate) webhooks: tokengate_server::webhooks::settings::WebhookArgs,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on: `IP:port` or `host:port` (a host name listens on its
    /// first IPv4 address, else its first address).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) bind_addr: String,

    /// Admin API credential: 16 or more of A-Z a-z 0-9 - . _ ~ + / (then optional =),
    /// the characters a Bearer header can carry. If unset, one is generated on
    /// first start, printed once to stderr, and only its SHA-256 is stored.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,

    /// Redis for the shared rate limiter across instances, e.g. `redis://127.0.0.1:6379`.
    /// Unset: each process limits on its own (correct for a single instance).
    #[arg(long, env = "REDIS_URL")]
    pub(crate) redis_url: Option<String>,

    /// Prefix of the Redis keys, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "tokengate")]
    pub(crate) redis_key_prefix: String,

    /// When Redis is unreachable: `closed` answers 503; `local` falls back to
    /// this process's own limiter (limits then hold per instance only). Any case.
    #[arg(long, env = "RATE_LIMIT_FAILURE_POLICY", value_enum, ignore_case = true, default_value_t = FailurePolicy::Closed)]
    pub(crate) rate_limit_failure_policy: FailurePolicy,

    /// Seconds a verified token is cached before it is revalidated (no argon2).
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 60)]
    pub(crate) cache_ttl_secs: u64,

    /// Days audit events are kept (pruned in small batches in the background).
    #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub(crate) audit_retention_days: u64,

    /// GitHub's secret scanning keys, a JSON file in the format of
    /// https://api.github.com/meta/public_keys/secret_scanning: enables
    /// POST /leaks/github (GitHub's secret scanning partner program).
    #[arg(long, env = "GITHUB_SECRET_SCANNING_KEYS")]
    pub(crate) github_secret_scanning_keys: Option<std::path::PathBuf>,

    /// Serve the Settings > API Tokens page and its API at /settings/api-tokens,
    /// signed in by an authenticating reverse proxy (oauth2-proxy, nginx
    /// auth_request) that puts the account id in this header, e.g.
    /// X-Forwarded-User. Unset: those routes do not exist.
    #[arg(long, env = "SETTINGS_AUTH_HEADER")]
    pub(crate) settings_auth_header: Option<String>,

    /// The proxies (comma-separated CIDR blocks, e.g. 127.0.0.1/32) whose
    /// SETTINGS_AUTH_HEADER and X-Forwarded-Host/-Proto are believed; from any
    /// other peer the settings API answers 401. Required with
    /// SETTINGS_AUTH_HEADER: there is no default, since any process that can
    /// reach the port from a trusted address can sign in as any account.
    #[arg(long, env = "SETTINGS_TRUSTED_PROXIES")]
    pub(crate) settings_trusted_proxies: Option<String>,

    /// Try the Settings > API Tokens page without an auth proxy: every request
    /// from this machine is signed in as ACCOUNT (created on the pro plan if
    /// missing). Only on a loopback BIND_ADDR, never in production; a flag
    /// only (no variable), so it cannot be left on in a .env file.
    #[arg(long, value_name = "ACCOUNT")]
    pub(crate) settings_demo_user: Option<String>,

    /// The proxies (comma-separated CIDR blocks) that /forward-auth answers;
    /// any other peer gets 404.
    #[arg(
        long,
        env = "FORWARD_AUTH_TRUSTED_PROXIES",
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub(crate) forward_auth_trusted_proxies: String,

    /// A credential (16 or more characters, like ADMIN_TOKEN) that can call
    /// POST /v1/verify and nothing else. The admin token can call it too.
    #[arg(long, env = "VERIFY_TOKEN", hide_env_values = true)]
    pub(crate) verify_token: Option<String>,

    /// Deadline of the whole shutdown on SIGTERM/SIGINT, in seconds: requests
    /// in flight get up to three quarters of it, saving last-use times and
    /// rate-limit windows the rest; then the process exits, even if the
    /// database hangs.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub(crate) shutdown_grace_secs: u64,

    /// Seconds a client has to send a complete request head (from connecting,
    /// or from the first byte of a later request); slower connections are closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) header_read_timeout_secs: u64,

    /// Seconds a keep-alive connection may stay idle between requests
    /// (longer than a load balancer's usual 60 s, so it closes first).
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = 75,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) idle_timeout_secs: u64,

    /// Seconds a request body has to arrive whole (fractions allowed, at most
    /// 30, the time a request may take); a slower one is answered 408 and its
    /// connection closed.
    #[arg(long, env = "BODY_TIMEOUT_SECS", default_value = "30", value_parser = parse_body_timeout)]
    pub(crate) body_timeout_secs: Duration,

    /// Least average rate of a request body in bytes per second, after its
    /// first 2 seconds (0: none); a slower one is answered 408 and its
    /// connection closed.
    #[arg(long, env = "BODY_MIN_RATE", default_value_t = 1024)]
    pub(crate) body_min_rate: u64,

    /// Most connections open at once; at the cap the longest-idle ones are
    /// closed to serve new clients. Default: the open-file limit (raised to
    /// its hard limit at start) minus 256, at most 16384.
    #[arg(long, env = "MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: Option<u64>,

    /// Create a new empty SQLite database even where a server has used one
    /// before (its `.lock` file is there but the database is gone). Without
    /// it, such a start is refused: the database was deleted or moved.
    #[arg(long, env = "CREATE_DB", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) create_db: bool,
}

/// `RATE_LIMIT_FAILURE_POLICY` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum FailurePolicy {
    /// 503 while the shared limiter is down.
    Closed,
    /// Per-instance limits while the shared limiter is down.
    Local,
}

impl From<FailurePolicy> for LimiterFailurePolicy {
    fn from(policy: FailurePolicy) -> Self {
        match policy {
            FailurePolicy::Closed => LimiterFailurePolicy::FailClosed,
            FailurePolicy::Local => LimiterFailurePolicy::FallBackToLocal,
        }
    }
}

impl ServeArgs {
    pub(crate) fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    pub(crate) fn shutdown_deadline(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub(crate) fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub(crate) fn body_deadlines(&self) -> BodyDeadlines {
        BodyDeadlines::new(self.body_timeout_secs, self.body_min_rate)
    }

    /// `ADMIN_TOKEN`, if set, once it is known that a client can present it.
    /// The error never repeats the token.
    pub(crate) fn admin_token(&self) -> Result<Option<&str>, String> {
        let Some(token) = self.admin_token.as_deref() else {
            return Ok(None);
        };
        AdminAuth::from_token(token).map_err(|e| format!("invalid ADMIN_TOKEN: {e}"))?;
        Ok(Some(token))
    }

    /// `/forward-auth` and `/v1/verify`: the route rules, the trusted
    /// proxies and `VERIFY_TOKEN`.
    pub(crate) fn forward_auth(&self, rules: RouteRules) -> Result<ForwardAuth, String> {
        let trusted_proxies: TrustedProxies = self
            .forward_auth_trusted_proxies
            .parse()
            .map_err(|e| format!("invalid FORWARD_AUTH_TRUSTED_PROXIES: {e}"))?;
        let verify = match self.verify_token.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => {
                let auth = AdminAuth::from_token(token)
                    .map_err(|e| format!("invalid VERIFY_TOKEN: {e}"))?;
                if self.admin_token.as_deref() == Some(token) {
                    return Err("VERIFY_TOKEN is the ADMIN_TOKEN: give the verify-only credential its own value".into());
                }
                Some(Arc::new(auth))
            }
        };
        Ok(ForwardAuth {
            rules: Arc::new(rules),
            trusted_proxies,
            verify,
        })
    }

    /// The settings page's sign-in, when `SETTINGS_AUTH_HEADER` is set (an
    /// empty value counts as unset).
    pub(crate) fn settings_sign_in(&self) -> Result<Option<ProxyHeaderSignIn>, String> {
        let trusted: Option<TrustedProxies> = self
            .settings_trusted_proxies
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| format!("invalid SETTINGS_TRUSTED_PROXIES: {e}"))?;
        let Some(name) = self
            .settings_auth_header
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
        else {
            return Ok(None);
        };
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!(
                "invalid SETTINGS_AUTH_HEADER {name:?}: not a header name (e.g. X-Forwarded-User)"
            )
        })?;
        let Some(trusted) = trusted else {
            return Err(format!(
                "SETTINGS_AUTH_HEADER is set but SETTINGS_TRUSTED_PROXIES is not: name the \
                 addresses of the proxy that sets {name}, e.g. SETTINGS_TRUSTED_PROXIES=127.0.0.1/32 \
                 (comma-separated CIDR blocks); there is no default, because any process that \
                 can reach the port from a trusted address can sign in as any account"
            ));
        };
        if trusted.is_empty() {
            return Err(
                "SETTINGS_TRUSTED_PROXIES is empty, so SETTINGS_AUTH_HEADER would never be believed: \
                 name the auth proxy's addresses, e.g. SETTINGS_TRUSTED_PROXIES=127.0.0.1/32"
                    .into(),
            );
        }
        Ok(Some(ProxyHeaderSignIn::new(header, trusted)))
    }

    /// The account `--settings-demo-user` signs in, refused unless the server
    /// listens on loopback only and no auth proxy is configured.
    pub(crate) fn settings_demo_user(&self, bind_addr: SocketAddr) -> Result<Option<&str>, String> {
        let Some(account) = self.settings_demo_user.as_deref() else {
            return Ok(None);
        };
        if self
            .settings_auth_header
            .as_deref()
            .is_some_and(|name| !name.trim().is_empty())
        {
            return Err(
                "--settings-demo-user and SETTINGS_AUTH_HEADER both sign in to the settings page: \
                 use one (the demo user only to try the page locally)"
                    .into(),
            );
        }
        if !bind_addr.ip().is_loopback() {
            return Err(format!(
                "--settings-demo-user signs in every request as {account:?}, so it works only on a \
                 loopback BIND_ADDR (e.g. 127.0.0.1:8080), not {bind_addr}"
            ));
        }
        Ok(Some(account))
    }

    /// `BIND_ADDR` as a socket address, resolving a host name such as `localhost`.
    pub(crate) async fn bind_addr(&self) -> Result<SocketAddr, String> {
        let text = self.bind_addr.as_str();
        if let Ok(addr) = text.parse() {
            return Ok(addr);
        }
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(text).await {
            Ok(addrs) => addrs.collect(),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(format!(
                    "invalid BIND_ADDR {text:?}: use host:port, e.g. 127.0.0.1:8080 or localhost:8080"
                ));
            }
            Err(e) => return Err(format!("cannot resolve BIND_ADDR {text:?}: {e}")),
        };
        // `localhost` often resolves to ::1 first, but clients of `localhost` fall
        // back to 127.0.0.1 while clients of `127.0.0.1` never try ::1.
        addrs
            .iter()
            .find(|addr| addr.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("cannot resolve BIND_ADDR {text:?}: no address found"))
    }
}

impl Common {
    /// The rules of `FORWARD_AUTH_ROUTES` (none when unset); a malformed
    /// file is an error naming its line.
    pub(crate) fn route_rules(&self) -> Result<RouteRules, String> {
        match &self.forward_auth_routes {
            Some(path) => RouteRules::load(path),
            None => Ok(RouteRules::default()),
        }
    }

    pub(crate) fn token_format(&self) -> Result<TokenFormat, String> {
        // The library's message says "token prefix": name the variable.
        TokenFormat::new(self.token_prefix.clone()).map_err(|e| {
            e.to_string()
                .replacen("invalid token prefix", "invalid TOKEN_PREFIX", 1)
        })
    }

    pub(crate) fn argon2_params(&self) -> Argon2Params {
        Argon2Params {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }
}

/// Loads `.env` from the working directory, if there is one.
///
/// A malformed line is named by its number only: its text may hold a secret.
pub(crate) fn load_dotenv() -> Result<(), String> {
    const PATH: &str = ".env";
    match dotenvy::from_path(PATH) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(text, _)) => {
            // dotenvy reports the text (the line, or only its value), not its number.
            let contents = std::fs::read_to_string(PATH).unwrap_or_default();
            let reported = text.lines().next().unwrap_or_default().trim();
            let malformed = |line: &str| {
                !reported.is_empty()
                    && line.trim_end().ends_with(reported)
                    && dotenvy::from_read_iter(line.as_bytes()).any(|item| item.is_err())
            };
            let found = contents
                .lines()
                .enumerate()
                .find(|(_, line)| malformed(line));
            let line =
                found.map_or_else(|| "a line".to_owned(), |(at, _)| format!("line {}", at + 1));
            // Never the line's text: it may hold a secret.
            let hint = match found.and_then(|(_, text)| unclosed_quote(text)) {
                Some(quote) => {
                    format!("opens a {quote} quote it never closes (end the value with {quote})")
                }
                None => "is not NAME=value (quote a value with spaces)".to_owned(),
            };
            Err(format!("malformed .env: {line} {hint}"))
        }
        Err(e) => Err(format!("cannot read .env: {e}")),
    }
}

/// The quote a `.env` line's value opens and never closes, if any.
fn unclosed_quote(line: &str) -> Option<char> {
    let (_, value) = line.split_once('=')?;
    let value = value.trim_start();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let closed = value[1..].contains(quote);
    (!closed).then_some(quote)
}

/// Checks a `sqlite:` URL for what SQLite would report badly or not at all: no
/// file name (each connection would get its own empty temporary database), a
/// directory, or a missing parent directory (which is not created).
pub(crate) fn check_sqlite_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory");
    if in_memory {
        return Ok(());
    }
    if path.is_empty() {
        return Err(format!(
            "invalid DATABASE_URL {url:?}: no file name; use e.g. sqlite://tokengate.db"
        ));
    }
    let decoded = percent_decode(path);
    let file = Path::new(&decoded);
    if decoded.ends_with('/') || file.is_dir() {
        return Err(format!(
            "invalid DATABASE_URL {url:?}: {decoded} is a directory; name a file in it, e.g. tokengate.db"
        ));
    }
    let Some(parent) = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    else {
        return Ok(());
    };
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "cannot open database {url}: {} is not a directory",
            parent.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "cannot open database {url}: directory {} does not exist",
            parent.display()
        )),
        // Permissions and the like: SQLite's own error says it when it fails.
        Err(_) => Ok(()),
    }
}

/// The file of a `sqlite:` URL, or `None` for an in-memory database.
pub(crate) fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(percent_decode(path)))
}

/// GitHub's secret scanning keys from `path`; errors name the file and the key.
pub(crate) fn load_github_keys(path: &Path) -> Result<tokengate::http::GithubKeys, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read GITHUB_SECRET_SCANNING_KEYS {}: {e}",
            path.display()
        )
    })?;
    tokengate::http::GithubKeys::from_json(&text).map_err(|e| {
        format!(
            "invalid GITHUB_SECRET_SCANNING_KEYS {}: {e} (download it from https://api.github.com/meta/public_keys/secret_scanning)",
            path.display()
        )
    })
}

/// `%XX` escapes decoded, as sqlx does for SQLite file names.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `BODY_TIMEOUT_SECS`: seconds, fractions allowed, more than 0 and at most
/// the 30 s a request may take.
fn parse_body_timeout(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds, e.g. 30 or 0.5"))?;
    if !(seconds > 0.0 && seconds <= 30.0) {
        return Err(format!(
            "{text:?} is out of range: more than 0 and at most 30 (the time a request may take)"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a duration like `90s`, `15m`, `1h`, `2d` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use e.g. 90s, 15m, 1h, 2d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid duration unit {unit:?}: use s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sqlite_urls() {
        for ok in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://tokengate.db",
            "sqlite:tokengate.db",
            "sqlite://./tokengate.db?mode=rwc",
        ] {
            assert_eq!(check_sqlite_url(ok), Ok(()), "{ok}");
        }
        for (bad, expected) in [
            ("sqlite://", "no file name"),
            ("sqlite:", "no file name"),
            ("sqlite://?cache=shared", "no file name"),
            ("sqlite://.", "is a directory"),
            ("sqlite://data/", "is a directory"),
            (
                "sqlite://./no/such/dir/a.db",
                "directory ./no/such/dir does not exist",
            ),
            (
                "sqlite://no%2Fsuch/a.db",
                "directory no/such does not exist",
            ),
            ("sqlite://Cargo.toml/a.db", "Cargo.toml is not a directory"),
        ] {
            let error = check_sqlite_url(bad).expect_err(bad);
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode("a%20b%2fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}

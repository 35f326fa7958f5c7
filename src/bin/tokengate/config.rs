//! Configuration shared by every subcommand: from flags, the environment and `.env`.

use std::time::Duration;

use clap::{Args, ValueEnum};
use tokengate::{Argon2Params, LimiterFailurePolicy, TokenFormat};

/// Options every subcommand understands. Each flag also reads an environment
/// variable (shown in `--help`), and `.env` in the working directory is loaded first.
#[derive(Args)]
pub struct Common {
    /// Database: `sqlite://path/to/file.db` (created if missing) or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://tokengate.db",
        global = true
    )]
    pub database_url: String,

    /// Prefix of API tokens: 2-16 of a-z, 0-9 and '_', ending with '_'.
    /// Changing it invalidates every existing token.
    #[arg(long, env = "TOKEN_PREFIX", default_value = "iit_", global = true)]
    pub token_prefix: String,

    /// argon2id memory cost in KiB for new hashes (OWASP: 19456).
    #[arg(
        long,
        env = "ARGON2_MEMORY_KIB",
        default_value_t = 19_456,
        global = true
    )]
    pub argon2_memory_kib: u32,

    /// argon2id passes for new hashes (OWASP: 2).
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2, global = true)]
    pub argon2_iterations: u32,

    /// argon2id parallelism for new hashes (OWASP: 1).
    #[arg(long, env = "ARGON2_PARALLELISM", default_value_t = 1, global = true)]
    pub argon2_parallelism: u32,

    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: String,

    /// Admin API credential. If unset, one is generated on first start, printed
    /// once to stderr, and only its SHA-256 is stored.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Redis for the shared rate limiter across instances, e.g. `redis://127.0.0.1:6379`.
    /// Unset: each process limits on its own (correct for a single instance).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of the Redis keys, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "tokengate")]
    pub redis_key_prefix: String,

    /// When Redis is unreachable: `closed` answers 503; `local` falls back to
    /// this process's own limiter (limits then hold per instance only).
    #[arg(long, env = "RATE_LIMIT_FAILURE_POLICY", value_enum, default_value_t = FailurePolicy::Closed)]
    pub rate_limit_failure_policy: FailurePolicy,

    /// Seconds a verified token is cached before it is revalidated (no argon2).
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 60)]
    pub cache_ttl_secs: u64,

    /// Seconds to wait for in-flight requests on SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

/// `RATE_LIMIT_FAILURE_POLICY` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FailurePolicy {
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
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }
}

impl Common {
    pub fn token_format(&self) -> Result<TokenFormat, String> {
        TokenFormat::new(self.token_prefix.clone()).map_err(|e| e.to_string())
    }

    pub fn argon2_params(&self) -> Argon2Params {
        Argon2Params {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }
}

/// Parses a duration like `90s`, `15m`, `1h`, `2d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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
}

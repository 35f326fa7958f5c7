//! The shared [`RateLimitStore`]: the same bucketed sliding window, in Redis,
//! so the hourly limit holds across every instance together.
//!
//! One check is one `EVALSHA` of a Lua script (one round trip), which Redis
//! runs atomically: read the token's bucket hash, drop buckets that left the
//! window, admit if the sum is under the limit and count the request, compute
//! the reset exactly like [`WindowState`](super::WindowState) does. Time is
//! Redis's `TIME`, one clock for all instances. Each key expires on its own
//! one window after its last admitted request.
//!
//! When Redis cannot be reached the check fails with [`LimitError`]; the gate
//! then applies its [`LimiterFailurePolicy`](crate::LimiterFailurePolicy)
//! (503 by default). Reconnection is automatic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::window::{Decision, WindowConfig};
use super::{LimitError, RateLimitStore};
use crate::token::TokenId;

const SCRIPT: &str = r#"
-- KEYS[1]: the token's buckets (hash: bucket number -> count)
-- ARGV: limit, bucket width in ms, buckets per window (B)
local limit = tonumber(ARGV[1])
local bucket_ms = tonumber(ARGV[2])
local buckets = tonumber(ARGV[3])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local current = math.floor(now_ms / bucket_ms)
local first = current - buckets
local fields = redis.call('HGETALL', KEYS[1])
local counts, order, stale, sum = {}, {}, {}, 0
for i = 1, #fields, 2 do
  local bucket = tonumber(fields[i])
  local count = tonumber(fields[i + 1])
  if bucket < first then
    stale[#stale + 1] = fields[i]
  else
    counts[bucket] = count
    order[#order + 1] = bucket
    sum = sum + count
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end
local allowed = 0
if sum < limit then
  redis.call('HINCRBY', KEYS[1], current, 1)
  if counts[current] == nil then
    counts[current] = 0
    order[#order + 1] = current
  end
  counts[current] = counts[current] + 1
  sum = sum + 1
  allowed = 1
  redis.call('PEXPIRE', KEYS[1], (buckets + 1) * bucket_ms)
end
local reset_ms = now_ms + buckets * bucket_ms
if sum > 0 and limit > 0 then
  table.sort(order)
  local leaving = 0
  for _, bucket in ipairs(order) do
    leaving = leaving + counts[bucket]
    if sum < limit or sum - leaving < limit then
      reset_ms = (bucket + buckets + 1) * bucket_ms
      break
    end
  end
end
local remaining = limit - sum
if remaining < 0 then remaining = 0 end
return {allowed, remaining, reset_ms, now_ms}
"#;

/// After a failed check, how long other requests fail at once while one
/// request at a time retries.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// Longest wait for one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Settings of the Redis limiter.
#[derive(Debug, Clone)]
pub struct RedisLimiterConfig {
    /// Prefix of every key (`<prefix>:rl:<token id>`). Default `tokengate`.
    pub key_prefix: String,
    /// Window layout; must match across instances. Default: an hour in 60 buckets.
    pub window: WindowConfig,
    /// Longest wait for one check before it counts as a failure. Default 250 ms.
    pub timeout: Duration,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            key_prefix: "tokengate".into(),
            window: WindowConfig::default(),
            timeout: Duration::from_millis(250),
        }
    }
}

/// Sliding windows in Redis, shared by every instance.
pub struct RedisRateLimiter {
    client: redis::Client,
    config: RedisLimiterConfig,
    script: redis::Script,
    connection: tokio::sync::RwLock<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    /// Failed connection attempts so far (requests that waited for one do not retry).
    failed_connects: AtomicU64,
    started: Instant,
    /// 0 while Redis answers; after a failure, until when (ms since
    /// `started`) requests fail at once, and then which request probes.
    down_until_ms: AtomicU64,
    healthy: AtomicBool,
    round_trips: AtomicU64,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("config", &self.config)
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` (`redis://host:port/db`). Connects lazily,
    /// so it can start while Redis is down; only a malformed URL is an error.
    pub fn new(url: &str, config: RedisLimiterConfig) -> Result<Self, LimitError> {
        let client = redis::Client::open(url).map_err(|e| LimitError(Box::new(e)))?;
        Ok(Self {
            client,
            config,
            script: redis::Script::new(SCRIPT),
            connection: tokio::sync::RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failed_connects: AtomicU64::new(0),
            started: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            round_trips: AtomicU64::new(0),
        })
    }

    fn since_start_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Script invocations sent to Redis so far (one per check).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<ConnectionManager, LimitError> {
        if let Some(connection) = self.connection.read().await.as_ref() {
            return Ok(connection.clone());
        }
        // One request at a time connects; the others wait for its outcome
        // (a burst at start-up is not refused). If that attempt failed they
        // fail too, without an attempt of their own: how often to retry is
        // the circuit breaker's call (see `check`).
        let failures_before = self.failed_connects.load(Ordering::Acquire);
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.connection.read().await.as_ref() {
            return Ok(connection.clone());
        }
        if self.failed_connects.load(Ordering::Acquire) != failures_before {
            return Err(LimitError("Redis unreachable (reconnecting)".into()));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(self.config.timeout)
            .set_number_of_retries(0);
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| LimitError("Redis connection timed out".into()))
        .and_then(|connected| connected.map_err(|e| LimitError(Box::new(e))));
        let connection = match connection {
            Ok(connection) => connection,
            Err(e) => {
                // Counted while the lock is held, so every waiter sees it.
                self.failed_connects.fetch_add(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        *self.connection.write().await = Some(connection.clone());
        Ok(connection)
    }

    async fn invoke(&self, token: &TokenId, limit: u32) -> Result<Decision, LimitError> {
        let mut connection = self.connection().await?;
        let window = self.config.window;
        let key = format!("{}:rl:{}", self.config.key_prefix, token);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut invocation = self.script.key(key);
        invocation
            .arg(limit)
            .arg(window.bucket_ms())
            .arg(window.buckets());
        let (allowed, remaining, reset_at_ms, now_ms): (u8, u32, u64, u64) = tokio::time::timeout(
            self.config.timeout,
            invocation.invoke_async(&mut connection),
        )
        .await
        .map_err(|_| LimitError("Redis did not answer in time".into()))?
        .map_err(|e| LimitError(Box::new(e)))?;
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining,
            reset_at_ms,
            now_ms,
            window_secs: window.window_ms() / 1000,
        })
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimiter {
    async fn check(&self, token: &TokenId, limit: u32) -> Result<Decision, LimitError> {
        RedisRateLimiter::check(self, token, limit).await
    }
}

impl RedisRateLimiter {
    /// Checks (and, if admitted, counts) one request for `token` against
    /// `limit` per window, in one round trip.
    pub async fn check(&self, token: &TokenId, limit: u32) -> Result<Decision, LimitError> {
        // Circuit breaker: after a failure, requests fail at once and one
        // request per `RETRY_AFTER_FAILURE` probes Redis, so an outage (even
        // a black hole that never refuses) costs requests nothing but the
        // failure policy's answer.
        let retry_ms = RETRY_AFTER_FAILURE.as_millis() as u64;
        let now_ms = self.since_start_ms();
        let down_until = self.down_until_ms.load(Ordering::Acquire);
        if down_until != 0 {
            // Known down: fail at once, except the one request that claims
            // the next probe by pushing the deadline forward.
            let claimed = now_ms >= down_until
                && self
                    .down_until_ms
                    .compare_exchange(
                        down_until,
                        now_ms + retry_ms,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok();
            if !claimed {
                return Err(LimitError("Redis unreachable (waiting to retry)".into()));
            }
        }
        let result = self.invoke(token, limit).await;
        match &result {
            Ok(_) => self.down_until_ms.store(0, Ordering::Release),
            Err(_) => self
                .down_until_ms
                .store(self.since_start_ms().max(1) + retry_ms, Ordering::Release),
        }
        match &result {
            Ok(_) if !self.healthy.swap(true, Ordering::AcqRel) => {
                tracing::warn!("Redis rate limiter reachable again");
            }
            Err(e) if self.healthy.swap(false, Ordering::AcqRel) => {
                tracing::error!(error = %e, "Redis rate limiter unreachable");
            }
            _ => {}
        }
        result
    }
}

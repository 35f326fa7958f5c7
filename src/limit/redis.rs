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

use super::window::{Decision, WindowConfig, binding};
use super::{LimitError, RateLimitStore};
use crate::token::TokenId;

const SCRIPT: &str = r#"
-- KEYS[1]: the token's buckets (hash: bucket number -> count);
-- KEYS[2], optional: the account's buckets, a second window shared by all
-- of the account's tokens.
-- ARGV: token limit, bucket width in ms, buckets per window (B), account limit
local bucket_ms = tonumber(ARGV[2])
local buckets = tonumber(ARGV[3])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local current = math.floor(now_ms / bucket_ms)
local first = current - buckets

-- A window as it stands now: its counted buckets and their sum.
local function load(key)
  local fields = redis.call('HGETALL', key)
  local w = {counts = {}, order = {}, sum = 0}
  local stale = {}
  for i = 1, #fields, 2 do
    local bucket = tonumber(fields[i])
    local count = tonumber(fields[i + 1])
    if bucket < first then
      stale[#stale + 1] = fields[i]
    else
      w.counts[bucket] = count
      w.order[#w.order + 1] = bucket
      w.sum = w.sum + count
    end
  end
  if #stale > 0 then
    redis.call('HDEL', key, unpack(stale))
  end
  return w
end

local function count_one(key, w)
  redis.call('HINCRBY', key, current, 1)
  if w.counts[current] == nil then
    w.counts[current] = 0
    w.order[#w.order + 1] = current
  end
  w.counts[current] = w.counts[current] + 1
  w.sum = w.sum + 1
  redis.call('PEXPIRE', key, (buckets + 1) * bucket_ms)
end

-- When `Remaining` next grows: as WindowState::decision computes it.
local function reset(w, limit)
  local reset_ms = now_ms + buckets * bucket_ms
  if w.sum > 0 and limit > 0 then
    table.sort(w.order)
    local leaving = 0
    for _, bucket in ipairs(w.order) do
      leaving = leaving + w.counts[bucket]
      if w.sum < limit or w.sum - leaving < limit then
        reset_ms = (bucket + buckets + 1) * bucket_ms
        break
      end
    end
  end
  return reset_ms
end

local function remaining(w, limit)
  local left = limit - w.sum
  if left < 0 then left = 0 end
  return left
end

local token_limit = tonumber(ARGV[1])
local token = load(KEYS[1])
local allowed = token.sum < token_limit
local account, account_limit
if #KEYS > 1 then
  account_limit = tonumber(ARGV[4])
  account = load(KEYS[2])
  allowed = allowed and account.sum < account_limit
end
if allowed then
  count_one(KEYS[1], token)
  if account then count_one(KEYS[2], account) end
end
local answer = {allowed and 1 or 0, remaining(token, token_limit), reset(token, token_limit), now_ms}
if account then
  answer[5] = remaining(account, account_limit)
  answer[6] = reset(account, account_limit)
end
return answer
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
    /// Longest wait for one check before it counts as a failure. Default 250 ms.
    pub timeout: Duration,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            key_prefix: "tokengate".into(),
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

    async fn invoke(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Result<Decision, LimitError> {
        let mut connection = self.connection().await?;
        let window = WindowConfig::default();
        let prefix = &self.config.key_prefix;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut invocation = self.script.key(format!("{prefix}:rl:{token}"));
        if let Some((account, _)) = account {
            invocation.key(format!("{prefix}:rla:{account}"));
        }
        invocation
            .arg(limit)
            .arg(window.bucket_ms())
            .arg(window.buckets());
        if let Some((_, ceiling)) = account {
            invocation.arg(ceiling);
        }
        let answer: Vec<u64> = tokio::time::timeout(
            self.config.timeout,
            invocation.invoke_async(&mut connection),
        )
        .await
        .map_err(|_| LimitError("Redis did not answer in time".into()))?
        .map_err(|e| LimitError(Box::new(e)))?;
        let decision = |limit: u32, remaining: u64, reset_at_ms: u64| Decision {
            allowed: answer[0] == 1,
            limit,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_at_ms,
            now_ms: answer[3],
            window_secs: window.window_ms() / 1000,
        };
        match (account, answer.as_slice()) {
            (None, [_, remaining, reset, _]) => Ok(decision(limit, *remaining, *reset)),
            (Some((_, ceiling)), [_, remaining, reset, _, account_remaining, account_reset]) => {
                Ok(binding(
                    decision(limit, *remaining, *reset),
                    decision(ceiling, *account_remaining, *account_reset),
                ))
            }
            _ => Err(LimitError(
                "unexpected answer from the rate-limit script".into(),
            )),
        }
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimiter {
    async fn check(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Result<Decision, LimitError> {
        RedisRateLimiter::check(self, token, limit, account).await
    }
}

impl RedisRateLimiter {
    /// Checks (and, if admitted, counts) one request for `token` against
    /// `limit` per window and, with `Some((account, ceiling))`, against the
    /// account's shared window (both or neither count), in one round trip.
    pub async fn check(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Result<Decision, LimitError> {
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
        let result = self.invoke(token, limit, account).await;
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

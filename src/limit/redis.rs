//! The shared [`RateLimitStore`]: the same bucketed sliding window, in Redis,
//! so the hourly limit holds across every instance together.
//!
//! Instances lease permits in batches (see [`lease`](super::lease)): one
//! `EVALSHA` of a Lua script, which Redis runs atomically, gives back unused
//! permits of an expired lease, reads the token's (and account's) bucket
//! hashes, drops buckets that left the window, grants `min(asked, room)`
//! permits and counts them, and computes the reset exactly like
//! [`WindowState`](super::WindowState) does. The instance then admits from
//! its lease without a round trip. Time is Redis's `TIME`, one clock for
//! all instances. Each key expires on its own one window after its newest
//! bucket. With `max_lease: 1` every request is one round trip.
//!
//! When Redis cannot be reached a check that needs a round trip fails with
//! [`LimitError`]; the gate then applies its
//! [`LimiterFailurePolicy`](crate::LimiterFailurePolicy) (503 by default).
//! A lease still valid keeps admitting. Reconnection is automatic.
//!
//! When Redis comes back without the windows (a restart without
//! persistence, a failover to a replica, a `FLUSHALL`), the instances add
//! back what each counted in the last window before any permit is granted
//! again (see `redis_reseed.rs`), so the limit holds across the loss.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::lease::{Ask, Grant, Lease};
use super::redis_reseed::Reseeder;
use super::redis_script::{Answer, ScriptCall, Windows};
use super::window::Decision;
use super::{LimitError, RateLimitStore};
use crate::config_error::ConfigError;
use crate::token::{RandomIdState, TokenId};

/// After a failed check, how long other requests fail at once while one
/// request at a time retries.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// Longest wait for one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Settings of the Redis limiter (each set by a `RedisRateLimiter::with_*`).
#[derive(Debug, Clone)]
pub(crate) struct RedisLimiterConfig {
    /// Prefix of every key (`<prefix>:rl:<token id>`, `<prefix>:gen`, ...).
    /// Default `tokengate`.
    pub(crate) key_prefix: String,
    /// Longest wait for one round trip before it counts as a failure. Default 250 ms.
    pub(crate) timeout: Duration,
    /// Most permits one lease may hold. Default 50: steady traffic costs one
    /// round trip per 50 requests. `1`: one round trip per request and no
    /// permit ever held by an instance.
    pub(crate) max_lease: u32,
    /// How long a lease's permits may be used. Default 2 s. Unused permits
    /// go back to the window with the next ask or the next idle sweep (30 s).
    pub(crate) lease_ttl: Duration,
    /// How long a new generation of the shared windows (after Redis lost
    /// them) grants nothing, so that every instance adds its counts back
    /// first. Default 1 s: ten generation checks, with room for a slow one.
    pub(crate) reseed_wait: Duration,
    /// How often an instance with counts in the last window checks that
    /// Redis still has them, even without requests. Default 100 ms; keep
    /// it well under `reseed_wait`.
    pub(crate) generation_check_interval: Duration,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            key_prefix: "tokengate".into(),
            timeout: Duration::from_millis(250),
            max_lease: 50,
            lease_ttl: Duration::from_secs(2),
            reseed_wait: Duration::from_secs(1),
            generation_check_interval: Duration::from_millis(100),
        }
    }
}

/// One token's lease on this instance.
#[derive(Default)]
struct Entry {
    state: Mutex<Leased>,
    /// One ask at a time per token; the others wait and use its grant.
    asking: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Leased {
    lease: Lease,
    /// The account whose window the lease's permits are also counted in.
    account: Option<String>,
}

impl Leased {
    /// Whether the lease's permits were counted in this account's window too.
    fn counts_in(&self, account: Option<(&str, u32)>) -> bool {
        self.account.as_deref() == account.map(|(id, _)| id)
    }
}

const SHARDS: usize = 16;

/// Sliding windows in Redis, shared by every instance: never more than the
/// limit admitted by all instances together, about one round trip per 50
/// requests in steady traffic (see [`RedisRateLimiter::with_max_lease`]).
pub struct RedisRateLimiter {
    client: redis::Client,
    config: RedisLimiterConfig,
    calls: ScriptCall,
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
    reseeder: Arc<Reseeder>,
    leases: [Mutex<HashMap<TokenId, Arc<Entry>, RandomIdState>>; SHARDS],
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("config", &self.config)
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The scripts' calls for these settings.
fn script_call(config: &RedisLimiterConfig) -> ScriptCall {
    ScriptCall::new(
        &config.key_prefix,
        u64::try_from(config.lease_ttl.as_millis()).unwrap_or(u64::MAX),
        u64::try_from(config.reseed_wait.as_millis()).unwrap_or(u64::MAX),
        config.timeout,
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` (`redis://host:port/db`), with the
    /// default settings (change them with the `with_*` methods). Connects
    /// lazily, so it can start while Redis is down; only a malformed URL is
    /// an error.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url).map_err(|e| ConfigError::RedisUrl(Box::new(e)))?;
        let config = RedisLimiterConfig::default();
        Ok(Self {
            client,
            calls: script_call(&config),
            config,
            connection: tokio::sync::RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failed_connects: AtomicU64::new(0),
            started: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            round_trips: AtomicU64::new(0),
            reseeder: Arc::default(),
            leases: Default::default(),
        })
    }

    /// Prefix of every key (`<prefix>:rl:<token id>`, `<prefix>:gen`, ...).
    /// Default `tokengate`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self.calls = script_call(&self.config);
        self
    }

    /// Longest wait for one round trip before it counts as a failure. Default 250 ms.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self.calls = script_call(&self.config);
        self
    }

    /// Most permits one lease may hold. Default 50: steady traffic costs one
    /// round trip per 50 requests. `1`: one round trip per request and no
    /// permit ever held by an instance.
    pub fn with_max_lease(mut self, max_lease: u32) -> Self {
        self.config.max_lease = max_lease;
        self
    }

    /// How long a lease's permits may be used. Default 2 s. Unused permits
    /// go back to the window with the next ask or the next idle sweep (30 s).
    pub fn with_lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.config.lease_ttl = lease_ttl;
        self.calls = script_call(&self.config);
        self
    }

    /// How long a new generation of the shared windows (after Redis lost
    /// them) grants nothing, so that every instance adds its counts back
    /// first. Default 1 s: ten generation checks, with room for a slow one.
    pub fn with_reseed_wait(mut self, reseed_wait: Duration) -> Self {
        self.config.reseed_wait = reseed_wait;
        self.calls = script_call(&self.config);
        self
    }

    /// How often an instance with counts in the last window checks that
    /// Redis still has them, even without requests. Default 100 ms; keep
    /// it well under the reseed wait.
    pub fn with_generation_check_interval(mut self, interval: Duration) -> Self {
        self.config.generation_check_interval = interval;
        self
    }

    fn since_start_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Lease calls answered by Redis so far (one per lease asked or given
    /// back; calls turned away while the windows were being re-seeded,
    /// generation checks and re-seeds are not counted).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Times this instance found that Redis had lost the shared windows
    /// (restart, failover, flush) and added its counts back.
    pub fn resets_detected(&self) -> u64 {
        self.reseeder.resets()
    }

    /// The lease call, in the windows' current generation: re-seeds first
    /// when Redis lost them, refuses while a new generation settles.
    async fn call(
        &self,
        connection: &mut ConnectionManager,
        windows: &Windows<'_>,
        ask: Ask,
    ) -> Result<Grant, LimitError> {
        self.reseeder.watch(
            connection,
            &self.calls,
            self.config.generation_check_interval,
        );
        if self.reseeder.has_pending() {
            self.reseeder
                .deliver_pending(connection, &self.calls)
                .await?;
        }
        for _ in 0..3 {
            let answer = self
                .reseeder
                .lease_call(connection, &self.calls, windows, ask)
                .await?;
            match answer {
                Answer::Done { value, .. } => {
                    self.round_trips.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Answer::Reseed(generation) => {
                    self.reseeder
                        .reseed(connection, &self.calls, &generation)
                        .await?;
                }
                // A new generation: wait for the instances' re-seeds (at
                // most `reseed_wait`), then ask again.
                Answer::Settling { until, now, .. } => {
                    let wait = until.saturating_sub(now).min(self.calls.settle_ms) + 1;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
        Err(LimitError(
            "the shared rate-limit windows are being re-seeded after Redis lost them".into(),
        ))
    }

    fn shard(&self, token: &TokenId) -> &Mutex<HashMap<TokenId, Arc<Entry>, RandomIdState>> {
        &self.leases[token.as_bytes()[9] as usize % SHARDS]
    }

    async fn connection(&self) -> Result<ConnectionManager, LimitError> {
        if let Some(connection) = self.connection.read().await.as_ref() {
            return Ok(connection.clone());
        }
        // One request at a time connects; the others wait for its outcome
        // (a burst at start-up is not refused). If that attempt failed they
        // fail too, without an attempt of their own: how often to retry is
        // the circuit breaker's call (see `ask`).
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

    /// One round trip behind the circuit breaker: after a failure, requests
    /// fail at once and one request per `RETRY_AFTER_FAILURE` probes Redis,
    /// so an outage (even a black hole that never refuses) costs requests
    /// nothing but the failure policy's answer.
    async fn ask(&self, windows: &Windows<'_>, ask: Ask) -> Result<Grant, LimitError> {
        let retry_ms = u64::try_from(RETRY_AFTER_FAILURE.as_millis()).unwrap_or(u64::MAX);
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
        let result = match self.connection().await {
            Ok(mut connection) => self.call(&mut connection, windows, ask).await,
            Err(e) => Err(e),
        };
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

    /// The answer from this instance's lease, when it can give one: an
    /// admission from a valid lease, or a refusal that still stands.
    pub fn check_now(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Option<Decision> {
        let now = self.since_start_ms();
        let limits = (limit, account.map(|(_, ceiling)| ceiling));
        // Taken under the shard's lock: no reference count to touch, which
        // on a hot token would be one more cache line shared by every thread.
        let shard = lock(self.shard(token));
        let mut state = lock(&shard.get(token)?.state);
        if !state.counts_in(account) {
            return None;
        }
        state.lease.take(now, limits)
    }

    /// Checks (and, if admitted, counts) one request for `token` against
    /// `limit` per window and, with `Some((account, ceiling))`, against the
    /// account's shared window (both or neither count): from this instance's
    /// lease when it can, otherwise with one round trip that asks for the
    /// next lease. A test hook: in an app the gate is the limiter's caller.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub async fn check(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Result<Decision, LimitError> {
        self.check_windows(token, limit, account).await
    }

    /// Checks (and, if admitted, counts) one request for `token` against
    /// `limit` per window and, with `Some((account, ceiling))`, against the
    /// account's shared window (both or neither count): from this instance's
    /// lease when it can, otherwise with one round trip that asks for the
    /// next lease.
    async fn check_windows(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Result<Decision, LimitError> {
        if let Some(decision) = self.check_now(token, limit, account) {
            return Ok(decision);
        }
        let windows = Windows {
            token,
            limit,
            account,
        };
        let entry = Arc::clone(lock(self.shard(token)).entry(*token).or_default());
        let _asking = entry.asking.lock().await;
        // Whoever asked before us may have left permits.
        let now = self.since_start_ms();
        let ask = {
            let mut state = lock(&entry.state);
            let same_account = state.counts_in(account);
            if same_account && let Some(decision) = state.lease.take(now, windows.limits()) {
                return Ok(decision);
            }
            let mut ask = state.lease.ask(windows.limits(), self.config.max_lease);
            if !same_account {
                // Held permits were counted under other keys: giving them
                // back here would take someone else's. Left to expire.
                ask.give_back = None;
                state.account = account.map(|(id, _)| id.to_owned());
            }
            ask
        };
        let grant = self.ask(&windows, ask).await?;
        let ttl_ms = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        Ok(lock(&entry.state)
            .lease
            .granted(now, ttl_ms, grant, windows.limits()))
    }

    /// Gives back the unused permits of expired leases (one round trip per
    /// token, in the background) and forgets idle tokens.
    fn sweep(&self) {
        self.reseeder.forget_old();
        let now = self.since_start_ms();
        let mut give_backs = Vec::new();
        for shard in &self.leases {
            lock(shard).retain(|token, entry| {
                let Ok(mut state) = entry.state.try_lock() else {
                    return true;
                };
                let limits = state.lease.limits();
                if let (Some(back), Some(limits)) = (state.lease.take_expired(now), limits) {
                    give_backs.push((*token, state.account.clone(), limits, back));
                }
                // Only the map holds it: no request is using it.
                !(state.lease.is_idle(now) && Arc::strong_count(entry) == 1)
            });
        }
        if give_backs.is_empty() {
            return;
        }
        let Ok(connection) = self.connection.try_read() else {
            return;
        };
        let (Some(mut connection), Ok(runtime)) =
            (connection.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let calls = self.calls.clone();
        let reseeder = Arc::clone(&self.reseeder);
        self.round_trips
            .fetch_add(give_backs.len() as u64, Ordering::Relaxed);
        runtime.spawn(async move {
            for (token, account, (limit, ceiling), back) in give_backs {
                let windows = Windows {
                    token: &token,
                    limit,
                    account: account.as_deref().zip(ceiling),
                };
                let ask = Ask {
                    permits: 0,
                    give_back: Some(back),
                };
                // A lost give-back leaves the permits counted: never too
                // many. One in another generation is not applied at all.
                let _ = reseeder
                    .lease_call(&mut connection, &calls, &windows, ask)
                    .await;
            }
        });
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
        self.check_windows(token, limit, account).await
    }

    fn check_now(
        &self,
        token: &TokenId,
        limit: u32,
        account: Option<(&str, u32)>,
    ) -> Option<Decision> {
        RedisRateLimiter::check_now(self, token, limit, account)
    }

    fn tracked_tokens(&self) -> Option<usize> {
        Some(self.leases.iter().map(|shard| lock(shard).len()).sum())
    }

    fn admitted_locally(&self, token: &TokenId, account: Option<&str>) {
        self.reseeder.admitted_locally(token, account);
    }

    fn resets_detected(&self) -> u64 {
        self.reseeder.resets()
    }

    fn evict_idle(&self) {
        self.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::lease_model::Twin;
    use crate::limit::redis_script::InGeneration;
    use crate::limit::window::WindowConfig;

    /// The script and its Rust twin (which the lease model is property-tested
    /// with) give the same grants, rooms and resets for the same calls:
    /// asks, give-backs, two tokens of one account, time passing over hours.
    #[tokio::test]
    async fn the_script_and_its_twin_agree() {
        let Some(url) = tokengate_testkit::backends::redis().await else {
            return;
        };
        let prefix = format!("tgtest-{}", TokenId::random());
        let limiter = RedisRateLimiter::new(&url)
            .unwrap()
            .with_key_prefix(prefix.clone());
        let mut connection = limiter.connection().await.unwrap();
        let tokens = [TokenId::random(), TokenId::random()];
        let keys = tokens.map(|t| format!("{prefix}:rl:{t}"));
        let account_key = format!("{prefix}:rla:acct");
        let mut twin = Twin::default();
        let config = WindowConfig::default();
        // xorshift64: a fixed, reproducible sequence.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut below = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut now = 1_800_000_000_000u64;
        let adopt = InGeneration {
            known: None,
            candidate: "twin",
        };
        // Opens the generation a while ago, so that it has settled.
        limiter
            .calls
            .check_generation(&mut connection, adopt, Some(now - 5_000))
            .await
            .unwrap();
        let mut grants: Vec<(usize, bool, u64, u32)> = Vec::new();
        let mut granted = 0;
        for _ in 0..400 {
            now += match below(10) {
                0 => below(900_000),
                1..=3 => below(5_000),
                _ => below(50),
            };
            let token = usize::try_from(below(2)).unwrap();
            let with_account = below(2) == 0;
            let limit = 40;
            // Give back part of an earlier grant of the same keys, sometimes.
            let give_back = match grants
                .iter()
                .rposition(|&(t, a, _, _)| (t, a) == (token, with_account))
            {
                Some(i) if below(10) < 3 => {
                    let (_, _, bucket, permits) = grants.swap_remove(i);
                    Some((
                        bucket,
                        1 + u32::try_from(below(u64::from(permits))).unwrap(),
                    ))
                }
                _ => None,
            };
            let ask = Ask {
                permits: u32::try_from(below(12)).unwrap(),
                give_back,
            };
            let windows = Windows {
                token: &tokens[token],
                limit,
                account: with_account.then_some(("acct", 60)),
            };
            let Answer::Done { value: real, .. } = limiter
                .calls
                .call(&mut connection, &windows, ask, adopt, Some(now))
                .await
                .unwrap()
            else {
                panic!("a new instance adopts the generation and is answered")
            };
            let mut keyed = vec![(keys[token].as_str(), limit)];
            if with_account {
                keyed.push((account_key.as_str(), 60));
            }
            let expected = twin.lease(&keyed, ask, 2_000, now, &config);
            assert_eq!(real, expected, "at {now} with {ask:?}");
            if real.permits > 0 {
                grants.push((token, with_account, real.record, real.permits));
                granted += real.permits;
            }
        }
        assert!(
            granted > 100,
            "the sequence exercised the grants ({granted})"
        );
    }
}

//! The Redis limiter's side of re-seeding (the arithmetic is `reseed.rs`):
//! this instance's record of what it counted in the shared windows, the
//! generation it counts in, and what it does when Redis lost the windows.
//!
//! Every answer of a script names the generation of the windows (see
//! `generation.lua`). When it is not the one this instance knows, the
//! instance adds its record into the new one, at most once (a marker key per
//! instance and generation), and only then asks again. A new generation
//! grants nothing for [`RedisRateLimiter::with_reseed_wait`](super::RedisRateLimiter::with_reseed_wait),
//! and every instance with something recorded checks the generation every
//! [`generation_check_interval`](super::RedisRateLimiter::with_generation_check_interval),
//! so idle instances re-seed too before a permit is granted blind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::LimitError;
use super::lease::{Ask, Grant};
use super::redis_script::{Answer, InGeneration, ScriptCall, Seeded, WindowKey, Windows};
use super::reseed::Contributions;
use super::window::WindowConfig;
use crate::clock::monotonic_unix_ms;
use crate::token::TokenId;

/// What this instance counted, and in which generation.
#[derive(Default)]
struct Recorded {
    record: Contributions<WindowKey>,
    /// The generation the record is in (`None`: none seen yet).
    known: Option<String>,
    /// Redis's clock minus this process's, at the last answer.
    offset_ms: Option<i64>,
}

impl Recorded {
    /// Redis's clock, as well as this process knows it.
    fn redis_now_ms(&self) -> u64 {
        let now = monotonic_unix_ms();
        now.saturating_add_signed(self.offset_ms.unwrap_or(0))
    }

    /// The first bucket still in the window.
    fn first_bucket(&self) -> u64 {
        let window = WindowConfig::default();
        (self.redis_now_ms() / window.bucket_ms()).saturating_sub(u64::from(window.buckets()))
    }
}

/// One instance's record and re-seeds.
pub(super) struct Reseeder {
    /// Names this instance in logs and in its re-seed markers.
    instance: String,
    state: Mutex<Recorded>,
    /// Lease calls hold it shared, so that a grant is recorded before a
    /// re-seed (which holds it alone) reads the record.
    gate: tokio::sync::RwLock<()>,
    resets: AtomicU64,
    watching: AtomicBool,
    /// Set by a local admission, cleared when a delivery starts.
    pending: AtomicBool,
    /// Calls so far: with `instance`, a fresh candidate id for each call.
    calls: AtomicU64,
}

fn lock(mutex: &Mutex<Recorded>) -> std::sync::MutexGuard<'_, Recorded> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh random id (a new generation's, an instance's).
fn random_id() -> String {
    TokenId::random().to_string()
}

fn keys(windows: &Windows<'_>) -> impl Iterator<Item = WindowKey> {
    let account = windows.account.map(|(id, _)| WindowKey::Account(id.into()));
    std::iter::once(WindowKey::Token(*windows.token)).chain(account)
}

impl Default for Reseeder {
    fn default() -> Self {
        Self {
            instance: random_id(),
            state: Mutex::default(),
            gate: tokio::sync::RwLock::new(()),
            resets: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        }
    }
}

impl Reseeder {
    /// Resets of the shared windows this instance detected and re-seeded.
    pub(super) fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    fn known(&self) -> Option<String> {
        lock(&self.state).known.clone()
    }

    /// The id to open a new generation under, should Redis have none: never
    /// the same twice, so that a generation this instance opened is never
    /// taken for one it knew.
    fn candidate(&self) -> String {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        format!("{}.{call}", self.instance)
    }

    /// One lease call, recorded: gives back and asks in the known
    /// generation, then records what Redis counted.
    pub(super) async fn lease_call(
        &self,
        connection: &mut ConnectionManager,
        calls: &ScriptCall,
        windows: &Windows<'_>,
        ask: Ask,
    ) -> Result<Answer<Grant>, LimitError> {
        let _shared = self.gate.read().await;
        let known = self.known();
        let candidate = self.candidate();
        let generation = InGeneration {
            known: known.as_deref(),
            candidate: &candidate,
        };
        let answer = calls
            .call(connection, windows, ask, generation, None)
            .await?;
        let mut state = lock(&self.state);
        match &answer {
            Answer::Done { generation, value } => {
                state.known.get_or_insert_with(|| generation.clone());
                #[expect(
                    clippy::cast_possible_wrap,
                    reason = "Unix milliseconds stay below 2^63"
                )]
                let offset_ms = value.now_ms as i64 - monotonic_unix_ms() as i64;
                state.offset_ms = Some(offset_ms);
                for key in keys(windows) {
                    if let Some((bucket, n)) = ask.give_back {
                        state.record.remove(&key, bucket, n);
                    }
                    state.record.add(&key, value.record, value.permits);
                }
            }
            Answer::Settling { generation, .. } => {
                state.known.get_or_insert_with(|| generation.clone());
            }
            Answer::Reseed(_) => {}
        }
        Ok(answer)
    }

    /// One admission by the local fallback while Redis was unreachable:
    /// added to the shared windows once Redis answers again.
    pub(super) fn admitted_locally(&self, token: &TokenId, account: Option<&str>) {
        self.pending.store(true, Ordering::Release);
        let mut state = lock(&self.state);
        let bucket = state.redis_now_ms() / WindowConfig::default().bucket_ms();
        state.record.add_pending(&WindowKey::Token(*token), bucket);
        if let Some(account) = account {
            state
                .record
                .add_pending(&WindowKey::Account(account.into()), bucket);
        }
    }

    /// Forgets buckets that left the window.
    pub(super) fn forget_old(&self) {
        let mut state = lock(&self.state);
        let first = state.first_bucket();
        state.record.forget_before(first);
    }

    /// Adds the record into `generation`, once, and makes it the known one.
    pub(super) async fn reseed(
        &self,
        connection: &mut ConnectionManager,
        calls: &ScriptCall,
        generation: &str,
    ) -> Result<(), LimitError> {
        let _alone = self.gate.write().await;
        let (was, seeds, pending) = {
            let state = lock(&self.state);
            if state.known.as_deref() == Some(generation) {
                return Ok(());
            }
            let first = state.first_bucket();
            (
                state.known.clone(),
                state.record.seeds(first),
                state.record.pending(first),
            )
        };
        let seeded = if seeds.is_empty() {
            Seeded::Keys(0)
        } else {
            calls
                .reseed(connection, generation, &self.instance, true, &seeds, None)
                .await?
        };
        if seeded == Seeded::Stale {
            return Err(LimitError(
                "the shared rate-limit windows changed generation during a re-seed".into(),
            ));
        }
        {
            let mut state = lock(&self.state);
            state.known = Some(generation.to_owned());
            state.record.delivered(&pending);
        }
        if let Some(was) = was {
            self.resets.fetch_add(1, Ordering::Relaxed);
            let tokens = seeds
                .iter()
                .filter(|(key, _)| matches!(key, WindowKey::Token(_)))
                .count();
            let accounts = seeds.len() - tokens;
            tracing::warn!(
                instance = %self.instance,
                tokens,
                accounts,
                generation,
                previous = %was,
                already = seeded == Seeded::Already,
                "Redis lost the shared rate-limit windows (restart, failover or flush): \
                 re-seeded this instance's counts of the last hour"
            );
        }
        Ok(())
    }

    /// Sends what the local fallback admitted while Redis was unreachable.
    pub(super) async fn deliver_pending(
        &self,
        connection: &mut ConnectionManager,
        calls: &ScriptCall,
    ) -> Result<(), LimitError> {
        let _shared = self.gate.read().await;
        let (generation, pending) = {
            let state = lock(&self.state);
            let Some(known) = state.known.clone() else {
                return Ok(());
            };
            let first = state.first_bucket();
            (known, state.record.pending(first))
        };
        if pending.is_empty() {
            return Ok(());
        }
        let sent = calls
            .reseed(
                connection,
                &generation,
                &self.instance,
                false,
                &pending,
                None,
            )
            .await?;
        if let Seeded::Keys(_) = sent {
            lock(&self.state).record.delivered(&pending);
        }
        Ok(())
    }

    /// Whether anything is waiting to be delivered.
    pub(super) fn has_pending(&self) -> bool {
        let state = lock(&self.state);
        !state.record.pending(0).is_empty()
    }

    /// One check of the generation, for an instance with something recorded.
    async fn check(
        &self,
        connection: &mut ConnectionManager,
        calls: &ScriptCall,
    ) -> Result<(), LimitError> {
        // Buckets that left the window go in the idle sweep (every 30 s):
        // not a pass over every token ten times a second.
        if lock(&self.state).record.is_empty() {
            return Ok(());
        }
        let known = self.known();
        let candidate = self.candidate();
        let generation = InGeneration {
            known: known.as_deref(),
            candidate: &candidate,
        };
        match calls.check_generation(connection, generation, None).await? {
            Answer::Done { generation, value } => {
                {
                    let mut state = lock(&self.state);
                    state.known.get_or_insert(generation);
                    #[expect(
                        clippy::cast_possible_wrap,
                        reason = "Unix milliseconds stay below 2^63"
                    )]
                    let offset_ms = value as i64 - monotonic_unix_ms() as i64;
                    state.offset_ms = Some(offset_ms);
                }
                self.deliver_pending(connection, calls).await
            }
            Answer::Reseed(generation) => self.reseed(connection, calls, &generation).await,
            Answer::Settling { generation, .. } => {
                lock(&self.state).known.get_or_insert(generation);
                Ok(())
            }
        }
    }

    /// Starts the generation watch (once): a task that checks the
    /// generation every `every` while this instance has something recorded,
    /// and ends when the limiter is dropped.
    pub(super) fn watch(
        self: &std::sync::Arc<Self>,
        connection: &ConnectionManager,
        calls: &ScriptCall,
        every: Duration,
    ) {
        if self.watching.load(Ordering::Acquire) || self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.watching.store(false, Ordering::Release);
            return;
        };
        let reseeder: Weak<Self> = std::sync::Arc::downgrade(self);
        let (mut connection, calls) = (connection.clone(), calls.clone());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(reseeder) = reseeder.upgrade() else {
                    return;
                };
                if let Err(e) = reseeder.check(&mut connection, &calls).await {
                    tracing::debug!(error = %e, "rate-limit generation check failed");
                }
            }
        });
    }
}

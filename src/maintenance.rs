//! Background work of a running gate: the change feed, last-use flushing, eviction.
//!
//! * **Change feed** (see `feed.rs`): every `change_poll_interval` (250 ms)
//!   the gate reads new rows of the store's `changes` table, drops the cache
//!   entries they make stale and learns new token ids. This is how a revoke
//!   made by the CLI, or by another instance on the same PostgreSQL, reaches
//!   this process's cache within a poll interval. A feed in the database
//!   cannot lose messages the way pub/sub can: a process that was
//!   disconnected catches up from its cursor.
//! * **Last use**: the request path only notes `(token id, second)` in memory;
//!   this task writes the batch every `last_used_flush_interval` (10 s), and
//!   [`Maintenance::shutdown`] writes the rest.
//! * **Housekeeping** (every 30 s): idle rate-limit windows, expired negative
//!   entries and throttle windows are dropped; gauges are refreshed; change
//!   rows older than a day are pruned.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::gate::{Limiter, TokenGate};
use crate::store::StoreError;

/// Changes are kept this long (a process that cannot poll for an hour empties
/// its cache, see `feed.rs`).
const CHANGE_RETENTION: Duration = Duration::from_secs(24 * 3600);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);

/// Handle to a gate's background tasks. Dropping it stops them without a final
/// flush; call [`shutdown`](Self::shutdown) on the way out.
#[derive(Debug)]
pub struct Maintenance {
    gate: TokenGate,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Maintenance {
    /// Stops the tasks and writes pending `last_used_at` times.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        match self.gate.flush_last_used().await {
            Ok(n) => tracing::info!(tokens = n, "flushed last-use times"),
            Err(e) => tracing::error!(error = %e, "could not flush last-use times at shutdown"),
        }
        match self.gate.save_rate_windows().await {
            Ok(Some(n)) => tracing::info!(tokens = n, "saved rate-limit windows"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not save rate-limit windows at shutdown"),
        }
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The settings key under which the limiter's windows wait for the next start.
const RATE_WINDOWS_SETTING: &str = "rate_limit_windows";

impl TokenGate {
    /// Starts the background tasks (change feed, last-use flushing, eviction)
    /// on the current tokio runtime.
    pub fn spawn_maintenance(&self) -> Maintenance {
        let (stop, stopped) = watch::channel(false);
        let every =
            |period: Duration,
             job: fn(TokenGate) -> futures_util::future::BoxFuture<'static, ()>| {
                let gate = self.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let mut ticks = tokio::time::interval(period);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = ticks.tick() => job(gate.clone()).await,
                            _ = stopped.changed() => break,
                        }
                    }
                })
            };
        let tasks = vec![
            every(self.inner.change_poll_interval, |gate| {
                Box::pin(async move {
                    gate.sync_feed().await;
                })
            }),
            every(self.inner.last_used_flush_interval, |gate| {
                Box::pin(async move {
                    if let Err(e) = gate.flush_last_used().await {
                        tracing::warn!(error = %e, "could not flush last-use times; will retry");
                    }
                })
            }),
            every(HOUSEKEEPING_EVERY, |gate| {
                Box::pin(async move { gate.housekeeping().await })
            }),
        ];
        Maintenance {
            gate: self.clone(),
            stop,
            tasks,
        }
    }

    /// Saves the in-memory limiter's windows to the store, so that
    /// [`restore_rate_windows`](Self::restore_rate_windows) at the next start
    /// carries them on: a restart or deploy does not give every token a fresh
    /// hour. [`Maintenance::shutdown`] calls it. `Ok(None)` when the limiter is
    /// shared (Redis keeps its own windows). A crash loses the windows since
    /// the last save. The windows are kept under one key per database: with
    /// several instances on one database, use the shared limiter.
    pub async fn save_rate_windows(&self) -> Result<Option<usize>, StoreError> {
        let Limiter::Local(local) = &self.inner.limiter else {
            return Ok(None);
        };
        let snapshot = local.snapshot_at(self.inner.clock.now_unix_ms());
        let tokens = snapshot.lines().count().saturating_sub(1);
        self.within_store_timeout(
            self.inner
                .store
                .put_setting(RATE_WINDOWS_SETTING, &snapshot),
        )
        .await?;
        Ok(Some(tokens))
    }

    /// Loads the windows saved by [`save_rate_windows`](Self::save_rate_windows)
    /// (and clears them, so they are used once). Call it before serving; the
    /// server does. `Ok(None)` when the limiter is shared.
    pub async fn restore_rate_windows(&self) -> Result<Option<usize>, StoreError> {
        let Limiter::Local(local) = &self.inner.limiter else {
            return Ok(None);
        };
        let saved = self.within_store_timeout(self.inner.store.get_setting(RATE_WINDOWS_SETTING));
        let Some(snapshot) = saved.await? else {
            return Ok(Some(0));
        };
        if snapshot.is_empty() {
            return Ok(Some(0));
        }
        let restored = local.restore_snapshot(&snapshot, self.inner.clock.now_unix_ms());
        self.within_store_timeout(self.inner.store.put_setting(RATE_WINDOWS_SETTING, ""))
            .await?;
        Ok(Some(restored))
    }

    /// Writes pending last-use times; on failure they are kept for the next try.
    pub async fn flush_last_used(&self) -> Result<usize, StoreError> {
        let pending = std::mem::take(
            &mut *self
                .inner
                .last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if pending.is_empty() {
            return Ok(0);
        }
        let batch: Vec<_> = pending
            .iter()
            .filter_map(|(id, secs)| {
                OffsetDateTime::from_unix_timestamp(*secs)
                    .ok()
                    .map(|at| (*id, at))
            })
            .collect();
        match self.inner.store.record_last_used(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                let mut current = self
                    .inner
                    .last_used
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for (id, secs) in pending {
                    let slot = current.entry(id).or_insert(secs);
                    *slot = (*slot).max(secs);
                }
                Err(e)
            }
        }
    }

    async fn housekeeping(&self) {
        let inner = &self.inner;
        let now_ms = inner.clock.now_unix_ms();
        let tracked = match &inner.limiter {
            Limiter::Local(local) => {
                local.evict_idle_at(now_ms);
                local.tracked()
            }
            Limiter::Shared { shared, fallback } => {
                shared.evict_idle();
                if let Some(local) = fallback {
                    local.evict_idle_at(now_ms);
                }
                shared.tracked_tokens().unwrap_or(0)
            }
        };
        inner.metrics.limiter_tracked.set(tracked as i64);
        inner.metrics.cache_entries.set(inner.cache.len() as i64);
        inner.negative.sweep(now_ms);
        inner.throttle.sweep(now_ms);
        let cutoff = self.now() - CHANGE_RETENTION;
        if let Err(e) = inner.store.prune_changes(cutoff).await {
            tracing::debug!(error = %e, "could not prune the change feed");
        }
    }

    /// Refreshes gauges that are computed on demand (for `/metrics`).
    pub fn refresh_gauges(&self) {
        let inner = &self.inner;
        let tracked = match &inner.limiter {
            Limiter::Local(local) => local.tracked(),
            Limiter::Shared { shared, .. } => shared.tracked_tokens().unwrap_or(0),
        };
        inner.metrics.limiter_tracked.set(tracked as i64);
        inner.metrics.cache_entries.set(inner.cache.len() as i64);
    }
}

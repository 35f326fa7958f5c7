//! Background work of a running gate, and its orderly end.
//!
//! * **Change feed** (`feed.rs`): every `change_poll_interval` (250 ms) the
//!   gate reads new rows of the store's `changes` table, drops the cache
//!   entries they make stale and learns new token ids. This is how a revoke
//!   made by the CLI, or by another instance on the same PostgreSQL,
//!   reaches this process's cache within a poll interval.
//! * **Last use** (`usage.rs`): written every `last_used_flush_interval` (10 s).
//! * **Housekeeping** (every 30 s): idle rate-limit windows and expired
//!   negative entries are dropped; gauges are refreshed; change rows older
//!   than a day are pruned.
//!
//! [`Maintenance::shutdown`] stops the tasks, then flushes last use and
//! saves the rate-limit windows, each within the store timeout, so a hung
//! database cannot hold the process open.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::TokenGate;

/// Changes are kept this long (a process that cannot poll for an hour
/// empties its cache, see `feed.rs`).
const CHANGE_RETENTION: Duration = Duration::from_secs(24 * 3600);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);
/// The settings key under which the limiter's windows wait for the next start.
const RATE_WINDOWS_SETTING: &str = "rate_limit_windows";

/// Handle to a gate's background tasks. Dropping it stops them without a final
/// flush; call [`shutdown`](Self::shutdown) on the way out.
#[derive(Debug)]
pub struct Maintenance {
    gate: TokenGate,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

type Job = fn(TokenGate) -> BoxFuture<'static, ()>;

impl Maintenance {
    pub(super) fn spawn(gate: TokenGate) -> Self {
        let (stop, stopped) = watch::channel(false);
        let every = |period: Duration, job: Job| {
            let gate = gate.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    // Waiting for the tick, not the job, races the stop
                    // signal; a job in progress is then cut at its next
                    // await point, which is safe: each job keeps what it
                    // could not write for the next run or for shutdown.
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    tokio::select! {
                        () = job(gate.clone()) => {}
                        _ = stopped.changed() => break,
                    }
                }
            })
        };
        let (poll_every, flush_every) = gate.intervals();
        let tasks = vec![
            every(poll_every, |gate| {
                Box::pin(async move {
                    gate.sync_feed().await;
                })
            }),
            every(flush_every, |gate| {
                Box::pin(async move {
                    if let Err(e) = gate.flush_last_used().await {
                        tracing::warn!(error = %e, "could not flush last-use times; will retry");
                    }
                })
            }),
            every(HOUSEKEEPING_EVERY, |gate| {
                Box::pin(async move { gate.housekeeping(CHANGE_RETENTION).await })
            }),
        ];
        Maintenance { gate, stop, tasks }
    }

    /// Stops the tasks, writes pending `last_used_at` times and saves the
    /// rate-limit windows. Each write is bounded by the store timeout.
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

impl TokenGate {
    /// Saves the in-memory limiter's windows to the store, so that
    /// [`restore_rate_windows`](Self::restore_rate_windows) at the next start
    /// carries them on: a restart or deploy does not give every token a fresh
    /// hour. [`Maintenance::shutdown`] calls it. `Ok(None)` when the limiter is
    /// shared (Redis keeps its own windows). A crash loses the windows since
    /// the last save. The windows are kept under one key per database: with
    /// several instances on one database, use the shared limiter.
    pub async fn save_rate_windows(&self) -> Result<Option<usize>, crate::StoreError> {
        let Some(snapshot) = self.limiter().snapshot() else {
            return Ok(None);
        };
        let tokens = snapshot.lines().count().saturating_sub(1);
        self.within_store_timeout(self.store().put_setting(RATE_WINDOWS_SETTING, &snapshot))
            .await?;
        Ok(Some(tokens))
    }

    /// Loads the windows saved by [`save_rate_windows`](Self::save_rate_windows)
    /// (and clears them, so they are used once). Call it before serving; the
    /// server does. `Ok(None)` when the limiter is shared.
    pub async fn restore_rate_windows(&self) -> Result<Option<usize>, crate::StoreError> {
        if !self.limiter().is_local() {
            return Ok(None);
        }
        let saved = self
            .within_store_timeout(self.store().get_setting(RATE_WINDOWS_SETTING))
            .await?;
        let snapshot = saved.unwrap_or_default();
        if snapshot.is_empty() {
            return Ok(Some(0));
        }
        let restored = self.limiter().restore(&snapshot).unwrap_or(0);
        self.within_store_timeout(self.store().put_setting(RATE_WINDOWS_SETTING, ""))
            .await?;
        Ok(Some(restored))
    }
}

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
use crate::clock::monotonic_unix_ms;
use crate::store::{StoreError, USAGE_RETENTION, within};

/// Changes are kept this long (a process that cannot poll for an hour
/// empties its cache, see `feed.rs`).
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
        let timing = gate.inner.timing;
        let (poll_every, flush_every) =
            (timing.change_poll_interval, timing.last_used_flush_interval);
        let tasks = vec![
            every(poll_every, |gate| {
                Box::pin(async move {
                    gate.sync_feed().await;
                })
            }),
            every(flush_every, |gate| {
                Box::pin(async move {
                    if let Err(e) = flush_last_used(&gate).await {
                        tracing::warn!(error = %e, "could not flush last-use times; will retry");
                    }
                })
            }),
            every(HOUSEKEEPING_EVERY, |gate| {
                Box::pin(async move { housekeeping(&gate, CHANGE_RETENTION).await })
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
        match flush_last_used(&self.gate).await {
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

/// Writes pending `last_used_at` times and usage counts; on failure they
/// are kept for the next try.
pub(super) async fn flush_last_used(gate: &TokenGate) -> Result<usize, StoreError> {
    let inner = &gate.inner;
    let timeout = inner.timing.store_timeout;
    let store = inner.store.as_ref();
    let used = within(timeout, inner.last_use.flush(store)).await;
    let taken = inner.limiter.take_usage();
    let counted = within(timeout, inner.usage.flush(taken, inner.clock.now(), store)).await;
    counted?;
    used
}

/// Periodic cleanup: idle rate-limit windows, expired negative entries,
/// old change rows, audit events past their retention and usage past
/// [`USAGE_RETENTION`] (in bounded batches); refreshes the gauges.
async fn housekeeping(gate: &TokenGate, change_retention: Duration) {
    const BATCH: u32 = 1000;
    let inner = &gate.inner;
    inner.limiter.evict_idle();
    inner.verifier.sweep(monotonic_unix_ms());
    gate.refresh_gauges();
    let now = inner.clock.now();
    let store = inner.store.as_ref();
    let timeout = inner.timing.store_timeout;
    let audit_cutoff = now - inner.timing.audit_retention;
    let pruned = async {
        within(timeout, store.prune_changes(now - change_retention)).await?;
        // At most ten batches a run: a backlog is worked off over several
        // runs without holding the database for long.
        for _ in 0..10 {
            let audit = within(timeout, store.prune_audit(audit_cutoff, BATCH)).await?;
            let usage = within(timeout, store.prune_usage(now - USAGE_RETENTION, BATCH)).await?;
            if audit < u64::from(BATCH) && usage < u64::from(BATCH) {
                break;
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = pruned {
        tracing::debug!(error = %e, "could not prune old changes, audit events or usage");
    }
}

//! argon2id hashing and verification of token secrets, on the gate's own argon2 threads, bounded.
//!
//! At the OWASP parameters (m = 19 MiB, t = 2, p = 1) one hash or verify costs
//! about 17–30 ms of CPU. That work never runs on an async worker: it runs on
//! the gate's own argon2 threads, one per core by default, and a semaphore
//! bounds how many run at once (queued callers wait for a slot, 503 after 5 s).
//!
//! **All cores, lowest priority.** After a restart every active token's first
//! request needs one verify (a restart storm), so argon2 may use every core:
//! 1,000 tokens cost 1,000 verifies ÷ cores, not 1,000 verifies in a row. The
//! threads run at a lower scheduling priority (nice 10 on Linux), so the
//! kernel gives a core to an async worker first whenever one has work: cached
//! tokens, `/health` and the admin API keep their latency during a storm, and
//! argon2 gets whatever CPU they leave. (Whatever *every* process on the
//! host leaves: on a machine shared with other CPU-bound work a storm is
//! slower; the README's *Deploys and restarts* says so.)
//!
//! The argon2 pool is shared by the whole gate; wrong secrets rarely reach
//! it at all (see the secret tag in `token.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::{Semaphore, oneshot};

use crate::metrics::Metrics;

/// How long a hash or verify waits for an argon2 slot before giving up (503).
const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::config_error::ConfigError;
use crate::token::SecretBytes;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory cost in KiB. Default 19456 (19 MiB, OWASP's recommendation).
    pub memory_kib: u32,
    /// Number of passes. Default 2.
    pub iterations: u32,
    /// Degree of parallelism. Default 1.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// OWASP's minimum recommendation for argon2id: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    /// Very cheap parameters (m = 64 KiB, t = 1, p = 1) for tests and examples only.
    ///
    /// Tokens stay 264-bit random secrets, so this is still not guessable, but
    /// it gives up the defence in depth that argon2's cost provides if the
    /// database leaks.
    pub fn insecure_fast_for_tests() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// Checks that argon2 accepts these parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.to_argon2().map(|_| ())
    }

    fn to_argon2(self) -> Result<Argon2<'static>, ConfigError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| ConfigError::Argon2(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A failure of the hashing machinery itself (not a wrong secret).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// The stored hash is not a valid PHC string: the database holds something we did not write.
    #[error("stored secret hash is not a valid argon2 PHC string")]
    CorruptHash,
    /// argon2 failed while hashing.
    #[error("argon2 failed: {0}")]
    Argon2(String),
    /// The argon2 job panicked, or the argon2 threads are gone.
    #[error("hashing task failed")]
    TaskFailed,
    /// Every argon2 slot stayed busy for the whole queueing timeout.
    #[error("argon2 is saturated: no slot within {0:?}")]
    Saturated(std::time::Duration),
}

/// Hashes and verifies token secrets with argon2id on its own low-priority threads.
///
/// Cloning is cheap and clones share the concurrency bound.
#[derive(Clone)]
pub(crate) struct SecretHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    params: Argon2Params,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    verifies: AtomicU64,
    metrics: Option<Arc<Metrics>>,
    workers: Workers,
}

/// The scheduling priority of the argon2 threads (Linux `nice`; 0 is the
/// default, 19 the lowest): low enough that an async worker with work gets
/// the core first (its weight is about 10× theirs), so argon2 uses the cores
/// the request path leaves idle.
#[cfg(target_os = "linux")]
const ARGON2_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The argon2 threads: as many as slots, fed by one channel; they exit when
/// the last [`SecretHasher`] clone is dropped (the channel closes).
struct Workers {
    jobs: mpsc::Sender<Job>,
}

impl Workers {
    fn spawn(count: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..count {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name("tokengate-argon2".into())
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every hasher is gone
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start an argon2 thread");
            }
        }
        Self { jobs }
    }
}

/// Lowers the calling thread's priority (on Linux `setpriority(PRIO_PROCESS,
/// 0)` applies to the calling thread only); elsewhere argon2 runs at the
/// normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, ARGON2_NICE) {
        tracing::debug!(error = %e, "argon2 thread keeps the normal priority");
    }
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHasher")
            .field("params", &self.inner.params)
            .field("max_concurrent", &self.inner.max_concurrent)
            .finish()
    }
}

impl SecretHasher {
    pub(crate) fn with_metrics(
        params: Argon2Params,
        max_concurrent: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, ConfigError> {
        let max_concurrent = max_concurrent.max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                argon2: params.to_argon2()?,
                params,
                permits: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                verifies: AtomicU64::new(0),
                metrics,
                workers: Workers::spawn(max_concurrent),
            }),
        })
    }

    /// The default bound on concurrent argon2 work: every core.
    ///
    /// A restart storm (every active token's first request after a deploy)
    /// is argon2-bound, so it should finish in `verifies × one verify ÷
    /// cores`. The request path keeps its latency because the argon2 threads
    /// run at a lower priority (see the module docs), and wrong secrets do
    /// not reach argon2 (the secret tag), so a flood cannot fill these slots.
    pub(crate) fn default_concurrency() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(1)
    }

    /// How many verifications this hasher has run (a test hook and a metric).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn verify_count(&self) -> u64 {
        self.inner.verifies.load(Ordering::Relaxed)
    }

    /// Hashes a secret into an argon2id PHC string with a fresh random salt.
    pub(crate) async fn hash(&self, secret: SecretBytes) -> Result<String, HashError> {
        let inner = Arc::clone(&self.inner);
        self.run_bounded(move || {
            let salt = SaltString::generate(&mut OsRng);
            inner
                .argon2
                .hash_password(secret.expose_secret(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| HashError::Argon2(e.to_string()))
        })
        .await
    }

    /// Checks a secret against a stored PHC string. A wrong secret is `Ok(false)`.
    ///
    /// The parameters stored in the PHC string are used, so hashes made with
    /// older parameters keep verifying after the configuration changes.
    pub(crate) async fn verify(&self, secret: SecretBytes, phc: String) -> Result<bool, HashError> {
        let inner = Arc::clone(&self.inner);
        self.run_bounded(move || {
            let started = Instant::now();
            let parsed = PasswordHash::new(&phc).map_err(|_| HashError::CorruptHash)?;
            let result = inner
                .argon2
                .verify_password(secret.expose_secret(), &parsed);
            inner.verifies.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &inner.metrics {
                metrics.record_verify(started.elapsed());
            }
            match result {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(_) => Err(HashError::CorruptHash),
            }
        })
        .await
    }

    async fn run_bounded<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce() -> Result<T, HashError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = tokio::time::timeout(
            QUEUE_TIMEOUT,
            Arc::clone(&self.inner.permits).acquire_owned(),
        )
        .await
        .map_err(|_| HashError::Saturated(QUEUE_TIMEOUT))?
        // The semaphore is never closed.
        .map_err(|_| HashError::TaskFailed)?;
        // The permit moves into the job: if the caller goes away, the slot
        // stays taken until argon2 actually finishes.
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            drop(permit);
            // A panic drops `done` unsent: the caller sees `TaskFailed`.
            if let Ok(result) = result {
                let _ = done.send(result);
            }
        });
        self.inner
            .workers
            .jobs
            .send(job)
            .map_err(|_| HashError::TaskFailed)?;
        result.await.map_err(|_| HashError::TaskFailed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenFormat;

    #[tokio::test]
    async fn default_parameters_are_owasp_and_round_trip() {
        let hasher = SecretHasher::with_metrics(Argon2Params::default(), 1, None).unwrap();
        let minted = TokenFormat::default().generate();
        let phc = hasher.hash(minted.secret.clone()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            hasher
                .verify(minted.secret.clone(), phc.clone())
                .await
                .unwrap()
        );
        let other = TokenFormat::default().generate();
        assert!(!hasher.verify(other.secret, phc).await.unwrap());
        assert_eq!(hasher.verify_count(), 2);
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_still_verify() {
        let cheap =
            SecretHasher::with_metrics(Argon2Params::insecure_fast_for_tests(), 1, None).unwrap();
        let minted = TokenFormat::default().generate();
        let phc = cheap.hash(minted.secret.clone()).await.unwrap();
        let other = SecretHasher::with_metrics(
            Argon2Params {
                memory_kib: 128,
                iterations: 2,
                parallelism: 1,
            },
            1,
            None,
        )
        .unwrap();
        assert!(other.verify(minted.secret, phc).await.unwrap());
    }

    #[tokio::test]
    async fn corrupt_hash_is_an_error_not_a_mismatch() {
        let hasher =
            SecretHasher::with_metrics(Argon2Params::insecure_fast_for_tests(), 1, None).unwrap();
        let minted = TokenFormat::default().generate();
        let result = hasher.verify(minted.secret, "not a phc".into()).await;
        assert!(matches!(result, Err(HashError::CorruptHash)));
    }

    /// The read of this thread's `nice` value (field 19 of its `stat`).
    #[cfg(target_os = "linux")]
    fn current_thread_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces: count from its `)`.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// argon2 yields the cores to the request path: its threads run at a
    /// lower priority than the caller's.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn argon2_runs_below_the_request_paths_priority() {
        let hasher =
            SecretHasher::with_metrics(Argon2Params::insecure_fast_for_tests(), 2, None).unwrap();
        let caller = current_thread_nice();
        let worker = hasher
            .run_bounded(|| Ok(current_thread_nice()))
            .await
            .unwrap();
        assert_eq!(worker, (caller + ARGON2_NICE).min(19));
        assert!(worker > caller || caller == 19, "{worker} vs {caller}");
    }

    /// With `n` slots, `n` argon2 jobs run at the same time (a restart storm
    /// uses every core): two jobs that each wait for the other both finish.
    #[tokio::test]
    async fn every_slot_runs_at_once() {
        let hasher =
            SecretHasher::with_metrics(Argon2Params::insecure_fast_for_tests(), 2, None).unwrap();
        let (to_b, from_a) = std::sync::mpsc::channel();
        let (to_a, from_b) = std::sync::mpsc::channel();
        let meet = |to: std::sync::mpsc::Sender<()>, from: std::sync::mpsc::Receiver<()>| {
            move || {
                to.send(()).unwrap();
                // Generous: the other job starts at once unless it is queued behind this one.
                Ok(from
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .is_ok())
            }
        };
        let (a, b) = tokio::join!(
            hasher.run_bounded(meet(to_b, from_b)),
            hasher.run_bounded(meet(to_a, from_a)),
        );
        assert!(
            a.unwrap() && b.unwrap(),
            "the two jobs did not run at the same time"
        );
    }

    /// A panicking job is an error for its caller, and the slot and the
    /// thread survive it.
    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_lost_slot() {
        let hasher =
            SecretHasher::with_metrics(Argon2Params::insecure_fast_for_tests(), 1, None).unwrap();
        let failed = hasher
            .run_bounded::<(), _>(|| panic!("argon2 exploded"))
            .await;
        assert!(matches!(failed, Err(HashError::TaskFailed)));
        assert_eq!(hasher.run_bounded(|| Ok(7)).await.unwrap(), 7);
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let bad = Argon2Params {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        };
        assert!(SecretHasher::with_metrics(bad, 1, None).is_err());
    }
}

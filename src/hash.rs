//! argon2id hashing and verification of token secrets, on the blocking pool, bounded.
//!
//! At the OWASP parameters (m = 19 MiB, t = 2, p = 1) one hash or verify costs
//! about 25–30 ms of CPU. That work never runs on an async worker: it goes to
//! tokio's blocking pool, and a semaphore bounds how many run at once so a flood
//! of wrong secrets cannot take every core away from cached traffic.
//!
//! The argon2 pool is shared by the whole gate; wrong secrets rarely reach
//! it at all (see the secret tag in `token.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// How long a hash or verify waits for an argon2 slot before giving up (503).
const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
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
    pub fn validate(&self) -> Result<(), InvalidArgon2Params> {
        self.to_argon2().map(|_| ())
    }

    fn to_argon2(self) -> Result<Argon2<'static>, InvalidArgon2Params> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| InvalidArgon2Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Argon2 parameters that argon2 refuses (e.g. memory below 8 × parallelism KiB).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid argon2 parameters: {0}")]
pub struct InvalidArgon2Params(String);

/// A failure of the hashing machinery itself (not a wrong secret).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// The stored hash is not a valid PHC string: the database holds something we did not write.
    #[error("stored secret hash is not a valid argon2 PHC string")]
    CorruptHash,
    /// argon2 failed while hashing.
    #[error("argon2 failed: {0}")]
    Argon2(String),
    /// The blocking task panicked or was cancelled.
    #[error("hashing task failed")]
    TaskFailed,
    /// Every argon2 slot stayed busy for the whole queueing timeout.
    #[error("argon2 is saturated: no slot within {0:?}")]
    Saturated(std::time::Duration),
}

/// Hashes and verifies token secrets with argon2id on tokio's blocking pool.
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
    ) -> Result<Self, InvalidArgon2Params> {
        let max_concurrent = max_concurrent.max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                argon2: params.to_argon2()?,
                params,
                permits: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                verifies: AtomicU64::new(0),
                metrics,
            }),
        })
    }

    /// The default bound on concurrent argon2 work: half the cores, at least one.
    ///
    /// Half, not all: argon2 is pure CPU, and leaving the other half to the
    /// async workers keeps cached traffic fast while a flood of wrong secrets
    /// (or a cold start) is being verified.
    pub(crate) fn default_concurrency() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get() / 2)
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
        // The permit moves into the blocking job: if the caller goes away, the
        // slot stays taken until argon2 actually finishes.
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(|_| HashError::TaskFailed)?
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

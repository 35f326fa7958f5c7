//! Verification of uncached tokens: single-flight, a negative cache, and the
//! secret check (tag first, then argon2id on a bounded pool).
//!
//! * **Single-flight**: concurrent first uses of one token share one
//!   verification, which runs as its own task, so a client that disconnects
//!   cannot cut it short or leak its entry. A change concerning the token
//!   (revocation, plan change) detaches the flight: requests arriving after
//!   it start a fresh one instead of joining a verification that read the
//!   store before the change.
//! * **Negative cache**: an unknown, revoked or expired id is remembered
//!   for a short time, so repeats cost no lookup.
//! * **Secret check**: the 32-bit secret tag stored beside the hash
//!   (`token.rs`) refuses a wrong secret with one SHA-256; only a secret
//!   that passes it reaches argon2, whose concurrency is bounded
//!   (`hash.rs`). No number of wrong secrets, from any number of
//!   addresses, delays or refuses the owner: a wrong secret is always a
//!   401, never a 429, and never marks the id as bad.
//!
//! This module does not read the store or the cache: the gate hands it the
//! credential it read and the work to run in a flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::cache::{CachedAuth, TokenDigest};
use crate::hash::{HashError, SecretHasher};
use crate::response::Rejection;
use crate::store::{Change, Credential};
use crate::token::{ParsedToken, TokenId};

/// The outcome of a verification, shared by every request of its flight.
pub(super) type Verdict = Result<Arc<CachedAuth>, Rejection>;

/// How a presented secret compares with a stored credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SecretCheck {
    /// The secret is right. `backfill_tag` is set when the credential had
    /// no tag yet (made before tags existed): store it.
    Right { backfill_tag: Option<u32> },
    /// The secret is wrong.
    Wrong,
}

/// Single-flight verification, the negative cache and the secret check.
pub(super) struct Verifier {
    hasher: SecretHasher,
    flights: Arc<Mutex<Flights>>,
    negative: NegativeCache,
}

#[derive(Default)]
struct Flights {
    by_digest: HashMap<TokenDigest, Flight>,
    started: u64,
}

struct Flight {
    id: TokenId,
    /// Which flight this is, so a finished one never removes its successor.
    generation: u64,
    result: Shared<BoxFuture<'static, Verdict>>,
}

/// Removes its flight's entry when the flight's task ends, however it ends.
struct FlightGuard {
    flights: Arc<Mutex<Flights>>,
    digest: TokenDigest,
    generation: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .by_digest
            .get(&self.digest)
            .is_some_and(|flight| flight.generation == self.generation)
        {
            flights.by_digest.remove(&self.digest);
        }
    }
}

impl Verifier {
    pub(super) fn new(hasher: SecretHasher, negative_ttl: Duration) -> Self {
        Self {
            hasher,
            flights: Arc::default(),
            negative: NegativeCache::new(negative_ttl, 65_536),
        }
    }

    /// Whether `id` is known not to authenticate (unknown, revoked, expired).
    pub(super) fn is_known_bad(&self, id: &TokenId, now_ms: u64) -> bool {
        self.negative.contains(id, now_ms)
    }

    /// Remembers that `id` cannot authenticate, for the negative TTL.
    pub(super) fn remember_bad(&self, id: TokenId, now_ms: u64) {
        self.negative.insert(id, now_ms);
    }

    /// Drops expired negative entries.
    pub(super) fn sweep(&self, now_ms: u64) {
        self.negative.sweep(now_ms);
    }

    /// Joins the verification in flight for `digest`, or starts `work` as a
    /// task of its own and waits for it.
    pub(super) async fn single_flight(
        &self,
        digest: TokenDigest,
        id: TokenId,
        work: impl Future<Output = Verdict> + Send + 'static,
    ) -> Verdict {
        let (result, start) = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.by_digest.get(&digest) {
                Some(flight) => (flight.result.clone(), None),
                None => {
                    flights.started += 1;
                    let generation = flights.started;
                    let (send, receive) = tokio::sync::oneshot::channel();
                    // A verdict never sent (the task panicked or the runtime is
                    // shutting down) is a 503.
                    let result =
                        async move { receive.await.unwrap_or(Err(Rejection::Unavailable)) }
                            .boxed()
                            .shared();
                    flights.by_digest.insert(
                        digest,
                        Flight {
                            id,
                            generation,
                            result: result.clone(),
                        },
                    );
                    let guard = FlightGuard {
                        flights: Arc::clone(&self.flights),
                        digest,
                        generation,
                    };
                    (result, Some((guard, send)))
                }
            }
        };
        // Spawned after the lock is released: a runtime that is shutting down
        // drops the task at once, and the guard's drop takes the lock.
        if let Some((guard, send)) = start {
            tokio::spawn(async move {
                // Dropped on return and on panic: the entry never outlives its flight.
                let _guard = guard;
                let _ = send.send(work.await);
            });
        }
        result.await
    }

    /// Detaches the flights that `changes` concern: requests from now on
    /// start a new verification rather than join one that read the store
    /// before the change (and whose cache insert the cache refuses anyway).
    pub(super) fn detach(&self, changes: &[Change]) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.by_digest.is_empty() {
            return;
        }
        for change in changes {
            match change {
                Change::Created(_) => {}
                Change::Token(id) => flights.by_digest.retain(|_, flight| flight.id != *id),
                Change::Account(_) | Change::Plan(_) | Change::Everything => {
                    flights.by_digest.clear()
                }
            }
        }
    }

    /// Compares a presented secret with a stored credential: the tag first
    /// (one SHA-256), argon2id only if the tag matches or is missing.
    pub(super) async fn check_secret(
        &self,
        token: &ParsedToken,
        credential: &Credential,
    ) -> Result<SecretCheck, HashError> {
        let tag = token.secret_tag();
        if credential.secret_tag.is_some_and(|stored| stored != tag) {
            return Ok(SecretCheck::Wrong);
        }
        let right = self
            .hasher
            .verify(token.secret().clone(), credential.secret_hash.clone())
            .await?;
        Ok(match right {
            true => SecretCheck::Right {
                backfill_tag: credential.secret_tag.is_none().then_some(tag),
            },
            false => SecretCheck::Wrong,
        })
    }

    /// Hashes a new secret (for the tests' credentials; management hashes
    /// with the hasher it is given).
    #[cfg(test)]
    pub(super) async fn hash(
        &self,
        secret: crate::token::SecretBytes,
    ) -> Result<String, HashError> {
        self.hasher.hash(secret).await
    }

    /// How many argon2 verifications ran.
    #[cfg(any(test, feature = "test-util"))]
    pub(super) fn argon2_verifications(&self) -> u64 {
        self.hasher.verify_count()
    }
}

/// Ids known not to authenticate, for a short time.
struct NegativeCache {
    ttl_ms: u64,
    capacity: usize,
    // Keys can be chosen by an attacker (any well-formed token), so this map
    // keeps std's randomly keyed SipHash.
    entries: Mutex<HashMap<TokenId, u64>>,
}

impl NegativeCache {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    fn contains(&self, id: &TokenId, now_ms: u64) -> bool {
        if self.ttl_ms == 0 {
            return false;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(id).is_some_and(|&until| now_ms < until)
    }

    fn insert(&self, id: TokenId, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, &mut until| now_ms < until);
            if entries.len() * 4 >= self.capacity * 3 {
                // Still mostly live entries: an attack with many ids. Forgetting
                // them costs one lookup each, which is what they cost anyway,
                // and clearing (not trimming) keeps this scan rare.
                entries.clear();
            }
        }
        entries.insert(id, now_ms.saturating_add(self.ttl_ms));
    }

    fn sweep(&self, now_ms: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, &mut until| now_ms < until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Argon2Params;
    use crate::store::Plan;
    use crate::token::TokenFormat;

    fn verifier() -> Verifier {
        let hasher =
            SecretHasher::with_metrics(Argon2Params::insecure_fast_for_tests(), 1, None).unwrap();
        Verifier::new(hasher, Duration::from_secs(30))
    }

    async fn credential_for(
        verifier: &Verifier,
        token: &ParsedToken,
        tag: Option<u32>,
    ) -> Credential {
        Credential {
            token_id: token.id(),
            account_id: "acct".into(),
            secret_hash: verifier.hash(token.secret().clone()).await.unwrap(),
            secret_tag: tag,
            expires_at: None,
            revoked_at: None,
            scopes: vec!["*".into()],
            plan: Plan::new("pro", true, 10),
            window_id: None,
        }
    }

    #[tokio::test]
    async fn a_wrong_secret_with_a_tag_costs_no_argon2() {
        let verifier = verifier();
        let format = TokenFormat::default();
        let minted = format.generate();
        let token = format.parse(minted.token.expose_secret()).unwrap();
        let credential = credential_for(&verifier, &token, Some(minted.secret_tag())).await;
        let right = verifier.check_secret(&token, &credential).await.unwrap();
        assert_eq!(right, SecretCheck::Right { backfill_tag: None });
        assert_eq!(verifier.argon2_verifications(), 1);

        // Another secret: refused by the tag alone.
        let other = format
            .parse(format.generate().token.expose_secret())
            .unwrap();
        let check = verifier.check_secret(&other, &credential).await.unwrap();
        assert_eq!(check, SecretCheck::Wrong);
        assert_eq!(verifier.argon2_verifications(), 1);
    }

    #[tokio::test]
    async fn an_untagged_credential_is_verified_by_argon2_and_asks_for_its_tag() {
        let verifier = verifier();
        let format = TokenFormat::default();
        let minted = format.generate();
        let token = format.parse(minted.token.expose_secret()).unwrap();
        let credential = credential_for(&verifier, &token, None).await;
        let check = verifier.check_secret(&token, &credential).await.unwrap();
        assert_eq!(
            check,
            SecretCheck::Right {
                backfill_tag: Some(minted.secret_tag())
            }
        );
        let other = format
            .parse(format.generate().token.expose_secret())
            .unwrap();
        assert_eq!(
            verifier.check_secret(&other, &credential).await.unwrap(),
            SecretCheck::Wrong
        );
        assert_eq!(verifier.argon2_verifications(), 2);
    }

    #[test]
    fn negative_entries_expire() {
        let verifier = verifier();
        let id = TokenId::random();
        verifier.remember_bad(id, 1_000);
        assert!(verifier.is_known_bad(&id, 1_000 + 29_999));
        assert!(!verifier.is_known_bad(&id, 1_000 + 30_000));
    }
}

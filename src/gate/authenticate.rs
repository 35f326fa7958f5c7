//! One request through the gate: the header, the cache, the verifier, the
//! plan, the limiter. [`TokenGate::check_now`] answers from memory when it
//! can (the layer's fast path, no allocation); the layer's slow path
//! authenticates with [`TokenGate::authenticate_bearer`] only what the fast
//! path did not, so a token is never authenticated twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use http::{HeaderMap, HeaderValue};

use super::cache::{CachedAuth, TokenDigest};
use super::feed::Known;
use super::verify::{SecretCheck, Verdict};
use super::{TokenGate, revalidate};
use crate::bearer::{BearerError, is_bearer_scheme, parse_bearer, single_authorization};
use crate::clock::monotonic_unix_ms;
use crate::limit::{Decision, Refused};
use crate::principal::Principal;
use crate::response::Rejection;
use crate::store::Credential;
use crate::token::ParsedToken;

/// What the gate can say about a request without waiting.
pub(crate) enum Quick {
    /// Authenticated and admitted by the limiter.
    Admitted(Principal, Decision),
    /// Refused before or while authenticating.
    Rejected(Rejection),
    /// Authenticated and refused by the limiter: the 429 reuses the
    /// principal's prebuilt header values (no lock, no allocation for them).
    Limited(Principal, Decision),
    /// Authenticated from the cache; the limiter needs I/O.
    NeedsLimiter(Principal),
    /// The store or argon2 is needed.
    NeedsStore,
}

impl From<Refused> for Rejection {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Limited(decision) => Rejection::RateLimited(decision),
            Refused::Unavailable => Rejection::Unavailable,
        }
    }
}

/// A malformed `Bearer` field is an invalid token; another scheme (`Basic`,
/// or no scheme at all) carries no bearer credentials: the 401 without an
/// error code (RFC 6750 §3.1). The body is the same either way.
fn not_a_bearer_token(value: &HeaderValue) -> Rejection {
    if is_bearer_scheme(value.as_bytes()) {
        Rejection::InvalidToken
    } else {
        Rejection::MissingToken
    }
}

/// The bearer token in a request's only `Authorization` field.
fn bearer(authorization: Result<&HeaderValue, BearerError>) -> Result<&str, Rejection> {
    let value = match authorization {
        Ok(value) => value,
        Err(BearerError::Missing) => return Err(Rejection::MissingToken),
        Err(BearerError::Malformed) => return Err(Rejection::InvalidToken),
    };
    parse_bearer(value.as_bytes()).ok_or_else(|| not_a_bearer_token(value))
}

fn is_usable(credential: &Credential, now_wall_ms: i64) -> bool {
    credential.revoked_at.is_none()
        && credential
            .expires_at
            .is_none_or(|at| now_wall_ms < unix_ms(at))
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl TokenGate {
    /// Authenticates a request's `Authorization` header and checks the plan.
    /// Does not rate-limit: see [`check_rate_limit`](Self::check_rate_limit).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Rejection> {
        let token = bearer(single_authorization(headers))?;
        self.authenticate_token(token).await
    }

    /// Authenticates a bare token and checks the plan.
    pub async fn authenticate_token(&self, token: &str) -> Result<Principal, Rejection> {
        let inner = &self.inner;
        if inner.format.check_shape(token).is_err() {
            return Err(Rejection::InvalidToken);
        }
        let digest = TokenDigest::of(token);
        let entry = match inner.cache.get(&digest) {
            Some(entry) => {
                inner.metrics.cache_hits.inc();
                if entry.must_revalidate.load(Ordering::Acquire) {
                    revalidate::revalidate_now(self, digest, entry).await?
                } else {
                    revalidate::refresh_if_stale(self, digest, &entry, monotonic_unix_ms());
                    entry
                }
            }
            None => {
                inner.metrics.cache_misses.inc();
                self.verify_uncached(token, digest).await?
            }
        };
        self.admit(&entry)
    }

    /// Checks (and counts, if admitted) one request against the principal's hourly limit.
    pub async fn check_rate_limit(&self, principal: &Principal) -> Result<Decision, Rejection> {
        let inner = &self.inner;
        Ok(inner
            .limiter
            .check(principal.quota(), &inner.metrics)
            .await?)
    }

    /// The layer's fast path: the answer from memory alone when there is
    /// one (a malformed header, a cached token and a local limiter, an id
    /// known not to exist, a secret whose tag is wrong).
    pub(crate) fn check_now(&self, authorization: Result<&HeaderValue, BearerError>) -> Quick {
        let inner = &self.inner;
        let token = match bearer(authorization) {
            Ok(token) => token,
            Err(rejection) => return Quick::Rejected(rejection),
        };
        // Only verified tokens are cached, under the SHA-256 of all their
        // bytes: a hit is a token whose shape was checked when it was
        // verified, so the shape (alphabet, CRC-32) is checked on a miss
        // only. The length comes first, so junk of any size is not hashed.
        if token.len() != inner.format.token_len() {
            return Quick::Rejected(Rejection::InvalidToken);
        }
        let digest = TokenDigest::of(token);
        let now_ms = monotonic_unix_ms();
        let cached = inner.cache.with(&digest, |entry| {
            if entry.must_revalidate.load(Ordering::Acquire) {
                return None;
            }
            revalidate::refresh_if_stale(self, digest, entry, now_ms);
            Some(self.admit(entry))
        });
        match cached {
            Some(Some(Ok(principal))) => {
                inner.metrics.cache_hits.inc();
                match inner.limiter.check_now(principal.quota()) {
                    Some(Ok(decision)) => Quick::Admitted(principal, decision),
                    Some(Err(Refused::Limited(decision))) => Quick::Limited(principal, decision),
                    Some(Err(refused)) => Quick::Rejected(refused.into()),
                    None => Quick::NeedsLimiter(principal),
                }
            }
            Some(Some(Err(rejection))) => {
                inner.metrics.cache_hits.inc();
                Quick::Rejected(rejection)
            }
            Some(None) => Quick::NeedsStore,
            None => match inner.format.parse(token) {
                Ok(parsed) => match self.refuse_from_memory(&parsed, now_ms) {
                    Some(rejection) => Quick::Rejected(rejection),
                    None => Quick::NeedsStore,
                },
                Err(_) => Quick::Rejected(Rejection::InvalidToken),
            },
        }
    }

    /// Authenticates an `Authorization` field the fast path could not
    /// answer from memory (owned, so the caller's future borrows nothing).
    pub(crate) async fn authenticate_bearer(
        &self,
        authorization: Result<HeaderValue, BearerError>,
    ) -> Result<Principal, Rejection> {
        let token = bearer(authorization.as_ref().map_err(|e| *e))?;
        self.authenticate_token(token).await
    }

    /// Expiry, last use and plan of a verified token.
    fn admit(&self, entry: &CachedAuth) -> Result<Principal, Rejection> {
        let now_wall_ms = self.inner.clock.now_unix_ms();
        if entry.is_expired_at(now_wall_ms) {
            return Err(Rejection::InvalidToken);
        }
        self.inner.last_use.note(
            entry.principal.token_id(),
            now_wall_ms.div_euclid(1000),
            &entry.last_seen_sec,
        );
        if !entry.api_access {
            return Err(Rejection::NoApiAccess);
        }
        Ok(entry.principal.clone())
    }

    /// An uncached token that certainly fails, known from memory: an id
    /// remembered as bad, or a secret whose tag does not match.
    fn refuse_from_memory(&self, token: &ParsedToken, now_ms: u64) -> Option<Rejection> {
        let inner = &self.inner;
        if inner.verifier.is_known_bad(&token.id(), now_ms) {
            return Some(Rejection::InvalidToken);
        }
        match inner.feed.lookup(&token.id()) {
            Known::Live(Some(tag)) if tag != token.secret_tag() => {
                inner.metrics.wrong_secrets.inc();
                Some(Rejection::InvalidToken)
            }
            _ => None,
        }
    }

    /// Verifies a token that is not cached (single-flight, see `verify.rs`).
    async fn verify_uncached(&self, token: &str, digest: TokenDigest) -> Verdict {
        let inner = &self.inner;
        let parsed = inner
            .format
            .parse(token)
            .map_err(|_| Rejection::InvalidToken)?;
        if let Some(rejection) = self.refuse_from_memory(&parsed, monotonic_unix_ms()) {
            return Err(rejection);
        }
        if inner.feed.lookup(&parsed.id()) == Known::Unknown {
            // Maybe created by another process since the last poll: wait for
            // a poll that started after this request arrived, then decide.
            if !self.sync_feed().await {
                return Err(Rejection::Unavailable);
            }
            if inner.feed.lookup(&parsed.id()) == Known::Unknown {
                return Err(Rejection::InvalidToken);
            }
            if let Some(rejection) = self.refuse_from_memory(&parsed, monotonic_unix_ms()) {
                return Err(rejection);
            }
        }
        let id = parsed.id();
        let gate = self.clone();
        inner
            .verifier
            .single_flight(digest, id, async move {
                gate.verify_with_store(parsed, digest).await
            })
            .await
    }

    /// The flight: one store lookup, the secret check, the cache insert.
    async fn verify_with_store(&self, parsed: ParsedToken, digest: TokenDigest) -> Verdict {
        let inner = &self.inner;
        // A request that lost the race to an earlier flight finds its result
        // here (unless a change since asks for a fresh read).
        if let Some(entry) = inner.cache.get(&digest)
            && !entry.must_revalidate.load(Ordering::Acquire)
        {
            return Ok(entry);
        }
        let read_epoch = inner.cache.epoch();
        let id = parsed.id();
        let credential = match self
            .within_store_timeout(inner.store.find_credential(&id))
            .await
        {
            Ok(Some(credential)) => credential,
            Ok(None) => {
                inner.verifier.remember_bad(id, monotonic_unix_ms());
                return Err(Rejection::InvalidToken);
            }
            Err(e) => {
                tracing::error!(error = %e, token_id = %id, "store unavailable during authentication");
                return Err(Rejection::Unavailable);
            }
        };
        if !is_usable(&credential, inner.clock.now_unix_ms()) {
            inner.verifier.remember_bad(id, monotonic_unix_ms());
            return Err(Rejection::InvalidToken);
        }
        match inner.verifier.check_secret(&parsed, &credential).await {
            Ok(SecretCheck::Right { backfill_tag }) => {
                if let Some(tag) = backfill_tag {
                    self.backfill_secret_tag(parsed.id(), tag);
                }
            }
            Ok(SecretCheck::Wrong) => {
                inner.metrics.wrong_secrets.inc();
                tracing::debug!(token_id = %id, "wrong secret for a known token id");
                return Err(Rejection::InvalidToken);
            }
            Err(e) => {
                tracing::error!(error = %e, token_id = %id, "cannot verify the stored hash");
                return Err(Rejection::Unavailable);
            }
        }
        let entry = Arc::new(self.cached_auth(&credential));
        inner
            .cache
            .insert(digest, Arc::clone(&entry), read_epoch, monotonic_unix_ms());
        Ok(entry)
    }

    /// A token made before secret tags existed was just verified: remember
    /// its tag here at once, and in the store in the background, so wrong
    /// secrets for it stop reaching argon2.
    fn backfill_secret_tag(&self, id: crate::token::TokenId, tag: u32) {
        self.inner.feed.learn(id, Some(tag));
        let gate = self.clone();
        tokio::spawn(async move {
            let store = Arc::clone(&gate.inner.store);
            if let Err(e) = gate
                .within_store_timeout(store.backfill_secret_tag(&id, tag))
                .await
            {
                tracing::warn!(error = %e, token_id = %id, "could not store a secret tag; will retry at a later use");
            }
        });
    }

    /// A cache entry for a credential read now.
    pub(super) fn cached_auth(&self, credential: &Credential) -> CachedAuth {
        CachedAuth {
            principal: Principal::of(credential),
            api_access: credential.plan.api_access,
            expires_at_ms: credential.expires_at.map(unix_ms),
            refresh_after_ms: monotonic_unix_ms().saturating_add(
                u64::try_from(self.inner.timing.cache_ttl.as_millis()).unwrap_or(u64::MAX),
            ),
            refreshing: AtomicBool::new(false),
            must_revalidate: AtomicBool::new(false),
            last_seen_sec: AtomicI64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_keeps_milliseconds() {
        let t = time::macros::datetime!(2026-01-01 00:00:01.250 UTC);
        assert_eq!(unix_ms(t), 1_767_225_601_250);
    }
}

//! Which limiter answers a request: this process's windows, or a shared
//! backend with an optional local fallback while it is down.
//!
//! The in-memory limiter answers synchronously, so the layer's fast path
//! needs no future at all; a shared backend is asked asynchronously.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::memory::Tally;
use super::{Decision, MemoryRateLimiter, RateLimitStore, WindowConfig};
use crate::clock::monotonic_unix_ms;
use crate::metrics::Metrics;
use crate::principal::Principal;
use crate::token::{RandomIdState, TokenId};

/// What to do when a shared rate-limit backend (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimiterFailurePolicy {
    /// Answer 503: never admit a request the limit was not checked for. The default.
    #[default]
    FailClosed,
    /// Check against this process's own in-memory limiter until the backend is back.
    /// Each instance then enforces the limit separately, so N instances may
    /// together admit up to N times the limit during the outage.
    FallBackToLocal,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Over the limit: the decision carries the wait and the headers.
    Limited(Decision),
    /// The shared backend is down and the policy fails closed.
    Unavailable,
}

/// The limiter in use.
pub(crate) enum LimiterPolicy {
    /// One process: windows in memory (which also count usage).
    Local(MemoryRateLimiter),
    /// Several instances: a shared backend, maybe with a local fallback,
    /// and this process's usage counts.
    Shared {
        shared: Arc<dyn RateLimitStore>,
        fallback: Option<MemoryRateLimiter>,
        tally: Box<UsageTally>,
    },
}

/// Requests per token counted by this process when the windows are shared.
#[derive(Default)]
pub(crate) struct UsageTally {
    shards: [Mutex<HashMap<TokenId, Tally, RandomIdState>>; 8],
}

impl UsageTally {
    fn count(&self, token: TokenId, allowed: bool) {
        let shard = &self.shards[token.as_bytes()[9] as usize % 8];
        shard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(token)
            .or_default()
            .count(allowed);
    }

    fn take(&self) -> Vec<(TokenId, Tally)> {
        self.shards
            .iter()
            .flat_map(|shard| std::mem::take(&mut *shard.lock().unwrap_or_else(|e| e.into_inner())))
            .collect()
    }
}

/// The principal's token window and, if its plan has one, its account's.
fn check_local(local: &MemoryRateLimiter, principal: &Principal) -> Decision {
    let account = principal
        .account_requests_per_hour()
        .map(|ceiling| (principal.account_id(), ceiling));
    local.check_both_at(
        &principal.token_id(),
        principal.requests_per_hour(),
        account,
        monotonic_unix_ms(),
    )
}

fn verdict(decision: Decision) -> Result<Decision, Refused> {
    if decision.allowed {
        Ok(decision)
    } else {
        Err(Refused::Limited(decision))
    }
}

impl LimiterPolicy {
    pub(crate) fn new(
        window: WindowConfig,
        shared: Option<Arc<dyn RateLimitStore>>,
        on_failure: LimiterFailurePolicy,
    ) -> Self {
        match shared {
            None => LimiterPolicy::Local(MemoryRateLimiter::new(window)),
            Some(shared) => LimiterPolicy::Shared {
                shared,
                fallback: (on_failure == LimiterFailurePolicy::FallBackToLocal)
                    .then(|| MemoryRateLimiter::new(window)),
                tally: Box::default(),
            },
        }
    }

    /// The answer without waiting, when the limiter can give one (the
    /// in-memory limiter always can). `None`: call [`check`](Self::check).
    pub(crate) fn check_now(&self, principal: &Principal) -> Option<Result<Decision, Refused>> {
        match self {
            LimiterPolicy::Local(local) => Some(verdict(check_local(local, principal))),
            LimiterPolicy::Shared { shared, tally, .. } => {
                let account = principal
                    .account_requests_per_hour()
                    .map(|ceiling| (principal.account_id(), ceiling));
                let id = principal.token_id();
                let decision = shared.check_now(&id, principal.requests_per_hour(), account)?;
                tally.count(id, decision.allowed);
                Some(verdict(decision))
            }
        }
    }

    /// Checks (and counts, if admitted) one request of `principal`.
    pub(crate) async fn check(
        &self,
        principal: &Principal,
        metrics: &Metrics,
    ) -> Result<Decision, Refused> {
        let (id, limit) = (principal.token_id(), principal.requests_per_hour());
        let account = principal
            .account_requests_per_hour()
            .map(|ceiling| (principal.account_id(), ceiling));
        match self {
            LimiterPolicy::Local(local) => verdict(check_local(local, principal)),
            LimiterPolicy::Shared {
                shared,
                fallback,
                tally,
            } => {
                match shared.check(&id, limit, account).await {
                    Ok(decision) => {
                        tally.count(id, decision.allowed);
                        verdict(decision)
                    }
                    Err(e) => {
                        metrics.limiter_backend_errors.inc();
                        // The backend logs its own transitions; per request, debug only.
                        let Some(local) = fallback else {
                            tracing::debug!(error = %e, "rate-limit backend down: failing closed (503)");
                            return Err(Refused::Unavailable);
                        };
                        tracing::debug!(error = %e, "rate-limit backend down: using the local limiter");
                        metrics.limiter_fallbacks.inc();
                        verdict(check_local(local, principal))
                    }
                }
            }
        }
    }

    /// Drops idle windows; returns how many tokens have live state.
    pub(crate) fn evict_idle(&self) -> usize {
        let now_ms = monotonic_unix_ms();
        match self {
            LimiterPolicy::Local(local) => {
                local.evict_idle_at(now_ms);
                local.tracked()
            }
            LimiterPolicy::Shared {
                shared, fallback, ..
            } => {
                shared.evict_idle();
                if let Some(local) = fallback {
                    local.evict_idle_at(now_ms);
                }
                shared.tracked_tokens().unwrap_or(0)
            }
        }
    }

    /// Takes the requests counted per token since the last call (usage).
    pub(crate) fn take_usage(&self) -> Vec<(TokenId, Tally)> {
        match self {
            LimiterPolicy::Local(local) => local.take_usage(),
            LimiterPolicy::Shared {
                fallback, tally, ..
            } => {
                let mut taken = tally.take();
                if let Some(local) = fallback {
                    taken.extend(local.take_usage());
                }
                taken
            }
        }
    }

    /// Tokens with live state (for the gauge).
    pub(crate) fn tracked(&self) -> usize {
        match self {
            LimiterPolicy::Local(local) => local.tracked(),
            LimiterPolicy::Shared { shared, .. } => shared.tracked_tokens().unwrap_or(0),
        }
    }

    /// Whether the windows are this process's own.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, LimiterPolicy::Local(_))
    }

    /// The in-memory windows as text, when they are this process's own
    /// (a shared backend keeps its windows across restarts by itself).
    pub(crate) fn snapshot(&self) -> Option<String> {
        match self {
            LimiterPolicy::Local(local) => Some(local.snapshot_at(monotonic_unix_ms())),
            LimiterPolicy::Shared { .. } => None,
        }
    }

    /// Loads windows saved by [`snapshot`](Self::snapshot); `None` when the
    /// limiter is shared.
    pub(crate) fn restore(&self, snapshot: &str) -> Option<usize> {
        match self {
            LimiterPolicy::Local(local) => {
                Some(local.restore_snapshot(snapshot, monotonic_unix_ms()))
            }
            LimiterPolicy::Shared { .. } => None,
        }
    }
}

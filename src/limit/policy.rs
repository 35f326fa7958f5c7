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
use crate::token::{RandomIdState, TokenId};

/// What to do when a shared rate-limit backend (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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

/// What one request is counted against: the token's window (shared across
/// a rotation) with its hourly limit, and the account's window if its plan
/// has a ceiling. The limiter knows nothing else of the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota<'a> {
    /// The token that made the request (for usage counts).
    pub(crate) token_id: TokenId,
    /// The key of the token's rate window.
    pub(crate) window_id: TokenId,
    /// Requests per token in any rolling hour.
    pub(crate) requests_per_hour: u32,
    /// `(account, ceiling)`, if the plan caps the account's tokens together.
    pub(crate) account: Option<(&'a str, u32)>,
}

/// The quota's token window and, if it has one, its account's.
fn check_local(local: &MemoryRateLimiter, quota: Quota<'_>) -> Decision {
    local.check_both_at(
        &quota.window_id,
        &quota.token_id,
        quota.requests_per_hour,
        quota.account,
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
    pub(crate) fn check_now(&self, quota: Quota<'_>) -> Option<Result<Decision, Refused>> {
        match self {
            LimiterPolicy::Local(local) => Some(verdict(check_local(local, quota))),
            LimiterPolicy::Shared { shared, tally, .. } => {
                let decision =
                    shared.check_now(&quota.window_id, quota.requests_per_hour, quota.account)?;
                tally.count(quota.token_id, decision.allowed);
                Some(verdict(decision))
            }
        }
    }

    /// Checks (and counts, if admitted) one request against `quota`.
    pub(crate) async fn check(
        &self,
        quota: Quota<'_>,
        metrics: &Metrics,
    ) -> Result<Decision, Refused> {
        let (id, limit, account) = (quota.token_id, quota.requests_per_hour, quota.account);
        match self {
            LimiterPolicy::Local(local) => verdict(check_local(local, quota)),
            LimiterPolicy::Shared {
                shared,
                fallback,
                tally,
            } => {
                match shared.check(&quota.window_id, limit, account).await {
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
                        let decision = check_local(local, quota);
                        if decision.allowed {
                            // Counted in the shared windows too once they are back.
                            shared.admitted_locally(&id, account.map(|(account, _)| account));
                        }
                        verdict(decision)
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

    /// Times the shared backend was found to have lost its windows.
    pub(crate) fn resets_detected(&self) -> u64 {
        match self {
            LimiterPolicy::Local(_) => 0,
            LimiterPolicy::Shared { shared, .. } => shared.resets_detected(),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::limit::LimitError;

    fn principal(limit: u32, ceiling: Option<u32>) -> Quota<'static> {
        let token_id = TokenId::random();
        Quota {
            token_id,
            window_id: token_id,
            requests_per_hour: limit,
            account: ceiling.map(|ceiling| ("acct", ceiling)),
        }
    }

    fn decision(allowed: bool, remaining: u32) -> Decision {
        Decision {
            allowed,
            limit: 3,
            remaining,
            reset_at_ms: 10_000,
            now_ms: 1_000,
            window_secs: 3600,
        }
    }

    /// One check as the backend saw it: token, limit, account window.
    type Asked = (TokenId, u32, Option<(String, u32)>);

    /// A shared backend that answers what it is told and records what it was asked.
    #[derive(Default)]
    struct Scripted {
        /// `Some(allowed)`: answer; `None`: fail.
        answer: Option<bool>,
        /// Whether `check_now` can answer.
        now: bool,
        asked: Mutex<Vec<Asked>>,
        evictions: AtomicU32,
        /// Admissions by the local fallback reported to the backend.
        admitted_locally: AtomicU32,
    }

    #[async_trait]
    impl RateLimitStore for Scripted {
        async fn check(
            &self,
            token: &TokenId,
            limit: u32,
            account: Option<(&str, u32)>,
        ) -> Result<Decision, LimitError> {
            self.asked.lock().unwrap().push((
                *token,
                limit,
                account.map(|(a, c)| (a.to_owned(), c)),
            ));
            match self.answer {
                Some(allowed) => Ok(decision(allowed, u32::from(allowed))),
                None => Err(LimitError("down".into())),
            }
        }

        fn check_now(
            &self,
            _token: &TokenId,
            _limit: u32,
            _account: Option<(&str, u32)>,
        ) -> Option<Decision> {
            self.now.then(|| decision(true, 2))
        }

        fn tracked_tokens(&self) -> Option<usize> {
            Some(7)
        }

        fn evict_idle(&self) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }

        fn resets_detected(&self) -> u64 {
            3
        }

        fn admitted_locally(&self, _token: &TokenId, _account: Option<&str>) {
            self.admitted_locally.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn shared(
        backend: Scripted,
        on_failure: LimiterFailurePolicy,
    ) -> (LimiterPolicy, Arc<Scripted>) {
        let backend = Arc::new(backend);
        let store: Arc<dyn RateLimitStore> = backend.clone();
        (
            LimiterPolicy::new(WindowConfig::default(), Some(store), on_failure),
            backend,
        )
    }

    fn usage(policy: &LimiterPolicy) -> Vec<(TokenId, u64, u64)> {
        let mut taken: Vec<_> = policy
            .take_usage()
            .into_iter()
            .map(|(id, t)| (id, t.admitted, t.limited))
            .collect();
        taken.sort();
        taken
    }

    #[tokio::test]
    async fn the_local_limiter_answers_at_once_and_counts_usage() {
        let policy = LimiterPolicy::new(
            WindowConfig::default(),
            None,
            LimiterFailurePolicy::FailClosed,
        );
        assert!(policy.is_local());
        let p = principal(2, None);
        let metrics = Metrics::new();
        assert!(policy.check_now(p).unwrap().is_ok());
        assert!(policy.check(p, &metrics).await.is_ok());
        let Some(Err(Refused::Limited(refused))) = policy.check_now(p) else {
            panic!("the third request of a limit of 2 must be refused")
        };
        assert_eq!(refused.remaining, 0);
        assert_eq!(usage(&policy), vec![(p.token_id, 2, 1)]);
        assert_eq!(policy.tracked(), 1);
        assert_eq!(policy.evict_idle(), 1, "not idle yet");
        assert_eq!(policy.resets_detected(), 0);
        assert!(policy.snapshot().is_some_and(|s| !s.is_empty()));
        assert_eq!(policy.restore(""), Some(0));
    }

    #[tokio::test]
    async fn the_account_ceiling_binds_in_the_local_limiter() {
        let policy = LimiterPolicy::new(
            WindowConfig::default(),
            None,
            LimiterFailurePolicy::FailClosed,
        );
        let (a, b) = (principal(5, Some(3)), principal(5, Some(3)));
        let metrics = Metrics::new();
        for p in [a, b, a] {
            assert!(policy.check(p, &metrics).await.is_ok());
        }
        assert!(
            matches!(policy.check(b, &metrics).await, Err(Refused::Limited(d)) if d.limit == 3)
        );
    }

    #[tokio::test]
    async fn a_shared_backend_is_asked_with_both_windows_and_counts_usage() {
        let (policy, backend) = shared(
            Scripted {
                answer: Some(true),
                ..Default::default()
            },
            LimiterFailurePolicy::FailClosed,
        );
        assert!(!policy.is_local());
        let p = principal(3, Some(9));
        assert!(policy.check_now(p).is_none(), "no lease: ask");
        let metrics = Metrics::new();
        assert_eq!(policy.check(p, &metrics).await, Ok(decision(true, 1)));
        assert_eq!(
            *backend.asked.lock().unwrap(),
            vec![(p.token_id, 3, Some(("acct".to_owned(), 9)))]
        );
        assert_eq!(usage(&policy), vec![(p.token_id, 1, 0)]);
        assert_eq!(usage(&policy), vec![], "taken once");
        assert_eq!(policy.tracked(), 7);
        assert_eq!(policy.resets_detected(), 3, "the backend's count");
        assert_eq!(policy.evict_idle(), 7);
        assert_eq!(backend.evictions.load(Ordering::Relaxed), 1);
        assert_eq!(policy.snapshot(), None);
        assert_eq!(policy.restore("anything"), None);
        assert_eq!(metrics.limiter_backend_errors.get(), 0);
    }

    #[tokio::test]
    async fn a_shared_refusal_is_limited_and_counted() {
        let (policy, _) = shared(
            Scripted {
                answer: Some(false),
                ..Default::default()
            },
            LimiterFailurePolicy::FailClosed,
        );
        let p = principal(3, None);
        assert_eq!(
            policy.check(p, &Metrics::new()).await,
            Err(Refused::Limited(decision(false, 0)))
        );
        assert_eq!(usage(&policy), vec![(p.token_id, 0, 1)]);
    }

    #[tokio::test]
    async fn a_lease_answers_at_once_and_counts_usage() {
        let (policy, backend) = shared(
            Scripted {
                answer: None,
                now: true,
                ..Default::default()
            },
            LimiterFailurePolicy::FailClosed,
        );
        let p = principal(3, None);
        assert_eq!(policy.check_now(p), Some(Ok(decision(true, 2))));
        assert!(backend.asked.lock().unwrap().is_empty());
        assert_eq!(usage(&policy), vec![(p.token_id, 1, 0)]);
    }

    #[tokio::test]
    async fn a_down_backend_fails_closed_or_falls_back_to_local_windows() {
        let p = principal(1, None);
        let down = || Scripted {
            answer: None,
            ..Default::default()
        };
        let (closed, _) = shared(down(), LimiterFailurePolicy::FailClosed);
        let metrics = Metrics::new();
        assert_eq!(closed.check(p, &metrics).await, Err(Refused::Unavailable));
        assert_eq!(metrics.limiter_backend_errors.get(), 1);
        assert_eq!(metrics.limiter_fallbacks.get(), 0);
        assert_eq!(usage(&closed), vec![], "nothing was checked");

        let (local, backend) = shared(down(), LimiterFailurePolicy::FallBackToLocal);
        let metrics = Metrics::new();
        assert!(local.check(p, &metrics).await.is_ok());
        assert!(matches!(
            local.check(p, &metrics).await,
            Err(Refused::Limited(_))
        ));
        assert_eq!(metrics.limiter_backend_errors.get(), 2);
        assert_eq!(metrics.limiter_fallbacks.get(), 2);
        assert_eq!(
            backend.admitted_locally.load(Ordering::Relaxed),
            1,
            "the local admission, for the shared window once it is back"
        );
        assert_eq!(
            usage(&local),
            vec![(p.token_id, 1, 1)],
            "the fallback's usage"
        );
    }
}

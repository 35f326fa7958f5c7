//! The lease protocol against an exact model: several simulated instances
//! share one window through [`Twin`] (the Lua script's twin, checked against
//! the real script in `tests/it/redis_limiter.rs`), with leases, expiries,
//! idle sweeps and crashes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use proptest::prelude::*;

use super::lease::{Ask, Grant, Lease, Room};
use super::window::{HOUR_MS, WindowConfig};

/// The shared windows as the lease script keeps them: per key, bucket -> count.
#[derive(Debug, Default, Clone)]
pub(crate) struct Twin {
    keys: HashMap<String, BTreeMap<u64, u32>>,
}

impl Twin {
    /// What the script does for one call: give back, then grant
    /// `min(ask, room of every window)` in the bucket of `now + lease_ms`.
    /// `windows`: `(key, limit)`, the token's first, maybe the account's.
    pub(crate) fn lease(
        &mut self,
        windows: &[(&str, u32)],
        ask: Ask,
        lease_ms: u64,
        now_ms: u64,
        config: &WindowConfig,
    ) -> Grant {
        let bucket_ms = config.bucket_ms();
        let current = now_ms / bucket_ms;
        let first = current.saturating_sub(u64::from(config.buckets()));
        for (key, _) in windows {
            let counts = self.keys.entry((*key).to_owned()).or_default();
            if let Some((bucket, n)) = ask.give_back
                && bucket >= first
                && let Some(count) = counts.get_mut(&bucket)
            {
                *count -= n.min(*count);
                if *count == 0 {
                    counts.remove(&bucket);
                }
            }
            counts.retain(|&bucket, _| bucket >= first);
        }
        let sum = |counts: &BTreeMap<u64, u32>| counts.values().sum::<u32>();
        let permits = windows
            .iter()
            .map(|(key, limit)| limit.saturating_sub(sum(&self.keys[*key])))
            .fold(ask.permits, u32::min);
        let record = (now_ms + lease_ms) / bucket_ms;
        let mut rooms = windows.iter().map(|(key, limit)| {
            let counts = self.keys.get_mut(*key).expect("loaded above");
            if permits > 0 {
                *counts.entry(record).or_default() += permits;
            }
            room(counts, *limit, now_ms, config)
        });
        let token = rooms.next().expect("a token window");
        let account = rooms.next();
        Grant {
            permits,
            record,
            now_ms,
            token,
            account,
        }
    }

    /// The count of one bucket of one key.
    pub(crate) fn get(&self, key: &str, bucket: u64) -> u32 {
        self.keys
            .get(key)
            .and_then(|counts| counts.get(&bucket))
            .copied()
            .unwrap_or(0)
    }

    /// What the re-seed script does for one bucket of one key.
    pub(crate) fn add(&mut self, key: &str, bucket: u64, n: u32) {
        if n == 0 {
            return;
        }
        *self
            .keys
            .entry(key.to_owned())
            .or_default()
            .entry(bucket)
            .or_default() += n;
    }

    /// The count of `key`'s window at `now_ms` (buckets not yet left).
    pub(crate) fn counted(&self, key: &str, now_ms: u64, config: &WindowConfig) -> u32 {
        let first = (now_ms / config.bucket_ms()).saturating_sub(u64::from(config.buckets()));
        self.keys
            .get(key)
            .map_or(0, |counts| counts.range(first..).map(|(_, n)| n).sum())
    }
}

/// Remaining and reset of one window, as the script computes them.
fn room(counts: &BTreeMap<u64, u32>, limit: u32, now_ms: u64, config: &WindowConfig) -> Room {
    let (bucket_ms, buckets) = (config.bucket_ms(), u64::from(config.buckets()));
    let sum: u32 = counts.values().sum();
    let mut reset_at_ms = now_ms + buckets * bucket_ms;
    if sum > 0 && limit > 0 {
        let mut leaving = 0;
        for (bucket, count) in counts {
            leaving += count;
            if sum < limit || sum - leaving < limit {
                reset_at_ms = (bucket + buckets + 1) * bucket_ms;
                break;
            }
        }
    }
    Room {
        remaining: limit.saturating_sub(sum),
        reset_at_ms,
    }
}

/// Admission times of one window, for counting any rolling hour exactly.
#[derive(Default)]
struct Log(VecDeque<u64>);

impl Log {
    fn admit(&mut self, now: u64) {
        self.0.push_back(now);
        while self.0.front().is_some_and(|&t| t + HOUR_MS <= now) {
            self.0.pop_front();
        }
    }

    fn in_last_hour(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap()
    }
}

/// What happens next in a simulation step.
#[derive(Debug, Clone, Copy)]
enum Step {
    Request,
    /// The idle sweep: expired leases give their permits back.
    Sweep,
    /// The instance dies and restarts empty: its held permits are stranded.
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => Just(Step::Request),
        1 => Just(Step::Sweep),
        1 => Just(Step::Crash),
    ]
}

/// Time between steps: mostly within a lease, sometimes past it, sometimes minutes.
fn pause() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..20,
        2 => 0u64..3_000,
        1 => 0u64..600_000,
    ]
}

const KEYS: [&str; 2] = ["token-0", "token-1"];
const ACCOUNT: &str = "account";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Instances admitting from leases of one shared window, two tokens of
    /// one account: no rolling hour ever holds more than a token's limit or
    /// the account's ceiling; every permit counted in the window is an
    /// admission, a held permit or a crash's stranded one (nothing leaks);
    /// and a request the shared window refuses finds its window full.
    #[test]
    fn leased_instances_never_over_admit_and_lose_only_what_crashes_strand(
        instances in 2usize..5,
        token_limit in 1u32..90,
        account_limit in prop::option::of(1u32..150),
        max in 1u32..60,
        ttl_ms in prop_oneof![Just(50u64), Just(2_000u64)],
        steps in prop::collection::vec((0usize..4, 0usize..2, step(), pause()), 1..700),
        start in HOUR_MS..10 * HOUR_MS,
    ) {
        let config = WindowConfig::default();
        let limits = (token_limit, account_limit);
        let mut leases = vec![[Lease::default(), Lease::default()]; instances];
        // The bucket each instance's held permits of each token are counted in.
        let mut records = vec![[0u64; 2]; instances];
        let mut twin = Twin::default();
        let mut logs: [Log; 2] = Default::default();
        let mut account_log = Log::default();
        // Per token: (bucket, count) of admissions, and of stranded permits.
        let mut admitted: [BTreeMap<u64, u32>; 2] = Default::default();
        let mut stranded: [BTreeMap<u64, u32>; 2] = Default::default();
        let mut now = start;
        for (instance, token, step, pause) in steps {
            now += pause;
            let instance = instance % instances;
            let windows = |token: usize| {
                let mut windows = vec![(KEYS[token], token_limit)];
                if let Some(ceiling) = account_limit {
                    windows.push((ACCOUNT, ceiling));
                }
                windows
            };
            match step {
                Step::Crash => {
                    for ((lease, record), stranded) in leases[instance]
                        .iter_mut()
                        .zip(records[instance])
                        .zip(&mut stranded)
                    {
                        if lease.held() > 0 {
                            *stranded.entry(record).or_default() += lease.held();
                        }
                        *lease = Lease::default();
                    }
                }
                Step::Sweep => {
                    for (token, lease) in leases[instance].iter_mut().enumerate() {
                        if let Some(give_back) = lease.take_expired(now) {
                            let ask = Ask { permits: 0, give_back: Some(give_back) };
                            twin.lease(&windows(token), ask, ttl_ms, now, &config);
                        }
                    }
                }
                Step::Request => {
                    let lease = &mut leases[instance][token];
                    let (decision, asked) = match lease.take(now, limits) {
                        Some(decision) => (decision, false),
                        None => {
                            let ask = lease.ask(limits, max);
                            prop_assert!(ask.permits >= 1 && ask.permits <= max);
                            let grant = twin.lease(&windows(token), ask, ttl_ms, now, &config);
                            if grant.permits > 0 {
                                records[instance][token] = grant.record;
                            }
                            (lease.granted(now, ttl_ms, grant, limits), true)
                        }
                    };
                    if decision.allowed {
                        *admitted[token].entry(records[instance][token]).or_default() += 1;
                        logs[token].admit(now);
                        prop_assert!(logs[token].in_last_hour() <= token_limit,
                            "token {token}: {} admitted in an hour, limit {token_limit}", logs[token].in_last_hour());
                        if let Some(ceiling) = account_limit {
                            account_log.admit(now);
                            prop_assert!(account_log.in_last_hour() <= ceiling,
                                "account: {} admitted in an hour, ceiling {ceiling}", account_log.in_last_hour());
                        }
                        prop_assert!(decision.remaining < decision.limit);
                    } else {
                        prop_assert_eq!(decision.remaining, 0);
                        if asked {
                            let full = twin.counted(KEYS[token], now, &config) >= token_limit
                                || account_limit.is_some_and(|c| twin.counted(ACCOUNT, now, &config) >= c);
                            prop_assert!(full, "refused with room in both windows");
                        }
                    }
                }
            }
            // Nothing leaks: each token window's count is exactly its
            // admissions, its held permits and its stranded permits, by bucket.
            let first = (now / config.bucket_ms()).saturating_sub(u64::from(config.buckets()));
            for token in 0..2 {
                let held: u32 = (0..instances)
                    .filter(|&i| records[i][token] >= first)
                    .map(|i| leases[i][token].held())
                    .sum();
                let in_window = |counts: &BTreeMap<u64, u32>| counts.range(first..).map(|(_, n)| n).sum::<u32>();
                prop_assert_eq!(
                    twin.counted(KEYS[token], now, &config),
                    in_window(&admitted[token]) + held + in_window(&stranded[token]),
                    "token {} window count", token
                );
            }
        }
    }
}

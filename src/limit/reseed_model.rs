//! Re-seeding against an exact log: several simulated instances lease from
//! one shared window ([`Twin`]) that is lost at any point, wholly (a restart
//! without persistence, a `FLUSHALL`) or partly (a failover to a replica
//! that lost the last writes), while instances crash and restart empty.
//! The generation check and the re-seed follow `generation.lua` and
//! `reseed.lua`; each instance's record is [`Contributions`], as in
//! `redis_reseed.rs`.

use std::collections::{HashMap, HashSet, VecDeque};

use proptest::prelude::*;

use super::lease::{Ask, Lease, Limits};
use super::lease_model::Twin;
use super::reseed::Contributions;
use super::window::{Decision, HOUR_MS, WindowConfig};

/// How long a new generation grants nothing (`RedisRateLimiter::with_reseed_wait`).
const SETTLE_MS: u64 = 1_000;
/// How often an instance with a record checks the generation.
const CHECK_MS: u64 = 100;

const KEYS: [&str; 2] = ["token-0", "token-1"];
const ACCOUNT: &str = "account";

/// The generation key: id, replication id it was opened under, settled at.
#[derive(Debug, Clone, Copy)]
struct Generation {
    id: u64,
    replid: u64,
    until: u64,
}

/// The model's Redis: the generation key, the windows, the re-seed markers
/// and, per generation, key and bucket, what the bucket kept through the
/// loss and the sum of the re-seeds.
#[derive(Debug, Clone, Default)]
struct Redis {
    generation: Option<Generation>,
    /// Changes on a restart and on a failover.
    replid: u64,
    windows: Twin,
    markers: HashSet<(u64, u64)>,
    seeds: HashMap<(u64, &'static str, u64), (u32, u32)>,
}

/// Why a script did not run in the caller's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stale {
    Reseed(u64),
    Settling(u64),
}

impl Redis {
    /// `generation()` of `generation.lua`.
    fn generation(&mut self, now: u64, known: Option<u64>, candidate: u64) -> Result<u64, Stale> {
        let current = match self.generation {
            Some(g) if g.replid == self.replid => g,
            _ => {
                let opened = Generation {
                    id: candidate,
                    replid: self.replid,
                    until: now + SETTLE_MS,
                };
                self.generation = Some(opened);
                opened
            }
        };
        if known.is_some_and(|k| k != current.id) {
            return Err(Stale::Reseed(current.id));
        }
        if now < current.until {
            return Err(Stale::Settling(current.id));
        }
        Ok(current.id)
    }
}

/// One simulated instance (one incarnation of it: a crash starts a new one).
#[derive(Debug, Default)]
struct Instance {
    incarnation: u64,
    leases: [Lease; 2],
    known: Option<u64>,
    record: Contributions<&'static str>,
    last_check: u64,
}

impl Instance {
    /// The windows a request of `token` counts in.
    fn keys(token: usize, account: bool) -> Vec<&'static str> {
        let mut keys = vec![KEYS[token]];
        if account {
            keys.push(ACCOUNT);
        }
        keys
    }

    /// `Reseeder::reseed`: the record into generation `id`, once, merged
    /// as `reseed.lua` does: max(what the bucket kept, the re-seeds' sum).
    fn reseed(&mut self, redis: &mut Redis, id: u64, now: u64, config: &WindowConfig) {
        let first = (now / config.bucket_ms()).saturating_sub(u64::from(config.buckets()));
        if redis.markers.insert((id, self.incarnation)) {
            for (key, seeds) in self.record.seeds(first) {
                for (bucket, n) in seeds {
                    let kept = redis.windows.get(key, bucket);
                    let (kept, sum) = redis.seeds.entry((id, key, bucket)).or_insert((kept, 0));
                    let add = (*kept).max(*sum + n) - (*kept).max(*sum);
                    *sum += n;
                    redis.windows.add(key, bucket, add);
                }
            }
        }
        self.known = Some(id);
    }

    /// The generation watch, when due.
    fn check(&mut self, redis: &mut Redis, now: u64, next_id: &mut u64, config: &WindowConfig) {
        let first = (now / config.bucket_ms()).saturating_sub(u64::from(config.buckets()));
        self.record.forget_before(first);
        if self.record.is_empty() || now < self.last_check + CHECK_MS {
            return;
        }
        self.last_check = now;
        *next_id += 1;
        match redis.generation(now, self.known, *next_id) {
            Ok(id) | Err(Stale::Settling(id)) => {
                self.known.get_or_insert(id);
            }
            Err(Stale::Reseed(id)) => self.reseed(redis, id, now, config),
        }
    }

    /// One request: from the lease, or a lease call in the current
    /// generation (re-seeding first if needed). `None`: unavailable (503).
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        redis: &mut Redis,
        token: usize,
        limits: Limits,
        max: u32,
        ttl_ms: u64,
        now: u64,
        next_id: &mut u64,
        config: &WindowConfig,
    ) -> Option<Decision> {
        if let Some(decision) = self.leases[token].take(now, limits) {
            return Some(decision);
        }
        let ask = self.leases[token].ask(limits, max);
        for _ in 0..2 {
            *next_id += 1;
            match redis.generation(now, self.known, *next_id) {
                Ok(id) => {
                    self.known.get_or_insert(id);
                    let keys = Self::keys(token, limits.1.is_some());
                    let mut windows = vec![(keys[0], limits.0)];
                    if let Some(ceiling) = limits.1 {
                        windows.push((keys[1], ceiling));
                    }
                    let grant = redis.windows.lease(&windows, ask, ttl_ms, now, config);
                    for key in &keys {
                        if let Some((bucket, n)) = ask.give_back {
                            self.record.remove(key, bucket, n);
                        }
                        self.record.add(key, grant.record, grant.permits);
                    }
                    return Some(self.leases[token].granted(now, ttl_ms, grant, limits));
                }
                Err(Stale::Reseed(id)) => self.reseed(redis, id, now, config),
                Err(Stale::Settling(id)) => {
                    self.known.get_or_insert(id);
                    return None;
                }
            }
        }
        None
    }
}

/// One admission in the exact log.
struct Admitted {
    at: u64,
    token: usize,
    incarnation: u64,
    /// Its counts were lost with Redis while its instance was down: no live
    /// instance could add them back.
    forgotten: bool,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Request,
    Sweep,
    Crash,
    /// Redis restarts empty (or is flushed).
    Reset,
    /// Failover to a replica that lacks the last `k` writes.
    PartialLoss(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        40 => Just(Step::Request),
        1 => Just(Step::Sweep),
        1 => Just(Step::Crash),
        1 => Just(Step::Reset),
        1 => (1usize..8).prop_map(Step::PartialLoss),
    ]
}

fn pause() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..20,
        3 => 0u64..3_000,
        1 => 0u64..600_000,
    ]
}

/// The simulation's whole state.
struct World {
    redis: Redis,
    /// Redis as it was after each of the last writes (for partial losses).
    history: VecDeque<Redis>,
    instances: Vec<Instance>,
    log: Vec<Admitted>,
    next_id: u64,
    next_incarnation: u64,
}

impl World {
    fn new(instances: usize) -> Self {
        // A deployment whose generation has settled long ago.
        let settled = Generation {
            id: 0,
            replid: 0,
            until: 0,
        };
        let mut world = Self {
            redis: Redis {
                generation: Some(settled),
                ..Redis::default()
            },
            history: VecDeque::new(),
            instances: (0..instances).map(|_| Instance::default()).collect(),
            log: Vec::new(),
            next_id: 0,
            next_incarnation: 0,
        };
        for i in 0..instances {
            world.instances[i].incarnation = world.incarnation();
        }
        world
    }

    fn incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    fn remember(&mut self) {
        self.history.push_back(self.redis.clone());
        if self.history.len() > 8 {
            self.history.pop_front();
        }
    }

    /// Redis lost its windows (some or all): what only dead incarnations
    /// counted can no longer be added back.
    fn lost(&mut self, redis: Redis) {
        self.redis = redis;
        self.redis.replid = self.next_id + 1_000_000;
        self.next_id += 1;
        self.history.clear();
        let live: HashSet<u64> = self.instances.iter().map(|i| i.incarnation).collect();
        for admitted in &mut self.log {
            if !live.contains(&admitted.incarnation) {
                admitted.forgotten = true;
            }
        }
    }

    /// A crash: the incarnation's counts survive only in Redis, and only if
    /// it re-seeded the current generation.
    fn crash(&mut self, instance: usize) {
        let dead = self.instances[instance].incarnation;
        let current = self
            .redis
            .generation
            .filter(|g| g.replid == self.redis.replid)
            .map(|g| g.id);
        let seeded = current.is_some() && self.instances[instance].known == current;
        if !seeded {
            for admitted in &mut self.log {
                if admitted.incarnation == dead {
                    admitted.forgotten = true;
                }
            }
        }
        self.instances[instance] = Instance {
            incarnation: self.incarnation(),
            ..Instance::default()
        };
    }

    /// Admissions remembered by some live instance, in the hour up to `now`.
    fn in_last_hour(&self, now: u64, token: Option<usize>) -> u32 {
        self.log
            .iter()
            .filter(|a| a.at + HOUR_MS > now && !a.forgotten)
            .filter(|a| token.is_none_or(|t| a.token == t))
            .count()
            .try_into()
            .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Instances admitting from leases of one shared window that Redis
    /// loses at any point, wholly or partly, while instances crash: no
    /// rolling hour holds more than a token's limit or the account's
    /// ceiling, counting every admission that a live instance remembered
    /// when the window was lost. (An instance that crashed and a Redis
    /// that then lost the window forget that instance's admissions: the
    /// documented limit of re-seeding.)
    #[test]
    fn reseeded_windows_never_over_admit(
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
        let mut world = World::new(instances);
        let mut now = start;
        for (instance, token, step, pause) in steps {
            now += pause;
            let instance = instance % instances;
            let World { redis, instances: all, next_id, .. } = &mut world;
            for each in all.iter_mut() {
                each.check(redis, now, next_id, &config);
            }
            match step {
                Step::Crash => world.crash(instance),
                Step::Reset => world.lost(Redis::default()),
                Step::PartialLoss(k) => {
                    let kept = world.history.len().checked_sub(k).and_then(|i| world.history.get(i));
                    let kept = kept.cloned().unwrap_or_default();
                    world.lost(kept);
                }
                Step::Sweep => {
                    let World { redis, instances: all, .. } = &mut world;
                    let each = &mut all[instance];
                    for (token, lease) in each.leases.iter_mut().enumerate() {
                        let (Some(back), Some(known)) = (lease.take_expired(now), each.known) else {
                            continue;
                        };
                        // A give-back in another generation is not applied.
                        let current = redis.generation.filter(|g| g.replid == redis.replid);
                        if current.is_some_and(|g| g.id == known) {
                            let keys = Instance::keys(token, account_limit.is_some());
                            let mut windows = vec![(keys[0], token_limit)];
                            if let Some(ceiling) = account_limit {
                                windows.push((keys[1], ceiling));
                            }
                            let ask = Ask { permits: 0, give_back: Some(back) };
                            redis.windows.lease(&windows, ask, ttl_ms, now, &config);
                            for key in keys {
                                each.record.remove(&key, back.0, back.1);
                            }
                        }
                    }
                    world.remember();
                }
                Step::Request => {
                    let World { redis, instances: all, next_id, .. } = &mut world;
                    let each = &mut all[instance];
                    let decision = each.request(redis, token, limits, max, ttl_ms, now, next_id, &config);
                    let incarnation = each.incarnation;
                    world.remember();
                    if decision.is_some_and(|d| d.allowed) {
                        world.log.push(Admitted { at: now, token, incarnation, forgotten: false });
                        let counted = world.in_last_hour(now, Some(token));
                        prop_assert!(counted <= token_limit,
                            "token {token}: {counted} admitted in an hour, limit {token_limit}");
                        if let Some(ceiling) = account_limit {
                            let counted = world.in_last_hour(now, None);
                            prop_assert!(counted <= ceiling,
                                "account: {counted} admitted in an hour, ceiling {ceiling}");
                        }
                    }
                }
            }
        }
    }
}

/// The staged outage of issue 31, in the model: two instances, 100/hour,
/// 60 admitted, Redis restarts empty, then 100 tries: 40 admitted, not 100.
#[test]
fn the_staged_outage_admits_the_limit_and_no_more() {
    let config = WindowConfig::default();
    let limits = (100, None);
    let mut world = World::new(2);
    let mut now = 5 * HOUR_MS;
    let mut admitted = 0;
    let tries = |world: &mut World, now: &mut u64, n: usize| {
        let mut allowed = 0;
        for i in 0..n {
            *now += 7;
            let World {
                redis,
                instances,
                next_id,
                ..
            } = world;
            for each in instances.iter_mut() {
                each.check(redis, *now, next_id, &config);
            }
            let decision =
                instances[i % 2].request(redis, 0, limits, 50, 2_000, *now, next_id, &config);
            if decision.is_some_and(|d| d.allowed) {
                allowed += 1;
            }
        }
        allowed
    };
    admitted += tries(&mut world, &mut now, 60);
    assert_eq!(admitted, 60);
    world.lost(Redis::default());
    now += 500;
    // Some refused while the new generation settles, then the rest of the
    // limit and no more: tries well past the settle time.
    admitted += tries(&mut world, &mut now, 400);
    assert_eq!(admitted, 100, "the hour's limit across the restart");
    // Without the re-seed, the fresh window would have granted 100 more.
    let mut blind = World::new(2);
    let mut now = 5 * HOUR_MS;
    tries(&mut blind, &mut now, 60);
    blind.lost(Redis::default());
    for instance in &mut blind.instances {
        instance.record = Contributions::default();
        instance.known = None;
    }
    assert!(tries(&mut blind, &mut now, 400) > 40, "the model can fail");
}

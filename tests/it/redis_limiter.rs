//! The Redis sliding window: same semantics as the in-memory one, shared
//! between limiter instances, atomic, and failing in a controlled way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU32, Ordering};

use tokengate::{ConfigError, RedisRateLimiter, TokenId};
use tokengate_testkit::redis_server::RedisServer;

fn redis_limiter(url: &str, prefix: &str) -> Result<RedisRateLimiter, ConfigError> {
    Ok(RedisRateLimiter::new(url)?.with_key_prefix(prefix))
}

fn unique_prefix() -> String {
    format!("tgtest-{}", TokenId::random())
}

#[tokio::test]
async fn admits_exactly_the_limit_with_consistent_numbers() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let limiter = redis_limiter(&url, &unique_prefix()).unwrap();
    let token = TokenId::random();
    let mut resets = Vec::new();
    for expected in (0..5).rev() {
        let d = limiter.check(&token, 5, None).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, expected);
        assert_eq!(d.limit, 5);
        assert_eq!(d.window_secs, 3600);
        // Within the hour of the bucket the permit is counted in: a leased
        // permit counts in the bucket of its lease's end (+ ttl, 2 s), so
        // up to one bucket (60 s) and the ttl later than now.
        assert!(
            d.reset_at_ms > d.now_ms + 3_540_000 && d.reset_at_ms <= d.now_ms + 3_662_000,
            "reset {} now {} (+{} ms)",
            d.reset_at_ms,
            d.now_ms,
            i64::try_from(d.reset_at_ms).unwrap() - i64::try_from(d.now_ms).unwrap()
        );
        resets.push(d.reset_at_ms);
    }
    let rejected = limiter.check(&token, 5, None).await.unwrap();
    assert!(!rejected.allowed);
    assert_eq!(rejected.remaining, 0);
    assert_eq!(
        rejected.reset_at_ms, resets[0],
        "reset is when the oldest bucket leaves"
    );
    assert!(rejected.retry_after_secs() >= 1);
    // Rejections do not count; another token is independent.
    assert_eq!(
        limiter.check(&token, 5, None).await.unwrap().reset_at_ms,
        resets[0]
    );
    assert!(
        limiter
            .check(&TokenId::random(), 5, None)
            .await
            .unwrap()
            .allowed
    );
    // A higher limit (plan upgrade) applies at once.
    let upgraded = limiter.check(&token, 7, None).await.unwrap();
    assert!(upgraded.allowed);
    assert_eq!(upgraded.remaining, 1);
    // Small limits lease one permit at a time (1/16 of the room, at least
    // one): one round trip per admission, and none for the repeated refusal,
    // which stands until the reset it announced.
    assert_eq!(limiter.round_trips(), 8);
}

#[tokio::test]
async fn keys_expire_on_their_own() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let limiter = redis_limiter(&url, &prefix).unwrap();
    let token = TokenId::random();
    limiter.check(&token, 10, None).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:rl:{token}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    // Until the newest bucket leaves: a window and a bucket after the
    // lease's end (2 s), at most.
    assert!(ttl > 3_600_000 && ttl <= 3_662_000, "ttl {ttl}");
}

/// Sends from `tasks` concurrent tasks per limiter until each is refused;
/// returns the admissions per limiter.
async fn until_refused(
    limiters: &[Arc<RedisRateLimiter>],
    token: TokenId,
    limit: u32,
    tasks: usize,
) -> Vec<u32> {
    let runs: Vec<_> = limiters
        .iter()
        .map(|limiter| {
            let workers: Vec<_> = (0..tasks)
                .map(|_| {
                    let limiter = Arc::clone(limiter);
                    tokio::spawn(async move {
                        let mut admitted = 0u32;
                        while limiter.check(&token, limit, None).await.unwrap().allowed {
                            admitted += 1;
                        }
                        admitted
                    })
                })
                .collect();
            async move {
                let mut total = 0;
                for worker in workers {
                    total += worker.await.unwrap();
                }
                total
            }
        })
        .collect();
    futures_util::future::join_all(runs).await
}

/// Two instances on one Redis, each with 16 concurrent clients sending until
/// refused: exactly the limit is admitted (each instance uses up its lease
/// before it is refused, so no permit is left stranded), never one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_leasing_instances_admit_exactly_the_limit_under_concurrent_load() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let instances = [
        Arc::new(redis_limiter(&url, &prefix).unwrap()),
        Arc::new(redis_limiter(&url, &prefix).unwrap()),
    ];
    let token = TokenId::random();
    let admitted = until_refused(&instances, token, 1000, 16).await;
    let trips: u64 = instances.iter().map(|i| i.round_trips()).sum();
    eprintln!("admitted {admitted:?}, {trips} round trips for the whole window");
    assert_eq!(admitted.iter().sum::<u32>(), 1000, "{admitted:?}");
    assert!(admitted.iter().all(|&n| n > 0), "both instances admitted");
    // Draining a whole window costs far fewer round trips than requests,
    // even though the leases shrink to one permit near the limit.
    assert!(trips < 250, "{trips} round trips for 1,000 admissions");
}

/// Steady traffic well under the limit: one round trip per 50 admissions
/// once the leases have grown, on each instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steady_traffic_costs_one_round_trip_per_fifty_requests() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let instances = [
        redis_limiter(&url, &prefix).unwrap(),
        redis_limiter(&url, &prefix).unwrap(),
    ];
    let token = TokenId::random();
    let mut last_seen = [u32::MAX; 2];
    for i in 0..4000 {
        let which = i % 2;
        let decision = instances[which]
            .check(&token, 1_000_000, None)
            .await
            .unwrap();
        assert!(decision.allowed);
        // Each instance's Remaining only goes down.
        assert!(
            decision.remaining < last_seen[which],
            "instance {which}: {} after {}",
            decision.remaining,
            last_seen[which]
        );
        last_seen[which] = decision.remaining;
    }
    let trips: u64 = instances.iter().map(|i| i.round_trips()).sum();
    eprintln!("{trips} round trips for 4,000 admissions");
    // 1, 2, 4, ..., 32, then 50 at a time: about 45 per instance for 2,000.
    assert!(
        trips * 20 <= 4000,
        "{trips} round trips for 4,000 admissions"
    );
}

/// With `max_lease: 1` every admission is one round trip and no instance
/// holds a permit: the figures are the window's own, exact across instances.
#[tokio::test]
async fn a_lease_of_one_is_a_round_trip_per_request() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let a = redis_limiter(&url, &prefix).unwrap().with_max_lease(1);
    let b = redis_limiter(&url, &prefix).unwrap().with_max_lease(1);
    let token = TokenId::random();
    let seen: Vec<u32> = futures_util::future::join_all((0..100).map(|i| {
        let limiter = if i % 2 == 0 { &a } else { &b };
        async move { limiter.check(&token, 1000, None).await.unwrap().remaining }
    }))
    .await;
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (900..1000).collect::<Vec<_>>());
    assert_eq!(a.round_trips() + b.round_trips(), 100);
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_recovers() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let target = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = tokengate_testkit::proxy::Proxy::start(target.parse().unwrap()).await;
    let limiter = redis_limiter(&format!("redis://{}", proxy.addr), &unique_prefix()).unwrap();
    let token = TokenId::random();
    assert!(limiter.check(&token, 10, None).await.unwrap().allowed);
    proxy.cut();
    let started = Instant::now();
    assert!(limiter.check(&token, 10, None).await.is_err());
    assert!(limiter.check(&token, 10, None).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // While it is known down, requests do not even try: no round trip is
    // sent for them (one probe at a time retries, twice a second).
    let sent = limiter.round_trips();
    for _ in 0..20 {
        assert!(limiter.check(&token, 10, None).await.is_err());
    }
    assert_eq!(
        limiter.round_trips(),
        sent,
        "checks went to a Redis known to be down"
    );
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(decision) = limiter.check(&token, 10, None).await {
            assert!(decision.allowed);
            assert!(
                decision.remaining < 9,
                "the earlier count survived the outage"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks until `tries` answers (admitted or refused) came back, each
/// instance in turn; failures (Redis unreachable) are retried after a short
/// pause, for at most 20 s in all. Returns the admissions.
async fn answered(instances: &[RedisRateLimiter], token: TokenId, limit: u32, tries: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut answers, mut admitted) = (0, 0);
    for i in 0.. {
        if answers == tries {
            break;
        }
        assert!(Instant::now() < deadline, "{answers} answers in 20 s");
        match instances[i % instances.len()]
            .check(&token, limit, None)
            .await
        {
            Ok(decision) => {
                answers += 1;
                admitted += u32::from(decision.allowed);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    admitted
}

/// The staged outage of issue 31: two instances, 100/hour, 60 admitted,
/// Redis killed (SIGKILL) and started again empty on the same address, then
/// 100 tries. The instances add back what they counted: at most 100 in the
/// hour, not 160.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_is_reseeded_and_the_hour_stays_strict() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let prefix = unique_prefix();
    let instances = [
        redis_limiter(&server.url(), &prefix).unwrap(),
        redis_limiter(&server.url(), &prefix).unwrap(),
    ];
    let token = TokenId::random();
    let mut admitted = answered(&instances, token, 100, 60).await;
    assert_eq!(admitted, 60);
    server.kill();
    // During the outage, leases already held admit; the rest fails fast.
    for i in 0..10 {
        if let Ok(decision) = instances[i % 2].check(&token, 100, None).await {
            admitted += u32::from(decision.allowed);
        }
    }
    server.restart().await;
    admitted += answered(&instances, token, 100, 100).await;
    eprintln!("{admitted} admitted across the restart");
    assert!(
        admitted <= 100,
        "{admitted} admitted in the hour, limit 100"
    );
    // Only permits held when Redis went down may be lost (counted as used).
    assert!(
        admitted >= 90,
        "{admitted} admitted: the hour's room was lost"
    );
    for instance in &instances {
        assert_eq!(
            instance.resets_detected(),
            1,
            "each instance re-seeded once"
        );
    }
}

/// `FLUSHALL` in the middle of concurrent load on two instances: the
/// instances re-seed the flushed windows and the total stays at most the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flushall_mid_load_is_reseeded_and_the_hour_stays_strict() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let prefix = unique_prefix();
    let instances = [
        Arc::new(redis_limiter(&server.url(), &prefix).unwrap()),
        Arc::new(redis_limiter(&server.url(), &prefix).unwrap()),
    ];
    let token = TokenId::random();
    let admitted = Arc::new(AtomicU32::new(0));
    // From 50 admissions on, the workers wait for the flush: it lands mid-load
    // however the machine schedules them, with leases held.
    let (flushed, flush_seen) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let limiter = Arc::clone(&instances[i % 2]);
            let admitted = Arc::clone(&admitted);
            let mut flush_seen = flush_seen.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    assert!(Instant::now() < deadline, "never refused");
                    if admitted.load(Ordering::SeqCst) >= 50 {
                        flush_seen.wait_for(|&flushed| flushed).await.unwrap();
                    }
                    match limiter.check(&token, 100, None).await {
                        Ok(decision) if decision.allowed => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        })
        .collect();
    while admitted.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.command(&["FLUSHALL"]).await;
    let flushed_at = admitted.load(Ordering::SeqCst);
    flushed.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let total = admitted.load(Ordering::SeqCst);
    eprintln!("flushed after {flushed_at} admissions; {total} admitted in all");
    assert!(
        flushed_at < 100,
        "the flush came after the load ({flushed_at})"
    );
    assert!(total <= 100, "{total} admitted in the hour, limit 100");
    assert!(total >= 90, "{total} admitted: the hour's room was lost");
    let resets: u64 = instances.iter().map(|i| i.resets_detected()).sum();
    assert!(resets >= 1, "the flush was detected");
}

/// A failover to a replica that lagged: the replica stopped following after
/// 40 admissions (so it lacks the last 20) and is promoted; the instances
/// reach it on the same address. Its windows carry the old generation's id,
/// but under a new replication id: a new generation, re-seeded, and the
/// hour stays at most 100 (120 if the lost writes went unnoticed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_lagging_replica_is_reseeded_and_the_hour_stays_strict() {
    let (Some(mut primary), Some(replica)) =
        (RedisServer::start().await, RedisServer::start().await)
    else {
        return;
    };
    let port = primary.port().to_string();
    replica.command(&["REPLICAOF", "127.0.0.1", &port]).await;
    let address = |server: &RedisServer| format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = tokengate_testkit::proxy::Proxy::start(address(&primary)).await;
    let url = format!("redis://{}", proxy.addr);
    let prefix = unique_prefix();
    let instances = [
        redis_limiter(&url, &prefix).unwrap(),
        redis_limiter(&url, &prefix).unwrap(),
    ];
    let token = TokenId::random();
    let mut admitted = answered(&instances, token, 100, 40).await;
    // The replica has every write so far, then stops following.
    let synced = primary.command(&["WAIT", "1", "5000"]).await;
    assert_eq!(synced, redis::Value::Int(1), "the replica caught up");
    replica.command(&["REPLICAOF", "NO", "ONE"]).await;
    admitted += answered(&instances, token, 100, 20).await;
    assert_eq!(admitted, 60);
    // The primary dies; the proxy sends new connections to the replica.
    proxy.cut();
    primary.kill();
    proxy.retarget(address(&replica));
    proxy.restore();
    admitted += answered(&instances, token, 100, 100).await;
    eprintln!("{admitted} admitted across the failover");
    assert!(
        admitted <= 100,
        "{admitted} admitted in the hour, limit 100"
    );
    assert!(
        admitted >= 90,
        "{admitted} admitted: the hour's room was lost"
    );
    let resets: u64 = instances.iter().map(|i| i.resets_detected()).sum();
    assert_eq!(resets, 2, "each instance re-seeded once");
}

/// A restart with AOF keeps the windows, including what an instance that has
/// since crashed counted there; the new generation's re-seeds merge with
/// what was kept instead of replacing it: 30 by the crashed instance, 30 by
/// the live ones, then at most 40 more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_aof_keeps_what_a_crashed_instance_counted() {
    let Some(mut server) = RedisServer::start_persistent().await else {
        return;
    };
    let prefix = unique_prefix();
    let token = TokenId::random();
    let crashed = [redis_limiter(&server.url(), &prefix).unwrap()];
    let mut admitted = answered(&crashed, token, 100, 30).await;
    drop(crashed);
    let instances = [
        redis_limiter(&server.url(), &prefix).unwrap(),
        redis_limiter(&server.url(), &prefix).unwrap(),
    ];
    admitted += answered(&instances, token, 100, 30).await;
    assert_eq!(admitted, 60);
    server.kill();
    server.restart().await;
    admitted += answered(&instances, token, 100, 100).await;
    eprintln!("{admitted} admitted across the restart with AOF");
    assert!(
        admitted <= 100,
        "{admitted} admitted in the hour, limit 100"
    );
    assert!(
        admitted >= 90,
        "{admitted} admitted: the hour's room was lost"
    );
    let resets: u64 = instances.iter().map(|i| i.resets_detected()).sum();
    assert_eq!(resets, 2, "a restart is a new generation, even with AOF");
}

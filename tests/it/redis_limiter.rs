//! The Redis sliding window: same semantics as the in-memory one, shared
//! between limiter instances, atomic, and failing in a controlled way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokengate::{RedisLimiterConfig, RedisRateLimiter, TokenId};

fn config(prefix: &str) -> RedisLimiterConfig {
    RedisLimiterConfig {
        key_prefix: prefix.to_owned(),
        ..Default::default()
    }
}

fn unique_prefix() -> String {
    format!("tgtest-{}", TokenId::random())
}

#[tokio::test]
async fn admits_exactly_the_limit_with_consistent_numbers() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(&url, config(&unique_prefix())).unwrap();
    let token = TokenId::random();
    let mut resets = Vec::new();
    for expected in (0..5).rev() {
        let d = limiter.check(&token, 5, None).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, expected);
        assert_eq!(d.limit, 5);
        assert_eq!(d.window_secs, 3600);
        assert!(d.reset_at_ms > d.now_ms + 3_540_000 && d.reset_at_ms <= d.now_ms + 3_660_000);
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
    assert_eq!(limiter.round_trips(), 9, "one round trip per check");
}

#[tokio::test]
async fn keys_expire_on_their_own() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let limiter = RedisRateLimiter::new(&url, config(&prefix)).unwrap();
    let token = TokenId::random();
    limiter.check(&token, 10, None).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:rl:{token}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(ttl > 3_600_000 && ttl <= 3_660_000, "ttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_share_one_window_atomically() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let a = Arc::new(RedisRateLimiter::new(&url, config(&prefix)).unwrap());
    let b = Arc::new(RedisRateLimiter::new(&url, config(&prefix)).unwrap());
    let token = TokenId::random();
    // 1,500 simultaneous checks over two "instances" against a limit of 1,000.
    let checks: Vec<_> = (0..1500)
        .map(|i| {
            let limiter = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tokio::spawn(async move { limiter.check(&token, 1000, None).await.unwrap().allowed })
        })
        .collect();
    let mut admitted = 0;
    for check in checks {
        admitted += usize::from(check.await.unwrap());
    }
    assert_eq!(admitted, 1000);
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
    let limiter =
        RedisRateLimiter::new(&format!("redis://{}", proxy.addr), config(&unique_prefix()))
            .unwrap();
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

//! Two real server processes on one PostgreSQL and one Redis behave as one:
//! tokens, limits and revocations are shared; backend outages degrade as documented.
#![cfg(all(feature = "postgres", feature = "redis"))]

use std::time::{Duration, Instant};

use crate::process::{Server, admin_header, base_env, client};
use crate::support::{UNAUTHORIZED, UNAVAILABLE};
use serde_json::{Value, json};
use tokengate_testkit::proxy::Proxy;

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    rest.split('/').next().unwrap().to_owned()
}

fn with_host(url: &str, host: &str) -> String {
    url.replacen(&host_port(url), host, 1)
}

fn env_for(
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<_> = base_env(std::path::Path::new("/tmp"))
        .into_iter()
        .filter(|(k, _)| k != "DATABASE_URL")
        .collect();
    env.push(("DATABASE_URL".into(), database_url.into()));
    env.push(("REDIS_URL".into(), redis_url.into()));
    env.push(("REDIS_KEY_PREFIX".into(), prefix.into()));
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    env
}

async fn admin(server: &Server, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = client()
        .request(method, server.url(path))
        .header("authorization", admin_header())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn new_token(server: &Server, account: &str) -> String {
    admin(
        server,
        reqwest::Method::POST,
        &format!("/admin/accounts/{account}/tokens"),
        json!({"name": "scale-out"}),
    )
    .await["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn call(server: &Server, token: &str) -> reqwest::Response {
    client()
        .get(server.url("/api/v1/external_tests"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_tokens_limits_and_revocations() {
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let Some(redis) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let postgres = Proxy::start(host_port(&database.url).parse().unwrap()).await;
    let redis_proxy = Proxy::start(host_port(&redis).parse().unwrap()).await;
    let database_url = with_host(&database.url, &postgres.addr.to_string());
    let redis_url = format!("redis://{}", redis_proxy.addr);
    let prefix = format!("tgtest-{}", tokengate::TokenId::random());
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(
        dir.path(),
        &env_for(&database_url, &redis_url, &prefix, &[]),
    );
    let b = Server::start(
        dir.path(),
        &env_for(&database_url, &redis_url, &prefix, &[]),
    );
    // A third instance that falls back to its own limiter when Redis is down.
    let c = Server::start(
        dir.path(),
        &env_for(
            &database_url,
            &redis_url,
            &prefix,
            &[("RATE_LIMIT_FAILURE_POLICY", "local")],
        ),
    );
    // Each says at start where its limits are counted.
    for (server, policy) in [(&a, "closed"), (&c, "local")] {
        let log = server.log_text();
        assert!(
            log.contains(&format!("rate limits counted in Redis at {redis_url}"))
                && log.contains(&format!("RATE_LIMIT_FAILURE_POLICY={policy}")),
            "{log}"
        );
    }

    admin(
        &a,
        reqwest::Method::PUT,
        "/admin/plans/hundred",
        json!({"api_access": true, "requests_per_hour": 100}),
    )
    .await;
    admin(
        &a,
        reqwest::Method::PUT,
        "/admin/accounts/acct_1",
        json!({"plan": "hundred"}),
    )
    .await;

    // A token made on A works on B at once (B learns of it from the feed).
    let shared = new_token(&a, "acct_1").await;
    assert_eq!(call(&b, &shared).await.status(), 200);

    // 150 requests alternated over A and B on a 100/hour plan: exactly 100
    // pass, and each instance's X-RateLimit-Remaining only goes down (the
    // instances lease permits from Redis, so their figures differ by what
    // the other holds).
    let counted = new_token(&a, "acct_1").await;
    let mut ok = 0;
    let mut remaining_seen = [Vec::new(), Vec::new()];
    for i in 0..150 {
        let server = if i % 2 == 0 { &a } else { &b };
        let response = call(server, &counted).await;
        match response.status().as_u16() {
            200 => {
                ok += 1;
                remaining_seen[i % 2].push(
                    response.headers()["x-ratelimit-remaining"]
                        .to_str()
                        .unwrap()
                        .parse::<u32>()
                        .unwrap(),
                );
            }
            429 => assert!(response.headers().contains_key("retry-after")),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 100);
    for seen in &remaining_seen {
        assert!(seen.windows(2).all(|w| w[1] < w[0]), "{seen:?}");
        assert!(seen.iter().all(|&r| r < 100), "{seen:?}");
    }
    let last = remaining_seen.iter().filter_map(|seen| seen.last()).min();
    assert_eq!(last, Some(&0), "{remaining_seen:?}");

    // A revocation on A reaches B within a second.
    let revoked = new_token(&a, "acct_1").await;
    assert_eq!(call(&b, &revoked).await.status(), 200);
    let id = &revoked[4..24];
    let started = Instant::now();
    admin(
        &a,
        reqwest::Method::DELETE,
        &format!("/admin/tokens/{id}"),
        json!({}),
    )
    .await;
    loop {
        let response = call(&b, &revoked).await;
        if response.status() == 401 {
            assert_eq!(response.text().await.unwrap(), UNAUTHORIZED);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still accepts a token revoked on A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("revocation on A seen by B after {:?}", started.elapsed());

    // PostgreSQL down: uncached tokens 503 (never 401), cached ones keep working.
    let cached = new_token(&a, "acct_1").await;
    let uncached = new_token(&a, "acct_1").await;
    assert_eq!(call(&b, &cached).await.status(), 200);
    postgres.cut();
    let response = call(&b, &uncached).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), UNAVAILABLE);
    assert_eq!(call(&b, &cached).await.status(), 200);
    postgres.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&b, &uncached).await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "never recovered from the database outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Redis down: fail closed by default (503), or fall back to the local limiter.
    let fresh = new_token(&a, "acct_1").await;
    assert_eq!(call(&a, &fresh).await.status(), 200);
    assert_eq!(call(&c, &fresh).await.status(), 200);
    redis_proxy.cut();
    let response = call(&a, &fresh).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), UNAVAILABLE);
    assert_eq!(call(&c, &fresh).await.status(), 200, "local fallback");
    let metrics = client()
        .get(c.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tokengate_ratelimit_fallbacks_total 1"),
        "{metrics}"
    );
    redis_proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&a, &fresh).await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "never recovered from the Redis outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for server in [&a, &b, &c] {
        assert!(!server.log_text().contains("panicked"));
    }
    assert!(a.log_text().contains("Redis rate limiter unreachable"));
}

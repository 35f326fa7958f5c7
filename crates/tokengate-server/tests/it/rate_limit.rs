//! The hourly limit through the whole server app: headers, 429, atomicity.

use std::collections::HashSet;
use tokengate::Manager;

use crate::support::TestApp;
use http::Method;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn pro_allows_1000_then_429_with_consistent_headers() {
    let app = TestApp::new().await;
    let token = app.token_for("acct_1", "pro").await;
    let mut resets = HashSet::new();
    for expected_remaining in (0..1000u64).rev() {
        let response = app.api(&token).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.header("x-ratelimit-limit"), "1000");
        assert_eq!(
            response.header_u64("x-ratelimit-remaining"),
            expected_remaining
        );
        let ietf = response.header("ratelimit");
        let prefix = format!("\"hourly\";r={expected_remaining};t=");
        assert!(ietf.starts_with(&prefix), "{ietf}");
        let t: u64 = ietf[prefix.len()..].parse().unwrap();
        let until_reset = response
            .header_u64("x-ratelimit-reset")
            .saturating_sub(unix_now());
        assert!(t.abs_diff(until_reset) <= 1, "{ietf} vs {until_reset}");
        assert_eq!(
            response.header("ratelimit-policy"),
            "\"hourly\";q=1000;w=3600"
        );
        resets.insert(response.header_u64("x-ratelimit-reset"));
    }
    let now = unix_now();
    // All 1000 landed in one or two one-minute buckets; the reset is when the first leaves.
    assert!(resets.len() <= 2, "{resets:?}");
    let reset = *resets.iter().min().unwrap();
    assert!(
        reset > now + 3500 && reset <= now + 3661,
        "reset {reset} now {now}"
    );

    let limited = app.api(&token).await;
    assert_eq!(limited.status, 429);
    let retry_after = limited.header_u64("retry-after");
    assert_eq!(
        limited.body,
        format!(
            r#"{{"success": false, "error": "Rate limit exceeded. Try again in {retry_after} seconds."}}"#
        )
    );
    assert_eq!(limited.header("x-ratelimit-limit"), "1000");
    assert_eq!(limited.header("x-ratelimit-remaining"), "0");
    let reset = limited.header_u64("x-ratelimit-reset");
    assert!(retry_after.abs_diff(reset.saturating_sub(now)) <= 1);
    assert_eq!(limited.header("content-type"), "application/json");

    // Rejected requests do not count: the wait does not grow.
    for _ in 0..20 {
        let again = app.api(&token).await;
        assert_eq!(again.status, 429);
        assert_eq!(again.header_u64("x-ratelimit-reset"), reset);
    }
}

#[tokio::test]
async fn enterprise_limit_is_10000_and_plan_edits_apply_to_the_next_request() {
    let app = TestApp::new().await;
    let token = app.token_for("acct_big", "enterprise").await;
    let response = app.api(&token).await;
    assert_eq!(response.header("x-ratelimit-limit"), "10000");
    assert_eq!(response.header("x-ratelimit-remaining"), "9999");
    let response = app
        .admin(
            Method::PUT,
            "/admin/plans/enterprise",
            Some(r#"{"api_access": true, "requests_per_hour": 2}"#),
        )
        .await;
    assert_eq!(response.status, 200);
    let response = app.api(&token).await;
    assert_eq!(response.header("x-ratelimit-limit"), "2");
    assert_eq!(response.header("x-ratelimit-remaining"), "0");
    assert_eq!(app.api(&token).await.status, 429);
}

#[tokio::test]
async fn tokens_of_one_account_have_separate_windows() {
    let app = TestApp::new().await;
    Manager::new(&app.gate)
        .set_plan(&tokengate::Plan::new("tiny", true, 1))
        .await
        .unwrap();
    let a = app.token_for("acct_1", "tiny").await;
    let b = Manager::new(&app.gate)
        .create_token("acct_1", "second", None)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned();
    assert_eq!(app.api(&a).await.status, 200);
    assert_eq!(app.api(&a).await.status, 429);
    assert_eq!(app.api(&b).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_requests_admit_exactly_the_remaining_capacity() {
    let app = TestApp::new().await;
    let token = app.token_for("acct_1", "pro").await;
    assert_eq!(app.api(&token).await.status, 200); // cache it; 999 remain
    let tasks: Vec<_> = (0..1500)
        .map(|_| {
            let router = app.router.clone();
            let value = format!("Bearer {token}");
            tokio::spawn(async move {
                let request = http::Request::builder()
                    .uri("/api/v1/external_tests/providers")
                    .header("authorization", value)
                    .body(axum::body::Body::empty())
                    .unwrap();
                crate::support::send(&router, request).await.status.as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 999);
    assert_eq!(limited, 501);
}

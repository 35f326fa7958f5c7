//! `GET /metrics`: Prometheus/OpenMetrics text that counts what the gate did.

use std::collections::BTreeMap;
use tokengate::Manager;

use crate::support::TestApp;
use http::Method;

/// The samples of an OpenMetrics text exposition, `name{labels}` -> value,
/// after checking its structure: `# HELP`/`# TYPE`/`# UNIT` comments,
/// `name{labels} value` samples, and the final `# EOF`.
fn parse_samples(text: &str) -> BTreeMap<String, f64> {
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("no final # EOF:\n{text}"));
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name: {line}"
        );
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate sample: {line}"
        );
    }
    samples
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:#?}"))
}

async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    let response = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let content_type = response.header("content-type");
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    parse_samples(&response.body)
}

fn outcome(samples: &BTreeMap<String, f64>, outcome: &str) -> f64 {
    sample(
        samples,
        &format!("tokengate_requests_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test]
async fn metrics_are_openmetrics_text_and_count_every_outcome() {
    let app = TestApp::new().await;
    let before = scrape(&app).await;
    for name in [
        "ok",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "unavailable",
    ] {
        assert_eq!(outcome(&before, name), 0.0, "{name} before any request");
    }

    // ok, then unauthorized (no token, and a wrong one).
    let pro = app.token_for("acct_pro", "pro").await;
    assert_eq!(app.api(&pro).await.status, 200);
    let missing = app
        .call(Method::GET, "/api/v1/external_tests", None, None)
        .await;
    assert_eq!(missing.status, 401);
    let mut wrong = pro.clone().into_bytes();
    wrong[40] = if wrong[40] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        app.api(std::str::from_utf8(&wrong).unwrap()).await.status,
        401
    );

    // forbidden: a plan without API access.
    let free = app.token_for("acct_free", "free").await;
    assert_eq!(app.api(&free).await.status, 403);

    // rate limited: a plan of one request per hour.
    Manager::new(&app.gate)
        .set_plan(&tokengate::Plan::new("tiny", true, 1))
        .await
        .unwrap();
    let tiny = app.token_for("acct_tiny", "tiny").await;
    assert_eq!(app.api(&tiny).await.status, 200);
    assert_eq!(app.api(&tiny).await.status, 429);

    // unavailable: a token that is not cached yet, while the database is down.
    let uncached = app.token_for("acct_other", "pro").await;
    app.store.fail(true);
    assert_eq!(app.api(&uncached).await.status, 503);
    app.store.fail(false);

    let after = scrape(&app).await;
    assert_eq!(outcome(&after, "ok"), 2.0);
    assert_eq!(outcome(&after, "unauthorized"), 2.0);
    assert_eq!(outcome(&after, "forbidden"), 1.0);
    assert_eq!(outcome(&after, "rate_limited"), 1.0);
    assert_eq!(outcome(&after, "unavailable"), 1.0);

    // The second `tiny` request was a cache hit; pro, free and tiny were verified with argon2.
    assert!(sample(&after, "tokengate_cache_hits_total") >= 1.0);
    assert!(sample(&after, "tokengate_cache_misses_total") >= 3.0);
    assert!(sample(&after, "tokengate_argon2_verify_seconds_count") >= 3.0);
    assert_eq!(
        sample(
            &after,
            "tokengate_admin_operations_total{operation=\"create_token\"}"
        ),
        4.0
    );
}

#[tokio::test]
async fn metrics_need_no_token_and_leak_no_identifiers() {
    let app = TestApp::new().await;
    let token = app.token_for("acct_secret_name", "pro").await;
    assert_eq!(app.api(&token).await.status, 200);
    let response = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status, 200);
    assert!(!response.body.contains("acct_secret_name"));
    assert!(!response.body.contains(&token[4..24]), "no token ids");
}

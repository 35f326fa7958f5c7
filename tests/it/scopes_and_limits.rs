//! Issue 13: scopes per token, the account-wide ceiling shared by an
//! account's tokens, and the cap on live tokens.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use tokengate::{
    Argon2Params, ConfigError, ManageError, Manager, Plan, Principal, RequireScopeLayer,
    SqliteStore, TokenGate, TokenGateBuilder, TokenSpec, TokenStore, require_scope,
};
use tokengate_testkit::{TestResponse, send};

const SCOPES: [&str; 2] = ["reports:read", "reports:write"];

struct App {
    gate: TokenGate,
    router: Router,
    _dir: tempfile::TempDir,
}

async fn app_with(configure: impl FnOnce(TokenGateBuilder) -> TokenGateBuilder) -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("scopes.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let gate = configure(
        TokenGate::builder(Arc::new(store))
            .with_argon2_params(Argon2Params::insecure_fast_for_tests())
            .with_scopes(SCOPES),
    )
    .build()
    .unwrap();
    App {
        router: router(&gate),
        gate,
        _dir: dir,
    }
}

fn router(gate: &TokenGate) -> Router {
    async fn whoami(principal: Principal) -> String {
        format!(
            "{} {}",
            principal.account_id(),
            principal.scopes().join(",")
        )
    }
    // Both ways to require a scope: on the handler, and as a route layer.
    Router::new()
        .route("/reports", get(require_scope!("reports:read", whoami)))
        .route("/reports/new", get(require_scope!("reports:write", whoami)))
        .route(
            "/reports/new/routed",
            get(whoami).route_layer(RequireScopeLayer::new("reports:write")),
        )
        .route("/open", get(whoami))
        .layer(gate.layer())
}

async fn get_with(router: &Router, path: &str, token: &str) -> TestResponse {
    let request = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    send(router, request).await
}

async fn token(gate: &TokenGate, account: &str, scopes: Option<&[&str]>) -> String {
    let spec = TokenSpec::new("t").scopes(scopes.map(|s| s.to_vec()));
    Manager::new(gate)
        .create_token_with(account, spec)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

#[tokio::test]
async fn a_missing_scope_is_the_exact_403_counted_and_with_rate_limit_headers() {
    let app = app_with(|b| b).await;
    Manager::new(&app.gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    let reader = token(&app.gate, "acct", Some(&["reports:read"])).await;

    let ok = get_with(&app.router, "/reports", &reader).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body, "acct reports:read");
    assert_eq!(ok.header("x-ratelimit-remaining"), "999");

    // The same answer whether the scope is required on the handler or as a route layer.
    for (path, remaining) in [("/reports/new", "998"), ("/reports/new/routed", "997")] {
        let denied = get_with(&app.router, path, &reader).await;
        assert_eq!(denied.status, 403, "{path}");
        assert_eq!(
            denied.body,
            r#"{"success": false, "error": "Token is missing the required scope: reports:write"}"#
        );
        assert_eq!(denied.header("content-type"), "application/json");
        // It reached the limiter: counted, with the headers.
        assert_eq!(denied.header("x-ratelimit-limit"), "1000");
        assert_eq!(denied.header("x-ratelimit-remaining"), remaining);
        assert!(denied.header_u64("x-ratelimit-reset") > 0);
    }

    // Routes without a scope are open to every token of the account.
    assert_eq!(get_with(&app.router, "/open", &reader).await.status, 200);
}

#[tokio::test]
async fn tokens_have_every_scope_by_default_and_keep_their_scopes_when_rotated() {
    let app = app_with(|b| b).await;
    Manager::new(&app.gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    let everything = token(&app.gate, "acct", None).await;
    let response = get_with(&app.router, "/reports/new", &everything).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "acct *");

    let reader = Manager::new(&app.gate)
        .create_token_with("acct", TokenSpec::new("r").scopes(Some(["reports:read"])))
        .await
        .unwrap();
    assert_eq!(reader.record.scopes, ["reports:read"]);
    let (_, rotated) = Manager::new(&app.gate)
        .rotate_token(&reader.record.id, Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(rotated.record.scopes, ["reports:read"]);
    let new = rotated.token.expose_secret();
    assert_eq!(get_with(&app.router, "/reports", new).await.status, 200);
    assert_eq!(get_with(&app.router, "/reports/new", new).await.status, 403);
}

#[tokio::test]
async fn unknown_or_malformed_scopes_are_refused_by_name() {
    let app = app_with(|b| b).await;
    Manager::new(&app.gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    for (scopes, expected) in [
        (
            vec!["reports:delete"],
            "unknown scope \"reports:delete\"; known scopes: reports:read, reports:write",
        ),
        (vec!["Reports"], "scope \"Reports\" is not a valid name"),
        (vec![], "scopes must not be empty"),
    ] {
        let result = Manager::new(&app.gate)
            .create_token_with("acct", TokenSpec::new("t").scopes(Some(scopes)))
            .await;
        match result {
            Err(ManageError::Scope(message)) => {
                assert!(message.starts_with(expected), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
    let built = TokenGate::builder(Arc::new(
        SqliteStore::connect("sqlite::memory:").await.unwrap(),
    ))
    .with_scopes(["Bad Scope"])
    .build();
    assert!(matches!(built, Err(ConfigError::InvalidScope(s)) if s == "Bad Scope"));
}

/// Issue 13's scenario: token limit 10, account ceiling 15, two tokens,
/// 40 requests at once → exactly 15 admitted, neither token over 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_account_ceiling_holds_across_tokens_under_concurrency() {
    let app = app_with(|b| b).await;
    let plan = Plan::new("shared", true, 10).with_account_requests_per_hour(Some(15));
    Manager::new(&app.gate).set_plan(&plan).await.unwrap();
    Manager::new(&app.gate)
        .set_account_plan("acct", "shared")
        .await
        .unwrap();
    let tokens = [
        token(&app.gate, "acct", None).await,
        token(&app.gate, "acct", None).await,
    ];
    for token in &tokens {
        // Verified and cached first, so the race is on the limiter alone.
        assert!(app.gate.authenticate_token(token).await.is_ok());
    }
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let router = app.router.clone();
            let token = tokens[i % 2].clone();
            tokio::spawn(async move { (i % 2, get_with(&router, "/open", &token).await) })
        })
        .collect();
    let mut admitted = [0, 0];
    for request in requests {
        let (which, response) = request.await.unwrap();
        match response.status.as_u16() {
            200 => admitted[which] += 1,
            429 => {
                let retry_after = response.header_u64("retry-after");
                assert!(
                    response
                        .body
                        .contains(&format!("Try again in {retry_after} seconds."))
                );
            }
            other => panic!("{other}: {}", response.body),
        }
    }
    assert_eq!(admitted[0] + admitted[1], 15, "{admitted:?}");
    assert!(admitted.iter().all(|&n| n <= 10), "{admitted:?}");
}

#[tokio::test]
async fn the_headers_describe_the_window_with_fewer_requests_left() {
    let app = app_with(|b| b).await;
    let plan = Plan::new("shared", true, 10).with_account_requests_per_hour(Some(4));
    Manager::new(&app.gate).set_plan(&plan).await.unwrap();
    Manager::new(&app.gate)
        .set_account_plan("acct", "shared")
        .await
        .unwrap();
    let (a, b) = (
        token(&app.gate, "acct", None).await,
        token(&app.gate, "acct", None).await,
    );
    let first = get_with(&app.router, "/open", &a).await;
    assert_eq!(
        (
            first.header("x-ratelimit-limit"),
            first.header("x-ratelimit-remaining")
        ),
        ("4", "3"),
        "the account's window binds"
    );
    for _ in 0..3 {
        assert_eq!(get_with(&app.router, "/open", &b).await.status, 200);
    }
    let refused = get_with(&app.router, "/open", &a).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("x-ratelimit-limit"), "4");
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    assert_eq!(
        refused.header_u64("retry-after"),
        refused
            .header_u64("x-ratelimit-reset")
            .saturating_sub(
                u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap()
            )
            .clamp(1, 3660)
    );
    // The plan drops the ceiling: the token's own window is the one shown.
    Manager::new(&app.gate)
        .set_plan(&Plan::new("shared", true, 10))
        .await
        .unwrap();
    let freed = get_with(&app.router, "/open", &a).await;
    assert_eq!(freed.status, 200, "{}", freed.body);
    assert_eq!(
        (
            freed.header("x-ratelimit-limit"),
            freed.header("x-ratelimit-remaining")
        ),
        ("10", "8")
    );
}

#[tokio::test]
async fn the_token_cap_is_409_until_a_slot_is_freed_and_counts_tokens_in_grace() {
    let app = app_with(|b| b).await;
    Manager::new(&app.gate)
        .set_plan(&Plan::new("capped", true, 100).with_max_tokens(Some(2)))
        .await
        .unwrap();
    Manager::new(&app.gate)
        .set_account_plan("acct", "capped")
        .await
        .unwrap();
    let first = Manager::new(&app.gate)
        .create_token("acct", "one", None)
        .await
        .unwrap();
    Manager::new(&app.gate)
        .create_token("acct", "two", None)
        .await
        .unwrap();
    match Manager::new(&app.gate)
        .create_token("acct", "three", None)
        .await
    {
        Err(ManageError::TooManyTokens { plan, max }) => {
            assert_eq!((plan.as_str(), max), ("capped", 2))
        }
        other => panic!("{other:?}"),
    }
    // At the cap, a rotation with a grace period would leave three tokens
    // authenticating (the cap counts tokens in grace): refused. Without
    // grace it replaces one with one.
    assert!(matches!(
        Manager::new(&app.gate)
            .rotate_token(&first.record.id, Duration::from_secs(3600), None)
            .await,
        Err(ManageError::GraceOverTokenCap { max: 2, .. })
    ));
    let (_, rotated) = Manager::new(&app.gate)
        .rotate_token(&first.record.id, Duration::ZERO, None)
        .await
        .unwrap();
    assert!(matches!(
        Manager::new(&app.gate)
            .create_token("acct", "three", None)
            .await,
        Err(ManageError::TooManyTokens { .. })
    ));
    // Revoking frees a slot.
    Manager::new(&app.gate)
        .revoke_token(&rotated.record.id)
        .await
        .unwrap();
    Manager::new(&app.gate)
        .create_token("acct", "three", None)
        .await
        .unwrap();
    // Other accounts are not affected.
    Manager::new(&app.gate)
        .set_account_plan("other", "capped")
        .await
        .unwrap();
    Manager::new(&app.gate)
        .create_token("other", "one", None)
        .await
        .unwrap();
}

/// Two instances (two gates, each with its own Redis limiter) share one
/// account ceiling: the scenario above, across instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_account_ceiling_holds_across_two_instances_with_redis() {
    let Some(url) = tokengate_testkit::backends::redis().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("two.db").display());
    let store = SqliteStore::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    let prefix = format!("tgtest-{}", tokengate::TokenId::random());
    let instance = |store: SqliteStore| {
        TokenGate::builder(Arc::new(store))
            .with_argon2_params(Argon2Params::insecure_fast_for_tests())
            .with_redis_limiter(
                tokengate::RedisRateLimiter::new(&url)
                    .unwrap()
                    .with_key_prefix(prefix.clone()),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (instance(store.clone()), instance(store));
    let manager = Manager::new(&a);
    manager
        .set_plan(&Plan::new("shared", true, 10).with_account_requests_per_hour(Some(15)))
        .await
        .unwrap();
    manager.set_account_plan("acct", "shared").await.unwrap();
    let tokens = [token(&a, "acct", None).await, token(&a, "acct", None).await];
    let routers = [router(&a), router(&b)];
    for (router, token) in routers.iter().zip(&tokens) {
        assert_eq!(get_with(router, "/open", token).await.status, 200);
    }
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let router = routers[i % 2].clone();
            let token = tokens[(i / 2) % 2].clone();
            tokio::spawn(
                async move { ((i / 2) % 2, get_with(&router, "/open", &token).await.status) },
            )
        })
        .collect();
    let mut admitted = [1, 1];
    for request in requests {
        let (which, status) = request.await.unwrap();
        admitted[which] += usize::from(status == 200);
    }
    assert_eq!(admitted[0] + admitted[1], 15, "{admitted:?}");
    assert!(admitted.iter().all(|&n| n <= 10), "{admitted:?}");
}

fn id_of(token: &str) -> tokengate::TokenId {
    token[4..24].parse().unwrap()
}

async fn rotate(gate: &TokenGate, token: &str, grace_secs: u64) -> Result<String, ManageError> {
    Manager::new(gate)
        .rotate_token(&id_of(token), Duration::from_secs(grace_secs), None)
        .await
        .map(|(_, rotated)| rotated.token.expose_secret().to_owned())
}

/// Issue 26: eight rotations with a 30-day grace used to leave ten tokens
/// that all authenticated, each with its own window, on a 2-token plan.
/// Now the cap counts tokens in grace, a rotation ends the grace of the
/// rotated token's own predecessor, and a lineage shares one window.
#[tokio::test]
async fn rotation_with_grace_never_beats_the_token_cap_or_the_window() {
    const MONTH: u64 = 30 * 24 * 3600;
    let app = app_with(|b| b).await;
    let gate = &app.gate;
    let plan = Plan::new("capped", true, 1000).with_max_tokens(Some(2));
    Manager::new(gate).set_plan(&plan).await.unwrap();
    Manager::new(gate)
        .set_account_plan("acct", "capped")
        .await
        .unwrap();
    let first = token(gate, "acct", None).await;
    let second = token(gate, "acct", None).await;

    // At the cap, a rotation with grace would make three: refused, saying why.
    let refused = rotate(gate, &second, MONTH).await;
    assert!(
        matches!(refused, Err(ManageError::GraceOverTokenCap { max: 2, .. })),
        "{refused:?}"
    );
    // Without grace the count stays: allowed.
    let mut newest = rotate(gate, &second, 0).await.unwrap();
    assert_eq!(get_with(&app.router, "/open", &second).await.status, 401);

    // One more slot: rotations with grace go through, and each ends the
    // grace of the one before, so one lineage authenticates with two tokens.
    Manager::new(gate)
        .set_plan(&plan.clone().with_max_tokens(Some(3)))
        .await
        .unwrap();
    let mut lineage = vec![newest.clone()];
    for _ in 0..8 {
        newest = rotate(gate, &newest, MONTH).await.unwrap();
        lineage.push(newest.clone());
    }
    let mut authenticating = Vec::new();
    for token in lineage.iter().chain([&first]) {
        if get_with(&app.router, "/open", token).await.status == 200 {
            authenticating.push(token.clone());
        }
    }
    assert_eq!(
        authenticating,
        [lineage[7].clone(), lineage[8].clone(), first.clone()]
    );
    // ...and the cap sees all three: no new token, and no rotation with grace
    // of the token outside the lineage.
    let refused = Manager::new(gate)
        .create_token("acct", "fourth", None)
        .await;
    assert!(
        matches!(refused, Err(ManageError::TooManyTokens { max: 3, .. })),
        "{refused:?}"
    );
    assert!(matches!(
        rotate(gate, &first, MONTH).await,
        Err(ManageError::GraceOverTokenCap { .. })
    ));
}

/// A rotated token and its successor count in one window: a rotation never
/// grants extra requests, and usage is still counted per token.
#[tokio::test]
async fn a_rotated_token_and_its_successor_share_one_window() {
    let app = app_with(|b| b).await;
    let gate = &app.gate;
    Manager::new(gate)
        .set_plan(&Plan::new("ten", true, 10))
        .await
        .unwrap();
    Manager::new(gate)
        .set_account_plan("acct", "ten")
        .await
        .unwrap();
    let old = token(gate, "acct", None).await;
    for _ in 0..6 {
        assert_eq!(get_with(&app.router, "/open", &old).await.status, 200);
    }
    let new = rotate(gate, &old, 3600).await.unwrap();
    let response = get_with(&app.router, "/open", &new).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-ratelimit-remaining"), "3");
    for _ in 0..2 {
        assert_eq!(get_with(&app.router, "/open", &new).await.status, 200);
    }
    assert_eq!(get_with(&app.router, "/open", &old).await.status, 200);
    assert_eq!(get_with(&app.router, "/open", &old).await.status, 429);
    assert_eq!(get_with(&app.router, "/open", &new).await.status, 429);
    // A second rotation stays in the same window.
    let newer = rotate(gate, &new, 3600).await.unwrap();
    assert_eq!(get_with(&app.router, "/open", &newer).await.status, 429);

    gate.flush_last_use().await.unwrap();
    let usage = |token: &str| {
        let gate = gate.clone();
        let id = id_of(token);
        async move {
            let hours = Manager::new(&gate).token_usage(&id, 2).await.unwrap();
            hours
                .iter()
                .map(|h| (h.admitted, h.limited))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        }
    };
    assert_eq!(usage(&old).await, (7, 1));
    assert_eq!(usage(&new).await, (3, 1));
    assert_eq!(usage(&newer).await, (0, 1));
}

/// Issue 31, the `local` failure policy: while Redis is down an instance
/// admits from its own windows (each instance separately, as documented);
/// once Redis is back, empty, the shared window again holds what it
/// admitted, from Redis and locally, and the other instance gets only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_admissions_count_in_the_shared_window_once_redis_is_back() {
    let Some(mut server) = tokengate_testkit::redis_server::RedisServer::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("fallback.db").display());
    let store = SqliteStore::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    let instance = |store: SqliteStore| {
        TokenGate::builder(Arc::new(store))
            .with_argon2_params(Argon2Params::insecure_fast_for_tests())
            .with_redis_limiter(
                tokengate::RedisRateLimiter::new(&server.url())
                    .unwrap()
                    .with_key_prefix("fallback"),
            )
            .with_limiter_failure_policy(tokengate::LimiterFailurePolicy::FallBackToLocal)
            .build()
            .unwrap()
    };
    let (a, b) = (instance(store.clone()), instance(store));
    let manager = Manager::new(&a);
    manager.set_plan(&Plan::new("ten", true, 10)).await.unwrap();
    manager.set_account_plan("acct", "ten").await.unwrap();
    let token = token(&a, "acct", None).await;
    let (router_a, router_b) = (router(&a), router(&b));
    for _ in 0..3 {
        assert_eq!(get_with(&router_a, "/open", &token).await.status, 200);
    }
    server.kill();
    for _ in 0..4 {
        assert_eq!(
            get_with(&router_a, "/open", &token).await.status,
            200,
            "admitted by A's own windows while Redis is down"
        );
    }
    server.restart().await;
    // B asks Redis only now: 3 + 4 of the 10 are A's.
    let mut admitted_by_b = 0;
    for _ in 0..12 {
        match get_with(&router_b, "/open", &token).await.status.as_u16() {
            200 => admitted_by_b += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        admitted_by_b, 3,
        "A's 7 admissions count in the shared window"
    );
}

/// `GateAnswer::for_request` and `GateAnswer::for_token` (forward auth, verify) answer what the
/// layer answers, to the byte, and count once per call.
#[tokio::test]
async fn a_relayed_check_answers_what_the_layer_answers() {
    use http::HeaderMap;
    use http_body_util::BodyExt;
    use tokengate::http::GateAnswer;

    async fn parts(answer: GateAnswer) -> (u16, HeaderMap, String) {
        let (parts, body) = answer.response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }
    let app = app_with(|b| b).await;
    Manager::new(&app.gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    let reader = token(&app.gate, "acct", Some(&["reports:read"])).await;
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {reader}").parse().unwrap());

    let layer = get_with(&app.router, "/reports/new", &reader).await;
    let (status, relayed, body) =
        parts(GateAnswer::for_request(&app.gate, &headers, &["reports:write"]).await).await;
    assert_eq!(
        (status, body.as_str()),
        (layer.status.as_u16(), layer.body.as_str())
    );
    for name in [
        "content-type",
        "x-ratelimit-limit",
        "x-ratelimit-reset",
        "ratelimit-policy",
    ] {
        assert_eq!(relayed[name], layer.header(name), "{name}");
    }
    let remaining = |value: &str| value.parse::<u32>().unwrap();
    assert_eq!(
        remaining(relayed["x-ratelimit-remaining"].to_str().unwrap()) + 1,
        remaining(layer.header("x-ratelimit-remaining"))
    );

    // Allowed: 200, empty, the five headers, the principal.
    let answer = GateAnswer::for_token(&app.gate, &reader, &["reports:read"]).await;
    assert!(answer.is_allowed());
    assert_eq!(answer.principal.as_ref().unwrap().account_id(), "acct");
    let (status, allowed, body) = parts(answer).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(allowed["x-ratelimit-remaining"], "997");
    assert!(allowed.contains_key("ratelimit"));

    // Refused before the limiter: no principal, nothing counted.
    let missing = GateAnswer::for_token(&app.gate, "", &[] as &[&str]).await;
    assert!(missing.principal.is_none());
    let (status, challenge, body) = parts(missing).await;
    assert_eq!(
        (status, body.as_str()),
        (
            401,
            r#"{"success": false, "error": "Invalid or missing API token"}"#
        )
    );
    assert_eq!(challenge["www-authenticate"], r#"Bearer realm="api""#);
    let (status, ..) =
        parts(GateAnswer::for_token(&app.gate, "iit_nope", &[] as &[&str]).await).await;
    assert_eq!(status, 401);
    let next = get_with(&app.router, "/open", &reader).await;
    assert_eq!(next.header("x-ratelimit-remaining"), "996");
}

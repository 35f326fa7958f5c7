//! The layer's contract, `oneshot` against a tiny Router: exact 401/403 bytes,
//! cache invalidation, single-flight, flood resistance and backend faults.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use tokengate::{
    Argon2Params, Manager, Principal, SqliteStore, TokenGate, TokenGateBuilder, TokenId, TokenStore,
};
use tokengate_testkit::{
    FORBIDDEN, FlakyStore, TestResponse, UNAUTHORIZED, UNAVAILABLE, forge_wrong_secret, send,
};

struct Tiny {
    gate: TokenGate,
    store: Arc<FlakyStore>,
    router: Router,
    _dir: tempfile::TempDir,
}

async fn whoami(principal: Principal) -> String {
    format!("{}:{}", principal.account_id(), principal.plan())
}

async fn tiny_with(configure: impl FnOnce(TokenGateBuilder) -> TokenGateBuilder) -> Tiny {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("layer.db").display());
    let sqlite = SqliteStore::connect(&url).await.unwrap();
    sqlite.migrate().await.unwrap();
    let store = Arc::new(FlakyStore::new(sqlite));
    let gate = configure(
        TokenGate::builder(store.clone())
            .with_argon2_params(Argon2Params::insecure_fast_for_tests()),
    )
    .build()
    .unwrap();
    let router = Router::new()
        .route("/api/v1/me", get(whoami))
        .layer(gate.layer());
    Tiny {
        gate,
        store,
        router,
        _dir: dir,
    }
}

async fn tiny() -> Tiny {
    tiny_with(|b| b).await
}

impl Tiny {
    async fn get(&self, authorization: &[&str]) -> TestResponse {
        let mut request = Request::builder().uri("/api/v1/me");
        for value in authorization {
            request = request.header("authorization", *value);
        }
        send(&self.router, request.body(Body::empty()).unwrap()).await
    }

    async fn bearer(&self, token: &str) -> TestResponse {
        self.get(&[&format!("Bearer {token}")]).await
    }

    /// [`bearer`](Self::bearer) as a task of its own, to race other requests.
    fn spawn_bearer(&self, token: &str) -> tokio::task::JoinHandle<TestResponse> {
        let (router, request) = (self.router.clone(), bearer_request(token));
        tokio::spawn(async move { send(&router, request).await })
    }

    async fn token(&self, account: &str, plan: &str) -> String {
        // Tokens are made on a plan with API access; then the account
        // moves to `plan` (it may have none: its tokens then get the 403).
        Manager::new(&self.gate)
            .set_account_plan(account, "pro")
            .await
            .unwrap();
        let token = Manager::new(&self.gate)
            .create_token(account, "t", None)
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        Manager::new(&self.gate)
            .set_account_plan(account, plan)
            .await
            .unwrap();
        token
    }
}

fn bearer_request(token: &str) -> Request<Body> {
    Request::builder()
        .uri("/api/v1/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn assert_unauthorized(response: &TestResponse, context: &str) {
    assert_eq!(response.status, 401, "{context}: {}", response.body);
    assert_eq!(response.body, UNAUTHORIZED, "{context}");
    assert_eq!(response.header("content-type"), "application/json");
    assert!(
        response
            .header("www-authenticate")
            .starts_with("Bearer realm="),
        "{context}"
    );
    assert!(response.headers.get("x-ratelimit-limit").is_none());
}

/// Over fifty malformed `Authorization` values, each answered with the exact 401 body.
#[tokio::test]
async fn every_malformed_authorization_gets_the_exact_401() {
    let app = tiny().await;
    let good = app.token("acct_1", "pro").await;
    let id = &good[4..24];
    let body = &good[4..];
    let mut flipped = good.clone().into_bytes();
    flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other_secret = {
        // Same id, another secret, correct checksum: well formed but wrong.
        let text = tokengate::test_util::mint(&tokengate::TokenFormat::default()).1;
        let forged = format!("iit_{id}{}", &text[24..68]);
        let checksum = crc32fast::hash(forged.as_bytes()).to_be_bytes();
        use base64::Engine;
        format!(
            "{forged}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(checksum)
        )
    };
    let unknown_id = tokengate::test_util::mint(&tokengate::TokenFormat::default()).1;
    let long = "a".repeat(8 * 1024);
    let values: Vec<String> = vec![
        "".into(),
        " ".into(),
        "Bearer".into(),
        "Bearer ".into(),
        "Bearer  ".into(),
        "bearer".into(),
        format!("Bearer{good}"),
        format!("Bearer\t{good}"),
        format!("Bearer {good} "),
        format!("Bearer {good} extra"),
        format!("Bearer {good},"),
        format!("Bearer \"{good}\""),
        format!("Bearer '{good}'"),
        format!("Basic {good}"),
        format!("Token {good}"),
        format!("Bearer: {good}"),
        format!("Bearer={good}"),
        format!("Bearer {good}="),
        format!("Bearer ={good}"),
        format!("{good}"),
        format!("Bearer Bearer {good}"),
        format!("Bearer {}", &good[..73]),
        format!("Bearer {}", &good[..4]),
        format!("Bearer {good}A"),
        format!("Bearer {}", good.to_uppercase()),
        format!("Bearer {}", good.to_lowercase()),
        format!("Bearer {flipped}"),
        format!("Bearer xyz_{body}"),
        format!("Bearer iit-{body}"),
        format!("Bearer IIT_{body}"),
        format!("Bearer {body}"),
        format!("Bearer iit_{}", &body[1..]),
        format!("Bearer {}", good.replace('_', "/")),
        format!("Bearer {}+{}", &good[..30], &good[31..]),
        format!("Bearer {other_secret}"),
        format!("Bearer {unknown_id}"),
        format!("Bearer {id}"),
        "Bearer iit_".into(),
        "Bearer null".into(),
        "Bearer undefined".into(),
        "Bearer ../../etc/passwd".into(),
        "Bearer ' OR '1'='1".into(),
        "Bearer %00".into(),
        format!("Bearer {long}"),
        format!("Bearer iit_{}", "A".repeat(70)),
        format!("Bearer iit_{}", "-".repeat(70)),
        format!("Bearer iit_{}", "_".repeat(70)),
        format!("Bearer {}", "=".repeat(74)),
        "Bearer a.b.c".into(),
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo".into(),
        format!("Digest {good}"),
        format!("bearer  {good} \t"),
        "Bearer 🔑".into(),
        "Bearer ü".into(),
    ];
    let mut sent = 0;
    for value in &values {
        // Non-ASCII goes in as raw bytes (obs-text), which HTTP allows in field values.
        let header = http::HeaderValue::from_bytes(value.as_bytes()).unwrap();
        sent += 1;
        let mut request = Request::builder().uri("/api/v1/me");
        request
            .headers_mut()
            .unwrap()
            .insert("authorization", header);
        let response = send(&app.router, request.body(Body::empty()).unwrap()).await;
        assert_unauthorized(&response, value);
    }
    // Bytes that are not UTF-8 at all.
    for raw in [&b"Bearer \xff\xfe"[..], b"\x80Bearer x", b"Bearer iit_\xc3"] {
        sent += 1;
        let mut request = Request::builder().uri("/api/v1/me");
        request
            .headers_mut()
            .unwrap()
            .insert("authorization", http::HeaderValue::from_bytes(raw).unwrap());
        let response = send(&app.router, request.body(Body::empty()).unwrap()).await;
        assert_unauthorized(&response, &format!("{raw:?}"));
    }
    assert!(sent >= 50, "only {sent} malformed values");
    // The good token, for contrast, in every accepted spelling.
    for value in [
        format!("Bearer {good}"),
        format!("bearer {good}"),
        format!("BEARER {good}"),
        format!("Bearer     {good}"),
    ] {
        assert_eq!(app.get(&[&value]).await.status, 200, "{value}");
    }
}

#[tokio::test]
async fn missing_duplicate_and_misplaced_tokens_are_401() {
    let app = tiny().await;
    let good = app.token("acct_1", "pro").await;
    let missing = app.get(&[]).await;
    assert_unauthorized(&missing, "missing");
    assert_eq!(missing.header("www-authenticate"), r#"Bearer realm="api""#);
    let bearer = format!("Bearer {good}");
    let twice = app.get(&[&bearer, &bearer]).await;
    assert_unauthorized(&twice, "two headers");
    assert_eq!(
        twice.header("www-authenticate"),
        r#"Bearer realm="api", error="invalid_token""#
    );
    // RFC 6750 §3.1: another scheme carries no bearer credentials, so the
    // challenge names no error code; a malformed Bearer field does.
    for (value, challenge) in [
        ("Basic dXNlcjpwYXNz", r#"Bearer realm="api""#),
        ("Token abc", r#"Bearer realm="api""#),
        (good.as_str(), r#"Bearer realm="api""#),
        ("Bearerabc", r#"Bearer realm="api""#),
        ("Bearer", r#"Bearer realm="api", error="invalid_token""#),
        ("bearer a b", r#"Bearer realm="api", error="invalid_token""#),
        ("BEARER  !!", r#"Bearer realm="api", error="invalid_token""#),
    ] {
        let response = app.get(&[value]).await;
        assert_unauthorized(&response, value);
        assert_eq!(response.header("www-authenticate"), challenge, "{value}");
    }
    for uri in [
        format!("/api/v1/me?access_token={good}"),
        format!("/api/v1/me?token={good}"),
    ] {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        assert_unauthorized(&send(&app.router, request).await, "query");
    }
    let request = Request::builder()
        .uri("/api/v1/me")
        .header("cookie", format!("token={good}; access_token={good}"))
        .body(Body::empty())
        .unwrap();
    assert_unauthorized(&send(&app.router, request).await, "cookie");
}

#[tokio::test]
async fn authenticated_requests_reach_the_handler_with_the_principal() {
    let app = tiny().await;
    let good = app.token("acct_9", "enterprise").await;
    let response = app.bearer(&good).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "acct_9:enterprise");
    assert_eq!(response.header("x-ratelimit-limit"), "10000");
    assert_eq!(response.header("x-ratelimit-remaining"), "9999");
}

#[tokio::test]
async fn plans_without_api_access_get_the_exact_403() {
    let app = tiny().await;
    let token = app.token("acct_free", "free").await;
    let response = app.bearer(&token).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.body, FORBIDDEN);
    assert_eq!(response.header("content-type"), "application/json");
    // A revoked free token is a 401, not a 403.
    Manager::new(&app.gate)
        .revoke_token(&token[4..24].parse().unwrap())
        .await
        .unwrap();
    assert_unauthorized(&app.bearer(&token).await, "revoked free");
}

#[tokio::test]
async fn the_next_request_sees_revocation_and_plan_changes() {
    let app = tiny().await;
    let token = app.token("acct_1", "pro").await;
    let other = app.token("acct_2", "pro").await;
    assert_eq!(app.bearer(&token).await.status, 200);
    assert_eq!(app.bearer(&other).await.status, 200);

    // Downgrade: 403 at once; the other account is unaffected.
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "free")
        .await
        .unwrap();
    assert_eq!(app.bearer(&token).await.body, FORBIDDEN);
    assert_eq!(app.bearer(&other).await.status, 200);
    // Upgrade: 200 at once, with the new plan's limit.
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "enterprise")
        .await
        .unwrap();
    let response = app.bearer(&token).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-ratelimit-limit"), "10000");

    // Plan edits: the limit, then access.
    Manager::new(&app.gate)
        .set_plan(&tokengate::Plan::new("pro", true, 1234))
        .await
        .unwrap();
    assert_eq!(app.bearer(&other).await.header("x-ratelimit-limit"), "1234");
    Manager::new(&app.gate)
        .set_plan(&tokengate::Plan::new("pro", false, 1234))
        .await
        .unwrap();
    assert_eq!(app.bearer(&other).await.body, FORBIDDEN);
    Manager::new(&app.gate)
        .set_plan(&tokengate::Plan::new("pro", true, 1000))
        .await
        .unwrap();
    assert_eq!(app.bearer(&other).await.status, 200);

    // Revocation.
    Manager::new(&app.gate)
        .revoke_token(&other[4..24].parse().unwrap())
        .await
        .unwrap();
    assert_unauthorized(&app.bearer(&other).await, "revoked");
    assert_eq!(app.bearer(&token).await.status, 200);
}

/// A verification that read the token before its revocation must not answer a
/// request that arrives after the revocation returned (it used to: the new
/// request joined the flight in progress and got its 200). The store holds
/// the first lookup after it read the live token, so the order is fixed:
/// read, change, second request, then the first lookup answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_revocation_does_not_join_an_older_verification() {
    for change in ["revoke", "downgrade"] {
        let app = tiny().await;
        let token = app.token("acct_1", "pro").await;
        app.store.hold_next_credential_answer();
        // Starts a verification, which reads the live token and then waits.
        let early = app.spawn_bearer(&token);
        app.store.credential_answer_held().await;
        match change {
            "revoke" => {
                Manager::new(&app.gate)
                    .revoke_token(&token[4..24].parse().unwrap())
                    .await
                    .unwrap();
            }
            _ => {
                Manager::new(&app.gate)
                    .set_account_plan("acct_1", "free")
                    .await
                    .unwrap();
            }
        }
        let late = app.bearer(&token).await;
        match change {
            "revoke" => assert_unauthorized(&late, "after the revocation returned"),
            _ => assert_eq!(late.body, FORBIDDEN, "after the downgrade returned"),
        }
        // The request that came first read the token before the change, and
        // is answered as of then.
        app.store.release_credential_answer();
        let early = early.await.unwrap();
        assert_eq!(early.status, 200, "{change}: {}", early.body);
        let again = app.bearer(&token).await;
        assert!(
            [401, 403].contains(&again.status.as_u16()),
            "{change}: {}",
            again.body
        );
    }
}

/// A store that hangs (a partition, not a refusal) is a 503 after the store
/// timeout, never a request stuck for good, and never a 401.
#[tokio::test]
async fn a_hanging_store_is_503_after_the_timeout() {
    let app = tiny_with(|b| b.with_store_timeout(Duration::from_millis(100))).await;
    let token = app.token("acct_1", "pro").await;
    app.store.delay_credential_answers(Duration::from_secs(600));
    let response = tokio::time::timeout(Duration::from_secs(60), app.bearer(&token))
        .await
        .expect("the store timeout did not apply");
    assert_eq!(response.status, 503);
    assert_eq!(response.body, UNAVAILABLE);
    app.store.delay_credential_answers(Duration::ZERO);
    assert_eq!(app.bearer(&token).await.status, 200);
}

#[tokio::test]
async fn changes_made_by_another_process_arrive_through_the_change_feed() {
    let app = tiny_with(|b| b.with_change_poll_interval(Duration::from_millis(20))).await;
    let token = app.token("acct_1", "pro").await;
    app.gate.poll_changes().await; // initialise the cursor
    assert_eq!(app.bearer(&token).await.status, 200);
    // Another process (the CLI) with its own gate on the same database.
    let cli = TokenGate::builder(Arc::new(app.store.sqlite().clone()))
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .build()
        .unwrap();
    Manager::new(&cli)
        .revoke_token(&token[4..24].parse().unwrap())
        .await
        .unwrap();
    // Still cached in this process until the feed is read...
    assert_eq!(app.bearer(&token).await.status, 200);
    let maintenance = app.gate.spawn_maintenance();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let response = app.bearer(&token).await;
        if response.status == 401 {
            assert_unauthorized(&response, "revoked by another process");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revocation never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    maintenance.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_stop_working_even_when_cached() {
    let app = tiny().await;
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "pro")
        .await
        .unwrap();
    let expires_at = Manager::new(&app.gate).now() + time::Duration::seconds(2);
    let created = Manager::new(&app.gate)
        .create_token("acct_1", "short-lived", Some(expires_at))
        .await
        .unwrap();
    let token = created.token.expose_secret();
    assert_eq!(app.bearer(token).await.status, 200);
    assert_eq!(app.gate.cached_tokens(), 1);
    app.gate.step_wall_clock(time::Duration::seconds(1));
    assert_eq!(app.bearer(token).await.status, 200, "not expired yet");
    app.gate.step_wall_clock(time::Duration::milliseconds(1100));
    assert_unauthorized(&app.bearer(token).await, "expired");
}

#[tokio::test]
async fn concurrent_first_uses_verify_once() {
    let app = tiny().await;
    let token = app.token("acct_1", "pro").await;
    let before = app.gate.argon2_verifications();
    let requests: Vec<_> = (0..64).map(|_| app.spawn_bearer(&token)).collect();
    for request in requests {
        assert_eq!(request.await.unwrap().status, 200);
    }
    assert_eq!(app.gate.argon2_verifications() - before, 1);
    // Distinct tokens each verify once.
    let more: Vec<String> = futures_util::future::join_all((0..5).map(|i| {
        let gate = app.gate.clone();
        async move {
            Manager::new(&gate)
                .create_token("acct_1", &format!("t{i}"), None)
                .await
                .unwrap()
                .token
                .expose_secret()
                .to_owned()
        }
    }))
    .await;
    for token in &more {
        assert_eq!(app.bearer(token).await.status, 200);
        assert_eq!(app.bearer(token).await.status, 200);
    }
    assert_eq!(app.gate.argon2_verifications() - before, 6);
}

#[tokio::test]
async fn malformed_tokens_cost_no_lookup_and_unknown_ids_one() {
    let app = tiny().await;
    for value in ["Bearer nope", "Bearer iit_short", "Basic abc"] {
        app.get(&[value]).await;
    }
    let format = tokengate::TokenFormat::default();
    let mut bad = tokengate::test_util::mint(&format).1;
    bad.replace_range(70.., "AAAA");
    app.bearer(&bad).await;
    assert_eq!(app.store.credential_lookups(), 0);

    let unknown = tokengate::test_util::mint(&format).1;
    for _ in 0..5 {
        assert_unauthorized(&app.bearer(&unknown).await, "unknown");
    }
    assert_eq!(app.store.credential_lookups(), 1, "negative cache");
    assert_eq!(app.gate.argon2_verifications(), 0);
}

#[tokio::test]
async fn with_the_feed_loaded_unknown_ids_cost_no_lookup_at_all() {
    let app = tiny().await;
    let good = app.token("acct_1", "pro").await;
    assert!(app.gate.poll_changes().await, "feed loads");
    let format = tokengate::TokenFormat::default();
    for _ in 0..50 {
        let unknown = tokengate::test_util::mint(&format).1;
        assert_unauthorized(&app.bearer(&unknown).await, "unknown");
    }
    assert_eq!(app.store.credential_lookups(), 0);
    // Known ids still authenticate, including one created by another process
    // after the feed was loaded: the request waits for a fresh poll.
    assert_eq!(app.bearer(&good).await.status, 200);
    let cli = TokenGate::builder(Arc::new(app.store.sqlite().clone()))
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .build()
        .unwrap();
    let elsewhere = Manager::new(&cli)
        .create_token("acct_1", "from the CLI", None)
        .await
        .unwrap();
    let response = app.bearer(elsewhere.token.expose_secret()).await;
    assert_eq!(response.status, 200, "{}", response.body);
    // A feed that cannot be read means "cannot tell": 503, not 401.
    app.store.fail(true);
    let unknown = tokengate::test_util::mint(&format).1;
    assert_eq!(app.bearer(&unknown).await.body, UNAVAILABLE);
}

/// A wrong secret for a known (public) token id is refused by its tag,
/// from memory: always the documented 401, never a 429, no argon2, and no
/// number of attempts from any number of addresses delays the owner.
#[tokio::test]
async fn wrong_secrets_are_401_from_memory_and_never_lock_the_owner_out() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;

    let app = tiny().await;
    let good = app.token("acct_1", "pro").await;
    assert!(app.gate.poll_changes().await);
    let from = |address: String, token: String| {
        let mut request = bearer_request(&token);
        let address: SocketAddr = address.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(address));
        send(&app.router, request)
    };
    for i in 0..100 {
        let address = format!("198.51.100.{}:4000", i % 8);
        let response = from(address, forge_wrong_secret(&good, i)).await;
        assert_unauthorized(&response, "wrong secret");
    }
    assert_eq!(
        app.gate.argon2_verifications(),
        0,
        "no argon2 for wrong secrets"
    );
    assert_eq!(app.store.credential_lookups(), 0, "answered from memory");
    // The owner's token was never used, so it is not cached: its first use
    // is verified now, from a guesser's own address even.
    assert_eq!(app.gate.cached_tokens(), 0);
    let owner = from("198.51.100.1:5000".into(), good.clone()).await;
    assert_eq!(owner.status, 200, "{}", owner.body);
    assert_eq!(app.gate.argon2_verifications(), 1);
}

/// A gate that has not read the feed yet (just started, or another
/// instance) reads the tag with the credential: one lookup per id, still
/// no argon2, still 401.
#[tokio::test]
async fn a_fresh_gate_refuses_wrong_secrets_by_the_stored_tag() {
    let app = tiny().await;
    let good = app.token("acct_1", "pro").await;
    let other = TokenGate::builder(app.store.clone())
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .build()
        .unwrap();
    for i in 0..10 {
        let wrong = forge_wrong_secret(&good, i);
        assert_eq!(
            other.authenticate_token(&wrong).await.unwrap_err(),
            tokengate::Rejection::InvalidToken
        );
    }
    assert_eq!(other.argon2_verifications(), 0);
    assert!(other.authenticate_token(&good).await.is_ok());
    assert_eq!(other.argon2_verifications(), 1);
}

/// Tokens made before secret tags existed are verified by argon2 (bounded)
/// until their first successful use, which stores their tag.
#[tokio::test]
async fn an_untagged_token_gets_its_tag_at_its_first_use() {
    let app = tiny().await;
    let good = app.token("acct_1", "pro").await;
    sqlx::query("UPDATE api_tokens SET secret_tag = NULL")
        .execute(app.store.sqlite().pool())
        .await
        .unwrap();
    let restarted = TokenGate::builder(app.store.clone())
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .build()
        .unwrap();
    assert!(restarted.poll_changes().await);
    let wrong = forge_wrong_secret(&good, 1);
    assert!(restarted.authenticate_token(&wrong).await.is_err());
    assert_eq!(
        restarted.argon2_verifications(),
        1,
        "no tag: argon2 decides"
    );
    assert!(restarted.authenticate_token(&good).await.is_ok());
    assert_eq!(restarted.argon2_verifications(), 2);
    eventually("the tag to be stored", async || {
        let tag: Option<i64> = sqlx::query_scalar("SELECT secret_tag FROM api_tokens")
            .fetch_one(app.store.sqlite().pool())
            .await
            .unwrap();
        tag.is_some()
    })
    .await;
    for i in 2..12 {
        assert!(
            restarted
                .authenticate_token(&forge_wrong_secret(&good, i))
                .await
                .is_err()
        );
    }
    assert_eq!(
        restarted.argon2_verifications(),
        2,
        "the tag refuses them now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_abandoned_wrong_secrets_cost_no_argon2() {
    let app = tiny().await;
    let good = app.token("acct_1", "pro").await;
    let attempts: Vec<_> = (0..40)
        .map(|i| {
            let request = bearer_request(&forge_wrong_secret(&good, i));
            let router = app.router.clone();
            tokio::spawn(async move {
                // Half the clients hang up almost at once.
                if i % 2 == 0 {
                    let _ = tokio::time::timeout(Duration::from_micros(50), send(&router, request))
                        .await;
                    None
                } else {
                    Some(send(&router, request).await)
                }
            })
        })
        .collect();
    for attempt in attempts {
        if let Some(response) = attempt.await.unwrap() {
            assert_unauthorized(&response, "concurrent wrong secret");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.gate.argon2_verifications(), 0);
    assert_eq!(app.bearer(&good).await.status, 200);
}

#[tokio::test]
async fn store_faults_are_503_for_uncached_tokens_and_cached_tokens_keep_working() {
    let app = tiny().await;
    let cached = app.token("acct_1", "pro").await;
    let uncached = app.token("acct_2", "pro").await;
    assert_eq!(app.bearer(&cached).await.status, 200);

    app.store.fail(true);
    let response = app.bearer(&uncached).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body, UNAVAILABLE);
    assert_eq!(response.header("content-type"), "application/json");
    for _ in 0..3 {
        assert_eq!(app.bearer(&cached).await.status, 200);
    }
    // Garbage is still a 401 (no I/O needed to know).
    assert_unauthorized(&app.bearer("garbage").await, "garbage during outage");

    app.store.fail(false);
    assert_eq!(app.bearer(&uncached).await.status, 200);
}

/// Polls `check` until it holds, for up to two seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn after_the_ttl_entries_are_revalidated_in_the_background() {
    let app = tiny_with(|b| b.with_cache_ttl(Duration::ZERO)).await;
    let token = app.token("acct_1", "pro").await;
    assert_eq!(app.bearer(&token).await.status, 200);
    let verifies = app.gate.argon2_verifications();
    let lookups = app.store.credential_lookups();
    assert_eq!(
        app.bearer(&token).await.status,
        200,
        "served while refreshing"
    );
    eventually("a background lookup", async || {
        app.store.credential_lookups() > lookups
    })
    .await;
    assert_eq!(app.gate.argon2_verifications(), verifies, "without argon2");

    // A change the feed never announced (a manual UPDATE) is caught by revalidation.
    sqlx::query("UPDATE api_tokens SET revoked_at = '2020-01-01T00:00:00Z'")
        .execute(app.store.sqlite().pool())
        .await
        .unwrap();
    eventually("the manual revocation", async || {
        app.bearer(&token).await.status == 401
    })
    .await;
    assert_unauthorized(&app.bearer(&token).await, "revalidated revocation");
}

#[tokio::test]
async fn cached_tokens_survive_an_outage_until_the_stale_limit() {
    let app = tiny_with(|b| b.with_cache_ttl(Duration::ZERO)).await;
    let token = app.token("acct_1", "pro").await;
    assert_eq!(app.bearer(&token).await.status, 200);
    app.store.fail(true);
    for _ in 0..20 {
        assert_eq!(app.bearer(&token).await.status, 200, "stale-if-error");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let strict = tiny_with(|b| {
        b.with_cache_ttl(Duration::ZERO)
            .with_stale_if_error(Duration::ZERO)
    })
    .await;
    let token = strict.token("acct_1", "pro").await;
    assert_eq!(strict.bearer(&token).await.status, 200);
    strict.store.fail(true);
    eventually("the stale entry to be dropped", async || {
        strict.bearer(&token).await.status == 503
    })
    .await;
    assert_eq!(strict.bearer(&token).await.body, UNAVAILABLE);
    strict.store.fail(false);
    assert_eq!(strict.bearer(&token).await.status, 200, "recovers");
}

#[tokio::test]
async fn a_plan_change_during_an_outage_is_503_not_the_old_plan() {
    let app = tiny().await;
    let token = app.token("acct_1", "pro").await;
    assert_eq!(app.bearer(&token).await.status, 200);
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "free")
        .await
        .unwrap();
    app.store.fail(true);
    assert_eq!(app.bearer(&token).await.body, UNAVAILABLE);
    app.store.fail(false);
    assert_eq!(app.bearer(&token).await.body, FORBIDDEN);
    // The secret stayed verified: the plan change cost no argon2.
    assert_eq!(app.gate.argon2_verifications(), 1);
}

#[tokio::test]
async fn the_principal_extractor_names_the_missing_layer() {
    let router: Router = Router::new().route("/me", get(whoami));
    let response = send(
        &router,
        Request::builder().uri("/me").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status, 500);
    assert_eq!(
        response.body,
        r#"{"success": false, "error": "Internal error: route is missing TokenGateLayer"}"#
    );
}

#[tokio::test]
async fn last_use_is_batched_in_memory_and_flushed() {
    let app = tiny().await;
    let token = app.token("acct_1", "pro").await;
    let id: TokenId = token[4..24].parse().unwrap();
    assert_eq!(app.bearer(&token).await.status, 200);
    let stored = Manager::new(&app.gate).token(&id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, None, "the request path does not write");
    assert_eq!(app.gate.flush_last_use().await.unwrap(), 1);
    let stored = Manager::new(&app.gate).token(&id).await.unwrap().unwrap();
    let used = stored.last_used_at.expect("flushed");
    assert!((Manager::new(&app.gate).now() - used).whole_seconds().abs() <= 2);
    // A failed flush keeps the batch for the next one.
    assert_eq!(app.bearer(&token).await.status, 200);
    app.gate.step_wall_clock(time::Duration::milliseconds(1100));
    assert_eq!(app.bearer(&token).await.status, 200);
    app.store.fail(true);
    assert!(app.gate.flush_last_use().await.is_err());
    app.store.fail(false);
    assert_eq!(app.gate.flush_last_use().await.unwrap(), 1);
}

/// Expiry is decided by the wall clock read at each request, so when the
/// host clock is stepped (a VM that booted before NTP), a cached token's
/// expiry moves with it, and new rows are stamped with the stepped time.
#[tokio::test]
async fn a_stepped_wall_clock_moves_expiry_decisions_and_stored_times() {
    let app = tiny().await;
    Manager::new(&app.gate)
        .set_account_plan("acct_1", "pro")
        .await
        .unwrap();
    let expires_at = Manager::new(&app.gate).now() + time::Duration::hours(1);
    let created = Manager::new(&app.gate)
        .create_token("acct_1", "an hour", Some(expires_at))
        .await
        .unwrap();
    let token = created.token.expose_secret();
    assert_eq!(app.bearer(token).await.status, 200);
    assert_eq!(app.gate.cached_tokens(), 1);

    app.gate.step_wall_clock(time::Duration::hours(2));
    assert_unauthorized(
        &app.bearer(token).await,
        "expired by the stepped clock, though cached",
    );
    let later = Manager::new(&app.gate)
        .create_token("acct_1", "later", None)
        .await
        .unwrap();
    let ahead = later.record.created_at - time::OffsetDateTime::now_utc();
    assert!(
        (ahead - time::Duration::hours(2)).abs() < time::Duration::seconds(5),
        "created_at is {ahead} ahead of the real clock"
    );
}

/// A last-use flush cut short (by the store timeout here, by shutdown in
/// the maintenance task) loses nothing: the batch is written by the next one.
#[tokio::test]
async fn a_flush_cut_short_keeps_its_batch() {
    let app = tiny_with(|b| b.with_store_timeout(Duration::from_millis(200))).await;
    let token = app.token("acct_1", "pro").await;
    assert_eq!(app.bearer(&token).await.status, 200);
    app.store.hang(true);
    assert!(app.gate.flush_last_use().await.is_err(), "timed out");
    app.store.hang(false);
    assert_eq!(app.gate.flush_last_use().await.unwrap(), 1);
    assert_eq!(app.gate.flush_last_use().await.unwrap(), 0, "written once");
}

/// Shutdown with a hung store ends within its store timeouts, and what it
/// could not write is still pending.
#[tokio::test]
async fn maintenance_shutdown_ends_when_the_store_hangs() {
    let app = tiny_with(|b| {
        b.with_store_timeout(Duration::from_millis(300))
            .with_change_poll_interval(Duration::from_millis(20))
            .with_last_used_flush_interval(Duration::from_millis(20))
    })
    .await;
    let token = app.token("acct_1", "pro").await;
    let maintenance = app.gate.spawn_maintenance();
    assert_eq!(app.bearer(&token).await.status, 200);
    app.store.hang(true);
    // The background jobs (feed poll, last-use flush) get stuck in the store too.
    eventually("two background jobs stuck in the store", async || {
        app.store.hung_calls() >= 2
    })
    .await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), maintenance.shutdown())
        .await
        .expect("shutdown ends");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    app.store.hang(false);
    assert_eq!(app.gate.flush_last_use().await.unwrap(), 1);
}

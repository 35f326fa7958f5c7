//! The release-shaped binary, started on a free loopback port and spoken to over HTTP.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::process::{Server, admin_header, base_env, cli, client};
use crate::support::{FORBIDDEN, UNAUTHORIZED};
use serde_json::{Value, json};

async fn put_account(server: &Server, account: &str, plan: &str) {
    let response = client()
        .put(server.url(&format!("/admin/accounts/{account}")))
        .header("authorization", admin_header())
        .json(&json!({ "plan": plan }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn create_token(server: &Server, account: &str) -> Value {
    let response = client()
        .post(server.url(&format!("/admin/accounts/{account}/tokens")))
        .header("authorization", admin_header())
        .json(&json!({ "name": "CI" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["data"].clone()
}

/// A new token's plaintext.
async fn token_for(server: &Server, account: &str) -> String {
    create_token(server, account).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn api(server: &Server, token: &str) -> reqwest::Response {
    client()
        .get(server.url("/api/v1/external_tests/providers"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if let Ok(bytes) = std::fs::read(dir.join(format!("tokengate.db{suffix}"))) {
            all.extend(bytes);
        }
    }
    assert!(!all.is_empty());
    all
}

#[tokio::test]
async fn documented_flow_persistence_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path());
    let mut server = Server::start(dir.path(), &env);
    put_account(&server, "acct_1", "pro").await;
    let created = create_token(&server, "acct_1").await;
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let response = api(&server, &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-limit"], "1000");
    assert_eq!(response.headers()["x-ratelimit-remaining"], "999");
    assert!(response.headers().contains_key("x-ratelimit-reset"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    let response = client()
        .get(server.url("/api/v1/external_tests"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "998");

    // Free plan: 403, exact body (for a token made while on Pro: a plan
    // without API access gets no new tokens).
    put_account(&server, "acct_free", "pro").await;
    let free = create_token(&server, "acct_free").await;
    put_account(&server, "acct_free", "free").await;
    let response = api(&server, free["token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await.unwrap(), FORBIDDEN);

    // Tokens survive a restart, and so does their rate-limit window: two
    // requests were counted before it.
    assert!(server.signal("TERM").success());
    assert!(server.log_text().contains("saved rate-limit windows"));
    let server = Server::start(dir.path(), &env);
    let response = api(&server, &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "997");

    // Revocation is effective on the very next request.
    let response = client()
        .delete(server.url(&format!("/admin/tokens/{id}")))
        .header("authorization", admin_header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = api(&server, &token).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().await.unwrap(), UNAUTHORIZED);
}

#[tokio::test]
async fn pro_token_gets_1000_requests_then_429_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &base_env(dir.path()));
    put_account(&server, "acct_1", "pro").await;
    let token = token_for(&server, "acct_1").await;
    let http = client();
    for expected in (0..1000).rev() {
        let response = http
            .get(server.url("/api/v1/external_tests"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["x-ratelimit-remaining"],
            expected.to_string().as_str()
        );
    }
    let response = http
        .get(server.url("/api/v1/external_tests"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.text().await.unwrap(),
        format!(
            r#"{{"success": false, "error": "Rate limit exceeded. Try again in {retry_after} seconds."}}"#
        )
    );
}

#[tokio::test]
async fn generated_admin_token_is_shown_once_and_only_its_hash_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<_> = base_env(dir.path())
        .into_iter()
        .filter(|(k, _)| k != "ADMIN_TOKEN")
        .collect();
    let mut server = Server::start(dir.path(), &env);
    let log = server.log_text();
    let start = log.find("tgadmin_").expect("admin token printed");
    let admin: String = log[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert_eq!(admin.len(), "tgadmin_".len() + 43);
    let response = client()
        .get(server.url("/admin/plans"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(server.signal("TERM").success());
    assert!(!contains_bytes(
        &database_bytes(dir.path()),
        admin.as_bytes()
    ));

    let server = Server::start(dir.path(), &env);
    assert!(!server.log_text().contains("tgadmin_"), "printed only once");
    let response = client()
        .get(server.url("/admin/plans"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "reused after restart");
}

#[tokio::test]
async fn plaintext_tokens_never_reach_the_database_or_the_trace_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path());
    env.retain(|(k, _)| k != "RUST_LOG");
    env.push(("RUST_LOG".into(), "trace".into()));
    let mut server = Server::start(dir.path(), &env);
    put_account(&server, "acct_1", "pro").await;
    let created = create_token(&server, "acct_1").await;
    let token = created["token"].as_str().unwrap().to_owned();
    let secret_part = token[24..68].to_owned();
    assert_eq!(api(&server, &token).await.status(), 200);
    // A wrong secret for the same id, and a near miss.
    let mut typo = token.clone().into_bytes();
    typo[50] = if typo[50] == b'a' { b'b' } else { b'a' };
    assert_eq!(
        api(&server, std::str::from_utf8(&typo).unwrap())
            .await
            .status(),
        401
    );
    let listed = client()
        .get(server.url("/admin/accounts/acct_1/tokens"))
        .header("authorization", admin_header())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(&secret_part));
    let wal_while_running = database_bytes(dir.path());
    assert!(server.signal("TERM").success());

    let log = server.log_text();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace level was on"
    );
    let haystacks: [Vec<u8>; 3] = [
        wal_while_running,
        database_bytes(dir.path()),
        log.into_bytes(),
    ];
    for haystack in haystacks {
        assert!(!contains_bytes(&haystack, token.as_bytes()));
        assert!(!contains_bytes(&haystack, secret_part.as_bytes()));
        assert!(!contains_bytes(&haystack, &token.as_bytes()[24..40]));
    }
    // What is stored is an argon2id PHC string.
    let url = format!("sqlite://{}", dir.path().join("tokengate.db").display());
    let store = tokengate::SqliteStore::connect(&url).await.unwrap();
    let hashes: Vec<String> = sqlx::query_scalar("SELECT secret_hash FROM api_tokens")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(hashes.len(), 1);
    assert!(
        hashes[0].starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        hashes[0]
    );
}

#[tokio::test]
async fn default_argon2_parameters_are_owasp() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<_> = base_env(dir.path())
        .into_iter()
        .filter(|(k, _)| !k.starts_with("ARGON2"))
        .collect();
    let server = Server::start(dir.path(), &env);
    put_account(&server, "acct_1", "pro").await;
    let token = token_for(&server, "acct_1").await;
    assert_eq!(api(&server, &token).await.status(), 200);
    let url = format!("sqlite://{}", dir.path().join("tokengate.db").display());
    let store = tokengate::SqliteStore::connect(&url).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT secret_hash FROM api_tokens")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
}

#[tokio::test]
async fn sigterm_and_sigint_flush_last_use_and_exit_zero() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let env = base_env(dir.path());
        let mut server = Server::start(dir.path(), &env);
        put_account(&server, "acct_1", "pro").await;
        let created = create_token(&server, "acct_1").await;
        let token = created["token"].as_str().unwrap();
        assert_eq!(api(&server, token).await.status(), 200);
        let started = Instant::now();
        let status = server.signal(signal);
        assert!(status.success(), "SIG{signal}: {status}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(server.log_text().contains("flushed last-use times"));

        let shown = cli(
            dir.path(),
            &env,
            &["token", "show", created["id"].as_str().unwrap()],
        );
        let stdout = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success(), "{shown:?}");
        let last_used = stdout
            .lines()
            .find_map(|l| l.strip_prefix("last_used_at: "))
            .unwrap();
        assert_ne!(
            last_used, "-",
            "SIG{signal} flushed last_used_at:\n{stdout}"
        );
    }
}

#[test]
fn configuration_errors_exit_nonzero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "DATABASE_URL",
            "sqlite:///nonexistent-dir/sub/tokengate.db".into(),
            "cannot open database",
        ),
        (
            "DATABASE_URL",
            "mysql://localhost/x".into(),
            "unsupported DATABASE_URL",
        ),
        (
            "TOKEN_PREFIX",
            "Bad Prefix".into(),
            "invalid TOKEN_PREFIX \"Bad Prefix\"",
        ),
        ("ARGON2_MEMORY_KIB", "1".into(), "invalid argon2 parameters"),
        ("BIND_ADDR", "not-an-address".into(), "invalid BIND_ADDR"),
        (
            "ADMIN_TOKEN",
            "short".into(),
            "invalid ADMIN_TOKEN: the admin token is too short",
        ),
    ];
    for (key, value, expected) in cases {
        let mut env = base_env(dir.path());
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.clone()));
        let output = cli(dir.path(), &env, &["serve"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{key}={value}: {stderr}");
        let lines: Vec<_> = stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{key}={value}: one line, got:\n{stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(lines[0].contains(expected), "{key}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Unwritable paths, which fail even for root: under a regular file, and on /proc.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    for path in [file.join("t.db"), "/proc/tokengate-test.db".into()] {
        let mut env = base_env(dir.path());
        env.retain(|(k, _)| k != "DATABASE_URL");
        env.push((
            "DATABASE_URL".into(),
            format!("sqlite://{}", path.display()),
        ));
        let output = cli(dir.path(), &env, &["migrate"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: cannot open database"),
            "{stderr}"
        );
    }
}

/// The argon2 verifications the server has run, from `/metrics`.
async fn argon2_verifications(server: &Server) -> u64 {
    metric(server, "tokengate_argon2_verify_seconds_count").await
}

/// The value of the counter `name` on the server's `/metrics`.
async fn metric(server: &Server, name: &str) -> u64 {
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

/// A guesser who knows a token id gets the documented 401 for every wrong
/// secret, never a 429, from any number of addresses, and none of it costs
/// an argon2 verification; the owner's first use (not yet cached) is
/// served at once.
#[tokio::test]
async fn a_guesser_gets_401s_and_never_locks_the_owner_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &base_env(dir.path()));
    put_account(&server, "acct_1", "pro").await;
    let token = token_for(&server, "acct_1").await;
    let verified_before = argon2_verifications(&server).await;
    // Eight client addresses (127.0.0.2 ..= 127.0.0.9), 100 wrong secrets.
    let guessers: Vec<reqwest::Client> = (2..=9)
        .map(|host| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, host]))
                .build()
                .unwrap()
        })
        .collect();
    let mut statuses = Vec::new();
    for i in 0..100 {
        let forged = tokengate_testkit::forge_wrong_secret(&token, i);
        let response = guessers[i % guessers.len()]
            .get(server.url("/api/v1/external_tests/providers"))
            .header("authorization", format!("Bearer {forged}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 401 {
            assert_eq!(response.text().await.unwrap(), UNAUTHORIZED);
        }
        statuses.push(status);
    }
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    assert_eq!(
        argon2_verifications(&server).await,
        verified_before,
        "wrong secrets cost no argon2"
    );
    // The owner, from 127.0.0.1, with the right token: verified at once.
    let response = api(&server, &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(argon2_verifications(&server).await, verified_before + 1);
    server.assert_no_panic();
}

/// The wall clock of the server and of its CLI, stepped by the test: the
/// file `TOKENGATE_TEST_CLOCK_FILE` names holds milliseconds to add (read
/// at every call by a binary built for `cargo test`, whose library has
/// `test-util`; the release binary has no such hook).
struct TestClock(std::path::PathBuf);

impl TestClock {
    /// A clock file in `dir`, not stepped yet, and `env` pointing at it.
    fn new(dir: &Path, env: &mut Vec<(String, String)>) -> Self {
        let path = dir.join("test-clock-offset-ms");
        std::fs::write(&path, "0").unwrap();
        env.push((
            "TOKENGATE_TEST_CLOCK_FILE".into(),
            path.display().to_string(),
        ));
        Self(path)
    }

    /// Sets the processes' clocks to read `at` now (they then run on from
    /// there); returns when that was.
    fn set_to(&self, at: Instant) -> Instant {
        let now = Instant::now();
        let ahead = |a: Instant, b: Instant| {
            i64::try_from(a.saturating_duration_since(b).as_millis()).unwrap()
        };
        std::fs::write(&self.0, (ahead(at, now) - ahead(now, at)).to_string()).unwrap();
        now
    }
}

/// Asks the demo API with `token` when the servers' clock reads `at`;
/// returns the status and how long the answer took.
async fn api_at(server: &Server, clock: &TestClock, token: &str, at: Instant) -> (u16, Duration) {
    let set = clock.set_to(at);
    let status = api(server, token).await.status().as_u16();
    (status, set.elapsed())
}

/// A 2 s grace, from a rotation started at `before` and answered at `after`
/// (on the real clock): on the stepped clock, the old token works until 2 s
/// after `before` at least (probes at 1.5 s and 1.9 s; a refusal only
/// counts once its answer came after 2 s), and no longer than 2 s after
/// `after` (probe at 3 s). No wall time is waited.
async fn assert_two_second_grace(
    server: &Server,
    clock: &TestClock,
    old: &str,
    before: Instant,
    after: Instant,
) {
    for probe in [1500, 1900] {
        let (status, took) =
            api_at(server, clock, old, before + Duration::from_millis(probe)).await;
        assert!(
            status == 200 || Duration::from_millis(probe) + took >= Duration::from_secs(2),
            "the old token got {status} {probe} ms into a 2 s grace"
        );
    }
    let (status, _) = api_at(server, clock, old, after + Duration::from_secs(3)).await;
    assert_eq!(
        status, 401,
        "the old token 3 s after a 2 s grace (a 200 here: is the server binary \
         built without tokengate's `test-util`, so it ignores TOKENGATE_TEST_CLOCK_FILE?)"
    );
    clock.set_to(Instant::now());
}

#[tokio::test]
async fn a_rotation_grace_is_exact_by_the_api_and_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path());
    let clock = TestClock::new(dir.path(), &mut env);
    let server = Server::start(dir.path(), &env);
    put_account(&server, "acct_1", "pro").await;

    let created = create_token(&server, "acct_1").await;
    let old = created["token"].as_str().unwrap();
    assert_eq!(api(&server, old).await.status(), 200);
    let before = Instant::now();
    let response = client()
        .post(server.url(&format!(
            "/admin/tokens/{}/rotate",
            created["id"].as_str().unwrap()
        )))
        .header("authorization", admin_header())
        .json(&json!({ "grace_seconds": 2 }))
        .send()
        .await
        .unwrap();
    let after = Instant::now();
    assert!(response.status().is_success(), "{}", response.status());
    assert_two_second_grace(&server, &clock, old, before, after).await;

    let created = create_token(&server, "acct_1").await;
    let old = created["token"].as_str().unwrap();
    assert_eq!(api(&server, old).await.status(), 200);
    const INVALIDATIONS: &str = "tokengate_cache_invalidations_total";
    let invalidations = metric(&server, INVALIDATIONS).await;
    let before = Instant::now();
    let rotated = cli(
        dir.path(),
        &env,
        &[
            "token",
            "rotate",
            created["id"].as_str().unwrap(),
            "--grace",
            "2s",
        ],
    );
    let after = Instant::now();
    assert!(rotated.status.success(), "{rotated:?}");
    // The server hears of the CLI's change through the change feed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, INVALIDATIONS).await == invalidations {
        assert!(
            Instant::now() < deadline,
            "the server never read the rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_two_second_grace(&server, &clock, old, before, after).await;
}

/// SIGTERM while another process holds the database's write lock (a stuck
/// writer, a long backup): the last-use flush and the window save cannot
/// finish, and the server still exits within `SHUTDOWN_GRACE_SECS`, saying
/// what it could not save.
#[tokio::test]
async fn sigterm_with_a_hung_database_exits_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path());
    env.push(("SHUTDOWN_GRACE_SECS".into(), "2".into()));
    let mut server = Server::start(dir.path(), &env);
    put_account(&server, "acct_1", "pro").await;
    let token = token_for(&server, "acct_1").await;
    assert_eq!(
        api(&server, &token).await.status(),
        200,
        "a last use to flush"
    );

    let url = format!("sqlite://{}", dir.path().join("tokengate.db").display());
    let holder = tokengate::SqliteStore::connect(&url).await.unwrap();
    let mut locked = holder.pool().acquire().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *locked)
        .await
        .unwrap();

    let started = Instant::now();
    let status = server.signal("TERM");
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_millis(4500),
        "exited {took:?} after SIGTERM with a 2 s deadline:\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(log.contains("shutdown deadline"), "{log}");
    sqlx::query("ROLLBACK").execute(&mut *locked).await.unwrap();
}

/// A token at its limit is still at its limit after a graceful restart: a
/// deploy does not hand every client a fresh hour.
#[tokio::test]
async fn a_restart_does_not_reset_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path());
    let mut server = Server::start(dir.path(), &env);
    let response = client()
        .put(server.url("/admin/plans/tiny"))
        .header("authorization", admin_header())
        .json(&json!({ "api_access": true, "requests_per_hour": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    put_account(&server, "acct_1", "tiny").await;
    let token = token_for(&server, "acct_1").await;
    for _ in 0..3 {
        assert_eq!(api(&server, &token).await.status(), 200);
    }
    let before = api(&server, &token).await;
    assert_eq!(before.status(), 429);
    let reset = before.headers()["x-ratelimit-reset"].clone();

    assert!(server.signal("TERM").success());
    let mut server = Server::start(dir.path(), &env);
    let after = api(&server, &token).await;
    assert_eq!(after.status(), 429);
    assert_eq!(after.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(after.headers()["x-ratelimit-reset"], reset);
    assert!(after.headers().contains_key("retry-after"));

    // Used once: a second restart without traffic does not restore them twice
    // (nor lose them: they were saved again at the second shutdown).
    assert!(server.signal("TERM").success());
    let server = Server::start(dir.path(), &env);
    assert_eq!(api(&server, &token).await.status(), 429);
}

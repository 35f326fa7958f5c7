//! Webhooks end to end: the real binary delivers to a real HTTP receiver
//! (`examples/webhook_receiver.py`) that verifies every delivery with the
//! official `standardwebhooks` Python package, not with our own code.
//!
//! Without `clients/.venv` (with `standardwebhooks`) these tests skip
//! loudly, and fail under `TOKENGATE_REQUIRE_CLIENTS=1`. Waits poll the
//! receiver's file with a deadline; retry schedules are a fraction of a
//! second (`WEBHOOK_RETRY_SECS`), so no test sleeps to wait for a retry.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::process::{Server, admin_header, base_env, cli, client};
use crate::support::ADMIN_TOKEN;

const REQUIRE_ENV: &str = "TOKENGATE_REQUIRE_CLIENTS";
const DEADLINE: Duration = Duration::from_secs(30);

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/.venv/bin/python")
}

fn receiver_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/webhook_receiver.py")
}

/// Whether the receiver can run; if not, says so loudly (and fails when required).
fn receiver_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ok {
        let message = format!(
            "*** SKIPPED: webhook test: clients/.venv with standardwebhooks is missing \
             (python3 -m venv clients/.venv && clients/.venv/bin/pip install -r \
             clients/requirements.txt); {REQUIRE_ENV}=1 makes this a failure ***"
        );
        assert!(
            std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
            "{message}"
        );
        eprintln!("{message}");
    }
    ok
}

/// `examples/webhook_receiver.py`, on loopback.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    secret_file: PathBuf,
}

impl Receiver {
    /// Starts the receiver on `port` (0: any), answering `status` to verified deliveries.
    fn start(dir: &Path, port: u16, status: u16) -> Self {
        let out = dir.join("events.jsonl");
        let secret_file = dir.join("secret.txt");
        if !secret_file.exists() {
            std::fs::write(&secret_file, "whsec_AAAA").unwrap();
        }
        let mut child = Command::new(python())
            .arg(receiver_script())
            .args(["--port", &port.to_string()])
            .args(["--secret-file", secret_file.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .args(["--status", &status.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the receiver said {line:?}"));
        Self {
            child,
            port,
            out,
            secret_file,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn set_secret(&self, secret: &str) {
        std::fs::write(&self.secret_file, secret).unwrap();
    }

    /// Every request so far, in order.
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The verified deliveries so far; fails on any that did not verify.
    fn verified(&self) -> Vec<Value> {
        let lines = self.lines();
        for line in &lines {
            assert_eq!(line["verified"], true, "a delivery did not verify: {line}");
        }
        lines
    }

    /// Polls until `done` holds for the verified deliveries, or fails after [`DEADLINE`].
    async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let verified = self.verified();
            if done(&verified) {
                return verified;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {DEADLINE:?}; received {verified:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server whose webhooks may target loopback over http, with a quick
/// outbox poll, a quick expiry sweep and `retry` as the schedule.
fn env(dir: &Path, retry: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir);
    for (k, v) in [
        ("WEBHOOK_ALLOW_PRIVATE_URLS", "true"),
        ("WEBHOOK_RETRY_SECS", retry),
        ("WEBHOOK_POLL_MILLIS", "50"),
        ("WEBHOOK_EXPIRY_SWEEP_SECS", "1"),
        ("WEBHOOK_TIMEOUT_SECS", "2"),
    ]
    .iter()
    .chain(extra)
    {
        env.retain(|(key, _)| key != k);
        env.push(((*k).into(), (*v).into()));
    }
    env
}

/// Many quick retries: a receiver that is down for a few seconds misses nothing.
const PATIENT: &str = "0.1,0.1,0.2,0.2,0.3,0.3,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5";

async fn call(server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client()
        .request(method, server.url(path))
        .header("authorization", admin_header());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ok(server: &Server, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, body) = call(server, method, path, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {body}");
    body["data"].clone()
}

async fn setup_account(server: &Server, account: &str) {
    let plan = json!({"api_access": true, "requests_per_hour": 100});
    ok(server, Method::PUT, "/admin/plans/free", Some(plan.clone())).await;
    ok(server, Method::PUT, "/admin/plans/pro", Some(plan)).await;
    let path = format!("/admin/accounts/{account}");
    ok(server, Method::PUT, &path, Some(json!({"plan": "free"}))).await;
}

/// Registers the receiver; answers (id, secret) and gives the receiver the secret.
async fn register(server: &Server, receiver: &Receiver, events: Option<Value>) -> (String, String) {
    let mut body = json!({"url": receiver.url()});
    if let Some(events) = events {
        body["events"] = events;
    }
    let data = ok(server, Method::POST, "/admin/webhooks", Some(body)).await;
    let secret = data["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{data}");
    receiver.set_secret(&secret);
    (data["id"].as_str().unwrap().to_owned(), secret)
}

async fn create_token(server: &Server, account: &str, body: Value) -> Value {
    let path = format!("/admin/accounts/{account}/tokens");
    ok(server, Method::POST, &path, Some(body)).await
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap().to_owned())
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["webhook_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Fails if any 12-character window of any secret is in any body.
fn assert_no_secret(bodies: &[String], secrets: &[String]) {
    for secret in secrets {
        let chars: Vec<char> = secret.chars().collect();
        for window in chars.windows(12) {
            let window: String = window.iter().collect();
            for body in bodies {
                assert!(
                    !body.contains(&window),
                    "a payload contains part of a secret ({window:?}): {body}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_arrive_signed_verify_and_carry_no_secret() {
    if !receiver_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 204);
    let server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    setup_account(&server, "acct").await;
    let (webhook_id, webhook_secret) = register(&server, &receiver, None).await;

    let created = create_token(&server, "acct", json!({"name": "CI"})).await;
    let first_id = created["id"].as_str().unwrap().to_owned();
    let rotate = format!("/admin/tokens/{first_id}/rotate");
    let rotated = ok(
        &server,
        Method::POST,
        &rotate,
        Some(json!({"grace_seconds": 60})),
    )
    .await;
    let second_id = rotated["id"].as_str().unwrap().to_owned();
    ok(
        &server,
        Method::DELETE,
        &format!("/admin/tokens/{second_id}"),
        None,
    )
    .await;
    let leaked = create_token(&server, "acct", json!({"name": "leaky"})).await;
    let leak = json!({"tokens": [leaked["token"]], "url": "https://example.com/paste/1", "source": "support"});
    ok(&server, Method::POST, "/admin/leaks", Some(leak)).await;
    ok(
        &server,
        Method::PUT,
        "/admin/accounts/acct",
        Some(json!({"plan": "pro"})),
    )
    .await;

    let events = receiver
        .wait_for("seven lifecycle events", |events| events.len() >= 7)
        .await;
    // Events of different tokens may arrive in any order (a batch is sent
    // concurrently); each is found by what it is about.
    let mut kinds = types(&events);
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "account.plan_changed",
            "token.created",
            "token.created",
            "token.revoked",
            "token.revoked",
            "token.revoked",
            "token.rotated",
        ]
    );
    let find = |kind: &str, token: &Value| -> Value {
        events
            .iter()
            .map(|e| e["event"].clone())
            .find(|e| e["type"] == kind && (token.is_null() || e["data"]["token"]["id"] == *token))
            .unwrap_or_else(|| panic!("no {kind} for {token}: {events:#?}"))["data"]
            .clone()
    };
    let first = json!(first_id);
    let second = json!(second_id);
    let data = find("token.created", &first);
    assert_eq!(data["token"]["name"], "CI");
    assert_eq!(data["token"]["hint"], created["hint"]);
    assert_eq!(data["account_id"], "acct");
    assert_eq!(data["actor"], "admin");
    assert_eq!(find("token.rotated", &first)["new_token_id"], second);
    let data = find("token.revoked", &first);
    assert_eq!(data["reason"], "rotated");
    assert!(data["old_token_stops_at"].is_string(), "{data}");
    assert_eq!(find("token.revoked", &second)["reason"], "revoked");
    let data = find("token.revoked", &leaked["id"]);
    assert_eq!(data["reason"], "leaked");
    assert_eq!(data["leak"]["url"], "https://example.com/paste/1");
    assert_eq!(data["leak"]["source"], "support");
    let data = find("account.plan_changed", &Value::Null);
    assert_eq!(
        (data["from"].clone(), data["to"].clone()),
        (json!("free"), json!("pro"))
    );
    for event in &events {
        let payload = &event["event"];
        assert!(payload["timestamp"].is_string(), "{payload}");
        assert!(event["webhook_id"].as_str().unwrap().starts_with("msg_"));
        assert!(event["signature"].as_str().unwrap().starts_with("v1,"));
    }
    let unique: HashSet<String> = ids(&events).into_iter().collect();
    assert_eq!(unique.len(), events.len(), "one webhook-id per event");

    // A rotated secret: both signatures for 24 h, so a receiver still on
    // the old secret verifies, and so does one on the new.
    let path = format!("/admin/webhooks/{webhook_id}/rotate-secret");
    let (status, rotated_secret) = call(&server, Method::POST, &path, None).await;
    assert_eq!(status, 201, "{rotated_secret}");
    let new_secret = rotated_secret["data"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_secret, webhook_secret);
    ok(
        &server,
        Method::PUT,
        "/admin/accounts/acct",
        Some(json!({"plan": "free"})),
    )
    .await;
    let events = receiver
        .wait_for("an event after the rotation", |e| e.len() >= 8)
        .await;
    let signatures = events[7]["signature"].as_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    receiver.set_secret(&new_secret);
    ok(
        &server,
        Method::PUT,
        "/admin/accounts/acct",
        Some(json!({"plan": "pro"})),
    )
    .await;
    let events = receiver
        .wait_for("an event verified with the new secret", |e| e.len() >= 9)
        .await;

    // The listing never shows a secret; the attempts are listed.
    let listed = ok(&server, Method::GET, "/admin/webhooks", None).await;
    assert_eq!(listed[0]["id"], webhook_id.as_str());
    assert!(listed[0].get("secret").is_none(), "{listed}");
    assert!(
        listed[0]["previous_secret_expires_at"].is_string(),
        "{listed}"
    );
    let path = format!("/admin/webhooks/{webhook_id}/deliveries");
    let (status, too_many) = call(&server, Method::GET, &format!("{path}?limit=1001"), None).await;
    assert_eq!(
        (status, &too_many["error"]),
        (400, &json!("limit must be from 1 to 1000"))
    );
    let attempts = ok(&server, Method::GET, &path, None).await;
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 9, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a["outcome"] == "delivered" && a["status_code"] == 204)
    );

    let bodies: Vec<String> = events
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_owned())
        .collect();
    let mut secrets = vec![webhook_secret, new_secret, ADMIN_TOKEN.to_owned()];
    // A token's secret part (its id and hint are public, and in payloads).
    for token in [&created["token"], &rotated["token"], &leaked["token"]] {
        secrets.push(token.as_str().unwrap()[24..68].to_owned());
    }
    assert_no_secret(&bodies, &secrets);
    let log = server.log_text();
    assert_no_secret(&[log], &secrets);

    // The endpoint's changes are in the audit log: who, from where, which
    // request, never a secret.
    let audit = ok(&server, Method::GET, "/admin/audit?limit=100", None).await;
    let changes: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["action"].as_str().unwrap().starts_with("webhook."))
        .collect();
    let actions: Vec<&str> = changes
        .iter()
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["webhook.secret_rotated", "webhook.created"],
        "{audit}"
    );
    for event in &changes {
        assert_eq!(event["actor"], "admin", "{event}");
        assert_eq!(event["source_ip"], "127.0.0.1", "{event}");
        assert!(
            event["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{event}"
        );
        assert_eq!(
            event["details"]["webhook_id"],
            webhook_id.as_str(),
            "{event}"
        );
    }
    assert_eq!(changes[1]["details"]["url"], receiver.url().as_str());
    assert_no_secret(&[audit.to_string()], &secrets);
    server.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_was_down_gets_every_event_with_the_same_id() {
    if !receiver_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // First it answers 500 to every (verified) delivery, then it is down.
    let mut receiver = Receiver::start(dir.path(), 0, 500);
    let port = receiver.port;
    let server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    setup_account(&server, "acct").await;
    let (webhook_id, _) = register(&server, &receiver, None).await;
    for name in ["one", "two", "three"] {
        create_token(&server, "acct", json!({"name": name})).await;
    }
    let failed = receiver
        .wait_for("three refused deliveries", |events| {
            ids(events).into_iter().collect::<HashSet<_>>().len() >= 3
        })
        .await;
    let first_ids: BTreeSet<String> = ids(&failed).into_iter().collect();
    receiver.stop();
    let attempts_path = format!("/admin/webhooks/{webhook_id}/deliveries");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let attempts = ok(&server, Method::GET, &attempts_path, None).await;
        let refused = attempts.as_array().unwrap().iter().any(|a| {
            a["status_code"].is_null() && a["outcome"] == "retrying" && a["error"].is_string()
        });
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no attempt while down: {attempts}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    std::fs::remove_file(&receiver.out).unwrap();
    let receiver = Receiver::start(dir.path(), port, 204);
    let events = receiver
        .wait_for("the three events after the receiver came back", |events| {
            ids(events).into_iter().collect::<HashSet<_>>().len() >= 3
        })
        .await;
    let again: BTreeSet<String> = ids(&events).into_iter().collect();
    assert_eq!(again, first_ids, "the same webhook-id on every attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_fails_after_the_last_retry_and_is_counted() {
    if !receiver_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 500);
    let server = Server::start(dir.path(), &env(dir.path(), "0.05,0.05", &[]));
    setup_account(&server, "acct").await;
    let (webhook_id, _) = register(&server, &receiver, None).await;
    create_token(&server, "acct", json!({"name": "doomed"})).await;
    let path = format!("/admin/webhooks/{webhook_id}/deliveries");
    let deadline = Instant::now() + DEADLINE;
    let attempts = loop {
        let attempts = ok(&server, Method::GET, &path, None).await;
        if attempts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["outcome"] == "failed")
        {
            break attempts;
        }
        assert!(Instant::now() < deadline, "never failed: {attempts}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let outcomes: Vec<&str> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "retrying", "retrying"], "newest first");
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["attempt"], 3);
    let metrics = client().get(server.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("tokengate_webhook_attempts_total{outcome=\"failed\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert_eq!(receiver.verified().len(), 3, "one attempt and two retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_undelivered_events_loses_none() {
    if !receiver_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on yet: the receiver starts after the crash.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    setup_account(&server, "acct").await;
    let data = ok(
        &server,
        Method::POST,
        "/admin/webhooks",
        Some(json!({"url": url})),
    )
    .await;
    let secret = data["secret"].as_str().unwrap().to_owned();
    for i in 0..5 {
        create_token(&server, "acct", json!({"name": format!("t{i}")})).await;
    }
    server.signal("KILL");
    drop(server);
    let receiver_dir = dir.path().join("receiver");
    std::fs::create_dir(&receiver_dir).unwrap();
    std::fs::write(receiver_dir.join("secret.txt"), &secret).unwrap();
    let receiver = Receiver::start(&receiver_dir, port, 204);
    let server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    let events = receiver
        .wait_for("five events after the restart", |events| {
            ids(events).into_iter().collect::<HashSet<_>>().len() >= 5
        })
        .await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["data"]["token"]["name"].as_str().unwrap())
        .collect();
    for i in 0..5 {
        assert!(names.contains(&format!("t{i}").as_str()), "{names:?}");
    }
    server.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_deliver_each_event_once() {
    if !receiver_available() {
        return;
    }
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 204);
    let pg = [("DATABASE_URL", database.url.as_str())];
    let a = Server::start(dir.path(), &env(dir.path(), PATIENT, &pg));
    let b = Server::start(dir.path(), &env(dir.path(), PATIENT, &pg));
    setup_account(&a, "acct").await;
    let (webhook_id, _) = register(&a, &receiver, None).await;
    for i in 0..12 {
        let server = if i % 2 == 0 { &a } else { &b };
        create_token(server, "acct", json!({"name": format!("t{i}")})).await;
    }
    receiver
        .wait_for("twelve events", |events| events.len() >= 12)
        .await;
    // Both instances poll every 50 ms: a few more polls each, then count.
    let path = format!("/admin/webhooks/{webhook_id}/deliveries");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let attempts = ok(&b, Method::GET, &path, None).await;
        if attempts.as_array().unwrap().len() >= 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attempts not recorded: {attempts}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let events = receiver.verified();
    let unique: HashSet<String> = ids(&events).into_iter().collect();
    assert_eq!(events.len(), 12, "each event delivered once: {events:#?}");
    assert_eq!(unique.len(), 12);
    let attempts = ok(&a, Method::GET, &path, None).await;
    assert_eq!(attempts.as_array().unwrap().len(), 12, "{attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_in_three_days_produces_one_expiring_event() {
    if !receiver_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 204);
    let mut server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    setup_account(&server, "acct").await;
    let only = json!(["token.expiring", "token.expired"]);
    register(&server, &receiver, Some(only)).await;
    let in_days = |days: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let soon = create_token(
        &server,
        "acct",
        json!({"name": "soon", "expires_at": in_days(3)}),
    )
    .await;
    create_token(
        &server,
        "acct",
        json!({"name": "later", "expires_at": in_days(30)}),
    )
    .await;
    let events = receiver.wait_for("token.expiring", |e| !e.is_empty()).await;
    assert_eq!(types(&events), ["token.expiring"]);
    let data = &events[0]["event"]["data"];
    assert_eq!(data["token"]["id"], soon["id"]);
    assert_eq!(data["threshold"], "7d");
    assert!(data["expires_at"].is_string(), "{data}");

    // After a restart the sweep runs again: the reminder is not repeated.
    server.signal("TERM");
    drop(server);
    let server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    let marker = create_token(
        &server,
        "acct",
        json!({"name": "marker", "expires_at": in_days(2)}),
    )
    .await;
    let events = receiver
        .wait_for("the marker's reminder", |e| e.len() >= 2)
        .await;
    assert_eq!(events[1]["event"]["data"]["token"]["id"], marker["id"]);
    // The sweep that found the marker would have found `soon` again.
    let reminders: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["data"]["token"]["id"] == soon["id"])
        .collect();
    assert_eq!(reminders.len(), 1, "{events:#?}");
    // The endpoint asked for expiry events only: no token.created.
    assert!(
        types(&events).iter().all(|t| t == "token.expiring"),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_urls_are_refused_without_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &base_env(dir.path()));
    for (url, says) in [
        ("http://127.0.0.1:9000/hook", "https://"),
        ("https://127.0.0.1/hook", "not a public address"),
        ("https://localhost/hook", "not a public address"),
        (
            "https://169.254.169.254/latest/meta-data",
            "not a public address",
        ),
        ("https://10.0.0.1/hook", "not a public address"),
        ("https://[::1]/hook", "not a public address"),
        ("https://[::ffff:127.0.0.1]/hook", "not a public address"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("ftp://example.com/hook", "https://"),
    ] {
        let (status, body) = call(
            &server,
            Method::POST,
            "/admin/webhooks",
            Some(json!({"url": url})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["success"], false);
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{url}: {error}");
    }
    let bad_event = json!({"url": "https://example.com/hook", "events": ["token.exploded"]});
    let (status, body) = call(&server, Method::POST, "/admin/webhooks", Some(bad_event)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("token.exploded"));
    let listed = ok(&server, Method::GET, "/admin/webhooks", None).await;
    assert_eq!(listed, json!([]), "nothing was registered");
    let anonymous = client()
        .get(server.url("/admin/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, _) = call(&server, Method::DELETE, "/admin/webhooks/whe_nope", None).await;
    assert_eq!(status, 404);
    drop(server);

    // With the setting, the same loopback URL is accepted.
    let dir = tempfile::tempdir().unwrap();
    let allowed = [("WEBHOOK_ALLOW_PRIVATE_URLS", "true")];
    let mut env = base_env(dir.path());
    env.extend(allowed.iter().map(|(k, v)| ((*k).into(), (*v).into())));
    let server = Server::start(dir.path(), &env);
    let body = json!({"url": "http://127.0.0.1:9000/hook"});
    let (status, body) = call(&server, Method::POST, "/admin/webhooks", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap();
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/admin/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[test]
fn the_cli_manages_endpoints_and_shows_a_secret_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path());
    assert!(cli(dir.path(), &env, &["migrate"]).status.success());
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let refused = cli(
        dir.path(),
        &env,
        &["webhooks", "add", "https://127.0.0.1/hook"],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("WEBHOOK_ALLOW_PRIVATE_URLS"),
        "{}",
        text(&refused.stderr)
    );
    assert!(refused.stdout.is_empty());

    env.push(("WEBHOOK_ALLOW_PRIVATE_URLS".into(), "true".into()));
    let args = [
        "webhooks",
        "add",
        "http://127.0.0.1:9/hook",
        "--event",
        "token.revoked",
    ];
    let added = cli(dir.path(), &env, &args);
    assert!(added.status.success(), "{}", text(&added.stderr));
    let secret = text(&added.stdout).trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let stderr = text(&added.stderr);
    assert!(stderr.contains("only time"), "{stderr}");
    let id = stderr
        .split_whitespace()
        .find(|word| word.starts_with("whe_"))
        .unwrap()
        .to_owned();

    let listed = text(&cli(dir.path(), &env, &["webhooks", "list"]).stdout);
    assert!(
        listed.contains(&id) && listed.contains("token.revoked"),
        "{listed}"
    );
    assert!(!listed.contains(&secret[6..]), "{listed}");

    let rotated = cli(dir.path(), &env, &["webhooks", "rotate-secret", &id]);
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let new_secret = text(&rotated.stdout).trim().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    let deliveries = cli(dir.path(), &env, &["webhooks", "deliveries", &id]);
    assert!(deliveries.status.success(), "{}", text(&deliveries.stderr));
    assert!(
        text(&deliveries.stdout).starts_with("AT "),
        "{}",
        text(&deliveries.stdout)
    );
    let too_few = cli(
        dir.path(),
        &env,
        &["webhooks", "deliveries", &id, "--limit", "0"],
    );
    assert_eq!(too_few.status.code(), Some(1));
    assert!(
        text(&too_few.stderr).contains("--limit must be from 1 to 1000"),
        "{}",
        text(&too_few.stderr)
    );

    assert!(
        cli(dir.path(), &env, &["webhooks", "remove", &id])
            .status
            .success()
    );
    let again = cli(dir.path(), &env, &["webhooks", "remove", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("no webhook"),
        "{}",
        text(&again.stderr)
    );

    // Each change is audited as the CLI's, once (the refused removal is not).
    let audit = cli(dir.path(), &env, &["audit", "--json"]);
    assert!(audit.status.success(), "{}", text(&audit.stderr));
    let events: Vec<Value> = text(&audit.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let changes: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            let action = e["action"].as_str().unwrap();
            let actor = e["actor"].as_str().unwrap();
            (
                action,
                actor,
                e["details"]["webhook_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("webhook.deleted", "cli", id.as_str()),
            ("webhook.secret_rotated", "cli", id.as_str()),
            ("webhook.created", "cli", id.as_str()),
        ]
    );
    assert_no_secret(&[text(&audit.stdout)], &[secret, new_secret]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_refusal_of_an_hour_sends_one_limit_reached() {
    if !receiver_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 204);
    let mut server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    let tiny = json!({"api_access": true, "requests_per_hour": 1});
    ok(&server, Method::PUT, "/admin/plans/tiny", Some(tiny)).await;
    let account = json!({"plan": "tiny"});
    ok(&server, Method::PUT, "/admin/accounts/busy", Some(account)).await;
    register(&server, &receiver, Some(json!(["account.limit_reached"]))).await;
    let created = create_token(&server, "busy", json!({"name": "hot"})).await;
    let bearer = format!("Bearer {}", created["token"].as_str().unwrap());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client()
            .get(server.url("/api/v1/external_tests"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 429, 429]);
    // The refusals reach the database with the usage counts (every 10 s, and
    // at shutdown): a restart writes them now, then delivers the event.
    server.signal("TERM");
    drop(server);
    let _server = Server::start(dir.path(), &env(dir.path(), PATIENT, &[]));
    let events = receiver
        .wait_for("account.limit_reached", |e| !e.is_empty())
        .await;
    assert_eq!(types(&events), ["account.limit_reached"]);
    let data = &events[0]["event"]["data"];
    assert_eq!(data["token"]["id"], created["id"]);
    assert_eq!(data["account_id"], "busy");
    assert!(data["hour"].is_string(), "{data}");
}

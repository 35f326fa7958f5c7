//! Crash safety: SIGKILL the server while tokens are being created
//! concurrently, restart it on the same database, and check that every token
//! whose `201` reached the client still authenticates and the database is intact.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::{Server, admin_header, base_env, client};
use serde_json::{Value, json};

const TASKS: usize = 8;
const ROUNDS: usize = 5;
/// Acknowledged tokens per round before the kill.
const PER_ROUND: usize = 40;

/// What the creating tasks saw.
#[derive(Default)]
struct Tally {
    /// `(id, token)` of every `201` whose body arrived.
    acked: Mutex<Vec<(String, String)>>,
    /// Requests that failed after being sent (in flight when the server died).
    lost_in_flight: AtomicUsize,
    /// Any status other than 201 before the kill.
    unexpected: Mutex<Vec<String>>,
}

/// Set just before SIGKILL; `stop` just after.
#[derive(Default)]
struct Flags {
    killing: AtomicBool,
    stop: AtomicBool,
}

async fn create_tokens(
    server: String,
    round: usize,
    task: usize,
    flags: Arc<Flags>,
    tally: Arc<Tally>,
) {
    let http = client();
    let mut i = 0;
    while !flags.stop.load(Ordering::Acquire) {
        i += 1;
        let before_kill = !flags.killing.load(Ordering::Acquire);
        let sent = http
            .post(format!("{server}/admin/accounts/acct_crash/tokens"))
            .header("authorization", admin_header())
            .json(&json!({ "name": format!("crash {round}/{task}/{i}") }))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                if before_kill && !e.is_connect() {
                    tally.lost_in_flight.fetch_add(1, Ordering::Relaxed);
                }
                // The server is gone: wait for the stop flag.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let status = response.status().as_u16();
        match response.json::<Value>().await {
            Ok(body) if status == 201 => {
                let data = &body["data"];
                tally.acked.lock().unwrap().push((
                    data["id"].as_str().unwrap().to_owned(),
                    data["token"].as_str().unwrap().to_owned(),
                ));
            }
            Ok(body) if before_kill => {
                tally
                    .unexpected
                    .lock()
                    .unwrap()
                    .push(format!("{status}: {body}"));
            }
            Ok(_) => {}
            // Headers arrived, the body did not: not acknowledged.
            Err(_) => {
                if before_kill {
                    tally.lost_in_flight.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn integrity_check(dir: &Path) -> Vec<String> {
    let url = format!("sqlite://{}", dir.join("tokengate.db").display());
    let store = tokengate::SqliteStore::connect(&url).await.unwrap();
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(integrity, ["ok"], "PRAGMA integrity_check");
    let orphans = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(
        orphans.is_empty(),
        "foreign key violations: {}",
        orphans.len()
    );
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM api_tokens")
        .fetch_all(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_token_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path());
    let tally = Arc::new(Tally::default());

    for round in 0..ROUNDS {
        let mut server = Server::start(dir.path(), &env);
        let response = client()
            .put(server.url("/admin/accounts/acct_crash"))
            .header("authorization", admin_header())
            .json(&json!({ "plan": "pro" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);

        let flags = Arc::new(Flags::default());
        let target = tally.acked.lock().unwrap().len() + PER_ROUND;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                tokio::spawn(create_tokens(
                    server.base.clone(),
                    round,
                    task,
                    Arc::clone(&flags),
                    Arc::clone(&tally),
                ))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while tally.acked.lock().unwrap().len() < target {
            assert!(Instant::now() < deadline, "tokens are not being created");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Mid-run: all eight tasks are still sending.
        flags.killing.store(true, Ordering::Release);
        let status = tokio::task::block_in_place(|| server.signal("KILL"));
        assert!(!status.success(), "SIGKILL: {status}");
        flags.stop.store(true, Ordering::Release);
        for task in tasks {
            task.await.unwrap();
        }
        let unexpected = tally.unexpected.lock().unwrap().clone();
        assert!(unexpected.is_empty(), "before the kill: {unexpected:?}");
        server.assert_no_panic();

        // The database as the killed process left it.
        let stored = integrity_check(dir.path()).await;
        for (id, _) in tally.acked.lock().unwrap().iter() {
            assert!(
                stored.contains(id),
                "acknowledged token {id} is not in the database"
            );
        }
    }

    let acked = tally.acked.lock().unwrap().clone();
    let lost = tally.lost_in_flight.load(Ordering::Relaxed);
    eprintln!(
        "{} tokens acknowledged over {ROUNDS} SIGKILLs; {lost} requests were in flight at a kill",
        acked.len()
    );
    assert!(
        lost > 0,
        "no request was in flight at any of the kills: the kills were not mid-run"
    );

    let server = Server::start(dir.path(), &env);
    let http = client();
    for (id, token) in &acked {
        let response = http
            .get(server.url("/api/v1/external_tests"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "token {id} after the kills");
    }
    server.assert_no_panic();
}

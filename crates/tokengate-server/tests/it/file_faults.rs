//! Real-file faults under a running server: the SQLite files are destroyed in
//! place while the server has them open. Tokens that need the database must
//! get `503 Service temporarily unavailable` (never 401), the admin API too;
//! the server logs the cause, does not panic, keeps answering `/health`, and
//! a token it has already verified keeps working from its cache.
//!
//! Why in place, and why the `-shm` header too: a SQLite connection in WAL mode
//! keeps its page cache for as long as the WAL index header in `-shm` is
//! unchanged, and a file renamed over the database is never seen by open
//! connections (they keep the old inode). Overwriting the bytes of the very
//! files the server has open, including the `-shm` header, makes every
//! connection's next read rebuild its view from the damaged files, so every
//! query fails deterministically. (`chmod` would not do: the tests run as
//! root. The `-shm` file is overwritten, never truncated: it is mapped into
//! the server's memory, and truncating it would kill the server with SIGBUS.)

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use crate::process::{Server, admin_header, base_env, cli_within, client};
use crate::support::UNAVAILABLE;
use serde_json::{Value, json};

/// How the database files are damaged.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The database, WAL and shared-memory files overwritten with random bytes.
    Garbage,
    /// The database and WAL truncated to zero bytes, the `-shm` header garbled.
    Truncated,
}

/// Fills the first `len` bytes of `path` (keeping the file and its inode) with
/// pseudo-random bytes.
fn overwrite(path: &Path, len: u64, seed: u64) {
    let mut file = OpenOptions::new().write(true).open(path).unwrap();
    let mut state = seed;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
}

fn damage(dir: &Path, fault: Fault) {
    let db = dir.join("tokengate.db");
    let wal = dir.join("tokengate.db-wal");
    let shm = dir.join("tokengate.db-shm");
    for path in [&db, &wal, &shm] {
        assert!(
            path.exists(),
            "{} exists while the server runs",
            path.display()
        );
    }
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    match fault {
        Fault::Garbage => {
            overwrite(&db, size(&db).max(4096), 0x1234_5678_9abc_def1);
            overwrite(&wal, size(&wal).max(4096), 0x0fed_cba9_8765_4321);
            overwrite(&shm, size(&shm), 0x5555_aaaa_3333_cccc);
        }
        Fault::Truncated => {
            for path in [&db, &wal] {
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            // The WAL index header (two copies and the checkpoint info).
            overwrite(&shm, 136, 0x7777_1111_2222_9999);
        }
    }
}

async fn admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> reqwest::Response {
    client()
        .request(method, server.url(path))
        .header("authorization", admin_header())
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn create_token(server: &Server) -> String {
    let response = admin(
        server,
        reqwest::Method::POST,
        "/admin/accounts/acct_fault/tokens",
        json!({ "name": "CI" }),
    )
    .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn api(server: &Server, token: &str) -> (u16, String) {
    let response = client()
        .get(server.url("/api/v1/external_tests"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn status_of(server: &Server, path: &str) -> u16 {
    client()
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn database_destroyed_under_a_running_server(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &base_env(dir.path()));
    let response = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/accounts/acct_fault",
        json!({ "plan": "pro" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let cached = create_token(&server).await;
    assert_eq!(api(&server, &cached).await.0, 200, "verified and cached");
    // Known to this server (it created them), never verified: not cached.
    let mut uncached = Vec::new();
    for _ in 0..5 {
        uncached.push(create_token(&server).await);
    }
    // Well formed, but an id this server has never seen.
    let (_, unknown) = tokengate::test_util::mint(&tokengate::TokenFormat::default());

    damage(dir.path(), fault);

    for token in &uncached {
        let (status, body) = api(&server, token).await;
        assert_eq!(
            status, 503,
            "{fault:?}: an uncached token during the fault: {body}"
        );
        assert_eq!(body, UNAVAILABLE, "{fault:?}");
    }
    let (status, body) = api(&server, &unknown).await;
    assert_eq!(
        status, 503,
        "{fault:?}: an unknown id during the fault: {body}"
    );
    assert_eq!(body, UNAVAILABLE);
    // Malformed tokens need no I/O: still the 401.
    assert_eq!(api(&server, "iit_nonsense").await.0, 401);
    // Readiness reads a real table, so a load balancer stops sending traffic.
    assert_eq!(status_of(&server, "/ready").await, 503, "{fault:?}: /ready");
    // A token verified before the fault is served from the cache.
    assert_eq!(
        api(&server, &cached).await.0,
        200,
        "{fault:?}: cached token"
    );

    // The admin API: the same 503 envelope, for reads and writes.
    for (method, path, body) in [
        (
            reqwest::Method::GET,
            "/admin/accounts/acct_fault",
            Value::Null,
        ),
        (
            reqwest::Method::GET,
            "/admin/accounts/acct_fault/tokens",
            Value::Null,
        ),
        (
            reqwest::Method::POST,
            "/admin/accounts/acct_fault/tokens",
            json!({ "name": "during the fault" }),
        ),
        (
            reqwest::Method::PUT,
            "/admin/accounts/acct_other",
            json!({ "plan": "pro" }),
        ),
    ] {
        let response = admin(&server, method.clone(), path, body).await;
        assert_eq!(response.status(), 503, "{fault:?}: {method} {path}");
        assert_eq!(response.text().await.unwrap(), UNAVAILABLE);
    }

    assert_eq!(status_of(&server, "/health").await, 200);
    assert!(server.is_running(), "{fault:?}: the server died");
    server.assert_no_panic();
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("store unavailable")),
        "{fault:?}: no error line in the log:\n{log}"
    );
}

#[tokio::test]
async fn database_overwritten_with_garbage_gives_503_not_401() {
    database_destroyed_under_a_running_server(Fault::Garbage).await;
}

#[tokio::test]
async fn database_truncated_gives_503_not_401() {
    database_destroyed_under_a_running_server(Fault::Truncated).await;
}

/// The database file deleted under a running server (a cleanup script, an
/// operator in the wrong directory): the server's connections would go on
/// writing to the deleted file, so every write must be refused (503, never a
/// 201 that is lost), readiness fails, and one error line says why. A
/// restart then refuses to create a new empty database in its place unless
/// told to (`CREATE_DB`), and a new one does not replay the old WAL.
#[tokio::test]
async fn a_deleted_database_fails_readiness_and_writes_and_is_not_silently_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path());
    let mut server = Server::start(dir.path(), &env);
    let response = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/accounts/acct_fault",
        json!({ "plan": "pro" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let cached = create_token(&server).await;
    assert_eq!(api(&server, &cached).await.0, 200);
    assert_eq!(status_of(&server, "/ready").await, 200);

    std::fs::remove_file(dir.path().join("tokengate.db")).unwrap();

    for _ in 0..3 {
        let response = client().get(server.url("/ready")).send().await.unwrap();
        assert_eq!(response.status(), 503, "/ready after the delete");
        assert_eq!(response.text().await.unwrap(), UNAVAILABLE);
        let response = admin(
            &server,
            reqwest::Method::POST,
            "/admin/accounts/acct_fault/tokens",
            json!({ "name": "after the delete" }),
        )
        .await;
        assert_eq!(response.status(), 503, "never a 201 that is lost");
        assert_eq!(response.text().await.unwrap(), UNAVAILABLE);
    }
    // Reads go on from the open file: a verified token keeps working.
    assert_eq!(api(&server, &cached).await.0, 200);
    assert_eq!(status_of(&server, "/health").await, 200);
    let log = server.log_text();
    // Noticed once, where it happened (each refused request is logged too).
    let noticed: Vec<_> = log
        .lines()
        .filter(|l| l.contains("ERROR tokengate::store") && l.contains("was deleted while in use"))
        .collect();
    assert_eq!(noticed.len(), 1, "one line saying why:\n{log}");
    assert_eq!(
        log.matches("readiness check failed").count(),
        1,
        "readiness failing is logged when it starts:\n{log}"
    );
    assert!(noticed[0].contains("tokengate.db"), "{}", noticed[0]);
    assert!(server.signal("TERM").success());
    server.assert_no_panic();

    // A restart would create an empty database where the old one was.
    let refused = cli_within(dir.path(), &env, &["serve"], Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: no database at ")
            && stderr.contains("tokengate.db")
            && stderr.contains("--create-db"),
        "{stderr}"
    );
    assert!(!dir.path().join("tokengate.db").exists());

    // Asked for: a new, empty database (the old WAL set aside, not replayed).
    let mut env = env;
    env.push(("CREATE_DB".into(), "true".into()));
    let server = Server::start(dir.path(), &env);
    assert!(
        server.log_text().contains("creating a new, empty database"),
        "{}",
        server.log_text()
    );
    assert_eq!(status_of(&server, "/ready").await, 200);
    assert_eq!(api(&server, &cached).await.0, 401, "the old token is gone");
    let response = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/accounts/acct_fault",
        json!({ "plan": "pro" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let fresh = create_token(&server).await;
    assert_eq!(api(&server, &fresh).await.0, 200);
}

//! PostgreSQL and Redis for the scale-out tests, on their standard loopback ports.
//!
//! Without them, a test prints a loud SKIPPED line and returns; with
//! `TOKENGATE_REQUIRE_BACKENDS=1` (set by `.ci/run`) it fails instead.

use std::time::Duration;

use sqlx::Connection;

fn required() -> bool {
    std::env::var("TOKENGATE_REQUIRE_BACKENDS").is_ok_and(|v| v == "1")
}

fn unavailable(what: &str, why: &str) {
    assert!(
        !required(),
        "{what} is required (TOKENGATE_REQUIRE_BACKENDS=1) but unreachable: {why}"
    );
    eprintln!(
        "\n*** SKIPPED: {what} unreachable ({why}). Start it, or set TOKENGATE_TEST_POSTGRES_URL / TOKENGATE_TEST_REDIS_URL. CI sets TOKENGATE_REQUIRE_BACKENDS=1 and fails instead. ***\n"
    );
}

/// The server's admin URL (a database we may create databases from).
pub fn postgres_admin_url() -> String {
    std::env::var("TOKENGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis the backend tests use (`TOKENGATE_TEST_REDIS_URL`, default the standard loopback port).
pub fn redis_url() -> String {
    std::env::var("TOKENGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh, empty database, dropped when the guard goes.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its connection URL.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// A store on this database, every migration applied.
    pub async fn migrated_store(&self) -> tokengate::PostgresStore {
        let store = tokengate::PostgresStore::connect(&self.url)
            .await
            .expect("connect to the test database");
        tokengate::TokenStore::migrate(&store)
            .await
            .expect("migrate the test database");
        store
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = postgres_admin_url();
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut connection)
                            .await;
                }
            });
        })
        .join();
    }
}

/// A new database on the test PostgreSQL, or `None` (after a loud skip notice).
pub async fn postgres() -> Option<TestDatabase> {
    let admin = postgres_admin_url();
    let connected =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin)).await;
    let mut connection = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            unavailable("PostgreSQL", &e.to_string());
            return None;
        }
        Err(_) => {
            unavailable("PostgreSQL", "connection timed out");
            return None;
        }
    };
    let name = format!(
        "tokengate_test_{}",
        tokengate::TokenId::random()
            .to_string()
            .to_lowercase()
            .replace(['-', '_'], "x")
    );
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut connection)
        .await
        .expect("create a test database");
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    Some(TestDatabase {
        url: format!("{base}/{name}"),
        name,
    })
}

/// The test Redis URL if it answers PING, or `None` (after a loud skip notice).
pub async fn redis() -> Option<String> {
    let url = redis_url();
    let result = async {
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(5), result).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => {
            unavailable("Redis", &e.to_string());
            None
        }
        Err(_) => {
            unavailable("Redis", "timed out");
            None
        }
    }
}

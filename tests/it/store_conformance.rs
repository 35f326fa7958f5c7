//! One suite, every `TokenStore`: SQLite always, PostgreSQL when reachable
//! (required in CI). The business rules live once, in the gate's management
//! operations; this suite runs them on each backend and checks that the
//! rows, the change feed and the settings come out the same.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use tokengate::{Argon2Params, ManageError, Manager, SqliteStore, TokenGate, TokenId, TokenStore};
use tokengate::{Change, FeedEntry};

fn gate_on(store: Arc<dyn TokenStore>) -> TokenGate {
    TokenGate::builder(store)
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .build()
        .unwrap()
}

async fn changes_after(store: &dyn TokenStore, seq: i64) -> Vec<FeedEntry> {
    store.changes_after(seq, 1000).await.unwrap()
}

async fn conformance(store: Arc<dyn TokenStore>) {
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "migrations are idempotent"
    );
    store.ping().await.unwrap();
    let gate = gate_on(Arc::clone(&store));
    let latest_before = store.latest_change().await.unwrap();

    // Plans: seeded, upserted, listed by name.
    let plans = Manager::new(&gate).plans().await.unwrap();
    let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["enterprise", "free", "pro"]);
    let pro = plans.iter().find(|p| p.name == "pro").unwrap();
    assert!(pro.api_access);
    assert_eq!(pro.requests_per_hour, 1000);
    let team = Manager::new(&gate)
        .set_plan(&tokengate::Plan::new("team", true, 50))
        .await
        .unwrap();
    assert!(Manager::new(&gate).plans().await.unwrap().contains(&team));

    // Accounts: an unknown plan is refused with a suggestion; plan changes recorded.
    match Manager::new(&gate).set_account_plan("acct", "Pro").await {
        Err(ManageError::UnknownPlan { closest, .. }) => {
            assert_eq!(closest.as_deref(), Some("pro"))
        }
        other => panic!("{other:?}"),
    }
    let account = Manager::new(&gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    assert_eq!(
        (account.id.as_str(), account.plan.as_str()),
        ("acct", "pro")
    );
    Manager::new(&gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    let moved = Manager::new(&gate)
        .set_account_plan("acct", "team")
        .await
        .unwrap();
    assert_eq!(moved.plan, "team");
    assert_eq!(moved.created_at, account.created_at);

    // Tokens: created with their hash and tag, listed oldest first.
    assert!(matches!(
        Manager::new(&gate).create_token("ghost", "x", None).await,
        Err(ManageError::UnknownAccount(_))
    ));
    let first = Manager::new(&gate)
        .create_token("acct", "ci", None)
        .await
        .unwrap()
        .record;
    let expiry = Manager::new(&gate).now() + Duration::days(30);
    let second = Manager::new(&gate)
        .create_token("acct", "deploy", Some(expiry))
        .await
        .unwrap()
        .record;
    assert_eq!(second.expires_at, Some(expiry));
    // Oldest first; created in the same second, they are in id order.
    let listed = Manager::new(&gate).tokens("acct").await.unwrap();
    let mut expected = [first.id, second.id];
    if first.created_at == second.created_at {
        expected.sort_by_key(|id| id.to_string());
    }
    assert_eq!(listed.iter().map(|t| t.id).collect::<Vec<_>>(), expected);
    let credential = store.find_credential(&first.id).await.unwrap().unwrap();
    assert!(credential.secret_hash.starts_with("$argon2id$"));
    assert!(credential.secret_tag.is_some());
    assert_eq!(credential.plan.name, "team");
    assert!(matches!(
        Manager::new(&gate).tokens("nobody").await,
        Err(ManageError::UnknownAccount(_))
    ));

    // Revocation is idempotent and keeps the first time.
    let revoked = Manager::new(&gate).revoke_token(&first.id).await.unwrap();
    let again = Manager::new(&gate).revoke_token(&first.id).await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(revoked.revoked_reason.as_deref(), Some("revoked"));
    assert!(matches!(
        Manager::new(&gate).revoke_token(&TokenId::random()).await,
        Err(ManageError::UnknownToken(_))
    ));
    let live: Vec<TokenId> = store
        .live_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(live.contains(&second.id) && !live.contains(&first.id));

    // Rotation with grace keeps the earlier expiry (to the millisecond) and
    // names the successor; a second rotation is refused and points to it.
    // The store keeps milliseconds.
    let before = {
        let t = OffsetDateTime::now_utc();
        t - Duration::nanoseconds(i64::from(t.nanosecond() % 1_000_000))
    };
    let (old, rotated) = Manager::new(&gate)
        .rotate_token(&second.id, std::time::Duration::from_secs(3600), None)
        .await
        .unwrap();
    let grace_end = old.expires_at.unwrap();
    assert!(grace_end - before >= Duration::seconds(3600));
    assert!(grace_end - before < Duration::seconds(3601));
    assert_eq!(old.revoked_at, None);
    assert_eq!(old.replaced_by, Some(rotated.record.id));
    assert_eq!(rotated.record.name, "deploy");
    assert_eq!(rotated.record.expires_at, Some(expiry));
    match Manager::new(&gate)
        .rotate_token(&second.id, std::time::Duration::ZERO, None)
        .await
    {
        Err(ManageError::TokenAlreadyRotated { successor, .. }) => {
            assert_eq!(successor, Some(rotated.record.id))
        }
        other => panic!("{other:?}"),
    }
    let (replaced, immediate) = Manager::new(&gate)
        .rotate_token(&rotated.record.id, std::time::Duration::ZERO, None)
        .await
        .unwrap();
    assert!(replaced.revoked_at.is_some());
    assert_eq!(replaced.revoked_reason.as_deref(), Some("rotated"));
    // Rotating a token whose own predecessor is in grace ends that grace.
    let ended = Manager::new(&gate)
        .token(&second.id)
        .await
        .unwrap()
        .unwrap();
    assert!(ended.revoked_at.is_some(), "{ended:?}");
    assert_eq!(ended.replaced_by, Some(rotated.record.id));
    assert!(matches!(
        Manager::new(&gate)
            .rotate_token(&first.id, std::time::Duration::ZERO, None)
            .await,
        Err(ManageError::TokenRevoked(_))
    ));

    // The change feed saw all of it, in order, with the tags of new tokens.
    let feed = changes_after(store.as_ref(), latest_before).await;
    let changes: Vec<Change> = feed.iter().map(|entry| entry.change.clone()).collect();
    assert_eq!(
        changes,
        [
            Change::Plan("team".into()),
            Change::Account("acct".into()),
            Change::Created(first.id),
            Change::Created(second.id),
            Change::Token(first.id),
            Change::Created(rotated.record.id),
            Change::Token(second.id),
            Change::Created(immediate.record.id),
            Change::Token(rotated.record.id),
            Change::Token(second.id),
        ]
    );
    for entry in &feed {
        assert_eq!(
            entry.secret_tag.is_some(),
            matches!(entry.change, Change::Created(_)),
            "{entry:?}"
        );
    }
    assert!(feed.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store.latest_change().await.unwrap(),
        feed.last().unwrap().seq
    );
    assert_eq!(
        store.changes_after(latest_before, 2).await.unwrap().len(),
        2
    );

    // Last use never moves backwards; tags are backfilled only where missing.
    let t = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    store
        .record_last_used(&[(immediate.record.id, t), (TokenId::random(), t)])
        .await
        .unwrap();
    store
        .record_last_used(&[(immediate.record.id, t - Duration::hours(1))])
        .await
        .unwrap();
    let token = Manager::new(&gate)
        .token(&immediate.record.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.last_used_at, Some(t));
    let tag = store
        .find_credential(&immediate.record.id)
        .await
        .unwrap()
        .unwrap()
        .secret_tag;
    store
        .backfill_secret_tag(&immediate.record.id, 7)
        .await
        .unwrap();
    let kept = store.find_credential(&immediate.record.id).await.unwrap();
    assert_eq!(kept.unwrap().secret_tag, tag);

    // Pruning.
    let total = store.changes_after(0, 100_000).await.unwrap().len() as u64;
    let pruned = store
        .prune_changes(OffsetDateTime::now_utc() + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(pruned, total);
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());

    // Plans with account-wide limits; the live-token count behind the cap
    // skips revoked, expired and rotated tokens.
    let capped = tokengate::Plan::new("capped", true, 10)
        .with_account_requests_per_hour(Some(25))
        .with_max_tokens(Some(3));
    Manager::new(&gate).set_plan(&capped).await.unwrap();
    assert!(Manager::new(&gate).plans().await.unwrap().contains(&capped));
    Manager::new(&gate)
        .set_account_plan("capped_acct", "capped")
        .await
        .unwrap();
    let soon = Manager::new(&gate).now() + Duration::seconds(2);
    Manager::new(&gate)
        .create_token("capped_acct", "a", None)
        .await
        .unwrap();
    Manager::new(&gate)
        .create_token("capped_acct", "b", Some(soon))
        .await
        .unwrap();
    let c = Manager::new(&gate)
        .create_token("capped_acct", "c", None)
        .await
        .unwrap();
    assert!(matches!(
        Manager::new(&gate)
            .create_token("capped_acct", "d", None)
            .await,
        Err(ManageError::TooManyTokens { max: 3, .. })
    ));
    // The cap counts a token in its rotation grace: at the cap, a rotation
    // with grace is refused; once `b` has expired, there is room for it.
    let grace = std::time::Duration::from_secs(60);
    assert!(matches!(
        Manager::new(&gate)
            .rotate_token(&c.record.id, grace, None)
            .await,
        Err(ManageError::GraceOverTokenCap { max: 3, .. })
    ));
    gate.step_wall_clock(Duration::seconds(3));
    Manager::new(&gate)
        .rotate_token(&c.record.id, grace, None)
        .await
        .unwrap();
    let mut tx = store.begin_write().await.unwrap();
    let later = OffsetDateTime::now_utc() + Duration::seconds(3);
    assert_eq!(tx.count_live_tokens("capped_acct", later).await.unwrap(), 3);
    drop(tx);
    let credential = store.find_credential(&c.record.id).await.unwrap().unwrap();
    assert_eq!(credential.plan, capped);
    assert_eq!(credential.scopes, ["*"]);

    // Settings, and insert-if-absent (the admin token race).
    assert_eq!(store.get_setting("k").await.unwrap(), None);
    assert!(store.put_setting_if_absent("k", "v0").await.unwrap());
    assert!(!store.put_setting_if_absent("k", "v1").await.unwrap());
    assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("v0"));
    store.put_setting("k", "v2").await.unwrap();
    assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("v2"));
}

/// A failed step rolls the whole operation back: no token without its
/// feed row, no feed row without its token.
async fn a_failed_transaction_leaves_nothing(store: Arc<dyn TokenStore>) {
    let gate = gate_on(Arc::clone(&store));
    Manager::new(&gate)
        .set_account_plan("rollback", "pro")
        .await
        .unwrap();
    let before = store.latest_change().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.record_change(&Change::Plan("pro".into()), OffsetDateTime::now_utc())
        .await
        .unwrap();
    drop(tx);
    assert_eq!(store.latest_change().await.unwrap(), before);
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    assert!(store.migrate().await.unwrap() >= 2);
    conformance(Arc::new(store.clone())).await;
    a_failed_transaction_leaves_nothing(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_in_memory_store_conforms() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    conformance(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let store = tokengate::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    assert!(store.migrate().await.unwrap() >= 2);
    conformance(Arc::new(store.clone())).await;
    a_failed_transaction_leaves_nothing(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_feed_is_in_commit_order_under_concurrent_writers() {
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let store: Arc<dyn TokenStore> = Arc::new(database.migrated_store().await);
    let gate = gate_on(Arc::clone(&store));
    Manager::new(&gate)
        .set_account_plan("acct", "pro")
        .await
        .unwrap();
    // Writers race while a reader follows the feed with a cursor; the reader
    // must end up having seen every creation exactly once.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    let created = Manager::new(&gate)
                        .create_token("acct", &format!("w{w}-{i}"), None)
                        .await
                        .unwrap();
                    ids.push(created.record.id);
                }
                ids
            })
        })
        .collect();
    let reader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                for entry in store.changes_after(cursor, 7).await.unwrap() {
                    cursor = entry.seq;
                    if let Change::Created(id) = entry.change {
                        seen.push(id);
                    }
                }
                if seen.len() == 200 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    let mut seen = reader.await.unwrap();
    assert_eq!(seen.len(), 200, "the reader skipped or repeated rows");
    seen.sort();
    written.sort();
    assert_eq!(seen, written);
}

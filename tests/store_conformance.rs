//! One suite, every `TokenStore`: SQLite always, PostgreSQL when reachable
//! (required in CI). The two must behave the same.

mod common;

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use tokengate::TokenId;
use tokengate::store::{Change, NewToken, Plan, Rotation, SqliteStore, StoreError, TokenStore};

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

fn new_token(account: &str, name: &str, created_at: OffsetDateTime) -> NewToken {
    NewToken {
        id: TokenId::random(),
        account_id: account.into(),
        name: name.into(),
        secret_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        hint: "abcd".into(),
        created_at,
        expires_at: None,
    }
}

async fn conformance(store: Arc<dyn TokenStore>) {
    let t0 = now();
    store.migrate().await.unwrap(); // idempotent
    store.ping().await.unwrap();

    // Plans: seeded, upserted, listed by name.
    let plans = store.list_plans().await.unwrap();
    let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["enterprise", "free", "pro"]);
    assert_eq!(
        store.get_plan("pro").await.unwrap(),
        Some(Plan {
            name: "pro".into(),
            api_access: true,
            requests_per_hour: 1000
        })
    );
    let latest_before = store.latest_change().await.unwrap();
    let team = Plan {
        name: "team".into(),
        api_access: true,
        requests_per_hour: u32::MAX,
    };
    assert_eq!(store.upsert_plan(&team, t0).await.unwrap(), team);
    assert_eq!(store.get_plan("team").await.unwrap(), Some(team.clone()));
    assert_eq!(store.get_plan("nope").await.unwrap(), None);

    // Accounts: unknown plan refused; plan changes reported.
    assert!(matches!(
        store.upsert_account("acct", "nope", t0).await,
        Err(StoreError::UnknownPlan)
    ));
    let (account, changed) = store.upsert_account("acct", "pro", t0).await.unwrap();
    assert!(!changed, "a new account is not a plan change");
    assert_eq!(
        (account.id.as_str(), account.plan.as_str()),
        ("acct", "pro")
    );
    assert_eq!(account.created_at, t0);
    let (_, changed) = store.upsert_account("acct", "pro", t0).await.unwrap();
    assert!(!changed);
    let later = t0 + Duration::seconds(5);
    let (account, changed) = store.upsert_account("acct", "team", later).await.unwrap();
    assert!(changed);
    assert_eq!(account.plan, "team");
    assert_eq!(account.created_at, t0);
    assert_eq!(account.updated_at, later);
    assert_eq!(store.get_account("acct").await.unwrap().unwrap(), account);
    assert_eq!(store.get_account("ghost").await.unwrap(), None);

    // Tokens.
    assert!(matches!(
        store.insert_token(&new_token("ghost", "x", t0)).await,
        Err(StoreError::UnknownAccount)
    ));
    let first = new_token("acct", "CI", t0);
    let record = store.insert_token(&first).await.unwrap();
    assert_eq!(record.id, first.id);
    assert_eq!(record.name, "CI");
    assert_eq!(record.hint, "abcd");
    assert_eq!(record.created_at, t0);
    assert_eq!(
        (record.last_used_at, record.expires_at, record.revoked_at),
        (None, None, None)
    );
    let mut second = new_token("acct", "deploy", t0 + Duration::seconds(1));
    second.expires_at = Some(t0 + Duration::days(30));
    store.insert_token(&second).await.unwrap();
    let listed = store.list_tokens("acct").await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [first.id, second.id]
    );
    assert_eq!(listed[1].expires_at, second.expires_at);
    assert!(matches!(
        store.list_tokens("ghost").await,
        Err(StoreError::UnknownAccount)
    ));
    assert_eq!(store.get_token(&TokenId::random()).await.unwrap(), None);

    // Credentials join the current plan.
    let credential = store.find_credential(&first.id).await.unwrap().unwrap();
    assert_eq!(credential.account_id, "acct");
    assert_eq!(credential.secret_hash, first.secret_hash);
    assert_eq!(credential.plan, team);
    assert!(
        store
            .find_credential(&TokenId::random())
            .await
            .unwrap()
            .is_none()
    );

    // Last use: batched, never backwards.
    let used = t0 + Duration::seconds(10);
    store
        .record_last_used(&[(first.id, used), (TokenId::random(), used)])
        .await
        .unwrap();
    store
        .record_last_used(&[(first.id, t0 + Duration::seconds(3))])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_token(&first.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(used)
    );
    store.record_last_used(&[]).await.unwrap();

    // Revocation: idempotent, first time kept.
    let revoked = store
        .revoke_token(&first.id, "revoked", t0 + Duration::seconds(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(t0 + Duration::seconds(20)));
    assert_eq!(revoked.revoked_reason.as_deref(), Some("revoked"));
    let again = store
        .revoke_token(&first.id, "revoked", t0 + Duration::seconds(99))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(
        store
            .revoke_token(&TokenId::random(), "revoked", t0)
            .await
            .unwrap(),
        None
    );
    let live = store.live_token_ids().await.unwrap();
    assert!(live.contains(&second.id) && !live.contains(&first.id));

    // Rotation with grace keeps the earlier expiry; without grace revokes.
    let rotation = |old: TokenId, grace: i64| Rotation {
        old_id: old,
        new_id: TokenId::random(),
        new_secret_hash: "$argon2id$v=19$m=64,t=1,p=1$bmV3c2FsdA$bmV3aGFzaA".into(),
        new_hint: "wxyz".into(),
        new_expires_at: None,
        now: t0 + Duration::seconds(30),
        old_stops_at: t0 + Duration::seconds(30 + grace),
    };
    let graceful = rotation(second.id, 3600);
    let rotated = store.rotate_token(&graceful).await.unwrap();
    assert_eq!(rotated.old.expires_at, Some(t0 + Duration::seconds(3630)));
    assert_eq!(rotated.old.revoked_at, None);
    assert_eq!(rotated.new.id, graceful.new_id);
    assert_eq!(
        (rotated.new.account_id.as_str(), rotated.new.name.as_str()),
        ("acct", "deploy")
    );
    // The successor keeps the old token's own expiry, not the grace deadline.
    assert_eq!(rotated.new.expires_at, second.expires_at);
    assert_eq!(rotated.old.revoked_reason.as_deref(), Some("rotated"));
    assert!(matches!(
        store.rotate_token(&rotation(second.id, 60)).await,
        Err(StoreError::TokenAlreadyRotated)
    ));
    let mut short = new_token("acct", "short", t0);
    short.expires_at = Some(t0 + Duration::seconds(10));
    store.insert_token(&short).await.unwrap();
    assert!(matches!(
        store.rotate_token(&rotation(short.id, 0)).await,
        Err(StoreError::TokenExpired)
    ));
    let immediate = rotation(graceful.new_id, 0);
    let rotated = store.rotate_token(&immediate).await.unwrap();
    assert_eq!(rotated.old.revoked_at, Some(t0 + Duration::seconds(30)));
    assert_eq!(rotated.old.revoked_reason.as_deref(), Some("rotated"));
    assert!(matches!(
        store.rotate_token(&rotation(first.id, 0)).await,
        Err(StoreError::TokenRevoked)
    ));
    assert!(matches!(
        store.rotate_token(&rotation(TokenId::random(), 0)).await,
        Err(StoreError::UnknownToken)
    ));

    // The change feed saw all of it, in order.
    let changes: Vec<Change> = store
        .changes_after(latest_before, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        changes,
        [
            Change::Plan("team".into()),
            Change::Account("acct".into()),
            Change::Created(first.id),
            Change::Created(second.id),
            Change::Token(first.id),
            Change::Created(graceful.new_id),
            Change::Token(second.id),
            Change::Created(short.id),
            Change::Created(immediate.new_id),
            Change::Token(graceful.new_id),
        ]
    );
    let all = store.changes_after(latest_before, 1000).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(store.latest_change().await.unwrap(), all.last().unwrap().0);
    assert_eq!(
        store.changes_after(latest_before, 2).await.unwrap().len(),
        2
    );
    let total = store.changes_after(0, 100_000).await.unwrap().len() as u64;
    assert_eq!(
        store
            .prune_changes(OffsetDateTime::now_utc() + Duration::days(1))
            .await
            .unwrap(),
        total
    );
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());

    // Settings.
    assert_eq!(store.get_setting("k").await.unwrap(), None);
    store.put_setting("k", "v1").await.unwrap();
    store.put_setting("k", "v2").await.unwrap();
    assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("v2"));
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    conformance(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_in_memory_store_conforms() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    conformance(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_conforms() {
    let Some(database) = common::backends::postgres().await else {
        return;
    };
    let store = tokengate::store::PostgresStore::connect(&database.url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    conformance(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_feed_is_in_commit_order_under_concurrent_writers() {
    let Some(database) = common::backends::postgres().await else {
        return;
    };
    let store = Arc::new(
        tokengate::store::PostgresStore::connect(&database.url)
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    store.upsert_account("acct", "pro", now()).await.unwrap();
    // Writers race while a reader follows the feed with a cursor; the reader
    // must end up having seen every creation exactly once.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    let token = new_token("acct", &format!("w{w}-{i}"), now());
                    store.insert_token(&token).await.unwrap();
                    ids.push(token.id);
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
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                for (seq, change) in store.changes_after(cursor, 7).await.unwrap() {
                    cursor = seq;
                    if let Change::Created(id) = change {
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

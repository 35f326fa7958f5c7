//! The webhooks' outbox on every backend (SQLite always, PostgreSQL when
//! reachable, required in CI): events are written with the change and only
//! for subscribed endpoints, a claim is exclusive and leased, a token's
//! events keep their order, retries keep the event id, and the expiry sweep
//! writes each reminder once.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokengate::{
    Actor, Argon2Params, AttemptOutcome, AuditEvent, AuditQuery, ClaimedDelivery, Manager,
    SqliteStore, TokenGate, TokenStore, UsageDelta, WebhookAttempt, WebhookEndpoint, WebhookSecret,
    WebhookStore,
};

trait Backend: TokenStore + WebhookStore {}
impl<T: TokenStore + WebhookStore> Backend for T {}

/// The management side of a gate on `store` (these tests only change tokens).
fn manager_on(store: Arc<dyn Backend>) -> Manager {
    let gate = TokenGate::builder(store as Arc<dyn TokenStore>)
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .build()
        .unwrap();
    Manager::new(&gate)
}

fn endpoint(id: &str, events: Option<&[&str]>) -> WebhookEndpoint {
    WebhookEndpoint::new(
        id.into(),
        format!("https://example.com/{id}"),
        events.map(|events| events.iter().map(|e| (*e).to_owned()).collect()),
        OffsetDateTime::now_utc(),
    )
}

/// The audit event a change to an endpoint is recorded with.
fn audit(action: &str, id: &str) -> AuditEvent {
    Actor::new("test").audit_event(
        OffsetDateTime::now_utc(),
        action,
        json!({ "webhook_id": id }),
    )
}

/// The `action` events in the audit log, oldest first, as (actor, webhook id).
async fn audited(manager: &Manager, action: &str) -> Vec<(String, String)> {
    let query = AuditQuery::newest(100).with_action(Some(action.to_owned()));
    let mut events: Vec<(String, String)> = manager
        .audit_events(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|event| {
            (
                event.actor,
                event.details["webhook_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.reverse();
    events
}

fn delivered(delivery: &ClaimedDelivery, at: OffsetDateTime) -> WebhookAttempt {
    WebhookAttempt::new(
        delivery,
        at,
        Some(204),
        None,
        AttemptOutcome::Delivered,
        None,
    )
}

async fn outbox_conforms(store: Arc<dyn Backend>) {
    let manager = manager_on(Arc::clone(&store));
    manager.set_account_plan("acct", "pro").await.unwrap();
    let now = OffsetDateTime::now_utc();
    let later = now + Duration::minutes(1);

    // No endpoint: a change writes no delivery.
    manager.create_token("acct", "quiet", None).await.unwrap();
    assert_eq!(store.webhook_delivery_counts().await.unwrap().pending, 0);

    // An endpoint for revocations only.
    let revocations = endpoint("whe_revoked", Some(&["token.revoked"]));
    store
        .insert_webhook_endpoint(&revocations, &audit("webhook.created", "whe_revoked"))
        .await
        .unwrap();
    assert_eq!(
        audited(&manager, "webhook.created").await,
        [("test".to_owned(), "whe_revoked".to_owned())],
        "the endpoint's audit event commits with it"
    );
    let token = manager
        .create_token("acct", "ci", None)
        .await
        .unwrap()
        .record;
    assert_eq!(store.webhook_delivery_counts().await.unwrap().pending, 0);
    manager.revoke_token(&token.id).await.unwrap();
    assert_eq!(store.webhook_delivery_counts().await.unwrap().pending, 1);

    let claimed = store.claim_webhook_deliveries(later, later + Duration::seconds(30), 10);
    let claimed = claimed.await.unwrap();
    assert_eq!(claimed.len(), 1);
    let delivery = &claimed[0];
    assert_eq!(delivery.event_type, "token.revoked");
    assert_eq!(delivery.endpoint.id, "whe_revoked");
    assert_eq!(delivery.endpoint.secret, revocations.secret);
    assert!(delivery.event_id.starts_with("msg_"));
    let payload: serde_json::Value = serde_json::from_str(&delivery.payload).unwrap();
    assert_eq!(payload["type"], "token.revoked");
    assert_eq!(payload["data"]["reason"], "revoked");
    assert_eq!(payload["data"]["token"]["id"], token.id.to_string());
    assert!(!format!("{delivery:?}").contains(revocations.secret.expose()));

    // Leased: nobody else gets it until the lease ends.
    let again = store.claim_webhook_deliveries(later, later + Duration::seconds(30), 10);
    assert!(again.await.unwrap().is_empty());
    let after_lease = later + Duration::seconds(31);
    let reclaimed = store
        .claim_webhook_deliveries(after_lease, after_lease + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].event_id, delivery.event_id, "the id is stable");

    // A retry waits for its time, and keeps the event id.
    let retry_at = after_lease + Duration::minutes(5);
    let failed = WebhookAttempt::new(
        &reclaimed[0],
        after_lease,
        Some(500),
        Some("HTTP 500".into()),
        AttemptOutcome::Retrying,
        Some(retry_at),
    );
    store
        .record_webhook_attempt(&reclaimed[0], &failed)
        .await
        .unwrap();
    let early = store.claim_webhook_deliveries(after_lease, retry_at, 10);
    assert!(early.await.unwrap().is_empty());
    let retried = store
        .claim_webhook_deliveries(retry_at, retry_at + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(retried[0].event_id, delivery.event_id);
    assert_eq!(retried[0].attempts, 1);
    store
        .record_webhook_attempt(&retried[0], &delivered(&retried[0], retry_at))
        .await
        .unwrap();
    let counts = store.webhook_delivery_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered), (0, 1));
    let attempts = store.webhook_attempts("whe_revoked", 10).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| (a.attempt, a.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (2, AttemptOutcome::Delivered),
            (1, AttemptOutcome::Retrying)
        ]
    );
    assert_eq!(attempts[1].error.as_deref(), Some("HTTP 500"));

    // A token's events keep their order: the revocation waits for the creation.
    store
        .insert_webhook_endpoint(
            &endpoint("whe_all", None),
            &audit("webhook.created", "whe_all"),
        )
        .await
        .unwrap();
    let ordered = manager
        .create_token("acct", "ordered", None)
        .await
        .unwrap()
        .record;
    manager.revoke_token(&ordered.id).await.unwrap();
    let at = retry_at + Duration::minutes(1);
    let lease = at + Duration::seconds(30);
    let first = store.claim_webhook_deliveries(at, lease, 10).await.unwrap();
    let kinds: Vec<_> = first
        .iter()
        .map(|d| (d.endpoint.id.as_str(), d.event_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("whe_all", "token.created"),
            ("whe_revoked", "token.revoked")
        ]
    );
    for delivery in &first {
        store
            .record_webhook_attempt(delivery, &delivered(delivery, at))
            .await
            .unwrap();
    }
    let second = store.claim_webhook_deliveries(at, lease, 10).await.unwrap();
    let kinds: Vec<_> = second.iter().map(|d| d.event_type.as_str()).collect();
    assert_eq!(kinds, ["token.revoked"]);
    assert_eq!(second[0].endpoint.id, "whe_all");
    store
        .record_webhook_attempt(&second[0], &delivered(&second[0], at))
        .await
        .unwrap();

    // Concurrent claims never hand one delivery to two workers.
    for i in 0..6 {
        manager
            .create_token("acct", &format!("c{i}"), None)
            .await
            .unwrap();
    }
    let mut claims = Vec::new();
    for _ in 0..6 {
        let store = Arc::clone(&store);
        claims.push(tokio::spawn(async move {
            store.claim_webhook_deliveries(at, lease, 2).await.unwrap()
        }));
    }
    let mut seen = HashSet::new();
    for claim in claims {
        for delivery in claim.await.unwrap() {
            assert!(seen.insert(delivery.delivery_id), "claimed twice");
        }
    }
    // A claimer that lost a race for a row skips it (it may come back with
    // fewer than it could have had); the next poll takes the rest.
    loop {
        let rest = store.claim_webhook_deliveries(at, lease, 10).await.unwrap();
        if rest.is_empty() {
            break;
        }
        for delivery in rest {
            assert!(seen.insert(delivery.delivery_id), "claimed twice");
        }
    }
    assert_eq!(seen.len(), 6);

    // Removing an endpoint removes its deliveries.
    // A secret rotation and a removal are audited with the change; one that
    // changes nothing (no such endpoint) records nothing.
    let secret = WebhookSecret::generate();
    let rotated = audit("webhook.secret_rotated", "whe_all");
    assert!(
        store
            .rotate_webhook_secret("whe_all", &secret, later, &rotated)
            .await
            .unwrap()
    );
    let nowhere = audit("webhook.secret_rotated", "whe_nowhere");
    assert!(
        !store
            .rotate_webhook_secret("whe_nowhere", &secret, later, &nowhere)
            .await
            .unwrap()
    );
    let removed = audit("webhook.deleted", "whe_all");
    assert!(
        store
            .delete_webhook_endpoint("whe_all", &removed)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_webhook_endpoint("whe_all", &removed)
            .await
            .unwrap()
    );
    for action in ["webhook.secret_rotated", "webhook.deleted"] {
        assert_eq!(
            audited(&manager, action).await,
            [("test".to_owned(), "whe_all".to_owned())],
            "{action}"
        );
    }
    let ids: Vec<_> = store
        .webhook_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["whe_revoked"]);
}

async fn expiry_sweep_conforms(store: Arc<dyn Backend>) {
    let manager = manager_on(Arc::clone(&store));
    manager.set_account_plan("sweep", "pro").await.unwrap();
    let now = OffsetDateTime::now_utc();
    // Nobody subscribed: nothing is swept (nor recorded as sent).
    let expiring = manager
        .create_token("sweep", "soon", Some(now + Duration::days(3)))
        .await
        .unwrap()
        .record;
    assert_eq!(store.sweep_token_expiry(now).await.unwrap(), 0);
    let only = ["token.expiring", "token.expired"];
    store
        .insert_webhook_endpoint(
            &endpoint("whe_expiry", Some(&only)),
            &audit("webhook.created", "whe_expiry"),
        )
        .await
        .unwrap();
    manager
        .create_token("sweep", "later", Some(now + Duration::days(30)))
        .await
        .unwrap();
    assert_eq!(
        store.sweep_token_expiry(now).await.unwrap(),
        1,
        "7 days left"
    );
    assert_eq!(store.sweep_token_expiry(now).await.unwrap(), 0, "once");
    let day_left = now + Duration::hours(60);
    assert_eq!(
        store.sweep_token_expiry(day_left).await.unwrap(),
        1,
        "1 day left"
    );
    assert_eq!(store.sweep_token_expiry(day_left).await.unwrap(), 0);
    let expired = now + Duration::days(4);
    assert_eq!(
        store.sweep_token_expiry(expired).await.unwrap(),
        1,
        "expired"
    );
    assert_eq!(store.sweep_token_expiry(expired).await.unwrap(), 0);

    let lease = expired + Duration::seconds(30);
    let mut thresholds = Vec::new();
    loop {
        let claimed = store
            .claim_webhook_deliveries(expired, lease, 10)
            .await
            .unwrap();
        let Some(delivery) = claimed.into_iter().find(|d| d.endpoint.id == "whe_expiry") else {
            break;
        };
        let payload: serde_json::Value = serde_json::from_str(&delivery.payload).unwrap();
        assert_eq!(payload["data"]["token"]["id"], expiring.id.to_string());
        thresholds.push((
            payload["type"].as_str().unwrap().to_owned(),
            payload["data"]["threshold"].as_str().unwrap().to_owned(),
        ));
        store
            .record_webhook_attempt(&delivery, &delivered(&delivery, expired))
            .await
            .unwrap();
    }
    let expected = [
        ("token.expiring", "7d"),
        ("token.expiring", "1d"),
        ("token.expired", "expired"),
    ]
    .map(|(t, k)| (t.to_owned(), k.to_owned()));
    assert_eq!(thresholds, expected);

    // Pruning keeps what is recent or pending, and takes what is finished and old.
    let counts = store.webhook_delivery_counts().await.unwrap();
    assert_eq!(
        store.prune_webhooks(now - Duration::days(1)).await.unwrap(),
        0
    );
    let pruned = store
        .prune_webhooks(expired + Duration::days(1))
        .await
        .unwrap();
    assert!(
        pruned >= 3 * 3,
        "attempts, deliveries, events of 3 reminders: {pruned}"
    );
    let after = store.webhook_delivery_counts().await.unwrap();
    assert_eq!(after.pending, counts.pending);
    assert_eq!(after.delivered, 0);
    assert!(
        store
            .webhook_attempts("whe_expiry", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn limit_reached_conforms(store: Arc<dyn Backend>) {
    let manager = manager_on(Arc::clone(&store));
    manager.set_account_plan("busy", "pro").await.unwrap();
    let token = manager
        .create_token("busy", "hot", None)
        .await
        .unwrap()
        .record;
    let hour = OffsetDateTime::now_utc().replace_minute(0).unwrap();
    let hour = hour
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let delta = |limited| UsageDelta {
        token_id: token.id,
        hour,
        admitted: 5,
        limited,
    };
    let only = ["account.limit_reached"];
    store
        .insert_webhook_endpoint(
            &endpoint("whe_limits", Some(&only)),
            &audit("webhook.created", "whe_limits"),
        )
        .await
        .unwrap();
    let pending = || async { store.webhook_delivery_counts().await.unwrap().pending };
    let before = pending().await;
    store.record_usage(&[delta(0)]).await.unwrap();
    assert_eq!(pending().await, before, "no refusal, no event");
    store.record_usage(&[delta(3)]).await.unwrap();
    assert_eq!(pending().await, before + 1, "the first refusal of the hour");
    store.record_usage(&[delta(7)]).await.unwrap();
    assert_eq!(pending().await, before + 1, "once per token and hour");
    let next_hour = UsageDelta {
        hour: hour + Duration::hours(1),
        ..delta(1)
    };
    store.record_usage(&[next_hour]).await.unwrap();
    assert_eq!(pending().await, before + 2, "and again the next hour");
    let usage = store.usage_series(&token.id, hour).await;
    let limited: u64 = usage.unwrap().iter().map(|h| h.limited).sum();
    assert_eq!(limited, 11, "the counts are saved as before");

    let at = OffsetDateTime::now_utc() + Duration::days(40);
    let claimed = store.claim_webhook_deliveries(at, at + Duration::seconds(30), 100);
    let event = claimed
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.event_type == "account.limit_reached")
        .unwrap();
    let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(payload["data"]["token"]["id"], token.id.to_string());
    assert_eq!(payload["data"]["account_id"], "busy");
    assert!(payload["data"]["hour"].is_string(), "{payload}");
}

#[tokio::test]
async fn sqlite_outbox_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    outbox_conforms(Arc::new(store.clone())).await;
    expiry_sweep_conforms(Arc::new(store.clone())).await;
    limit_reached_conforms(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_conforms() {
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let store = database.migrated_store().await;
    outbox_conforms(Arc::new(store.clone())).await;
    expiry_sweep_conforms(Arc::new(store.clone())).await;
    limit_reached_conforms(Arc::new(store)).await;
}

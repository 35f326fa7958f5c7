//! Issue 14: the audit log (one event per change, written in the change's
//! transaction, paged newest first), usage per token per hour (exact, 429s
//! included, additive across instances), and leaked-token reports.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use tokengate::{
    Actor, Argon2Params, AuditEvent, AuditQuery, CredentialStore, LeakOutcome, LeakReport,
    ManageError, Manager, Plan, SqliteStore, TokenGate, TokenStore,
};
use tokengate_testkit::{FlakyStore, send};

fn gate_on(store: Arc<dyn TokenStore>) -> TokenGate {
    TokenGate::builder(store)
        .with_argon2_params(Argon2Params::insecure_fast_for_tests())
        .build()
        .unwrap()
}

async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

async fn all_events(gate: &TokenGate) -> Vec<AuditEvent> {
    Manager::new(gate)
        .audit_events(&AuditQuery::newest(500))
        .await
        .unwrap()
}

fn admin() -> Actor {
    Actor::new("admin")
        .from_ip(Some("203.0.113.9".parse().unwrap()))
        .with_request_id(Some("req-42".into()))
}

/// Every change is exactly one event, naming its actor, request and ids;
/// no-op changes record nothing; no event holds any part of a secret.
async fn every_change_is_one_event(store: Arc<dyn TokenStore>) {
    let gate = gate_on(store);
    let before = all_events(&gate).await.len();
    let manager = Manager::new(&gate);
    let as_admin = manager.acting_as(admin());

    as_admin
        .set_plan(&Plan::new("team", true, 50))
        .await
        .unwrap();
    as_admin
        .set_plan(&Plan::new("team", true, 50))
        .await
        .unwrap(); // unchanged
    as_admin
        .set_plan(&Plan::new("team", true, 60))
        .await
        .unwrap();
    as_admin.set_account_plan("acme", "team").await.unwrap();
    as_admin.set_account_plan("acme", "team").await.unwrap(); // unchanged
    as_admin.set_account_plan("acme", "pro").await.unwrap();
    let created = as_admin.create_token("acme", "ci", None).await.unwrap();
    let id = created.record.id;
    let (_, rotated) = as_admin
        .rotate_token(&id, Duration::from_secs(60), None)
        .await
        .unwrap();
    let new_id = rotated.record.id;
    // As `app` (the embedding application's own calls).
    Manager::new(&gate).revoke_token(&new_id).await.unwrap();
    Manager::new(&gate).revoke_token(&new_id).await.unwrap(); // already revoked
    let leaked = Manager::new(&gate)
        .create_token("acme", "laptop", None)
        .await
        .unwrap();
    let outcome = Manager::new(&gate)
        .acting_as(Actor::new("leak-report:github"))
        .revoke_leaked(LeakReport {
            token: leaked.token.expose_secret(),
            url: "https://github.com/octocat/hello/blob/main/.env",
            source: "content",
            kind: "tokengate_api_token",
        })
        .await
        .unwrap();
    assert_eq!(outcome, LeakOutcome::Revoked(leaked.record.id));

    let events = all_events(&gate).await;
    let ours: Vec<_> = events[..events.len() - before].iter().rev().collect();
    let summary: Vec<_> = ours
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.actor.as_str(),
                e.account_id.as_deref(),
                e.token_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("plan.created", "admin", None, None),
            ("plan.updated", "admin", None, None),
            ("account.created", "admin", Some("acme"), None),
            ("account.plan_changed", "admin", Some("acme"), None),
            ("token.created", "admin", Some("acme"), Some(id)),
            ("token.rotated", "admin", Some("acme"), Some(id)),
            ("token.revoked", "app", Some("acme"), Some(new_id)),
            ("token.created", "app", Some("acme"), Some(leaked.record.id)),
            (
                "token.leaked",
                "leak-report:github",
                Some("acme"),
                Some(leaked.record.id)
            ),
        ]
    );
    // Newest first, ids increasing with time.
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));
    for event in &ours[..6] {
        assert_eq!(event.source_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(event.request_id.as_deref(), Some("req-42"));
    }
    assert_eq!(ours[6].source_ip, None);
    assert_eq!(ours[1].details["from"]["requests_per_hour"], 50);
    assert_eq!(ours[1].details["to"]["requests_per_hour"], 60);
    assert_eq!(ours[3].details["from"], "team");
    assert_eq!(ours[3].details["to"], "pro");
    assert_eq!(ours[5].details["new_token_id"], new_id.to_string());
    assert_eq!(ours[5].details["grace_seconds"], 60);
    assert_eq!(
        ours[8].details["url"],
        "https://github.com/octocat/hello/blob/main/.env"
    );

    // Filters: by token, by account, by action.
    let by_token = Manager::new(&gate)
        .audit_events(&AuditQuery::newest(10).for_token(Some(id)))
        .await
        .unwrap();
    let actions: Vec<_> = by_token.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["token.rotated", "token.created"]);
    let revocations = Manager::new(&gate)
        .audit_events(
            &AuditQuery::newest(10)
                .for_account(Some("acme".into()))
                .with_action(Some("token.revoked".into())),
        )
        .await
        .unwrap();
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].token_id, Some(new_id));

    // No secret: not the token, not even 8 characters of its secret part.
    let text = serde_json::to_string(&events).unwrap();
    for token in [&created.token, &rotated.token, &leaked.token] {
        let token = token.expose_secret();
        let secret = &token[4 + 20..4 + 20 + 44];
        for start in 0..=secret.len() - 8 {
            let window = &secret[start..start + 8];
            assert!(!text.contains(window), "a piece of a secret is in the log");
        }
    }
}

#[tokio::test]
async fn sqlite_records_one_event_per_change() {
    let (store, _dir) = sqlite().await;
    every_change_is_one_event(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_records_one_event_per_change() {
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let store = database.migrated_store().await;
    every_change_is_one_event(Arc::new(store)).await;
}

/// A change whose event cannot be written does not happen: no token, no
/// revocation, no plan change, and no event.
#[tokio::test]
async fn a_change_and_its_event_commit_together() {
    let (sqlite, _dir) = sqlite().await;
    let store = Arc::new(FlakyStore::new(sqlite));
    let gate = gate_on(store.clone());
    Manager::new(&gate)
        .set_account_plan("acme", "pro")
        .await
        .unwrap();
    let kept = Manager::new(&gate)
        .create_token("acme", "kept", None)
        .await
        .unwrap();
    let events_before = all_events(&gate).await;
    let feed_before = store.latest_change().await.unwrap();

    store.fail_audit(true);
    assert!(matches!(
        Manager::new(&gate).create_token("acme", "lost", None).await,
        Err(ManageError::Unavailable(_))
    ));
    assert!(matches!(
        Manager::new(&gate).revoke_token(&kept.record.id).await,
        Err(ManageError::Unavailable(_))
    ));
    assert!(matches!(
        Manager::new(&gate)
            .set_account_plan("acme", "enterprise")
            .await,
        Err(ManageError::Unavailable(_))
    ));
    assert!(matches!(
        Manager::new(&gate)
            .rotate_token(&kept.record.id, Duration::ZERO, None)
            .await,
        Err(ManageError::Unavailable(_))
    ));
    store.fail_audit(false);

    let tokens = Manager::new(&gate).tokens("acme").await.unwrap();
    assert_eq!(tokens.len(), 1, "no token without its event");
    assert_eq!(
        tokens[0].revoked_at, None,
        "no revocation without its event"
    );
    let account = Manager::new(&gate).account("acme").await.unwrap().unwrap();
    assert_eq!(account.plan, "pro");
    assert_eq!(all_events(&gate).await, events_before);
    assert_eq!(store.latest_change().await.unwrap(), feed_before);
    // The token still works.
    let router = gated_router(&gate);
    let response = get_with(&router, kept.token.expose_secret()).await;
    assert_eq!(response, StatusCode::OK);
}

/// Paging with the `before` cursor sees every event once, in order, while
/// new events are written between pages.
#[tokio::test]
async fn paging_is_stable_while_events_are_added() {
    let (store, _dir) = sqlite().await;
    let gate = gate_on(Arc::new(store));
    Manager::new(&gate)
        .set_account_plan("acme", "pro")
        .await
        .unwrap();
    for i in 0..40 {
        Manager::new(&gate)
            .create_token("acme", &format!("t{i}"), None)
            .await
            .unwrap();
    }
    let existing: Vec<i64> = all_events(&gate).await.iter().map(|e| e.id).collect();

    let writer = {
        let gate = gate.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                Manager::new(&gate)
                    .create_token("acme", &format!("late{i}"), None)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = Manager::new(&gate)
            .audit_events(&AuditQuery::newest(7).before_event(before))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen.extend(page.iter().map(|e| e.id));
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly older pages");
    let seen: HashSet<_> = seen.into_iter().collect();
    assert!(
        existing.iter().all(|id| seen.contains(id)),
        "every event that existed when paging began was seen"
    );
}

fn gated_router(gate: &TokenGate) -> Router {
    Router::new()
        .route("/api", get(|| async { "ok" }))
        .layer(gate.layer())
}

async fn get_with(router: &Router, token: &str) -> StatusCode {
    let request = Request::get("/api")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    send(router, request).await.status
}

/// Usage counts every admitted request and every 429 exactly, and two
/// instances on one database add up.
async fn usage_is_exact_and_additive(store: Arc<dyn TokenStore>) {
    let first = gate_on(Arc::clone(&store));
    let second = gate_on(store);
    Manager::new(&first)
        .set_plan(&Plan::new("tiny", true, 5))
        .await
        .unwrap();
    Manager::new(&first)
        .set_account_plan("acme", "tiny")
        .await
        .unwrap();
    let created = Manager::new(&first)
        .create_token("acme", "ci", None)
        .await
        .unwrap();
    let token = created.token.expose_secret();
    let id = created.record.id;

    let (router_a, router_b) = (gated_router(&first), gated_router(&second));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get_with(&router_a, token).await);
    }
    for _ in 0..4 {
        statuses.push(get_with(&router_b, token).await);
    }
    // Each instance limits alone here (memory limiter): 5 + 3 refused, then 4.
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (9, 3));

    // Nothing reaches the store until a flush.
    assert_eq!(
        Manager::new(&first).token_usage(&id, 1).await.unwrap()[0].admitted,
        0
    );
    first.flush_last_use().await.unwrap();
    second.flush_last_use().await.unwrap();
    let usage = Manager::new(&first).token_usage(&id, 24).await.unwrap();
    assert_eq!(usage.len(), 24, "one entry per hour, zeros included");
    let now = usage.last().unwrap();
    assert_eq!((now.admitted, now.limited), (9, 3));
    assert!(
        usage[..23]
            .iter()
            .all(|h| h.admitted == 0 && h.limited == 0)
    );
    assert!(usage.windows(2).all(|w| w[0].hour < w[1].hour));

    // A second flush adds nothing; more traffic adds to the same hour.
    first.flush_last_use().await.unwrap();
    assert_eq!(get_with(&router_b, token).await, StatusCode::OK);
    assert_eq!(
        get_with(&router_b, token).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    second.flush_last_use().await.unwrap();
    let now = *Manager::new(&first)
        .token_usage(&id, 1)
        .await
        .unwrap()
        .last()
        .unwrap();
    assert_eq!((now.admitted, now.limited), (10, 4));

    // The next hour is a new row.
    first.step_wall_clock(time::Duration::hours(1));
    let usage = Manager::new(&first).token_usage(&id, 2).await.unwrap();
    assert_eq!((usage[0].admitted, usage[1].admitted), (10, 0), "{usage:?}");
    assert!(matches!(
        Manager::new(&first).token_usage(&id, 0).await,
        Err(ManageError::Invalid(_))
    ));
    assert!(matches!(
        Manager::new(&first).token_usage(&id, 2161).await,
        Err(ManageError::Invalid(_))
    ));
}

#[tokio::test]
async fn sqlite_usage_is_exact_and_additive() {
    let (store, _dir) = sqlite().await;
    usage_is_exact_and_additive(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_usage_is_exact_and_additive() {
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let store = database.migrated_store().await;
    usage_is_exact_and_additive(Arc::new(store)).await;
}

/// A leak report revokes only a real token of ours: a made-up secret with a
/// real (public) id, a malformed string or a stranger's secret changes
/// nothing; a second report of the same token says it was already revoked.
#[tokio::test]
async fn only_a_real_leaked_token_is_revoked() {
    let (store, _dir) = sqlite().await;
    let gate = gate_on(Arc::new(store));
    Manager::new(&gate)
        .set_account_plan("acme", "pro")
        .await
        .unwrap();
    let created = Manager::new(&gate)
        .create_token("acme", "ci", None)
        .await
        .unwrap();
    let token = created.token.expose_secret().to_owned();
    let id = created.record.id;
    let manager = Manager::new(&gate);
    let reporter = manager.acting_as(Actor::new("support"));
    fn report(token: &str) -> LeakReport<'_> {
        LeakReport {
            token,
            url: "",
            source: "ticket",
            kind: "",
        }
    }

    // Same id, another (well-formed) secret.
    let forged = tokengate_testkit::forge_wrong_secret(&token, "leak");
    for string in [forged.as_str(), "ghp_notours", "", &token[..30]] {
        assert_eq!(
            reporter.revoke_leaked(report(string)).await.unwrap(),
            LeakOutcome::NotOurs
        );
    }
    assert_eq!(
        Manager::new(&gate)
            .token(&id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );

    assert_eq!(
        reporter.revoke_leaked(report(&token)).await.unwrap(),
        LeakOutcome::Revoked(id)
    );
    let record = Manager::new(&gate).token(&id).await.unwrap().unwrap();
    assert!(record.revoked_at.is_some());
    assert_eq!(record.revoked_reason.as_deref(), Some("leaked"));
    assert_eq!(
        get_with(&gated_router(&gate), &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        reporter.revoke_leaked(report(&token)).await.unwrap(),
        LeakOutcome::AlreadyRevoked(id)
    );
    let leaked = Manager::new(&gate)
        .audit_events(&AuditQuery::newest(10).with_action(Some("token.leaked".into())))
        .await
        .unwrap();
    assert_eq!(leaked.len(), 1, "one event, for the one revocation");
    assert_eq!(leaked[0].actor, "support");
}

/// Usage counts survive a flush that fails or is cut short (the store
/// timeout, shutdown): they are written by the next one.
#[tokio::test]
async fn usage_survives_a_failed_or_cut_flush() {
    let (sqlite, _dir) = sqlite().await;
    let store = Arc::new(FlakyStore::new(sqlite));
    let gate = gate_on(store.clone());
    Manager::new(&gate)
        .set_account_plan("acme", "pro")
        .await
        .unwrap();
    let created = Manager::new(&gate)
        .create_token("acme", "ci", None)
        .await
        .unwrap();
    let router = gated_router(&gate);
    for _ in 0..3 {
        get_with(&router, created.token.expose_secret()).await;
    }
    store.fail(true);
    assert!(gate.flush_last_use().await.is_err());
    store.fail(false);
    get_with(&router, created.token.expose_secret()).await;
    store.hang(true);
    let cut = tokio::time::timeout(Duration::from_millis(200), gate.flush_last_use()).await;
    assert!(cut.is_err(), "the hung flush was cut");
    store.hang(false);
    get_with(&router, created.token.expose_secret()).await;
    gate.flush_last_use().await.unwrap();
    let now = *Manager::new(&gate)
        .token_usage(&created.record.id, 1)
        .await
        .unwrap()
        .last()
        .unwrap();
    assert_eq!((now.admitted, now.limited), (5, 0));
}

//! The webhooks' outbox: an event and one delivery per subscribed endpoint,
//! written on the transaction of the change they report.
//!
//! [`enqueue_audited`] turns an audit event that the host application wants
//! to hear about into a webhook event (`token.leaked` becomes `token.revoked`
//! with the reason `leaked`); the expiry sweep calls [`enqueue`] directly,
//! and the usage flush [`enqueue_limit_reached`].
//! With no subscribed endpoint nothing is written: one indexed read.
//! The payload is built from public views only (the token's id, account,
//! name, hint, scopes and times; the actor; the audit event's plain facts),
//! never a secret or a hash.

use rand::RngCore;
use serde_json::{Map, Value as Json, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::columns::{TOKEN_COLUMNS, first, token_from_row};
use crate::store::driver::Conn;
use crate::store::{AuditEvent, StoreError, TokenRecord, UsageDelta};
use crate::token::TokenId;

/// The `LIKE` pattern that matches an endpoint subscribed to `event_type`
/// (the `events` column is space-separated; NULL means every type).
pub(super) fn subscribed(event_type: &str) -> String {
    format!("% {event_type} %")
}

const SUBSCRIBERS: &str =
    "FROM webhook_endpoints WHERE events IS NULL OR (' ' || events || ' ') LIKE $1";

/// Writes the webhook event that the audit event `event` stands for, if
/// any, and if any endpoint wants it.
pub(super) async fn enqueue_audited(
    conn: &mut dyn Conn,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    // A rotation also ends the old token (at once, or after its grace
    // period: `old_token_stops_at`): `token.revoked` with the reason
    // `rotated` tells those who listen only for a token's end.
    let events: &[(&str, Option<&str>)] = match event.action.as_str() {
        "token.created" => &[("token.created", None)],
        "token.rotated" => &[("token.rotated", None), ("token.revoked", Some("rotated"))],
        "token.revoked" => &[("token.revoked", Some("revoked"))],
        "token.leaked" => &[("token.revoked", Some("leaked"))],
        "account.plan_changed" => &[("account.plan_changed", None)],
        _ => return Ok(()),
    };
    for &(event_type, reason) in events {
        if has_subscribers(conn, event_type).await? {
            enqueue_one(conn, event, event_type, reason).await?;
        }
    }
    Ok(())
}

async fn enqueue_one(
    conn: &mut dyn Conn,
    event: &AuditEvent,
    event_type: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let token = match &event.token_id {
        Some(id) => token_view(conn, id).await?,
        None => None,
    };
    let mut data = Map::new();
    if let Some(token) = &token {
        data.insert(
            "token".into(),
            serde_json::to_value(token).unwrap_or_default(),
        );
    }
    data.insert("account_id".into(), json!(event.account_id));
    data.insert("actor".into(), json!(event.actor));
    if let Some(reason) = reason {
        data.insert("reason".into(), json!(reason));
    }
    if event.action == "token.leaked" {
        // The report's own `type` must not read as the event's.
        data.insert("leak".into(), event.details.clone());
    } else if let Json::Object(details) = &event.details {
        for (key, value) in details {
            // The token's own view already says these.
            if token.is_some() && matches!(key.as_str(), "name" | "scopes" | "expires_at") {
                continue;
            }
            data.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let order_key = order_key(event.token_id.as_ref(), event.account_id.as_deref());
    enqueue(conn, event_type, &order_key, Json::Object(data), event.at).await
}

/// The key whose events keep their order: the token, else the account.
pub(super) fn order_key(token_id: Option<&TokenId>, account_id: Option<&str>) -> String {
    match (token_id, account_id) {
        (Some(id), _) => format!("token:{id}"),
        (None, Some(account)) => format!("account:{account}"),
        (None, None) => "global".into(),
    }
}

pub(super) async fn has_subscribers(
    conn: &mut dyn Conn,
    event_type: &str,
) -> Result<bool, StoreError> {
    let sql = format!("SELECT COUNT(*) AS subscribers {SUBSCRIBERS}");
    let rows = conn
        .fetch(&sql, vec![subscribed(event_type).into()])
        .await?;
    Ok(first(rows, |row| row.int("subscribers"))?.unwrap_or_default() > 0)
}

pub(super) async fn token_view(
    conn: &mut dyn Conn,
    id: &TokenId,
) -> Result<Option<TokenRecord>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
    first(conn.fetch(&sql, vec![id.into()]).await?, token_from_row)
}

/// Writes one event (`{"type", "timestamp", "data"}`) and a pending
/// delivery for each endpoint subscribed to `event_type`.
pub(super) async fn enqueue(
    conn: &mut dyn Conn,
    event_type: &str,
    order_key: &str,
    data: Json,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let timestamp = at
        .format(&Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("unformattable time: {e}")))?;
    let payload = json!({ "type": event_type, "timestamp": timestamp, "data": data });
    let id = message_id();
    let rows = conn
        .fetch(
            "INSERT INTO webhook_events (id, type, order_key, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING seq",
            vec![
                id.into(),
                event_type.into(),
                order_key.into(),
                payload.to_string().into(),
                at.into(),
            ],
        )
        .await?;
    let seq = first(rows, |row| row.int("seq"))?
        .ok_or_else(|| StoreError::Corrupt("no sequence number for a webhook event".into()))?;
    let sql = format!(
        "INSERT INTO webhook_deliveries (event_seq, endpoint_id, order_key, next_attempt_at) \
         SELECT $2, id, $3, $4 {SUBSCRIBERS}"
    );
    conn.execute(
        &sql,
        vec![
            subscribed(event_type).into(),
            seq.into(),
            order_key.into(),
            at.into(),
        ],
    )
    .await
    .map(drop)
}

/// `account.limit_reached`: a token's first request refused by the rate
/// limit (its own or its account's) in an hour, from the usage counts that
/// the gate flushes in the background, never on the request path. Once per
/// token and hour across instances: the notice's key commits with the event,
/// in the transaction of the counts (`record_usage`).
pub(super) async fn enqueue_limit_reached(
    tx: &mut dyn Conn,
    deltas: &[UsageDelta],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if deltas.iter().all(|delta| delta.limited == 0) {
        return Ok(());
    }
    if !has_subscribers(tx, "account.limit_reached").await? {
        return Ok(());
    }
    for delta in deltas.iter().filter(|delta| delta.limited > 0) {
        let hour = delta
            .hour
            .format(&Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("unformattable time: {e}")))?;
        let inserted = tx
            .execute(
                "INSERT INTO webhook_notices (token_id, threshold, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (token_id, threshold) DO NOTHING",
                vec![
                    (&delta.token_id).into(),
                    format!("limit:{hour}").into(),
                    now.into(),
                ],
            )
            .await?;
        if inserted == 0 {
            continue;
        }
        let Some(token) = token_view(tx, &delta.token_id).await? else {
            continue;
        };
        let data = json!({
            "token": token,
            "account_id": token.account_id,
            "actor": "system",
            "hour": hour,
        });
        let key = order_key(Some(&delta.token_id), Some(&token.account_id));
        enqueue(tx, "account.limit_reached", &key, data, now).await?;
    }
    Ok(())
}

/// A new event id: `msg_` and 128 random bits in hex.
fn message_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut id = String::with_capacity(36);
    id.push_str("msg_");
    for byte in bytes {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_and_well_formed() {
        let (a, b) = (message_id(), message_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("msg_"));
        assert!(a[4..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn order_key_prefers_the_token() {
        let id: TokenId = "AAAAAAAAAAAAAAAAAAAA".parse().unwrap();
        assert_eq!(order_key(Some(&id), Some("acct")), format!("token:{id}"));
        assert_eq!(order_key(None, Some("acct")), "account:acct");
        assert_eq!(order_key(None, None), "global");
    }
}

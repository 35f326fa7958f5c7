//! Registering, removing an endpoint and rotating its secret: the rules the
//! admin routes and the CLI share (a URL checked as a delivery would be,
//! known event types, the previous secret signing on for 24 hours, and an
//! audit event in the transaction of each change: `webhook.created`,
//! `webhook.deleted`, `webhook.secret_rotated`, never with a secret), and
//! reading an endpoint's delivery attempts.

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate::{Actor, StoreError, WebhookAttempt, WebhookEndpoint, WebhookSecret, WebhookStore};

use super::settings::WebhookSettings;
use super::target::check_target;

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);

/// Why an endpoint was not registered.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The request is invalid; the message says how (and what to do).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks and stores a new endpoint for `actor`; it comes back with its secret.
pub async fn register(
    store: &dyn WebhookStore,
    settings: &WebhookSettings,
    url: String,
    events: Option<Vec<String>>,
    actor: &Actor,
) -> Result<WebhookEndpoint, EndpointError> {
    let events = events
        .map(check_events)
        .transpose()
        .map_err(EndpointError::Invalid)?;
    check_target(&url, settings.allow_private)
        .await
        .map_err(EndpointError::Invalid)?;
    let endpoint = WebhookEndpoint::new(new_id(), url, events, OffsetDateTime::now_utc());
    let audit = actor.audit_event(
        endpoint.created_at,
        "webhook.created",
        json!({ "webhook_id": endpoint.id, "url": endpoint.url, "events": endpoint.events }),
    );
    store.insert_webhook_endpoint(&endpoint, &audit).await?;
    tracing::info!(webhook_id = %endpoint.id, "webhook endpoint registered");
    Ok(endpoint)
}

/// Removes an endpoint and its pending deliveries for `actor`; `false`: no
/// such endpoint.
pub async fn remove(store: &dyn WebhookStore, id: &str, actor: &Actor) -> Result<bool, StoreError> {
    let audit = actor.audit_event(
        OffsetDateTime::now_utc(),
        "webhook.deleted",
        json!({ "webhook_id": id }),
    );
    let removed = store.delete_webhook_endpoint(id, &audit).await?;
    if removed {
        tracing::info!(webhook_id = %id, "webhook endpoint removed");
    }
    Ok(removed)
}

/// Gives an endpoint a new secret for `actor`; the old one signs too for
/// [`ROTATION_OVERLAP`]. `None`: no such endpoint.
pub async fn rotate_secret(
    store: &dyn WebhookStore,
    id: &str,
    actor: &Actor,
) -> Result<Option<(WebhookEndpoint, WebhookSecret)>, StoreError> {
    let secret = WebhookSecret::generate();
    let now = OffsetDateTime::now_utc();
    let until = now + ROTATION_OVERLAP;
    let audit = actor.audit_event(
        now,
        "webhook.secret_rotated",
        json!({ "webhook_id": id, "previous_secret_until": until.format(&Rfc3339).ok() }),
    );
    if !store
        .rotate_webhook_secret(id, &secret, until, &audit)
        .await?
    {
        return Ok(None);
    }
    tracing::info!(webhook_id = %id, "webhook secret rotated");
    Ok(store.webhook_endpoint(id).await?.map(|e| (e, secret)))
}

/// Most delivery attempts one read returns.
pub const MAX_DELIVERIES: u32 = 1000;

/// An endpoint's latest `limit` delivery attempts (1 to [`MAX_DELIVERIES`]),
/// newest first. `None`: no such endpoint.
pub async fn deliveries(
    store: &dyn WebhookStore,
    id: &str,
    limit: u32,
) -> Result<Option<Vec<WebhookAttempt>>, EndpointError> {
    if !(1..=MAX_DELIVERIES).contains(&limit) {
        return Err(EndpointError::Invalid(format!(
            "limit must be from 1 to {MAX_DELIVERIES}"
        )));
    }
    if store.webhook_endpoint(id).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(store.webhook_attempts(id, limit).await?))
}

fn check_events(events: Vec<String>) -> Result<Vec<String>, String> {
    if events.is_empty() {
        return Err("events is empty; leave it out to send every type".into());
    }
    let mut checked: Vec<String> = Vec::new();
    for event in events {
        if !WebhookEndpoint::EVENT_TYPES.contains(&event.as_str()) {
            return Err(format!(
                "unknown event type {event:?}; the types are {}",
                WebhookEndpoint::EVENT_TYPES.join(", ")
            ));
        }
        if !checked.contains(&event) {
            checked.push(event);
        }
    }
    Ok(checked)
}

/// `whe_` and 64 random bits in hex.
fn new_id() -> String {
    use rand::RngCore;
    format!("whe_{:016x}", rand::rngs::OsRng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_checked_and_deduplicated() {
        let events = vec!["token.revoked".to_owned(), "token.revoked".to_owned()];
        assert_eq!(check_events(events).unwrap(), ["token.revoked"]);
        assert!(check_events(vec![]).unwrap_err().contains("leave it out"));
        let unknown = check_events(vec!["token.exploded".into()]).unwrap_err();
        assert!(unknown.contains("token.exploded") && unknown.contains("token.expiring"));
    }
}

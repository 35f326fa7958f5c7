//! `tokengate webhooks ...`: the admin API's webhook routes on the command
//! line, with the same rules (`tokengate_server::webhooks::endpoints`). A
//! secret is printed alone on stdout, once; everything else on stderr or
//! as a table.

use std::io::Write;

use time::format_description::well_known::Rfc3339;
use tokengate::{Actor, WebhookStore};
use tokengate_server::webhooks::endpoints::{
    EndpointError, deliveries, register, remove, rotate_secret,
};
use tokengate_server::webhooks::settings::WebhookSettings;

use crate::cli::WebhookCommand;

/// Runs a `webhooks` subcommand. Errors are one line for stderr.
pub(crate) async fn run(
    command: WebhookCommand,
    store: &dyn WebhookStore,
    settings: &WebhookSettings,
    database: &str,
) -> Result<(), String> {
    let unavailable = |e: tokengate::StoreError| format!("database {database} unavailable: {e}");
    let mut out = std::io::stdout().lock();
    // Whole seconds, as the other lists print them (and as wide as the column).
    let time = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap_or(t)
            .format(&Rfc3339)
            .unwrap_or_default()
    };
    match command {
        WebhookCommand::Add { url, events } => {
            let events = (!events.is_empty()).then_some(events);
            let endpoint = register(store, settings, url, events, &Actor::new("cli"))
                .await
                .map_err(|e| match e {
                    EndpointError::Invalid(message) => message,
                    EndpointError::Store(e) => unavailable(e),
                })?;
            let _ = writeln!(out, "{}", endpoint.secret.expose());
            eprintln!(
                "Registered webhook {} for {} ({}) in {database}.\nThis is the only time its signing secret is shown: store it now.",
                endpoint.id,
                endpoint.url,
                endpoint
                    .events
                    .as_ref()
                    .map_or("every event".into(), |e| e.join(", ")),
            );
        }
        WebhookCommand::List => {
            let endpoints = store.webhook_endpoints().await.map_err(unavailable)?;
            let _ = writeln!(
                out,
                "{:<20}  {:<20}  {:<40}  URL",
                "ID", "CREATED", "EVENTS"
            );
            for endpoint in endpoints {
                let events = endpoint.events.map_or("*".into(), |e| e.join(","));
                let created = time(endpoint.created_at);
                let _ = writeln!(
                    out,
                    "{:<20}  {created:<20}  {events:<40}  {}",
                    endpoint.id, endpoint.url
                );
            }
        }
        WebhookCommand::Remove { webhook_id } => {
            if !remove(store, &webhook_id, &Actor::new("cli"))
                .await
                .map_err(unavailable)?
            {
                return Err(format!(
                    "no webhook {webhook_id} in {database} (tokengate webhooks list)"
                ));
            }
            eprintln!("Removed webhook {webhook_id} from {database}, with its pending deliveries.");
        }
        WebhookCommand::RotateSecret { webhook_id } => {
            let Some((endpoint, secret)) = rotate_secret(store, &webhook_id, &Actor::new("cli"))
                .await
                .map_err(unavailable)?
            else {
                return Err(format!(
                    "no webhook {webhook_id} in {database} (tokengate webhooks list)"
                ));
            };
            let _ = writeln!(out, "{}", secret.expose());
            eprintln!(
                "New signing secret for webhook {} in {database}; the previous one signs too for 24 hours.\nThis is the only time it is shown: store it now.",
                endpoint.id
            );
        }
        WebhookCommand::Deliveries { webhook_id, limit } => {
            let attempts = match deliveries(store, &webhook_id, limit).await {
                Ok(Some(attempts)) => attempts,
                Ok(None) => {
                    return Err(format!(
                        "no webhook {webhook_id} in {database} (tokengate webhooks list)"
                    ));
                }
                Err(EndpointError::Invalid(message)) => return Err(format!("--{message}")),
                Err(EndpointError::Store(e)) => return Err(unavailable(e)),
            };
            let _ = writeln!(
                out,
                "{:<20}  {:<36}  {:<20}  {:>7}  {:>6}  {:<9}  ERROR",
                "AT", "EVENT", "TYPE", "ATTEMPT", "STATUS", "OUTCOME"
            );
            for a in attempts {
                let status = a.status_code.map_or("-".into(), |s| s.to_string());
                let outcome = serde_json::to_value(a.outcome).ok();
                let outcome = outcome.as_ref().and_then(|o| o.as_str()).unwrap_or("?");
                let _ = writeln!(
                    out,
                    "{:<20}  {:<36}  {:<20}  {:>7}  {status:>6}  {outcome:<9}  {}",
                    time(a.at),
                    a.event_id,
                    a.event_type,
                    a.attempt,
                    a.error.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

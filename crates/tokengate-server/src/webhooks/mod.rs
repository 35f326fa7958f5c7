//! Webhooks (Standard Webhooks): events about tokens and accounts, signed
//! and delivered at least once to the host application's endpoints.
//!
//! The library writes each event to an outbox in the transaction of the
//! change it reports (`tokengate::WebhookStore`); this module is the rest:
//! `admin.rs` the `/admin/webhooks` routes, `worker.rs` the delivery worker
//! and the expiry sweep, `sign.rs` the signatures, `target.rs` which URLs
//! and addresses may be called (no SSRF), `settings.rs` the `WEBHOOK_*`
//! settings, `endpoints.rs` the rules of registering and rotating (shared
//! with the CLI).

mod admin;
pub mod endpoints;
pub mod settings;
mod sign;
mod target;
mod worker;

use std::sync::Arc;

use tokengate::WebhookStore;

pub(crate) use admin::{WebhooksDoc, router};
pub(crate) use worker::WebhookMetrics;

use settings::WebhookSettings;

/// The webhooks' store, settings and counters, shared by the routes, the
/// worker and `/metrics`.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    settings: WebhookSettings,
    metrics: Arc<WebhookMetrics>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Webhooks over `store` with the default settings (the server's
    /// `serve` uses the `WEBHOOK_*` ones).
    pub fn new(store: Arc<dyn WebhookStore>) -> Self {
        Self::with_settings(store, WebhookSettings::default())
    }

    /// Webhooks over `store` with `settings`.
    pub fn with_settings(store: Arc<dyn WebhookStore>, settings: WebhookSettings) -> Self {
        Self {
            store,
            settings,
            metrics: Arc::default(),
        }
    }

    /// `/metrics` lines.
    pub(crate) fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Starts the delivery worker and the expiry sweep; abort the handles
    /// to stop them (an interrupted delivery is retried after its lease).
    pub fn spawn(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
        let worker = Arc::new(worker::Worker::new(
            Arc::clone(&self.store),
            self.settings.clone(),
            Arc::clone(&self.metrics),
        )?);
        Ok(vec![
            tokio::spawn(Arc::clone(&worker).run()),
            tokio::spawn(worker.run_expiry_sweep()),
        ])
    }
}

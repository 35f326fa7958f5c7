//! The standalone server's router: health, readiness, metrics, OpenAPI, the
//! admin API, the demo protected API, forward auth and the verify API. `main` and the tests build the same
//! app with [`app`].
//!
//! Every request goes through one stack (`stack.rs`): an `x-request-id`
//! (the client's, when well-formed, or a generated one), echoed on the
//! response and recorded in the request's tracing span; a body limit, body
//! deadlines, a timeout, a panic catcher and the error envelope. The span is at `debug`
//! level under the target `tokengate::request`, so it is not even built at
//! the default `info`; `RUST_LOG=info,tokengate::request=debug` attaches the
//! id (and method and path) to every log line written while a request is
//! served, and logs one line per response. The `Authorization` header is
//! marked sensitive before any of this sees it.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use http::StatusCode;

use tokengate::http::{
    ApiError, SettingsConfig, admin_router, github_leak_router, settings_router,
};

pub use crate::stack::{BodyDeadlines, MAX_BODY_BYTES};
pub use crate::state::AppState;

use crate::ops::{health, metrics, ready};
use crate::stack::StackLayer;

/// The whole server: `/health`, `/ready`, `/metrics`, `/openapi.json`,
/// `/admin/...`, the demo API under `/api/v1`, and the Settings > API Tokens
/// page and API under `/settings/api-tokens` when `state.settings` is set.
pub fn app(state: AppState) -> Router {
    let body_deadlines = state.body_deadlines;
    let (admin_api, admin_doc) = admin_router(state.gate.clone(), Arc::clone(&state.admin));
    let mut documents = vec![admin_doc];
    let leaks_api = state.github_keys.clone().map(|(keys, file)| {
        let (router, document) = github_leak_router(state.gate.clone(), keys, file);
        documents.push(document);
        router
    });
    let webhooks_api = state.webhooks.clone().map(|webhooks| {
        documents.push(<crate::webhooks::WebhooksDoc as utoipa::OpenApi>::openapi());
        crate::webhooks::router(webhooks, Arc::clone(&state.admin))
    });
    let mut settings_page = Router::new();
    if let Some(sign_in) = &state.settings {
        // The auth proxy is the reverse proxy whose X-Forwarded-Host/-Proto count.
        let config = SettingsConfig::default().with_trusted_proxies(sign_in.trusted_proxies());
        let (router, document) = settings_router(state.gate.clone(), sign_in.clone(), config);
        documents.push(document);
        settings_page = router;
    }
    let settings_header = state
        .settings
        .as_ref()
        .and_then(|sign_in| sign_in.header())
        .map(http::HeaderName::as_str);
    let document = crate::openapi::document(documents, settings_header);
    let demo_api = crate::demo::router(&state.gate);
    let forward_auth = crate::forward::router(
        state.gate.clone(),
        Arc::clone(&state.admin),
        state.forward_auth.clone(),
    );

    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || crate::openapi::serve(document.clone())),
        )
        .with_state(state)
        .merge(admin_api)
        .merge(demo_api)
        .merge(forward_auth)
        .merge(leaks_api.unwrap_or_default())
        .merge(webhooks_api.unwrap_or_default())
        .merge(settings_page)
        .fallback(|| async { ApiError::response(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async {
            ApiError::response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
        .layer(StackLayer::new(body_deadlines))
        // Turns every handler into its route once, now. A `Router` called
        // as a service without this (our own accept loop does not go through
        // `into_make_service`, which does it) rebuilds the route of each
        // merged handler, and its layers, on every request.
        .with_state(())
}

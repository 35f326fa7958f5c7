//! `/admin/webhooks`: register, list, remove endpoints, rotate a secret,
//! and read an endpoint's delivery attempts; behind the admin token, in
//! the admin API's envelope. A secret is in exactly one answer: the 201 of
//! its creation (or rotation).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use http::StatusCode;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokengate::http::{AdminAuth, ApiError, SuccessEnvelope};
use tokengate::{Actor, StoreError, WebhookAttempt, WebhookEndpoint};

use super::Webhooks;
use super::endpoints::{EndpointError, deliveries, register, remove, rotate_secret};

#[derive(Clone)]
struct WebhookState {
    webhooks: Webhooks,
    admin: Arc<AdminAuth>,
}

/// The routes, guarded by the admin token.
pub(crate) fn router(webhooks: Webhooks, admin: Arc<AdminAuth>) -> Router {
    let state = WebhookState { webhooks, admin };
    let or_405 = |router: MethodRouter<WebhookState>| {
        router.fallback(|| async {
            ApiError::response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        })
    };
    Router::new()
        .route(
            "/admin/webhooks",
            or_405(post(create_webhook).get(list_webhooks)),
        )
        .route(
            "/admin/webhooks/{webhook_id}",
            or_405(delete(delete_webhook)),
        )
        .route(
            "/admin/webhooks/{webhook_id}/rotate-secret",
            or_405(post(rotate_webhook_secret)),
        )
        .route(
            "/admin/webhooks/{webhook_id}/deliveries",
            or_405(get(webhook_deliveries)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state)
}

async fn require_admin(
    State(state): State<WebhookState>,
    request: Request,
    next: Next,
) -> Response {
    if state.admin.accepts_request(request.headers()) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

fn unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "webhooks: the database failed");
    ApiError::Unavailable.into_response()
}

/// The admin making a change, for the audit log: the client address and the
/// request id (the server's stack sets one on every request).
struct AdminActor(Actor);

impl<S: Send + Sync> FromRequestParts<S> for AdminActor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Actor::for_request("admin", parts)))
    }
}

/// The `{webhook_id}` of a route; a malformed one is a 400 in the envelope.
struct WebhookId(String);

impl<S: Send + Sync> FromRequestParts<S> for WebhookId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| WebhookId(id))
            .map_err(|e| ApiError::BadRequest(format!("Invalid webhook id: {e}")))
    }
}

/// `POST /admin/webhooks` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    /// Where to POST events: `https://` (`http://` only with
    /// `WEBHOOK_ALLOW_PRIVATE_URLS=true`), resolving to public addresses only.
    #[schema(example = "https://app.example.com/webhooks/tokengate")]
    url: String,
    /// The event types to send; absent or null: every type.
    #[schema(example = json!(["token.revoked", "token.expiring"]))]
    events: Option<Vec<String>>,
}

/// An endpoint, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookView {
    /// The endpoint's id.
    #[schema(example = "whe_3f9a2b7c1d4e5f60")]
    id: String,
    /// Where events are POSTed.
    url: String,
    /// The subscribed event types; null: every type.
    #[schema(example = json!(["token.revoked"]))]
    events: Option<Vec<String>>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// While a secret rotation's overlap lasts: when the previous secret stops signing.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    previous_secret_expires_at: Option<OffsetDateTime>,
}

impl WebhookView {
    fn of(endpoint: &WebhookEndpoint) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            events: endpoint.events.clone(),
            created_at: endpoint.created_at,
            previous_secret_expires_at: endpoint
                .previous_secret
                .as_ref()
                .map(|(_, until)| *until)
                .filter(|until| *until > now),
        }
    }
}

/// An endpoint with its signing secret: the one answer that shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookWithSecret {
    #[serde(flatten)]
    endpoint: WebhookView,
    /// The signing secret, `whsec_<base64>`: shown only in this answer.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
}

/// Register a webhook endpoint.
///
/// Answers 201 with the endpoint and its signing secret (`whsec_...`), shown
/// only here: verify deliveries with it (Standard Webhooks). URLs that
/// resolve to loopback, private, link-local or metadata addresses are
/// refused unless `WEBHOOK_ALLOW_PRIVATE_URLS=true`.
#[utoipa::path(
    post,
    path = "/admin/webhooks",
    operation_id = "admin_create_webhook",
    tag = "webhooks",
    request_body = WebhookBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The endpoint and its secret (shown once)", body = SuccessEnvelope<WebhookWithSecret>),
    ),
)]
async fn create_webhook(
    State(state): State<WebhookState>,
    AdminActor(actor): AdminActor,
    body: Bytes,
) -> Response {
    let body: WebhookBody = match ApiError::parse_body(&body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let webhooks = &state.webhooks;
    match register(
        webhooks.store.as_ref(),
        &webhooks.settings,
        body.url,
        body.events,
        &actor,
    )
    .await
    {
        Ok(endpoint) => {
            let view = WebhookWithSecret {
                endpoint: WebhookView::of(&endpoint),
                secret: endpoint.secret.expose().to_owned(),
            };
            SuccessEnvelope::response(StatusCode::CREATED, &view)
        }
        Err(EndpointError::Invalid(message)) => {
            ApiError::BadRequest(format!("Invalid request body: {message}")).into_response()
        }
        Err(EndpointError::Store(e)) => unavailable(e),
    }
}

/// List webhook endpoints (never a secret).
#[utoipa::path(
    get,
    path = "/admin/webhooks",
    operation_id = "admin_list_webhooks",
    tag = "webhooks",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every endpoint, oldest first, without secrets", body = SuccessEnvelope<Vec<WebhookView>>),
    ),
)]
async fn list_webhooks(State(state): State<WebhookState>) -> Response {
    match state.webhooks.store.webhook_endpoints().await {
        Ok(endpoints) => {
            let views: Vec<WebhookView> = endpoints.iter().map(WebhookView::of).collect();
            SuccessEnvelope::response(StatusCode::OK, &views)
        }
        Err(e) => unavailable(e),
    }
}

/// What `DELETE /admin/webhooks/{webhook_id}` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeletedWebhook {
    /// The endpoint's id.
    id: String,
    /// Always true: it is gone, with its pending deliveries.
    deleted: bool,
}

/// Remove a webhook endpoint and its pending deliveries.
#[utoipa::path(
    delete,
    path = "/admin/webhooks/{webhook_id}",
    operation_id = "admin_delete_webhook",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint's id (`whe_...`)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Removed", body = SuccessEnvelope<DeletedWebhook>),
    ),
)]
async fn delete_webhook(
    State(state): State<WebhookState>,
    AdminActor(actor): AdminActor,
    WebhookId(id): WebhookId,
) -> Response {
    match remove(state.webhooks.store.as_ref(), &id, &actor).await {
        Ok(true) => {
            SuccessEnvelope::response(StatusCode::OK, &DeletedWebhook { id, deleted: true })
        }
        Ok(false) => ApiError::NotFound("Webhook endpoint not found".into()).into_response(),
        Err(e) => unavailable(e),
    }
}

/// Give a webhook endpoint a new signing secret.
///
/// Answers 201 with the new secret, shown only here. For 24 hours every
/// delivery carries both signatures (new and previous, space-separated in
/// `webhook-signature`), so the receiver can switch without losing one.
#[utoipa::path(
    post,
    path = "/admin/webhooks/{webhook_id}/rotate-secret",
    operation_id = "admin_rotate_webhook_secret",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint's id (`whe_...`)")),
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The endpoint and its new secret (shown once)", body = SuccessEnvelope<WebhookWithSecret>),
    ),
)]
async fn rotate_webhook_secret(
    State(state): State<WebhookState>,
    AdminActor(actor): AdminActor,
    WebhookId(id): WebhookId,
) -> Response {
    match rotate_secret(state.webhooks.store.as_ref(), &id, &actor).await {
        Ok(Some((endpoint, secret))) => {
            let view = WebhookWithSecret {
                endpoint: WebhookView::of(&endpoint),
                secret: secret.expose().to_owned(),
            };
            SuccessEnvelope::response(StatusCode::CREATED, &view)
        }
        Ok(None) => ApiError::NotFound("Webhook endpoint not found".into()).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `GET /admin/webhooks/{webhook_id}/deliveries` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveriesQuery {
    /// Most attempts to return (1 to 1000, default 100).
    limit: Option<u32>,
}

/// An endpoint's delivery attempts, newest first.
///
/// Each attempt: the event (`webhook-id` and type), which attempt it was,
/// when, the receiver's status and the error (never the receiver's whole
/// answer), and whether it was delivered, will be retried, or failed for good.
#[utoipa::path(
    get,
    path = "/admin/webhooks/{webhook_id}/deliveries",
    operation_id = "admin_list_webhook_deliveries",
    tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The endpoint's id (`whe_...`)"), DeliveriesQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The attempts, newest first", body = SuccessEnvelope<Vec<WebhookAttempt>>),
    ),
)]
async fn webhook_deliveries(
    State(state): State<WebhookState>,
    WebhookId(id): WebhookId,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let limit = match query {
        Ok(Query(DeliveriesQuery { limit })) => limit.unwrap_or(100),
        Err(e) => return ApiError::BadRequest(format!("Invalid query: {e}")).into_response(),
    };
    match deliveries(state.webhooks.store.as_ref(), &id, limit).await {
        Ok(Some(attempts)) => SuccessEnvelope::response(StatusCode::OK, &attempts),
        Ok(None) => ApiError::NotFound("Webhook endpoint not found".into()).into_response(),
        Err(EndpointError::Invalid(message)) => ApiError::BadRequest(message).into_response(),
        Err(EndpointError::Store(e)) => unavailable(e),
    }
}

/// The routes' OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_webhook, list_webhooks, delete_webhook, rotate_webhook_secret, webhook_deliveries),
    tags((name = "webhooks", description = "Signed webhooks (Standard Webhooks): endpoints, secrets and delivery attempts")),
    modifiers(&SharedErrors),
)]
pub(crate) struct WebhooksDoc;

/// The shared error responses (the admin API's components) on each operation.
struct SharedErrors;

impl utoipa::Modify for SharedErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_id = path.contains("{webhook_id}");
            let operations = [&mut item.get, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let mut errors = vec![("401", "AdminUnauthorized"), ("503", "ServiceUnavailable")];
                if operation.request_body.is_some() || path.ends_with("/deliveries") {
                    errors.push(("400", "BadRequest"));
                }
                if operation.request_body.is_some() {
                    errors.push(("413", "PayloadTooLarge"));
                }
                if has_id {
                    errors.push(("404", "NotFound"));
                }
                for (status, component) in errors {
                    operation.responses.responses.insert(
                        status.into(),
                        RefOr::Ref(Ref::from_response_name(component)),
                    );
                }
            }
        }
    }
}

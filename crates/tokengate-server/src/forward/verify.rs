//! `POST /v1/verify`: the gate's answer for an application with no proxy,
//! in one HTTP call from any language. Authenticated with the admin token
//! or `VERIFY_TOKEN` (which can do nothing else); a call counts like a
//! request.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokengate::http::{ApiError, GateAnswer, SuccessEnvelope};

use super::ForwardState;
use super::path::normalize;

/// `POST /v1/verify` body: the token, and what it must be allowed to do
/// (a route, looked up in `FORWARD_AUTH_ROUTES`, or scopes), or neither.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    /// The API token the client presented (without `Bearer `).
    token: String,
    /// The client's method, for the route's scopes (default `GET` when
    /// `path` is given).
    #[schema(example = "GET")]
    method: Option<String>,
    /// The client's path (a query is ignored), for the route's scopes.
    #[schema(example = "/api/v1/reports/7")]
    path: Option<String>,
    /// Scopes the token must have (instead of `method` and `path`).
    #[schema(example = json!(["reports:read"]))]
    scopes: Option<Vec<String>>,
}

/// `POST /v1/verify` answer: what to relay to the client, and who it is.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Verdict {
    /// Whether the request may go on (`status` is 200).
    valid: bool,
    /// The status to answer the client with when not valid.
    #[schema(example = 200)]
    status: u16,
    /// The body to answer the client with when not valid (null when valid:
    /// the application answers with its own).
    #[schema(example = json!(null))]
    body: Option<String>,
    /// The headers to add to the answer, valid or not (lower-case names):
    /// the rate-limit headers, and on a denial `content-type`,
    /// `www-authenticate` or `retry-after`.
    #[schema(example = json!({"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "999", "x-ratelimit-reset": "1767225600"}))]
    headers: BTreeMap<String, String>,
    /// The token's account, when the token is valid.
    account_id: Option<String>,
    /// The token's public id, when the token is valid.
    token_id: Option<String>,
    /// The account's plan, when the token is valid.
    plan: Option<String>,
    /// The token's scopes (`["*"]`: every scope), when the token is valid.
    scopes: Option<Vec<String>>,
}

/// Verify a token for a request.
///
/// Answers what the gate would answer that request: `data.status`,
/// `data.body` and `data.headers` are exactly what to relay to the client
/// (the contract's 401, 403, 429 and 503, the scope's 403, or 200 with the
/// rate-limit headers). The call counts in the token's hourly window, like
/// the request it stands for. Give `path` (and `method`, default `GET`) to
/// apply the route's scopes from `FORWARD_AUTH_ROUTES`, or `scopes`, or
/// neither (a valid token then needs no scope). An ambiguous path is refused
/// with a relayable 400. Authenticated with the admin token or
/// `VERIFY_TOKEN` (`Authorization: Bearer ...`), which can call nothing else.
#[utoipa::path(
    post,
    path = "/v1/verify",
    operation_id = "verify_token",
    tag = "verify",
    request_body = VerifyBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The gate's answer (valid or not)", body = SuccessEnvelope<Verdict>),
    ),
)]
pub(crate) async fn verify(
    State(state): State<Arc<ForwardState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let allowed = state.admin.accepts_request(&headers)
        || (state.config.verify.as_ref()).is_some_and(|verify| verify.accepts_request(&headers));
    if !allowed {
        return ApiError::Unauthorized.into_response();
    }
    let request: VerifyBody = match ApiError::parse_body(&body) {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    let scopes = match (request.scopes, request.path, request.method) {
        (Some(_), Some(_), _) => {
            return bad_request("give either path (and method) or scopes, not both");
        }
        (_, None, Some(_)) => return bad_request("method goes with path"),
        (Some(scopes), None, None) => scopes,
        (None, None, None) => Vec::new(),
        (None, Some(path), method) => match normalize(&path) {
            Ok(path) => {
                let method = method.as_deref().unwrap_or("GET");
                state.config.rules.required_scopes(method, &path).to_vec()
            }
            Err(e) => {
                let denial = ApiError::response(
                    StatusCode::BAD_REQUEST,
                    &format!("Ambiguous request path refused: {e}"),
                );
                return respond(verdict(denial, None).await);
            }
        },
    };
    let answer = GateAnswer::for_token(&state.gate, &request.token, &scopes).await;
    let principal = answer.principal.clone();
    respond(verdict(answer.response, principal.as_ref()).await)
}

fn bad_request(message: &str) -> Response {
    ApiError::BadRequest(format!("Invalid request body: {message}")).into_response()
}

fn respond(verdict: Verdict) -> Response {
    let mut response = axum::Json(SuccessEnvelope {
        success: true,
        data: verdict,
    })
    .into_response();
    *response.status_mut() = StatusCode::OK;
    response
}

/// The verdict for the gate's `response`.
async fn verdict(response: Response, principal: Option<&tokengate::Principal>) -> Verdict {
    let (parts, body) = response.into_parts();
    let valid = parts.status.is_success();
    let body = if valid {
        None
    } else {
        let bytes = body
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    Verdict {
        valid,
        status: parts.status.as_u16(),
        body,
        headers,
        account_id: principal.map(|p| p.account_id().to_owned()),
        token_id: principal.map(|p| p.token_id().to_string()),
        plan: principal.map(|p| p.plan().to_owned()),
        scopes: principal.map(|p| p.scopes()),
    }
}

/// The verify API's OpenAPI paths.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(verify),
    modifiers(&CallerErrors),
    tags((name = "verify", description = "The gate's answer for an application with no proxy")),
)]
pub(crate) struct VerifyDoc;

/// The caller's own errors, as the shared response components the admin
/// API brings (a bad body, a wrong credential, a body over the limit).
struct CallerErrors;

impl utoipa::Modify for CallerErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr};
        let Some(operation) = openapi
            .paths
            .paths
            .get_mut("/v1/verify")
            .and_then(|item| item.post.as_mut())
        else {
            return;
        };
        for (status, component) in [
            ("400", "BadRequest"),
            ("401", "AdminUnauthorized"),
            ("413", "PayloadTooLarge"),
        ] {
            operation.responses.responses.insert(
                status.into(),
                RefOr::Ref(Ref::from_response_name(component)),
            );
        }
    }
}

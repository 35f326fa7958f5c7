//! `POST /leaks/github`: GitHub's secret scanning partner endpoint.
//!
//! GitHub finds a token of ours in public code and POSTs it here, signed
//! with one of its published keys (`github/keys.rs` checks the signature over
//! the raw body). Each well-formed token of ours that is still live is
//! revoked at once, with a `token.leaked` audit event naming the URL; the
//! answer is GitHub's feedback array, one entry per reported string:
//! `true_positive` for a token of ours (live or already revoked),
//! `false_positive` for anything else. A missing header, unknown key or bad
//! signature is 401 and changes nothing; the headers are checked before the
//! body is read. A report holds at most 1,000 matches in at most 1 MB (413
//! beyond, naming both); an entry without string `token`, `type`, `url` and
//! `source` is 400, naming its index.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ApiError, to_json};
use super::github::{
    GithubKeys, KEY_IDENTIFIER_HEADER, Label, MAX_REPORT_BYTES, MAX_REPORT_ENTRIES, ReportError,
    SIGNATURE_HEADER, VerifyError, parse_report,
};
use super::openapi::{BadRequest, PayloadTooLarge, ServiceUnavailable};
use super::origin::RequestOrigin;
use crate::gate::TokenGate;
use crate::manage::LeakReport;
use crate::manage::Manager;

/// A key file is read again at most this often, when a request names a key
/// it does not know (GitHub rotated its keys).
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct LeakState {
    manager: Manager,
    keys: Arc<RwLock<GithubKeys>>,
    key_file: Option<PathBuf>,
    last_reload: Arc<Mutex<Option<Instant>>>,
}

/// The route `POST /leaks/github` for GitHub's secret scanning partner
/// program, checking signatures with `keys` (re-read from `key_file`, if
/// given, when a request names an unknown key), and its OpenAPI description.
///
/// Mount it without the gate and without admin auth: the signature is the
/// authentication.
pub fn github_leak_router(
    gate: TokenGate,
    keys: GithubKeys,
    key_file: Option<PathBuf>,
) -> (Router, OpenApi) {
    let state = LeakState {
        manager: Manager::new(&gate),
        keys: Arc::new(RwLock::new(keys)),
        key_file,
        last_reload: Arc::default(),
    };
    let (router, document) =
        OpenApiRouter::<LeakState>::with_openapi(super::openapi::shared_components())
            .routes(routes!(github_report))
            .split_for_parts();
    let mut document = document;
    super::operations::prefix_operation_ids(&mut document, "leaks");
    (router.with_state(state), document)
}

impl LeakState {
    /// `check` with the keys, and once more after reading the key file again
    /// when it names an unknown key (GitHub rotated its keys).
    fn with_keys(
        &self,
        check: impl Fn(&GithubKeys) -> Result<(), VerifyError>,
    ) -> Result<(), VerifyError> {
        let checked = check(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
        match checked {
            Err(VerifyError::UnknownKey) if self.reload() => {
                check(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
            }
            other => other,
        }
    }

    /// Reads the key file again, at most once a minute; whether it did.
    fn reload(&self) -> bool {
        let Some(path) = &self.key_file else {
            return false;
        };
        {
            let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < RELOAD_AT_MOST_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let loaded = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| GithubKeys::from_json(&text).map_err(|e| e.to_string()));
        match loaded {
            Ok(keys) => {
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
                tracing::info!(file = %path.display(), "reloaded GitHub's secret scanning keys");
                true
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot reload GitHub's secret scanning keys; keeping the old ones");
                false
            }
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// A leak report from GitHub's secret scanning partner program.
///
/// The body is a JSON array of `{"token", "type", "url", "source"}`, signed
/// by GitHub (`Github-Public-Key-Identifier`, `Github-Public-Key-Signature`:
/// ECDSA P-256 / SHA-256 over the raw body). Each live token of ours is
/// revoked at once. The answer is the protocol's feedback array (not the
/// usual envelope), one entry per reported string, in order.
#[utoipa::path(
    post,
    path = "/leaks/github",
    tag = "audit",
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "The `key_identifier` of the key that signed the body"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 ASN.1 DER ECDSA P-256 / SHA-256 signature of the raw body"),
    ),
    request_body(content = String, content_type = "application/json",
        description = "`[{\"token\": \"...\", \"type\": \"...\", \"url\": \"...\", \"source\": \"content\"}]`"),
    responses(
        (status = 200, description = "Feedback: `[{\"token_hash\": \"<hex SHA-256>\", \"token_type\": \"...\", \"label\": \"true_positive\" | \"false_positive\"}]`",
            body = Object, content_type = "application/json"),
        (status = 400, response = BadRequest),
        (status = 401, description = "A missing or unknown key id, or a bad signature; nothing changed",
            body = super::envelope::ErrorEnvelope,
            example = json!({"success": false, "error": "Invalid or missing GitHub signature"})),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn github_report(
    State(state): State<LeakState>,
    origin: RequestOrigin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key_id = header(&headers, KEY_IDENTIFIER_HEADER);
    let signature = header(&headers, SIGNATURE_HEADER);
    // Everything that can be refused is refused before the body is read: a
    // missing or unknown key id, a missing or malformed signature, a
    // declared length over the limit.
    state
        .with_keys(|keys| keys.check_headers(key_id, signature))
        .map_err(not_signed_by_github)?;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_REPORT_BYTES as u64) {
        return Ok(report_too_large());
    }
    let Some(body) = read_body(body).await? else {
        return Ok(report_too_large());
    };
    state
        .with_keys(|keys| keys.verify(key_id, signature, &body))
        .map_err(not_signed_by_github)?;
    let reported = match parse_report(&body) {
        Ok(reported) => reported,
        Err(e @ ReportError::TooManyEntries { .. }) => {
            return Ok(ApiError::response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &e.to_string(),
            ));
        }
        Err(e) => return Err(ApiError::BadRequest(e.to_string())),
    };
    let management = state.manager.acting_as(origin.actor("leak-report:github"));
    let mut feedback = Vec::with_capacity(reported.len());
    for leak in &reported {
        let report = LeakReport {
            token: leak.expose_token(),
            url: leak.url(),
            source: leak.source(),
            kind: leak.token_type(),
        };
        let outcome = management.revoke_leaked(report).await?;
        let label = if outcome.is_ours() {
            Label::TruePositive
        } else {
            Label::FalsePositive
        };
        feedback.push(leak.feedback(label));
    }
    let body = to_json(&feedback).map_err(|_| ApiError::Internal)?;
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn not_signed_by_github(error: VerifyError) -> ApiError {
    tracing::warn!(%error, "refused a leak report: not signed by GitHub");
    ApiError::NotSignedIn("Invalid or missing GitHub signature".into())
}

/// The 413 of a report over [`MAX_REPORT_BYTES`], naming the limits.
fn report_too_large() -> Response {
    ApiError::response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &ReportError::TooManyEntries {
            max: MAX_REPORT_ENTRIES,
        }
        .to_string(),
    )
}

/// The whole body, or `None` past [`MAX_REPORT_BYTES`]. A body that fails
/// (the client went away, or the server's body deadline passed) is 400;
/// the standalone server answers a passed deadline 408 itself.
async fn read_body(body: Body) -> Result<Option<Vec<u8>>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::BadRequest("Could not read the request body".into()))?;
        if bytes.len() + chunk.len() > MAX_REPORT_BYTES {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

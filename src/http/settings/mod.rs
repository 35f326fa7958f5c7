//! Settings > API Tokens: the page where signed-in users manage their own
//! tokens, and the JSON API behind it; [`settings_router`] documents both.
//!
//! `api` holds the handlers (the signed-in account's own tokens only),
//! `views` the JSON they speak, `responses` their documented errors,
//! `guard` the browser safety (same-origin state changes, JSON only,
//! security headers), `page` the embedded page, `sign_in` the host's
//! [`SignIn`] and the proxy-header one, `proxies` the trusted CIDR blocks.

mod api;
mod guard;
mod page;
mod proxies;
mod responses;
mod sign_in;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::Redirect;
use axum::routing::{any, get};
use http::{HeaderMap, StatusCode};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Paths;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

pub use proxies::TrustedProxies;
pub use sign_in::{ProxyHeaderSignIn, SignIn};

use self::api::SettingsState;
use self::page::{Asset, Page};
use super::envelope::ApiError;
use crate::config_error::ConfigError;
use crate::gate::TokenGate;
use crate::manage::Manager;

/// Where the settings routes are mounted unless configured otherwise.
pub(crate) const DEFAULT_SETTINGS_PREFIX: &str = "/settings/api-tokens";

/// Largest accepted request body (the envelope's 413 names this limit).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How the settings routes are mounted.
#[derive(Clone, Debug)]
pub struct SettingsConfig {
    prefix: String,
    trusted_proxies: TrustedProxies,
}

impl Default for SettingsConfig {
    /// At `/settings/api-tokens`, trusting no proxy's forwarded headers.
    fn default() -> Self {
        Self {
            prefix: DEFAULT_SETTINGS_PREFIX.to_owned(),
            trusted_proxies: TrustedProxies::none(),
        }
    }
}

impl SettingsConfig {
    /// Mounts the page and its API under `prefix` instead of
    /// `/settings/api-tokens`: a path such as `/account/tokens`, starting
    /// with `/`, without a trailing `/`, of letters, digits and `-._~/`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        validate_prefix(&prefix).map_err(|reason| ConfigError::SettingsPrefix {
            prefix: prefix.clone(),
            reason,
        })?;
        self.prefix = prefix;
        Ok(self)
    }

    /// Believes `X-Forwarded-Host` and `X-Forwarded-Proto` from these peers
    /// when checking that a state change comes from the page's own origin,
    /// and `X-Forwarded-For` for the client address in the security log
    /// (default: from nobody). Set it to your reverse proxies when the app
    /// is behind one.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The prefix the routes are mounted under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The peers whose forwarded headers are believed.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }
}

fn validate_prefix(prefix: &str) -> Result<(), &'static str> {
    if !prefix.starts_with('/') || prefix.len() < 2 {
        return Err("it must start with '/' and name a path, e.g. /settings/api-tokens");
    }
    if prefix.ends_with('/') {
        return Err("it must not end with '/'");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    if !prefix.chars().all(allowed) {
        return Err("it may hold only letters, digits and - . _ ~ /");
    }
    if prefix
        .split('/')
        .skip(1)
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("it must not have empty, '.' or '..' segments");
    }
    Ok(())
}

/// The OpenAPI tag of the settings routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    components(
        schemas(super::envelope::ErrorEnvelope),
        responses(
            responses::NotSignedIn,
            responses::SettingsForbidden,
            responses::TokenNotFound,
            responses::NotJson,
            super::openapi::BadRequest,
            super::openapi::Conflict,
            super::openapi::TokenCapReached,
            super::openapi::PayloadTooLarge,
            super::openapi::ServiceUnavailable,
        ),
    ),
    tags((
    name = "settings",
    description = "Settings > API Tokens: the signed-in user's own account and tokens, for the \
        page at the same prefix. Signed in by the host application's session (or an \
        authenticating proxy's header); state changes must come from the page's own origin \
        and be `application/json`; answers are `Cache-Control: no-store`.",
    )),
)]
struct SettingsDoc;

/// The Settings > API Tokens page and its JSON API, for the account that
/// `sign_in` names, and their OpenAPI description (merge it into your
/// document). Merge the router into your app; under `config.prefix()`
/// (default `/settings/api-tokens`) it serves:
///
/// | method & path | does |
/// | --- | --- |
/// | `GET {prefix}` | the page (HTML; its script and styles under `{prefix}/assets/`) |
/// | `GET {prefix}/account` | the signed-in account: plan, API access, requests per hour |
/// | `GET {prefix}/tokens` | its tokens, never a secret |
/// | `POST {prefix}/tokens` | `{"name", "expires_at" or "expires_in_days", "scopes"}`: `201`, the token shown once |
/// | `DELETE {prefix}/tokens/{id}` | revoke |
/// | `POST {prefix}/tokens/{id}/rotate` | `{"grace_seconds"}`: `201`, the new token shown once |
/// | `GET {prefix}/audit` | the account's security log, newest first (`limit`, `before`) |
///
/// Who is signed in is the host's to say, through [`SignIn`] (for an
/// authenticating reverse proxy, [`ProxyHeaderSignIn`]). A token of another
/// account is `404`, as if it did not exist. A plan without API access
/// cannot create or rotate tokens (`403`, the contract's body). State
/// changes from another site are `403`, and with a body must be JSON (`415`); every
/// response carries a strict Content-Security-Policy, `Referrer-Policy:
/// no-referrer` and `Cache-Control: no-store`.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use http::request::Parts;
/// use tokengate::http::{SettingsConfig, SignIn, settings_router};
/// use tokengate::{Principal, SqliteStore, TokenGate, TokenStore};
///
/// /// The signed-in user, as your own auth middleware left it in the request.
/// #[derive(Clone)]
/// struct CurrentUser {
///     account_id: String,
/// }
///
/// /// Tells the settings page who is signed in.
/// struct MySignIn;
///
/// impl SignIn for MySignIn {
///     async fn account_id(&self, parts: &mut Parts) -> Option<String> {
///         let user = parts.extensions.get::<CurrentUser>()?;
///         Some(user.account_id.clone())
///     }
/// }
///
/// async fn hello(principal: Principal) -> String {
///     format!("hello, {}", principal.account_id())
/// }
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let gate = TokenGate::new(Arc::new(store))?;
///
/// let (settings, openapi) = settings_router(gate.clone(), MySignIn, SettingsConfig::default());
/// let app: Router = Router::new()
///     .route("/api/v1/hello", get(hello))
///     .layer(gate.layer()) // your API, behind the gate
///     .merge(settings); // the page at /settings/api-tokens, behind your sign-in
/// # let _ = (app, openapi);
/// # Ok(())
/// # }
/// ```
///
/// `examples/settings.rs` is a whole host application with a session login
/// (`tower-sessions`). Behind an authenticating reverse proxy, use
/// [`ProxyHeaderSignIn`] with the same [`TrustedProxies`] in
/// [`SettingsConfig::with_trusted_proxies`]:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::net::SocketAddr;
/// use std::sync::Arc;
/// use axum::Router;
/// use http::HeaderName;
/// use tokengate::http::{ProxyHeaderSignIn, SettingsConfig, TrustedProxies, settings_router};
/// use tokengate::{SqliteStore, TokenGate, TokenStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let gate = TokenGate::new(Arc::new(store))?;
///
/// // The proxy on this machine signs users in and sets X-Forwarded-User
/// // (replacing any the client sent); from any other peer nobody is signed in.
/// let proxies: TrustedProxies = "127.0.0.0/8,::1/128".parse()?; // or TrustedProxies::loopback()
/// let header = HeaderName::from_static("x-forwarded-user");
/// let sign_in = ProxyHeaderSignIn::new(header, proxies.clone());
/// let config = SettingsConfig::default().with_trusted_proxies(proxies);
/// let (settings, _openapi) = settings_router(gate, sign_in, config);
///
/// // The header is believed by peer address: serve with ConnectInfo.
/// let app = Router::new().merge(settings);
/// let service = app.into_make_service_with_connect_info::<SocketAddr>();
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
pub fn settings_router<A: SignIn>(
    gate: TokenGate,
    sign_in: A,
    config: SettingsConfig,
) -> (Router, OpenApi) {
    let state = SettingsState {
        manager: Manager::new(&gate),
        gate,
        sign_in: Arc::new(sign_in),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
    };
    let prefix = config.prefix.as_str();
    let (router, document) = OpenApiRouter::<SettingsState>::with_openapi(SettingsDoc::openapi())
        .routes(at(prefix, routes!(api::get_account)))
        .routes(at(prefix, routes!(api::list_tokens, api::create_token)))
        .routes(at(prefix, routes!(api::revoke_token)))
        .routes(at(prefix, routes!(api::rotate_token)))
        .routes(at(prefix, routes!(api::security_log)))
        .split_for_parts();
    let mut document = document;
    super::operations::prefix_operation_ids(&mut document, "settings");
    super::operations::optional_request_body(&mut document, "/tokens/{id}/rotate", "post");

    let page = Page::new(prefix);
    let script = Asset::script();
    let style = Asset::style();
    let page_path = prefix.to_owned();
    let router = router
        .route(
            prefix,
            get(move || async move { page.response() }).fallback(method_not_allowed),
        )
        // The page's own links are absolute, but a trailing slash typed by
        // hand should still find it.
        .route(
            &format!("{prefix}/"),
            get(move || async move { Redirect::permanent(&page_path) }),
        )
        .route(
            &format!("{prefix}/assets/settings.js"),
            get(move |headers: HeaderMap| async move { script.response(&headers) }),
        )
        .route(
            &format!("{prefix}/assets/settings.css"),
            get(move |headers: HeaderMap| async move { style.response(&headers) }),
        )
        // Anything else under the prefix is answered here, with the same headers.
        .route(
            &format!("{prefix}/{{*rest}}"),
            any(|| async { ApiError::NotFound("Not found".into()) }),
        )
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            Arc::new(config.trusted_proxies),
            guard::refuse_cross_site,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(guard::security_headers));
    (router, document)
}

/// Mounts a handler's route under `prefix`, in the router and in the
/// document alike, and answers a wrong method with 405 in the envelope.
fn at(
    prefix: &str,
    (schemas, paths, method_router): UtoipaMethodRouter<SettingsState>,
) -> UtoipaMethodRouter<SettingsState> {
    let mut prefixed = Paths::new();
    prefixed.extensions = paths.extensions;
    for (path, item) in paths.paths {
        prefixed.paths.insert(format!("{prefix}{path}"), item);
    }
    (
        schemas,
        prefixed,
        method_router.fallback(method_not_allowed),
    )
}

async fn method_not_allowed() -> axum::response::Response {
    ApiError::response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for good in [
            "/settings/api-tokens",
            "/t",
            "/account/api_tokens.v2",
            "/a~b",
        ] {
            assert!(
                SettingsConfig::default().with_prefix(good).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "/",
            "settings",
            "/settings/",
            "//x",
            "/a//b",
            "/a/../b",
            "/a/./b",
            "/{id}",
            "/*rest",
            "/a b",
            "/a\"b",
            "/é",
        ] {
            assert!(SettingsConfig::default().with_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(SettingsConfig::default().prefix(), DEFAULT_SETTINGS_PREFIX);
    }
}

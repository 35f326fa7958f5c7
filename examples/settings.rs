//! A host application with its own sign-in that mounts tokengate's
//! Settings > API Tokens page next to its gated API.
//!
//! ```sh
//! cargo run --example settings
//! # open http://127.0.0.1:3000, sign in as alice (Pro) or bob (Free), password "demo",
//! # generate a token on Settings > API Tokens, then:
//! curl -i http://127.0.0.1:3000/api/v1/hello -H 'Authorization: Bearer <token>'
//! ```
//!
//! The sign-in is a server-side session (`tower-sessions` with its memory
//! store) rather than a hand-made signed cookie: the cookie holds only an
//! opaque session id, signing out really ends the session, and there is no
//! key to generate, rotate and keep out of the repository. The settings
//! router learns who is signed in through [`SignIn`], implemented below
//! over that session; it never sees a password.
//!
//! The users are two demo accounts. In your app, check passwords against
//! your user store (argon2id), and add CSRF protection to your own forms
//! (the settings API protects itself: same-origin, JSON only).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, FromRequestParts};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, http::request::Parts};
use serde::Deserialize;
use tokengate::http::{SettingsConfig, SignIn, settings_router};
use tokengate::{Manager, Principal, SqliteStore, TokenGate, TokenStore};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer};
use tracing_subscriber::EnvFilter;

/// The session key of the signed-in account id.
const ACCOUNT_KEY: &str = "account_id";

/// Demo users: name, password, plan.
const USERS: [(&str, &str, &str); 2] = [("alice", "demo", "pro"), ("bob", "demo", "free")];

/// Who is signed in, for the settings router: the account id in the session.
struct SessionSignIn;

impl SignIn for SessionSignIn {
    async fn account_id(&self, parts: &mut Parts) -> Option<String> {
        let session = Session::from_request_parts(parts, &()).await.ok()?;
        session.get::<String>(ACCOUNT_KEY).await.ok().flatten()
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// `GET /`: the sign-in form, or a link to the settings page.
async fn home(session: Session) -> Html<String> {
    let signed_in: Option<String> = session.get(ACCOUNT_KEY).await.ok().flatten();
    Html(match signed_in {
        Some(account) => format!(
            "<!doctype html><title>Example app</title>\
             <p>Signed in as <b>{}</b>.</p>\
             <p><a href=\"/settings/api-tokens\">Settings &gt; API Tokens</a></p>\
             <form method=\"post\" action=\"/logout\"><button>Sign out</button></form>",
            escape(&account)
        ),
        None => "<!doctype html><title>Example app</title>\
             <form method=\"post\" action=\"/login\">\
             <p><label>User <input name=\"user\" value=\"alice\"></label> (alice: Pro, bob: Free)</p>\
             <p><label>Password <input name=\"password\" type=\"password\" value=\"demo\"></label></p>\
             <button>Sign in</button></form>"
            .to_owned(),
    })
}

/// `POST /login`: a new session id (no fixation), then the account in it.
async fn login(session: Session, Form(login): Form<Login>) -> Response {
    let known = USERS
        .iter()
        .any(|(user, password, _)| *user == login.user && *password == login.password);
    if !known {
        return (
            http::StatusCode::UNAUTHORIZED,
            Html("Wrong user or password. <a href=\"/\">Back</a>"),
        )
            .into_response();
    }
    if session.cycle_id().await.is_err() || session.insert(ACCOUNT_KEY, &login.user).await.is_err()
    {
        return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Redirect::to("/settings/api-tokens").into_response()
}

/// `POST /logout`: the session is gone, on the server too.
async fn logout(session: Session) -> Redirect {
    let _ = session.flush().await;
    Redirect::to("/")
}

/// `GET /api/v1/hello`: behind the gate, so only a valid token gets here.
async fn hello(principal: Principal) -> String {
    format!(
        "hello, {} (plan {}, token {})\n",
        principal.account_id(),
        principal.plan(),
        principal.token_id()
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();

    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".to_owned());
    let store = SqliteStore::connect(&url).await?;
    store.migrate().await?; // also seeds the free/pro/enterprise plans
    let gate = TokenGate::builder(Arc::new(store))
        .with_cache_ttl(Duration::from_secs(60))
        .build()?;
    let maintenance = gate.spawn_maintenance();
    // Your billing would do this when a customer subscribes.
    let manager = Manager::new(&gate);
    for (user, _, plan) in USERS {
        manager.set_account_plan(user, plan).await?;
    }

    let (settings, _openapi) =
        settings_router(gate.clone(), SessionSignIn, SettingsConfig::default());
    let sessions = SessionManagerLayer::new(MemoryStore::default())
        .with_secure(false) // plain http on localhost; keep the default (true) behind HTTPS
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(8)));
    // Pages with a session; the API without one (tokens only).
    let web = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .merge(settings)
        .layer(sessions);
    let api = Router::new()
        .route("/api/v1/hello", get(hello))
        .layer(gate.layer());
    let app = web.merge(api);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    println!("  1. open it and sign in as alice (Pro) or bob (Free), password \"demo\"");
    println!("  2. on Settings > API Tokens, click Generate New Token and copy it");
    println!(
        "  3. curl -i http://127.0.0.1:3000/api/v1/hello -H 'Authorization: Bearer <token>'\n"
    );

    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    maintenance.shutdown().await;
    Ok(())
}

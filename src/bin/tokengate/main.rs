//! `tokengate`: the server and its command line. Thin: configuration, wiring, exit codes.

mod cli;
mod config;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokengate::server::{AppState, app};
use tokengate::store::StoreError;
use tokengate::{AdminAuth, SqliteStore, TokenGate, TokenStore};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::config::{Common, LogFormat, ServeArgs};

fn main() -> ExitCode {
    // `.env` is optional; a malformed one is worth a warning, not a crash.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: ignoring .env: {e}");
    }
    let mut cli = Cli::parse();
    if cli.command.is_none() {
        // No subcommand means `serve`: parse again so serve's flags and env apply.
        cli = Cli::parse_from(std::env::args_os().chain([std::ffi::OsString::from("serve")]));
    }
    init_tracing(cli.common.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let common = cli.common;
    // `main` re-parses with `serve` appended when no subcommand is given.
    let Some(command) = cli.command else {
        return Err("no command given; try `tokengate --help`".into());
    };
    // Refuse bad configuration before touching the database.
    common.token_format()?;
    common
        .argon2_params()
        .validate()
        .map_err(|e| e.to_string())?;
    let store = connect(&common.database_url).await?;
    store.migrate().await.map_err(|e| {
        format!(
            "cannot migrate {}: {}",
            redact_url(&common.database_url),
            root_cause(&e)
        )
    })?;
    match command {
        Command::Migrate => {
            eprintln!("migrations applied to {}", redact_url(&common.database_url));
            Ok(())
        }
        Command::Serve(args) => serve(common, args, store).await,
        other => {
            let gate = build_gate(&common, store, None)?;
            cli::run_management(other, gate).await
        }
    }
}

async fn connect(url: &str) -> Result<Arc<dyn TokenStore>, String> {
    let shown = redact_url(url);
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url)
            .await
            .map_err(|e| format!("cannot open database {shown}: {}", root_cause(&e)))?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let store = tokengate::store::PostgresStore::connect(url)
                .await
                .map_err(|e| format!("cannot connect to {shown}: {}", root_cause(&e)))?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        return Err("this build has no PostgreSQL support (enable the `postgres` feature)".into());
    }
    Err(format!(
        "unsupported DATABASE_URL {shown}: use sqlite://path/to/file.db or postgres://user@host/db"
    ))
}

fn build_gate(
    common: &Common,
    store: Arc<dyn TokenStore>,
    serve: Option<&ServeArgs>,
) -> Result<TokenGate, String> {
    let mut builder = TokenGate::builder(store)
        .with_token_format(common.token_format()?)
        .with_argon2_params(common.argon2_params());
    if let Some(args) = serve {
        builder = builder.with_cache_ttl(args.cache_ttl());
        #[cfg(feature = "redis")]
        if let Some(url) = &args.redis_url {
            let config = tokengate::limit::RedisLimiterConfig {
                key_prefix: args.redis_key_prefix.clone(),
                ..Default::default()
            };
            let limiter = tokengate::limit::RedisRateLimiter::new(url, config)
                .map_err(|e| format!("invalid REDIS_URL: {e}"))?;
            builder = builder
                .with_rate_limiter(Arc::new(limiter))
                .with_limiter_failure_policy(args.rate_limit_failure_policy.into());
        }
        #[cfg(not(feature = "redis"))]
        if args.redis_url.is_some() {
            return Err("this build has no Redis support (enable the `redis` feature)".into());
        }
    }
    builder.build().map_err(|e| e.to_string())
}

async fn serve(common: Common, args: ServeArgs, store: Arc<dyn TokenStore>) -> Result<(), String> {
    let bind_addr: SocketAddr = args.bind_addr.parse().map_err(|_| {
        format!(
            "invalid BIND_ADDR {:?}: use host:port, e.g. 127.0.0.1:8080",
            args.bind_addr
        )
    })?;
    let gate = build_gate(&common, Arc::clone(&store), Some(&args))?;
    let admin = match &args.admin_token {
        Some(token) if token.len() < 16 => {
            return Err("ADMIN_TOKEN is too short: use at least 16 random characters".into());
        }
        Some(token) => AdminAuth::from_token(token),
        None => {
            let (auth, generated) = AdminAuth::load_or_generate(store.as_ref())
                .await
                .map_err(|e| format!("cannot read the admin token: {}", root_cause(&e)))?;
            if let Some(token) = generated {
                eprintln!(
                    "\n  ADMIN_TOKEN was not set, so an admin token was generated:\n\n      {}\n\n  It is shown only this once; only its SHA-256 is stored. Use it as\n  `Authorization: Bearer <token>` on /admin. Set ADMIN_TOKEN to choose your own,\n  or run `tokengate admin-token-reset` to replace it.\n",
                    token.expose_secret()
                );
            }
            auth
        }
    };
    let listener = tokio::net::TcpListener::bind(bind_addr)
        .await
        .map_err(|e| format!("cannot listen on {bind_addr}: {e}"))?;
    let maintenance = gate.spawn_maintenance();
    let router = app(AppState {
        gate: gate.clone(),
        admin: Arc::new(admin),
    });
    let local = listener.local_addr().unwrap_or(bind_addr);
    tracing::info!(address = %local, database = %redact_url(&common.database_url), "tokengate listening on http://{local}");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down: draining in-flight requests");
    let _ = stop_tx.send(());
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing anyway");
    }
    maintenance.shutdown().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
            "SIGTERM"
        };
        tokio::select! {
            name = ctrl_c => name,
            name = terminate => name,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await
}

/// The innermost cause of an error, on one line.
fn root_cause(e: &StoreError) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string().replace('\n', " ")
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

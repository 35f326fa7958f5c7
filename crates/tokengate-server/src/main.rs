//! `tokengate`: the server and its command line. Thin: configuration, wiring, exit codes.
//!
//! This file owns the start (`.env`, logging, the runtime), the dispatch of
//! a command, opening and migrating the database, and building the gate
//! from the configuration. It must not hold a command's work: `cli` parses,
//! `serve_command` serves, `commands` runs the management commands, and
//! `config` reads and checks settings.

mod cli;
mod commands;
mod config;
mod serve_command;
mod webhook_commands;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokengate::{SqliteStore, StoreError, TokenGate, TokenStore, WebhookStore};
use tokengate_server::forward::RouteRules;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::config::{Common, LogFormat, ServeArgs};

fn main() -> ExitCode {
    let dotenv = config::load_dotenv();
    let cli = match (dotenv, cli::parse()) {
        // Help and version work even with a broken `.env`.
        (_, Err(e)) if cli::is_help_or_version(&e) => return cli::report_parse_error(&e),
        (Err(message), _) => return fail(&message),
        (Ok(()), Err(e)) => return cli::report_parse_error(&e),
        (Ok(()), Ok(cli)) => cli,
    };
    let is_serve = matches!(cli.command, Some(Command::Serve(_)));
    if let Err(message) = init_tracing(cli.common.log_format, is_serve) {
        return fail(&message);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(run(cli));
    // A store call cut by the shutdown deadline may still hold a blocking
    // thread: the process exits without waiting for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// Prints `error: <message>` (one line) and returns exit status 1.
fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Logs on stderr, filtered by `RUST_LOG`: by default `info` for the server, but
/// only warnings for CLI commands, whose own messages are the output.
fn init_tracing(format: LogFormat, is_serve: bool) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| format!("invalid RUST_LOG {directives:?}: {e}"))?,
        _ if is_serve => EnvFilter::new("info,sqlx=warn"),
        // sqlx warns of slow statements: noise for a one-off command.
        _ => EnvFilter::new("warn,sqlx=error"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), String> {
    let common = cli.common;
    // `cli::parse` adds `serve` when no subcommand is given.
    let Some(command) = cli.command else {
        return Err("no command given; try `tokengate --help`".into());
    };
    // Refuse bad configuration before touching the database.
    common.token_format()?;
    common.route_rules()?;
    common
        .argon2_params()
        .validate()
        .map_err(|e| e.to_string())?;
    let shown = database_name(&common.database_url);
    match command {
        Command::Serve(args) => {
            let bind_addr = args.bind_addr().await?;
            args.admin_token()?;
            if let Some(path) = &args.github_secret_scanning_keys {
                // Refuse a bad key file before touching the database.
                config::load_github_keys(path)?;
            }
            // The demo sign-in's conflicts first: with SETTINGS_AUTH_HEADER
            // set, "both sign in" is the fix to name, not its proxies.
            args.settings_demo_user(bind_addr)?;
            args.settings_sign_in()?;
            args.forward_auth(RouteRules::default())?;
            // Listen before touching the database: a port in use leaves no
            // database (nor lock) file behind.
            let listener = serve_command::listen(bind_addr).await?;
            // Before connecting: connecting creates the database file.
            let lock = serve_command::lock_database(&common.database_url, args.create_db)?;
            let store = connect(&common.database_url, Create::Yes).await?;
            migrate(store.as_ref(), &shown).await?;
            serve_command::serve(common, args, listener, store, lock).await
        }
        Command::Migrate => {
            let store = connect(&common.database_url, Create::Yes).await?;
            let applied = store
                .migrate()
                .await
                .map_err(|e| format!("cannot migrate {shown}: {}", root_cause(&e)));
            store.close().await;
            match applied? {
                0 => eprintln!("database {shown} is up to date: no migrations were pending"),
                1 => eprintln!("applied 1 migration to {shown}"),
                n => eprintln!("applied {n} migrations to {shown}"),
            }
            Ok(())
        }
        other => {
            // Only `migrate` and `serve` create a database or change its
            // schema: anything else on a missing or outdated database stops
            // here, naming it, before it could act on the wrong one.
            let store = connect(&common.database_url, Create::No).await?;
            let pending = store
                .pending_migrations()
                .await
                .map_err(|e| format!("cannot read database {shown}: {}", root_cause(&e)))?;
            if pending > 0 {
                store.close().await;
                return Err(format!(
                    "database {shown} lacks {pending} of tokengate's migrations (never migrated, \
                     or older than this tokengate): if it is the server's database, run \
                     `tokengate migrate` with the same DATABASE_URL; else point DATABASE_URL at it"
                ));
            }
            let gate = build_gate(&common, Arc::clone(&store) as Arc<dyn TokenStore>, None)?;
            let webhooks = common.webhooks.settings();
            commands::run_management(
                other,
                gate,
                store.as_ref(),
                &webhooks,
                &shown,
                common.verbose,
            )
            .await
        }
    }
}

async fn migrate(store: &dyn TokenStore, shown: &str) -> Result<usize, String> {
    store
        .migrate()
        .await
        .map_err(|e| format!("cannot migrate {shown}: {}", root_cause(&e)))
}

/// Whether opening a database may create it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Create {
    Yes,
    No,
}

/// A store for tokens and webhooks (both built-in backends are).
pub(crate) trait Backend: TokenStore + WebhookStore {}
impl<T: TokenStore + WebhookStore> Backend for T {}

async fn connect(url: &str, create: Create) -> Result<Arc<dyn Backend>, String> {
    let shown = redact_url(url);
    if url.starts_with("sqlite:") {
        config::check_sqlite_url(url)?;
        if create == Create::No
            && let Some(path) = config::sqlite_file(url)
            && !path.exists()
        {
            return Err(format!(
                "no database at {} (DATABASE_URL is {shown}{relative}): if the server's \
                 database is elsewhere, point DATABASE_URL at it (an absolute \
                 sqlite:///path/to/tokengate.db); to create one here, run `tokengate migrate`",
                database_name(url),
                relative = if path.is_relative() {
                    ", relative to the working directory"
                } else {
                    ""
                },
            ));
        }
        if create == Create::No {
            let store = SqliteStore::connect_existing(url)
                .await
                .map_err(|e| format!("cannot open database {shown}: {}", root_cause(&e)))?;
            return Ok(Arc::new(store));
        }
        let store = SqliteStore::connect(url)
            .await
            .map_err(|e| format!("cannot open database {shown}: {}", root_cause(&e)))?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let store = tokengate::PostgresStore::connect(url).await.map_err(|e| {
                format!(
                    "cannot connect to {shown}: {} (is PostgreSQL running and DATABASE_URL right?)",
                    root_cause(&e)
                )
            })?;
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
        .with_argon2_params(common.argon2_params())
        .with_scopes(tokengate_server::demo::SCOPES)
        .with_scopes(common.route_rules()?.scopes());
    if let Some(args) = serve {
        builder = builder
            .with_cache_ttl(args.cache_ttl())
            .with_audit_retention(Duration::from_secs(args.audit_retention_days * 86_400));
        #[cfg(feature = "redis")]
        if let Some(url) = &args.redis_url {
            let limiter = tokengate::RedisRateLimiter::new(url)
                .map_err(|e| format!("invalid REDIS_URL: {e}"))?
                .with_key_prefix(args.redis_key_prefix.clone());
            builder = builder
                .with_redis_limiter(limiter)
                .with_limiter_failure_policy(args.rate_limit_failure_policy.into());
        }
        #[cfg(not(feature = "redis"))]
        if args.redis_url.is_some() {
            return Err("this build has no Redis support (enable the `redis` feature)".into());
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// The innermost cause of an error, on one line.
fn root_cause(e: &StoreError) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string().replace('\n', " ")
}

/// The database as messages name it: a SQLite file by its absolute path
/// (so a relative `DATABASE_URL` shows where it resolved), anything else by
/// its URL without the password.
fn database_name(url: &str) -> String {
    match config::sqlite_file(url) {
        Some(path) => std::path::absolute(&path)
            .unwrap_or(path)
            .display()
            .to_string(),
        None => redact_url(url),
    }
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

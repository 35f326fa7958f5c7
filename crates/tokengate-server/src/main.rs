//! `tokengate`: the server and its command line. Thin: configuration, wiring, exit codes.

mod cli;
mod commands;
mod config;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokengate::http::{AdminAuth, AdminTokenOrigin};
use tokengate::{SqliteStore, StoreError, TokenGate, TokenStore};
use tokengate_server::serve::{
    RESERVED_FILES, ServeConfig, default_max_connections, raise_open_file_limit,
};
use tokengate_server::serve_lock::{self, ServeLock};
use tokengate_server::server::{AppState, app};
use tokio::time::Instant;
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
    common
        .argon2_params()
        .validate()
        .map_err(|e| e.to_string())?;
    let shown = redact_url(&common.database_url);
    match command {
        Command::Serve(args) => {
            let bind_addr = args.bind_addr().await?;
            args.admin_token()?;
            if let Some(path) = &args.github_secret_scanning_keys {
                // Refuse a bad key file before touching the database.
                config::load_github_keys(path)?;
            }
            args.settings_sign_in()?;
            // Before connecting: connecting creates the database file.
            let lock = lock_database(&common.database_url, args.create_db)?;
            let store = connect(&common.database_url, Create::Yes).await?;
            migrate(store.as_ref(), &shown).await?;
            serve(common, args, bind_addr, store, lock).await
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
            // Only commands that set something up may create the database;
            // the others name the one they looked for instead.
            let create = if other.creates_database() {
                Create::Yes
            } else {
                Create::No
            };
            let store = connect(&common.database_url, create).await?;
            let applied = migrate(store.as_ref(), &shown).await?;
            if applied > 0 && create == Create::Yes && common.verbose {
                eprintln!("database {shown}: applied {applied} migrations");
            }
            let gate = build_gate(&common, Arc::clone(&store), None)?;
            commands::run_management(other, gate, store.as_ref(), &shown, common.verbose).await
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

async fn connect(url: &str, create: Create) -> Result<Arc<dyn TokenStore>, String> {
    let shown = redact_url(url);
    if url.starts_with("sqlite:") {
        config::check_sqlite_url(url)?;
        if create == Create::No
            && let Some(path) = config::sqlite_file(url)
            && !path.exists()
        {
            let cwd = std::env::current_dir()
                .ok()
                .filter(|_| path.is_relative())
                .map(|dir| format!(" (relative to {})", dir.display()))
                .unwrap_or_default();
            return Err(format!(
                "no database at {}{cwd}: DATABASE_URL is {shown}. Point DATABASE_URL at the \
                 server's database, or create one with `tokengate migrate`",
                path.display()
            ));
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
        .with_scopes(tokengate_server::demo::SCOPES);
    if let Some(args) = serve {
        builder = builder
            .with_cache_ttl(args.cache_ttl())
            .with_audit_retention(Duration::from_secs(args.audit_retention_days * 86_400));
        #[cfg(feature = "redis")]
        if let Some(url) = &args.redis_url {
            let config = tokengate::RedisLimiterConfig {
                key_prefix: args.redis_key_prefix.clone(),
                ..Default::default()
            };
            let limiter = tokengate::RedisRateLimiter::new(url, config)
                .map_err(|e| format!("invalid REDIS_URL: {e}"))?;
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

async fn serve(
    common: Common,
    args: ServeArgs,
    bind_addr: SocketAddr,
    store: Arc<dyn TokenStore>,
    mut lock: Option<ServeLock>,
) -> Result<(), String> {
    let gate = build_gate(&common, Arc::clone(&store), Some(&args))?;
    // Listen first: if the port is taken, fail before an admin token is
    // generated and shown (to a log nobody reads, since the server is not up).
    let listener = tokio::net::TcpListener::bind(bind_addr)
        .await
        .map_err(|e| bind_error(bind_addr, &e))?;
    let admin = admin_credential(&args, store.as_ref()).await?;
    // The rate-limit windows saved at the last shutdown: a restart does not
    // give every token a fresh hour.
    match gate.restore_rate_windows().await {
        Ok(Some(tokens)) if tokens > 0 => {
            tracing::info!(tokens, "restored rate-limit windows")
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the saved rate-limit windows: {e}")),
    }
    let config = serve_config(&args);
    let maintenance = gate.spawn_maintenance();
    let mut state = AppState::new(gate.clone(), admin);
    if let Some(path) = &args.github_secret_scanning_keys {
        let keys = config::load_github_keys(path)?;
        let ids: Vec<&str> = keys.key_identifiers().map(|(id, _)| id).collect();
        tracing::info!(file = %path.display(), keys = ids.len(), "POST /leaks/github enabled (GitHub secret scanning)");
        state = state.with_github_keys(keys, Some(path.clone()));
    }
    let settings = args.settings_sign_in()?;
    if let Some(sign_in) = &settings {
        state = state.with_settings(sign_in.clone());
    }
    let router = app(state);
    let local = listener.local_addr().unwrap_or(bind_addr);
    if let Some(lock) = &mut lock
        && let Err(e) = lock.record_address(local)
    {
        tracing::warn!(lock = %lock.path().display(), error = %e, "cannot write the address into the lock file");
    }
    tracing::info!(
        address = %local,
        database = %redact_url(&common.database_url),
        max_connections = config.max_connections(),
        "tokengate listening on http://{local}"
    );
    if let Some(sign_in) = settings {
        tracing::info!(
            "settings page at /settings/api-tokens, signed in by the {} header from {}",
            sign_in.header(),
            sign_in.trusted_proxies()
        );
    }

    // The deadline runs from the signal: requests in flight get three
    // quarters of it, the final writes the rest (or all of it, when the
    // requests finish early).
    let deadline = args.shutdown_deadline();
    let signalled = Arc::new(OnceLock::new());
    let shutdown = {
        let signalled = Arc::clone(&signalled);
        async move {
            let signal = shutdown_signal().await;
            let _ = signalled.set(Instant::now());
            tracing::info!(signal, "shutting down: draining in-flight requests");
        }
    };
    let config = config.with_shutdown_deadline(deadline - deadline / 4);
    let report = tokengate_server::serve::serve(listener, router, config, shutdown).await;
    if report.unfinished_connections > 0 {
        tracing::warn!(
            connections = report.unfinished_connections,
            "requests still in flight at the shutdown deadline were dropped"
        );
    }
    let deadline_at = signalled.get().copied().unwrap_or_else(Instant::now) + deadline;
    let final_writes = async {
        maintenance.shutdown().await;
        store.close().await;
    };
    if tokio::time::timeout_at(deadline_at, final_writes)
        .await
        .is_err()
    {
        tracing::error!(
            "shutdown deadline ({}s, SHUTDOWN_GRACE_SECS) reached while saving last-use times and rate-limit windows: exiting without them",
            deadline.as_secs()
        );
    }
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

/// The accept loop's limits. Raises the soft open-file limit to the hard
/// one first, so the default connection cap can be as large as the machine allows.
fn serve_config(args: &ServeArgs) -> ServeConfig {
    let open_files = match raise_open_file_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    };
    let max_connections = match args.max_connections {
        Some(max) => usize::try_from(max).unwrap_or(usize::MAX),
        None => default_max_connections(open_files),
    };
    if max_connections as u64 > open_files.saturating_sub(RESERVED_FILES) {
        tracing::warn!(
            max_connections,
            open_files,
            "MAX_CONNECTIONS leaves fewer than {RESERVED_FILES} of the open-file limit for the database and logs; raise the limit (ulimit -n) or lower MAX_CONNECTIONS"
        );
    }
    ServeConfig::new(max_connections)
        .with_header_read_timeout(args.header_read_timeout())
        .with_idle_timeout(args.idle_timeout())
}

/// Takes the serve lock of a SQLite database (none for PostgreSQL or an
/// in-memory database), and refuses to create a new empty database where an
/// earlier server's lock file says one was (deleted or moved), unless asked to.
fn lock_database(url: &str, create_db: bool) -> Result<Option<ServeLock>, String> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    config::check_sqlite_url(url)?;
    let Some(path) = config::sqlite_file(url) else {
        return Ok(None);
    };
    let used_before = serve_lock::lock_path(&path).exists();
    let lock = ServeLock::acquire(&path).map_err(|e| e.to_string())?;
    if path.exists() {
        return Ok(Some(lock));
    }
    if used_before && !create_db {
        return Err(format!(
            "no database at {} although a server used one there ({} is its lock file): it was deleted or moved. Restore it, or start with --create-db (CREATE_DB=true) to begin with a new, empty database",
            path.display(),
            lock.path().display()
        ));
    }
    if used_before {
        tracing::warn!(database = %path.display(), "creating a new, empty database where a server used one before (--create-db)");
    } else {
        tracing::info!(database = %path.display(), "creating a new database");
    }
    set_aside_orphans(&path)?;
    Ok(Some(lock))
}

/// Renames the WAL, shared-memory and journal files a missing database left
/// behind: SQLite would replay an old WAL into the new, empty file.
fn set_aside_orphans(database: &std::path::Path) -> Result<(), String> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut orphan = database.as_os_str().to_owned();
        orphan.push(suffix);
        let orphan = std::path::PathBuf::from(orphan);
        if !orphan.exists() {
            continue;
        }
        let mut aside = orphan.clone().into_os_string();
        aside.push(format!(
            ".orphaned-{}",
            time::OffsetDateTime::now_utc().unix_timestamp()
        ));
        std::fs::rename(&orphan, &aside).map_err(|e| {
            format!(
                "cannot move {} (left by the missing database) aside: {e}; remove it before starting",
                orphan.display()
            )
        })?;
        tracing::warn!(file = %orphan.display(), moved_to = %std::path::Path::new(&aside).display(), "set aside a file the missing database left behind");
    }
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

/// Why the port could not be bound, and what to do.
fn bind_error(addr: SocketAddr, e: &std::io::Error) -> String {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another process is listening there: stop it, or set BIND_ADDR (e.g. BIND_ADDR=127.0.0.1:8081)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need privileges: set BIND_ADDR to a port above 1024"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; that address is not on this machine: set BIND_ADDR (e.g. 127.0.0.1:8080 or 0.0.0.0:8080)"
        }
        _ => "; set BIND_ADDR to another address",
    };
    format!("cannot listen on {addr} (BIND_ADDR): {e}{hint}")
}

/// The admin credential, and one line saying where it comes from and how to
/// replace it.
async fn admin_credential(args: &ServeArgs, store: &dyn TokenStore) -> Result<AdminAuth, String> {
    if let Some(token) = args.admin_token()? {
        tracing::info!(
            "admin credential: ADMIN_TOKEN from the environment (change it there; the stored one, if any, is not used)"
        );
        return AdminAuth::from_token(token).map_err(|e| format!("invalid ADMIN_TOKEN: {e}"));
    }
    let (auth, origin) = AdminAuth::load_or_generate(store)
        .await
        .map_err(|e| format!("cannot read the admin token: {}", root_cause(&e)))?;
    match origin {
        AdminTokenOrigin::Generated(token) => {
            eprintln!(
                "\n  ADMIN_TOKEN was not set, so an admin token was generated:\n\n      {}\n\n  It is shown only this once; only its SHA-256 is stored. Use it as\n  `Authorization: Bearer <token>` on /admin. Set ADMIN_TOKEN to choose your own,\n  or run `tokengate admin-token reset` to replace it.\n",
                token.expose_secret()
            );
            tracing::info!(
                "admin credential: generated now and printed above (replace it with `tokengate admin-token reset`, or set ADMIN_TOKEN)"
            );
        }
        AdminTokenOrigin::Stored => tracing::info!(
            "admin credential: the one generated at an earlier start (only its hash is stored; lost it? run `tokengate admin-token reset`, or set ADMIN_TOKEN)"
        ),
        AdminTokenOrigin::GeneratedElsewhere => tracing::warn!(
            "admin credential: another instance starting at the same time generated it and printed it in its own output (or run `tokengate admin-token reset`, or set ADMIN_TOKEN)"
        ),
    }
    Ok(auth)
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

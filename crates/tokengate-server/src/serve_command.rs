//! The `serve` command, once its configuration is checked and the database
//! migrated: listen, take the admin credential, restore the rate-limit
//! windows, serve until SIGINT or SIGTERM, then save last-use times and
//! windows within the shutdown deadline.
//!
//! This module owns the order of those steps, the serve lock of a SQLite
//! file, and what the operator reads in the log at start and stop. It must
//! not parse configuration (`config.rs`), build the router
//! (`tokengate_server::server::app`) or accept connections itself
//! (`tokengate_server::serve::serve`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokengate::http::{AdminAuth, AdminTokenOrigin};
use tokengate::{Manager, TokenStore, WebhookStore};
use tokengate_server::serve::{
    RESERVED_FILES, ServeConfig, default_max_connections, raise_open_file_limit,
};
use tokengate_server::serve_lock::{self, ServeLock};
use tokengate_server::server::{AppState, app};
use tokengate_server::webhooks::Webhooks;
use tokio::time::Instant;

use tokengate_server::SettingsSignIn;

use crate::config::{self, Common, ServeArgs};
use crate::{build_gate, redact_url, root_cause};

/// Serves until SIGINT or SIGTERM, then saves what must survive a restart
/// within the shutdown deadline.
pub(crate) async fn serve(
    common: Common,
    args: ServeArgs,
    listener: tokio::net::TcpListener,
    store: Arc<dyn crate::Backend>,
    mut lock: Option<ServeLock>,
) -> Result<(), String> {
    let gate = build_gate(
        &common,
        Arc::clone(&store) as Arc<dyn TokenStore>,
        Some(&args),
    )?;
    // The listener is bound before anything else: if the port is taken,
    // the server fails before an admin token is generated and shown (to a
    // log nobody reads) and before a database file is created.
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
    let mut state = AppState::new(gate.clone(), admin).with_body_deadlines(args.body_deadlines());
    if let Some(path) = &args.github_secret_scanning_keys {
        let keys = config::load_github_keys(path)?;
        let ids: Vec<&str> = keys.key_identifiers().map(|(id, _)| id).collect();
        tracing::info!(file = %path.display(), keys = ids.len(), "POST /leaks/github enabled (GitHub secret scanning)");
        state = state.with_github_keys(keys, Some(path.clone()));
    }
    let settings: Option<SettingsSignIn> = match &args.settings_demo_user {
        Some(account) => {
            demo_account(&gate, account).await?;
            Some(SettingsSignIn::Demo(account.clone()))
        }
        None => args.settings_sign_in()?.map(Into::into),
    };
    if let Some(sign_in) = &settings {
        state = state.with_settings(sign_in.clone());
    }
    let rules = common.route_rules()?;
    if !rules.is_empty() {
        tracing::info!(
            rules = rules.len(),
            "forward auth: route scopes from FORWARD_AUTH_ROUTES"
        );
    }
    state = state.with_forward_auth(args.forward_auth(rules)?);
    let webhooks = Webhooks::with_settings(
        Arc::clone(&store) as Arc<dyn WebhookStore>,
        common.webhooks.settings(),
    );
    let webhook_tasks = webhooks.spawn()?;
    state = state.with_webhooks(webhooks);
    let router = app(state);
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    if let Some(lock) = &mut lock
        && let Err(e) = lock.record_address(local)
    {
        tracing::warn!(lock = %lock.path().display(), error = %e, "cannot write the address into the lock file");
    }
    tracing::info!(
        address = %local,
        database = %crate::database_name(&common.database_url),
        max_connections = config.max_connections(),
        "tokengate listening on http://{local}"
    );
    log_rate_limiter(&args);
    match &settings {
        Some(SettingsSignIn::Proxy(sign_in)) => tracing::info!(
            "settings page at /settings/api-tokens, signed in by the {} header from {}",
            sign_in.header(),
            sign_in.trusted_proxies()
        ),
        Some(SettingsSignIn::Demo(account)) => demo_banner(account, local),
        None => tracing::info!(
            "settings page off (/settings/api-tokens is 404): set SETTINGS_AUTH_HEADER behind an \
             auth proxy, or try it on this machine with `tokengate serve --settings-demo-user <account>`"
        ),
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
    // An event being delivered now is delivered again after a restart
    // (its claim expires): at least once.
    for task in webhook_tasks {
        task.abort();
    }
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
pub(crate) fn lock_database(url: &str, create_db: bool) -> Result<Option<ServeLock>, String> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    config::check_sqlite_url(url)?;
    let Some(path) = config::sqlite_file(url) else {
        return Ok(None);
    };
    let used_before = serve_lock::lock_path(&path).exists();
    let mut lock = ServeLock::acquire(&path).map_err(|e| e.to_string())?;
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
    // Created (empty) and locked now, so that a hard link made to it while
    // the server runs is refused too.
    lock.create_and_lock_database(&path)
        .map_err(|e| e.to_string())?;
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
/// Listens on `addr`, or says why not in one line naming `BIND_ADDR`.
pub(crate) async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(addr, &e))
}

/// One line saying where the rate limits are counted.
fn log_rate_limiter(args: &ServeArgs) {
    match &args.redis_url {
        Some(url) => tracing::info!(
            "rate limits counted in Redis at {} (shared by every instance; key prefix {:?}; \
             RATE_LIMIT_FAILURE_POLICY={} when Redis is down)",
            redact_url(url),
            args.redis_key_prefix,
            match args.rate_limit_failure_policy {
                config::FailurePolicy::Closed => "closed",
                config::FailurePolicy::Local => "local",
            },
        ),
        None => tracing::info!(
            "rate limits counted in memory (this process only; saved at shutdown; REDIS_URL shares them)"
        ),
    }
}

/// `--settings-demo-user`'s account: created on the `pro` plan if missing,
/// so the page works at once.
async fn demo_account(gate: &tokengate::TokenGate, account: &str) -> Result<(), String> {
    let manager = Manager::new(gate);
    let existing = manager
        .account(account)
        .await
        .map_err(|e| format!("--settings-demo-user: {e}"))?;
    if existing.is_none() {
        manager
            .acting_as(tokengate::Actor::new("cli"))
            .set_account_plan(account, "pro")
            .await
            .map_err(|e| format!("--settings-demo-user {account:?}: {e}"))?;
        tracing::info!(account, "created the demo account on the pro plan");
    }
    Ok(())
}

/// The demo sign-in, impossible to miss on stderr (and in the log).
fn demo_banner(account: &str, local: SocketAddr) {
    tracing::warn!(
        account,
        "SETTINGS DEMO MODE: every request from this machine is signed in as {account:?}; never in production"
    );
    eprintln!(
        "\n  ****************************************************************\n  \
         SETTINGS DEMO MODE (--settings-demo-user): every request from this\n  \
         machine is signed in as {account:?}. To try the page only; never in\n  \
         production. Open:\n\n      http://{local}/settings/api-tokens\n\n  \
         ****************************************************************\n"
    );
}

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

//! The command line: `serve` (default), `migrate`, and plan/account/token management.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate::http::AdminAuth;
use tokengate::{
    Actor, AuditQuery, ManageError, Management, Plan, TokenGate, TokenId, TokenRecord, TokenSpec,
    TokenStore,
};

use crate::config::{Common, ServeArgs, parse_duration};

/// Printed after the options of `tokengate --help`.
const ENVIRONMENT_HELP: &str = "\
Environment:
  Each option above also reads the variable shown as [env: ...]. A flag wins over
  the environment, which wins over a .env file in the working directory.
  Also read by every command: TOKEN_PREFIX (default iit_), ARGON2_MEMORY_KIB (19456),
  ARGON2_ITERATIONS (2), ARGON2_PARALLELISM (1), LOG_FORMAT (text|json).
  `serve` (the default command) also reads BIND_ADDR, ADMIN_TOKEN, REDIS_URL,
  REDIS_KEY_PREFIX, RATE_LIMIT_FAILURE_POLICY, CACHE_TTL_SECS, SHUTDOWN_GRACE_SECS,
  AUDIT_RETENTION_DAYS (400), GITHUB_SECRET_SCANNING_KEYS (a key file; enables
  POST /leaks/github), SETTINGS_AUTH_HEADER and SETTINGS_TRUSTED_PROXIES (the
  Settings > API Tokens page behind an auth proxy), HEADER_READ_TIMEOUT_SECS,
  IDLE_TIMEOUT_SECS, MAX_CONNECTIONS and CREATE_DB: see `tokengate serve --help`.
  RUST_LOG sets the log filter (default: info for serve, warn for other commands;
  per-request lines are at debug).";

/// Printed after the options of `tokengate serve --help`.
const SERVE_HELP: &str = "\
RUST_LOG sets the log filter (default: info; per-request lines are at debug).";

/// API tokens shown once, argon2id at rest, and a gate with a strict hourly rate limit.
#[derive(Parser)]
#[command(
    name = "tokengate",
    version,
    about,
    propagate_version = true,
    after_help = ENVIRONMENT_HELP
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: Common,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the server: admin API, demo API, health, metrics, and the Settings >
    /// API Tokens page behind an auth proxy (the default).
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Create, list, revoke and rotate API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List the scopes tokens may be created with.
    Scopes,
    /// Read the audit log, newest first: who changed which token or plan, when, from where.
    Audit {
        /// Only this account's events.
        #[arg(long)]
        account: Option<String>,
        /// Only this token's events.
        #[arg(long, allow_hyphen_values = true)]
        token: Option<String>,
        /// Only this action, e.g. token.revoked.
        #[arg(long)]
        action: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The stored admin credential.
    #[command(subcommand)]
    AdminToken(AdminTokenCommand),
    /// Same as `admin-token reset` (the older spelling).
    #[command(hide = true)]
    AdminTokenReset,
}

impl Command {
    /// Whether this command may create a missing database: only those that
    /// set something up. The others name the database they looked for.
    pub(crate) fn creates_database(&self) -> bool {
        matches!(
            self,
            Command::Serve(_)
                | Command::Migrate
                | Command::Plan(PlanCommand::Set { .. })
                | Command::Account(AccountCommand::Set { .. })
        )
    }
}

#[derive(Subcommand)]
pub(crate) enum AdminTokenCommand {
    /// Replace the stored admin token with a new one, printed once on stdout;
    /// restart the server to use it. (Has no effect while ADMIN_TOKEN is set
    /// for the server.)
    Reset,
}

#[derive(Subcommand)]
pub(crate) enum PlanCommand {
    /// Create or edit a plan; running servers apply it on the next request.
    Set {
        /// Plan name (a-z, 0-9, '_', '-').
        name: String,
        /// Whether the plan may call the API.
        #[arg(long, action = clap::ArgAction::Set)]
        api_access: bool,
        /// Requests per token in any rolling hour.
        #[arg(long)]
        requests_per_hour: u32,
        /// Requests for all of an account's tokens together in any rolling hour
        /// (default: no account-wide ceiling).
        #[arg(long)]
        account_requests_per_hour: Option<u32>,
        /// Most live tokens per account (default: no cap).
        #[arg(long)]
        max_tokens: Option<u32>,
    },
    /// List plans.
    List,
}

#[derive(Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account or move it to another plan.
    Set {
        /// The host application's account id.
        account_id: String,
        /// Plan name, e.g. pro.
        #[arg(long)]
        plan: String,
    },
    /// Show an account.
    Show {
        /// The account id.
        account_id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token. Prints the token alone on stdout (shown once), the rest on stderr:
    /// `TOKEN=$(tokengate token create acct_1 --name CI)`
    Create {
        /// The owning account (must exist: `tokengate account set`).
        account_id: String,
        /// A label, 1-200 characters.
        #[arg(long)]
        name: String,
        /// Expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long, value_parser = parse_rfc3339)]
        expires_at: Option<OffsetDateTime>,
        /// A scope the token may use (repeatable; default: every scope).
        /// `tokengate scopes` lists them.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// List an account's tokens (never the secret).
    List {
        /// The account id.
        account_id: String,
    },
    /// Show one token.
    Show {
        /// The token id.
        #[arg(allow_hyphen_values = true)]
        token_id: String,
    },
    /// Revoke a token; running servers reject it within a second.
    Revoke {
        /// The token id.
        #[arg(allow_hyphen_values = true)]
        token_id: String,
    },
    /// Replace a token with a new one (printed on stdout); the old one stops after --grace.
    Rotate {
        /// The token id.
        #[arg(allow_hyphen_values = true)]
        token_id: String,
        /// How long the old token keeps working: 0 (default), 90s, 15m, 1h, 2d.
        #[arg(long, default_value = "0", value_parser = parse_duration)]
        grace: std::time::Duration,
        /// Expiry of the new token, RFC 3339.
        #[arg(long, value_parser = parse_rfc3339)]
        expires_at: Option<OffsetDateTime>,
    },
}

/// Parses the command line and the environment; no subcommand means `serve`.
pub(crate) fn parse() -> Result<Cli, clap::Error> {
    let cli = Cli::try_parse()?;
    if cli.command.is_some() {
        return Ok(cli);
    }
    // Parse again so serve's flags and environment variables apply.
    Cli::try_parse_from(std::env::args_os().chain([OsString::from("serve")]))
}

/// Whether `error` is a request for `--help` or `--version` rather than a mistake.
pub(crate) fn is_help_or_version(error: &clap::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    )
}

/// Reports a failed parse: help and version as clap prints them (exit 0); a bad
/// configuration value as one line naming its variable or flag (exit 1); any
/// other mistake as one line (clap's exit status 2).
pub(crate) fn report_parse_error(error: &clap::Error) -> ExitCode {
    if is_help_or_version(error)
        || error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = error.print();
        return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    }
    if let Some(message) = invalid_setting(error) {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    eprintln!("{}", one_line(error));
    ExitCode::from(2)
}

/// `invalid ARGON2_MEMORY_KIB "abc": invalid digit found in string`, for a bad
/// value of an option that has an environment variable: names the flag if the
/// value was given on the command line, else the variable.
fn invalid_setting(error: &clap::Error) -> Option<String> {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(usage)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue) else {
        return None;
    };
    let long = usage.strip_prefix("--")?.split([' ', '=']).next()?;
    let arg = find_arg(&Cli::command(), long)?;
    let env = arg.get_env()?.to_string_lossy().into_owned();
    let flag = format!("--{long}");
    let name = if flag_values(&flag).contains(value) {
        flag
    } else {
        env
    };
    let shown = if arg.is_hide_env_values_set() {
        String::new()
    } else {
        format!(" {value:?}")
    };
    let reason = match (
        error.get(ContextKind::ValidValue),
        std::error::Error::source(error),
    ) {
        (Some(ContextValue::Strings(valid)), _) => format!("use {}", valid.join(" or ")),
        (_, Some(source)) => source.to_string(),
        _ => "not a valid value".to_owned(),
    };
    Some(format!("invalid {name}{shown}: {reason}"))
}

/// The values given to `flag` on the command line (`--flag value`, `--flag=value`).
fn flag_values(flag: &str) -> Vec<String> {
    let words: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|word| word.to_string_lossy().into_owned())
        .take_while(|word| word != "--")
        .collect();
    let inline = format!("{flag}=");
    words
        .iter()
        .enumerate()
        .filter_map(|(at, word)| match word.strip_prefix(&inline) {
            Some(value) => Some(value.to_owned()),
            None if word == flag => words.get(at + 1).cloned(),
            None => None,
        })
        .collect()
}

fn find_arg(command: &clap::Command, long: &str) -> Option<clap::Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .cloned()
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_arg(sub, long))
        })
}

/// clap's message without its usage block, on one line, pointing to `--help`.
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut usage = None;
    let mut message = String::new();
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("Usage: ") {
            usage = Some(rest.to_owned());
        } else if line.starts_with("tip: ") {
            message = format!("{message}; {line}");
        } else if !line.starts_with("For more information") {
            message = format!("{message} {line}");
        }
    }
    // `Usage: tokengate token rotate [OPTIONS] <TOKEN_ID>` names the command to ask.
    let command: Vec<&str> = usage
        .as_deref()
        .unwrap_or("tokengate")
        .split_whitespace()
        .take_while(|word| !word.starts_with(['[', '<', '-']))
        .collect();
    format!("{}; see `{} --help`", message.trim(), command.join(" "))
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time (e.g. 2027-01-01T00:00:00Z)"))
}

fn rfc3339(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

fn parse_token_id(text: &str) -> Result<TokenId, String> {
    // Anything longer than an id may be a whole token: never echo it.
    const LONGEST_ECHOED: usize = 24;
    text.parse().map_err(|_| {
        if text.len() > LONGEST_ECHOED {
            "that is not a token id (20 characters, as shown by `token list`); \
             a token's id is the 20 characters after its prefix"
                .to_owned()
        } else {
            format!("{text:?} is not a token id (20 characters, as shown by `token list`)")
        }
    })
}

/// A token's state in words: `active`, `revoked`, `expired`, or for a
/// rotated token `rotated -> <successor>` (with `, until <time>` while its
/// grace period lasts).
fn status(token: &TokenRecord, now: OffsetDateTime) -> String {
    let rotated = token.revoked_reason.as_deref() == Some("rotated");
    let successor = token
        .replaced_by
        .map(|id| format!(" -> {id}"))
        .unwrap_or_default();
    if token.revoked_at.is_some() {
        if rotated {
            format!("rotated{successor}")
        } else {
            "revoked".into()
        }
    } else if token.expires_at.is_some_and(|at| at <= now) {
        if rotated {
            format!("rotated{successor}")
        } else {
            "expired".into()
        }
    } else if rotated {
        format!("rotated{successor}, until {}", rfc3339(token.expires_at))
    } else {
        "active".into()
    }
}

/// An optional limit: the number, or `-` for none.
fn optional(limit: Option<u32>) -> String {
    limit.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// A management error, in the CLI's words: what went wrong and what to run.
fn describe(e: ManageError, database: &str) -> String {
    match e {
        ManageError::UnknownAccount(account) => format!(
            "account {account:?} not found in {database} (create it: tokengate account set {account} --plan pro)"
        ),
        ManageError::UnknownPlan { plan, closest } => match closest {
            Some(closest) => format!(
                "unknown plan {plan:?}: did you mean {closest:?}? (`tokengate plan list` shows them)"
            ),
            None => format!("unknown plan {plan:?} (`tokengate plan list` shows them)"),
        },
        ManageError::UnknownToken(id) => format!(
            "token {id} not found in {database} (`tokengate token list <account>` shows the ids)"
        ),
        ManageError::TokenRevoked(id) => format!("token {id} is revoked and cannot be rotated"),
        ManageError::TokenExpired(id) => format!("token {id} has expired and cannot be rotated"),
        ManageError::TokenAlreadyRotated { id, successor } => match successor {
            Some(successor) => format!(
                "token {id} was already rotated; rotate its successor instead: tokengate token rotate {successor}"
            ),
            None => format!("token {id} was already rotated; rotate its successor instead"),
        },
        ManageError::TooManyTokens { plan, max } => format!(
            "the account already has {max} active tokens, the most plan {plan:?} allows: revoke one first (tokengate token revoke <id>)"
        ),
        ManageError::Unavailable(cause) => format!("database {database} unavailable: {cause}"),
        other => other.to_string(),
    }
}

/// Runs a management subcommand. Errors are one line for stderr.
pub(crate) async fn run_management(
    command: Command,
    gate: TokenGate,
    store: &dyn TokenStore,
    database: &str,
    verbose: bool,
) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let describe = |e: ManageError| describe(e, database);
    // Changes are recorded in the audit log as made by `cli`.
    let acting = gate.acting_as(Actor::new("cli"));
    if verbose {
        eprintln!("database: {database}");
    }
    match command {
        Command::Serve(_) | Command::Migrate => unreachable!("handled by main"),
        Command::Plan(PlanCommand::Set {
            name,
            api_access,
            requests_per_hour,
            account_requests_per_hour,
            max_tokens,
        }) => {
            let plan = Plan::new(name, api_access, requests_per_hour)
                .with_account_requests_per_hour(account_requests_per_hour)
                .with_max_tokens(max_tokens);
            let plan = acting.set_plan(&plan).await.map_err(describe)?;
            eprintln!(
                "plan {}: api_access={} requests_per_hour={} account_requests_per_hour={} max_tokens={}",
                plan.name,
                plan.api_access,
                plan.requests_per_hour,
                optional(plan.account_requests_per_hour),
                optional(plan.max_tokens)
            );
        }
        Command::Audit {
            account,
            token,
            action,
            limit,
            json,
        } => {
            let token_id = token.as_deref().map(parse_token_id).transpose()?;
            let query = AuditQuery {
                account_id: account,
                token_id,
                action,
                before: None,
                limit,
            };
            let events = gate.audit_events(&query).await.map_err(describe)?;
            if json {
                for event in &events {
                    let line = serde_json::to_string(event).map_err(|e| e.to_string())?;
                    let _ = writeln!(out, "{line}");
                }
            } else {
                let _ = writeln!(
                    out,
                    "{:<24}  {:<22}  {:<20}  {:<16}  {:<20}  DETAILS",
                    "AT", "ACTION", "ACTOR", "ACCOUNT", "TOKEN"
                );
                for event in &events {
                    let _ = writeln!(
                        out,
                        "{:<24}  {:<22}  {:<20}  {:<16}  {:<20}  {}",
                        rfc3339(Some(event.at)),
                        event.action,
                        event.actor,
                        event.account_id.as_deref().unwrap_or("-"),
                        event
                            .token_id
                            .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                        event.details
                    );
                }
            }
        }
        Command::Scopes => {
            for scope in gate.scopes() {
                let _ = writeln!(out, "{scope}");
            }
        }
        Command::Plan(PlanCommand::List) => {
            let plans = gate.plans().await.map_err(describe)?;
            let _ = writeln!(
                out,
                "{:<16} {:<5} {:>15} {:>23} {:>10}",
                "NAME", "API", "REQUESTS/HOUR", "ACCOUNT REQUESTS/HOUR", "MAX TOKENS"
            );
            for plan in plans {
                let access = if plan.api_access { "yes" } else { "no" };
                let _ = writeln!(
                    out,
                    "{:<16} {:<5} {:>15} {:>23} {:>10}",
                    plan.name,
                    access,
                    plan.requests_per_hour,
                    optional(plan.account_requests_per_hour),
                    optional(plan.max_tokens)
                );
            }
        }
        Command::Account(AccountCommand::Set { account_id, plan }) => {
            let account = acting
                .set_account_plan(&account_id, &plan)
                .await
                .map_err(describe)?;
            eprintln!("account {}: plan {}", account.id, account.plan);
        }
        Command::Account(AccountCommand::Show { account_id }) => {
            let account = gate
                .account(&account_id)
                .await
                .map_err(describe)?
                .ok_or_else(|| describe(ManageError::UnknownAccount(account_id.clone())))?;
            let _ = writeln!(
                out,
                "id: {}\nplan: {}\ncreated_at: {}\nupdated_at: {}",
                account.id,
                account.plan,
                rfc3339(Some(account.created_at)),
                rfc3339(Some(account.updated_at))
            );
        }
        Command::Token(TokenCommand::Create {
            account_id,
            name,
            expires_at,
            scopes,
        }) => {
            let spec = TokenSpec::new(name)
                .expires_at(expires_at)
                .scopes((!scopes.is_empty()).then_some(scopes));
            let created = acting
                .create_token_with(&account_id, spec)
                .await
                .map_err(describe)?;
            let _ = writeln!(out, "{}", created.token.expose_secret());
            eprintln!(
                "Created token {} ({:?}) for account {}.\nThis is the only time the token is shown: store it now.",
                created.record.id, created.record.name, created.record.account_id
            );
        }
        Command::Token(TokenCommand::List { account_id }) => {
            let tokens = gate.tokens(&account_id).await.map_err(describe)?;
            let now = gate.now();
            let _ = writeln!(
                out,
                "{:<20}  {:<24}  {:<4}  {:<20}  {:<20}  {:<20}  STATUS",
                "ID", "NAME", "HINT", "CREATED", "LAST USED", "EXPIRES"
            );
            for token in &tokens {
                let mut name: String = token.name.chars().take(24).collect();
                if token.name.chars().count() > 24 {
                    name.pop();
                    name.push('…');
                }
                let _ = writeln!(
                    out,
                    "{:<20}  {:<24}  {:<4}  {:<20}  {:<20}  {:<20}  {}",
                    token.id,
                    name,
                    token.hint,
                    rfc3339(Some(token.created_at)),
                    rfc3339(token.last_used_at),
                    rfc3339(token.expires_at),
                    status(token, now),
                );
            }
        }
        Command::Token(TokenCommand::Show { token_id }) => {
            let id = parse_token_id(&token_id)?;
            let token = gate
                .token(&id)
                .await
                .map_err(describe)?
                .ok_or_else(|| describe(ManageError::UnknownToken(id)))?;
            let _ = writeln!(
                out,
                "id: {}\naccount_id: {}\nname: {}\nhint: {}\nscopes: {}\nstatus: {}\ncreated_at: {}\nlast_used_at: {}\nexpires_at: {}\nrevoked_at: {}",
                token.id,
                token.account_id,
                token.name,
                token.hint,
                token.scopes.join(" "),
                status(&token, gate.now()),
                rfc3339(Some(token.created_at)),
                rfc3339(token.last_used_at),
                rfc3339(token.expires_at),
                rfc3339(token.revoked_at)
            );
        }
        Command::Token(TokenCommand::Revoke { token_id }) => {
            let id = parse_token_id(&token_id)?;
            let token = acting.revoke_token(&id).await.map_err(describe)?;
            eprintln!(
                "token {} revoked at {}",
                token.id,
                rfc3339(token.revoked_at)
            );
        }
        Command::Token(TokenCommand::Rotate {
            token_id,
            grace,
            expires_at,
        }) => {
            if grace > Management::MAX_GRACE {
                let days = Management::MAX_GRACE.as_secs() / 86_400;
                return Err(format!("--grace must be at most {days}d"));
            }
            let id = parse_token_id(&token_id)?;
            let rotated = acting
                .rotate_token(&id, grace, expires_at)
                .await
                .map_err(describe)?;
            let _ = writeln!(out, "{}", rotated.token.expose_secret());
            let old_stops = rotated.old.revoked_at.or(rotated.old.expires_at);
            eprintln!(
                "Rotated {} -> {}; the old token stops at {}.\nThis is the only time the new token is shown: store it now.",
                rotated.old.id,
                rotated.record.id,
                rfc3339(old_stops)
            );
        }
        Command::AdminToken(AdminTokenCommand::Reset) | Command::AdminTokenReset => {
            let (_, token) = AdminAuth::reset(store)
                .await
                .map_err(|e| format!("database {database} unavailable: {e}"))?;
            let _ = writeln!(out, "{}", token.expose_secret());
            eprintln!(
                "New admin token stored in {database} (only its SHA-256). Restart the server to use it.\nThis is the only time it is shown: store it now."
            );
        }
    }
    Ok(())
}

//! The command line: `serve` (default), `migrate`, and plan/account/token
//! management, as clap parses them, and a failed parse reported in one line.
//!
//! This module owns the commands, their flags and help texts, and how a
//! mistake on the command line is answered (naming the flag or the
//! environment variable that held a bad value). It must not run a command:
//! `main.rs` dispatches, `serve_command.rs` serves, `commands.rs` runs the
//! management commands.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
  IDLE_TIMEOUT_SECS, BODY_TIMEOUT_SECS, BODY_MIN_RATE, MAX_CONNECTIONS and
  CREATE_DB: see `tokengate serve --help`.
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
// Parsed once per process: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Signed webhooks to the host application (Standard Webhooks): endpoints,
    /// secrets and delivery attempts. A running server delivers.
    #[command(subcommand)]
    Webhooks(WebhookCommand),
    /// Same as `admin-token reset` (the older spelling).
    #[command(hide = true)]
    AdminTokenReset,
}

#[derive(Subcommand)]
pub(crate) enum WebhookCommand {
    /// Register an endpoint. Prints its signing secret alone on stdout (shown
    /// once), the rest on stderr: `SECRET=$(tokengate webhooks add https://...)`
    Add {
        /// Where to POST events: https:// and public addresses only, unless
        /// WEBHOOK_ALLOW_PRIVATE_URLS=true.
        url: String,
        /// An event type to send (repeatable; default: every type), e.g. token.revoked.
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
    },
    /// List endpoints (never a secret).
    List,
    /// Remove an endpoint and its pending deliveries.
    Remove {
        /// The endpoint id (whe_...).
        webhook_id: String,
    },
    /// Give an endpoint a new signing secret, printed alone on stdout; the old
    /// one signs too for 24 hours.
    RotateSecret {
        /// The endpoint id (whe_...).
        webhook_id: String,
    },
    /// An endpoint's delivery attempts, newest first.
    Deliveries {
        /// The endpoint id (whe_...).
        webhook_id: String,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
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
    /// Create a plan, or change the settings of one you name (the others are
    /// kept); running servers apply it on the next request.
    Set {
        /// Plan name (a-z, 0-9, '_', '-').
        name: String,
        /// Whether the plan may call the API (needed for a new plan).
        #[arg(long, action = clap::ArgAction::Set)]
        api_access: Option<bool>,
        /// Requests per token in any rolling hour (needed for a new plan).
        #[arg(long)]
        requests_per_hour: Option<u32>,
        /// Requests for all of an account's tokens together in any rolling hour
        /// (a new plan has no account-wide ceiling).
        #[arg(long)]
        account_requests_per_hour: Option<u32>,
        /// Remove the account-wide ceiling.
        #[arg(long, conflicts_with = "account_requests_per_hour")]
        clear_account_requests_per_hour: bool,
        /// Most live tokens per account (a new plan has no cap).
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Remove the cap on live tokens.
        #[arg(long, conflicts_with = "max_tokens")]
        clear_max_tokens: bool,
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

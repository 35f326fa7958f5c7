//! The command line: `serve` (default), `migrate`, and plan/account/token management.

use std::io::Write;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate::store::TokenRecord;
use tokengate::{AdminAuth, TokenGate, TokenId, TokenStore};

use crate::config::{Common, ServeArgs, parse_duration};

/// API tokens shown once, argon2id at rest, and a gate with a strict hourly rate limit.
#[derive(Parser)]
#[command(name = "tokengate", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server: admin API, demo API, health, metrics (the default).
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
    /// Replace the stored admin token with a new one, printed once on stdout.
    /// (Has no effect while ADMIN_TOKEN is set for the server.)
    AdminTokenReset,
}

#[derive(Subcommand)]
pub enum PlanCommand {
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
    },
    /// List plans.
    List,
}

#[derive(Subcommand)]
pub enum AccountCommand {
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
pub enum TokenCommand {
    /// Create a token. Prints the token alone on stdout (shown once), the rest on stderr:
    /// `TOKEN=$(tokengate token create acct_1 --name CI)`.
    Create {
        /// The owning account (must exist: `tokengate account set`).
        account_id: String,
        /// A label, 1-200 characters.
        #[arg(long)]
        name: String,
        /// Expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long, value_parser = parse_rfc3339)]
        expires_at: Option<OffsetDateTime>,
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

fn status(token: &TokenRecord, now: OffsetDateTime) -> &'static str {
    if token.revoked_at.is_some() {
        "revoked"
    } else if token.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    }
}

/// Runs a management subcommand against the store. Errors are one line for stderr.
pub async fn run_management(command: Command, gate: TokenGate) -> Result<(), String> {
    let store: Arc<dyn TokenStore> = Arc::clone(gate.store());
    let mut out = std::io::stdout().lock();
    let describe = |e: tokengate::ManageError| e.to_string();
    match command {
        Command::Serve(_) | Command::Migrate => unreachable!("handled by main"),
        Command::Plan(PlanCommand::Set {
            name,
            api_access,
            requests_per_hour,
        }) => {
            let plan = gate
                .set_plan(&name, api_access, requests_per_hour)
                .await
                .map_err(describe)?;
            eprintln!(
                "plan {}: api_access={} requests_per_hour={}",
                plan.name, plan.api_access, plan.requests_per_hour
            );
        }
        Command::Plan(PlanCommand::List) => {
            let plans = store.list_plans().await.map_err(|e| e.to_string())?;
            let _ = writeln!(out, "{:<16} {:<10} {:>17}", "NAME", "API", "REQUESTS/HOUR");
            for plan in plans {
                let access = if plan.api_access { "yes" } else { "no" };
                let _ = writeln!(
                    out,
                    "{:<16} {:<10} {:>17}",
                    plan.name, access, plan.requests_per_hour
                );
            }
        }
        Command::Account(AccountCommand::Set { account_id, plan }) => {
            let account = gate
                .set_account_plan(&account_id, &plan)
                .await
                .map_err(|e| match e {
                    tokengate::ManageError::UnknownPlan => {
                        format!("unknown plan {plan:?} (see `tokengate plan list`)")
                    }
                    other => other.to_string(),
                })?;
            eprintln!("account {}: plan {}", account.id, account.plan);
        }
        Command::Account(AccountCommand::Show { account_id }) => {
            let account = store
                .get_account(&account_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("account {account_id:?} not found"))?;
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
        }) => {
            let created = gate
                .create_token(&account_id, &name, expires_at)
                .await
                .map_err(|e| match e {
                    tokengate::ManageError::UnknownAccount => format!(
                        "account {account_id:?} not found (create it: tokengate account set {account_id} --plan pro)"
                    ),
                    other => other.to_string(),
                })?;
            let _ = writeln!(out, "{}", created.token.expose_secret());
            eprintln!(
                "Created token {} ({:?}) for account {}.\nThis is the only time the token is shown: store it now.",
                created.record.id, created.record.name, created.record.account_id
            );
        }
        Command::Token(TokenCommand::List { account_id }) => {
            let tokens = store.list_tokens(&account_id).await.map_err(|e| match e {
                tokengate::store::StoreError::UnknownAccount => {
                    format!("account {account_id:?} not found")
                }
                other => other.to_string(),
            })?;
            let now = gate.now();
            let _ = writeln!(
                out,
                "{:<20}  {:<24}  {:<4}  {:<8}  {:<20}  {:<20}  EXPIRES",
                "ID", "NAME", "HINT", "STATUS", "CREATED", "LAST USED"
            );
            for token in &tokens {
                let mut name: String = token.name.chars().take(24).collect();
                if token.name.chars().count() > 24 {
                    name.pop();
                    name.push('…');
                }
                let _ = writeln!(
                    out,
                    "{:<20}  {:<24}  {:<4}  {:<8}  {:<20}  {:<20}  {}",
                    token.id,
                    name,
                    token.hint,
                    status(token, now),
                    rfc3339(Some(token.created_at)),
                    rfc3339(token.last_used_at),
                    rfc3339(token.expires_at)
                );
            }
        }
        Command::Token(TokenCommand::Show { token_id }) => {
            let id = parse_token_id(&token_id)?;
            let token = store
                .get_token(&id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("token {token_id} not found"))?;
            let _ = writeln!(
                out,
                "id: {}\naccount_id: {}\nname: {}\nhint: {}\nstatus: {}\ncreated_at: {}\nlast_used_at: {}\nexpires_at: {}\nrevoked_at: {}",
                token.id,
                token.account_id,
                token.name,
                token.hint,
                status(&token, gate.now()),
                rfc3339(Some(token.created_at)),
                rfc3339(token.last_used_at),
                rfc3339(token.expires_at),
                rfc3339(token.revoked_at)
            );
        }
        Command::Token(TokenCommand::Revoke { token_id }) => {
            let id = parse_token_id(&token_id)?;
            let token = gate.revoke_token(&id).await.map_err(|e| match e {
                tokengate::ManageError::UnknownToken => format!("token {token_id} not found"),
                other => other.to_string(),
            })?;
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
            let id = parse_token_id(&token_id)?;
            let rotated = gate
                .rotate_token(&id, grace, expires_at)
                .await
                .map_err(|e| match e {
                    tokengate::ManageError::UnknownToken => format!("token {token_id} not found"),
                    tokengate::ManageError::TokenRevoked => {
                        format!("token {token_id} is revoked and cannot be rotated")
                    }
                    other => other.to_string(),
                })?;
            let _ = writeln!(out, "{}", rotated.token.expose_secret());
            let old_stops = rotated.old.revoked_at.or(rotated.old.expires_at);
            eprintln!(
                "Rotated {} -> {}; the old token stops at {}.\nThis is the only time the new token is shown: store it now.",
                rotated.old.id,
                rotated.record.id,
                rfc3339(old_stops)
            );
        }
        Command::AdminTokenReset => {
            let (_, generated) = AdminAuth::generate(store.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(token) = generated {
                let _ = writeln!(out, "{}", token.expose_secret());
                eprintln!(
                    "New admin token stored (only its SHA-256). Restart the server to use it.\nThis is the only time it is shown: store it now."
                );
            }
        }
    }
    Ok(())
}

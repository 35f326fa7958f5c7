//! The management commands: `plan`, `account`, `token`, `scopes`, `audit`
//! and `admin-token`, run against the database and printed for a shell.
//!
//! This module owns how a command's result reads: a plaintext token alone
//! on stdout (so `TOKEN=$(tokengate token create ...)` works), tables and
//! JSON lines on stdout, confirmations on stderr, and each error as one line
//! saying what to run. It must not define the command line (`cli.rs`) nor
//! hold a lifecycle rule: every change goes through the library's
//! `Management`, recorded in the audit log as made by `cli`.

use std::io::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate::http::AdminAuth;
use tokengate::{
    Actor, AuditQuery, ManageError, Management, Manager, Plan, PlanUpdate, TokenGate, TokenId,
    TokenRecord, TokenSpec,
};

use crate::cli::{AccountCommand, AdminTokenCommand, Command, PlanCommand, TokenCommand};

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
        ManageError::GraceOverTokenCap { plan, max } => format!(
            "a rotation with a grace period keeps the old token working beside the new one, and the account already has {max} active tokens, the most plan {plan:?} allows (tokens in grace count): rotate with --grace 0, or revoke a token first (tokengate token revoke <id>)"
        ),
        ManageError::NoApiAccess { plan } => format!(
            "plan {plan:?} has no API access, so its accounts get no tokens: move the account to a plan with API access first (tokengate account set <account> --plan pro)"
        ),
        ManageError::Unavailable(cause) => format!("database {database} unavailable: {cause}"),
        other => other.to_string(),
    }
}

/// Runs a management subcommand. Errors are one line for stderr.
pub(crate) async fn run_management(
    command: Command,
    gate: TokenGate,
    store: &dyn crate::Backend,
    settings: &tokengate_server::webhooks::settings::WebhookSettings,
    database: &str,
    verbose: bool,
) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let describe = |e: ManageError| describe(e, database);
    // Changes are recorded in the audit log as made by `cli`.
    let manager = Manager::new(&gate);
    let acting = manager.acting_as(Actor::new("cli"));
    // `-v` names the database before anything else; a change names it
    // first among its confirmations either way (a failure's one line names
    // it where it matters), so no change is made unseen in the wrong one.
    if verbose {
        eprintln!("database: {database}");
    }
    let changed_in = || {
        if !verbose {
            eprintln!("database: {database}");
        }
    };
    match command {
        Command::Serve(_) | Command::Migrate => unreachable!("handled by main"),
        Command::Plan(PlanCommand::Set {
            name,
            api_access,
            requests_per_hour,
            account_requests_per_hour,
            clear_account_requests_per_hour,
            max_tokens,
            clear_max_tokens,
        }) => {
            let ceiling = if clear_account_requests_per_hour {
                Some(None)
            } else {
                account_requests_per_hour.map(Some)
            };
            let max_tokens = if clear_max_tokens {
                Some(None)
            } else {
                max_tokens.map(Some)
            };
            let exists = manager
                .plans()
                .await
                .map_err(describe)?
                .iter()
                .any(|plan| plan.name == name);
            let plan = if exists {
                let mut update = PlanUpdate::default();
                if let Some(api_access) = api_access {
                    update = update.api_access(api_access);
                }
                if let Some(requests_per_hour) = requests_per_hour {
                    update = update.requests_per_hour(requests_per_hour);
                }
                if let Some(ceiling) = ceiling {
                    update = update.account_requests_per_hour(ceiling);
                }
                if let Some(max_tokens) = max_tokens {
                    update = update.max_tokens(max_tokens);
                }
                acting.update_plan(&name, &update).await
            } else {
                let (Some(api_access), Some(requests_per_hour)) = (api_access, requests_per_hour)
                else {
                    return Err(format!(
                        "plan {name:?} does not exist yet: a new plan needs --api-access and \
                         --requests-per-hour (`tokengate plan list` shows the existing ones)"
                    ));
                };
                let plan = Plan::new(name, api_access, requests_per_hour)
                    .with_account_requests_per_hour(ceiling.flatten())
                    .with_max_tokens(max_tokens.flatten());
                acting.set_plan(&plan).await
            }
            .map_err(describe)?;
            changed_in();
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
            let query = AuditQuery::newest(limit)
                .for_account(account)
                .for_token(token_id)
                .with_action(action);
            let events = manager.audit_events(&query).await.map_err(describe)?;
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
            let plans = manager.plans().await.map_err(describe)?;
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
            changed_in();
            eprintln!("account {}: plan {}", account.id, account.plan);
        }
        Command::Account(AccountCommand::Show { account_id }) => {
            let account = manager
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
            changed_in();
            eprintln!(
                "Created token {} ({:?}) for account {}.\nThis is the only time the token is shown: store it now.",
                created.record.id, created.record.name, created.record.account_id
            );
        }
        Command::Token(TokenCommand::List { account_id }) => {
            let tokens = manager.tokens(&account_id).await.map_err(describe)?;
            let now = manager.now();
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
            let token = manager
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
                status(&token, manager.now()),
                rfc3339(Some(token.created_at)),
                rfc3339(token.last_used_at),
                rfc3339(token.expires_at),
                rfc3339(token.revoked_at)
            );
        }
        Command::Token(TokenCommand::Revoke { token_id }) => {
            let id = parse_token_id(&token_id)?;
            let token = acting.revoke_token(&id).await.map_err(describe)?;
            changed_in();
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
            let (old, rotated) = acting
                .rotate_token(&id, grace, expires_at)
                .await
                .map_err(describe)?;
            let _ = writeln!(out, "{}", rotated.token.expose_secret());
            changed_in();
            let old_stops = old.revoked_at.or(old.expires_at);
            eprintln!(
                "Rotated {} -> {}; the old token stops at {}.\nThis is the only time the new token is shown: store it now.",
                old.id,
                rotated.record.id,
                rfc3339(old_stops)
            );
        }
        Command::Webhooks(command) => {
            crate::webhook_commands::run(command, store, settings, database).await?;
        }
        Command::AdminToken(AdminTokenCommand::Reset) | Command::AdminTokenReset => {
            let (_, token) = AdminAuth::reset(store)
                .await
                .map_err(|e| format!("database {database} unavailable: {e}"))?;
            let _ = writeln!(out, "{}", token.expose_secret());
            changed_in();
            eprintln!(
                "New admin token stored in {database} (only its SHA-256). Restart the server to use it.\nThis is the only time it is shown: store it now."
            );
        }
    }
    Ok(())
}

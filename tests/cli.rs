//! The `tokengate` command line, run as a real process: a full round trip of
//! plans, accounts and tokens; errors that exit 1 with one `error:` line;
//! `--help` everywhere; and a running server that sees the CLI's changes.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::UNAUTHORIZED;
use common::process::{Server, base_env, cli, client};
use tokengate::TokenFormat;

/// A finished CLI run, as text.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// A CLI environment on its own database.
struct Cli {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = base_env(dir.path());
        Self { dir, env }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Run {
        cli(self.path(), &self.env, args).into()
    }

    /// Runs a command that must succeed; returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "{args:?} failed:\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
        (run.stdout, run.stderr)
    }

    /// Runs a command that must fail with status 1, nothing on stdout, and
    /// exactly one line on stderr: `error: ...` containing `expected`.
    fn fails(&self, args: &[&str], expected: &str) {
        let run = self.run(args);
        assert_eq!(run.code, Some(1), "{args:?}: {}{}", run.stdout, run.stderr);
        assert_eq!(run.stdout, "", "{args:?} wrote to stdout");
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: one line expected:\n{}",
            run.stderr
        );
        assert!(lines[0].starts_with("error: "), "{args:?}: {}", lines[0]);
        assert!(
            lines[0].contains(expected),
            "{args:?}: {:?} not in {}",
            expected,
            lines[0]
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }

    /// `token create` or `token rotate`: the new token, alone on stdout.
    fn new_token(&self, args: &[&str]) -> (String, String) {
        let (stdout, stderr) = self.ok(args);
        let token = stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("{args:?}: stdout is not one line: {stdout:?}"));
        assert!(
            !token.contains('\n'),
            "{args:?}: stdout is not one line: {stdout:?}"
        );
        assert!(
            TokenFormat::default().is_well_formed(token),
            "{args:?}: not a well-formed token: {token:?}"
        );
        assert!(
            !stderr.contains(token),
            "{args:?}: the token is repeated on stderr"
        );
        (token.to_owned(), stderr)
    }

    /// `token show` as key/value pairs.
    fn show_token(&self, id: &str) -> Vec<(String, String)> {
        let (stdout, _) = self.ok(&["token", "show", id]);
        stdout
            .lines()
            .map(|line| {
                let (key, value) = line.split_once(": ").unwrap_or_else(|| panic!("{line}"));
                (key.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn token_field(&self, id: &str, field: &str) -> String {
        self.show_token(id)
            .into_iter()
            .find_map(|(key, value)| (key == field).then_some(value))
            .unwrap_or_else(|| panic!("token show {id} has no {field}"))
    }
}

/// The public id inside a token: the 20 characters after the `iit_` prefix.
fn token_id(token: &str) -> &str {
    &token[4..24]
}

fn secret_of(token: &str) -> &str {
    &token[24..68]
}

/// `plan list` rows as (name, api, requests per hour).
fn plans(cli: &Cli) -> Vec<(String, String, String)> {
    let (stdout, _) = cli.ok(&["plan", "list"]);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "API", "REQUESTS/HOUR"]);
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 3, "{line}");
            (cells[0].into(), cells[1].into(), cells[2].into())
        })
        .collect()
}

fn has_plan(cli: &Cli, name: &str, api: &str, per_hour: &str) -> bool {
    plans(cli)
        .iter()
        .any(|(n, a, r)| n == name && a == api && r == per_hour)
}

#[test]
fn plans_accounts_and_tokens_round_trip() {
    let cli = Cli::new();
    let (_, stderr) = cli.ok(&["migrate"]);
    assert!(stderr.contains("migrations applied"), "{stderr}");

    // Plans: the seeded ones, then one of our own, edited.
    assert!(has_plan(&cli, "free", "no", "0"));
    assert!(has_plan(&cli, "pro", "yes", "1000"));
    assert!(has_plan(&cli, "enterprise", "yes", "10000"));
    let set_team = |access: &str, per_hour: &str| {
        cli.ok(&[
            "plan",
            "set",
            "team",
            "--api-access",
            access,
            "--requests-per-hour",
            per_hour,
        ])
    };
    set_team("true", "50");
    assert!(has_plan(&cli, "team", "yes", "50"));
    set_team("false", "60");
    assert!(has_plan(&cli, "team", "no", "60"));

    // Accounts.
    cli.ok(&["account", "set", "acct_1", "--plan", "team"]);
    let (shown, _) = cli.ok(&["account", "show", "acct_1"]);
    assert!(shown.contains("id: acct_1\nplan: team\n"), "{shown}");
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    let (shown, _) = cli.ok(&["account", "show", "acct_1"]);
    assert!(shown.contains("plan: pro\n"), "{shown}");

    // Create: the token alone on stdout, the explanation on stderr.
    let (token, stderr) = cli.new_token(&["token", "create", "acct_1", "--name", "CI"]);
    let id = token_id(&token);
    assert!(stderr.contains(id), "{stderr}");
    assert!(stderr.contains("only time"), "{stderr}");

    // List and show: the id and hint, never the secret.
    let (listed, _) = cli.ok(&["token", "list", "acct_1"]);
    assert!(listed.starts_with("ID "), "{listed}");
    let row = listed.lines().find(|l| l.starts_with(id)).expect("listed");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..4],
        ["CI", &token[token.len() - 4..], "active"],
        "{row}"
    );
    assert!(
        listed.lines().all(|l| l == l.trim_end()),
        "trailing spaces:\n{listed}"
    );
    let shown = cli.show_token(id);
    let keys: Vec<&str> = shown.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "id",
            "account_id",
            "name",
            "hint",
            "status",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at"
        ]
    );
    assert_eq!(cli.token_field(id, "account_id"), "acct_1");
    assert_eq!(cli.token_field(id, "status"), "active");
    assert_eq!(cli.token_field(id, "revoked_at"), "-");
    for output in [listed, cli.ok(&["token", "show", id]).0] {
        assert!(!output.contains(&token));
        assert!(!output.contains(secret_of(&token)));
    }

    // Rotate with a grace period: a new token now, the old one until then.
    let (rotated, stderr) = cli.new_token(&["token", "rotate", id, "--grace", "1h"]);
    assert_ne!(rotated, token);
    let new_id = token_id(&rotated);
    assert!(stderr.contains(id) && stderr.contains(new_id), "{stderr}");
    assert_eq!(cli.token_field(new_id, "name"), "CI");
    assert_eq!(cli.token_field(new_id, "account_id"), "acct_1");
    assert_eq!(
        cli.token_field(id, "status"),
        "active",
        "in its grace period"
    );
    let old_expiry = cli.token_field(id, "expires_at");
    let expiry =
        time::OffsetDateTime::parse(&old_expiry, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert!(
        (expiry - in_an_hour).abs() < time::Duration::minutes(1),
        "{old_expiry}"
    );
    let (listed, _) = cli.ok(&["token", "list", "acct_1"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    // Revoke, idempotently.
    let (_, stderr) = cli.ok(&["token", "revoke", new_id]);
    assert!(stderr.contains("revoked"), "{stderr}");
    assert_eq!(cli.token_field(new_id, "status"), "revoked");
    let revoked_at = cli.token_field(new_id, "revoked_at");
    assert_ne!(revoked_at, "-");
    cli.ok(&["token", "revoke", new_id]);
    assert_eq!(cli.token_field(new_id, "revoked_at"), revoked_at);

    // A new admin token each time, alone on stdout.
    let mut admin_tokens = Vec::new();
    for _ in 0..2 {
        let (stdout, stderr) = cli.ok(&["admin-token-reset"]);
        let admin = stdout.strip_suffix('\n').expect("one line");
        assert!(
            admin.starts_with(tokengate::admin::ADMIN_TOKEN_PREFIX),
            "{admin}"
        );
        assert!(
            admin.len() >= 40 && !admin.contains(char::is_whitespace),
            "{admin}"
        );
        assert!(!stderr.contains(admin));
        admin_tokens.push(admin.to_owned());
    }
    assert_ne!(admin_tokens[0], admin_tokens[1]);
}

#[test]
fn errors_exit_1_with_one_line() {
    let cli = Cli::new();
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    let (token, _) = cli.new_token(&["token", "create", "acct_1", "--name", "CI"]);
    let id = token_id(&token);
    cli.ok(&["token", "revoke", id]);
    let unknown_id = "AAAAAAAAAAAAAAAAAAAA";

    cli.fails(
        &["token", "create", "nobody", "--name", "CI"],
        "account \"nobody\" not found",
    );
    cli.fails(&["token", "list", "nobody"], "account \"nobody\" not found");
    cli.fails(
        &["account", "show", "nobody"],
        "account \"nobody\" not found",
    );
    cli.fails(
        &["account", "set", "acct_2", "--plan", "nope"],
        "unknown plan \"nope\"",
    );
    cli.fails(
        &[
            "plan",
            "set",
            "Not A Name",
            "--api-access",
            "true",
            "--requests-per-hour",
            "1",
        ],
        "plan name",
    );
    for command in ["show", "revoke", "rotate"] {
        cli.fails(&["token", command, "not-a-token-id"], "is not a token id");
        cli.fails(&["token", command, unknown_id], "not found");
        // A whole token where an id belongs: refused without echoing the secret.
        cli.fails(&["token", command, &token], "is not a token id");
        let run = cli.run(&["token", command, &token]);
        assert!(!run.stderr.contains(secret_of(&token)), "{}", run.stderr);
    }
    cli.fails(&["token", "rotate", id], "revoked");
    cli.fails(
        &["token", "create", "acct_1", "--name", ""],
        "name must be 1 to 200",
    );
    cli.fails(
        &[
            "token",
            "create",
            "acct_1",
            "--name",
            "CI",
            "--expires-at",
            "2001-01-01T00:00:00Z",
        ],
        "in the future",
    );
    // The failures changed nothing.
    let (listed, _) = cli.ok(&["token", "list", "acct_1"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");

    // Malformed arguments are usage errors: clap's exit status 2, nothing on stdout.
    for args in [
        &["token", "rotate", id, "--grace", "1w"][..],
        &[
            "token",
            "create",
            "acct_1",
            "--name",
            "CI",
            "--expires-at",
            "tomorrow",
        ],
        &["token", "frobnicate"],
        &["token", "create", "acct_1"],
    ] {
        let run = cli.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn help_works_for_every_subcommand() {
    let cli = Cli::new();
    let commands: [&[&str]; 16] = [
        &[],
        &["serve"],
        &["migrate"],
        &["plan"],
        &["plan", "set"],
        &["plan", "list"],
        &["account"],
        &["account", "set"],
        &["account", "show"],
        &["token"],
        &["token", "create"],
        &["token", "list"],
        &["token", "show"],
        &["token", "revoke"],
        &["token", "rotate"],
        &["admin-token-reset"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let run = cli.run(&args);
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        assert!(
            run.stdout.contains("Usage: tokengate"),
            "{args:?}: {}",
            run.stdout
        );
        assert_eq!(run.stderr, "", "{args:?}");
    }
    let (help, _) = cli.ok(&["token", "create", "--help"]);
    assert!(
        help.contains("--name") && help.contains("--expires-at"),
        "{help}"
    );
    let (help, _) = cli.ok(&["token", "rotate", "--help"]);
    assert!(help.contains("--grace"), "{help}");
    // Nothing was created by asking for help.
    assert!(!cli.path().join("tokengate.db").exists());
}

/// Polls the demo API with `token` until it answers `status`; fails after 1 s.
async fn answers_within_a_second(server: &Server, token: &str, status: u16) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1);
    loop {
        let response = client()
            .get(server.url("/api/v1/external_tests"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let seen = response.status().as_u16();
        if seen == status {
            if status == 401 {
                assert_eq!(response.text().await.unwrap(), UNAUTHORIZED);
            }
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "still {seen} instead of {status} after 1 s:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_running_server_sees_cli_changes_within_a_second() {
    let cli = Cli::new();
    let server = Server::start(cli.path(), &cli.env);

    // A token made by the CLI works at once on the server.
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    let (token, _) = cli.new_token(&["token", "create", "acct_1", "--name", "CI"]);
    answers_within_a_second(&server, &token, 200).await;

    // A plan change, both ways.
    cli.ok(&["account", "set", "acct_1", "--plan", "free"]);
    answers_within_a_second(&server, &token, 403).await;
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    answers_within_a_second(&server, &token, 200).await;

    // A revocation: the cached token stops working within a second.
    cli.ok(&["token", "revoke", token_id(&token)]);
    let took = answers_within_a_second(&server, &token, 401).await;
    eprintln!("revocation seen after {took:?}");
}

//! The `tokengate` command line, run as a real process: a full round trip of
//! plans, accounts and tokens; errors that exit 1 with one `error:` line;
//! `--help` everywhere; and a running server that sees the CLI's changes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::{BIN, Server, admin_header, base_env, client};
use crate::support::{ADMIN_TOKEN, UNAUTHORIZED};
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

    /// A CLI environment whose database exists and is migrated (the CLI's
    /// other commands never create or migrate one).
    fn migrated() -> Self {
        let cli = Self::new();
        cli.ok(&["migrate"]);
        cli
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args)
    }

    /// Runs with `extra` added to (or replacing in) the environment. Killed after
    /// a minute, so a server that starts when it should have refused fails the test.
    fn run_with(&self, extra: &[(&str, &str)], args: &[&str]) -> Run {
        let mut env = self.env.clone();
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key.to_string(), value.to_string()));
        }
        let child = Command::new(BIN)
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tokengate");
        let pid = child.id().to_string();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait_with_output()));
        match finished.recv_timeout(Duration::from_secs(60)) {
            Ok(output) => output.expect("run tokengate").into(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                let run: Run = finished.recv().unwrap().unwrap().into();
                panic!(
                    "{extra:?} {args:?} still running after 60 s:\n{}",
                    run.stderr
                );
            }
        }
    }

    /// Removes a variable from the environment of later runs.
    fn unset(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
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
    /// exactly one line on stderr: `error: ...` containing `expected`. Returns stderr.
    fn fails(&self, args: &[&str], expected: &str) -> String {
        self.fails_with(&[], args, expected)
    }

    /// [`Cli::fails`] with `extra` in the environment; returns stderr.
    fn fails_with(&self, extra: &[(&str, &str)], args: &[&str], expected: &str) -> String {
        let run = self.run_with(extra, args);
        let args = (extra, args);
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
        run.stderr
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

/// `plan list` rows as (name, api, requests per hour, account requests per hour, max tokens).
fn plans(cli: &Cli) -> Vec<(String, String, String, String, String)> {
    let (stdout, _) = cli.ok(&["plan", "list"]);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "API",
            "REQUESTS/HOUR",
            "ACCOUNT",
            "REQUESTS/HOUR",
            "MAX",
            "TOKENS"
        ]
    );
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 5, "{line}");
            (
                cells[0].into(),
                cells[1].into(),
                cells[2].into(),
                cells[3].into(),
                cells[4].into(),
            )
        })
        .collect()
}

fn has_plan(cli: &Cli, name: &str, api: &str, per_hour: &str) -> bool {
    plans(cli)
        .iter()
        .any(|(n, a, r, _, _)| n == name && a == api && r == per_hour)
}

#[test]
fn plans_accounts_and_tokens_round_trip() {
    let cli = Cli::new();
    let (_, stderr) = cli.ok(&["migrate"]);
    assert!(
        stderr.starts_with("applied ") && stderr.contains(" migration"),
        "{stderr}"
    );

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
    // Account-wide limits: a ceiling for all tokens together, a token cap.
    cli.ok(&[
        "plan",
        "set",
        "team",
        "--api-access",
        "true",
        "--requests-per-hour",
        "50",
        "--account-requests-per-hour",
        "120",
        "--max-tokens",
        "3",
    ]);
    let team = plans(&cli).into_iter().find(|p| p.0 == "team").unwrap();
    assert_eq!((team.3.as_str(), team.4.as_str()), ("120", "3"));
    // `plan set` changes only what it is given; --clear-... removes a limit.
    set_team("false", "60");
    let team = plans(&cli).into_iter().find(|p| p.0 == "team").unwrap();
    assert_eq!((team.1.as_str(), team.2.as_str()), ("no", "60"), "{team:?}");
    assert_eq!(
        (team.3.as_str(), team.4.as_str()),
        ("120", "3"),
        "set keeps the limits it was not given"
    );
    cli.ok(&["plan", "set", "team", "--requests-per-hour", "70"]);
    assert!(has_plan(&cli, "team", "no", "70"));
    cli.ok(&["plan", "set", "team", "--clear-max-tokens"]);
    let team = plans(&cli).into_iter().find(|p| p.0 == "team").unwrap();
    assert_eq!((team.3.as_str(), team.4.as_str()), ("120", "-"));
    cli.ok(&[
        "plan",
        "set",
        "team",
        "--clear-account-requests-per-hour",
        "--max-tokens",
        "4",
    ]);
    let team = plans(&cli).into_iter().find(|p| p.0 == "team").unwrap();
    assert_eq!((team.3.as_str(), team.4.as_str()), ("-", "4"));
    // A new plan needs both of its required settings.
    cli.fails(
        &["plan", "set", "newplan", "--requests-per-hour", "5"],
        "plan \"newplan\" does not exist yet: a new plan needs --api-access and --requests-per-hour",
    );
    assert!(!plans(&cli).iter().any(|p| p.0 == "newplan"));
    let run = cli.run(&[
        "plan",
        "set",
        "team",
        "--max-tokens",
        "1",
        "--clear-max-tokens",
    ]);
    assert_eq!(run.code, Some(2), "conflicting flags: {}", run.stderr);

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
    assert_eq!(cells[1..3], ["CI", &token[token.len() - 4..]], "{row}");
    assert_eq!(cells.last(), Some(&"active"), "{row}");
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
            "scopes",
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
    let old_expiry = cli.token_field(id, "expires_at");
    assert_eq!(
        cli.token_field(id, "status"),
        format!("rotated -> {new_id}, until {old_expiry}"),
        "in its grace period, naming its successor"
    );
    let (listed, _) = cli.ok(&["token", "list", "acct_1"]);
    let row = listed.lines().find(|l| l.starts_with(id)).expect("listed");
    assert!(
        row.ends_with(&format!("rotated -> {new_id}, until {old_expiry}")),
        "{row}"
    );
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
        assert!(admin.starts_with("tgadmin_"), "{admin}");
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
    let cli = Cli::migrated();
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

    // Malformed arguments are usage errors: clap's exit status 2, nothing on
    // stdout, one line on stderr.
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
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("--help`"), "{args:?}: {}", run.stderr);
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
    let cli = Cli::migrated();
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

#[test]
fn bad_configuration_values_exit_1_with_one_line_naming_the_variable() {
    let cli = Cli::new();
    // Serve cases bind nowhere valid, so a value that slipped through fails fast too.
    let serve = &[][..];
    for (key, value, args, expected) in [
        (
            "ARGON2_MEMORY_KIB",
            "abc",
            &["migrate"][..],
            r#"invalid ARGON2_MEMORY_KIB "abc": invalid digit found in string"#,
        ),
        (
            "ARGON2_ITERATIONS",
            "-1",
            &["plan", "list"],
            "invalid ARGON2_ITERATIONS \"-1\"",
        ),
        (
            "CACHE_TTL_SECS",
            "abc",
            serve,
            r#"invalid CACHE_TTL_SECS "abc""#,
        ),
        (
            "SHUTDOWN_GRACE_SECS",
            "-1",
            &["serve"],
            r#"invalid SHUTDOWN_GRACE_SECS "-1""#,
        ),
        (
            "HEADER_READ_TIMEOUT_SECS",
            "0",
            serve,
            r#"invalid HEADER_READ_TIMEOUT_SECS "0""#,
        ),
        (
            "IDLE_TIMEOUT_SECS",
            "1m",
            serve,
            r#"invalid IDLE_TIMEOUT_SECS "1m""#,
        ),
        (
            "MAX_CONNECTIONS",
            "0",
            serve,
            r#"invalid MAX_CONNECTIONS "0""#,
        ),
        ("CREATE_DB", "maybe", serve, r#"invalid CREATE_DB "maybe""#),
        (
            "RATE_LIMIT_FAILURE_POLICY",
            "open",
            serve,
            r#"invalid RATE_LIMIT_FAILURE_POLICY "open": use closed or local"#,
        ),
        (
            "LOG_FORMAT",
            "yaml",
            &["migrate"],
            r#"invalid LOG_FORMAT "yaml": use text or json"#,
        ),
        (
            "RUST_LOG",
            "info,tokengate=loud",
            &["migrate"],
            "invalid RUST_LOG",
        ),
    ] {
        cli.fails_with(&[(key, value), ("BIND_ADDR", "nowhere")], args, expected);
    }
    // A flag is named as a flag.
    cli.fails(
        &["migrate", "--argon2-memory-kib", "abc"],
        r#"invalid --argon2-memory-kib "abc": invalid digit found in string"#,
    );
    cli.fails(
        &["--argon2-memory-kib=abc", "migrate"],
        r#"invalid --argon2-memory-kib "abc""#,
    );
    assert!(
        !cli.path().join("tokengate.db").exists(),
        "a database was opened despite the bad configuration"
    );
    // A bad variable is named even beside a good flag: clap reads the
    // environment of a global option at every level, so it is refused anyway.
    cli.fails_with(
        &[("ARGON2_MEMORY_KIB", "abc")],
        &["migrate", "--argon2-memory-kib", "64"],
        r#"invalid ARGON2_MEMORY_KIB "abc""#,
    );
    // Enumerated values ignore case.
    let run = cli.run_with(&[("LOG_FORMAT", "JSON")], &["migrate"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn degenerate_sqlite_urls_are_refused_before_opening_anything() {
    let cli = Cli::new();
    for (url, expected) in [
        (
            "sqlite://",
            r#"invalid DATABASE_URL "sqlite://": no file name"#,
        ),
        ("sqlite:", "no file name"),
        ("sqlite://?cache=shared", "no file name"),
        ("sqlite://.", "is a directory"),
        ("sqlite://data/", "is a directory"),
        (
            "sqlite://./sub/dir/a.db",
            "cannot open database sqlite://./sub/dir/a.db: directory ./sub/dir does not exist",
        ),
    ] {
        cli.fails_with(&[("DATABASE_URL", url)], &["migrate"], expected);
        cli.fails_with(&[("DATABASE_URL", url)], &["plan", "list"], expected);
    }
    std::fs::write(cli.path().join("file"), "").unwrap();
    cli.fails_with(
        &[("DATABASE_URL", "sqlite://file/a.db")],
        &["migrate"],
        "file is not a directory",
    );
    // Nothing was created. A read command does not create a database: it
    // names the one it looked for; `migrate` creates it.
    assert!(!cli.path().join("sub").exists() && !cli.path().join("data").exists());
    std::fs::create_dir(cli.path().join("sub")).unwrap();
    let env = [("DATABASE_URL", "sqlite://./sub/a.db")];
    let absolute = cli.path().join("sub").join("a.db");
    cli.fails_with(
        &env,
        &["plan", "list"],
        &format!("no database at {}", absolute.display()),
    );
    assert!(!cli.path().join("sub/a.db").exists());
    let run = cli.run_with(&env, &["migrate"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(cli.path().join("sub/a.db").exists());
    let run = cli.run_with(&env, &["plan", "list"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[tokio::test]
async fn bind_addr_takes_a_host_name() {
    let mut cli = Cli::new();
    cli.fails_with(&[("BIND_ADDR", "localhost")], &["serve"], "use host:port");
    cli.fails_with(&[("BIND_ADDR", "127.0.0.1")], &["serve"], "use host:port");

    // `localhost`, and enumerated values in another case.
    cli.env.retain(|(k, _)| k != "BIND_ADDR");
    cli.env.push(("BIND_ADDR".into(), "localhost:0".into()));
    cli.env
        .push(("RATE_LIMIT_FAILURE_POLICY".into(), "Local".into()));
    cli.env.push(("LOG_FORMAT".into(), "Json".into()));
    let server = Server::start(cli.path(), &cli.env);
    let has_ipv4 = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
        .unwrap()
        .any(|addr| addr.is_ipv4());
    if has_ipv4 {
        assert!(server.base.starts_with("http://127."), "{}", server.base);
    }
    let response = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn admin_token_must_be_presentable_as_a_bearer_token() {
    let cli = Cli::new();
    for token in [
        "correct horse battery staple",
        "p@ssw0rd-p@ssw0rd-p@ssw0rd",
        "abcdefghijklmnop!",
        "abcdefghijklmnop#",
        "user:abcdefghijklmnop",
        "=abcdefghijklmnopqrstuvwxyz",
        "abcdefghijklmnop=x",
        " abcdefghijklmnopqrstuvwxyz",
        "abcdéfghijklmnopqrstuvwxyz",
    ] {
        let stderr = cli.fails_with(
            &[("ADMIN_TOKEN", token), ("BIND_ADDR", "127.0.0.1:0")],
            &["serve"],
            "invalid ADMIN_TOKEN: the admin token can hold only A-Z a-z 0-9 - . _ ~ + / and a trailing =",
        );
        assert!(
            !stderr.contains(token.trim()),
            "the token was echoed: {stderr}"
        );
    }
    cli.fails_with(&[("ADMIN_TOKEN", "short")], &["serve"], "too short");

    // Every token68 character, and padding, works end to end.
    let token = "AZaz09-._~+/AZaz09-._~+/==";
    let mut env = cli.env.clone();
    env.retain(|(k, _)| k != "ADMIN_TOKEN");
    env.push(("ADMIN_TOKEN".into(), token.into()));
    let server = Server::start(cli.path(), &env);
    for (credential, status) in [(format!("Bearer {token}"), 200), (admin_header(), 401)] {
        let response = client()
            .get(server.url("/admin/plans"))
            .header("authorization", credential)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }
    assert_ne!(token, ADMIN_TOKEN);
}

#[test]
fn grace_is_named_as_the_flag() {
    let cli = Cli::migrated();
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    let (token, _) = cli.new_token(&["token", "create", "acct_1", "--name", "CI"]);
    let id = token_id(&token);
    cli.fails(
        &["token", "rotate", id, "--grace", "31d"],
        "--grace must be at most 30d",
    );
    cli.fails(
        &["token", "rotate", id, "--grace", "2592001"],
        "--grace must be at most 30d",
    );
    assert_eq!(cli.token_field(id, "status"), "active");
    cli.new_token(&["token", "rotate", id, "--grace", "30d"]);
}

#[test]
fn cli_commands_are_quiet_unless_rust_log_says_otherwise() {
    let mut cli = Cli::new();
    cli.unset("RUST_LOG");
    let (_, stderr) = cli.ok(&["migrate"]);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("applied ") && first.contains(" migration"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (_, stderr) = cli.ok(&["migrate"]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "database {}",
            cli.path().join("tokengate.db").display()
        )) && stderr.contains("is up to date"),
        "{stderr}"
    );

    let database = cli.path().join("tokengate.db");
    let (_, stderr) = cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    assert_eq!(
        stderr,
        format!(
            "database: {}\naccount acct_1: plan pro\n",
            database.display()
        )
    );
    let (_, stderr) = cli.new_token(&["token", "create", "acct_1", "--name", "CI"]);
    assert!(!stderr.contains("INFO"), "{stderr}");
    assert_eq!(stderr.lines().count(), 3, "{stderr}");

    // RUST_LOG still turns them on.
    let run = cli.run_with(
        &[("RUST_LOG", "info")],
        &["account", "set", "acct_1", "--plan", "free"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("INFO"), "{}", run.stderr);
}

#[test]
fn bad_settings_configuration_is_one_line_before_serving() {
    let cli = Cli::new();
    for (extra, expected) in [
        (
            &[("SETTINGS_AUTH_HEADER", "X Forwarded User")][..],
            "invalid SETTINGS_AUTH_HEADER \"X Forwarded User\": not a header name",
        ),
        (
            &[("SETTINGS_TRUSTED_PROXIES", "10.0.0.0/33")][..],
            "invalid SETTINGS_TRUSTED_PROXIES: invalid trusted proxy \"10.0.0.0/33\"",
        ),
        (
            &[
                ("SETTINGS_AUTH_HEADER", "X-Forwarded-User"),
                ("SETTINGS_TRUSTED_PROXIES", ""),
            ][..],
            "SETTINGS_TRUSTED_PROXIES is empty",
        ),
    ] {
        let mut extra = extra.to_vec();
        extra.push(("BIND_ADDR", "127.0.0.1:0"));
        cli.fails_with(&extra, &["serve"], expected);
    }
    assert!(!cli.path().join("tokengate.db").exists());
}

/// The sign-in header was believed from all of loopback by default: any
/// local process could act as any account.
#[test]
fn the_settings_header_without_trusted_proxies_refuses_to_start_with_an_example() {
    let cli = Cli::new();
    cli.fails_with(
        &[
            ("SETTINGS_AUTH_HEADER", "X-Forwarded-User"),
            ("BIND_ADDR", "127.0.0.1:0"),
        ],
        &["serve"],
        "SETTINGS_AUTH_HEADER is set but SETTINGS_TRUSTED_PROXIES is not: name the addresses \
         of the proxy that sets X-Forwarded-User, e.g. SETTINGS_TRUSTED_PROXIES=127.0.0.1/32",
    );
    assert!(!cli.path().join("tokengate.db").exists());
}

#[test]
fn top_level_help_names_every_environment_variable() {
    let cli = Cli::new();
    let (help, _) = cli.ok(&["--help"]);
    for variable in [
        "DATABASE_URL",
        "TOKEN_PREFIX",
        "ARGON2_MEMORY_KIB",
        "ARGON2_ITERATIONS",
        "ARGON2_PARALLELISM",
        "LOG_FORMAT",
        "BIND_ADDR",
        "ADMIN_TOKEN",
        "REDIS_URL",
        "REDIS_KEY_PREFIX",
        "RATE_LIMIT_FAILURE_POLICY",
        "CACHE_TTL_SECS",
        "SHUTDOWN_GRACE_SECS",
        "AUDIT_RETENTION_DAYS",
        "GITHUB_SECRET_SCANNING_KEYS",
        "SETTINGS_AUTH_HEADER",
        "SETTINGS_TRUSTED_PROXIES",
        "HEADER_READ_TIMEOUT_SECS",
        "IDLE_TIMEOUT_SECS",
        "BODY_TIMEOUT_SECS",
        "BODY_MIN_RATE",
        "MAX_CONNECTIONS",
        "CREATE_DB",
        "RUST_LOG",
        "tokengate serve --help",
    ] {
        assert!(help.contains(variable), "{variable} not in:\n{help}");
    }
    let (help, _) = cli.ok(&["serve", "--help"]);
    for variable in [
        "BIND_ADDR",
        "ADMIN_TOKEN",
        "REDIS_URL",
        "REDIS_KEY_PREFIX",
        "RATE_LIMIT_FAILURE_POLICY",
        "CACHE_TTL_SECS",
        "SHUTDOWN_GRACE_SECS",
        "HEADER_READ_TIMEOUT_SECS",
        "IDLE_TIMEOUT_SECS",
        "BODY_TIMEOUT_SECS",
        "BODY_MIN_RATE",
        "MAX_CONNECTIONS",
        "CREATE_DB",
        "AUDIT_RETENTION_DAYS",
        "GITHUB_SECRET_SCANNING_KEYS",
        "SETTINGS_AUTH_HEADER",
        "SETTINGS_TRUSTED_PROXIES",
        "RUST_LOG",
    ] {
        assert!(help.contains(variable), "{variable} not in:\n{help}");
    }
}

#[test]
fn a_malformed_env_file_is_an_error_without_echoing_it() {
    let cli = Cli::new();
    let secret = "hunter2 hunter2 hunter2";
    std::fs::write(
        cli.path().join(".env"),
        format!("# settings\nTOKEN_PREFIX=iit_\nADMIN_TOKEN={secret}\n"),
    )
    .unwrap();
    for args in [&["plan", "list"][..], &["migrate"], &["serve"]] {
        let stderr = cli.fails(args, "malformed .env: line 3");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    assert!(!cli.path().join("tokengate.db").exists());
    // Help still works.
    cli.ok(&["--help"]);

    // An unclosed quote gets its own hint (not "quote a value"), still without
    // the value.
    for quote in ['"', '\''] {
        std::fs::write(
            cli.path().join(".env"),
            format!("TOKEN_PREFIX=iit_\nADMIN_TOKEN={quote}{secret}\nLOG_FORMAT=text\n"),
        )
        .unwrap();
        let stderr = cli.fails(
            &["plan", "list"],
            &format!("malformed .env: line 2 opens a {quote} quote it never closes"),
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }

    // A well-formed one is read: its bad value is reported by name.
    std::fs::write(cli.path().join(".env"), "LOG_FORMAT=yaml\n").unwrap();
    cli.fails(&["migrate"], r#"invalid LOG_FORMAT "yaml""#);
}

#[test]
fn tokens_can_be_limited_to_scopes_and_plans_capped() {
    let cli = Cli::new();
    cli.ok(&["migrate"]);
    let (scopes, _) = cli.ok(&["scopes"]);
    assert_eq!(scopes, "providers:read\ntests:read\n");
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    let (token, _) = cli.new_token(&[
        "token",
        "create",
        "acct_1",
        "--name",
        "reader",
        "--scope",
        "tests:read",
    ]);
    assert_eq!(cli.token_field(token_id(&token), "scopes"), "tests:read");
    let (all, _) = cli.new_token(&["token", "create", "acct_1", "--name", "all"]);
    assert_eq!(cli.token_field(token_id(&all), "scopes"), "*");
    cli.fails_with(
        &[],
        &[
            "token",
            "create",
            "acct_1",
            "--name",
            "x",
            "--scope",
            "tests:write",
        ],
        r#"unknown scope "tests:write"; known scopes: providers:read, tests:read"#,
    );
    cli.ok(&[
        "plan",
        "set",
        "capped",
        "--api-access",
        "true",
        "--requests-per-hour",
        "10",
        "--max-tokens",
        "1",
    ]);
    cli.ok(&["account", "set", "acct_2", "--plan", "capped"]);
    cli.new_token(&["token", "create", "acct_2", "--name", "one"]);
    cli.fails_with(
        &[],
        &["token", "create", "acct_2", "--name", "two"],
        r#"the account already has 1 active tokens, the most plan "capped" allows: revoke one first"#,
    );
}

#[test]
fn the_audit_log_names_the_cli_and_never_a_secret() {
    let cli = Cli::migrated();
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    cli.ok(&["account", "set", "acct_2", "--plan", "pro"]);
    let (token, _) = cli.new_token(&["token", "create", "acct_1", "--name", "ci"]);
    let id = token_id(&token);
    cli.ok(&["token", "revoke", id]);
    cli.new_token(&["token", "create", "acct_2", "--name", "other"]);

    let (table, _) = cli.ok(&["audit", "--account", "acct_1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("AT "), "a header line: {table}");
    let actions: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        actions,
        ["token.revoked", "token.created", "account.created"]
    );
    assert!(
        lines[1..]
            .iter()
            .all(|line| line.split_whitespace().nth(2) == Some("cli"))
    );

    let (json, _) = cli.ok(&["audit", "--token", id, "--json"]);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e["token_id"] == id && e["actor"] == "cli")
    );
    let (everything, _) = cli.ok(&["audit", "--json", "--limit", "500"]);
    assert_eq!(everything.lines().count(), 5);
    assert!(!everything.contains(secret_of(&token)));

    let (revocations, _) = cli.ok(&["audit", "--action", "token.revoked", "--json"]);
    assert_eq!(revocations.lines().count(), 1);
    cli.fails(&["audit", "--token", "nope"], "not a token id");
    cli.fails(&["audit", "--limit", "0"], "limit must be 1 to 500");
}

/// `.env.example` names every variable the server reads, and nothing else.
#[test]
fn env_example_matches_the_variables_the_server_reads() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.example"))
            .unwrap();
    let mut documented: Vec<&str> = example
        .lines()
        .map(|line| line.trim_start_matches("# ").trim())
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    documented.sort_unstable();
    documented.dedup();
    let cli = Cli::new();
    let (serve_help, _) = cli.ok(&["serve", "--help"]);
    let (top_help, _) = cli.ok(&["--help"]);
    // Every variable name either help mentions: `[env: NAME=...]` and the
    // names in the Environment paragraph.
    let mut read: Vec<String> = format!("{serve_help}{top_help}")
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            word.contains('_')
                && word.len() > 3
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    read.push("RUST_LOG".into());
    read.sort_unstable();
    read.dedup();
    assert_eq!(documented, read);
}

/// Only `migrate` (and `serve`) create a database or apply migrations: every
/// other command, writes included, refuses a missing or unmigrated database,
/// naming the absolute file and the command to run, and creates nothing (a
/// `token create` must never "succeed" in a stray database the server does
/// not read).
#[test]
fn only_migrate_creates_or_migrates_a_database() {
    let mut cli = Cli::new();
    cli.unset("RUST_LOG");
    let database = cli.path().join("tokengate.db");
    let missing = format!("no database at {}", database.display());
    for args in [
        &["account", "set", "acct_1", "--plan", "pro"][..],
        &[
            "plan",
            "set",
            "team",
            "--api-access",
            "true",
            "--requests-per-hour",
            "5",
        ],
        &["token", "create", "acct_1", "--name", "CI"],
        &["token", "list", "acct_1"],
        &["plan", "list"],
        &["audit"],
        &["admin-token", "reset"],
    ] {
        let stderr = cli.fails(args, &missing);
        assert!(stderr.contains("run `tokengate migrate`"), "{stderr}");
        assert!(
            !database.exists(),
            "{args:?} created {}",
            database.display()
        );
    }

    // A file that is not a migrated database (made by hand, or by an older
    // CLI that created one): refused, and left unmigrated.
    std::fs::write(&database, b"").unwrap();
    for args in [
        &["account", "set", "acct_1", "--plan", "pro"][..],
        &["plan", "list"],
    ] {
        let stderr = cli.fails(args, &format!("database {} lacks ", database.display()));
        assert!(stderr.contains("run `tokengate migrate`"), "{stderr}");
    }
    let (_, stderr) = cli.ok(&["migrate"]);
    assert!(
        stderr.starts_with("applied "),
        "nothing was migrated before: {stderr}"
    );

    // Migrated: `-v` names the resolved file, and so does a write's first line.
    let (_, stderr) = cli.ok(&["-v", "plan", "list"]);
    assert_eq!(
        stderr.lines().next(),
        Some(format!("database: {}", database.display()).as_str()),
        "{stderr}"
    );
    let (_, stderr) = cli.ok(&["plan", "list"]);
    assert_eq!(stderr, "", "a read is quiet without -v");
    let (_, stderr) = cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    assert_eq!(
        stderr.lines().next(),
        Some(format!("database: {}", database.display()).as_str())
    );
}

/// Run from another directory, the default relative `DATABASE_URL` finds no
/// database there: the CLI says where it looked instead of creating one.
#[test]
fn the_cli_from_another_directory_names_the_database_it_looked_for() {
    // The default DATABASE_URL, sqlite://tokengate.db, as the README's quick start.
    let mut cli = Cli::new();
    cli.unset("DATABASE_URL");
    cli.unset("RUST_LOG");
    cli.ok(&["migrate"]);
    cli.ok(&["account", "set", "acct_1", "--plan", "pro"]);
    assert!(cli.path().join("tokengate.db").exists());
    let elsewhere = cli.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let run = Command::new(BIN)
        .args(["token", "create", "acct_1", "--name", "CI"])
        .current_dir(&elsewhere)
        .env_clear()
        .envs(cli.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let run = Run::from(run);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.stdout, "", "no token was minted");
    let looked = elsewhere.join("tokengate.db");
    assert!(
        run.stderr
            .contains(&format!("no database at {}", looked.display()))
            && run.stderr.contains("relative to the working directory")
            && run.stderr.contains("sqlite:///"),
        "{}",
        run.stderr
    );
    assert!(!looked.exists());
}

/// `DATABASE_URL` naming the wrong PostgreSQL database (e.g. `postgres`):
/// read and write commands refuse it and create no tables there.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_wrong_postgres_database_is_refused_not_migrated() {
    let Some(database) = tokengate_testkit::backends::postgres().await else {
        return;
    };
    let mut cli = Cli::new();
    cli.unset("RUST_LOG");
    let env = [("DATABASE_URL", database.url.as_str())];
    for args in [
        &["plan", "list"][..],
        &["token", "list", "acct_1"],
        &["account", "set", "acct_1", "--plan", "pro"],
    ] {
        let stderr = cli.fails_with(&env, args, &format!("database {} lacks ", database.url));
        assert!(stderr.contains("run `tokengate migrate`"), "{stderr}");
    }
    // Nothing was applied: `migrate` finds every migration still pending.
    let run = cli.run_with(&env, &["migrate"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.starts_with("applied "), "{}", run.stderr);
    let run = cli.run_with(&env, &["plan", "list"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

/// A port in use fails the start before any file is made: no database, no
/// lock file, no admin token shown.
#[test]
fn a_port_in_use_leaves_no_database_files() {
    let cli = Cli::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut env = cli.env.clone();
    env.retain(|(k, _)| k != "ADMIN_TOKEN");
    let run = Run::from(crate::process::cli_within(
        cli.path(),
        &env.into_iter()
            .map(|(k, v)| {
                if k == "BIND_ADDR" {
                    (k, addr.clone())
                } else {
                    (k, v)
                }
            })
            .collect::<Vec<_>>(),
        &["serve"],
        Duration::from_secs(30),
    ));
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("cannot listen on"), "{}", run.stderr);
    assert!(!run.stderr.contains("tgadmin_"), "{}", run.stderr);
    // (cli_within keeps the process's output in cli-*.out / cli-*.err.)
    let files: Vec<_> = std::fs::read_dir(cli.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("cli-"))
        .collect();
    assert!(files.is_empty(), "files left behind: {files:?}");
}

/// stderr redirected to a file or a pipe (as systemd, Docker and these tests
/// do) carries no ANSI colour codes: not in the server's log, not in the
/// CLI's messages, not in usage errors.
#[test]
fn stderr_has_no_ansi_codes_when_it_is_not_a_terminal() {
    let mut cli = Cli::migrated();
    cli.unset("ADMIN_TOKEN"); // the generated-token banner too
    let server = Server::start(cli.path(), &cli.env);
    let log = server.log_text();
    assert!(log.contains("listening on"), "{log}");
    let mut outputs = vec![log];
    drop(server);
    for args in [
        &["plan", "list"][..],
        &["account", "set", "acct_1", "--plan", "nope"],
        &["token", "frobnicate"],
        &["token", "create", "acct_1"],
        &["-v", "plan", "list"],
    ] {
        outputs.push(cli.run(args).stderr);
    }
    for stderr in outputs {
        assert!(!stderr.contains('\x1b'), "ANSI codes in: {stderr:?}");
    }
}

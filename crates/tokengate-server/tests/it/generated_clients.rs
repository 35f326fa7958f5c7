//! Clients generated from the served document, the way an integrator in
//! another language would make them, run every flow against the real binary.
//!
//! One test: start `tokengate serve` (with the Settings sign-in header),
//! fetch `/openapi.json`, check it with openapi-spec-validator and `redocly
//! lint` (0 errors), generate a TypeScript client (openapi-typescript +
//! openapi-fetch, compiled with `tsc --strict`) and a Python one
//! (openapi-python-client), then run `clients/typescript/flow.ts` and
//! `clients/python/flow.py`: the admin flow (plans, accounts, a scoped token,
//! `/api/v1` 200 / 403 / 429, usage, filtered audit, rotate with and without
//! a body, revoke, the token cap's 409) and the settings flow (list, create,
//! rotate, revoke, the security log), each response checked against the
//! document by the flow's own checker.
//!
//! The tools are pinned in `clients/package.json` (+ lock) and
//! `clients/requirements.txt`; the generated code goes to a temporary
//! directory. Without the tools the test says loudly that it skips, unless
//! `TOKENGATE_REQUIRE_CLIENTS=1` (as `.ci/run` sets), which makes it fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::process::{Server, base_env, client};
use crate::support::ADMIN_TOKEN;

/// Set to `1` to turn missing tools into a failure (CI does this).
const REQUIRE_ENV: &str = "TOKENGATE_REQUIRE_CLIENTS";
/// What installs the tools.
const INSTALL_HINT: &str = "(cd clients && npm ci) && python3 -m venv clients/.venv && \
     clients/.venv/bin/pip install -r clients/requirements.txt";
/// The Settings sign-in header the flows use.
const SETTINGS_HEADER: &str = "X-Forwarded-User";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients")
}

fn node_bin(name: &str) -> PathBuf {
    clients_dir().join("node_modules/.bin").join(name)
}

fn venv_bin(name: &str) -> PathBuf {
    clients_dir().join(".venv/bin").join(name)
}

/// Why the tools cannot run, if they cannot.
fn missing_tools() -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|out| out.status.success()) {
        return Some("node is not on PATH".into());
    }
    let missing: Vec<String> = [
        node_bin("openapi-typescript"),
        node_bin("tsc"),
        node_bin("redocly"),
        clients_dir().join("node_modules/openapi-fetch/package.json"),
        clients_dir().join("node_modules/ajv/package.json"),
        venv_bin("python"),
        venv_bin("openapi-spec-validator"),
        venv_bin("openapi-python-client"),
    ]
    .into_iter()
    .filter(|path| !path.exists())
    .map(|path| path.display().to_string())
    .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Runs `command`, and fails the test with its output unless it succeeds.
fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

/// The number in a flow's last line, `flow passed: N responses checked ...`.
fn responses_checked(what: &str, output: &Output) -> usize {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("flow passed: "))
        .unwrap_or_else(|| panic!("{what}: no `flow passed` line:\n{stdout}"));
    line.split(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn generated_typescript_and_python_clients_run_every_flow() {
    if let Some(reason) = missing_tools() {
        assert!(
            !required(),
            "{reason}; {REQUIRE_ENV}=1 demands the client tools (install: {INSTALL_HINT})"
        );
        // Straight to the stderr handle, in one write: libtest's capture
        // only swallows `eprintln!`, so this shows under plain `cargo test`.
        let message = format!(
            "\n*** SKIPPED generated_clients: {reason}. Install: {INSTALL_HINT}. \
             Set {REQUIRE_ENV}=1 to make this a failure. ***\n\n"
        );
        let _ = std::io::stderr().write_all(message.as_bytes());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(dir.path());
    env.push(("SETTINGS_AUTH_HEADER".into(), SETTINGS_HEADER.into()));
    env.push((
        "SETTINGS_TRUSTED_PROXIES".into(),
        "127.0.0.0/8,::1/128".into(),
    ));
    let server = Server::start(dir.path(), &env);

    // The document as served, byte for byte.
    let response = client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document = dir.path().join("openapi.json");
    std::fs::write(&document, response.bytes().await.unwrap()).unwrap();

    // Both validators: 0 errors (each exits non-zero on any error).
    run(
        "openapi-spec-validator",
        Command::new(venv_bin("openapi-spec-validator")).arg(&document),
    );
    let lint = run(
        "redocly lint",
        Command::new(node_bin("redocly"))
            .args(["lint", "--format=summary"])
            .arg(&document)
            .env("REDOCLY_TELEMETRY", "off")
            .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true"),
    );
    let summary =
        String::from_utf8_lossy(&lint.stderr).into_owned() + &String::from_utf8_lossy(&lint.stdout);
    assert!(
        summary.contains("Your API description is valid"),
        "redocly lint:\n{summary}"
    );
    assert!(!summary.contains("error "), "redocly lint:\n{summary}");

    // TypeScript: generate, compile with --strict (tsconfig.json), run.
    let ts = dir.path().join("typescript");
    std::fs::create_dir(&ts).unwrap();
    std::os::unix::fs::symlink(clients_dir().join("node_modules"), ts.join("node_modules"))
        .unwrap();
    std::fs::write(ts.join("package.json"), r#"{"type": "module"}"#).unwrap();
    for file in ["tsconfig.json", "check.ts", "flow.ts"] {
        std::fs::copy(clients_dir().join("typescript").join(file), ts.join(file)).unwrap();
    }
    run(
        "openapi-typescript",
        Command::new(node_bin("openapi-typescript"))
            .arg(&document)
            .arg("--output")
            .arg(ts.join("schema.d.ts")),
    );
    run(
        "tsc --strict",
        Command::new(node_bin("tsc"))
            .arg("--strict")
            .arg("-p")
            .arg(&ts),
    );
    let flow_env = |command: &mut Command, prefix: &str| {
        command
            .env("TOKENGATE_URL", &server.base)
            .env("TOKENGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TOKENGATE_OPENAPI", &document)
            .env("TOKENGATE_SETTINGS_HEADER", SETTINGS_HEADER)
            .env("TOKENGATE_FLOW_PREFIX", prefix);
    };
    let mut node = Command::new("node");
    node.arg(ts.join("out/flow.js"));
    flow_env(&mut node, "ts");
    let typescript = run("the TypeScript flow", &mut node);

    // Python: generate, run.
    let python = dir.path().join("python");
    run(
        "openapi-python-client",
        Command::new(venv_bin("openapi-python-client"))
            .args(["generate", "--meta", "none", "--path"])
            .arg(&document)
            .arg("--output-path")
            .arg(python.join("tokengate_client"))
            .arg("--config")
            .arg(clients_dir().join("python/openapi-python-client.yaml")),
    );
    let mut py = Command::new(venv_bin("python"));
    py.arg(clients_dir().join("python/flow.py"))
        .env("PYTHONPATH", &python);
    flow_env(&mut py, "py");
    let python_flow = run("the Python flow", &mut py);

    // Each flow checked every response it got; there are dozens.
    for (what, output) in [("TypeScript", &typescript), ("Python", &python_flow)] {
        let checked = responses_checked(what, output);
        assert!(checked >= 40, "{what}: only {checked} responses checked");
    }
    server.assert_no_panic();
}

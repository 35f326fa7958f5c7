//! One `serve` process per SQLite file: two would each keep their own rate
//! windows and caches, so limits and revocations would stop holding.

use std::time::{Duration, Instant};

use crate::process::{Server, base_env, cli, cli_within, client};

#[tokio::test]
async fn a_second_server_on_the_same_file_exits_1_naming_it_and_the_cli_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path());
    let mut first = Server::start(dir.path(), &env);

    let started = Instant::now();
    let second = cli_within(dir.path(), &env, &["serve"], Duration::from_secs(30));
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let database = dir.path().join("tokengate.db");
    assert_eq!(
        stderr,
        format!(
            "error: another tokengate server is already serving {db} (pid {pid}, listening on {addr}); \
             stop it first, or use another DATABASE_URL (lock file: {db}.lock)\n",
            db = database.display(),
            pid = first.pid(),
            addr = first.addr(),
        )
    );

    // The CLI is not a server: it works next to the running one, which sees its changes.
    let run = cli(
        dir.path(),
        &env,
        &["account", "set", "acct_1", "--plan", "pro"],
    );
    assert!(run.status.success(), "{run:?}");
    let run = cli(
        dir.path(),
        &env,
        &["token", "create", "acct_1", "--name", "CI"],
    );
    assert!(run.status.success(), "{run:?}");
    let token = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client()
            .get(first.url("/api/v1/external_tests"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the CLI's token: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The lock dies with its process, however it dies: no stale lock.
    first.signal("KILL");
    let again = Server::start(dir.path(), &env);
    let response = client().get(again.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// The lock followed the path's spelling: a second `serve` through a symlink
/// or a hard link started and served, and a 5/hour token was admitted 10
/// times in one hour.
#[tokio::test]
async fn a_second_server_through_another_name_of_the_file_exits_1_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path());
    let first = Server::start(dir.path(), &env);
    let database = dir.path().join("tokengate.db");
    std::os::unix::fs::symlink(&database, dir.path().join("symlink.db")).unwrap();
    std::fs::hard_link(&database, dir.path().join("hard.db")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();

    for url in [
        format!("sqlite://{}", dir.path().join("symlink.db").display()),
        format!("sqlite://{}", dir.path().join("hard.db").display()),
        "sqlite://tokengate.db".to_owned(),
        "sqlite://./sub/../tokengate.db".to_owned(),
    ] {
        let mut env = env.clone();
        env.retain(|(key, _)| key != "DATABASE_URL");
        env.push(("DATABASE_URL".into(), url.clone()));
        let started = Instant::now();
        let second = cli_within(dir.path(), &env, &["serve"], Duration::from_secs(30));
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(1), "{url}: {stderr}");
        assert!(took < Duration::from_secs(10), "{url}: {took:?}");
        assert!(
            stderr.starts_with("error: another tokengate server is already serving"),
            "{url}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("(pid {}", first.pid())),
            "{url}: the holder is named: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let response = client().get(first.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

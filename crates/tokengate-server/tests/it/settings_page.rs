//! Settings > API Tokens in the real server: the `tokengate` binary with
//! `SETTINGS_AUTH_HEADER`, behind a tiny authenticating proxy, driven in
//! headless Chromium the way a user would (generate, copy, use, reload,
//! rotate, revoke), and the routes' existence and trust rules over HTTP.
//!
//! Screenshots land in `target/screenshots/` (1280 and 375 px wide; whole
//! pages, but only the viewport while a dialog is open).
//! Without Chromium and chromedriver the browser tests skip loudly; with
//! `TOKENGATE_REQUIRE_BROWSER=1` (as `.ci/run` sets) or `CI=true` they fail.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::auth_proxy::AuthProxy;
use crate::browser::{self, Page};
use crate::process::{Server, admin_header, base_env, client};
use crate::support::UNAUTHORIZED;

const PAGE: &str = "/settings/api-tokens";
const WAIT: Duration = Duration::from_secs(15);
const UPGRADE: &str = "API access is available on Pro and Enterprise plans only.";
const FORBIDDEN: &str =
    r#"{"success": false, "error": "API access not available on your subscription plan"}"#;
const READY: &str = r#"html[data-tg-ready="true"]"#;

/// One Chromium at a time: two cores are shared by the whole suite.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The server with the settings page on, signed in by `X-Forwarded-User` from loopback.
fn start_server(dir: &std::path::Path, extra: &[(&str, &str)]) -> Server {
    let mut env = base_env(dir);
    env.push(("SETTINGS_AUTH_HEADER".into(), "X-Forwarded-User".into()));
    env.push((
        "SETTINGS_TRUSTED_PROXIES".into(),
        "127.0.0.0/8,::1/128".into(),
    ));
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push(((*key).into(), (*value).into()));
    }
    Server::start(dir, &env)
}

async fn admin(server: &Server, method: http::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = client()
        .request(method.clone(), server.url(path))
        .header("authorization", admin_header());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str::<Value>(&text).unwrap()["data"].clone()
}

async fn set_plan(server: &Server, account: &str, plan: &str) {
    let path = format!("/admin/accounts/{account}");
    admin(
        server,
        http::Method::PUT,
        &path,
        Some(json!({"plan": plan})),
    )
    .await;
}

/// The account's tokens by the admin API: (id, name, revoked).
async fn tokens(server: &Server, account: &str) -> Vec<(String, String, bool)> {
    let path = format!("/admin/accounts/{account}/tokens");
    let list = admin(server, http::Method::GET, &path, None).await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["name"].as_str().unwrap().to_owned(),
                !t["revoked_at"].is_null(),
            )
        })
        .collect()
}

/// The demo API's answer to `token`: status and body.
async fn call_api(server: &Server, token: &str) -> (u16, String) {
    let response = client()
        .get(server.url("/api/v1/external_tests"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn screenshot(name: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp: the shots go next to it.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    target.join("screenshots").join(format!("{name}.png"))
}

async fn js_strings(page: &Page<'_>, script: &str) -> Vec<String> {
    let value = page.js(script).await.unwrap();
    value
        .as_array()
        .unwrap_or_else(|| panic!("{script}: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Everything of the page a token could hide in: the DOM, its rendered
/// text, every field's value, the URL and web storage.
async fn everything_on_the_page(page: &Page<'_>) -> String {
    let value = page
        .js(
            "return [document.documentElement.outerHTML, document.body.innerText, \
             location.href, JSON.stringify(Object.assign({}, localStorage)), \
             JSON.stringify(Object.assign({}, sessionStorage))]
             .concat(Array.from(document.querySelectorAll('input, textarea, select'), e => e.value))
             .join('\\n')",
        )
        .await
        .unwrap();
    value.as_str().unwrap().to_owned()
}

async fn bool_js(page: &Page<'_>, script: &str) -> bool {
    page.js(script)
        .await
        .unwrap()
        .as_bool()
        .unwrap_or_else(|| panic!("{script} is not a boolean"))
}

/// The new token shown in the page's panel, once it appears.
async fn shown_token(page: &Page<'_>, kind: &str) -> String {
    page.wait_for(&format!(r#"#tg-new-token[data-kind="{kind}"]"#), WAIT)
        .await
        .unwrap();
    page.value("#tg-new-token-value").await.unwrap()
}

/// Generate, copy, use, reload, rotate and revoke, as a Pro user would.
#[tokio::test]
async fn settings_page_generates_copies_rotates_and_revokes_in_chromium() {
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let Some(mut chromium) =
        browser::launch_or_skip("settings_page_generates_copies_rotates_and_revokes_in_chromium")
            .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &[]);
    set_plan(&server, "acct_pro", "pro").await;
    // One token from before, so the list is not alone with ours.
    let path = "/admin/accounts/acct_pro/tokens";
    admin(
        &server,
        http::Method::POST,
        path,
        Some(json!({"name": "Nightly report"})),
    )
    .await;
    let proxy = AuthProxy::start(&server.base, "acct_pro").await;
    let url = format!("{}{PAGE}", proxy.base);

    let page = chromium.page(&url, 1280, 800).await.unwrap();
    page.wait_for(READY, WAIT).await.unwrap();
    assert_eq!(page.text("h1").await.unwrap(), "API Tokens");
    assert_eq!(page.text("#tg-account-id").await.unwrap(), "acct_pro");
    assert_eq!(
        page.text("#tg-plan").await.unwrap(),
        "Pro plan · 1,000 requests per hour per token"
    );
    assert_eq!(page.text("#tg-upgrade").await.unwrap(), "", "hidden on Pro");
    assert_eq!(page.text("#tg-alert").await.unwrap(), "");
    // The security log already holds the administrator's token.
    page.wait_for(r#"#tg-audit-list li[data-action="token.created"]"#, WAIT)
        .await
        .unwrap();
    assert_eq!(
        page.text("#tg-audit-list li .tg-event-who").await.unwrap(),
        "by an administrator · from 127.0.0.1"
    );
    page.full_page_screenshot(screenshot("settings-empty-1280"), 1280, 800)
        .await
        .unwrap();

    // Generate New Token: shown once, with the warning and a Copy button.
    page.fill("#tg-name", "CI deploy").await.unwrap();
    page.click_text("Generate New Token").await.unwrap();
    let first = shown_token(&page, "created").await;
    assert!(first.starts_with("iit_") && first.len() == 74, "{first:?}");
    assert_eq!(
        page.text("#tg-new-token-warning").await.unwrap(),
        "Copy and securely store your token (it won't be shown again)"
    );
    page.click("#tg-copy").await.unwrap();
    page.wait_for_text("#tg-copy-status", "Copied", WAIT)
        .await
        .unwrap();
    assert_eq!(page.clipboard_text().await.unwrap(), first);
    page.wait_for(r#"#tg-tokens-body tr[data-status="active"]"#, WAIT)
        .await
        .unwrap();
    page.full_page_screenshot(screenshot("settings-created-1280"), 1280, 800)
        .await
        .unwrap();
    page.full_page_screenshot(screenshot("settings-created-375"), 375, 800)
        .await
        .unwrap();
    page.resize(1280, 800).await.unwrap();
    assert_eq!(call_api(&server, &first).await.0, 200);

    // Reload: the plaintext is nowhere, in any form.
    page.reload().await.unwrap();
    page.wait_for(READY, WAIT).await.unwrap();
    page.wait_for(r#"#tg-tokens-body tr[data-status="active"]"#, WAIT)
        .await
        .unwrap();
    let after_reload = everything_on_the_page(&page).await;
    assert!(after_reload.contains("CI deploy"), "the list is there");
    assert!(
        !after_reload.contains(&first),
        "the token survived a reload"
    );
    assert!(
        !after_reload.contains(&first[24..]),
        "its secret survived a reload"
    );
    let first_id = tokens(&server, "acct_pro")
        .await
        .into_iter()
        .find(|(_, name, _)| name == "CI deploy")
        .unwrap()
        .0;
    let hint = format!("…{}", &first[first.len() - 4..]);
    let row = format!(r#"#tg-tokens-body tr[data-token-id="{first_id}"]"#);
    assert_eq!(
        page.text(&format!("{row} .tg-token-hint")).await.unwrap(),
        hint
    );

    // Rotate without a grace period (chosen in the dialog): a new token, shown the same way; the old one stops.
    page.click(&format!(
        r#"button[data-action="rotate"][data-token-id="{first_id}"]"#
    ))
    .await
    .unwrap();
    page.wait_for(r#"dialog#tg-dialog[data-kind="rotate"][open]"#, WAIT)
        .await
        .unwrap();
    page.screenshot(screenshot("settings-rotate-dialog-1280"))
        .await
        .unwrap();
    // The default keeps the old token for an hour, and the dialog says why;
    // this flow chooses none.
    assert_eq!(page.value("#tg-grace").await.unwrap(), "3600");
    assert!(
        page.text("#tg-grace-help")
            .await
            .unwrap()
            .starts_with("An hour gives your apps time to switch"),
    );
    page.js("document.getElementById('tg-grace').value = '0'; return true")
        .await
        .unwrap();
    page.click("#tg-dialog-confirm").await.unwrap();
    let second = shown_token(&page, "rotated").await;
    assert_ne!(second, first);
    assert_eq!(call_api(&server, &first).await.0, 401);
    assert_eq!(call_api(&server, &second).await.0, 200);
    page.click("#tg-done").await.unwrap();
    assert!(!everything_on_the_page(&page).await.contains(&second));

    // Revoke, behind a confirmation; the API then answers 401.
    let second_id = tokens(&server, "acct_pro")
        .await
        .into_iter()
        .find(|(id, name, revoked)| *id != first_id && name == "CI deploy" && !revoked)
        .unwrap()
        .0;
    let revoke = format!(r#"button[data-action="revoke"][data-token-id="{second_id}"]"#);
    page.wait_for(&revoke, WAIT).await.unwrap();
    page.click(&revoke).await.unwrap();
    page.wait_for(r#"dialog#tg-dialog[data-kind="revoke"][open]"#, WAIT)
        .await
        .unwrap();
    assert_eq!(
        page.text("#tg-dialog-message").await.unwrap(),
        "Revoke token “CI deploy”? Apps using it will stop working immediately."
    );
    page.screenshot(screenshot("settings-revoke-dialog-1280"))
        .await
        .unwrap();
    // Cancel first: nothing happens.
    page.click("#tg-dialog-cancel").await.unwrap();
    assert_eq!(call_api(&server, &second).await.0, 200);
    page.click(&revoke).await.unwrap();
    page.wait_for(r#"dialog#tg-dialog[open]"#, WAIT)
        .await
        .unwrap();
    page.click("#tg-dialog-confirm").await.unwrap();
    page.wait_for(
        &format!(r#"#tg-tokens-body tr[data-token-id="{second_id}"][data-status="revoked"]"#),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(call_api(&server, &second).await, (401, UNAUTHORIZED.into()));
    page.full_page_screenshot(screenshot("settings-revoked-1280"), 1280, 800)
        .await
        .unwrap();

    // A token limited to one scope: its route answers, the other is 403.
    page.click("#tg-scope-mode-some").await.unwrap();
    page.click(r#"input[name="scopes"][value="tests:read"]"#)
        .await
        .unwrap();
    page.fill("#tg-name", "Test reader").await.unwrap();
    page.click_text("Generate New Token").await.unwrap();
    let reader = shown_token(&page, "created").await;
    assert_eq!(call_api(&server, &reader).await.0, 200);
    let providers = client()
        .get(server.url("/api/v1/external_tests/providers"))
        .header("authorization", format!("Bearer {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(providers.status().as_u16(), 403);
    page.click("#tg-done").await.unwrap();
    let reader_row = r#"#tg-tokens-body tr[data-status="active"] .tg-scope"#;
    page.wait_for(reader_row, WAIT).await.unwrap();
    assert_eq!(page.text(reader_row).await.unwrap(), "tests:read");

    // The security log: every change above, by "you", newest first.
    page.wait_for(r#"#tg-audit-list li[data-action="token.revoked"]"#, WAIT)
        .await
        .unwrap();
    let actions = js_strings(
        &page,
        "return Array.from(document.querySelectorAll('#tg-audit-list li'), li => li.dataset.action)",
    )
    .await;
    assert_eq!(
        actions,
        [
            "token.created",
            "token.revoked",
            "token.rotated",
            "token.created",
            "token.created",
            "account.created"
        ]
    );
    let who = js_strings(
        &page,
        "return Array.from(document.querySelectorAll('#tg-audit-list li .tg-event-who'), e => e.textContent)",
    )
    .await;
    assert!(who[..4].iter().all(|w| w.starts_with("by you")), "{who:?}");
    assert!(!everything_on_the_page(&page).await.contains(&reader[24..]));
    page.full_page_screenshot(screenshot("settings-security-log-1280"), 1280, 800)
        .await
        .unwrap();

    let log = server.log_text();
    for token in [&first, &second, &reader] {
        assert!(
            !log.contains(&token[24..]),
            "a token reached the log:\n{log}"
        );
    }
    assert!(!proxy.seen().iter().any(|p| p.contains(&first[24..])));
    server.assert_no_panic();
    chromium.close().await;
}

/// A plan without API access: the docs' sentence, and no way to generate.
#[tokio::test]
async fn settings_page_on_a_free_plan_cannot_generate_in_chromium() {
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let Some(mut chromium) =
        browser::launch_or_skip("settings_page_on_a_free_plan_cannot_generate_in_chromium").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &[]);
    // A token from the days on Pro: it can still be revoked, not rotated.
    set_plan(&server, "acct_free", "pro").await;
    let path = "/admin/accounts/acct_free/tokens";
    admin(
        &server,
        http::Method::POST,
        path,
        Some(json!({"name": "Legacy script"})),
    )
    .await;
    set_plan(&server, "acct_free", "free").await;
    let proxy = AuthProxy::start(&server.base, "acct_free").await;

    let page = chromium
        .page(&format!("{}{PAGE}", proxy.base), 1280, 800)
        .await
        .unwrap();
    page.wait_for(READY, WAIT).await.unwrap();
    page.wait_for("#tg-upgrade", WAIT).await.unwrap();
    assert_eq!(page.text("#tg-upgrade").await.unwrap(), UPGRADE);
    assert_eq!(page.text("#tg-plan").await.unwrap(), "Free plan");
    assert!(
        bool_js(
            &page,
            "return document.getElementById('tg-generate').disabled"
        )
        .await
    );
    assert!(
        bool_js(
            &page,
            "return document.getElementById('tg-create-fieldset').disabled"
        )
        .await
    );
    assert!(
        page.fill("#tg-name", "sneaky").await.is_err(),
        "the name field is disabled"
    );
    page.wait_for(r#"button[data-action="revoke"]"#, WAIT)
        .await
        .unwrap();
    assert_eq!(
        page.js("return document.querySelectorAll('button[data-action=\"rotate\"]').length")
            .await
            .unwrap(),
        0
    );
    page.full_page_screenshot(screenshot("settings-free-1280"), 1280, 800)
        .await
        .unwrap();
    page.full_page_screenshot(screenshot("settings-free-375"), 375, 800)
        .await
        .unwrap();

    // The page's own origin asking anyway: the server says no, with the documented body.
    let answer = page
        .fetch_json("POST", &format!("{PAGE}/tokens"), r#"{"name": "sneaky"}"#)
        .await
        .unwrap();
    assert_eq!(answer, json!({"status": 403, "body": FORBIDDEN}));
    assert_eq!(tokens(&server, "acct_free").await.len(), 1);
    chromium.close().await;
}

/// Names with HTML, a right-to-left override and 200 characters render as text.
#[tokio::test]
async fn settings_page_renders_hostile_names_as_text_in_chromium() {
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let Some(mut chromium) =
        browser::launch_or_skip("settings_page_renders_hostile_names_as_text_in_chromium").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &[]);
    set_plan(&server, "acct_nasty", "pro").await;
    let html = "<img src=x onerror=alert(1)>";
    let bidi = "invoice\u{202E}gnp.exe";
    let quote = "\"><script>alert(2)</script>";
    let long = format!(
        "{}{}",
        "A".repeat(60),
        "VeryLongTokenNameWithoutAnySpaces".repeat(5)
    )
    .chars()
    .take(200)
    .collect::<String>();
    let path = "/admin/accounts/acct_nasty/tokens";
    for name in ["named before the rule", quote, long.as_str()] {
        admin(
            &server,
            http::Method::POST,
            path,
            Some(json!({"name": name})),
        )
        .await;
    }
    // New names with a right-to-left override are refused on every surface
    // (400 naming the code point); one stored before that rule is still
    // shown, isolated and pointed out.
    let refused = client()
        .post(server.url(path))
        .header("authorization", admin_header())
        .json(&json!({"name": bidi}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("U+202E"), "{text}");
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("tokengate.db").display()
    ))
    .await
    .unwrap();
    let renamed = sqlx::query("UPDATE api_tokens SET name = ? WHERE name = ?")
        .bind(bidi)
        .bind("named before the rule")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(renamed.rows_affected(), 1);
    db.close().await;
    let proxy = AuthProxy::start(&server.base, "acct_nasty").await;

    let page = chromium
        .page(&format!("{}{PAGE}", proxy.base), 1280, 800)
        .await
        .unwrap();
    page.wait_for(READY, WAIT).await.unwrap();
    // The HTML name typed into the page, like a user would.
    page.fill("#tg-name", html).await.unwrap();
    page.click_text("Generate New Token").await.unwrap();
    shown_token(&page, "created").await;
    page.wait_for("#tg-tokens-body tr:nth-child(4)", WAIT)
        .await
        .unwrap();

    let mut names = js_strings(
        &page,
        "return Array.from(document.querySelectorAll('#tg-tokens-body .tg-token-name'), e => e.textContent)",
    )
    .await;
    names.sort();
    let mut expected = vec![
        html.to_owned(),
        bidi.to_owned(),
        quote.to_owned(),
        long.clone(),
    ];
    expected.sort();
    assert_eq!(names, expected);
    let panel = page.text("#tg-new-token-for").await.unwrap();
    assert!(panel.contains(html), "{panel}");
    assert_eq!(
        page.js(
            "return document.querySelectorAll('#tg-app img, #tg-app script, #tg-dialog img').length"
        )
        .await
        .unwrap(),
        0
    );
    assert!(page.accept_dialog().await.is_err(), "an alert() ran");
    assert_eq!(
        page.js("return document.querySelectorAll('#tg-tokens-body .tg-bidi-warning').length")
            .await
            .unwrap(),
        1,
        "the override is pointed out"
    );
    page.full_page_screenshot(screenshot("settings-hostile-names-1280"), 1280, 800)
        .await
        .unwrap();

    // On a phone: no sideways scrolling, even with a 200-character name.
    page.resize(375, 800).await.unwrap();
    assert!(
        bool_js(
            &page,
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        .await,
        "the page scrolls sideways at 375 px"
    );
    page.full_page_screenshot(screenshot("settings-hostile-names-375"), 375, 800)
        .await
        .unwrap();
    page.click(r#"button[data-action="revoke"]"#).await.unwrap();
    page.wait_for("dialog#tg-dialog[open]", WAIT).await.unwrap();
    page.screenshot(screenshot("settings-revoke-dialog-375"))
        .await
        .unwrap();
    page.click("#tg-dialog-cancel").await.unwrap();

    // Nothing was fetched but the page, its files and its API (an injected
    // <img src=x> would have asked for /settings/x).
    for request in proxy.seen() {
        let path = request.split_once(' ').unwrap().1;
        assert!(
            path.starts_with(PAGE) || path == "/favicon.ico",
            "unexpected request {request}"
        );
    }
    chromium.close().await;
}

#[tokio::test]
async fn settings_routes_do_not_exist_without_settings_auth_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &base_env(dir.path()));
    for path in [
        PAGE,
        "/settings/api-tokens/account",
        "/settings/api-tokens/assets/settings.js",
    ] {
        let response = client()
            .get(server.url(path))
            .header("x-forwarded-user", "acct_1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"success": false, "error": "Not found"}"#
        );
    }
    let document: Value = client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        document["paths"]
            .get("/settings/api-tokens/tokens")
            .is_none()
    );
}

#[tokio::test]
async fn the_server_believes_the_sign_in_header_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let account = |server: &Server| {
        client()
            .get(server.url("/settings/api-tokens/account"))
            .header("x-forwarded-user", "acct_1")
            .send()
    };

    // Default: loopback is the auth proxy, so a loopback peer is believed.
    let server = start_server(dir.path(), &[]);
    set_plan(&server, "acct_1", "pro").await;
    let response = account(&server).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["account_id"], "acct_1");
    assert_eq!(body["data"]["plan"], "pro");
    let document: Value = client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let post = &document["paths"]["/settings/api-tokens/tokens"]["post"];
    assert_eq!(post["tags"], json!(["settings"]));
    assert!(
        document["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|tag| tag["name"] == "settings")
    );
    assert!(
        server
            .log_text()
            .contains("settings page at /settings/api-tokens, signed in by the x-forwarded-user header from 127.0.0.0/8,::1/128"),
        "{}",
        server.log_text()
    );
    drop(server);

    // Another proxy is trusted: the same request from loopback is nobody.
    let server = start_server(dir.path(), &[("SETTINGS_TRUSTED_PROXIES", "192.0.2.0/24")]);
    let response = account(&server).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"success": false, "error": "Sign in to manage API tokens"}"#
    );
    let created = client()
        .post(server.url("/settings/api-tokens/tokens"))
        .header("x-forwarded-user", "acct_1")
        .header("content-type", "application/json")
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 401);
    assert!(tokens(&server, "acct_1").await.is_empty());
}

/// The page in one command: `tokengate serve --settings-demo-user acct_42`
/// signs every loopback request in as that account (created on Pro), says so
/// loudly, and is refused anywhere but on loopback or beside an auth proxy.
#[tokio::test]
async fn the_settings_page_in_one_command_with_a_demo_user() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path());
    let server = Server::start_with_args(
        dir.path(),
        &env,
        &["serve", "--settings-demo-user", "acct_42"],
    );
    let log = server.log_text();
    assert!(log.contains("SETTINGS DEMO MODE"), "{log}");
    assert!(
        log.contains(&format!("{}{PAGE}", server.base)),
        "the banner names the page's address: {log}"
    );
    assert!(
        log.contains("rate limits counted in memory"),
        "the rate-limit backend is logged: {log}"
    );
    let account: Value = client()
        .get(server.url(&format!("{PAGE}/account")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["data"]["account_id"], "acct_42", "{account}");
    assert_eq!(account["data"]["plan"], "pro", "{account}");
    let page = client().get(server.url(PAGE)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // No header is believed in demo mode: the account is the flag's.
    let other: Value = client()
        .get(server.url(&format!("{PAGE}/account")))
        .header("x-forwarded-user", "acct_other")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["data"]["account_id"], "acct_42");
    server.assert_no_panic();

    // Refused where it would sign in strangers, and beside an auth proxy.
    for (extra, expected) in [
        (
            ("BIND_ADDR", "0.0.0.0:0"),
            "works only on a loopback BIND_ADDR",
        ),
        (
            ("SETTINGS_AUTH_HEADER", "X-Forwarded-User"),
            "--settings-demo-user and SETTINGS_AUTH_HEADER both sign in",
        ),
    ] {
        let mut env = env.clone();
        env.retain(|(k, _)| k != extra.0);
        env.push((extra.0.into(), extra.1.into()));
        let run = crate::process::cli_within(
            dir.path(),
            &env,
            &["serve", "--settings-demo-user", "acct_42"],
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

/// Without SETTINGS_AUTH_HEADER the start says the page is off and how to
/// turn it on.
#[tokio::test]
async fn the_start_says_how_to_turn_the_settings_page_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &base_env(dir.path()));
    let log = server.log_text();
    assert!(
        log.contains("settings page off")
            && log.contains("SETTINGS_AUTH_HEADER")
            && log.contains("--settings-demo-user"),
        "{log}"
    );
}

/// A first visit without a sign-in asks to sign in (nothing "expired"); a
/// signed-in account that tokengate does not know is told an administrator
/// must create it; the demo user's page works straight from the server.
#[tokio::test]
async fn settings_page_first_visit_unknown_account_and_demo_user_in_chromium() {
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let Some(mut chromium) = browser::launch_or_skip(
        "settings_page_first_visit_unknown_account_and_demo_user_in_chromium",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &[]);

    // Straight to the server: no proxy, so nobody is signed in.
    let page = chromium.page(&server.url(PAGE), 1280, 800).await.unwrap();
    page.wait_for(READY, WAIT).await.unwrap();
    assert_eq!(
        page.text("#tg-alert").await.unwrap(),
        "Sign in to manage API tokens."
    );
    // Nothing failed: the lists say what to do, and the empty log is not shown.
    assert_eq!(
        page.text("#tg-tokens-loading").await.unwrap(),
        "Sign in to see your tokens."
    );
    assert!(
        bool_js(
            &page,
            "return document.getElementById('tg-audit-section').hidden"
        )
        .await
    );
    page.full_page_screenshot(screenshot("settings-signed-out-1280"), 1280, 800)
        .await
        .unwrap();

    // Signed in, but the account was never created.
    let proxy = AuthProxy::start(&server.base, "acct_nobody").await;
    page.goto(&format!("{}{PAGE}", proxy.base)).await.unwrap();
    page.wait_for(READY, WAIT).await.unwrap();
    page.wait_for("#tg-no-account:not([hidden])", WAIT)
        .await
        .unwrap();
    assert_eq!(
        page.text("#tg-no-account").await.unwrap(),
        "Your account (acct_nobody) has no API plan yet. An administrator must create it before you can generate tokens."
    );
    assert_eq!(page.text("#tg-alert").await.unwrap(), "");
    let body = page.text("body").await.unwrap();
    assert!(!body.contains("Unknown plan"), "{body}");
    assert!(!body.contains(UPGRADE), "{body}");
    assert!(
        bool_js(
            &page,
            "return document.getElementById('tg-generate').disabled"
        )
        .await
    );
    page.full_page_screenshot(screenshot("settings-no-account-375"), 375, 800)
        .await
        .unwrap();
    drop(server);

    // The demo user: the page works with nothing in front of it.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(
        dir.path(),
        &base_env(dir.path()),
        &["serve", "--settings-demo-user", "acct_42"],
    );
    let page = chromium.page(&server.url(PAGE), 1280, 800).await.unwrap();
    page.wait_for(READY, WAIT).await.unwrap();
    assert_eq!(page.text("#tg-account-id").await.unwrap(), "acct_42");
    assert_eq!(
        page.text("#tg-plan").await.unwrap(),
        "Pro plan · 1,000 requests per hour per token"
    );
    assert_eq!(page.text("#tg-alert").await.unwrap(), "");
    page.fill("#tg-name", "Demo").await.unwrap();
    page.click_text("Generate New Token").await.unwrap();
    let token = shown_token(&page, "created").await;
    assert_eq!(call_api(&server, &token).await.0, 200);
    chromium.close().await;
}

/// A browser too old for `Sec-Fetch-Site` sends only `Origin`, with the
/// port the user typed. Behind a proxy on a non-default port, the proxy must
/// forward the host *with* its port (nginx's `$http_host`; `$host` drops it),
/// or the server sees another origin and refuses the change.
#[tokio::test]
async fn an_origin_only_state_change_through_a_proxy_on_a_non_default_port_is_same_origin() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &[]);
    set_plan(&server, "acct_1", "pro").await;
    let proxy = AuthProxy::start(&server.base, "acct_1").await;
    let port = proxy.base.rsplit(':').next().unwrap().to_owned();
    assert_ne!(port, "80");
    let create = |url: String, origin: &str| {
        client()
            .post(url)
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(r#"{"name": "CI"}"#)
    };

    // Through the proxy, which forwards `Host` as it came (`$http_host`).
    let response = create(format!("{}{PAGE}/tokens", proxy.base), &proxy.base)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());

    // What `proxy_set_header X-Forwarded-Host $host` sends: no port, refused.
    let response = create(server.url(&format!("{PAGE}/tokens")), &proxy.base)
        .header("x-forwarded-user", "acct_1")
        .header("x-forwarded-host", "127.0.0.1")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(tokens(&server, "acct_1").await.len(), 1);

    // So the README's nginx example forwards the host with its port.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let forwarded: Vec<&str> = readme
        .lines()
        .filter(|line| line.contains("proxy_set_header X-Forwarded-Host"))
        .collect();
    assert!(!forwarded.is_empty());
    for line in forwarded {
        assert!(line.contains("$http_host;"), "{line}");
    }
}

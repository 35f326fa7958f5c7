//! Headless Chromium for integration tests, driven over WebDriver.
//!
//! Uses Debian's `chromium` and `chromium-driver` packages (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`, same version by construction) through `fantoccini`.
//! Every `Browser` owns one chromedriver + one Chromium with a fresh profile, in a
//! process group of their own that `Drop` kills, so a panicking test leaves no
//! process behind. A small shell watchdog in that group also kills it if the test
//! process itself dies (SIGKILL, a runner's timeout).
//!
//! ```text
//! let Some(mut browser) = browser::launch_or_skip("settings_flow").await else { return };
//! let page = browser.page(&url, 1280, 800).await.unwrap();
//! page.fill("#name", "ci").await.unwrap();
//! page.click_text("Generate New Token").await.unwrap();
//! page.wait_for("#token", Duration::from_secs(5)).await.unwrap();
//! ```
#![allow(dead_code)] // a kit: not every test uses every helper

use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// Where Debian's `chromium` package puts the browser (override: `TOKENGATE_CHROMIUM`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts the driver (override: `TOKENGATE_CHROMEDRIVER`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Set to `1` to turn a missing browser into a failure (CI does this); `0` forces a skip.
pub const REQUIRE_ENV: &str = "TOKENGATE_REQUIRE_BROWSER";
/// The command that installs what is missing.
pub const INSTALL_HINT: &str = "apt-get install -y chromium chromium-driver";

/// Flags Chromium needs on these machines (root, no GPU, closed network).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,800",
];

/// chromedriver on a free port, plus a watchdog that kills the whole group
/// when the test process ($1) or chromedriver goes away. `$0` is the driver path.
const WATCHDOG: &str = r#""$0" --port=0 & cd=$!
trap 'kill -KILL 0' TERM
while kill -0 "$1" 2>/dev/null && kill -0 "$cd" 2>/dev/null; do sleep 0.5; done
kill -KILL 0"#;

static NEXT_PROFILE: AtomicUsize = AtomicUsize::new(0);
const PROFILE_PREFIX: &str = "tokengate-chromium-";

/// Deletes profiles left by test processes that were killed (no `Drop` ran).
fn remove_stale_profiles() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PROFILE_PREFIX)
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn chromium() -> String {
    std::env::var("TOKENGATE_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into())
}

fn chromedriver() -> String {
    std::env::var("TOKENGATE_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into())
}

/// Why no browser can be started here, or `None` when both binaries exist.
pub fn missing_browser() -> Option<String> {
    let missing: Vec<String> = [chromium(), chromedriver()]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not found (install: {INSTALL_HINT})",
            missing.join(" and ")
        )
    })
}

/// Whether a missing browser must fail the test: `TOKENGATE_REQUIRE_BROWSER=1`,
/// or, when that is unset, `CI=true`.
pub fn browser_required() -> bool {
    match std::env::var(REQUIRE_ENV).as_deref() {
        Ok("1") | Ok("true") => true,
        Ok(_) => false,
        Err(_) => std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
    }
}

/// Launches a browser, or returns `None` after saying loudly why the test is
/// skipped. Panics instead of skipping when [`browser_required`]. A browser that
/// is installed but fails to start is always a panic, never a skip.
pub async fn launch_or_skip(test: &str) -> Option<Browser> {
    if let Some(reason) = missing_browser() {
        assert!(
            !browser_required(),
            "{test}: {reason}; {REQUIRE_ENV}/CI demands a browser"
        );
        // Straight to the stderr handle, in one write: libtest's capture only swallows
        // eprintln!, so this shows under plain `cargo test` (nextest: --success-output).
        let msg = format!(
            "\n*** SKIPPED {test}: {reason}. Set {REQUIRE_ENV}=1 to make this a failure. ***\n\n"
        );
        let _ = std::io::stderr().write_all(msg.as_bytes());
        return None;
    }
    match Browser::launch().await {
        Ok(b) => Some(b),
        Err(e) => panic!("{test}: {e}"),
    }
}

/// One chromedriver + Chromium pair with a fresh profile; killed on drop.
pub struct Browser {
    client: Client,
    processes: Processes,
}

/// The process group (watchdog shell, chromedriver, Chromium) and the profile dir.
struct Processes {
    leader: Child,
    profile: PathBuf,
}

impl Drop for Processes {
    fn drop(&mut self) {
        let group = format!("-{}", self.leader.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.leader.kill();
        let _ = self.leader.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session in a new headless
    /// Chromium (1280x800 window, empty profile).
    pub async fn launch() -> Result<Browser, String> {
        if let Some(reason) = missing_browser() {
            return Err(reason);
        }
        remove_stale_profiles();
        let n = NEXT_PROFILE.fetch_add(1, Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("{PROFILE_PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir_all(&profile).map_err(ctx("create profile dir"))?;
        let started = tokio::task::spawn_blocking(move || start_driver(profile)).await;
        let (processes, port) = started.map_err(ctx("chromedriver start thread"))??;

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", processes.profile.display()));
        let caps = json!({
            "goog:chromeOptions": { "binary": chromium(), "args": args },
            // Leave native alert/confirm open until the test accepts or dismisses it.
            "unhandledPromptBehavior": "ignore",
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(ctx(
                "start a Chromium session (chromium and chromedriver versions must match)",
            ))?;
        Ok(Browser { client, processes })
    }

    /// Sizes the viewport to exactly `width` x `height` CSS px and opens `url`.
    /// The session keeps one window: cookies and storage carry over between calls.
    pub async fn page(&mut self, url: &str, width: u32, height: u32) -> Result<Page<'_>, String> {
        let page = Page {
            client: &self.client,
        };
        page.resize(width, height).await?;
        page.goto(url).await?;
        Ok(page)
    }

    /// Process group id (= pid of the watchdog shell), for leak checks.
    pub fn process_group(&self) -> u32 {
        self.processes.leader.id()
    }

    /// Ends the session politely, then kills the process group (as `Drop` does).
    pub async fn close(self) {
        let Browser { client, processes } = self;
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        drop(processes);
    }
}

/// Starts chromedriver (inside the watchdog's process group) and returns its port.
/// `--port=0` picks a free IPv4 port, but chromedriver also binds the same port on
/// ::1 and exits ("IPv6 port not available") when that one is taken: retried.
fn start_driver(profile: PathBuf) -> Result<(Processes, u16), String> {
    let mut last = String::new();
    for _ in 0..5 {
        let mut leader = Command::new("sh")
            .args([
                "-c",
                WATCHDOG,
                &chromedriver(),
                &std::process::id().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(ctx("spawn chromedriver"))?;
        let stdout = leader.stdout.take().expect("piped stdout");
        let processes = Processes {
            leader,
            profile: profile.clone(),
        };
        match driver_port(stdout) {
            Ok(port) => return Ok((processes, port)),
            Err(e) if e.contains("port not available") => {
                eprintln!("browser: chromedriver lost a port race, retrying: {e}");
                last = e;
            }
            Err(e) => return Err(e),
        }
        // `processes` drops here: kills that attempt's group; the profile is still empty.
    }
    Err(last)
}

/// Reads chromedriver's "started successfully on port N." line (it binds port 0).
fn driver_port(stdout: std::process::ChildStdout) -> Result<u16, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if seen.len() < 20 {
                seen.push(line.clone());
            }
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(
                    rest.trim_end_matches('.')
                        .parse::<u16>()
                        .map_err(|e| e.to_string()),
                );
            } // keep draining so chromedriver never blocks on a full pipe
        }
        let _ = tx.send(Err(format!("chromedriver exited; it printed: {seen:?}")));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(port)) => Ok(port),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "{} did not report a port within 20 s",
            chromedriver()
        )),
    }
}

/// The browser's one window. Every method returns a message naming the selector on error.
pub struct Page<'a> {
    client: &'a Client,
}

impl Page<'_> {
    /// Navigates and waits for the load event.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.client
            .goto(url)
            .await
            .map_err(ctx(format!("open {url}")))
    }

    /// Makes the viewport (window.innerWidth/innerHeight) exactly this size. Headless
    /// Chromium's window has invisible browser chrome, so the window is grown to fit.
    pub async fn resize(&self, width: u32, height: u32) -> Result<(), String> {
        self.client
            .set_window_size(width, height)
            .await
            .map_err(ctx("resize window"))?;
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]")
            .await?;
        let (iw, ih) = (
            u32::try_from(inner[0].as_u64().unwrap_or(0)).unwrap_or(0),
            u32::try_from(inner[1].as_u64().unwrap_or(0)).unwrap_or(0),
        );
        if (iw, ih) != (width, height) {
            let w = (2 * width).saturating_sub(iw).max(width);
            let h = (2 * height).saturating_sub(ih).max(height);
            self.client
                .set_window_size(w, h)
                .await
                .map_err(ctx("resize window"))?;
        }
        Ok(())
    }

    /// Reloads the page and waits for the load event.
    pub async fn reload(&self) -> Result<(), String> {
        self.client.refresh().await.map_err(ctx("reload"))
    }

    /// Clears the input found by CSS `selector` and types `text` into it (real key events).
    pub async fn fill(&self, selector: &str, text: &str) -> Result<(), String> {
        let el = self.find(selector).await?;
        el.clear()
            .await
            .map_err(ctx(format!("clear `{selector}`")))?;
        el.send_keys(text)
            .await
            .map_err(ctx(format!("type into `{selector}`")))
    }

    /// Clicks the first element matching CSS `selector` (a real pointer click).
    pub async fn click(&self, selector: &str) -> Result<(), String> {
        self.find(selector)
            .await?
            .click()
            .await
            .map_err(ctx(format!("click `{selector}`")))
    }

    /// Clicks the visible button or link whose text (trimmed, spaces collapsed) is
    /// exactly `label`; inside an open `<dialog>` first, so "Revoke" in a confirmation
    /// dialog wins over the "Revoke" buttons behind it.
    pub async fn click_text(&self, label: &str) -> Result<(), String> {
        let lit = xpath_literal(label);
        let target = format!(
            "(self::button or self::a or @role='button') and normalize-space(.)={lit} \
             or self::input and (@type='submit' or @type='button') and @value={lit}"
        );
        for scope in ["//dialog[@open]//*", "//*"] {
            let xpath = format!("{scope}[{target}]");
            let found = self
                .client
                .find_all(Locator::XPath(&xpath))
                .await
                .map_err(ctx("find by text"))?;
            for el in found {
                if el.is_displayed().await.unwrap_or(false) {
                    return el.click().await.map_err(ctx(format!("click {label:?}")));
                }
            }
        }
        Err(format!("no visible button or link labelled {label:?}"))
    }

    /// Waits until an element matching CSS `selector` exists and is displayed.
    pub async fn wait_for(&self, selector: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .client
                .find_all(Locator::Css(selector))
                .await
                .map_err(ctx(format!("find `{selector}`")))?;
            for el in found {
                if el.is_displayed().await.unwrap_or(false) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("`{selector}` not visible after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the text of `selector` contains `expected`.
    pub async fn wait_for_text(
        &self,
        selector: &str,
        expected: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(selector).await.unwrap_or_default();
            if text.contains(expected) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "`{selector}` still reads {text:?}, not {expected:?}, after {timeout:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The live `value` property of an input, select or textarea.
    pub async fn value(&self, selector: &str) -> Result<String, String> {
        let el = self.find(selector).await?;
        let v = el
            .prop("value")
            .await
            .map_err(ctx(format!("read value of `{selector}`")))?;
        v.ok_or_else(|| format!("`{selector}` has no value property"))
    }

    /// The rendered text of the element (WebDriver: "" when it is hidden).
    pub async fn text(&self, selector: &str) -> Result<String, String> {
        self.find(selector)
            .await?
            .text()
            .await
            .map_err(ctx(format!("read text of `{selector}`")))
    }

    /// The current DOM serialized as HTML (e.g. to prove a secret is nowhere in it).
    pub async fn html(&self) -> Result<String, String> {
        self.client.source().await.map_err(ctx("read page source"))
    }

    /// Runs `script` as a function body in the page (not subject to the page's CSP).
    pub async fn js(&self, script: &str) -> Result<Value, String> {
        self.client
            .execute(script, vec![])
            .await
            .map_err(ctx("run script"))
    }

    /// Writes a PNG of the whole page at `width` CSS px to `path`: the viewport
    /// is made as tall as the document for the shot, then set back to `height`.
    pub async fn full_page_screenshot(
        &self,
        path: impl AsRef<Path>,
        width: u32,
        height: u32,
    ) -> Result<(), String> {
        self.resize(width, height).await?;
        let tall = self
            .js("return Math.ceil(document.documentElement.scrollHeight)")
            .await?
            .as_u64()
            .and_then(|tall| u32::try_from(tall).ok())
            .unwrap_or(height);
        self.resize(width, tall.max(height)).await?;
        let shot = self.screenshot(path).await;
        self.resize(width, height).await?;
        shot
    }

    /// Writes a PNG of the viewport to `path`, creating parent directories.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<(), String> {
        let path = path.as_ref();
        let png = self.client.screenshot().await.map_err(ctx("screenshot"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(ctx(format!("create {}", dir.display())))?;
        }
        std::fs::write(path, png).map_err(ctx(format!("write {}", path.display())))
    }

    /// Sends a same-origin `fetch` from the page itself (`Content-Type:
    /// application/json`, the page's cookies) and returns
    /// `{"status": n, "body": "..."}`.
    pub async fn fetch_json(&self, method: &str, path: &str, body: &str) -> Result<Value, String> {
        let script = "const [method, path, body, done] = arguments;
            fetch(path, { method, body, credentials: 'same-origin',
                          headers: { 'Content-Type': 'application/json' } })
              .then(r => r.text().then(t => done({ status: r.status, body: t })),
                    e => done({ error: String(e) }));";
        self.client
            .execute_async(script, vec![json!(method), json!(path), json!(body)])
            .await
            .map_err(ctx("fetch from the page"))
    }

    /// Accepts an open native `alert`/`confirm`/`prompt` and returns its message.
    pub async fn accept_dialog(&self) -> Result<String, String> {
        let text = self
            .client
            .get_alert_text()
            .await
            .map_err(ctx("no native dialog open"))?;
        self.client
            .accept_alert()
            .await
            .map_err(ctx("accept native dialog"))?;
        Ok(text)
    }

    /// Dismisses an open native dialog (`confirm` returns false).
    pub async fn dismiss_dialog(&self) -> Result<(), String> {
        self.client
            .dismiss_alert()
            .await
            .map_err(ctx("dismiss native dialog"))
    }

    /// What the page last wrote with `navigator.clipboard.writeText` (Chromium's own
    /// headless clipboard). Grants the page's origin `clipboard-read` first.
    pub async fn clipboard_text(&self) -> Result<String, String> {
        self.client
            .issue_cmd(GrantPermission("clipboard-read"))
            .await
            .map_err(ctx("grant clipboard-read"))?;
        let script = "const done = arguments[arguments.length - 1];
            navigator.clipboard.readText().then(done, e => done({ error: e.name + ': ' + e.message }));";
        match self
            .client
            .execute_async(script, vec![])
            .await
            .map_err(ctx("read clipboard"))?
        {
            Value::String(s) => Ok(s),
            other => Err(format!("clipboard read failed: {other}")),
        }
    }

    async fn find(&self, selector: &str) -> Result<fantoccini::elements::Element, String> {
        self.client
            .find(Locator::Css(selector))
            .await
            .map_err(ctx(format!("find `{selector}`")))
    }
}

/// chromedriver's W3C "Set Permission" endpoint, for the current page's origin.
#[derive(Debug)]
struct GrantPermission(&'static str);

impl fantoccini::wd::WebDriverCompatibleCommand for GrantPermission {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/permissions",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "descriptor": { "name": self.0 }, "state": "granted" });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// An XPath string literal for any text (XPath 1.0 has no escapes).
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

fn ctx<E: Display>(what: impl Display) -> impl FnOnce(E) -> String {
    move |e| format!("browser: {what}: {e}")
}

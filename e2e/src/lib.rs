//! Harness for the browser tests: a private chromedriver driving headless Chromium, pointed at
//! the portal that Trunk built into `web/dist` and a real server serves.
//!
//! Every [`Browser`] has its own chromedriver on a free port and its own Chromium profile, so
//! tests run in parallel without sharing cookies or `localStorage`. Helpers panic with a message
//! that says what was expected and what the page showed instead: a panic is a test failure here.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long a page gets to reach an expected state: loading the wasm bundle and a GraphQL round
/// trip take well under a second, but a 2-core CI machine running tests in parallel is slow.
pub const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
const DRIVER_START: Duration = Duration::from_secs(15);

/// The repository root (see `neruba::testing::workspace_root`: found at run time, so a test
/// binary reused from another checkout's build still looks at this checkout).
pub fn workspace_root() -> PathBuf {
    neruba::testing::workspace_root()
}

/// The built portal. The server serves it from here, so a missing build is the first thing to
/// report, before any browser starts.
pub fn portal_dist() -> PathBuf {
    let root = workspace_root();
    let dist = root.join("web/dist");
    let index = dist.join("index.html");
    let Some(built_at) = modified(&index) else {
        panic!(
            "the portal is not built: {} is missing.\n\
             Run `trunk build --release --offline` in {} first.",
            index.display(),
            root.display()
        );
    };
    if let Some(newer) = newest_file(&root.join("web")).filter(|(at, _)| *at > built_at) {
        eprintln!(
            "warning: {} changed after the portal was built; the tests run the old build \
             (rerun `trunk build --release --offline`)",
            newer.1.display()
        );
    }
    dist
}

/// Where screenshots go: `$NERUBA_E2E_ARTIFACTS`, or `target/e2e-artifacts` in the repository
/// (git-ignored; docs/portal.md links a copy committed under docs/portal/).
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("NERUBA_E2E_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/e2e-artifacts"))
}

/// CSS selector for the element a test addresses by `data-testid`.
pub fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// One headless Chromium session behind its own chromedriver.
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl Browser {
    pub async fn launch() -> Browser {
        portal_dist();
        let driver = Driver::start();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium_binary(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    format!("--user-data-dir={}", driver.profile_dir().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Chromium did not start through chromedriver: {e}\n{}",
                    driver.log_tail()
                )
            });
        client.set_window_size(1280, 800).await.expect("set window size");
        Browser { client, driver }
    }

    /// The underlying WebDriver client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn reload(&self) {
        self.client.refresh().await.expect("reload the page");
    }

    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("read the current URL")
            .to_string()
    }

    /// Waits for the element and types `text` into it.
    pub async fn type_into(&self, id: &str, text: &str) {
        let field = self.wait_for(id).await;
        field.clear().await.unwrap_or_else(|e| panic!("clear {id}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {id}: {e}"));
    }

    /// Waits for the element and clicks it.
    pub async fn click(&self, id: &str) {
        let target = self.wait_for(id).await;
        target.click().await.unwrap_or_else(|e| panic!("click {id}: {e}"));
    }

    /// The element's text if it is on the page now.
    pub async fn text_of(&self, id: &str) -> Option<String> {
        let element = self.find_now(id).await?;
        element.text().await.ok()
    }

    pub async fn is_present(&self, id: &str) -> bool {
        self.find_now(id).await.is_some()
    }

    /// Waits up to [`WAIT`] for the element to appear.
    pub async fn wait_for(&self, id: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.find_now(id).await {
                return element;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no element {} appeared within {WAIT:?}", testid(id)))
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits up to [`WAIT`] until the element's text satisfies `expected` (described by `what`
    /// in the failure message) and returns that text.
    pub async fn wait_for_text(&self, id: &str, what: &str, expected: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            if let Some(text) = self.text_of(id).await {
                if expected(&text) {
                    return text;
                }
                last = Some(text);
            }
            if Instant::now() > deadline {
                let seen = last.map_or_else(|| "it never appeared".to_owned(), |t| format!("last text {t:?}"));
                self.fail(&format!("{} did not show {what} within {WAIT:?}: {seen}", testid(id)))
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Everything the page keeps in `localStorage` and `sessionStorage`, as one text: for
    /// asserting that a secret is in neither.
    pub async fn storage_dump(&self) -> String {
        let value = self
            .client
            .execute(
                "return JSON.stringify([Object.assign({}, window.localStorage), Object.assign({}, window.sessionStorage)]);",
                vec![],
            )
            .await
            .expect("read web storage");
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("run {script:?}: {e}"))
    }

    /// Waits up to [`WAIT`] for the first element matching a CSS selector (for pages that are
    /// not the portal's, such as the sandbox checkout) and clicks it.
    pub async fn click_css(&self, selector: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(selector)).await {
                element
                    .click()
                    .await
                    .unwrap_or_else(|e| panic!("click {selector}: {e}"));
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no element {selector} appeared within {WAIT:?}"))
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits up to [`WAIT`] until the address satisfies `expected` (described by `what`).
    pub async fn wait_for_url(&self, what: &str, expected: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.current_url().await;
            if expected(&url) {
                return url;
            }
            if Instant::now() > deadline {
                self.fail(&format!("the address did not become {what} within {WAIT:?}"))
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves the whole page at desktop (1280×800) and phone (375×812, a touch device) size as
    /// `<name>-desktop.png` and `<name>-phone.png` in [`artifacts_dir`]. The sizes are set with
    /// Chrome's device emulation, since a headless window cannot be narrower than 500 pixels;
    /// the page is not reloaded.
    pub async fn screenshots(&self, name: &str) {
        for (suffix, width, height, mobile) in [("desktop", 1280, 800, false), ("phone", 375, 812, true)] {
            self.emulate(width, height, mobile).await;
            // Let the layout settle, then grow the viewport to the whole page for the shot.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let page = self
                .js("return document.documentElement.scrollHeight;")
                .await
                .as_u64()
                .unwrap_or(u64::from(height));
            let full = u32::try_from(page).unwrap_or(height).clamp(height, 4000);
            if full > height {
                self.emulate(width, full, mobile).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            let dir = artifacts_dir();
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            self.screenshot(&dir.join(format!("{name}-{suffix}.png"))).await;
        }
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({})).await;
    }

    async fn emulate(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await;
    }

    /// Runs a Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("take a screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Saves a screenshot of the viewport as `<name>.png` into [`artifacts_dir`].
    pub async fn save_artifact(&self, name: &str) -> Option<PathBuf> {
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.ok()?;
        std::fs::write(&path, png).ok()?;
        Some(path)
    }

    /// Ends the session so Chromium shuts down cleanly; dropping a `Browser` kills it instead.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    async fn find_now(&self, id: &str) -> Option<Element> {
        self.client
            .find_all(Locator::Css(&testid(id)))
            .await
            .ok()?
            .into_iter()
            .next()
    }

    async fn fail(&self, problem: &str) -> ! {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let page = self
            .client
            .execute("return document.body ? document.body.innerText : '';", vec![])
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let shot = self
            .save_artifact("failure")
            .await
            .map(|p| format!("\nscreenshot: {}", p.display()))
            .unwrap_or_default();
        let log = self.driver.scratch.join("chromedriver.log");
        panic!(
            "{problem}\nat {url}\npage text:\n{page}{shot}\nchromedriver log: {}",
            log.display()
        );
    }
}

/// chromedriver's `POST /session/{id}/goog/cdp/execute`: one Chrome DevTools Protocol command.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A chromedriver child process in its own process group, with a scratch directory holding the
/// Chromium profile and the driver's log. Dropping it kills the whole group (driver and any
/// Chromium it started) and removes the directory, unless the test is failing: then the log stays.
struct Driver {
    child: Child,
    port: u16,
    scratch: PathBuf,
}

impl Driver {
    fn start() -> Driver {
        let scratch = scratch_dir();
        std::fs::create_dir_all(scratch.join("profile"))
            .unwrap_or_else(|e| panic!("create {}: {e}", scratch.display()));
        let port = free_port();
        let binary = chromedriver_binary();
        let mut command = Command::new(&binary);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", scratch.join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "could not start chromedriver ({}): {e}\n\
                 Install it (Debian: `apt-get install chromium chromium-driver`) or set CHROMEDRIVER.",
                binary.display()
            )
        });
        let mut driver = Driver { child, port, scratch };
        driver.wait_until_listening();
        driver
    }

    fn wait_until_listening(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if TcpStream::connect_timeout(&addr, POLL).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromedriver exited during start-up ({status})\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                panic!(
                    "chromedriver did not listen on {addr} within {DRIVER_START:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn profile_dir(&self) -> PathBuf {
        self.scratch.join("profile")
    }

    /// The end of chromedriver's log, which is where Chromium's start-up failures are explained.
    fn log_tail(&self) -> String {
        let path = self.scratch.join("chromedriver.log");
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("chromedriver log ({}), last lines:\n{tail}", path.display())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group we created for the
            // driver; it touches no memory of ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "kept browser scratch directory for inspection: {}",
                self.scratch.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

fn chromedriver_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromedriver"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

fn chromium_binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// A port that was free a moment ago. chromedriver binds it right after; a collision would show
/// up as a start-up failure with the driver's log, not as a silent hang.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("ephemeral port address").port()
}

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "neruba-e2e-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The most recently modified file under `dir`, skipping build output (`dist/`).
fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().is_none_or(|name| name != "dist"))
        .filter_map(|path| {
            if path.is_dir() {
                newest_file(&path)
            } else {
                modified(&path).map(|at| (at, path))
            }
        })
        .max_by_key(|(at, _)| *at)
}

//! WebDriver helpers shared by the browser tests (`browser.rs`, `browser_seller.rs`,
//! `browser_seller_money.rs`): start `cascade demo` and `chromedriver`, open a headless
//! Chromium session (driven with `fantoccini`), sign in and out, find / click / type,
//! screenshots into `artifacts/screenshots/` at the workspace root.
//!
//! Each test binary uses only some of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll until `GET path` answers 200 (the process is up), or give up after `limit`.
pub fn wait_http(port: u16, path: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            // Read only the status line: some servers keep the connection open.
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/1.1 200" {
                return;
            }
        }
        assert!(
            start.elapsed() < limit,
            "nothing answered on port {port} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `artifacts/screenshots/` at the workspace root (created).
pub fn screenshots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../artifacts/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Save a screenshot of the page as `artifacts/screenshots/{name}.png`.
pub async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Install Debian's `chromium` and `chromium-driver` with apt-get when `chromedriver` is
/// missing; fails if that is not possible.
pub fn ensure_chromedriver() {
    if Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok()
    {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "chromedriver is missing and apt-get could not install it"
    );
}

/// `chromedriver` on a free port; returns the process and the port.
pub fn start_chromedriver() -> (Kill, u16) {
    let port = free_port();
    let driver = Kill(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run scripts/test, or apt-get install chromium chromium-driver"),
    );
    (driver, port)
}

/// `cascade demo` on a fresh data directory, on a port it picks; returns the process and
/// `host:port` (read from the address it prints).
pub fn start_demo(data: &Path) -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("CASCADE_DATABASE_URL")
        .env_remove("CASCADE_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("API:") {
                let _ = tx.send(
                    rest.trim()
                        .strip_prefix("http://")
                        .and_then(|s| s.split('/').next())
                        .map(str::to_string),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(180))
        .ok()
        .flatten()
        .expect("the demo prints its address");
    (Kill(child), addr)
}

/// The Chromium arguments of the seller tests: headless, 1280×1000.
pub fn seller_chrome_args() -> serde_json::Value {
    serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]})
}

/// A WebDriver session on the chromedriver at `port` with these `goog:chromeOptions`,
/// retried while chromedriver starts (up to ~20 s).
pub async fn session(port: u16, chrome_options: serde_json::Value) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome_options);
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return c,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await
            }
        }
    }
    panic!("a WebDriver session: {last:?}");
}

/// Sign in on `/login` with the demo password and wait for the signed-in header.
pub async fn login(c: &Client, base: &str, login: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=login]"))
        .await
        .unwrap()
        .send_keys(login)
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("cascade-demo")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("form[action='/logout']"))
        .await
        .unwrap();
}

/// Sign out with the header's button and wait for the login form.
pub async fn logout(c: &Client) {
    c.find(Locator::Css("header form[action='/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=login]"))
        .await
        .unwrap();
}

/// Click the element matching `css`.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"))
        .click()
        .await
        .unwrap();
}

/// Replace the value of the input matching `css`.
pub async fn fill(c: &Client, css: &str, value: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"));
    e.clear().await.ok();
    e.send_keys(value).await.unwrap();
}

/// The visible text of the element matching `css`.
pub async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"))
        .text()
        .await
        .unwrap()
}

/// The visible text of the page.
pub async fn body_text(c: &Client) -> String {
    text_of(c, "body").await
}

/// What the seller tests run against: `cascade demo` on a fresh data directory and a
/// `chromedriver` (installed when missing), both stopped when this is dropped.
pub struct SellerDemo {
    /// `http://host:port` of the demo.
    pub base: String,
    /// chromedriver's port.
    pub port: u16,
    _demo: Kill,
    _driver: Kill,
    _dir: tempfile::TempDir,
}

impl SellerDemo {
    pub fn start() -> Self {
        ensure_chromedriver();
        let dir = tempfile::tempdir().unwrap();
        let (demo, addr) = start_demo(&dir.path().join("demo"));
        let (driver, port) = start_chromedriver();
        SellerDemo {
            base: format!("http://{addr}"),
            port,
            _demo: demo,
            _driver: driver,
            _dir: dir,
        }
    }

    /// A headless Chromium session (1280×1000) on this demo's chromedriver.
    pub async fn session(&self) -> Client {
        session(self.port, seller_chrome_args()).await
    }
}

//! Seller panel accounts and money in headless Chromium against `cascade demo`:
//! Northwind sees revenue and open invoices on its dashboard, records a bank transfer for
//! Contoso (a bad amount is refused visibly), creates a user with a role for Contoso,
//! hides the balance screen from its customers, and Contoso's billing page then has no
//! balance or top-up. Screenshots go to `artifacts/screenshots/`. The WebDriver helpers
//! are those of `browser_seller.rs` (copied: test files share no module today).

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../artifacts/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ensure_chromedriver() {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cascade demo` on a fresh data directory; returns the process and `host:port`.
fn start_demo(data: &std::path::Path) -> (Kill, String) {
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

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn login(c: &Client, base: &str, login: &str) {
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

async fn logout(c: &Client) {
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

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// From the accounts page, follow a link of Contoso's row.
async fn contoso_link(c: &Client, base: &str, href_end: &str) {
    c.goto(&format!("{base}/seller/accounts")).await.unwrap();
    c.find(Locator::XPath(&format!(
        "//tr[td[contains(., 'Contoso')]]//a[substring(@href, string-length(@href) - {}) = '{href_end}']",
        href_end.len() - 1
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
}

#[test]
fn reseller_sees_its_money_records_a_payment_manages_users_and_hides_a_billing_screen() {
    ensure_chromedriver();
    let dir = tempfile::tempdir().unwrap();
    let (_demo, addr) = start_demo(&dir.path().join("demo"));
    let base = format!("http://{addr}");
    let port = free_port();
    let _driver = Kill(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]}),
        );
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let c = client.expect("a WebDriver session");

        login(&c, &base, "northwind-admin").await;
        c.goto(&format!("{base}/seller/dashboard")).await.unwrap();
        let revenue = c.find(Locator::Css("#revenue-month")).await.unwrap().text().await.unwrap();
        let open = c.find(Locator::Css("#open-invoices")).await.unwrap().text().await.unwrap();
        shot(&c, "seller-dashboard-money").await;
        assert!(revenue.contains("Revenue this month"), "{revenue}");
        assert!(open.contains("Open invoices"), "{open}");

        // Contoso's invoices and payments: record a bank transfer that stays open.
        contoso_link(&c, &base, "/money").await;
        c.wait().for_element(Locator::Css("form#record-payment")).await.unwrap();
        c.find(Locator::Css("form#record-payment input[name=amount]")).await.unwrap().send_keys("12.34").await.unwrap();
        c.find(Locator::Css("form#record-payment input[name=external_ref]")).await.unwrap().send_keys("BANK-7731").await.unwrap();
        click(&c, "form#record-payment button[type=submit]").await;
        c.wait().for_element(Locator::Css("table#payments")).await.unwrap();
        let payments = c.find(Locator::Css("table#payments")).await.unwrap().text().await.unwrap();
        shot(&c, "seller-invoices-payments").await;
        assert!(payments.contains("BANK-7731") && payments.contains("12.34 EUR") && payments.contains("Bank transfer"), "{payments}");
        // A bad amount: an error page naming the field (the HTTP test checks nothing is written).
        contoso_link(&c, &base, "/money").await;
        c.wait().for_element(Locator::Css("form#record-payment")).await.unwrap();
        c.find(Locator::Css("form#record-payment input[name=amount]")).await.unwrap().send_keys("lots").await.unwrap();
        click(&c, "form#record-payment button[type=submit]").await;
        let err = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
        shot(&c, "seller-payment-refused").await;
        assert!(err.contains("amount"), "{err}");

        // Contoso's users: create a clerk with a role.
        contoso_link(&c, &base, "/users").await;
        c.wait().for_element(Locator::Css("form#create-user")).await.unwrap();
        for (name, value) in [("login", "contoso-clerk"), ("display_name", "Clara Clerk"), ("email", "clara@contoso.example")] {
            c.find(Locator::Css(&format!("form#create-user input[name={name}]"))).await.unwrap().send_keys(value).await.unwrap();
        }
        c.find(Locator::XPath("//form[@id='create-user']//label[contains(., 'Billing staff')]/input")).await.unwrap().click().await.unwrap();
        click(&c, "form#create-user button[type=submit]").await;
        c.wait().for_element(Locator::Css("table#users")).await.unwrap();
        let users = c.find(Locator::Css("table#users")).await.unwrap().text().await.unwrap();
        shot(&c, "seller-users-roles").await;
        assert!(users.contains("contoso-clerk") && users.contains("Clara Clerk") && users.contains("Billing staff"), "{users}");

        // Northwind hides the balance screen from its customers.
        c.goto(&format!("{base}/seller/billing-visibility")).await.unwrap();
        c.wait().for_element(Locator::Css("form#billing-visibility")).await.unwrap();
        click(&c, "form#billing-visibility input[name=s_balance]").await;
        click(&c, "form#billing-visibility button[value=set]").await;
        c.wait().for_element(Locator::Css("button[value=reset]")).await.unwrap();
        let source = c.find(Locator::Css("#visibility-source")).await.unwrap().text().await.unwrap();
        shot(&c, "seller-billing-visibility").await;
        assert!(source.contains("own choice"), "{source}");

        // Contoso's panel: billing without the balance and the top-up.
        logout(&c).await;
        login(&c, &base, "contoso-admin").await;
        c.goto(&format!("{base}/panel/billing")).await.unwrap();
        let page = c.source().await.unwrap();
        shot(&c, "customer-billing-without-balance").await;
        assert!(!page.contains("class=\"balance\"") && !page.contains("/panel/billing/topup"), "{page}");
        assert!(page.contains("class=\"invoices\"") || page.contains("Invoices"), "{page}");
        c.close().await.unwrap();
    });
}

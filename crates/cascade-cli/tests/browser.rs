//! The panels and the store in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against the real `cascade demo` binary on a fresh SQLite database on a
//! free loopback port. One browser session for the whole story (fast, and it is what a
//! person does): sign up in a reseller's store and order a plan with a slider-chosen
//! quantity and a service parameter, pay by top-up, see the subscription's gauge; a
//! forged POST without a CSRF token is refused and changes nothing; another customer's
//! subscription id in the URL is the 404 page; upgrade to another plan with the
//! prorated price shown before confirming; a user without `SHOW_PRICES` sees no price
//! (the upgrade preview included); the Arabic panel is right-to-left (checked on element positions); the phone
//! layout folds the navigation into a menu button.
//!
//! Screenshots go to `artifacts/screenshots/` at the workspace root (git-ignored, kept
//! by CI). Needs `chromium` and `chromedriver` (`scripts/test` installs them); without
//! them the test fails with that message.

mod common;

use common::{
    Kill, body_text, click, fill, free_port, shot, start_chromedriver, text_of, wait_http,
};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `fetch` from the page (same origin, the browser's cookies): status and body.
async fn fetch(
    c: &Client,
    method: &str,
    url: &str,
    body: Option<Value>,
    form: Option<&str>,
) -> (u16, String) {
    let script = r#"
        const [method, url, json, form, done] = arguments;
        const init = { method, credentials: 'same-origin', headers: {} };
        if (json !== null) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(json); }
        if (form !== null) { init.headers['content-type'] = 'application/x-www-form-urlencoded'; init.body = form; }
        fetch(url, init).then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));
    "#;
    let v = c
        .execute_async(
            script,
            vec![
                json!(method),
                json!(url),
                body.unwrap_or(Value::Null),
                form.map(Value::from).unwrap_or(Value::Null),
            ],
        )
        .await
        .expect("fetch");
    (
        v[0].as_u64().unwrap_or(0) as u16,
        v[1].as_str().unwrap_or("").to_string(),
    )
}

/// No amount with a currency anywhere in the text ("12.00 EUR", "EUR 12", "€").
fn assert_no_price(page: &str, text: &str) {
    let words: Vec<&str> = text.split_whitespace().collect();
    for w in words.windows(2) {
        let num = |s: &str| {
            s.chars().any(|c| c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == ',' || c == '-')
        };
        let cur = |s: &str| {
            s.len() == 3
                && s.chars().all(|c| c.is_ascii_uppercase())
                && ["EUR", "USD", "GBP", "CHF", "AED"].contains(&s)
        };
        assert!(
            !(num(w[0]) && cur(w[1].trim_end_matches(['.', ',', ')']))),
            "{page} shows a price: {} {}",
            w[0],
            w[1]
        );
        assert!(
            !(cur(w[0]) && num(w[1])),
            "{page} shows a price: {} {}",
            w[0],
            w[1]
        );
    }
    assert!(
        !text.contains('€') && !text.contains('$'),
        "{page} shows a currency sign"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_story_in_headless_chromium() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Kill(
        Command::new(env!("CARGO_BIN_EXE_cascade"))
            .args(["demo", "--data-dir"])
            .arg(data.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("CASCADE_DATABASE_URL")
            .env_remove("CASCADE_CONFIG")
            .env("RUST_LOG", "warn")
            .env("CASCADE_WORKER__DAILY_BILLING", "false")
            .stdout(Stdio::null())
            .spawn()
            .expect("cascade demo"),
    );
    let (_driver, dport) = start_chromedriver();
    wait_http(dport, "/status", Duration::from_secs(30));
    wait_http(port, "/healthz", Duration::from_secs(180));

    let profile = tempfile::tempdir().unwrap();
    let c = common::session(
        dport,
        json!({"args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US",
            format!("--user-data-dir={}", profile.path().display())]}),
    )
    .await;

    // ---- the store of Northwind (a reseller, account 2) ----
    c.goto(&format!("{base}/store/2")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("article.plan"))
        .await
        .unwrap();
    shot(&c, "01-store-catalog").await;
    let mut office = None;
    for a in c.find_all(Locator::Css("article.plan h3 a")).await.unwrap() {
        if a.text().await.unwrap().contains("Office Suite Business") {
            office = a.attr("href").await.unwrap();
        }
    }
    let office = office.expect("the Office plan is in Northwind's store");
    c.goto(&format!("{base}{office}")).await.unwrap();
    let slider = c
        .wait()
        .for_element(Locator::Css("input[type=range]"))
        .await
        .unwrap();
    let name = slider.attr("name").await.unwrap().unwrap();
    let start: i64 = slider
        .prop("value")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    // Move the slider with the keyboard, as a person would: three steps right.
    c.execute(
        "arguments[0].focus()",
        vec![serde_json::to_value(&slider).unwrap()],
    )
    .await
    .unwrap();
    let right: String = std::iter::repeat_n(char::from(fantoccini::key::Key::Right), 3).collect();
    slider.send_keys(&right).await.unwrap();
    let chosen: i64 = slider
        .prop("value")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(chosen, start + 3, "the slider moved");
    let shown = text_of(&c, "output").await;
    assert_eq!(shown, chosen.to_string(), "the slider shows its value");
    fill(&c, "input[name='s.admin_login']", "jane.admin").await;
    shot(&c, "02-store-plan").await;
    click(&c, "form.order-form button[type=submit]").await;
    c.wait()
        .for_element(Locator::Css("form.checkout"))
        .await
        .unwrap();
    let cart = text_of(&c, ".cart").await;
    assert!(
        cart.contains(&chosen.to_string()) && cart.contains("jane.admin"),
        "{cart}"
    );
    fill(&c, "input[name=name]", "Browser Test GmbH").await;
    fill(&c, "input[name=email]", "jane@browser.example").await;
    fill(&c, "input[name=login]", "jane-browser").await;
    fill(&c, "input[name=password]", "a long enough password").await;
    fill(&c, "input[name=country]", "DE").await;
    shot(&c, "03-store-checkout").await;
    click(&c, "form.checkout button[type=submit]").await;

    // ---- the customer panel: the order waits; pay it by a top-up ----
    let warn = c
        .wait()
        .for_element(Locator::Css(".order-waits"))
        .await
        .unwrap();
    assert!(warn.text().await.unwrap().contains("waits for payment"));
    shot(&c, "04-panel-order-waits").await;
    let (_, me) = fetch(&c, "GET", "/api/v1/me", None, None).await;
    let me: Value = serde_json::from_str(&me).unwrap();
    let account = me["account_id"].as_i64().unwrap();
    fill(&c, ".order-waits input[name=card]", "4242424242424242").await;
    click(&c, ".order-waits form.topup button[type=submit]").await;
    c.wait()
        .for_element(Locator::Css(".notice.ok"))
        .await
        .unwrap();
    assert!(
        c.find(Locator::Css(".order-waits")).await.is_err(),
        "paid: no more warning"
    );
    let sub_link = c
        .find(Locator::Css("table.subscriptions a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    c.goto(&format!("{base}{sub_link}")).await.unwrap();
    let rate = name.trim_start_matches("q.");
    let meter = c
        .wait()
        .for_element(Locator::Css(&format!(".gauge[data-rate='{rate}'] meter")))
        .await
        .unwrap();
    assert_eq!(
        meter.attr("max").await.unwrap().as_deref(),
        Some(chosen.to_string().as_str()),
        "the gauge's limit is the chosen quantity"
    );
    shot(&c, "05-panel-subscription-gauge").await;

    // ---- upgrade: the same seller's Premium plan, priced before confirming ----
    // Only an active subscription switches: wait for the worker to provision it.
    let mut found = None;
    for _ in 0..60 {
        if let Ok(a) = c.find(Locator::Css(".switch-plans a")).await {
            found = a.attr("href").await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.unwrap();
    }
    let switch_link = found.expect("a plan to switch to once the subscription is active");
    c.goto(&format!("{base}{switch_link}")).await.unwrap();
    let price = c
        .wait()
        .for_element(Locator::Css(".switch-preview .price.prorated"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(price.contains("EUR"), "the prorated upgrade price: {price}");
    assert!(body_text(&c).await.contains("Office Suite Premium"));
    shot(&c, "05b-panel-switch-preview").await;
    click(&c, ".switch-preview form button.primary").await;
    let done = c
        .wait()
        .for_element(Locator::Css(".notice.ok"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(done.contains("plan change was ordered"), "{done}");
    let (_, orders) = fetch(
        &c,
        "GET",
        &format!("/api/v1/accounts/{account}/orders"),
        None,
        None,
    )
    .await;
    assert!(orders.contains("\"type\":\"CH\""), "a CH order: {orders}");

    // ---- a forged POST without a CSRF token: refused, nothing changes ----
    c.goto(&format!("{base}/panel/billing")).await.unwrap();
    let before = c
        .find_all(Locator::Css("table.payments tbody tr"))
        .await
        .unwrap()
        .len();
    let (status, page) = fetch(
        &c,
        "POST",
        "/panel/billing/topup",
        None,
        Some("amount=5&card=4242424242424242"),
    )
    .await;
    assert_eq!(status, 403, "{page}");
    let (status, _) = fetch(
        &c,
        "POST",
        "/panel/billing/topup",
        None,
        Some("amount=5&card=4242424242424242&_csrf=00ff"),
    )
    .await;
    assert_eq!(status, 403);
    c.refresh().await.unwrap();
    let after = c
        .find_all(Locator::Css("table.payments tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(before, after, "no payment was recorded");
    assert!(before >= 1, "the top-up is listed");

    // ---- another customer's subscription by URL: the 404 page ----
    let mine: i64 = sub_link.rsplit('/').next().unwrap().parse().unwrap();
    c.goto(&format!("{base}/panel/subscriptions/1"))
        .await
        .unwrap();
    assert_ne!(mine, 1);
    let text = body_text(&c).await;
    assert!(text.contains("Page not found"), "{text}");
    shot(&c, "06-panel-404").await;

    // ---- a user without SHOW_PRICES sees no price ----
    let (s, role) = fetch(
        &c,
        "POST",
        &format!("/api/v1/accounts/{account}/roles"),
        Some(json!({"name": "No prices", "grants": [{"privilege": "BILLING_VIEW"}, {"privilege": "BILLING_MANAGE"}]})),
        None,
    )
    .await;
    assert_eq!(s, 201, "{role}");
    let role: Value = serde_json::from_str(&role).unwrap();
    let (s, u) = fetch(&c, "POST", &format!("/api/v1/accounts/{account}/users"), Some(json!({"login": "noprice-user", "display_name": "No Price", "email": "np@browser.example", "password": "another long password", "role_ids": [role["id"]]})), None).await;
    assert_eq!(s, 201, "{u}");
    click(&c, "form[action='/logout'] button").await;
    c.wait()
        .for_element(Locator::Css("input[name=login]"))
        .await
        .unwrap();
    fill(&c, "input[name=login]", "noprice-user").await;
    fill(&c, "input[name=password]", "another long password").await;
    click(&c, "form.card button[type=submit]").await;
    c.wait()
        .for_element(Locator::Css("nav.side-nav"))
        .await
        .unwrap();
    for path in [
        "/panel",
        "/panel/billing",
        "/panel/marketplace",
        &sub_link,
        &switch_link,
        &office.replace("/store/2/", "/panel/marketplace/"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        c.wait().for_element(Locator::Css("main h1")).await.unwrap();
        let text = body_text(&c).await;
        assert!(!text.contains("Page not found"), "{path}: {text}");
        assert_no_price(path, &text);
    }
    shot(&c, "07-panel-no-prices").await;

    // ---- Arabic: right to left, the navigation on the right ----
    c.goto(&format!("{base}/lang/ar?next=%2Fpanel"))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("html[dir=rtl]"))
        .await
        .unwrap();
    let html = c.find(Locator::Css("html")).await.unwrap();
    assert_eq!(html.attr("lang").await.unwrap().as_deref(), Some("ar"));
    let (nx, _, nw, _) = c
        .find(Locator::Css("nav.side-nav"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap();
    let (mx, _, mw, _) = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap();
    assert!(
        nx > mx,
        "the navigation is right of the content: nav {nx}+{nw}, main {mx}+{mw}"
    );
    assert!(body_text(&c).await.contains("الرئيسية"));
    shot(&c, "08-panel-arabic-rtl").await;
    // The subscription and the switch preview in Arabic: statuses translated.
    c.goto(&format!("{base}{sub_link}")).await.unwrap();
    c.wait().for_element(Locator::Css("main h1")).await.unwrap();
    let text = body_text(&c).await;
    assert!(text.contains("نشط") && !text.contains("active"), "{text}");
    shot(&c, "08b-panel-arabic-subscription").await;
    c.goto(&format!("{base}{switch_link}")).await.unwrap();
    c.wait()
        .for_element(Locator::Css(".switch-preview"))
        .await
        .unwrap();
    shot(&c, "08c-panel-arabic-switch").await;

    // ---- phone width: the navigation folds into a menu button that opens ----
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/lang/en?next=%2Fpanel"))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("details.menu-button"))
        .await
        .unwrap();
    assert!(
        !c.find(Locator::Css("nav.side-nav"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    click(&c, "details.menu-button summary").await;
    assert!(
        c.find(Locator::Css("nav.mobile-nav a[href='/panel/billing']"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    shot(&c, "09-panel-phone-menu").await;
    // Close the menu, open the help menu.
    click(&c, "details.menu-button summary").await;
    click(&c, "details.help summary").await;
    assert!(
        c.find(Locator::Css("details.help a[href^='mailto:']"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "the help menu opens on a phone"
    );
    shot(&c, "10-panel-phone-help").await;
    // The subscription page and the switch preview on a phone.
    c.goto(&format!("{base}{sub_link}")).await.unwrap();
    c.wait().for_element(Locator::Css("main h1")).await.unwrap();
    shot(&c, "11-panel-phone-subscription").await;
    c.goto(&format!("{base}{switch_link}")).await.unwrap();
    c.wait()
        .for_element(Locator::Css(".switch-preview"))
        .await
        .unwrap();
    shot(&c, "12-panel-phone-switch").await;

    c.close().await.unwrap();
}

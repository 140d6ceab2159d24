//! The customer panel in-process, on both backends: upgrading and downgrading a
//! subscription to another plan of the same seller (eligible plans only, the prorated
//! price shown before confirming, a CH order through the API's own path, a downgrade
//! deferred to the next billing date, no price without `SHOW_PRICES`), boolean resources
//! shown on/off from their type's kind, buttons only where privileges allow, statuses
//! translated in Arabic, other customers' objects unreachable by editing URLs, and the
//! store's sign-up being the API's all-or-nothing checkout.

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::clock::{Clock, Timestamp};
use cascade_domain::ids::AccountId;
use cascade_store::documents::{DocKind, Documents, NewDocument, NewLine};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::{Registry, Worker, WorkerConfig};
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;

struct Fx {
    app: TestApp,
    ch: Channel,
    rt_seats: i64,
    rt_backup: i64,
    template: i64,
}

async fn sql(db: &Db, q: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(q).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    id
}

fn at(y: i32, m: u32, d: u32, hour: u32) -> Timestamp {
    let t = chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc();
    Timestamp(t.timestamp_micros())
}

fn money(units: i64) -> i64 {
    units * 1_000_000
}

async fn fixture(db: Db) -> Fx {
    let app = TestApp::new(db.clone());
    app.clock.set(at(2024, 3, 1, 9));
    let ch = Channel::build(&app).await;
    let p = ch.p.account;
    let rt = |code: &str, name: &str| {
        format!(
            "{{\"code\": \"{code}\", \"service\": \"office\", \"unit\": \"unit\", \"name\": {{\"default\": \"en\", \"values\": {{\"en\": \"{name}\"}}}}}}"
        )
    };
    let seats: Value = serde_json::from_str(&rt("seats", "Seats")).unwrap();
    let rt_seats = app
        .post(
            format!("/api/v1/accounts/{p}/resource-types"),
            ch.p.cred(),
            seats,
        )
        .await
        .expect(StatusCode::CREATED)
        .id();
    let mut backup: Value = serde_json::from_str(&rt("backup", "Daily backup")).unwrap();
    backup["kind"] = json!("boolean");
    let r = app
        .post(
            format!("/api/v1/accounts/{p}/resource-types"),
            ch.p.cred(),
            backup,
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(r.json["kind"], "boolean");
    let rt_backup = r.id();
    let template = sql(&db, &format!("INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({p}, 'Office', '[]', '{{}}', 0, 0) RETURNING id")).await;
    Fx {
        app,
        ch,
        rt_seats,
        rt_backup,
        template,
    }
}

fn period(uid: &str, recurring: i64) -> Value {
    json!({"uid": uid, "duration": 1, "unit": "month", "active": true, "setup": {"amount": 0}, "recurring": {"amount": money(recurring)},
        "renewal": {"amount": money(recurring)}, "transfer": {"amount": 0}, "cancellation": {"amount": 0},
        "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1})
}

/// A monthly plan: `fee` a month plus 2.00 a seat above the first, and a backup feature
/// (on when `backup`).
fn plan(fx: &Fx, name: &str, fee: i64, backup: bool) -> Value {
    let b = i64::from(backup);
    json!({
        "name": {"default": "en", "values": {"en": name}},
        "published": true, "visible": true, "listing_priority": fee as i32,
        "unique_group": "office",
        "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"},
        "recurring_basis": "billing_period",
        "periods": [period("m1", fee)],
        "rates": [
            {"uid": format!("seats-{name}"), "resource_type_id": fx.rt_seats, "included": 1, "min": 1, "max": 50, "setup_fee": 0, "recurring_fee": money(2),
             "overuse_fee": 0, "per_unit": true, "measurable": false, "show_in_store": true, "show_in_panel": true, "display": {"type": "spinner"}},
            {"uid": "backup", "resource_type_id": fx.rt_backup, "included": b, "min": b, "max": b, "setup_fee": 0, "recurring_fee": 0,
             "overuse_fee": 0, "per_unit": false, "measurable": false, "show_in_store": true, "show_in_panel": true, "display": {"type": "spinner"}},
        ],
    })
}

impl Fx {
    async fn create_plan(&self, content: Value, template: i64) -> i64 {
        self.app
            .post(
                format!("/api/v1/accounts/{}/plans", self.ch.p.account),
                self.ch.p.cred(),
                json!({"template_id": template, "content": content}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }

    /// A top-up of `minor` for `account` (a standalone payment, open until applied).
    async fn top_up(&self, account: i64, minor: i64) {
        let now = self.app.clock.now();
        let mut tx = self.app.db.begin().await.unwrap();
        let head = NewDocument {
            kind: DocKind::Payment,
            issuer: AccountId(self.ch.p.account),
            account: AccountId(account),
            currency: "EUR",
            issue_date: "2024-03-01",
            due_date: None,
            charge_date: None,
            tax_bp: 0,
            method: Some("bank_transfer"),
            external_ref: None,
            idem_key: None,
        };
        let line = NewLine {
            subscription_id: None,
            kind: "payment".into(),
            description: "Top-up".into(),
            quantity: 1,
            unit_price_micro: minor * 10_000,
            amount_minor: minor,
            period_start: None,
            period_end: None,
            charge_key: None,
        };
        Documents::issue(&mut tx, &head, &[line], now)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
    }

    async fn work(&self) {
        let w = Worker::new(
            self.app.db.clone(),
            self.app.clock.clone() as Arc<dyn Clock>,
            Registry::with_builtin(),
            WorkerConfig::default(),
        );
        for _ in 0..20 {
            if w.run_once().await.unwrap().is_idle() {
                break;
            }
        }
    }

    async fn sub(&self, id: i64) -> Value {
        self.app
            .get(format!("/api/v1/subscriptions/{id}"), self.ch.p.cred())
            .await
            .expect(StatusCode::OK)
            .json
    }

    /// PC buys `plan` with `seats` seats, paid from a top-up and provisioned: the subscription.
    async fn buy(&self, plan: i64, seats_uid: &str, seats: i64) -> i64 {
        self.top_up(self.ch.pc.account, 10_000).await;
        let o = self
            .app
            .post(
                format!("/api/v1/accounts/{}/orders", self.ch.pc.account),
                self.ch.pc.cred(),
                json!({"plan_id": plan, "period_uid": "m1", "quantities": {seats_uid: seats}}),
            )
            .await
            .expect(StatusCode::CREATED)
            .json;
        assert_eq!(o["status"], "paid", "{o}");
        self.work().await;
        let sub = o["subscription_id"].as_i64().unwrap();
        assert_eq!(self.sub(sub).await["status"], "active");
        sub
    }

    /// A panel session of a new user of PC with the given roles.
    async fn panel_user(&self, login: &str, roles: &[i64]) -> Cred {
        self.app
            .store_user(self.ch.pc.account, login, true, roles)
            .await;
        self.app.session(login, PASSWORD).await
    }
}

/// The CSRF token in a page's first form.
fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[i..i + 64].to_string()
}

async fn post_form(app: &TestApp, path: &str, cred: &Cred, form: &str) -> Resp {
    app.req(Method::POST, path)
        .cred(cred.clone())
        .raw(form.to_string(), Some("application/x-www-form-urlencoded"))
        .send()
        .await
}

both_backends! {
    async fn plan_switch_shows_eligible_plans_prices_then_orders_a_ch(db) {
        let fx = fixture(db).await;
        let (app, ch) = (&fx.app, &fx.ch);
        let basic = fx.create_plan(plan(&fx, "Basic", 10, false), fx.template).await;
        let pro = fx.create_plan(plan(&fx, "Pro", 31, true), fx.template).await;
        // Not eligible: another service, another unique group, not published.
        let other_template = sql(&app.db, &format!("INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({}, 'Other', '[]', '{{}}', 0, 0) RETURNING id", ch.p.account)).await;
        let other_service = fx.create_plan(plan(&fx, "Elsewhere", 20, false), other_template).await;
        let mut g = plan(&fx, "Grouped", 20, false);
        g["unique_group"] = json!("other");
        let other_group = fx.create_plan(g, fx.template).await;
        let mut h = plan(&fx, "Hidden", 20, false);
        h["published"] = json!(false);
        let hidden = fx.create_plan(h, fx.template).await;

        let sub = fx.buy(basic, "seats-Basic", 3).await;
        // Ten days on: 21 of March's 31 days are left.
        app.clock.set(at(2024, 3, 11, 9));
        let admin = fx.panel_user("pc-web", &[ch.admin_role]).await;
        let page = app.get(format!("/panel/subscriptions/{sub}"), admin.clone()).await.expect(StatusCode::OK).text;
        assert!(page.contains(&format!("/panel/subscriptions/{sub}/switch/{pro}")), "{page}");
        for p in [other_service, other_group, hidden, basic] {
            assert!(!page.contains(&format!("/switch/{p}\"")), "plan {p} is not a switch target");
        }
        // The upgrade's price before confirming: (35.00 − 14.00) × 21 / 31 = 14.23 (seats kept: 3).
        let preview = app.get(format!("/panel/subscriptions/{sub}/switch/{pro}"), admin.clone()).await.expect(StatusCode::OK).text;
        assert!(preview.contains("14.23"), "{preview}");
        assert!(preview.contains("21") && preview.contains("31"), "{preview}");
        assert!(!preview.contains("class=\"deferrable\""), "an upgrade is not deferred");
        // An ineligible plan by URL: refused, naming the field.
        let r = app.get(format!("/panel/subscriptions/{sub}/switch/{other_service}"), admin.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        app.post(format!("/api/v1/subscriptions/{sub}/change"), ch.pc.cred(), json!({"plan_id": other_group}))
            .await
            .expect_field("plan_id", Some("not_switchable"));
        // Nothing was ordered by looking.
        assert_eq!(fx.sub(sub).await["plan_id"], basic);

        // Confirm: a CH order through the API's path, invoiced 14.23 and paid from the balance.
        let r = post_form(app, &format!("/panel/subscriptions/{sub}/switch/{pro}"), &admin, &format!("_csrf={}", csrf_of(&preview))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.header("location"), Some(format!("/panel/subscriptions/{sub}?done=switched").as_str()));
        let orders = app.get(format!("/api/v1/accounts/{}/orders", ch.pc.account), ch.pc.cred()).await.expect(StatusCode::OK).items();
        let chg = orders.iter().find(|o| o["type"] == "CH").expect("a CH order").clone();
        assert_eq!(chg["total_minor"], 1423, "{chg}");
        fx.work().await;
        let s = fx.sub(sub).await;
        assert_eq!(s["plan_id"], pro, "{s}");
        assert_eq!(s["quantities"]["seats-Pro"], 3, "seats are kept: {s}");
        // The backup feature is on in Pro: shown on/off, not as a gauge.
        let page = app.get(format!("/panel/subscriptions/{sub}"), admin.clone()).await.expect(StatusCode::OK).text;
        assert!(page.contains("data-rate=\"backup\" data-on=\"true\""), "{page}");
        assert!(page.contains("class=\"gauge\" data-rate=\"seats-Pro\""), "{page}");
        assert!(!page.contains("class=\"gauge\" data-rate=\"backup\""), "no gauge for a boolean");

        // Downgrade back to Basic: credited now, or deferred to the next billing date (April 1st).
        app.clock.set(at(2024, 3, 21, 9));
        let admin = app.session("pc-web", PASSWORD).await;
        let preview = app.get(format!("/panel/subscriptions/{sub}/switch/{basic}"), admin.clone()).await.expect(StatusCode::OK).text;
        // (14.00 − 35.00) × 11 / 31 = −7.45: a credit.
        assert!(preview.contains("7.45") && preview.contains("class=\"deferrable\""), "{preview}");
        assert!(preview.contains("2024-04-01"), "{preview}");
        // Without SHOW_PRICES: the same choice, no price.
        let role = app.create_role(ch.pc.cred(), ch.pc.account, "No prices", grants(&["BILLING_MANAGE", "BILLING_VIEW", "ACCOUNTS_VIEW"])).await;
        let noprice = fx.panel_user("pc-noprice", &[role]).await;
        let np = app.get(format!("/panel/subscriptions/{sub}/switch/{basic}"), noprice.clone()).await.expect(StatusCode::OK).text;
        assert!(np.contains("class=\"deferrable\"") && !np.contains("7.45") && !np.contains("EUR") && !np.contains("class=\"price"), "{np}");
        let page = app.get(format!("/panel/subscriptions/{sub}"), noprice.clone()).await.expect(StatusCode::OK).text;
        assert!(page.contains(&format!("/switch/{basic}")) && !page.contains("EUR"), "{page}");
        // Deferred: the order waits for April 1st; the plan stays Pro until then.
        let r = post_form(app, &format!("/panel/subscriptions/{sub}/switch/{basic}"), &admin, &format!("_csrf={}&defer=1", csrf_of(&preview))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        fx.work().await;
        assert_eq!(fx.sub(sub).await["plan_id"], pro);
        let orders = app.get(format!("/api/v1/accounts/{}/orders", ch.pc.account), ch.pc.cred()).await.expect(StatusCode::OK).items();
        let d = orders.iter().filter(|o| o["type"] == "CH").max_by_key(|o| o["id"].as_i64()).unwrap().clone();
        assert_eq!((d["status"].as_str(), d["total_minor"].as_i64()), (Some("paid"), Some(0)), "{d}");
        app.clock.set(at(2024, 4, 1, 1));
        fx.work().await;
        let s = fx.sub(sub).await;
        assert_eq!((s["plan_id"].as_i64(), s["quantities"]["seats-Basic"].as_i64()), (Some(basic), Some(3)), "{s}");
    }

    async fn buttons_follow_privileges_and_statuses_are_translated(db) {
        let fx = fixture(db).await;
        let (app, ch) = (&fx.app, &fx.ch);
        let basic = fx.create_plan(plan(&fx, "Basic", 10, false), fx.template).await;
        fx.create_plan(plan(&fx, "Pro", 31, true), fx.template).await;
        let sub = fx.buy(basic, "seats-Basic", 2).await;
        let admin = fx.panel_user("pc-web", &[ch.admin_role]).await;
        let page = app.get(format!("/panel/subscriptions/{sub}"), admin.clone()).await.expect(StatusCode::OK).text;
        assert!(page.contains("/cancel\"") && page.contains("/auto-renew\""), "{page}");
        assert!(page.contains("data-rate=\"backup\" data-on=\"false\""), "backup is off in Basic: {page}");
        // A viewer: no cancel, no auto-renew, no switch.
        let role = app.create_role(ch.pc.cred(), ch.pc.account, "Viewer", grants(&["ACCOUNTS_VIEW", "BILLING_VIEW", "SHOW_PRICES"])).await;
        let viewer = fx.panel_user("pc-viewer", &[role]).await;
        let page = app.get(format!("/panel/subscriptions/{sub}"), viewer.clone()).await.expect(StatusCode::OK).text;
        assert!(!page.contains("/cancel\"") && !page.contains("/auto-renew\"") && !page.contains("/switch/"), "{page}");
        // Cancel privilege without the right to manage subscriptions: still no button (the API would refuse).
        let role = app.create_role(ch.pc.cred(), ch.pc.account, "Canceller", grants(&["CANCEL_SUBSCRIPTIONS", "ACCOUNTS_VIEW"])).await;
        let c = fx.panel_user("pc-cancel", &[role]).await;
        let page = app.get(format!("/panel/subscriptions/{sub}"), c.clone()).await.expect(StatusCode::OK).text;
        assert!(!page.contains("/cancel\""), "{page}");

        // Arabic: no English status word on the main pages.
        let Cred::Session(secret) = &admin else { unreachable!() };
        let cookie = format!("cascade_session={secret}; cascade_lang=ar");
        for path in ["/panel".to_string(), "/panel/subscriptions".into(), format!("/panel/subscriptions/{sub}"), "/panel/billing".into(), "/panel/users".into()] {
            let r = app.req(Method::GET, path.clone()).header("cookie", &cookie).send().await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
            let text = visible_text(&r.text);
            for word in ["active", "ordered", "issued", "paid", "waiting", "cancelled", "bank_transfer", "bank transfer", "on expiry", "Status", "Subscription"] {
                assert!(!text.contains(word), "{path}: English `{word}` in: {text}");
            }
        }
        let r = app.req(Method::GET, format!("/panel/subscriptions/{sub}")).header("cookie", &cookie).send().await;
        assert!(r.text.contains("نشط"), "the active badge in Arabic: {}", r.text);
        let r = app.req(Method::GET, "/panel/billing").header("cookie", &cookie).send().await;
        assert!(r.text.contains("صادرة") || r.text.contains("تحويل مصرفي"), "{}", r.text);

        // On hold (the seller holds the account) and then terminated: both shown translated,
        // with the dates.
        let held = app.post(format!("/api/v1/accounts/{}/status", ch.pc.account), ch.p.cred(), json!({"status": "admin_hold"})).await.expect(StatusCode::OK).json;
        assert_eq!(held["subscriptions_suspended"], json!([sub]));
        let fr = format!("cascade_session={secret}; cascade_lang=fr");
        let page = |cookie: String| async move { app.req(Method::GET, format!("/panel/subscriptions/{sub}")).header("cookie", &cookie).send().await.text };
        let ar_page = page(cookie.clone()).await;
        assert!(ar_page.contains("معلّق إداريًا") && ar_page.contains("معلّق منذ 2024-03-01"), "{ar_page}");
        assert!(!visible_text(&ar_page).contains("admin_hold"), "{ar_page}");
        let fr_page = page(fr.clone()).await;
        assert!(fr_page.contains("suspendu (administration)") && fr_page.contains("Suspendu depuis le 2024-03-01"), "{fr_page}");
        let s = app.db.subscriptions().get(sub).await.unwrap();
        let mut tx = app.db.begin().await.unwrap();
        let c = cascade_store::holds::TerminationCandidate {
            subscription_id: sub, account_id: s.account_id, status: s.status, version: s.version, since: String::new(), terms: Default::default(),
        };
        assert!(cascade_store::subscriptions::Subscriptions::terminate(&mut tx, &c, "2024-03-02", app.clock.now()).await.unwrap());
        tx.commit().await.unwrap();
        let ar_page = page(cookie.clone()).await;
        assert!(ar_page.contains("منهى") && ar_page.contains("أُنهي في 2024-03-02") && !ar_page.contains("معلّق منذ"), "{ar_page}");
        let fr_page = page(fr).await;
        assert!(fr_page.contains("résilié") && fr_page.contains("Résilié le 2024-03-02"), "{fr_page}");
        let en_page = app.get(format!("/panel/subscriptions/{sub}"), admin.clone()).await.expect(StatusCode::OK).text;
        assert!(en_page.contains(">terminated<") && en_page.contains("Terminated on 2024-03-02."), "{en_page}");
    }

    async fn another_customers_objects_are_not_found_by_url(db) {
        let fx = fixture(db).await;
        let (app, ch) = (&fx.app, &fx.ch);
        let basic = fx.create_plan(plan(&fx, "Basic", 10, false), fx.template).await;
        let pro = fx.create_plan(plan(&fx, "Pro", 31, true), fx.template).await;
        let sub = fx.buy(basic, "seats-Basic", 2).await;
        let orders = app.get(format!("/api/v1/accounts/{}/orders", ch.pc.account), ch.pc.cred()).await.expect(StatusCode::OK).items();
        let order = orders[0]["id"].as_i64().unwrap();
        let invoice = orders[0]["invoice_id"].as_i64().or_else(|| orders[0]["details"]["invoice_id"].as_i64());
        let pc_user = app.store_user(ch.pc.account, "pc-web", true, &[ch.admin_role]).await;
        // A customer of another reseller, logged in to the panel.
        app.store_user(ch.bc.account, "bc-web", true, &[ch.admin_role]).await;
        let other = app.session("bc-web", PASSWORD).await;
        let home = app.get("/panel", other.clone()).await.expect(StatusCode::OK).text;
        let csrf = csrf_of(&home);
        let mut gets = vec![
            format!("/panel/subscriptions/{sub}"),
            format!("/panel/subscriptions/{sub}/change?q.seats-Basic=3"),
            format!("/panel/subscriptions/{sub}/switch/{pro}"),
            format!("/api/v1/subscriptions/{sub}"),
            format!("/api/v1/orders/{order}"),
            format!("/api/v1/users/{pc_user}"),
        ];
        if let Some(i) = invoice {
            gets.push(format!("/api/v1/documents/{i}"));
            gets.push(format!("/api/v1/documents/{i}/pdf"));
        }
        for path in &gets {
            let r = app.get(path.clone(), other.clone()).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        }
        assert!(invoice.is_some(), "the SO's invoice id is known: {:?}", orders[0]);
        for path in [
            format!("/panel/subscriptions/{sub}/cancel"),
            format!("/panel/subscriptions/{sub}/auto-renew"),
            format!("/panel/subscriptions/{sub}/change"),
            format!("/panel/subscriptions/{sub}/switch/{pro}"),
            format!("/panel/orders/{order}/pay"),
        ] {
            let r = post_form(app, &path, &other, &format!("_csrf={csrf}&mode=off&q.seats-Basic=3")).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        }
        let s = fx.sub(sub).await;
        assert_eq!((s["status"].as_str(), s["plan_id"].as_i64(), s["auto_renew"].clone()), (Some("active"), Some(basic), fx.sub(sub).await["auto_renew"].clone()));
        let n = app.get(format!("/api/v1/accounts/{}/orders", ch.pc.account), ch.pc.cred()).await.expect(StatusCode::OK).items().len();
        assert_eq!(n, 1, "no order was placed for PC");
    }

    async fn store_sign_up_is_the_all_or_nothing_checkout(db) {
        let fx = fixture(db).await;
        let (app, ch) = (&fx.app, &fx.ch);
        let basic = fx.create_plan(plan(&fx, "Basic", 10, false), fx.template).await;
        let p = ch.p.account;
        let cart = app.get(format!("/store/{p}/cart?plan={basic}&period=m1&q.seats-Basic=2"), ANON).await.expect(StatusCode::OK);
        let anon = cart.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("cascade_anon=")).map(|c| c.split(';').next().unwrap().to_string()).expect("anon cookie");
        let cookie = format!("cascade_anon={anon}");
        let csrf = csrf_of(&cart.text);
        let accounts_before = app.count_descendants(p).await;
        let form = |seats: i64, login: &str| format!(
            "_csrf={csrf}&plan={basic}&period=m1&q.seats-Basic={seats}&name=Shop+Test&email=shop%40example.com&login={login}&password=a+long+enough+password&country=DE");
        // An order the API refuses (51 seats, at most 50): nothing is created, not even the account.
        let r = app.req(Method::POST, format!("/store/{p}/checkout")).header("cookie", &cookie)
            .raw(form(51, "shop-user"), Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(app.count_descendants(p).await, accounts_before, "no orphan account");
        app.login("shop-user", "a long enough password").await.expect(StatusCode::UNAUTHORIZED);
        // A good one: the customer, its administrator (logged in) and the order.
        let r = app.req(Method::POST, format!("/store/{p}/checkout")).header("cookie", &cookie)
            .raw(form(2, "shop-user"), Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.header("location"), Some("/panel?done=ordered"));
        let session = r.session_cookie().expect("logged in");
        assert_eq!(app.count_descendants(p).await, accounts_before + 1);
        let me = app.get("/api/v1/me", Cred::Session(session.clone())).await.expect(StatusCode::OK).json;
        let acc = me["account_id"].as_i64().unwrap();
        let orders = app.get(format!("/api/v1/accounts/{acc}/orders"), Cred::Session(session.clone())).await.expect(StatusCode::OK).items();
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0]["status"], "waiting_for_payment", "{:?}", orders[0]);
        let home = app.get("/panel", Cred::Session(session)).await.expect(StatusCode::OK).text;
        assert!(home.contains("order-waits"), "{home}");
        let events: Vec<String> = app.events_of(acc).await.into_iter().map(|e| e.kind).collect();
        assert!(events.contains(&"account.created".to_string()) && events.contains(&"user.created".to_string()), "{events:?}");
    }
}

/// The text of a page outside tags (attribute values such as `data-status` are machine words).
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    // Scripts and styles are not shown either.
    out
}

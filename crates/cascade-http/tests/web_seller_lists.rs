//! The seller panel's seller-wide lists and plan terms, in-process on both backends:
//! invoices a seller issued (filters open / overdue / paid and by customer name, keyset
//! pages, view and PDF links), its customers' orders (the "needs attention" rule moved by
//! the clock, the dashboard's count, retrying a failed order) and subscriptions (status
//! filter, plan names); another reseller's data never shows, a customer gets a 404, a
//! forged POST changes nothing. Plan terms: the provider edits included / min / max units
//! and fees of its own plan (invalid values are refused inline with nothing written, the
//! sync preview then shows the new limits); a reseller's copy keeps its limits locked.

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::billing::lifecycle::{AutoRenew, OrderStatus, OrderType, SubscriptionStatus};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::privilege::BuiltinRole;
use cascade_store::documents::{DocKind, Documents, NewDocument};
use cascade_store::subscriptions::{NewOrder, NewSubscription, Orders, Subscriptions};
use cascade_store::{Db, on_tx};
use common::{Cred, PASSWORD, Resp, TestApp};
use serde_json::{Value, json};

async fn sql(db: &Db, q: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(q).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    id
}

struct Fixture {
    app: TestApp,
    p: i64,
    a: i64,
    b: i64,
    ac: i64,
    ad: i64,
    bc: i64,
    p_tok: Cred,
    a_tok: Cred,
    b_tok: Cred,
    ac_tok: Cred,
    template: i64,
    rt: i64,
}

/// P → A, B (resellers); Alpha Corp and Delta Ltd customers of A, Bravo customer of B.
async fn fixture(db: Db) -> Fixture {
    let app = TestApp::new(db.clone());
    let p = app.store_provider().await;
    let admin = app.builtin_role(BuiltinRole::AccountAdmin).await;
    let pu = app.store_user(p, "p-admin", true, &[admin]).await;
    let p_tok = Cred::Bearer(app.mint_token(pu).await);
    let a = app
        .create_account(&p_tok, p, "reseller", "Reseller A")
        .await;
    let b = app
        .create_account(&p_tok, p, "reseller", "Reseller B")
        .await;
    let ac = app
        .create_account(&p_tok, a, "customer", "Alpha Corp")
        .await;
    let ad = app.create_account(&p_tok, a, "customer", "Delta Ltd").await;
    let bc = app
        .create_account(&p_tok, b, "customer", "Bravo Shop")
        .await;
    let au = app.store_user(a, "a-admin", true, &[admin]).await;
    let bu = app.store_user(b, "b-admin", true, &[admin]).await;
    let acu = app.store_user(ac, "ac-admin", true, &[admin]).await;
    let a_tok = Cred::Bearer(app.mint_token(au).await);
    let b_tok = Cred::Bearer(app.mint_token(bu).await);
    let ac_tok = Cred::Bearer(app.mint_token(acu).await);
    let rt = sql(&db, &format!("INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ({p}, 'seats', 'office', 'seat', '{{\"default\":\"en\",\"values\":{{\"en\":\"Seats\"}}}}', 0, 0) RETURNING id")).await;
    let template = sql(&db, &format!("INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({p}, 'Office', '[]', '{{}}', 0, 0) RETURNING id")).await;
    Fixture {
        app,
        p,
        a,
        b,
        ac,
        ad,
        bc,
        p_tok,
        a_tok,
        b_tok,
        ac_tok,
        template,
        rt,
    }
}

fn fee(units: i64) -> Value {
    json!({"amount": units * 1_000_000})
}

fn content(rt: i64) -> Value {
    let period = json!({"uid": "m1", "duration": 1, "unit": "month", "active": true, "setup": fee(0), "recurring": fee(10), "renewal": fee(10),
        "transfer": fee(0), "cancellation": fee(0), "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1});
    let rate = json!({"uid": "seats", "resource_type_id": rt, "included": 1, "min": 1, "max": 50, "setup_fee": 0, "recurring_fee": 5_000_000,
        "overuse_fee": 0, "per_unit": true, "measurable": false, "show_in_store": true, "show_in_panel": true, "display": {"type": "spinner"}});
    json!({
        "name": {"default": "en", "values": {"en": "Office Suite", "fr": "Suite bureautique"}},
        "published": true, "visible": true, "listing_priority": 10,
        "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"},
        "recurring_basis": "billing_period",
        "periods": [period],
        "rates": [rate],
    })
}

/// The CSRF token of a page's first form.
fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[i..i + 64].to_string()
}

/// The ids a list page shows, in order (`data-{what}="id"`).
fn ids_on(html: &str, what: &str) -> Vec<i64> {
    let key = format!("data-{what}=\"");
    html.match_indices(&key)
        .map(|(i, _)| {
            html[i + key.len()..]
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

fn api_ids(r: &Resp) -> Vec<i64> {
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect()
}

impl Fixture {
    async fn invoice(&self, issuer: i64, account: i64, due: &str, minor: i64) -> i64 {
        let h = NewDocument {
            kind: DocKind::Invoice,
            issuer: AccountId(issuer),
            account: AccountId(account),
            currency: "EUR",
            issue_date: "2023-11-01",
            due_date: Some(due),
            charge_date: None,
            tax_bp: 0,
            method: None,
            external_ref: None,
            idem_key: None,
        };
        let mut tx = self.app.db.begin().await.unwrap();
        let d = Documents::issue_single(
            &mut tx,
            &h,
            "recurring",
            "Office Suite",
            minor,
            Timestamp(0),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        d.id
    }
    async fn order(&self, account: i64, vendor: i64, status: OrderStatus) -> i64 {
        let mut tx = self.app.db.begin().await.unwrap();
        let o = Orders::create(
            &mut tx,
            &NewOrder {
                account_id: AccountId(account),
                vendor_id: AccountId(vendor),
                subscription_id: None,
                order_type: OrderType::parse("SO").unwrap(),
                status,
                reason: (status == OrderStatus::Failed).then(|| "connector said no".into()),
                currency: "EUR".into(),
                total_minor: 1000,
                details: json!({}),
                placed_by: None,
            },
            self.app.clock_now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        o.id
    }
    async fn subscription(
        &self,
        account: i64,
        vendor: i64,
        plan: i64,
        status: SubscriptionStatus,
    ) -> i64 {
        let mut tx = self.app.db.begin().await.unwrap();
        let s = Subscriptions::create(
            &mut tx,
            &NewSubscription {
                account_id: AccountId(account),
                vendor_id: AccountId(vendor),
                plan_id: plan,
                period_uid: "m1".into(),
                status,
                start_date: "2023-11-01".into(),
                expires_on: "2023-12-01".into(),
                next_bill_date: "2023-12-01".into(),
                auto_renew: AutoRenew::OnExpiry,
                quantities: Default::default(),
                attributes: json!({}),
            },
            self.app.clock_now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        s.id
    }
    async fn plan(&self) -> i64 {
        self.app
            .post(
                format!("/api/v1/accounts/{}/plans", self.p),
                &self.p_tok,
                json!({"template_id": self.template, "content": content(self.rt)}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }
    async fn delegate(&self, plan: i64, reseller: i64) -> i64 {
        self.app
            .post(
                format!("/api/v1/plans/{plan}/copies"),
                &self.p_tok,
                json!({"reseller_id": reseller}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }
    async fn rate(&self, plan: i64) -> Value {
        self.app
            .get(format!("/api/v1/plans/{plan}"), &self.p_tok)
            .await
            .expect(StatusCode::OK)
            .json["content"]["rates"][0]
            .clone()
    }
    async fn form(&self, path: &str, cred: &Cred, body: &str) -> Resp {
        self.app
            .req(Method::POST, path)
            .cred(cred.clone())
            .raw(body.to_string(), Some("application/x-www-form-urlencoded"))
            .send()
            .await
    }
}

cascade_testkit::both_backends! {
    async fn invoices_are_the_sellers_own_filtered_and_paged(db) {
        let f = fixture(db).await;
        // Today is 2023-11-14 on the test clock.
        let open = f.invoice(f.a, f.ac, "2023-12-31", 1000).await;
        let overdue = f.invoice(f.a, f.ad, "2023-11-01", 2000).await;
        let paid = f.invoice(f.a, f.ac, "2023-12-31", 3000).await;
        sql(&f.app.db, &format!("UPDATE documents SET open_minor = 0 WHERE id = {paid} RETURNING id")).await;
        let theirs = f.invoice(f.b, f.bc, "2023-12-31", 4000).await;
        let mine = |q: &str| f.app.get(format!("/api/v1/accounts/{}/issued-invoices{q}", f.a), &f.a_tok);

        let all = mine("").await.expect(StatusCode::OK);
        assert_eq!(api_ids(&all), vec![paid, overdue, open], "newest first, B's invoice not among them");
        assert_eq!(all.json["items"][1]["customer_name"], "Delta Ltd");
        assert_eq!(all.json["items"][1]["status"], "overdue");
        assert_eq!(api_ids(&mine("?status=open").await.expect(StatusCode::OK)), vec![overdue, open]);
        assert_eq!(api_ids(&mine("?status=overdue").await.expect(StatusCode::OK)), vec![overdue]);
        assert_eq!(api_ids(&mine("?status=paid").await.expect(StatusCode::OK)), vec![paid]);
        assert_eq!(api_ids(&mine("?customer=ALPHA").await.expect(StatusCode::OK)), vec![paid, open]);
        assert_eq!(api_ids(&mine("?customer=delta&status=paid").await.expect(StatusCode::OK)), Vec::<i64>::new());
        // A LIKE wildcard is a plain character.
        assert_eq!(api_ids(&mine("?customer=%25").await.expect(StatusCode::OK)), Vec::<i64>::new());
        // Keyset pages.
        let first = mine("?limit=2").await.expect(StatusCode::OK);
        assert_eq!(api_ids(&first), vec![paid, overdue]);
        let cursor = first.json["next_cursor"].as_str().unwrap().to_string();
        let second = mine(&format!("?limit=2&cursor={cursor}")).await.expect(StatusCode::OK);
        assert_eq!(api_ids(&second), vec![open]);
        assert!(second.json["next_cursor"].is_null());
        mine("?status=late").await.expect_field("status", Some("invalid_invoice_status"));

        // The provider reads B's list (below it); B does not read A's; a customer has none.
        let b_list = f.app.get(format!("/api/v1/accounts/{}/issued-invoices", f.b), &f.p_tok).await.expect(StatusCode::OK);
        assert_eq!(api_ids(&b_list), vec![theirs]);
        let r = f.app.get(format!("/api/v1/accounts/{}/issued-invoices", f.a), &f.b_tok).await;
        assert!(r.status == StatusCode::NOT_FOUND || r.status == StatusCode::FORBIDDEN, "{}", r.status);
        f.app.get(format!("/api/v1/accounts/{}/issued-invoices", f.ac), &f.ac_tok).await.expect(StatusCode::NOT_FOUND);

        // The panel page: the same rows, the filters, view and PDF links.
        let s = f.app.session("a-admin", PASSWORD).await;
        let page = f.app.get("/seller/invoices", s.clone()).await.expect(StatusCode::OK);
        assert_eq!(ids_on(&page.text, "document"), vec![paid, overdue, open]);
        assert!(page.text.contains("Alpha Corp") && page.text.contains("Delta Ltd") && !page.text.contains("Bravo"), "{}", page.text);
        assert!(page.text.contains(&format!("href=\"/api/v1/documents/{open}/pdf\"")), "{}", page.text);
        assert!(page.text.contains(&format!("href=\"/seller/documents/{open}\"")), "{}", page.text);
        assert!(page.text.contains("href=\"/seller/invoices\""), "in the navigation");
        let overdue_page = f.app.get("/seller/invoices?status=overdue", s.clone()).await.expect(StatusCode::OK);
        assert_eq!(ids_on(&overdue_page.text, "document"), vec![overdue]);
        assert!(overdue_page.text.contains("<option value=\"overdue\" selected"), "{}", overdue_page.text);
        let named = f.app.get("/seller/invoices?customer=alpha&status=open", s.clone()).await.expect(StatusCode::OK);
        assert_eq!(ids_on(&named.text, "document"), vec![open]);
        let paged = f.app.get("/seller/invoices?status=open", s.clone()).await.expect(StatusCode::OK);
        assert!(!paged.text.contains("id=\"more\""), "one page only");
        // A customer has no seller panel.
        let c = f.app.session("ac-admin", PASSWORD).await;
        f.app.get("/seller/invoices", c.clone()).await.expect(StatusCode::NOT_FOUND);
        f.app.get("/seller/orders", c.clone()).await.expect(StatusCode::NOT_FOUND);
        f.app.get("/seller/subscriptions", c).await.expect(StatusCode::NOT_FOUND);
        // Arabic: right to left, translated.
        let Cred::Session(secret) = &s else { unreachable!() };
        let ar = f.app.req(Method::GET, "/seller/invoices")
            .header("cookie", &format!("cascade_session={secret}; cascade_lang=ar")).send().await;
        assert!(ar.text.contains("dir=\"rtl\"") && ar.text.contains("متأخرة"), "{}", ar.text);
    }

    async fn orders_needing_attention_are_listed_counted_and_retried(db) {
        let f = fixture(db).await;
        let failed = f.order(f.ac, f.a, OrderStatus::Failed).await;
        let waiting = f.order(f.ad, f.a, OrderStatus::WaitingForPayment).await;
        let done = f.order(f.ac, f.a, OrderStatus::Completed).await;
        let theirs = f.order(f.bc, f.b, OrderStatus::Failed).await;
        let mine = |q: &str| f.app.get(format!("/api/v1/accounts/{}/customer-orders{q}", f.a), &f.a_tok);

        assert_eq!(api_ids(&mine("").await.expect(StatusCode::OK)), vec![done, waiting, failed]);
        assert_eq!(api_ids(&mine("?status=completed").await.expect(StatusCode::OK)), vec![done]);
        // Waiting for payment since today: not yet a concern.
        assert_eq!(api_ids(&mine("?status=attention").await.expect(StatusCode::OK)), vec![failed]);
        mine("?status=lost").await.expect_field("status", Some("invalid_order_status"));
        f.app.get(format!("/api/v1/accounts/{}/customer-orders", f.ac), &f.ac_tok).await.expect(StatusCode::NOT_FOUND);

        // Two days on, the unpaid order needs attention too; the dashboard counts both.
        f.app.advance_secs(2 * 86_400);
        let attention = mine("?status=attention").await.expect(StatusCode::OK);
        assert_eq!(api_ids(&attention), vec![waiting, failed]);
        assert_eq!(attention.json["items"][0]["needs_attention"], true);
        let s = f.app.session("a-admin", PASSWORD).await;
        let dash = f.app.get("/seller/dashboard", s.clone()).await.expect(StatusCode::OK);
        let card = &dash.text[dash.text.find("id=\"orders-attention\"").expect("the card")..];
        assert!(card.contains("<p class=\"price\">2</p>") && card.contains("href=\"/seller/orders?status=attention\""), "{card}");

        let page = f.app.get("/seller/orders?status=attention", s.clone()).await.expect(StatusCode::OK);
        assert_eq!(ids_on(&page.text, "order"), vec![waiting, failed]);
        assert!(page.text.contains("connector said no") && !page.text.contains("Bravo"), "{}", page.text);
        assert!(page.text.contains(&format!("action=\"/seller/orders/{failed}/retry\"")), "{}", page.text);
        assert!(!page.text.contains(&format!("action=\"/seller/orders/{waiting}/retry\"")), "only failed orders are retried");
        let token = csrf_of(&page.text);

        // A forged POST (no token) changes nothing.
        let r = f.form(&format!("/seller/orders/{failed}/retry"), &s, "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(f.app.db.orders().get(failed).await.unwrap().status, OrderStatus::Failed);
        // Another reseller's order is not A's to retry.
        let r = f.form(&format!("/seller/orders/{theirs}/retry"), &s, &format!("_csrf={token}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(f.app.db.orders().get(theirs).await.unwrap().status, OrderStatus::Failed);
        // Retried through the API's rule: back to provisioning, a provisioning task queued.
        let r = f.form(&format!("/seller/orders/{failed}/retry"), &s, &format!("_csrf={token}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(f.app.db.orders().get(failed).await.unwrap().status, OrderStatus::Provisioning);
        let after = mine("?status=attention").await.expect(StatusCode::OK);
        assert_eq!(api_ids(&after), vec![waiting]);
        // A completed order cannot be retried: the API's conflict, nothing changes.
        let r = f.form(&format!("/seller/orders/{done}/retry"), &s, &format!("_csrf={token}")).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(f.app.db.orders().get(done).await.unwrap().status, OrderStatus::Completed);
    }

    async fn subscriptions_of_customers_filter_by_status(db) {
        let f = fixture(db).await;
        let plan = f.plan().await;
        let a_copy = f.delegate(plan, f.a).await;
        let b_copy = f.delegate(plan, f.b).await;
        let active = f.subscription(f.ac, f.a, a_copy, SubscriptionStatus::Active).await;
        let cancelled = f.subscription(f.ad, f.a, a_copy, SubscriptionStatus::Cancelled).await;
        f.subscription(f.bc, f.b, b_copy, SubscriptionStatus::Active).await;
        let mine = |q: &str| f.app.get(format!("/api/v1/accounts/{}/customer-subscriptions{q}", f.a), &f.a_tok);
        assert_eq!(api_ids(&mine("").await.expect(StatusCode::OK)), vec![cancelled, active]);
        assert_eq!(api_ids(&mine("?status=active").await.expect(StatusCode::OK)), vec![active]);
        mine("?status=sleeping").await.expect_field("status", Some("invalid_subscription_status"));

        let s = f.app.session("a-admin", PASSWORD).await;
        let page = f.app.get("/seller/subscriptions?status=cancelled", s.clone()).await.expect(StatusCode::OK);
        assert_eq!(ids_on(&page.text, "subscription"), vec![cancelled]);
        assert!(page.text.contains("Office Suite") && page.text.contains("Delta Ltd") && page.text.contains("2023-12-01"), "{}", page.text);
        let all = f.app.get("/seller/subscriptions", s).await.expect(StatusCode::OK);
        assert!(!all.text.contains("Bravo"), "{}", all.text);
    }

    async fn plan_limits_are_edited_with_the_apis_rules(db) {
        let f = fixture(db).await;
        let plan = f.plan().await;
        let a_copy = f.delegate(plan, f.a).await;
        let s = f.app.session("p-admin", PASSWORD).await;
        let page = f.app.get(format!("/seller/plans/{plan}"), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("name=\"rate.seats.included\" value=\"1\""), "{}", page.text);
        assert!(page.text.contains("name=\"period.m1.cancellation\""), "{}", page.text);
        let token = csrf_of(&page.text);
        let path = format!("/seller/plans/{plan}/prices");

        // Forged: refused, nothing written.
        let r = f.form(&path, &s, "rate.seats.included=5").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // Invalid: an inline error on the plan page, nothing written.
        for (body, field) in [
            ("rate.seats.min=10&rate.seats.max=5", "content.rates[0].max"),
            ("rate.seats.included=60", "content.rates[0].included"),
            ("rate.seats.min=-3", "content.rates[0].min"),
            ("rate.seats.included=lots", "rate.seats.included"),
        ] {
            let r = f.form(&path, &s, &format!("_csrf={token}&{body}")).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.text);
            let notice = &r.text[r.text.find("id=\"prices-error\"").unwrap_or_else(|| panic!("{body}: an inline error: {}", r.text))..];
            assert!(notice.contains(field), "{body}: {notice}");
            assert!(r.text.contains("form method=\"post\""), "the form is still there");
            let rate = f.rate(plan).await;
            assert_eq!((rate["included"].as_i64(), rate["min"].as_i64(), rate["max"].as_i64()), (Some(1), Some(1), Some(50)), "{body}");
        }

        // Valid: saved, shown, and the sync preview carries the new limit.
        let r = f.form(&path, &s, &format!("_csrf={token}&rate.seats.included=5&rate.seats.max=20&period.m1.cancellation=2.50")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let rate = f.rate(plan).await;
        assert_eq!((rate["included"].as_i64(), rate["max"].as_i64()), (Some(5), Some(20)));
        let page = f.app.get(format!("/seller/plans/{plan}"), s.clone()).await.expect(StatusCode::OK);
        assert!(page.text.contains("name=\"rate.seats.included\" value=\"5\"") && page.text.contains("value=\"2.50\""), "{}", page.text);
        let preview = f.form(&format!("/seller/plans/{plan}/sync/preview"), &s, &format!("_csrf={token}&o_resource_limits=1&scope=all")).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert!(preview.text.contains(&format!("data-copy=\"{a_copy}\"")), "{}", preview.text);
        let changes = &preview.text[preview.text.find("class=\"changes\"").expect("a table of changes")..];
        assert!(changes.contains("<td>1</td><td>5</td>") && changes.contains("<td>50</td><td>20</td>"), "{changes}");

        // The reseller's copy: limits shown, not editable; a forged limit is the API's refusal.
        let sa = f.app.session("a-admin", PASSWORD).await;
        let copy = f.app.get(format!("/seller/plans/{a_copy}"), sa.clone()).await.expect(StatusCode::OK);
        assert!(!copy.text.contains("name=\"rate.seats.included\""), "{}", copy.text);
        assert!(copy.text.contains("name=\"rate.seats.recurring\""), "prices stay editable");
        let token = csrf_of(&copy.text);
        let r = f.form(&format!("/seller/plans/{a_copy}/prices"), &sa, &format!("_csrf={token}&rate.seats.included=3")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("content.rates"), "{}", r.text);
        assert_eq!(f.rate(a_copy).await["included"].as_i64(), Some(1));
        let _ = (f.ad, f.b_tok.clone(), f.ac_tok.clone());
    }
}

//! Wholesale billing down the channel, end to end on both backends: provider → L1 (A) →
//! L2 (A2) → customer. The customer buys a monthly plan and later upgrades it (CH); the
//! daily run bills two months. Each reseller owes its vendor the vendor's price for every
//! charge, and is invoiced by its vendor on its own statement day, consolidated: the
//! provider invoices A at the provider's prices, A invoices A2 at A's prices, A2
//! invoices its customer. Re-running a day writes nothing twice; the books balance.

mod common;

use axum::http::StatusCode;
use cascade_domain::clock::{Clock, Timestamp};
use cascade_domain::ids::AccountId;
use cascade_store::documents::{DocKind, Documents, NewDocument, NewLine};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::billing_run::{RunOptions, run as billing_run};
use cascade_worker::{Registry, Worker, WorkerConfig};
use chrono::NaiveDate;
use common::{Channel, Cred, TestApp};
use serde_json::{Value, json};
use std::sync::Arc;

struct Fx {
    app: TestApp,
    ch: Channel,
    rt_seats: i64,
    template: i64,
}

async fn sql(db: &Db, q: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(q).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    id
}

async fn exec(db: &Db, q: &str) {
    let mut tx = db.begin().await.unwrap();
    on_tx!(&mut tx, c => sqlx::query(q).execute(c).await.map(|r| r.rows_affected())).unwrap();
    tx.commit().await.unwrap();
}

fn at(day: NaiveDate, hour: u32) -> Timestamp {
    Timestamp(
        day.and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros(),
    )
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn money(units: i64) -> i64 {
    units * 1_000_000
}

async fn fixture(db: Db) -> Fx {
    let app = TestApp::new(db.clone());
    let ch = Channel::build(&app).await;
    let p = ch.p.account;
    let rt_seats = sql(&db, &format!("INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ({p}, 'seats', 'office', 'seat', '{{\"default\":\"en\",\"values\":{{\"en\":\"Seats\"}}}}', 0, 0) RETURNING id")).await;
    let template = sql(&db, &format!("INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({p}, 'Office', '[]', '{{}}', 0, 0) RETURNING id")).await;
    Fx {
        app,
        ch,
        rt_seats,
        template,
    }
}

/// A monthly plan (statement day) with a 1-month period and a seats rate (1 included).
fn monthly(fx: &Fx, fee: i64, seat: i64) -> Value {
    json!({
        "name": {"default": "en", "values": {"en": "Office Suite"}},
        "published": true, "visible": true, "listing_priority": 1,
        "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"},
        "recurring_basis": "billing_period",
        "periods": [{"uid": "m1", "duration": 1, "unit": "month", "active": true, "setup": {"amount": 0}, "recurring": {"amount": money(fee)},
            "renewal": {"amount": money(fee)}, "transfer": {"amount": 0}, "cancellation": {"amount": 0},
            "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1}],
        "rates": [{"uid": "seats", "resource_type_id": fx.rt_seats, "included": 1, "min": 1, "max": 50, "setup_fee": 0, "recurring_fee": money(seat),
            "overuse_fee": 0, "per_unit": true, "measurable": false, "show_in_store": true, "show_in_panel": true, "display": {"type": "spinner"}}],
    })
}

impl Fx {
    /// The provider's plan delegated P → A → A2 with each tier's prices: P 10.00 +
    /// 5.00/seat, A 12.00 + 6.00/seat, A2 15.00 + 8.00/seat. Returns A2's copy.
    async fn chain_plan(&self) -> i64 {
        let (ch, app) = (&self.ch, &self.app);
        let p = app
            .post(
                format!("/api/v1/accounts/{}/plans", ch.p.account),
                ch.p.cred(),
                json!({"template_id": self.template, "content": monthly(self, 10, 5)}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id();
        let a = app
            .post(
                format!("/api/v1/plans/{p}/copies"),
                ch.p.cred(),
                json!({"reseller_id": ch.a.account}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id();
        let a2 = app
            .post(
                format!("/api/v1/plans/{a}/copies"),
                ch.a.cred(),
                json!({"reseller_id": ch.a2.account}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id();
        for (plan, cred, fee, seat) in [(a, ch.a.cred(), 12, 6), (a2, ch.a2.cred(), 15, 8)] {
            let mut c = app
                .get(format!("/api/v1/plans/{plan}"), ch.p.cred())
                .await
                .expect(StatusCode::OK)
                .json["content"]
                .clone();
            c["periods"][0]["recurring"]["amount"] = json!(money(fee));
            c["rates"][0]["recurring_fee"] = json!(money(seat));
            app.req(axum::http::Method::PUT, format!("/api/v1/plans/{plan}"))
                .cred(cred)
                .json(&json!({"content": c}))
                .send()
                .await
                .expect(StatusCode::OK);
        }
        a2
    }

    async fn top_up(&self, issuer: i64, account: i64, minor: i64) {
        let now = self.app.clock.now();
        let mut tx = self.app.db.begin().await.unwrap();
        let head = NewDocument {
            kind: DocKind::Payment,
            issuer: AccountId(issuer),
            account: AccountId(account),
            currency: "EUR",
            issue_date: "2000-01-01",
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

    /// Run the worker until it has nothing left to do now.
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

    /// The daily run for `day`, at 01:00 that day, then the worker.
    async fn run(&self, day: NaiveDate) -> cascade_worker::billing_run::RunReport {
        self.app.clock.set(at(day, 1));
        let r = billing_run(
            &self.app.db,
            self.app.clock.as_ref(),
            day,
            &RunOptions::default(),
            |_, _| {},
        )
        .await
        .unwrap();
        self.work().await;
        r
    }

    /// (issuer, number, issue date, total, [line amounts]) of `account`'s invoices,
    /// oldest first, as `cred` reads them through the API.
    async fn invoices(
        &self,
        account: i64,
        cred: Cred,
    ) -> Vec<(i64, String, String, i64, Vec<i64>)> {
        let page = self
            .app
            .get(
                format!("/api/v1/accounts/{account}/documents?kind=invoice&limit=100"),
                cred.clone(),
            )
            .await
            .expect(StatusCode::OK)
            .json;
        let mut out = vec![];
        for doc in page["items"].as_array().unwrap().iter().rev() {
            let full = self
                .app
                .get(format!("/api/v1/documents/{}", doc["id"]), cred.clone())
                .await
                .expect(StatusCode::OK)
                .json;
            out.push((
                full["issuer_account_id"].as_i64().unwrap(),
                full["number"].as_str().unwrap().to_string(),
                full["issue_date"].as_str().unwrap().to_string(),
                full["total_minor"].as_i64().unwrap(),
                full["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["amount_minor"].as_i64().unwrap())
                    .collect(),
            ));
        }
        out
    }

    async fn uninvoiced(&self, account: i64, cred: Cred) -> Value {
        self.app
            .get(
                format!("/api/v1/accounts/{account}/wholesale/uninvoiced"),
                cred,
            )
            .await
            .expect(StatusCode::OK)
            .json
    }
}

fn inv(
    issuer: i64,
    number: &str,
    date: &str,
    total: i64,
    lines: &[i64],
) -> (i64, String, String, i64, Vec<i64>) {
    (issuer, number.into(), date.into(), total, lines.to_vec())
}

both_backends! {
    async fn each_tier_is_invoiced_by_the_tier_above_on_its_own_billing_day(db) {
        let fx = fixture(db).await;
        let plan_a2 = fx.chain_plan().await;
        let (ch, app) = (&fx.ch, &fx.app);
        let (p, a, a2, c) = (ch.p.account, ch.a.account, ch.a2.account, ch.a2c.account);
        // Billing days: A on the 5th, A2 on the 10th, the customer on the 1st.
        exec(&app.db, &format!("UPDATE accounts SET statement_day = 5 WHERE id = {a}")).await;
        exec(&app.db, &format!("UPDATE accounts SET statement_day = 10 WHERE id = {a2}")).await;
        exec(&app.db, &format!("UPDATE accounts SET statement_day = 1 WHERE id = {c}")).await;

        // 1 March: the customer buys 3 seats (1 included) for a month at A2's prices.
        app.clock.set(at(d("2024-03-01"), 9));
        fx.top_up(a2, c, 20_000).await;
        let order = app.post(format!("/api/v1/accounts/{c}/orders"), ch.a2c.cred(), json!({"plan_id": plan_a2, "period_uid": "m1", "quantities": {"seats": 3}}))
            .await.expect(StatusCode::CREATED).json;
        let sub = order["subscription_id"].as_i64().unwrap();
        assert_eq!(order["total_minor"], 3100, "15.00 + 2 × 8.00");
        fx.work().await;
        assert_eq!(app.get(format!("/api/v1/subscriptions/{sub}"), ch.p.cred()).await.json["status"], "active");

        let mut day = d("2024-03-02");
        while day <= d("2024-04-30") {
            fx.run(day).await;
            if day == d("2024-03-16") {
                // Upgrade to 5 seats with 16 of March's 31 days left: prorated at every tier.
                app.clock.set(at(day, 10));
                let ch_order = app.post(format!("/api/v1/subscriptions/{sub}/change"), ch.a2c.cred(), json!({"quantities": {"seats": 5}}))
                    .await.expect(StatusCode::CREATED).json;
                assert_eq!(ch_order["type"], "CH");
                // 2 × 8.00 × 16/31 = 8.258… → 8.26.
                assert_eq!(ch_order["total_minor"], 826);
                fx.work().await;
                // What each reseller will be invoiced next: the upgrade at its vendor's price.
                let up = fx.uninvoiced(a2, ch.a2.cred()).await;
                assert_eq!(up["items"].as_array().unwrap().iter().map(|i| (i["order_type"].as_str().unwrap(), i["amount_minor"].as_i64().unwrap())).collect::<Vec<_>>(),
                    vec![("CH", 619)], "2 × 6.00 × 16/31");
                assert_eq!(up["upcoming"], json!([{"seller_account_id": a, "currency": "EUR", "total_minor": 619, "transactions": 1}]));
                let up = fx.uninvoiced(a, ch.p.cred()).await;
                assert_eq!(up["upcoming"][0]["total_minor"], 516, "2 × 5.00 × 16/31");
                // The provider's seller panel: A's tier invoice of 5 March among its
                // invoices, and the upgrade it owes, not invoiced yet.
                let s = app.session(&ch.p.admin_login, common::PASSWORD).await;
                let page = app.get(format!("/seller/accounts/{a}/money"), s).await.expect(StatusCode::OK).text;
                let upcoming = page.split("id=\"uninvoiced-wholesale\"").nth(1).expect("the uninvoiced table");
                assert!(upcoming.contains(&format!("CH #{}", ch_order["id"])) && upcoming.contains("5.16 EUR"), "{page}");
                assert!(page.contains("INV-000001") && page.contains("20.00 EUR"), "{page}");
                // A customer never sees what its seller owes.
                assert!(app.get(format!("/api/v1/accounts/{a2}/wholesale/uninvoiced"), ch.a2c.cred()).await.status.is_client_error());
            }
            day = day.succ_opt().unwrap();
        }

        // The customer: the purchase, the upgrade, April (15.00 + 4 × 8.00) from A2.
        let cust: Vec<(i64, i64)> = fx.invoices(c, ch.a2c.cred()).await.into_iter().map(|i| (i.0, i.3)).collect();
        assert_eq!(cust, vec![(a2, 3100), (a2, 826), (a2, 4700)]);
        // A2, invoiced by A at A's prices on the 10th: the purchase (12.00 + 2 × 6.00) in
        // March; the upgrade and April (12.00 + 4 × 6.00) in April.
        let a2_invoices = vec![
            inv(a, "INV-000001", "2024-03-10", 2400, &[2400]),
            inv(a, "INV-000002", "2024-04-10", 4219, &[619, 3600]),
        ];
        assert_eq!(fx.invoices(a2, ch.a2.cred()).await, a2_invoices, "A2 sees them as its own payable invoices");
        // A, invoiced by the provider at its prices on the 5th: 10.00 + 2 × 5.00; then the
        // upgrade and April (10.00 + 4 × 5.00).
        let a_invoices = vec![
            inv(p, "INV-000001", "2024-03-05", 2000, &[2000]),
            inv(p, "INV-000002", "2024-04-05", 3516, &[516, 3000]),
        ];
        assert_eq!(fx.invoices(a, ch.a.cred()).await, a_invoices);
        assert_eq!(fx.invoices(a, ch.p.cred()).await, a_invoices, "the provider sees what it issued");
        assert!(fx.uninvoiced(a2, ch.a2.cred()).await["items"].as_array().unwrap().is_empty());
        assert!(fx.uninvoiced(a, ch.a.cred()).await["items"].as_array().unwrap().is_empty());

        // The PDF of a tier invoice, as the reseller that pays it.
        let first = app.get(format!("/api/v1/accounts/{a2}/documents?kind=invoice"), ch.a2.cred()).await.json["items"][0]["id"].as_i64().unwrap();
        let pdf = app.get(format!("/api/v1/documents/{first}/pdf"), ch.a2.cred()).await.expect(StatusCode::OK);
        assert_eq!(pdf.content_type(), Some("application/pdf"));
        assert!(pdf.text.starts_with("%PDF"));
        // Another reseller's staff cannot read it.
        assert!(app.get(format!("/api/v1/documents/{first}"), ch.b.cred()).await.status.is_client_error());

        // Re-running the billing days writes nothing twice.
        let docs = sql(&app.db, "SELECT COUNT(*) FROM documents").await;
        for day in ["2024-04-01", "2024-04-05", "2024-04-10"] {
            let r = fx.run(d(day)).await;
            assert_eq!((r.documents_written, r.tiers.invoices, r.wholesale_rows), (0, 0, 0), "{day}");
        }
        assert_eq!(sql(&app.db, "SELECT COUNT(*) FROM documents").await, docs);
        assert_eq!(sql(&app.db, "SELECT COUNT(*) FROM wholesale_transactions WHERE document_id IS NULL").await, 0);
        assert_eq!(sql(&app.db, "SELECT COUNT(*) FROM wholesale_transactions").await, 6, "SO, CH, BO × 2 resellers");
        // One invoice.issued per tier invoice.
        assert_eq!(sql(&app.db, &format!("SELECT COUNT(*) FROM events WHERE kind = 'invoice.issued' AND account_id IN ({a}, {a2})")).await, 4);
        for party in [&ch.p, &ch.a, &ch.a2, &ch.a2c] {
            assert!(app.db.documents().unbalanced(AccountId(party.account)).await.unwrap().is_empty(), "books of {}", party.tag);
        }

        // Cancelled on 20 April with a refund: each reseller gets its share back at its
        // vendor's price (A2: 12.00 + 4 × 6.00 of the customer's 15.00 + 4 × 8.00; A: 10.00
        // + 4 × 5.00) as a negative row, shown as owed less.
        app.clock.set(at(d("2024-04-20"), 10));
        let cl = app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), ch.a2c.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(cl["type"], "CL");
        let refund = cl["details"]["refund_minor"].as_i64().unwrap();
        assert!(refund > 0, "{cl}");
        fx.work().await;
        let share = |tier: i64| (2 * refund * tier + 4700) / (2 * 4700);
        for (buyer, cred, tier) in [(a2, ch.a2.cred(), 3600), (a, ch.a.cred(), 3000)] {
            let up = fx.uninvoiced(buyer, cred).await;
            assert_eq!(up["items"].as_array().unwrap().iter().map(|i| (i["order_type"].as_str().unwrap(), i["amount_minor"].as_i64().unwrap())).collect::<Vec<_>>(),
                vec![("CL", -share(tier))], "{up}");
            assert_eq!(up["upcoming"][0]["total_minor"], -share(tier));
        }
        // Nothing else is owed in May: no tier invoice for a credit; it waits for the next.
        for day in ["2024-05-01", "2024-05-05", "2024-05-10"] {
            assert_eq!(fx.run(d(day)).await.tiers.invoices, 0, "{day}");
        }
        assert_eq!(fx.invoices(a2, ch.a2.cred()).await, a2_invoices);
        assert_eq!(sql(&app.db, "SELECT COUNT(*) FROM wholesale_transactions WHERE document_id IS NULL AND amount_minor < 0").await, 2);
        for party in [&ch.p, &ch.a, &ch.a2, &ch.a2c] {
            assert!(app.db.documents().unbalanced(AccountId(party.account)).await.unwrap().is_empty(), "books of {}", party.tag);
        }
    }
}

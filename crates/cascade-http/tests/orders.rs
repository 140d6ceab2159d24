//! Orders and subscriptions through the API, on both backends: buying down a reseller
//! chain (wholesale rows fixed at purchase), the payment gate, the chain check,
//! provisioning as a task, a year of one subscription (buy annual, upgrade in month 3,
//! cancel in month 7) with worked amounts, deferred downgrades, renewals, restore,
//! auto-renew, tenant isolation and bad input. After every scenario the books of every
//! issuer balance.

mod common;

use axum::http::StatusCode;
use cascade_domain::clock::{Clock, Timestamp};
use cascade_domain::ids::AccountId;
use cascade_store::documents::{DocKind, Documents, NewDocument, NewLine};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::provision::{ProvisionOrder, Service};
use cascade_worker::{Registry, RunStats, Worker, WorkerConfig};
use common::{Channel, Cred, TestApp};
use serde_json::{Value, json};
use std::sync::Arc;

// ---- fixture ----

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

/// Midnight plus `hour` hours of a UTC day.
fn at(y: i32, m: u32, d: u32, hour: u32) -> Timestamp {
    let t = chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc();
    Timestamp(t.timestamp_micros())
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

fn money(units: i64) -> i64 {
    units * 1_000_000
}

fn period(uid: &str, months: u32, recurring: i64) -> Value {
    json!({"uid": uid, "duration": months, "unit": "month", "active": true, "setup": {"amount": 0}, "recurring": {"amount": money(recurring)},
        "renewal": {"amount": money(recurring)}, "transfer": {"amount": 0}, "cancellation": {"amount": 0},
        "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1})
}

fn seats(rt: i64, price: i64) -> Value {
    json!({"uid": "seats", "resource_type_id": rt, "included": 1, "min": 1, "max": 50, "setup_fee": 0, "recurring_fee": money(price),
        "overuse_fee": 0, "per_unit": true, "measurable": false, "show_in_store": true, "show_in_panel": true, "display": {"type": "spinner"}})
}

/// A monthly plan (statement day) with a 1-month period and a seats rate.
fn monthly(fx: &Fx, name: &str, fee: i64, seat: i64) -> Value {
    json!({
        "name": {"default": "en", "values": {"en": name}},
        "published": true, "visible": true, "listing_priority": 1,
        "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"},
        "recurring_basis": "billing_period",
        "periods": [period("m1", 1, fee)],
        "rates": [seats(fx.rt_seats, seat)],
    })
}

impl Fx {
    async fn create_plan(&self, content: Value) -> i64 {
        self.app
            .post(
                format!("/api/v1/accounts/{}/plans", self.ch.p.account),
                self.ch.p.cred(),
                json!({"template_id": self.template, "content": content}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }

    async fn delegate(&self, plan: i64, reseller: i64, cred: Cred) -> i64 {
        self.app
            .post(
                format!("/api/v1/plans/{plan}/copies"),
                cred,
                json!({"reseller_id": reseller}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }

    /// Set a plan's monthly fee and seat price (by its owner).
    async fn price(&self, plan: i64, cred: Cred, fee: i64, seat: i64) {
        let mut c = self
            .app
            .get(format!("/api/v1/plans/{plan}"), self.ch.p.cred())
            .await
            .expect(StatusCode::OK)
            .json["content"]
            .clone();
        c["periods"][0]["recurring"]["amount"] = json!(money(fee));
        c["rates"][0]["recurring_fee"] = json!(money(seat));
        self.app
            .req(axum::http::Method::PUT, format!("/api/v1/plans/{plan}"))
            .cred(cred)
            .json(&json!({"content": c}))
            .send()
            .await
            .expect(StatusCode::OK);
    }

    async fn order(&self, customer: i64, cred: Cred, body: Value) -> common::Resp {
        self.app
            .post(format!("/api/v1/accounts/{customer}/orders"), cred, body)
            .await
    }

    /// A standalone payment of `minor` from `account` to its vendor `issuer`: a top-up,
    /// open until applied. (The payments API will own this; one line carries the amount.)
    async fn top_up(&self, issuer: i64, account: i64, minor: i64) -> i64 {
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
        let (doc, _) = Documents::issue(&mut tx, &head, &[line], now)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        doc.id
    }

    async fn balance(&self, account: i64) -> i64 {
        self.app
            .db
            .documents()
            .balance(AccountId(account), "EUR")
            .await
            .unwrap()
    }

    /// Run the worker until it has nothing left to do now.
    async fn work_with(&self, registry: Registry) -> RunStats {
        let w = Worker::new(
            self.app.db.clone(),
            self.app.clock.clone() as Arc<dyn Clock>,
            registry,
            WorkerConfig::default(),
        );
        let mut total = RunStats::default();
        for _ in 0..20 {
            let s = w.run_once().await.unwrap();
            total.dispatched += s.dispatched;
            total.done += s.done;
            total.retried += s.retried;
            total.failed += s.failed;
            if s.is_idle() {
                break;
            }
        }
        total
    }

    async fn work(&self) -> RunStats {
        self.work_with(Registry::with_builtin()).await
    }

    async fn get_order(&self, id: i64) -> Value {
        self.app
            .get(format!("/api/v1/orders/{id}"), self.ch.p.cred())
            .await
            .expect(StatusCode::OK)
            .json
    }

    async fn get_sub(&self, id: i64) -> Value {
        self.app
            .get(format!("/api/v1/subscriptions/{id}"), self.ch.p.cred())
            .await
            .expect(StatusCode::OK)
            .json
    }

    /// Every issuer's books balance: totals equal open balances plus allocations, and
    /// invoice lines add up to their subtotals.
    async fn assert_books(&self) {
        for party in self.ch.all() {
            let bad = self
                .app
                .db
                .documents()
                .unbalanced(AccountId(party.account))
                .await
                .unwrap();
            assert!(
                bad.is_empty(),
                "documents of issuer {} do not balance: {bad:?}",
                party.tag
            );
        }
        let dangling = cascade_store::integrity::dangling_references(&self.app.db)
            .await
            .unwrap();
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }
}

/// The provider's plan, delegated P → A → A2, each tier with its own prices:
/// P 10.00 + 5.00/seat, A 12.00 + 6.00/seat, A2 15.00 + 8.00/seat. Returns (P's, A's, A2's).
async fn chain_plans(fx: &Fx) -> (i64, i64, i64) {
    let p = fx.create_plan(monthly(fx, "Office Suite", 10, 5)).await;
    let a = fx.delegate(p, fx.ch.a.account, fx.ch.p.cred()).await;
    let a2 = fx.delegate(a, fx.ch.a2.account, fx.ch.a.cred()).await;
    fx.price(a, fx.ch.a.cred(), 12, 6).await;
    fx.price(a2, fx.ch.a2.cred(), 15, 8).await;
    (p, a, a2)
}

fn wholesale_of(order: &Value) -> Vec<(i64, i64, i64)> {
    order["wholesale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["buyer_account_id"].as_i64().unwrap(),
                w["seller_account_id"].as_i64().unwrap(),
                w["amount_minor"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A service that refuses every order (the trait is `async_trait`'s; written out here).
struct Refuse;

impl Service for Refuse {
    fn provision<'a, 'b, 'c, 'f>(
        &'a self,
        _ctx: &'b cascade_worker::TaskContext,
        _order: &'c cascade_store::subscriptions::Order,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<(), cascade_worker::provision::ServiceError>>
                + Send
                + 'f,
        >,
    >
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Box::pin(async {
            Err(cascade_worker::provision::ServiceError::permanent(
                "the connector answered 409: mailbox name taken",
            ))
        })
    }
}

both_backends! {
    async fn usage_import_is_idempotent_per_record_and_guarded(db) {
        let fx = fixture(db).await;
        let (ch, app) = (&fx.ch, &fx.app);
        app.clock.set(at(2024, 3, 1, 9));
        // A2 sells its own plan with a measurable resource.
        let mut content = monthly(&fx, "Metered", 0, 0);
        content["rates"][0]["measurable"] = json!(true);
        content["rates"][0]["overuse_fee"] = json!(500_000);
        content["periods"][0]["recurring"]["amount"] = json!(0);
        content["periods"][0]["renewal"]["amount"] = json!(0);
        let plan = app
            .post(format!("/api/v1/accounts/{}/plans", ch.a2.account), ch.a2.cred(), json!({"template_id": fx.template, "content": content}))
            .await
            .expect(StatusCode::CREATED)
            .id();
        let order = fx.order(ch.a2c.account, ch.a2.cred(), json!({"plan_id": plan, "period_uid": "m1"})).await.expect(StatusCode::CREATED).json;
        let sub = order["subscription_id"].as_i64().unwrap();
        let path = format!("/api/v1/subscriptions/{sub}/usage");
        let rec = |id: &str, qty: i64, date: &str| json!({"id": id, "rate_uid": "seats", "quantity": qty, "date": date});
        let r = app.post(&path, ch.a2.cred(), json!({"records": [rec("u1", 5, "2024-03-01"), rec("u2", 7, "2024-03-01")]})).await.expect(StatusCode::OK).json;
        assert_eq!((r["inserted"].as_i64(), r["already_present"].as_i64()), (Some(2), Some(0)));
        // Re-sending the same records is harmless; the same id with other values is not.
        let r = app.post(&path, ch.a2.cred(), json!({"records": [rec("u1", 5, "2024-03-01")]})).await.expect(StatusCode::OK).json;
        assert_eq!((r["inserted"].as_i64(), r["already_present"].as_i64()), (Some(0), Some(1)));
        let count = || sql(&fx.app.db, "SELECT COUNT(*) FROM usage_records");
        let before = count().await;
        app.post(&path, ch.a2.cred(), json!({"records": [rec("u3", 1, "2024-03-01"), rec("u1", 6, "2024-03-01")]})).await.expect(StatusCode::CONFLICT);
        assert_eq!(count().await, before, "nothing of the batch written");
        // Bad values name the field; nothing written.
        app.post(&path, ch.a2.cred(), json!({"records": [rec("u4", 1, "2024-03-02")]})).await.expect_field("records[0].date", Some("in_the_future"));
        app.post(&path, ch.a2.cred(), json!({"records": [rec("u4", -1, "2024-03-01")]})).await.expect_field("records[0].quantity", Some("out_of_range"));
        app.post(&path, ch.a2.cred(), json!({"records": [{"id": "u4", "rate_uid": "nope", "quantity": 1, "date": "2024-03-01"}]})).await.expect_field("records[0].rate_uid", Some("unknown_rate"));
        app.post(&path, ch.a2.cred(), json!({"records": [rec("u5", 1, "2024-03-01"), rec("u5", 1, "2024-03-01")]})).await.expect_field("records[1].id", Some("duplicate_id"));
        // Only the seller side imports; another seller's subscription does not exist for B.
        app.post(&path, ch.a2c.cred(), json!({"records": [rec("u6", 1, "2024-03-01")]})).await.expect(StatusCode::FORBIDDEN);
        app.post(&path, ch.b.cred(), json!({"records": [rec("u6", 1, "2024-03-01")]})).await.expect(StatusCode::NOT_FOUND);
        assert_eq!(count().await, before);
        // A plan rate that is not measurable takes no usage.
        let (_, _, plan_a2) = chain_plans(&fx).await;
        let flat = fx.order(ch.a2c.account, ch.a2.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await;
        if flat.status == StatusCode::CREATED {
            let s2 = flat.json["subscription_id"].as_i64().unwrap();
            app.post(format!("/api/v1/subscriptions/{s2}/usage"), ch.a2.cred(), json!({"records": [rec("x", 1, "2024-03-01")]}))
                .await
                .expect_field("records[0].rate_uid", Some("not_measurable"));
        }
    }

    async fn an_l2_customer_buys_down_the_chain(db) {
        let fx = fixture(db).await;
        let (_, plan_a, plan_a2) = chain_plans(&fx).await;
        let (ch, app) = (&fx.ch, &fx.app);
        app.clock.set(at(2024, 3, 1, 9));
        fx.top_up(ch.a2.account, ch.a2c.account, 10_000).await;

        let r = fx.order(ch.a2c.account, ch.a2c.cred(), json!({"plan_id": plan_a2, "period_uid": "m1", "quantities": {"seats": 3}})).await.expect(StatusCode::CREATED);
        let order = r.json;
        let oid = order["id"].as_i64().unwrap();
        // A full month at A2's retail prices: 15.00 + 2 seats above the included one × 8.00.
        assert_eq!(order["type"], "SO");
        assert_eq!(order["total_minor"], 3100);
        // The balance covered it: paid at once, and visibly not provisioned yet.
        assert_eq!(order["status"], "paid");
        assert!(order["wholesale"].as_array().unwrap().is_empty(), "a customer never sees its vendor's costs");
        let sub_id = order["subscription_id"].as_i64().unwrap();
        let sub = fx.get_sub(sub_id).await;
        assert_eq!((sub["status"].as_str(), sub["start_date"].as_str(), sub["expires_on"].as_str(), sub["next_bill_date"].as_str()),
            (Some("ordered"), Some("2024-03-01"), Some("2024-04-01"), Some("2024-04-01")));
        assert_eq!(sub["quantities"]["seats"], 3);
        assert_eq!(fx.balance(ch.a2c.account).await, -6_900, "100.00 paid, 31.00 applied");

        // Wholesale: A2 owes A at A's price, A owes P at P's price, each fixed now.
        let full = vec![(ch.a2.account, ch.a.account, 2_400), (ch.a.account, ch.p.account, 2_000)];
        assert_eq!(wholesale_of(&fx.get_order(oid).await), full);
        let as_a = app.get(format!("/api/v1/orders/{oid}"), ch.a.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(wholesale_of(&as_a), full, "A sees what it owes and what it is owed");
        let as_a2 = app.get(format!("/api/v1/orders/{oid}"), ch.a2.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(wholesale_of(&as_a2), vec![(ch.a2.account, ch.a.account, 2_400)], "A2 does not see A's cost");
        let keys: Vec<String> = fx.get_order(oid).await["wholesale"].as_array().unwrap().iter().map(|w| w["charge_key"].as_str().unwrap().to_string()).collect();
        assert_eq!(keys, vec![format!("order:{oid}:wholesale:{}", ch.a2.account), format!("order:{oid}:wholesale:{}", ch.a.account)]);

        // Provisioning is the worker's: order.paid → orders.provision.
        let stats = fx.work().await;
        assert!(stats.done >= 1, "{stats:?}");
        assert_eq!(fx.get_order(oid).await["status"], "completed");
        assert_eq!(fx.get_sub(sub_id).await["status"], "active");

        // Prices change upstream afterwards: the order's wholesale rows do not.
        fx.price(plan_a, ch.a.cred(), 20, 9).await;
        let p_plan = app.get(format!("/api/v1/plans/{plan_a}"), ch.p.cred()).await.json["parent_plan_id"].as_i64().unwrap();
        fx.price(p_plan, ch.p.cred(), 18, 7).await;
        assert_eq!(wholesale_of(&fx.get_order(oid).await), full);
        let stored = app.db.wholesale().of_order(oid).await.unwrap();
        assert_eq!(stored.iter().map(|w| w.amount_minor).collect::<Vec<_>>(), vec![2_400, 2_000]);

        // Lists, events, isolation.
        let list = app.get(format!("/api/v1/accounts/{}/orders", ch.a2c.account), ch.a2c.cred()).await.expect(StatusCode::OK);
        assert_eq!(list.item_ids(), vec![oid]);
        let subs = app.get(format!("/api/v1/accounts/{}/subscriptions", ch.a2c.account), ch.a2.cred()).await.expect(StatusCode::OK);
        assert_eq!(subs.item_ids(), vec![sub_id]);
        let kinds: Vec<String> = app.events_of(ch.a2c.account).await.into_iter().map(|e| e.kind).collect();
        for k in ["order.placed", "order.paid", "order.provisioning", "order.completed"] {
            assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
        }
        for outsider in [&ch.b, &ch.bc, &ch.ac, &ch.pc] {
            app.get(format!("/api/v1/orders/{oid}"), outsider.cred()).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
            app.get(format!("/api/v1/subscriptions/{sub_id}"), outsider.cred()).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
            app.get(format!("/api/v1/accounts/{}/orders", ch.a2c.account), outsider.cred()).await.expect(StatusCode::NOT_FOUND);
        }
        fx.assert_books().await;
    }

    async fn waiting_for_payment_then_paid_after_a_top_up(db) {
        let fx = fixture(db).await;
        let (_, _, plan_a2) = chain_plans(&fx).await;
        let (ch, app) = (&fx.ch, &fx.app);
        app.clock.set(at(2024, 3, 1, 9));
        let order = fx.order(ch.a2c.account, ch.a2.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect(StatusCode::CREATED).json;
        let oid = order["id"].as_i64().unwrap();
        assert_eq!(order["status"], "waiting_for_payment");
        assert!(order["reason"].as_str().unwrap().starts_with("waiting for payment of INV-"), "{order}");
        assert_eq!(order["total_minor"], 1500);
        // Nothing to provision yet.
        fx.work().await;
        assert_eq!(fx.get_order(oid).await["status"], "waiting_for_payment");
        app.post_empty(format!("/api/v1/orders/{oid}/pay"), ch.a2c.cred()).await.expect_problem(StatusCode::CONFLICT, "insufficient_balance");
        fx.top_up(ch.a2.account, ch.a2c.account, 1_000).await;
        app.post_empty(format!("/api/v1/orders/{oid}/pay"), ch.a2c.cred()).await.expect_problem(StatusCode::CONFLICT, "insufficient_balance");
        fx.top_up(ch.a2.account, ch.a2c.account, 500).await;
        let paid = app.post_empty(format!("/api/v1/orders/{oid}/pay"), ch.a2c.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(paid["status"], "paid");
        assert_eq!(paid["reason"], Value::Null);
        assert_eq!(fx.balance(ch.a2c.account).await, 0);
        // Paying again is harmless.
        app.post_empty(format!("/api/v1/orders/{oid}/pay"), ch.a2c.cred()).await.expect(StatusCode::OK);
        fx.work().await;
        assert_eq!(fx.get_order(oid).await["status"], "completed");
        fx.assert_books().await;
    }

    async fn a_reseller_without_credit_holds_provisioning(db) {
        let fx = fixture(db).await;
        let (_, _, plan_a2) = chain_plans(&fx).await;
        let (ch, app) = (&fx.ch, &fx.app);
        app.clock.set(at(2024, 3, 1, 9));
        // A's class (set by P): no credit at all; A has no balance either.
        let class = sql(&app.db, &format!("INSERT INTO customer_classes (owner_account_id, name, created_at, credit_limit_minor) VALUES ({}, 'prepaid', 0, 0) RETURNING id", ch.p.account)).await;
        exec(&app.db, &format!("UPDATE accounts SET customer_class_id = {class} WHERE id = {}", ch.a.account)).await;
        fx.top_up(ch.a2.account, ch.a2c.account, 10_000).await;
        let oid = fx.order(ch.a2c.account, ch.a2c.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect(StatusCode::CREATED).id();
        let stats = fx.work().await;
        assert_eq!(stats.retried, 1, "{stats:?}");
        let o = fx.get_order(oid).await;
        assert_eq!(o["status"], "paid");
        assert_eq!(o["reason"], format!("reseller Account A (#{}) lacks balance or credit", ch.a.account));
        // A tops up what it owes P (10.00 for the month): the retried task goes through.
        fx.top_up(ch.p.account, ch.a.account, 1_000).await;
        app.advance_secs(60);
        fx.work().await;
        let o = fx.get_order(oid).await;
        assert_eq!((o["status"].as_str(), &o["reason"]), (Some("completed"), &Value::Null));
        fx.assert_books().await;
    }

    async fn a_held_account_may_order_but_waits(db) {
        let fx = fixture(db).await;
        let (_, _, plan_a2) = chain_plans(&fx).await;
        let (ch, app) = (&fx.ch, &fx.app);
        fx.top_up(ch.a2.account, ch.a2c.account, 10_000).await;
        app.post(format!("/api/v1/accounts/{}/status", ch.a2c.account), ch.a2.cred(), json!({"status": "admin_hold"})).await.expect(StatusCode::OK);
        let o = fx.order(ch.a2c.account, ch.a2.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect(StatusCode::CREATED).json;
        assert_eq!((o["status"].as_str(), o["reason"].as_str()), (Some("waiting_for_payment"), Some("account on hold")));
        let oid = o["id"].as_i64().unwrap();
        app.post_empty(format!("/api/v1/orders/{oid}/pay"), ch.a2.cred()).await.expect_problem(StatusCode::CONFLICT, "account_on_hold");
        fx.work().await;
        assert_eq!(fx.get_order(oid).await["status"], "waiting_for_payment");
        app.post(format!("/api/v1/accounts/{}/status", ch.a2c.account), ch.a2.cred(), json!({"status": "active"})).await.expect(StatusCode::OK);
        assert_eq!(app.post_empty(format!("/api/v1/orders/{oid}/pay"), ch.a2.cred()).await.expect(StatusCode::OK).json["status"], "paid");
        fx.work().await;
        assert_eq!(fx.get_order(oid).await["status"], "completed");
        fx.assert_books().await;
    }

    async fn a_failed_provisioning_is_retried(db) {
        let fx = fixture(db).await;
        let (_, _, plan_a2) = chain_plans(&fx).await;
        let (ch, app) = (&fx.ch, &fx.app);
        fx.top_up(ch.a2.account, ch.a2c.account, 10_000).await;
        let oid = fx.order(ch.a2c.account, ch.a2c.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect(StatusCode::CREATED).id();
        let mut refusing = Registry::with_builtin();
        refusing.register(Arc::new(ProvisionOrder::new(Arc::new(Refuse))));
        let stats = fx.work_with(refusing).await;
        assert_eq!(stats.failed, 1, "{stats:?}");
        let o = fx.get_order(oid).await;
        assert_eq!(o["status"], "failed");
        assert_eq!(o["reason"], "provisioning failed: the connector answered 409: mailbox name taken");
        let sub = o["subscription_id"].as_i64().unwrap();
        assert_eq!(fx.get_sub(sub).await["status"], "ordered");
        // Retry: back to provisioning, queued again; the (now working) service completes it.
        let r = app.post_empty(format!("/api/v1/orders/{oid}/retry"), ch.a2.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(r["status"], "provisioning");
        app.post_empty(format!("/api/v1/orders/{oid}/retry"), ch.a2.cred()).await.expect_problem(StatusCode::CONFLICT, "not_retryable");
        fx.work().await;
        assert_eq!(fx.get_order(oid).await["status"], "completed");
        assert_eq!(fx.get_sub(sub).await["status"], "active");
        app.post_empty(format!("/api/v1/orders/{oid}/retry"), ch.a2.cred()).await.expect_problem(StatusCode::CONFLICT, "not_retryable");
        fx.assert_books().await;
    }

    // Buy annual on 2025-01-01, upgrade seats 3 → 8 on 2025-03-15, cancel on 2025-07-20.
    //
    // Plan: every 12 months on the anniversary, fees per subscription period; the yearly
    // period costs 120.00; seats 24.00 a year each above the one included; refunds: 30
    // days full, then prorated, 10.00 never refunded.
    //
    // - Purchase: 120.00 + 2 × 24.00 = 168.00 for 2025-01-01 to 2026-01-01.
    // - Upgrade: 5 more seats = 120.00 a year more; 292 of 365 days left → 96.00 now.
    // - Cancel: 264.00 charged for the term; day 200 of 365; prorated 165/365 × 264.00 =
    //   119.342466, less 10.00 kept = 109.342466 → 109.34 credited.
    async fn a_year_buy_upgrade_cancel(db) {
        let fx = fixture(db).await;
        let (ch, app) = (&fx.ch, &fx.app);
        let mut content = monthly(&fx, "Office Annual", 120, 24);
        content["period_type"] = json!({"type": "every_n_months", "months": 12});
        content["recurring_basis"] = json!("subscription_period");
        content["periods"] = json!([period("y1", 12, 120)]);
        content["periods"][0]["refund"] = json!({"full_refund_days": 30, "non_refundable": money(10), "after": "prorated"});
        let plan = fx.create_plan(content).await;

        app.clock.set(at(2025, 1, 1, 10));
        fx.top_up(ch.p.account, ch.pc.account, 20_000).await;
        let so = fx.order(ch.pc.account, ch.pc.cred(), json!({"plan_id": plan, "period_uid": "y1", "quantities": {"seats": 3}})).await.expect(StatusCode::CREATED).json;
        assert_eq!((so["status"].as_str(), so["total_minor"].as_i64()), (Some("paid"), Some(16_800)));
        let sub = so["subscription_id"].as_i64().unwrap();
        let inv = so["details"]["invoice_id"].as_i64().unwrap();
        let lines = app.db.documents().lines(inv).await.unwrap();
        assert_eq!(lines.iter().map(|l| (l.kind.as_str(), l.amount_minor)).collect::<Vec<_>>(), vec![("recurring", 12_000), ("resource", 4_800)]);
        assert_eq!(fx.balance(ch.pc.account).await, -3_200);
        fx.work().await;
        let s = fx.get_sub(sub).await;
        assert_eq!((s["status"].as_str(), s["expires_on"].as_str(), s["next_bill_date"].as_str()), (Some("active"), Some("2026-01-01"), Some("2026-01-01")));
        // What the renewal will charge, and why.
        let preview = app.get(format!("/api/v1/subscriptions/{sub}/invoice-preview"), ch.pc.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(preview["billing_date"], "2026-01-01");
        assert_eq!(preview["total_minor"], 16_800);
        assert!(preview["notes"][0].as_str().unwrap().contains("renews"), "{preview}");

        // Month 3: five more seats, prorated over what is left of the year.
        app.clock.set(at(2025, 3, 15, 10));
        let chg = app.post(format!("/api/v1/subscriptions/{sub}/change"), ch.pc.cred(), json!({"quantities": {"seats": 8}})).await.expect(StatusCode::CREATED).json;
        assert_eq!(chg["type"], "CH");
        assert_eq!(chg["total_minor"], 9_600);
        assert_eq!(chg["details"]["proration"]["remaining_days"], 292);
        // 32.00 of credit does not cover 96.00.
        assert_eq!(chg["status"], "waiting_for_payment");
        let chg_id = chg["id"].as_i64().unwrap();
        fx.top_up(ch.p.account, ch.pc.account, 6_400).await;
        assert_eq!(app.post_empty(format!("/api/v1/orders/{chg_id}/pay"), ch.pc.cred()).await.expect(StatusCode::OK).json["status"], "paid");
        assert_eq!(fx.get_sub(sub).await["quantities"]["seats"], 3, "applied when provisioned");
        fx.work().await;
        assert_eq!(fx.get_order(chg_id).await["status"], "completed");
        assert_eq!(fx.get_sub(sub).await["quantities"]["seats"], 8);
        let preview = app.get(format!("/api/v1/subscriptions/{sub}/invoice-preview"), ch.pc.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(preview["total_minor"], 28_800, "120.00 + 7 × 24.00 from the renewal on");
        assert_eq!(fx.balance(ch.pc.account).await, 0);

        // Month 7: cancel.
        app.clock.set(at(2025, 7, 20, 10));
        let cl = app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), ch.pc.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(cl["type"], "CL");
        let d = &cl["details"];
        assert_eq!((d["charged_minor"].as_i64(), d["days_used"].as_i64(), d["covered_days"].as_i64()), (Some(26_400), Some(200), Some(365)));
        assert_eq!(d["refund_minor"], 10_934);
        let cm = app.db.documents().get(d["credit_memo_id"].as_i64().unwrap()).await.unwrap();
        assert_eq!((cm.kind, cm.total_minor, cm.open_minor), (DocKind::CreditMemo, 10_934, 10_934));
        assert_eq!(fx.get_sub(sub).await["status"], "cancelled");
        assert_eq!(cl["status"], "paid", "unprovisioning is the worker's");
        fx.work().await;
        assert_eq!(fx.get_order(cl["id"].as_i64().unwrap()).await["status"], "completed");
        // Charged 264.00, paid 264.00, 109.34 back as credit.
        assert_eq!(fx.balance(ch.pc.account).await, -10_934);
        app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), ch.pc.cred()).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        let preview = app.get(format!("/api/v1/subscriptions/{sub}/invoice-preview"), ch.pc.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(preview["total_minor"], 0);
        fx.assert_books().await;
    }

    async fn a_deferred_downgrade_waits_for_the_billing_date(db) {
        let fx = fixture(db).await;
        let (ch, app) = (&fx.ch, &fx.app);
        let plan = fx.create_plan(monthly(&fx, "Office Monthly", 10, 5)).await;
        app.clock.set(at(2024, 3, 1, 9));
        fx.top_up(ch.p.account, ch.pc.account, 10_000).await;
        let so = fx.order(ch.pc.account, ch.pc.cred(), json!({"plan_id": plan, "period_uid": "m1", "quantities": {"seats": 5}})).await.expect(StatusCode::CREATED).json;
        let sub = so["subscription_id"].as_i64().unwrap();
        assert_eq!(so["total_minor"], 3_000);
        fx.work().await;
        app.clock.set(at(2024, 3, 11, 9));
        // An upgrade cannot be deferred.
        app.post(format!("/api/v1/subscriptions/{sub}/change"), ch.pc.cred(), json!({"quantities": {"seats": 9}, "defer": true})).await
            .expect_field("defer", Some("upgrade_not_deferrable"));
        let chg = app.post(format!("/api/v1/subscriptions/{sub}/change"), ch.pc.cred(), json!({"quantities": {"seats": 2}, "defer": true})).await.expect(StatusCode::CREATED).json;
        assert_eq!((chg["status"].as_str(), chg["reason"].as_str()), (Some("paid"), Some("deferred until 2024-04-01")));
        assert_eq!(chg["total_minor"], 0);
        // A second change waits for this one.
        app.post(format!("/api/v1/subscriptions/{sub}/change"), ch.pc.cred(), json!({"quantities": {"seats": 3}})).await.expect_problem(StatusCode::CONFLICT, "order_in_progress");
        fx.work().await;
        assert_eq!(fx.get_sub(sub).await["quantities"]["seats"], 5, "not before the billing date");
        let preview = app.get(format!("/api/v1/subscriptions/{sub}/invoice-preview"), ch.pc.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(preview["billing_date"], "2024-04-01");
        assert_eq!(preview["total_minor"], 1_500, "10.00 + 1 seat × 5.00 with the downgrade");
        assert_eq!(preview["lines"][1]["charge_key"], format!("sub:{sub}:res:seats:2024-04-01"));
        app.clock.set(at(2024, 4, 1, 0));
        fx.work().await;
        assert_eq!(fx.get_order(chg["id"].as_i64().unwrap()).await["status"], "completed");
        assert_eq!(fx.get_sub(sub).await["quantities"]["seats"], 2);

        // A downgrade now is credited for the rest of the month: 1 seat × 5.00 × 20/30.
        app.clock.set(at(2024, 4, 11, 9));
        let chg = app.post(format!("/api/v1/subscriptions/{sub}/change"), ch.pc.cred(), json!({"quantities": {"seats": 1}})).await.expect(StatusCode::CREATED).json;
        assert_eq!((chg["status"].as_str(), chg["total_minor"].as_i64()), (Some("paid"), Some(-333)));
        assert!(chg["details"]["credit_memo_id"].as_i64().is_some());
        fx.work().await;
        assert_eq!(fx.get_sub(sub).await["quantities"]["seats"], 1);
        fx.assert_books().await;
    }

    // The invoice preview is what the daily run then bills: same lines, same amounts,
    // for a monthly subscription on its statement day and for an annual one that renews.
    async fn the_preview_is_what_the_daily_run_bills(db) {
        let fx = fixture(db).await;
        let (ch, app) = (&fx.ch, &fx.app);
        let monthly_plan = fx.create_plan(monthly(&fx, "Office Monthly", 10, 5)).await;
        let mut content = monthly(&fx, "Office Annual", 120, 24);
        content["period_type"] = json!({"type": "every_n_months", "months": 12});
        content["recurring_basis"] = json!("subscription_period");
        content["periods"] = json!([period("y1", 12, 120)]);
        let annual_plan = fx.create_plan(content).await;
        for (plan, uid, bought, billed) in [(monthly_plan, "m1", at(2024, 3, 10, 9), (2024, 4, 1)), (annual_plan, "y1", at(2024, 3, 10, 9), (2025, 3, 10))] {
            app.clock.set(bought);
            fx.top_up(ch.p.account, ch.pc.account, 100_000).await;
            let so = fx.order(ch.pc.account, ch.pc.cred(), json!({"plan_id": plan, "period_uid": uid, "quantities": {"seats": 4}})).await.expect(StatusCode::CREATED).json;
            let sub = so["subscription_id"].as_i64().unwrap();
            fx.work().await;
            let preview = app.get(format!("/api/v1/subscriptions/{sub}/invoice-preview"), ch.pc.cred()).await.expect(StatusCode::OK).json;
            let day = chrono::NaiveDate::from_ymd_opt(billed.0, billed.1, billed.2).unwrap();
            assert_eq!(preview["billing_date"], day.to_string());
            let want: Vec<(String, i64, String)> = preview["lines"].as_array().unwrap().iter()
                .map(|l| (l["kind"].as_str().unwrap().to_string(), l["amount_minor"].as_i64().unwrap(), l["period_start"].as_str().unwrap().to_string()))
                .collect();
            assert!(!want.is_empty());
            app.clock.set(at(billed.0, billed.1, billed.2, 6));
            cascade_worker::billing_run::run(&app.db, app.clock.as_ref(), day, &Default::default(), |_, _| {}).await.unwrap();
            let docs = app.db.documents().of_account(AccountId(ch.pc.account), Some(DocKind::Invoice), None, 1).await.unwrap();
            let lines = app.db.documents().lines(docs.items[0].id).await.unwrap();
            let got: Vec<(String, i64, String)> = lines.into_iter().filter(|l| l.subscription_id == Some(sub))
                .map(|l| (l.kind, l.amount_minor, l.period_start.unwrap_or_default())).collect();
            assert_eq!(got, want, "{preview}");
            assert_eq!(docs.items[0].subtotal_minor, preview["total_minor"].as_i64().unwrap());
            app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), ch.p.cred()).await.expect(StatusCode::OK);
        }
        fx.assert_books().await;
    }

    async fn renewal_restore_and_auto_renew(db) {
        let fx = fixture(db).await;
        let (ch, app) = (&fx.ch, &fx.app);
        let plan = fx.create_plan(monthly(&fx, "Office Monthly", 10, 5)).await;
        app.clock.set(at(2024, 3, 1, 9));
        let so = fx.order(ch.pc.account, ch.p.cred(), json!({"plan_id": plan, "period_uid": "m1", "auto_renew": {"mode": "off"}})).await.expect(StatusCode::CREATED).json;
        let sub = so["subscription_id"].as_i64().unwrap();
        fx.top_up(ch.p.account, ch.pc.account, 1_000).await;
        app.post_empty(format!("/api/v1/orders/{}/pay", so["id"]), ch.pc.cred()).await.expect(StatusCode::OK);
        fx.work().await;
        assert_eq!(fx.get_sub(sub).await["auto_renew"], json!({"mode": "off"}));
        let preview = app.get(format!("/api/v1/subscriptions/{sub}/invoice-preview"), ch.pc.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(preview["total_minor"], 0);
        assert!(preview["notes"][0].as_str().unwrap().contains("auto-renew is off"), "{preview}");

        // RN: billed period by period, so the renewal itself charges nothing; the term extends.
        let rn = app.post_empty(format!("/api/v1/subscriptions/{sub}/renew"), ch.pc.cred()).await.expect(StatusCode::CREATED).json;
        assert_eq!((rn["type"].as_str(), rn["status"].as_str()), (Some("RN"), Some("completed")));
        assert_eq!(fx.get_sub(sub).await["expires_on"], "2024-05-01");

        // Auto-renew: the customer's admin may; a customer user without CHANGE_AUTO_RENEW may not.
        let patched = app.patch(format!("/api/v1/subscriptions/{sub}"), ch.pc.cred(), json!({"auto_renew": {"mode": "on_expiry"}})).await.expect(StatusCode::OK).json;
        assert_eq!(patched["auto_renew"], json!({"mode": "on_expiry"}));
        let role = app.create_role(ch.pc.cred(), ch.pc.account, "Billing only", common::grants(&["ACCOUNTS_MANAGE", "BILLING_MANAGE", "BILLING_VIEW"])).await;
        let user = app.create_user(ch.pc.cred(), ch.pc.account, "pc-billing", &[role]).await;
        let limited = Cred::Bearer(app.mint_token(user).await);
        app.patch(format!("/api/v1/subscriptions/{sub}"), &limited, json!({"auto_renew": {"mode": "off"}})).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
        app.patch(format!("/api/v1/subscriptions/{sub}"), ch.p.cred(), json!({"auto_renew": {"mode": "days_before", "days": 0}})).await.expect_field("auto_renew.days", Some("out_of_range"));
        app.patch(format!("/api/v1/subscriptions/{sub}"), ch.p.cred(), json!({"auto_renew": {"mode": "days_before", "days": 7}, "x": 1})).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        // The vendor may, for the customer.
        app.patch(format!("/api/v1/subscriptions/{sub}"), ch.p.cred(), json!({"auto_renew": {"mode": "days_before", "days": 7}})).await.expect(StatusCode::OK);

        // Restore: terminated → active while the data exists; 422 data_gone after.
        app.post_empty(format!("/api/v1/subscriptions/{sub}/restore"), ch.pc.cred()).await.expect_problem(StatusCode::CONFLICT, "not_terminated");
        exec(&app.db, &format!("UPDATE subscriptions SET status = 'terminated' WHERE id = {sub}")).await;
        assert_eq!(app.post_empty(format!("/api/v1/subscriptions/{sub}/restore"), ch.pc.cred()).await.expect(StatusCode::OK).json["status"], "active");
        exec(&app.db, &format!("UPDATE subscriptions SET status = 'terminated', data_removed = TRUE WHERE id = {sub}")).await;
        app.post_empty(format!("/api/v1/subscriptions/{sub}/restore"), ch.pc.cred()).await.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "data_gone");
        assert_eq!(fx.get_sub(sub).await["status"], "terminated");
        fx.assert_books().await;
    }

    async fn bad_orders_are_refused_and_name_the_field(db) {
        let fx = fixture(db).await;
        let (p_plan, _, plan_a2) = chain_plans(&fx).await;
        let (ch, app) = (&fx.ch, &fx.app);
        let order = |body: Value| fx.order(ch.a2c.account, ch.a2c.cred(), body);

        // A plan outside the vendor's catalog view (P's original, not A2's copy) or unknown.
        order(json!({"plan_id": p_plan, "period_uid": "m1"})).await.expect_field("plan_id", Some("unknown_plan"));
        order(json!({"plan_id": 999_999, "period_uid": "m1"})).await.expect_field("plan_id", Some("unknown_plan"));
        // Unpublished.
        let mut c = app.get(format!("/api/v1/plans/{plan_a2}"), ch.a2.cred()).await.json["content"].clone();
        c["published"] = json!(false);
        app.req(axum::http::Method::PUT, format!("/api/v1/plans/{plan_a2}")).cred(ch.a2.cred()).json(&json!({"content": c.clone()})).send().await.expect(StatusCode::OK);
        order(json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect_field("plan_id", Some("not_on_sale"));
        c["published"] = json!(true);
        app.req(axum::http::Method::PUT, format!("/api/v1/plans/{plan_a2}")).cred(ch.a2.cred()).json(&json!({"content": c})).send().await.expect(StatusCode::OK);
        // Period, quantities, unknown rate; all reported at once.
        let r = order(json!({"plan_id": plan_a2, "period_uid": "y9", "quantities": {"seats": 51, "gpus": 1}})).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<String> = r.field_errors().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["period_uid", "quantities.gpus", "quantities.seats"]);
        order(json!({"plan_id": plan_a2, "period_uid": "m1", "quantities": {"seats": 0}})).await.expect_field("quantities.seats", Some("out_of_range"));
        order(json!({"plan_id": plan_a2, "period_uid": "m1", "bogus": 1})).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        // Orders are for customers, by their admin or a seller above.
        fx.order(ch.a2.account, ch.a.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect_field("account_id", Some("not_a_customer"));
        fx.order(ch.a2c.account, ch.bc.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect(StatusCode::NOT_FOUND);

        // Attributes and parameters: required, typed, known.
        let mut attrs = monthly(&fx, "Mail", 3, 1);
        attrs["order_attributes"] = json!([{"key": "domain", "label": {"default": "en", "values": {"en": "Domain"}}, "kind": "text", "required": true, "max_length": 20}]);
        attrs["service_parameters"] = json!([{"key": "mailboxes", "label": {"default": "en", "values": {"en": "Mailboxes"}}, "kind": "integer", "required": false, "min": 1, "max": 10}]);
        let mail = fx.create_plan(attrs).await;
        let pc = |body: Value| fx.order(ch.pc.account, ch.pc.cred(), body);
        pc(json!({"plan_id": mail, "period_uid": "m1"})).await.expect_field("attributes.domain", Some("required"));
        pc(json!({"plan_id": mail, "period_uid": "m1", "attributes": {"domain": "example.com"}, "parameters": {"mailboxes": 11}})).await
            .expect_field("parameters.mailboxes", Some("out_of_range"));
        pc(json!({"plan_id": mail, "period_uid": "m1", "attributes": {"domain": "example.com", "colour": "red"}})).await
            .expect_field("attributes.colour", Some("unknown_attribute"));
        let ok = pc(json!({"plan_id": mail, "period_uid": "m1", "attributes": {"domain": "example.com"}, "parameters": {"mailboxes": 3}})).await.expect(StatusCode::CREATED).json;
        let sub = ok["subscription_id"].as_i64().unwrap();
        assert_eq!(fx.get_sub(sub).await["attributes"], json!({"attributes": {"domain": "example.com"}, "parameters": {"mailboxes": "3"}}));

        // Unique group: two plans of one group exclude each other for a customer.
        let mut g1 = monthly(&fx, "Basic", 5, 1);
        g1["unique_group"] = json!("office");
        let mut g2 = monthly(&fx, "Premium", 9, 1);
        g2["unique_group"] = json!("office");
        let (g1, g2) = (fx.create_plan(g1).await, fx.create_plan(g2).await);
        let first = pc(json!({"plan_id": g1, "period_uid": "m1"})).await.expect(StatusCode::CREATED).json;
        pc(json!({"plan_id": g2, "period_uid": "m1"})).await.expect_field("plan_id", Some("unique_group_clash"));
        // Another customer is not affected; a cancelled subscription frees the group.
        fx.order(ch.a2c.account, ch.a2.cred(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect(StatusCode::CREATED);
        app.post_empty(format!("/api/v1/subscriptions/{}/cancel", first["subscription_id"]), ch.pc.cred()).await.expect(StatusCode::OK);
        pc(json!({"plan_id": g2, "period_uid": "m1"})).await.expect(StatusCode::CREATED);

        // Cancelling: another customer's subscription is invisible; a customer user
        // without CANCEL_SUBSCRIPTIONS is refused; its vendor may.
        app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), ch.bc.cred()).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
        app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), ch.a.cred()).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
        let role = app.create_role(ch.pc.cred(), ch.pc.account, "No cancel", common::grants(&["ACCOUNTS_MANAGE", "BILLING_MANAGE", "BILLING_VIEW"])).await;
        let user = app.create_user(ch.pc.cred(), ch.pc.account, "pc-nocancel", &[role]).await;
        let limited = Cred::Bearer(app.mint_token(user).await);
        app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), &limited).await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
        let cl = app.post_empty(format!("/api/v1/subscriptions/{sub}/cancel"), ch.p.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(cl["type"], "CL");
        // The unpaid SO was cancelled with it; its invoice is credited in full (within 30 days, nothing kept).
        assert_eq!(fx.get_order(ok["id"].as_i64().unwrap()).await["status"], "cancelled");
        // Bought on 2023-11-14: 17 of 30 days of 3.00 until the statement day = 1.70, all given back.
        assert_eq!(cl["details"]["refund_minor"], 170);
        // The refund settles that subscription's own unpaid invoice first.
        let inv = app.db.documents().get(ok["details"]["invoice_id"].as_i64().unwrap()).await.unwrap();
        assert_eq!((inv.total_minor, inv.open_minor), (170, 0));
        fx.assert_books().await;
    }
}

// ---- one step: place order and authorize ----

fn checkout_body(vendor: i64, login: &str, plan: i64, card: Option<&str>) -> Value {
    let mut b = json!({
        "vendor_id": vendor,
        "account": {"name": format!("{login} Ltd"), "country": "DE", "language": "en", "contact": {"email": format!("{login}@example.com")}},
        "user": {"login": login, "display_name": "First User", "email": format!("{login}@example.com"), "password": "correct horse battery"},
        "items": [{"plan_id": plan, "period_uid": "m1", "quantities": {"seats": 2},
                   "name_servers": ["NS1.Example.net.", "ns2.example.net"]}],
    });
    if let Some(c) = card {
        b["payment"] = json!({"method": "card", "card_number": c});
    }
    b
}

async fn counts(db: &Db) -> (i64, i64, i64, i64, i64) {
    (
        sql(db, "SELECT COUNT(*) FROM accounts").await,
        sql(db, "SELECT COUNT(*) FROM users").await,
        sql(db, "SELECT COUNT(*) FROM orders").await,
        sql(db, "SELECT COUNT(*) FROM documents").await,
        sql(db, "SELECT COUNT(*) FROM subscriptions").await,
    )
}

both_backends! {
    async fn place_order_and_authorize_creates_customer_user_order_and_payment(db) {
        let fx = fixture(db).await;
        let (ch, app) = (&fx.ch, &fx.app);
        app.clock.set(at(2024, 3, 1, 9));
        let (_, _, a2_plan) = chain_plans(&fx).await;
        let body = checkout_body(ch.a2.account, "newco-admin", a2_plan, Some("4242 4242 4242 4242"));
        let r = app.req(axum::http::Method::POST, "/api/v1/place-order-and-authorize").cred(ch.a2.cred())
            .header("idempotency-key", "checkout-1").json(&body).send().await.expect(StatusCode::CREATED).json;
        let account = r["account"]["id"].as_i64().unwrap();
        assert_eq!(r["account"]["vendor_id"].as_i64(), Some(ch.a2.account));
        assert_eq!(r["user"]["account_id"].as_i64(), Some(account));
        // A2's price: 15.00 + 1 seat beyond the one included × 8.00 = 23.00 for March (a
        // whole month from the 1st).
        assert_eq!((r["payment"]["status"].as_str(), r["payment"]["amount_minor"].as_i64()), (Some("approved"), Some(2300)));
        let order = &r["orders"][0];
        assert_eq!((order["status"].as_str(), order["total_minor"].as_i64()), (Some("paid"), Some(2300)));
        assert_eq!(order["details"]["name_servers"], json!(["ns1.example.net", "ns2.example.net"]));
        // The chain's wholesale debts at each vendor's price: A2 owes A 12 + 6, A owes P 10 + 5.
        let o = fx.get_order(order["id"].as_i64().unwrap()).await;
        let mut w = wholesale_of(&o);
        w.sort();
        let mut want = vec![(ch.a2.account, ch.a.account, 1800), (ch.a.account, ch.p.account, 1500)];
        want.sort();
        assert_eq!(w, want);
        let sub = fx.get_sub(order["subscription_id"].as_i64().unwrap()).await;
        assert_eq!(sub["attributes"]["name_servers"], json!(["ns1.example.net", "ns2.example.net"]), "{sub}");
        // The invoice is settled by the card payment; the customer owes nothing.
        let inv = order["details"]["invoice_id"].as_i64().unwrap();
        let d = app.get(format!("/api/v1/documents/{inv}"), ch.a2.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(d["open_minor"].as_i64(), Some(0));
        assert_eq!(fx.balance(account).await, 0);
        // The first user is the new account's administrator and can log in.
        app.login("newco-admin", "correct horse battery").await.expect(StatusCode::OK);
        // The same request again (same Idempotency-Key): the first answer, nothing new.
        let before = counts(&app.db).await;
        let again = app.req(axum::http::Method::POST, "/api/v1/place-order-and-authorize").cred(ch.a2.cred())
            .header("idempotency-key", "checkout-1").json(&body).send().await.expect(StatusCode::CREATED);
        assert_eq!(again.header("idempotency-replayed"), Some("true"));
        assert_eq!(again.json["account"]["id"].as_i64(), Some(account));
        assert_eq!(counts(&app.db).await, before);
        // Provisioning runs as a task.
        fx.work().await;
        assert_eq!(fx.get_order(order["id"].as_i64().unwrap()).await["status"], "completed");
        fx.assert_books().await;
    }

    async fn place_order_and_authorize_is_all_or_nothing(db) {
        let fx = fixture(db).await;
        let (ch, app) = (&fx.ch, &fx.app);
        app.clock.set(at(2024, 3, 1, 9));
        let (p_plan, _, a2_plan) = chain_plans(&fx).await;
        let url = "/api/v1/place-order-and-authorize";
        let before = counts(&app.db).await;
        // A declined card: 402, and not even the account is left behind.
        let r = app.post(url, ch.a2.cred(), checkout_body(ch.a2.account, "declined", a2_plan, Some("4000 0000 0000 0000")))
            .await.expect_problem(StatusCode::PAYMENT_REQUIRED, "card_declined");
        assert_eq!(r.field_errors(), vec![("payment.card_number".to_string(), "card_declined".to_string())]);
        assert_eq!(counts(&app.db).await, before);
        // Bad input anywhere is named at once, nothing written.
        let mut bad = checkout_body(ch.a2.account, "bad", a2_plan, Some("4242424242424242"));
        bad["user"]["email"] = json!("not-an-email");
        bad["account"]["country"] = json!("XX");
        bad["items"][0]["name_servers"] = json!(["ns1..example.net", "ns2.example.net"]);
        bad["items"][0]["quantities"] = json!({"seats": 51});
        bad["items"].as_array_mut().unwrap().push(json!({"plan_id": p_plan, "period_uid": "m1"}));
        let r = app.post(url, ch.a2.cred(), bad).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<String> = r.field_errors().into_iter().map(|(f, _)| f).collect();
        for f in ["account.country", "user.email", "items[0].name_servers[0]", "items[0].quantities.seats", "items[1].plan_id"] {
            assert!(fields.contains(&f.to_string()), "{f} not in {fields:?}");
        }
        let mut none = checkout_body(ch.a2.account, "none", a2_plan, None);
        none["items"] = json!([]);
        app.post(url, ch.a2.cred(), none).await.expect_field("items", Some("out_of_range"));
        let mut manual = checkout_body(ch.a2.account, "manual", a2_plan, None);
        manual["payment"] = json!({"method": "bank_transfer"});
        app.post(url, ch.a2.cred(), manual).await.expect_field("payment.method", Some("unsupported"));
        // A login taken: the whole call fails, the account it would have created included.
        app.post(url, ch.a2.cred(), checkout_body(ch.a2.account, &ch.a.admin_login, a2_plan, None))
            .await.expect_field("user.login", Some("login_taken"));
        // Another seller's branch: as if it did not exist.
        app.post(url, ch.b.cred(), checkout_body(ch.a2.account, "foreign", a2_plan, None))
            .await.expect_field("vendor_id", Some("unknown_vendor"));
        // A customer cannot create accounts beside itself (its vendor is above it: unknown).
        app.post(url, ch.a2c.cred(), checkout_body(ch.a2.account, "cust", a2_plan, None)).await.expect_field("vendor_id", Some("unknown_vendor"));
        assert_eq!(counts(&app.db).await, before);

        // Without a payment the order waits for one; a pending card waits at the gateway.
        let r = app.post(url, ch.a2.cred(), checkout_body(ch.a2.account, "waits", a2_plan, None)).await.expect(StatusCode::CREATED).json;
        assert_eq!((r["payment"]["status"].as_str(), r["orders"][0]["status"].as_str()), (Some("none"), Some("waiting_for_payment")));
        let r = app.post(url, ch.a2.cred(), checkout_body(ch.a2.account, "pending", a2_plan, Some("5555 4444 3333 1111"))).await.expect(StatusCode::CREATED).json;
        assert_eq!((r["payment"]["status"].as_str(), r["orders"][0]["status"].as_str()), (Some("pending"), Some("waiting_for_payment")));
        let reference = r["payment"]["pending"]["reference"].as_str().unwrap().to_string();
        app.post_empty(format!("/api/v1/payments/pending/{reference}/confirm"), ch.a2.cred()).await.expect(StatusCode::CREATED);
        let order = r["orders"][0]["id"].as_i64().unwrap();
        app.post_empty(format!("/api/v1/orders/{order}/pay"), ch.a2.cred()).await.expect(StatusCode::OK);
        assert_eq!(fx.get_order(order).await["status"], "paid");
        fx.assert_books().await;
    }
}

// The session cache (issue 5): a hold made through the API is seen by the customer's
// cached session on its very next request.
both_backends! {
    async fn a_hold_reaches_a_cached_customer_session_at_once(db) {
        let fx = fixture(db).await;
        let (_, _, plan_a2) = chain_plans(&fx).await;
        let (ch, app) = (&fx.ch, &fx.app);
        fx.top_up(ch.a2.account, ch.a2c.account, 10_000).await;
        app.store_user(ch.a2c.account, "a2c-shopper", true, &[ch.admin_role]).await;
        let s = app.session("a2c-shopper", common::PASSWORD).await;
        app.get("/panel", &s).await.expect(StatusCode::OK);
        app.get("/api/v1/me", &s).await.expect(StatusCode::OK);
        app.post(format!("/api/v1/accounts/{}/status", ch.a2c.account), ch.a2.cred(), json!({"status": "admin_hold"})).await.expect(StatusCode::OK);
        let o = fx.order(ch.a2c.account, s.clone(), json!({"plan_id": plan_a2, "period_uid": "m1"})).await.expect(StatusCode::CREATED).json;
        assert_eq!((o["status"].as_str(), o["reason"].as_str()), (Some("waiting_for_payment"), Some("account on hold")));
        let oid = o["id"].as_i64().unwrap();
        app.post_empty(format!("/api/v1/orders/{oid}/pay"), s.clone()).await.expect_problem(StatusCode::CONFLICT, "account_on_hold");
        // Released: paid on the next request.
        app.post(format!("/api/v1/accounts/{}/status", ch.a2c.account), ch.a2.cred(), json!({"status": "active"})).await.expect(StatusCode::OK);
        assert_eq!(app.post_empty(format!("/api/v1/orders/{oid}/pay"), s).await.expect(StatusCode::OK).json["status"], "paid");
    }
}

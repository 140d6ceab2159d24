//! Money through the API, on both backends: documents and their PDFs, payments (manual,
//! standalone top-ups, card through the test gateway: approved, pending, declined;
//! idempotent retries), applications, credit and debit memos, refunds, balances,
//! customer classes and credit terms; every bad input refused with nothing written;
//! isolation between resellers. After every scenario the books balance.

mod common;

use axum::http::{Method, StatusCode};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::privilege::BuiltinRole;
use cascade_store::documents::{DocKind, Documents, NewDocument, NewLine};
use cascade_store::{Db, on_db};
use cascade_testkit::both_backends;
use common::*;
use serde_json::{Value, json};

const OK: StatusCode = StatusCode::OK;
const CREATED: StatusCode = StatusCode::CREATED;
const ACCEPTED: StatusCode = StatusCode::ACCEPTED;
const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
const NOT_FOUND: StatusCode = StatusCode::NOT_FOUND;

/// The channel of `common::Channel`, plus two staff users at reseller A: one with the
/// built-in billing role, one technical (no billing privileges).
struct Fx {
    app: TestApp,
    ch: Channel,
    a_billing: Cred,
    a_tech: Cred,
}

async fn fx(db: Db) -> Fx {
    let app = TestApp::new(db);
    let ch = Channel::build(&app).await;
    let billing = app.builtin_role(BuiltinRole::BillingStaff).await;
    let tech = app.builtin_role(BuiltinRole::TechnicalStaff).await;
    let u = app
        .store_user(ch.a.account, "a-billing", false, &[billing])
        .await;
    let a_billing = Cred::Bearer(app.mint_token(u).await);
    let u = app.store_user(ch.a.account, "a-tech", false, &[tech]).await;
    let a_tech = Cred::Bearer(app.mint_token(u).await);
    Fx {
        app,
        ch,
        a_billing,
        a_tech,
    }
}

impl Fx {
    /// An invoice written the way the billing run writes one: (amount, description) lines
    /// with charge keys, `tax_bp` on the subtotal. Returns its id.
    async fn invoice(&self, issuer: i64, account: i64, lines: &[(i64, &str)], tax_bp: i64) -> i64 {
        let n = self.app.next();
        let lines: Vec<NewLine> = lines
            .iter()
            .enumerate()
            .map(|(i, (amount, d))| NewLine {
                subscription_id: None,
                kind: "recurring".into(),
                description: d.to_string(),
                quantity: 1,
                unit_price_micro: amount * 10_000,
                amount_minor: *amount,
                period_start: Some("2023-11-01".into()),
                period_end: Some("2023-12-01".into()),
                charge_key: Some(format!("test:{account}:{n}:{i}")),
            })
            .collect();
        let head = NewDocument {
            kind: DocKind::Invoice,
            issuer: AccountId(issuer),
            account: AccountId(account),
            currency: "EUR",
            issue_date: "2023-11-14",
            due_date: Some("2023-11-28"),
            charge_date: None,
            tax_bp,
            method: None,
            external_ref: None,
            idem_key: None,
        };
        let mut tx = self.app.db.begin().await.unwrap();
        let (doc, _) = Documents::issue(&mut tx, &head, &lines, Timestamp(T0.0))
            .await
            .unwrap()
            .expect("an invoice");
        tx.commit().await.unwrap();
        doc.id
    }

    async fn doc(&self, id: i64) -> Value {
        self.app
            .get(format!("/api/v1/documents/{id}"), self.ch.p.cred())
            .await
            .expect(OK)
            .json
    }

    async fn open(&self, id: i64) -> i64 {
        self.doc(id).await["open_minor"].as_i64().unwrap()
    }

    async fn balance(&self, account: i64) -> Value {
        self.app
            .get(
                format!("/api/v1/accounts/{account}/balance"),
                self.ch.p.cred(),
            )
            .await
            .expect(OK)
            .json
    }

    async fn pay(&self, cred: &Cred, account: i64, body: Value) -> Resp {
        self.app
            .post(format!("/api/v1/accounts/{account}/payments"), cred, body)
            .await
    }

    /// What a refused request must leave untouched.
    async fn snapshot(&self) -> (i64, i64, i64, i64, i64, i64) {
        let db = &self.app.db;
        (
            count(db, "SELECT COUNT(*) FROM documents").await,
            count(db, "SELECT COUNT(*) FROM allocations").await,
            count(db, "SELECT COUNT(*) FROM payment_attempts").await,
            count(
                db,
                "SELECT CAST(COALESCE(SUM(open_minor), 0) AS BIGINT) FROM documents",
            )
            .await,
            self.app.event_count().await,
            self.app
                .db
                .documents()
                .balance(AccountId(self.ch.ac.account), "EUR")
                .await
                .unwrap(),
        )
    }

    /// The books invariant, for every issuer of the channel.
    async fn books_balance(&self) {
        for p in self.ch.all() {
            let bad = self
                .app
                .db
                .documents()
                .unbalanced(AccountId(p.account))
                .await
                .unwrap();
            assert!(
                bad.is_empty(),
                "documents {bad:?} of issuer {} do not balance",
                p.tag
            );
        }
    }

    async fn events(&self, account: i64, kind: &str) -> Vec<Value> {
        self.app
            .events_of(account)
            .await
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.payload)
            .collect()
    }
}

async fn count(db: &Db, q: &str) -> i64 {
    let (n,): (i64,) = on_db!(db, p => sqlx::query_as(q).fetch_one(p).await).unwrap();
    n
}

async fn exec(db: &Db, q: &str) {
    let mut tx = db.begin().await.unwrap();
    cascade_store::on_tx!(&mut tx, c => sqlx::query(q).execute(c).await.map(|r| r.rows_affected()))
        .unwrap();
    tx.commit().await.unwrap();
}

fn ids(r: &Resp) -> Vec<i64> {
    r.item_ids()
}

both_backends! {
    async fn card_payments_are_refused_without_a_gateway(db) {
        let app = TestApp::with_config(db, cascade_http::HttpConfig { card_gateway: "none".into(), ..Default::default() });
        let ch = Channel::build(&app).await;
        let ac = &ch.ac;
        let before = count(&app.db, "SELECT COUNT(*) FROM documents").await;
        let r = app.post(format!("/api/v1/accounts/{}/payments", ac.account), &ac.cred(),
            json!({"amount_minor": 1_000, "currency": "EUR", "method": "card", "card_number": "4242 4242 4242 4242"})).await;
        assert_eq!(r.field_errors(), vec![("method".to_string(), "no_card_gateway".to_string())]);
        assert_eq!(count(&app.db, "SELECT COUNT(*) FROM documents").await, before, "nothing written");
    }

    async fn payments_applied_and_standalone_top_ups(db) {
        let f = fx(db).await;
        let (a, ac) = (&f.ch.a, &f.ch.ac);
        let inv1 = f.invoice(a.account, ac.account, &[(10_000, "Office Suite, 10 seats")], 1900).await;
        let inv2 = f.invoice(a.account, ac.account, &[(3_000, "Storage"), (2_000, "Backup")], 0).await;
        assert_eq!(f.balance(ac.account).await["balance_minor"], 16_900);
        assert_eq!(f.balance(ac.account).await["open_invoices"], 2);

        // A bank transfer recorded by the seller pays both invoices; the rest tops up.
        let r = f.pay(&a.cred(), ac.account, json!({"amount_minor": 20_000, "currency": "EUR", "method": "bank_transfer",
            "apply_to": [inv1, inv2], "external_ref": "SEPA 2023-11-14 #77"})).await.expect(CREATED);
        let pay1 = r.id();
        assert_eq!(r.json["kind"], "payment");
        assert_eq!(r.json["status"], "issued");
        assert_eq!(r.json["method"], "bank_transfer");
        assert_eq!(r.json["number"], "PAY-000001");
        assert_eq!(r.json["issuer_account_id"], a.account);
        assert_eq!(r.json["total_minor"], 20_000);
        assert_eq!(r.json["open_minor"], 20_000 - 11_900 - 5_000);
        assert_eq!(r.json["allocations"].as_array().unwrap().len(), 2);
        assert_eq!((f.open(inv1).await, f.open(inv2).await), (0, 0));
        let b = f.balance(ac.account).await;
        assert_eq!((b["balance_minor"].as_i64(), b["open_invoices"].as_i64(), b["currency"].as_str()), (Some(-3_100), Some(0), Some("EUR")));

        // A standalone payment stays open as a top-up.
        let pay2 = f.pay(&f.a_billing, ac.account, json!({"amount_minor": 5_000, "currency": "EUR", "method": "check"})).await.expect(CREATED);
        assert_eq!(pay2.json["open_minor"], 5_000);
        assert_eq!(pay2.json["allocations"], json!([]));
        let pay2 = pay2.id();
        assert_eq!(f.balance(ac.account).await["balance_minor"], -8_100);

        // A new invoice; the top-up is applied in two parts, the second by the customer.
        let inv3 = f.invoice(a.account, ac.account, &[(10_000, "Renewal")], 0).await;
        assert_eq!(f.balance(ac.account).await["balance_minor"], 1_900);
        let r = f.app.post(format!("/api/v1/payments/{pay2}/apply"), a.cred(), json!({"invoice_id": inv3, "amount_minor": 4_000})).await.expect(OK);
        assert_eq!((r.json["payment"]["open_minor"].as_i64(), r.json["invoice"]["open_minor"].as_i64()), (Some(1_000), Some(6_000)));
        f.app.post(format!("/api/v1/payments/{pay2}/apply"), ac.cred(), json!({"invoice_id": inv3, "amount_minor": 1_000})).await.expect(OK);
        f.app.post(format!("/api/v1/payments/{pay1}/apply"), ac.cred(), json!({"invoice_id": inv3, "amount_minor": 3_100})).await.expect(OK);
        assert_eq!((f.open(pay1).await, f.open(pay2).await, f.open(inv3).await), (0, 0, 1_900));
        let b = f.balance(ac.account).await;
        assert_eq!((b["balance_minor"].as_i64(), b["open_invoices"].as_i64(), b["open_invoices_minor"].as_i64()), (Some(1_900), Some(1), Some(1_900)));
        assert_eq!(b["credit_available"], Value::Null);

        // The customer sees its documents, newest first, by kind, page by page.
        let all = f.app.get(format!("/api/v1/accounts/{}/documents", ac.account), ac.cred()).await.expect(OK);
        assert_eq!(ids(&all), vec![inv3, pay2, pay1, inv2, inv1]);
        assert!(all.items()[0].get("lines").is_none(), "lists carry no lines");
        let payments = f.app.get(format!("/api/v1/accounts/{}/documents?kind=payment", ac.account), ac.cred()).await.expect(OK);
        assert_eq!(ids(&payments), vec![pay2, pay1]);
        let p1 = f.app.get(format!("/api/v1/accounts/{}/documents?kind=invoice&limit=2", ac.account), ac.cred()).await.expect(OK);
        assert_eq!(ids(&p1), vec![inv3, inv2]);
        let cursor = p1.json["next_cursor"].as_str().unwrap().to_string();
        let p2 = f.app.get(format!("/api/v1/accounts/{}/documents?kind=invoice&limit=2&cursor={cursor}", ac.account), ac.cred()).await.expect(OK);
        assert_eq!(ids(&p2), vec![inv1]);
        assert_eq!(p2.json["next_cursor"], Value::Null);
        f.app.get(format!("/api/v1/accounts/{}/documents?kind=bill", ac.account), ac.cred()).await.expect_field("kind", Some("invalid_kind"));

        // One document: its lines and allocations.
        let d = f.app.get(format!("/api/v1/documents/{inv2}"), ac.cred()).await.expect(OK).json;
        assert_eq!(d["lines"].as_array().unwrap().len(), 2);
        assert_eq!(d["lines"][0]["description"], "Storage");
        assert_eq!(d["allocations"], json!([{"id": d["allocations"][0]["id"], "from_document_id": pay1, "to_document_id": inv2,
            "amount_minor": 5_000, "created_at": d["allocations"][0]["created_at"]}]));
        assert_eq!(f.doc(inv1).await["tax_rate_bp"], 1900);

        // Money that arrived outside Cascade is recorded by the seller, not the customer.
        f.pay(&ac.cred(), ac.account, json!({"amount_minor": 100, "currency": "EUR", "method": "bank_transfer"})).await
            .expect_problem(FORBIDDEN, "forbidden");
        // Technical staff have no billing privileges.
        f.pay(&f.a_tech, ac.account, json!({"amount_minor": 100, "currency": "EUR", "method": "check"})).await.expect_problem(FORBIDDEN, "forbidden");

        let recorded = f.events(ac.account, "payment.recorded").await;
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0]["applied"], json!([{"document_id": inv1, "amount_minor": 11_900}, {"document_id": inv2, "amount_minor": 5_000}]));
        assert_eq!(f.events(ac.account, "payment.applied").await.len(), 3);
        f.books_balance().await;
    }

    async fn card_payments_approved_declined_pending(db) {
        let f = fx(db).await;
        let (a, ac) = (&f.ch.a, &f.ch.ac);
        let inv = f.invoice(a.account, ac.account, &[(10_000, "Office Suite")], 1900).await;

        // Approved: the customer pays its invoice by card.
        let r = f.pay(&ac.cred(), ac.account, json!({"amount_minor": 11_900, "currency": "EUR", "method": "card",
            "card_number": "4242 4242 4242 4242", "apply_to": [inv]})).await.expect(CREATED);
        assert_eq!(r.json["method"], "card");
        assert!(r.json["external_ref"].as_str().unwrap().starts_with("tg_ch_"));
        assert_eq!(r.json["open_minor"], 0);
        assert!(!r.text.contains("4242424242424242") && !r.text.contains("4242 4242"), "the card number is never returned");
        assert_eq!(f.open(inv).await, 0);

        // Declined: nothing that moves money, an event with the last four digits only.
        let before = f.snapshot().await;
        let r = f.pay(&ac.cred(), ac.account, json!({"amount_minor": 5_000, "currency": "EUR", "method": "card",
            "card_number": "4000000000000000"})).await.expect_problem(StatusCode::PAYMENT_REQUIRED, "card_declined");
        assert_eq!(r.field_errors(), vec![("card_number".to_string(), "card_declined".to_string())]);
        let after = f.snapshot().await;
        assert_eq!((before.0, before.1, before.2, before.3, before.5), (after.0, after.1, after.2, after.3, after.5));
        let declined = f.events(ac.account, "payment.declined").await;
        assert_eq!(declined.len(), 1);
        assert_eq!((declined[0]["card_last4"].as_str(), declined[0]["amount_minor"].as_i64()), (Some("0000"), Some(5_000)));
        assert!(!declined[0].to_string().contains("4000000000000000"));

        // Pending: 202 and a reference; no document until the gateway settles it.
        let inv2 = f.invoice(a.account, ac.account, &[(2_500, "Backup")], 0).await;
        let before = f.snapshot().await;
        let r = f.pay(&ac.cred(), ac.account, json!({"amount_minor": 4_000, "currency": "EUR", "method": "card",
            "card_number": "5555-4444-3333-1111", "apply_to": [inv2]})).await.expect(ACCEPTED);
        assert_eq!((r.json["status"].as_str(), r.json["amount_minor"].as_i64()), (Some("pending"), Some(4_000)));
        let reference = r.json["reference"].as_str().unwrap().to_string();
        assert_eq!(r.json["confirm_url"], format!("/api/v1/payments/pending/{reference}/confirm"));
        let mid = f.snapshot().await;
        assert_eq!((mid.0, mid.1, mid.3, mid.5), (before.0, before.1, before.3, before.5), "a pending charge is not money");
        assert_eq!(mid.2, before.2 + 1);
        assert_eq!(f.open(inv2).await, 2_500);

        // Another reseller cannot see the pending charge; an unknown one does not exist.
        f.app.post_empty(format!("/api/v1/payments/pending/{reference}/confirm"), f.ch.b.cred()).await.expect_problem(NOT_FOUND, "not_found");
        f.app.post_empty("/api/v1/payments/pending/tg_ch_nope/confirm", ac.cred()).await.expect_problem(NOT_FOUND, "not_found");

        let c = f.app.post_empty(format!("/api/v1/payments/pending/{reference}/confirm"), ac.cred()).await.expect(CREATED);
        assert_eq!((c.json["kind"].as_str(), c.json["method"].as_str(), c.json["external_ref"].as_str()), (Some("payment"), Some("card"), Some(reference.as_str())));
        assert_eq!((c.json["total_minor"].as_i64(), c.json["open_minor"].as_i64()), (Some(4_000), Some(1_500)));
        assert_eq!(f.open(inv2).await, 0);
        // Confirming again answers with the same payment and writes nothing.
        let docs = f.snapshot().await.0;
        let again = f.app.post_empty(format!("/api/v1/payments/pending/{reference}/confirm"), ac.cred()).await.expect(OK);
        assert_eq!(again.id(), c.id());
        assert_eq!(f.snapshot().await.0, docs);
        assert_eq!(f.balance(ac.account).await["balance_minor"], -1_500);
        assert_eq!(f.events(ac.account, "payment.pending").await.len(), 1);

        // A seller may charge its customer's card too; bad cards are named.
        f.pay(&a.cred(), ac.account, json!({"amount_minor": 100, "currency": "EUR", "method": "card", "card_number": "4242424242424242"})).await.expect(CREATED);
        f.pay(&ac.cred(), ac.account, json!({"amount_minor": 100, "currency": "EUR", "method": "card", "card_number": "4242"})).await
            .expect_field("card_number", Some("invalid_card_number"));
        f.books_balance().await;
    }

    async fn a_retried_card_charge_is_taken_once(db) {
        let f = fx(db).await;
        let ac = &f.ch.ac;
        let body = json!({"amount_minor": 7_500, "currency": "EUR", "method": "card", "card_number": "4242424242424242"});
        let send = |key: &'static str, body: Value| {
            let app = &f.app;
            let cred = ac.cred();
            async move { app.req(Method::POST, format!("/api/v1/accounts/{}/payments", ac.account)).cred(cred).header("idempotency-key", key).json(&body).send().await }
        };
        let first = send("charge-1", body.clone()).await.expect(CREATED);
        let replay = send("charge-1", body.clone()).await.expect(CREATED);
        assert_eq!(replay.header("idempotency-replayed"), Some("true"));
        assert_eq!(replay.id(), first.id());
        // The stored answer is gone (as after a server error): the retry reaches the
        // handler, which finds the payment by its key instead of charging again.
        exec(&f.app.db, "DELETE FROM idempotency_keys").await;
        let retry = send("charge-1", body.clone()).await.expect(CREATED);
        assert_eq!(retry.header("idempotency-replayed"), None);
        assert_eq!(retry.id(), first.id());
        assert_eq!(count(&f.app.db, "SELECT COUNT(*) FROM documents WHERE kind = 'payment'").await, 1);
        assert_eq!(f.balance(ac.account).await["balance_minor"], -7_500);
        assert_eq!(f.events(ac.account, "payment.recorded").await.len(), 1);

        // The same for a pending charge: one attempt, one reference.
        let pending = json!({"amount_minor": 1_000, "currency": "EUR", "method": "card", "card_number": "4000000000001111"});
        let p1 = send("charge-2", pending.clone()).await.expect(ACCEPTED);
        let p2 = send("charge-2", pending.clone()).await.expect(ACCEPTED);
        assert_eq!(p2.header("idempotency-replayed"), Some("true"));
        exec(&f.app.db, "DELETE FROM idempotency_keys").await;
        let p3 = send("charge-2", pending.clone()).await.expect(ACCEPTED);
        assert_eq!((p2.json["reference"].clone(), p3.json["reference"].clone()), (p1.json["reference"].clone(), p1.json["reference"].clone()));
        assert_eq!(count(&f.app.db, "SELECT COUNT(*) FROM payment_attempts").await, 1);
        let reference = p1.json["reference"].as_str().unwrap().to_string();
        let doc = f.app.post_empty(format!("/api/v1/payments/pending/{reference}/confirm"), ac.cred()).await.expect(CREATED).id();
        // Once confirmed, a retry of the original request answers with the payment.
        exec(&f.app.db, "DELETE FROM idempotency_keys").await;
        assert_eq!(send("charge-2", pending.clone()).await.expect(CREATED).id(), doc);
        assert_eq!(count(&f.app.db, "SELECT COUNT(*) FROM documents WHERE kind = 'payment'").await, 2);

        // A declined charge is answered the same way on a replay, and charged once.
        let declined = json!({"amount_minor": 1_000, "currency": "EUR", "method": "card", "card_number": "4000000000000000"});
        send("charge-3", declined.clone()).await.expect_problem(StatusCode::PAYMENT_REQUIRED, "card_declined");
        let r = send("charge-3", declined).await.expect(StatusCode::PAYMENT_REQUIRED);
        assert_eq!(r.header("idempotency-replayed"), Some("true"));
        assert_eq!(f.events(ac.account, "payment.declined").await.len(), 1);
        f.books_balance().await;
    }

    async fn credit_and_debit_memos_and_refunds(db) {
        let f = fx(db).await;
        let (a, ac) = (&f.ch.a, &f.ch.ac);
        let inv = f.invoice(a.account, ac.account, &[(8_000, "Office Suite")], 0).await;

        // A credit memo settles part of the invoice at once; another stays open.
        let cm = f.app.post(format!("/api/v1/accounts/{}/credit-memos", ac.account), a.cred(),
            json!({"amount_minor": 3_000, "currency": "EUR", "reason": "Service outage 2023-11-02", "apply_to": [inv]})).await.expect(CREATED);
        assert_eq!((cm.json["kind"].as_str(), cm.json["number"].as_str(), cm.json["open_minor"].as_i64()), (Some("credit_memo"), Some("CM-000001"), Some(0)));
        assert_eq!(cm.json["lines"][0]["description"], "Service outage 2023-11-02");
        assert_eq!(f.open(inv).await, 5_000);
        let cm2 = f.app.post(format!("/api/v1/accounts/{}/credit-memos", ac.account), f.a_billing.clone(),
            json!({"amount_minor": 1_000, "currency": "EUR", "reason": "Goodwill"})).await.expect(CREATED);
        assert_eq!(cm2.json["open_minor"], 1_000);
        assert_eq!(f.balance(ac.account).await["balance_minor"], 4_000);

        // A debit memo is due under the default terms (14 days).
        let dm = f.app.post(format!("/api/v1/accounts/{}/debit-memos", ac.account), a.cred(),
            json!({"amount_minor": 1_500, "currency": "EUR", "reason": "Late payment fee"})).await.expect(CREATED);
        assert_eq!((dm.json["number"].as_str(), dm.json["issue_date"].as_str(), dm.json["due_date"].as_str(), dm.json["charge_date"].as_str()),
            (Some("DM-000001"), Some("2023-11-14"), Some("2023-11-28"), None));
        assert_eq!(f.balance(ac.account).await["balance_minor"], 5_500);
        // The open credit memo pays the debit memo.
        f.app.post(format!("/api/v1/payments/{}/apply", cm2.id()), ac.cred(), json!({"invoice_id": dm.id(), "amount_minor": 1_000})).await.expect(OK);
        assert_eq!(f.open(dm.id()).await, 500);

        // Under a class with net terms: due in 30 days, charged after 10.
        let class = f.app.post(format!("/api/v1/accounts/{}/customer-classes", a.account), a.cred(),
            json!({"name": "Net 30", "due_days": 30, "payment_delay_days": 10, "credit_limit_minor": 50_000})).await.expect(CREATED).id();
        f.app.patch(format!("/api/v1/accounts/{}", ac.account), a.cred(), json!({"customer_class_id": class})).await.expect(OK);
        let dm2 = f.app.post(format!("/api/v1/accounts/{}/debit-memos", ac.account), a.cred(),
            json!({"amount_minor": 2_000, "currency": "EUR", "reason": "Extra support hours"})).await.expect(CREATED);
        assert_eq!((dm2.json["due_date"].as_str(), dm2.json["charge_date"].as_str()), (Some("2023-12-14"), Some("2023-11-24")));
        let b = f.balance(ac.account).await;
        assert_eq!((b["balance_minor"].as_i64(), b["credit_limit_minor"].as_i64(), b["credit_available"].as_i64()), (Some(7_500), Some(50_000), Some(42_500)));

        // Refunds: at most what is open on the payment, settled by it.
        let pay = f.pay(&a.cred(), ac.account, json!({"amount_minor": 5_000, "currency": "EUR", "method": "bank_transfer"})).await.expect(CREATED).id();
        let rf = f.app.post(format!("/api/v1/payments/{pay}/refund"), a.cred(), json!({"amount_minor": 2_000, "reason": "Paid twice"})).await.expect(CREATED);
        assert_eq!((rf.json["kind"].as_str(), rf.json["number"].as_str(), rf.json["total_minor"].as_i64(), rf.json["open_minor"].as_i64()),
            (Some("refund"), Some("RF-000001"), Some(2_000), Some(0)));
        assert_eq!(rf.json["lines"][0]["description"], "Refund of payment PAY-000001: Paid twice");
        assert_eq!(f.open(pay).await, 3_000);
        assert_eq!(f.balance(ac.account).await["balance_minor"], 7_500 - 3_000);
        f.app.post(format!("/api/v1/payments/{pay}/refund"), a.cred(), json!({"amount_minor": 3_001})).await
            .expect_field("amount_minor", Some("exceeds_open_balance"));
        f.app.post(format!("/api/v1/payments/{pay}/refund"), a.cred(), json!({"amount_minor": 3_000})).await.expect(CREATED);
        assert_eq!(f.open(pay).await, 0);
        // A card payment is refunded through the gateway.
        let card = f.pay(&ac.cred(), ac.account, json!({"amount_minor": 900, "currency": "EUR", "method": "card", "card_number": "4242424242424242"})).await.expect(CREATED).id();
        let rf = f.app.post(format!("/api/v1/payments/{card}/refund"), a.cred(), json!({"amount_minor": 900})).await.expect(CREATED);
        assert!(rf.json["external_ref"].as_str().unwrap().starts_with("tg_rf_"));

        // Only the seller side issues memos and refunds.
        f.app.post(format!("/api/v1/accounts/{}/credit-memos", ac.account), ac.cred(), json!({"amount_minor": 1, "currency": "EUR", "reason": "x"})).await
            .expect_problem(FORBIDDEN, "forbidden");
        f.app.post(format!("/api/v1/accounts/{}/debit-memos", ac.account), ac.cred(), json!({"amount_minor": 1, "currency": "EUR", "reason": "x"})).await
            .expect_problem(FORBIDDEN, "forbidden");
        f.app.post(format!("/api/v1/payments/{card}/refund"), ac.cred(), json!({"amount_minor": 1})).await.expect_problem(FORBIDDEN, "forbidden");
        f.app.post(format!("/api/v1/accounts/{}/credit-memos", ac.account), f.a_tech.clone(), json!({"amount_minor": 1, "currency": "EUR", "reason": "x"})).await
            .expect_problem(FORBIDDEN, "forbidden");
        // Sellers above the vendor may act for it; the issuer stays the vendor.
        let cm3 = f.app.post(format!("/api/v1/accounts/{}/credit-memos", ac.account), f.ch.p.cred(), json!({"amount_minor": 10, "currency": "EUR", "reason": "x"})).await.expect(CREATED);
        assert_eq!(cm3.json["issuer_account_id"], a.account);
        // A refund is of a payment only.
        f.app.post(format!("/api/v1/payments/{inv}/refund"), a.cred(), json!({"amount_minor": 1})).await.expect_problem(NOT_FOUND, "not_found");

        for kind in ["credit_memo.issued", "debit_memo.issued", "refund.issued"] {
            assert!(!f.events(ac.account, kind).await.is_empty(), "{kind}");
        }
        f.books_balance().await;
    }

    async fn bad_input_is_refused_and_writes_nothing(db) {
        let f = fx(db).await;
        let (a, ac, bc) = (&f.ch.a, &f.ch.ac, &f.ch.bc);
        let inv = f.invoice(a.account, ac.account, &[(5_000, "Office Suite")], 0).await;
        let paid = f.invoice(a.account, ac.account, &[(1_000, "Storage")], 0).await;
        let other = f.invoice(f.ch.b.account, bc.account, &[(5_000, "Other customer's invoice")], 0).await;
        let pay = f.pay(&a.cred(), ac.account, json!({"amount_minor": 3_000, "currency": "EUR", "method": "bank_transfer", "apply_to": [paid]})).await.expect(CREATED).id();
        assert_eq!(f.open(pay).await, 2_000);
        let class = f.app.post(format!("/api/v1/accounts/{}/customer-classes", a.account), a.cred(), json!({"name": "Standard"})).await.expect(CREATED).id();

        let payments = format!("/api/v1/accounts/{}/payments", ac.account);
        let apply = format!("/api/v1/payments/{pay}/apply");
        let refund = format!("/api/v1/payments/{pay}/refund");
        let cm = format!("/api/v1/accounts/{}/credit-memos", ac.account);
        let dm = format!("/api/v1/accounts/{}/debit-memos", ac.account);
        let classes = format!("/api/v1/accounts/{}/customer-classes", a.account);
        let class_url = format!("/api/v1/customer-classes/{class}");
        let bt = |amount: i64| json!({"amount_minor": amount, "currency": "EUR", "method": "bank_transfer"});
        // (method, path, body, field named, its code)
        let cases: Vec<(Method, String, Value, &str, &str)> = vec![
            (Method::POST, payments.clone(), bt(0), "amount_minor", "must_be_positive"),
            (Method::POST, payments.clone(), bt(-500), "amount_minor", "must_be_positive"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "USD", "method": "check"}), "currency", "currency_mismatch"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "eur", "method": "check"}), "currency", "invalid_currency"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "cash"}), "method", "invalid_method"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "card"}), "card_number", "required"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "check", "card_number": "4242424242424242"}), "card_number", "not_allowed"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "check", "apply_to": [other]}), "apply_to[0]", "unknown_invoice"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "card", "card_number": "4242424242424242", "apply_to": [inv, other]}), "apply_to[1]", "unknown_invoice"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "check", "apply_to": [999_999]}), "apply_to[0]", "unknown_invoice"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "check", "apply_to": [paid]}), "apply_to[0]", "already_paid"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "check", "apply_to": [pay]}), "apply_to[0]", "not_payable"),
            (Method::POST, payments.clone(), json!({"amount_minor": 100, "currency": "EUR", "method": "check", "apply_to": [inv, inv]}), "apply_to[1]", "duplicate"),
            (Method::POST, payments.clone(), json!({"amount_minor": "100", "currency": "EUR", "method": "check"}), "amount_minor", "invalid_field"),
            (Method::POST, apply.clone(), json!({"invoice_id": inv, "amount_minor": 0}), "amount_minor", "must_be_positive"),
            (Method::POST, apply.clone(), json!({"invoice_id": inv, "amount_minor": -100}), "amount_minor", "must_be_positive"),
            (Method::POST, apply.clone(), json!({"invoice_id": inv, "amount_minor": 2_001}), "amount_minor", "exceeds_open_balance"),
            (Method::POST, apply.clone(), json!({"invoice_id": paid, "amount_minor": 1}), "amount_minor", "exceeds_open_balance"),
            (Method::POST, apply.clone(), json!({"invoice_id": other, "amount_minor": 100}), "invoice_id", "unknown_invoice"),
            (Method::POST, apply.clone(), json!({"invoice_id": 999_999, "amount_minor": 100}), "invoice_id", "unknown_invoice"),
            (Method::POST, apply.clone(), json!({"invoice_id": pay, "amount_minor": 100}), "invoice_id", "not_payable"),
            (Method::POST, refund.clone(), json!({"amount_minor": 0}), "amount_minor", "must_be_positive"),
            (Method::POST, refund.clone(), json!({"amount_minor": 2_001}), "amount_minor", "exceeds_open_balance"),
            (Method::POST, cm.clone(), json!({"amount_minor": -1, "currency": "EUR", "reason": "x"}), "amount_minor", "must_be_positive"),
            (Method::POST, cm.clone(), json!({"amount_minor": 1, "currency": "EUR", "reason": " "}), "reason", "required"),
            (Method::POST, cm.clone(), json!({"amount_minor": 1, "currency": "EUR", "reason": "x", "apply_to": [other]}), "apply_to[0]", "unknown_invoice"),
            (Method::POST, dm.clone(), json!({"amount_minor": 1, "currency": "GBP", "reason": "x"}), "currency", "currency_mismatch"),
            (Method::POST, dm.clone(), json!({"amount_minor": 0, "currency": "EUR", "reason": "x"}), "amount_minor", "must_be_positive"),
            (Method::POST, classes.clone(), json!({"name": ""}), "name", "required"),
            (Method::POST, classes.clone(), json!({"name": "Standard"}), "name", "name_taken"),
            (Method::POST, classes.clone(), json!({"name": "N", "payment_delay_days": 0}), "payment_delay_days", "out_of_range"),
            (Method::POST, classes.clone(), json!({"name": "N", "due_days": 30, "payment_delay_days": 31}), "payment_delay_days", "after_due_date"),
            (Method::POST, classes.clone(), json!({"name": "N", "due_days": -1}), "due_days", "out_of_range"),
            (Method::POST, classes.clone(), json!({"name": "N", "credit_limit_minor": -1}), "credit_limit_minor", "out_of_range"),
            (Method::PATCH, class_url.clone(), json!({"payment_delay_days": 15}), "payment_delay_days", "after_due_date"),
            (Method::PATCH, class_url.clone(), json!({"hold_days": 400}), "hold_days", "out_of_range"),
        ];
        for (method, path, body, field, code) in cases {
            let before = f.snapshot().await;
            let r = f.app.req(method.clone(), &path).cred(a.cred()).json(&body).send().await;
            assert!(r.status.is_client_error(), "{method} {path} {body}: {} {}", r.status, r.text);
            r.assert_problem_shape();
            let hit = r.field_errors().into_iter().any(|(fl, c)| fl == field && c == code);
            assert!(hit, "{method} {path} {body}: expected {field}/{code}, got {}", r.text);
            assert_eq!(f.snapshot().await, before, "{method} {path} {body} wrote something");
        }
        // The class is unchanged after the refused patches.
        let c = f.app.get(&class_url, a.cred()).await.expect(OK).json;
        assert_eq!((c["due_days"].as_i64(), c["hold_days"].as_i64(), c["payment_delay_days"].as_i64()), (Some(14), Some(30), None));
        // A customer defines no classes.
        f.app.post(format!("/api/v1/accounts/{}/customer-classes", ac.account), ac.cred(), json!({"name": "Mine"})).await
            .expect_field("account_id", Some("not_a_seller"));
        // Applying an invoice (not a payment) is not a thing.
        f.app.post(format!("/api/v1/payments/{inv}/apply"), a.cred(), json!({"invoice_id": inv, "amount_minor": 1})).await.expect_problem(NOT_FOUND, "not_found");
        f.books_balance().await;
    }

    async fn other_resellers_see_nothing(db) {
        let f = fx(db).await;
        let (a, b, ac, bc) = (&f.ch.a, &f.ch.b, &f.ch.ac, &f.ch.bc);
        let inv = f.invoice(a.account, ac.account, &[(5_000, "Office Suite")], 0).await;
        let pay = f.pay(&a.cred(), ac.account, json!({"amount_minor": 3_000, "currency": "EUR", "method": "check"})).await.expect(CREATED).id();
        let class = f.app.post(format!("/api/v1/accounts/{}/customer-classes", a.account), a.cred(), json!({"name": "Gold"})).await.expect(CREATED).id();
        let before = f.snapshot().await;
        let strangers = [b.cred(), bc.cred(), f.ch.a2.cred(), f.ch.a2c.cred(), f.ch.pc.cred()];
        for who in &strangers {
            for path in [
                format!("/api/v1/accounts/{}/documents", ac.account),
                format!("/api/v1/documents/{inv}"),
                format!("/api/v1/documents/{inv}/pdf"),
                format!("/api/v1/documents/{pay}"),
                format!("/api/v1/accounts/{}/balance", ac.account),
                format!("/api/v1/customer-classes/{class}"),
                format!("/api/v1/accounts/{}/customer-classes", a.account),
            ] {
                f.app.get(&path, who).await.expect_problem(NOT_FOUND, "not_found");
            }
            for (path, body) in [
                (format!("/api/v1/accounts/{}/payments", ac.account), json!({"amount_minor": 1, "currency": "EUR", "method": "check"})),
                (format!("/api/v1/accounts/{}/payments", ac.account), json!({"amount_minor": 1, "currency": "EUR", "method": "card", "card_number": "4242424242424242"})),
                (format!("/api/v1/payments/{pay}/apply"), json!({"invoice_id": inv, "amount_minor": 1})),
                (format!("/api/v1/payments/{pay}/refund"), json!({"amount_minor": 1})),
                (format!("/api/v1/accounts/{}/credit-memos", ac.account), json!({"amount_minor": 1, "currency": "EUR", "reason": "x"})),
                (format!("/api/v1/accounts/{}/debit-memos", ac.account), json!({"amount_minor": 1, "currency": "EUR", "reason": "x"})),
                (format!("/api/v1/accounts/{}/customer-classes", a.account), json!({"name": "Stolen"})),
            ] {
                f.app.post(&path, who, body).await.expect_problem(NOT_FOUND, "not_found");
            }
            f.app.patch(format!("/api/v1/customer-classes/{class}"), who, json!({"due_days": 1})).await.expect_problem(NOT_FOUND, "not_found");
        }
        assert_eq!(f.snapshot().await, before);
        // The buyer, its seller and the sellers above it see the documents.
        for who in [ac.cred(), a.cred(), f.a_billing.clone(), f.ch.p.cred()] {
            f.app.get(format!("/api/v1/documents/{inv}"), &who).await.expect(OK);
            f.app.get(format!("/api/v1/accounts/{}/balance", ac.account), &who).await.expect(OK);
        }
        // Staff without billing privileges see nothing below their account.
        f.app.get(format!("/api/v1/accounts/{}/documents", ac.account), &f.a_tech).await.expect_problem(FORBIDDEN, "forbidden");
        // A customer sees nothing of its seller's own books.
        f.app.get(format!("/api/v1/accounts/{}/documents", a.account), ac.cred()).await.expect_problem(NOT_FOUND, "not_found");
        // Unknown documents are plain 404s.
        f.app.get("/api/v1/documents/999999", a.cred()).await.expect_problem(NOT_FOUND, "not_found");
        f.books_balance().await;
    }

    async fn invoice_pdf(db) {
        let f = fx(db).await;
        let (p, a, ac) = (&f.ch.p, &f.ch.a, &f.ch.ac);
        f.app.patch(format!("/api/v1/accounts/{}", a.account), p.cred(), json!({"name": "Northwind Cloud GmbH",
            "contact": {"address_line1": "Hauptstrasse 1", "postal_code": "10115", "city": "Berlin", "tax_id": "DE123456789", "email": "billing@northwind.example"}})).await.expect(OK);
        f.app.patch(format!("/api/v1/accounts/{}", ac.account), a.cred(), json!({"name": "Fabrikam Ltd",
            "contact": {"address_line1": "1 Market Street", "postal_code": "EC1A 1BB", "city": "London", "tax_id": "GB999999973"}})).await.expect(OK);
        let inv = f.invoice(a.account, ac.account, &[(10_000, "Office Suite, 10 seats"), (-1_234, "Proration credit")], 1900).await;
        let d = f.doc(inv).await;
        let (number, total) = (d["number"].as_str().unwrap().to_string(), d["total_minor"].as_i64().unwrap());
        assert_eq!(total, 8_766 + 1_666);

        let r = f.app.get(format!("/api/v1/documents/{inv}/pdf"), ac.cred()).await.expect(OK);
        assert_eq!(r.content_type(), Some("application/pdf"));
        assert_eq!(r.header("content-disposition"), Some(format!("inline; filename=\"{number}.pdf\"").as_str()));
        assert!(r.text.starts_with("%PDF-"), "not a PDF");
        assert!(r.text.trim_end().ends_with("%%EOF"));
        for needle in [
            format!("({number})"),
            "(INVOICE)".to_string(),
            "(104.32 EUR)".to_string(),
            "(Tax (19%))".to_string(),
            "(16.66 EUR)".to_string(),
            "(87.66 EUR)".to_string(),
            "(Amount due)".to_string(),
            "(-12.34)".to_string(),
            "(Northwind Cloud GmbH)".to_string(),
            "(Tax ID: DE123456789)".to_string(),
            "(Fabrikam Ltd)".to_string(),
            "(EC1A 1BB London)".to_string(),
            "(2023-11-14)".to_string(),
            "(2023-11-28)".to_string(),
            "(Period: 2023-11-01 to 2023-12-01)".to_string(),
            "half away from zero".to_string(),
        ] {
            assert!(r.text.contains(&needle), "the PDF lacks {needle}");
        }
        // The seller's staff and the provider get it; the receipt of a payment prints too.
        f.app.get(format!("/api/v1/documents/{inv}/pdf"), &f.a_billing).await.expect(OK);
        f.app.get(format!("/api/v1/documents/{inv}/pdf"), p.cred()).await.expect(OK);
        let pay = f.pay(&a.cred(), ac.account, json!({"amount_minor": total, "currency": "EUR", "method": "bank_transfer", "apply_to": [inv]})).await.expect(CREATED).id();
        let r = f.app.get(format!("/api/v1/documents/{pay}/pdf"), ac.cred()).await.expect(OK);
        assert!(r.text.starts_with("%PDF-") && r.text.contains("(PAYMENT RECEIPT)") && r.text.contains("(Open to apply)"));
        let r = f.app.get(format!("/api/v1/documents/{inv}/pdf"), ac.cred()).await.expect(OK);
        assert!(r.text.contains("(0.00 EUR)") && r.text.contains("Paid in full"));
        f.books_balance().await;
    }

    async fn customer_classes_and_credit_terms(db) {
        let f = fx(db).await;
        let (a, ac) = (&f.ch.a, &f.ch.ac);
        let c = f.app.post(format!("/api/v1/accounts/{}/customer-classes", a.account), f.a_billing.clone(), json!({"name": "Standard"})).await.expect(CREATED);
        assert_eq!(c.json["due_days"], 14);
        assert_eq!(c.json["grace_days"], 7);
        assert_eq!(c.json["hold_days"], 30);
        assert_eq!(c.json["auto_credit_hold"], true);
        assert_eq!(c.json["payg_grace_days"], 5);
        assert_eq!((c.json["credit_limit_minor"].clone(), c.json["payment_delay_days"].clone()), (Value::Null, Value::Null));
        let id = c.id();
        let net = f.app.post(format!("/api/v1/accounts/{}/customer-classes", a.account), a.cred(),
            json!({"name": "Net 60", "due_days": 60, "payment_delay_days": 45, "credit_limit_minor": 1_000_000, "auto_credit_hold": false})).await.expect(CREATED).id();
        let list = f.app.get(format!("/api/v1/accounts/{}/customer-classes", a.account), ac.cred()).await;
        list.expect_problem(NOT_FOUND, "not_found");
        let list = f.app.get(format!("/api/v1/accounts/{}/customer-classes?limit=1", a.account), a.cred()).await.expect(OK);
        assert_eq!(ids(&list), vec![id]);
        assert!(list.json["next_cursor"].is_string());

        let p = f.app.patch(format!("/api/v1/customer-classes/{id}"), a.cred(), json!({"due_days": 30, "payment_delay_days": 30, "credit_limit_minor": 25_000})).await.expect(OK);
        assert_eq!((p.json["due_days"].as_i64(), p.json["payment_delay_days"].as_i64(), p.json["credit_limit_minor"].as_i64()), (Some(30), Some(30), Some(25_000)));
        let p = f.app.patch(format!("/api/v1/customer-classes/{id}"), a.cred(), json!({"payment_delay_days": null, "credit_limit_minor": null, "name": "Standard terms"})).await.expect(OK);
        assert_eq!((p.json["payment_delay_days"].clone(), p.json["credit_limit_minor"].clone(), p.json["name"].clone()), (Value::Null, Value::Null, json!("Standard terms")));
        assert_eq!(f.app.get(format!("/api/v1/customer-classes/{net}"), f.ch.p.cred()).await.expect(OK).json["payment_delay_days"], 45);
        // Technical staff may read but not change terms of their own account.
        f.app.get(format!("/api/v1/customer-classes/{id}"), &f.a_tech).await.expect(OK);
        f.app.patch(format!("/api/v1/customer-classes/{id}"), &f.a_tech, json!({"due_days": 1})).await.expect_problem(FORBIDDEN, "forbidden");
        assert_eq!(f.events(a.account, "customer_class.created").await.len(), 2);
        assert_eq!(f.events(a.account, "customer_class.updated").await.len(), 2);

        // The class's credit limit shows in the balance.
        f.app.patch(format!("/api/v1/accounts/{}", ac.account), a.cred(), json!({"customer_class_id": net})).await.expect(OK);
        f.invoice(a.account, ac.account, &[(250_000, "Annual licence")], 0).await;
        let b = f.balance(ac.account).await;
        assert_eq!((b["credit_limit_minor"].as_i64(), b["credit_available"].as_i64()), (Some(1_000_000), Some(750_000)));
        f.books_balance().await;

        // Every endpoint is in the OpenAPI document.
        let doc = f.app.get("/api/v1/openapi.json", ANON).await.expect(OK).json;
        for path in ["/api/v1/accounts/{id}/documents", "/api/v1/documents/{id}", "/api/v1/documents/{id}/pdf", "/api/v1/accounts/{id}/payments",
            "/api/v1/payments/pending/{reference}/confirm", "/api/v1/payments/{id}/apply", "/api/v1/payments/{id}/refund",
            "/api/v1/accounts/{id}/credit-memos", "/api/v1/accounts/{id}/debit-memos", "/api/v1/accounts/{id}/balance",
            "/api/v1/accounts/{id}/customer-classes", "/api/v1/customer-classes/{id}"] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not in the OpenAPI document");
        }
    }
}

//! Collections after the daily run, on both backends: automatic charges of stored cards
//! (net terms: on the scheduled day between issue and due date, never on the issue day;
//! a declined charge loses and duplicates nothing; a run stopped between the gateway and
//! the commit is finished with the same key), automatic credit hold and release, and the
//! pay-as-you-go suspension deadline end to end. The books balance after each scenario.

use cascade_domain::account::AccountKind;
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::billing::payments::{CardNumber, CreditTerms};
use cascade_domain::catalog::plan::{
    BillingModel, BillingPeriodType, DisplayType, Fee, Period, PeriodUnit, PlanContent, Price,
    Rate, RecurringBasis, RefundRules,
};
use cascade_domain::catalog::text::Localized;
use cascade_domain::ids::AccountId;
use cascade_store::accounts::Accounts;
use cascade_store::collections::{AutoCharges, PaymentMethods};
use cascade_store::credit::CustomerClasses;
use cascade_store::documents::{
    DocKind, Documents, NewDocument, NewLine, PaymentGateway, TestGateway,
};
use cascade_store::plans::Plans;
use cascade_store::subscriptions::{NewSubscription, Subscriptions};
use cascade_store::{Db, on_db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::collections::{self, CollectionsReport};
use std::collections::BTreeMap;

mod common;
use common::{T0, account, d};

async fn count(db: &Db, q: &str) -> i64 {
    let (n,): (i64,) = on_db!(db, p => sqlx::query_as(q).fetch_one(p).await).unwrap();
    n
}

async fn status_of(db: &Db, account: AccountId) -> String {
    db.accounts()
        .get(account)
        .await
        .unwrap()
        .status
        .as_str()
        .to_string()
}

async fn events(db: &Db, kind: &str) -> i64 {
    count(
        db,
        &format!("SELECT COUNT(*) FROM events WHERE kind = '{kind}'"),
    )
    .await
}

struct Fx {
    db: Db,
    p: AccountId,
}

impl Fx {
    async fn new(db: Db) -> Fx {
        let p = account(&db, None, AccountKind::Provider, "P").await;
        Fx { db, p }
    }

    async fn customer(&self, name: &str, terms: Option<CreditTerms>) -> AccountId {
        let c = account(&self.db, Some(self.p), AccountKind::Customer, name).await;
        if let Some(t) = terms {
            let mut tx = self.db.begin().await.unwrap();
            let class = CustomerClasses::create(&mut tx, self.p, name, &t, T0)
                .await
                .unwrap();
            on_tx!(&mut tx, x => sqlx::query("UPDATE accounts SET customer_class_id = $1 WHERE id = $2")
                .bind(class.id.0).bind(c.0).execute(x).await.map(|r| r.rows_affected())).unwrap();
            tx.commit().await.unwrap();
        }
        c
    }

    async fn card(&self, account: AccountId, number: &str) -> i64 {
        let card = CardNumber::parse(number).unwrap();
        let token = TestGateway.tokenize(&card).await.unwrap();
        let mut tx = self.db.begin().await.unwrap();
        let m = PaymentMethods::create(&mut tx, account, "test", &token, card.last4(), None, T0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        m.id
    }

    async fn invoice(&self, account: AccountId, minor: i64, issued: &str, due: &str) -> i64 {
        let head = NewDocument {
            kind: DocKind::Invoice,
            issuer: self.p,
            account,
            currency: "EUR",
            issue_date: issued,
            due_date: Some(due),
            charge_date: None,
            tax_bp: 0,
            method: None,
            external_ref: None,
            idem_key: None,
        };
        let line = NewLine {
            subscription_id: None,
            kind: "recurring".into(),
            description: "Service".into(),
            quantity: 1,
            unit_price_micro: minor * 10_000,
            amount_minor: minor,
            period_start: None,
            period_end: None,
            charge_key: Some(format!("test:{}:{issued}:{minor}", account.0)),
        };
        let mut tx = self.db.begin().await.unwrap();
        let (doc, _) = Documents::issue(&mut tx, &head, &[line], T0)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        doc.id
    }

    /// A standalone payment (a top-up) of `minor`, open until applied.
    async fn top_up(&self, account: AccountId, minor: i64, day: &str) -> i64 {
        let head = NewDocument {
            kind: DocKind::Payment,
            issuer: self.p,
            account,
            currency: "EUR",
            issue_date: day,
            due_date: None,
            charge_date: None,
            tax_bp: 0,
            method: Some("bank_transfer"),
            external_ref: None,
            idem_key: None,
        };
        let mut tx = self.db.begin().await.unwrap();
        let doc = Documents::issue_single(&mut tx, &head, "payment", "Top-up", minor, T0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        doc.id
    }

    async fn open(&self, doc: i64) -> i64 {
        self.db.documents().get(doc).await.unwrap().open_minor
    }

    async fn collect(&self, day: &str) -> CollectionsReport {
        collections::run(&self.db, Some(&TestGateway), d(day), T0)
            .await
            .unwrap()
    }

    async fn assert_books(&self) {
        let bad = self.db.documents().unbalanced(self.p).await.unwrap();
        assert!(
            bad.is_empty(),
            "the provider's books do not balance: {bad:?}"
        );
        let dangling = cascade_store::integrity::dangling_references(&self.db)
            .await
            .unwrap();
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }
}

both_backends! {
    async fn invoices_are_dated_by_the_class_terms(db) {
        let fx = Fx::new(db).await;
        let net60 = fx.customer("Net60", Some(CreditTerms { due_days: 60, payment_delay_days: Some(45), ..Default::default() })).await;
        let plain = fx.customer("Plain", None).await;
        let a = fx.invoice(net60, 100, "2024-01-31", "2024-02-14").await;
        let b = fx.invoice(plain, 100, "2024-01-31", "2024-02-14").await;
        let mut tx = fx.db.begin().await.unwrap();
        cascade_store::collections::date_by_terms(&mut tx, &[(a, net60), (b, plain)], d("2024-01-31")).await.unwrap();
        tx.commit().await.unwrap();
        let a = fx.db.documents().get(a).await.unwrap();
        // 31 Jan 2024 + 60 days = 31 Mar (leap year); charged 45 days after issue, 16 Mar.
        assert_eq!((a.due_date.as_deref(), a.charge_date.as_deref()), (Some("2024-03-31"), Some("2024-03-16")));
        let b = fx.db.documents().get(b).await.unwrap();
        assert_eq!((b.due_date.as_deref(), b.charge_date.as_deref()), (Some("2024-02-14"), None));
    }

    async fn net_terms_charge_on_the_scheduled_day_never_on_issue(db) {
        let fx = Fx::new(db).await;
        // Net 30, charged 10 days after issue.
        let net = CreditTerms { due_days: 30, payment_delay_days: Some(10), ..Default::default() };
        let c = fx.customer("Net30", Some(net)).await;
        fx.card(c, "4242 4242 4242 4242").await;
        let inv = fx.invoice(c, 12_000, "2024-03-01", "2024-03-31").await;
        // An account without a stored card is never charged automatically.
        let plain = fx.customer("NoCard", None).await;
        let other = fx.invoice(plain, 5_000, "2024-03-01", "2024-03-15").await;
        for day in ["2024-03-01", "2024-03-05", "2024-03-10"] {
            let r = fx.collect(day).await;
            assert_eq!(r.charges_approved, 0, "{day}: not before the scheduled day");
            assert_eq!(fx.open(inv).await, 12_000);
        }
        let r = fx.collect("2024-03-11").await;
        assert_eq!(r.charges_approved, 1);
        assert_eq!(fx.open(inv).await, 0);
        assert_eq!(fx.open(other).await, 5_000);
        let charges = fx.db.auto_charges().of_document(inv).await.unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!((charges[0].status.as_str(), charges[0].attempt_date.as_str()), ("approved", "2024-03-11"));
        let pay = fx.db.documents().get(charges[0].payment_document_id.unwrap()).await.unwrap();
        assert_eq!((pay.kind, pay.total_minor, pay.open_minor), (DocKind::Payment, 12_000, 0));
        // Re-running the day, and the days after, charges nothing twice.
        for day in ["2024-03-11", "2024-03-11", "2024-03-12"] {
            assert_eq!(fx.collect(day).await.charges_approved, 0);
        }
        assert_eq!(count(&fx.db, &format!("SELECT COUNT(*) FROM documents WHERE kind = 'payment' AND account_id = {}", c.0)).await, 1);
        fx.assert_books().await;
    }

    async fn a_declined_automatic_charge_loses_and_duplicates_nothing(db) {
        let fx = Fx::new(db).await;
        let c = fx.customer("Declined", None).await;
        let bad = fx.card(c, "4000 0000 0000 0000").await;
        let inv = fx.invoice(c, 3_000, "2024-03-01", "2024-03-15").await;
        // Without a delayed schedule the charge is taken on the issue day.
        let r = fx.collect("2024-03-01").await;
        assert_eq!((r.charges_declined, r.charges_approved), (1, 0));
        assert_eq!(fx.open(inv).await, 3_000);
        assert_eq!(events(&fx.db, "payment.declined").await, 1);
        // The same day again: no second attempt, no second notice.
        let r = fx.collect("2024-03-01").await;
        assert_eq!(r.charges_declined, 0);
        assert_eq!(events(&fx.db, "payment.declined").await, 1);
        // The next day it is tried again (a new attempt, a new key).
        assert_eq!(fx.collect("2024-03-02").await.charges_declined, 1);
        assert_eq!(fx.db.auto_charges().of_document(inv).await.unwrap().len(), 2);
        assert_eq!(count(&fx.db, "SELECT COUNT(*) FROM documents WHERE kind = 'payment'").await, 0);
        // A new card replaces the declined one: charged once, on the next run.
        let mut tx = fx.db.begin().await.unwrap();
        assert!(PaymentMethods::deactivate(&mut tx, bad).await.unwrap());
        tx.commit().await.unwrap();
        fx.card(c, "4242 4242 4242 4242").await;
        assert_eq!(fx.collect("2024-03-03").await.charges_approved, 1);
        assert_eq!(fx.open(inv).await, 0);
        assert_eq!(fx.collect("2024-03-04").await, CollectionsReport::default());
        fx.assert_books().await;
    }

    async fn a_charge_interrupted_after_the_gateway_is_finished_with_its_key(db) {
        let fx = Fx::new(db).await;
        let c = fx.customer("Crash", None).await;
        let card = fx.card(c, "4242 4242 4242 4242").await;
        let inv = fx.invoice(c, 7_000, "2024-03-01", "2024-03-15").await;
        // A run recorded the attempt and was killed after asking the gateway, before the
        // commit of the payment: the gateway took the money under key auto:{inv}:2024-03-01.
        let mut tx = fx.db.begin().await.unwrap();
        let started = AutoCharges::start(&mut tx, inv, c, "2024-03-01", card, 7_000, T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let mut tx = fx.db.begin().await.unwrap();
        assert!(AutoCharges::start(&mut tx, inv, c, "2024-03-01", card, 7_000, T0).await.unwrap().is_none(), "one attempt per document and date");
        tx.commit().await.unwrap();
        // The next run (a later date) finishes that attempt first, with the same key, and
        // does not start another.
        let r = fx.collect("2024-03-02").await;
        assert_eq!(r.charges_approved, 1);
        let charges = fx.db.auto_charges().of_document(inv).await.unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!((charges[0].id, charges[0].status.as_str()), (started.id, "approved"));
        let pay = fx.db.documents().by_idem_key(&started.idem_key).await.unwrap().unwrap();
        assert_eq!(pay.total_minor, 7_000);
        assert_eq!(fx.open(inv).await, 0);
        assert_eq!(fx.collect("2024-03-02").await, CollectionsReport::default());
        assert_eq!(count(&fx.db, "SELECT COUNT(*) FROM documents WHERE kind = 'payment'").await, 1);
        fx.assert_books().await;
    }

    async fn credit_hold_after_due_grace_and_hold_days_and_release_when_paid(db) {
        let fx = Fx::new(db).await;
        // Default terms: 7 days' grace, hold 30 days later.
        let c = fx.customer("Late", None).await;
        let relaxed = fx.customer("Relaxed", Some(CreditTerms { auto_credit_hold: false, ..Default::default() })).await;
        let inv = fx.invoice(c, 9_900, "2024-01-01", "2024-01-15").await;
        fx.invoice(relaxed, 9_900, "2024-01-01", "2024-01-15").await;
        // Held on 15 Jan + 7 + 30 + 1 = 22 Feb, not a day earlier.
        for day in ["2024-01-15", "2024-01-16", "2024-02-21"] {
            assert_eq!(fx.collect(day).await.accounts_held, 0, "{day}");
            assert_eq!(status_of(&fx.db, c).await, "active");
        }
        let r = fx.collect("2024-02-22").await;
        assert_eq!(r.accounts_held, 1, "only the class that holds automatically");
        assert_eq!(status_of(&fx.db, c).await, "credit_hold");
        assert_eq!(status_of(&fx.db, relaxed).await, "active");
        assert_eq!(events(&fx.db, "account.credit_hold").await, 1);
        assert_eq!(fx.collect("2024-02-23").await, CollectionsReport::default(), "held once");
        // Paid: released on the next run.
        let pay = fx.top_up(c, 9_900, "2024-02-24").await;
        let mut tx = fx.db.begin().await.unwrap();
        Documents::apply(&mut tx, pay, inv, 9_900, T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert_eq!(fx.collect("2024-02-24").await.accounts_released, 1);
        assert_eq!(status_of(&fx.db, c).await, "active");
        assert_eq!(events(&fx.db, "account.credit_released").await, 1);
        // An administrative hold is never lifted by the credit check.
        let mut tx = fx.db.begin().await.unwrap();
        Accounts::set_status(&mut tx, relaxed, cascade_domain::account::AccountStatus::AdminHold, T0).await.unwrap();
        tx.commit().await.unwrap();
        fx.collect("2024-02-25").await;
        assert_eq!(status_of(&fx.db, relaxed).await, "admin_hold");
        fx.assert_books().await;
    }

    async fn payg_deadline_notice_top_up_and_credit_hold(db) {
        let fx = Fx::new(db).await;
        let mut tx = fx.db.begin().await.unwrap();
        let (rt,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ($1, 'gb', 's', 'GB', '{}', 0, 0) RETURNING id")
            .bind(fx.p.0).fetch_one(c).await).unwrap();
        let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ($1, 't', '[]', '{}', 0, 0) RETURNING id")
            .bind(fx.p.0).fetch_one(c).await).unwrap();
        let plan = Plans::create(&mut tx, fx.p, template, "EUR", &payg_plan(rt), T0).await.unwrap();
        tx.commit().await.unwrap();
        // Three days' grace for this class.
        let terms = CreditTerms { payg_grace_days: 3, ..Default::default() };
        let late = fx.customer("PaysLate", Some(terms)).await;
        let never = fx.customer("NeverPays", Some(terms)).await;
        let fine = fx.customer("Prepaid", Some(terms)).await;
        let subs = [late, never, fine].map(|a| (a, 0));
        let mut ids = Vec::new();
        for (a, _) in subs {
            ids.push(subscribe(&fx.db, fx.p, a, plan.id).await);
            fx.invoice(a, 4_000, "2024-03-01", "2024-03-15").await;
        }
        fx.top_up(fine, 5_000, "2024-02-20").await;
        // Short on 1 March: deadline 4 March and a notice; the prepaid one is fine.
        let r = fx.collect("2024-03-01").await;
        assert_eq!(r.payg_notices, 2);
        for s in &ids[..2] {
            let sub = fx.db.subscriptions().get(*s).await.unwrap();
            assert_eq!((sub.status, sub.suspension_deadline.as_deref()), (SubscriptionStatus::Active, Some("2024-03-04")));
        }
        assert_eq!(fx.db.subscriptions().get(ids[2]).await.unwrap().suspension_deadline, None);
        assert_eq!(events(&fx.db, "subscription.suspension_notice").await, 2);
        assert_eq!(fx.collect("2024-03-02").await, CollectionsReport::default(), "one notice per deadline");
        // One tops up before the deadline: cleared. The other is still short on the deadline
        // day (not suspended yet) and is put on credit hold the day after.
        fx.top_up(late, 4_000, "2024-03-03").await;
        let r = fx.collect("2024-03-04").await;
        assert_eq!((r.payg_cleared, r.payg_held), (1, 0));
        assert_eq!(fx.db.subscriptions().get(ids[0]).await.unwrap().suspension_deadline, None);
        let r = fx.collect("2024-03-05").await;
        assert_eq!(r.payg_held, 1);
        let held = fx.db.subscriptions().get(ids[1]).await.unwrap();
        assert_eq!(held.status, SubscriptionStatus::CreditHold);
        assert_eq!(events(&fx.db, "subscription.credit_hold").await, 1);
        // The hold suspends the service: one lifecycle event, in the hold's transaction.
        let suspended = format!("SELECT COUNT(*) FROM events WHERE kind = 'subscription.suspended' AND subject_id = {}", ids[1]);
        assert_eq!(count(&fx.db, &suspended).await, 1);
        assert_eq!(events(&fx.db, "subscription.resumed").await, 0);
        assert_eq!(fx.collect("2024-03-06").await, CollectionsReport::default());
        assert_eq!(events(&fx.db, "subscription.suspended").await, 1, "a later run announces nothing again");
        // Paid at last: back to active.
        fx.top_up(never, 4_000, "2024-03-07").await;
        assert_eq!(fx.collect("2024-03-07").await.payg_cleared, 1);
        let back = fx.db.subscriptions().get(ids[1]).await.unwrap();
        assert_eq!((back.status, back.suspension_deadline), (SubscriptionStatus::Active, None));
        let resumed = format!("SELECT COUNT(*) FROM events WHERE kind = 'subscription.resumed' AND subject_id = {}", ids[1]);
        assert_eq!(count(&fx.db, &resumed).await, 1);
        assert_eq!(events(&fx.db, "subscription.suspended").await, 1);
        // Clearing a deadline that never held anything resumes nothing.
        assert_eq!(events(&fx.db, "subscription.resumed").await, 1);
        fx.assert_books().await;
    }
}

both_backends! {
    async fn every_status_move_announces_its_lifecycle_event_once(db) {
        let fx = Fx::new(db).await;
        let mut tx = fx.db.begin().await.unwrap();
        let (rt,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ($1, 'gb', 's', 'GB', '{}', 0, 0) RETURNING id")
            .bind(fx.p.0).fetch_one(c).await).unwrap();
        let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ($1, 't', '[]', '{}', 0, 0) RETURNING id")
            .bind(fx.p.0).fetch_one(c).await).unwrap();
        let plan = Plans::create(&mut tx, fx.p, template, "EUR", &payg_plan(rt), T0).await.unwrap();
        tx.commit().await.unwrap();
        let c = fx.customer("C", None).await;
        let sub = subscribe(&fx.db, fx.p, c, plan.id).await;
        use SubscriptionStatus::*;
        let kinds = || async {
            let rows: Vec<(String, String)> = on_db!(&fx.db, p => sqlx::query_as(
                "SELECT kind, payload FROM events WHERE subject_type = 'subscription' AND subject_id = $1 ORDER BY id")
                .bind(sub).fetch_all(p).await).unwrap();
            rows
        };
        for (from, to) in [(Active, AdminHold), (AdminHold, CreditHold), (CreditHold, Active), (Active, Graced), (Graced, Terminated), (Terminated, Active)] {
            let mut tx = fx.db.begin().await.unwrap();
            assert!(Subscriptions::move_status(&mut tx, sub, from, to, T0).await.unwrap());
            // A second, stale move of the same transition writes nothing and announces nothing.
            assert!(!Subscriptions::move_status(&mut tx, sub, from, to, T0).await.unwrap());
            tx.commit().await.unwrap();
        }
        // A move rolled back leaves no event either.
        let mut tx = fx.db.begin().await.unwrap();
        assert!(Subscriptions::move_status(&mut tx, sub, Active, AdminHold, T0).await.unwrap());
        tx.rollback().await.unwrap();
        let got = kinds().await;
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["subscription.suspended", "subscription.resumed", "subscription.terminated", "subscription.resumed"]);
        let p: serde_json::Value = serde_json::from_str(&got[2].1).unwrap();
        assert_eq!(p, serde_json::json!({"subscription_id": sub, "from": "graced", "to": "terminated"}));
        assert_eq!(count(&fx.db, &format!("SELECT COUNT(*) FROM events WHERE account_id = {} AND kind LIKE 'subscription.%'", c.0)).await, 4);
    }
}

fn payg_plan(rt: i64) -> PlanContent {
    let zero = Fee::of(Price(0));
    PlanContent {
        name: Localized::new("en", "Metered"),
        short_description: None,
        long_description: None,
        terms: None,
        plan_category: None,
        sales_categories: vec![],
        unique_group: None,
        published: true,
        visible: true,
        listing_priority: 0,
        billing_model: BillingModel::ExternalRating,
        period_type: BillingPeriodType::MonthlyOnStatementDay,
        recurring_basis: RecurringBasis::BillingPeriod,
        periods: vec![Period {
            uid: "m1".into(),
            duration: 1,
            unit: PeriodUnit::Month,
            trial: false,
            active: true,
            setup: zero.clone(),
            recurring: zero.clone(),
            renewal: zero.clone(),
            transfer: zero.clone(),
            cancellation: zero,
            refund: RefundRules::default(),
            sort: 0,
            unconfirmed: false,
        }],
        rates: vec![Rate {
            uid: "gb".into(),
            resource_type_id: rt,
            resource_category_id: None,
            included: 0,
            min: 0,
            max: -1,
            setup_fee: Price(0),
            recurring_fee: Price(0),
            overuse_fee: Price(100_000),
            per_unit: true,
            measurable: true,
            show_in_store: true,
            show_in_panel: true,
            display: DisplayType::Spinner,
            unconfirmed: false,
        }],
        order_attributes: vec![],
        service_parameters: vec![],
    }
}

async fn subscribe(db: &Db, vendor: AccountId, account: AccountId, plan: i64) -> i64 {
    let s = NewSubscription {
        account_id: account,
        vendor_id: vendor,
        plan_id: plan,
        period_uid: "m1".into(),
        status: SubscriptionStatus::Active,
        start_date: "2024-02-01".into(),
        expires_on: "2024-04-01".into(),
        next_bill_date: "2024-04-01".into(),
        auto_renew: AutoRenew::OnExpiry,
        quantities: BTreeMap::from([("gb".to_string(), 0)]),
        attributes: serde_json::json!({}),
    };
    let mut tx = db.begin().await.unwrap();
    let sub = Subscriptions::create(&mut tx, &s, T0).await.unwrap();
    tx.commit().await.unwrap();
    sub.id
}

/// A monthly plan billed in advance (not pay-as-you-go: the PAYG check leaves it alone).
async fn plain_plan(fx: &Fx) -> i64 {
    let mut tx = fx.db.begin().await.unwrap();
    let (rt,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ($1, 'gb', 's', 'GB', '{}', 0, 0) RETURNING id")
        .bind(fx.p.0).fetch_one(c).await).unwrap();
    let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ($1, 't', '[]', '{}', 0, 0) RETURNING id")
        .bind(fx.p.0).fetch_one(c).await).unwrap();
    let mut content = payg_plan(rt);
    content.billing_model = BillingModel::ChargeBeforeBillingPeriod;
    let plan = Plans::create(&mut tx, fx.p, template, "EUR", &content, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    plan.id
}

async fn sub_events(db: &Db, kind: &str, sub: i64) -> i64 {
    count(db, &format!("SELECT COUNT(*) FROM events WHERE kind = '{kind}' AND subject_type = 'subscription' AND subject_id = {sub}")).await
}

both_backends! {
    async fn account_credit_hold_moves_subscriptions_and_the_hold_period_terminates_them(db) {
        use SubscriptionStatus::*;
        let fx = Fx::new(db).await;
        let plan = plain_plan(&fx).await;
        // Default terms: 7 days' grace, 30 days' hold period.
        let c = fx.customer("Late", None).await;
        let (running, graced, own_hold) = (
            subscribe(&fx.db, fx.p, c, plan).await,
            subscribe(&fx.db, fx.p, c, plan).await,
            subscribe(&fx.db, fx.p, c, plan).await,
        );
        let other = fx.customer("Other", None).await;
        let bystander = subscribe(&fx.db, fx.p, other, plan).await;
        let expired = subscribe(&fx.db, fx.p, other, plan).await;
        let mut tx = fx.db.begin().await.unwrap();
        assert!(Subscriptions::move_status(&mut tx, graced, Active, Graced, T0).await.unwrap());
        // Held on its own (administratively, not by the account): no credit move touches it.
        assert!(Subscriptions::move_status(&mut tx, own_hold, Active, AdminHold, T0).await.unwrap());
        on_tx!(&mut tx, x => sqlx::query("UPDATE subscriptions SET status = 'expired', next_bill_date = '9999-12-31' WHERE id = $1")
            .bind(expired).execute(x).await.map(|r| r.rows_affected())).unwrap();
        tx.commit().await.unwrap();
        let status = |id: i64| { let db = fx.db.clone(); async move { db.subscriptions().get(id).await.unwrap() } };

        let inv = fx.invoice(c, 9_900, "2024-01-01", "2024-01-15").await;
        assert_eq!(fx.collect("2024-02-21").await.subscriptions_held, 0);
        // The run puts the account on credit hold: its running subscriptions follow, in the
        // same transaction, one suspension each.
        let r = fx.collect("2024-02-22").await;
        assert_eq!((r.accounts_held, r.subscriptions_held), (1, 2));
        for id in [running, graced] {
            let s = status(id).await;
            assert_eq!((s.status, s.held_on.as_deref(), s.held_by.as_deref()), (CreditHold, Some("2024-02-22"), Some("account")));
            assert_eq!(sub_events(&fx.db, "subscription.suspended", id).await, 1);
        }
        assert_eq!(status(own_hold).await.status, AdminHold);
        assert_eq!(status(bystander).await.status, Active);
        let p: String = on_db!(&fx.db, x => sqlx::query_as::<_, (String,)>("SELECT payload FROM events WHERE kind = 'account.credit_hold'").fetch_one(x).await).unwrap().0;
        let p: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(p["subscriptions_suspended"], serde_json::json!([running, graced]));
        // Holding again (next day's run) moves and announces nothing.
        assert_eq!(fx.collect("2024-02-23").await, CollectionsReport::default());
        assert_eq!(events(&fx.db, "subscription.suspended").await, 3, "two by the hold, one own");

        // Paid: the release resumes what the hold suspended, and only that.
        let pay = fx.top_up(c, 9_900, "2024-02-24").await;
        let mut tx = fx.db.begin().await.unwrap();
        Documents::apply(&mut tx, pay, inv, 9_900, T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let r = fx.collect("2024-02-24").await;
        assert_eq!((r.accounts_released, r.subscriptions_released), (1, 2));
        for id in [running, graced] {
            let s = status(id).await;
            assert_eq!((s.status, s.held_on, s.held_by), (Active, None, None));
            assert_eq!(sub_events(&fx.db, "subscription.resumed", id).await, 1);
        }
        assert_eq!(status(own_hold).await.status, AdminHold, "a credit release never lifts another hold");
        assert_eq!(events(&fx.db, "subscription.resumed").await, 2);

        // Overdue again: held on 1 Mar + 7 + 30 + 1 = 8 Apr. The expired subscription of
        // the other account ends with its grace period the same day (1 Apr + 7).
        fx.invoice(c, 5_000, "2024-02-15", "2024-03-01").await;
        let r = fx.collect("2024-04-07").await;
        assert_eq!((r.subscriptions_held, r.subscriptions_terminated), (0, 0));
        let r = fx.collect("2024-04-08").await;
        assert_eq!((r.subscriptions_held, r.subscriptions_terminated), (2, 1));
        let e = status(expired).await;
        assert_eq!((e.status, e.terminated_on.as_deref()), (Terminated, Some("2024-04-08")));
        // The hold period (30 days) runs out on 8 May: terminated then, not a day earlier.
        assert_eq!(fx.collect("2024-05-07").await.subscriptions_terminated, 0);
        let r = fx.collect("2024-05-08").await;
        assert_eq!(r.subscriptions_terminated, 2);
        for id in [running, graced] {
            let s = status(id).await;
            assert_eq!((s.status, s.terminated_on.as_deref(), s.held_on), (Terminated, Some("2024-05-08"), None));
            assert_eq!(sub_events(&fx.db, "subscription.terminated", id).await, 1);
            let p: String = on_db!(&fx.db, x => sqlx::query_as::<_, (String,)>(
                "SELECT payload FROM events WHERE kind = 'subscription.terminated' AND subject_id = $1").bind(id).fetch_one(x).await).unwrap().0;
            assert_eq!(serde_json::from_str::<serde_json::Value>(&p).unwrap()["from"], "credit_hold");
        }
        // An administrative hold is a person's decision: the run never ends it.
        assert_eq!(status(own_hold).await.status, AdminHold);
        assert_eq!(status(bystander).await.status, Active);
        // Re-running the day (and the next) terminates nothing twice.
        assert_eq!(fx.collect("2024-05-08").await, CollectionsReport::default());
        assert_eq!(fx.collect("2024-05-09").await, CollectionsReport::default());
        assert_eq!(events(&fx.db, "subscription.terminated").await, 3);
        fx.assert_books().await;
    }
}

both_backends! {
    async fn the_customer_is_mailed_once_per_hold_release_and_termination(db) {
        use cascade_domain::user::NewUserInput;
        use cascade_testkit::smtp::SmtpSink;
        use cascade_worker::notify::{Mailer, SmtpSettings, SmtpTls};
        let sink = SmtpSink::start();
        let fx = Fx::new(db).await;
        let plan = plain_plan(&fx).await;
        let c = fx.customer("Late", None).await;
        let input = NewUserInput { login: "dora".into(), display_name: "Dora".into(), email: "dora@users.example".into(), language: None, password: None };
        let mut tx = fx.db.begin().await.unwrap();
        cascade_store::users::Users::create(&mut tx, c, &input.validate().unwrap(), None, T0).await.unwrap();
        tx.commit().await.unwrap();
        let sub = subscribe(&fx.db, fx.p, c, plan).await;
        let mailer = Mailer::new(&SmtpSettings {
            host: "127.0.0.1".into(), port: sink.port, from: "Cascade <noreply@cascade.example>".into(),
            tls: SmtpTls::None, username: None, password: None, timeout_secs: 5,
        }).unwrap();
        let mut registry = cascade_worker::Registry::with_builtin();
        cascade_worker::notify::register(&mut registry, Some(std::sync::Arc::new(mailer)));
        let worker = cascade_worker::Worker::new(fx.db.clone(), std::sync::Arc::new(cascade_domain::clock::ManualClock::new(T0)), registry,
            cascade_worker::WorkerConfig::default());
        let work = || async {
            for _ in 0..10 {
                let s = worker.run_once().await.unwrap();
                assert_eq!(s.failed, 0, "{s:?}");
                if s.is_idle() { break; }
            }
        };
        let subject = |n: usize| {
            let got = sink.wait_for(n);
            assert_eq!(got.len(), n, "{got:?}");
            assert_eq!(got[n - 1].to, vec!["dora@users.example"]);
            got[n - 1].subject.clone().unwrap_or_default()
        };
        // Credit hold by the run → one "suspended" mail.
        let inv = fx.invoice(c, 9_900, "2024-01-01", "2024-01-15").await;
        assert_eq!(fx.collect("2024-02-22").await.subscriptions_held, 1);
        work().await;
        assert_eq!(subject(1), format!("Subscription {sub} suspended"));
        // Paid → released → "resumed".
        let pay = fx.top_up(c, 9_900, "2024-02-24").await;
        let mut tx = fx.db.begin().await.unwrap();
        Documents::apply(&mut tx, pay, inv, 9_900, T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert_eq!(fx.collect("2024-02-24").await.subscriptions_released, 1);
        work().await;
        assert_eq!(subject(2), format!("Subscription {sub} resumed"));
        // Overdue again (held on 8 Apr), the hold period passes (8 May) → "suspended",
        // then "terminated"; the same day again mails nothing.
        fx.invoice(c, 5_000, "2024-02-15", "2024-03-01").await;
        fx.collect("2024-04-08").await;
        work().await;
        assert_eq!(subject(3), format!("Subscription {sub} suspended"));
        assert_eq!(fx.collect("2024-05-08").await.subscriptions_terminated, 1);
        work().await;
        assert_eq!(subject(4), format!("Subscription {sub} terminated"));
        fx.collect("2024-05-08").await;
        work().await;
        assert_eq!(sink.messages().len(), 4);
    }
}

//! The daily billing run on both backends: what is charged when, catching up, renewals
//! and expiries, overuse, month ends, and exactly-once under crashes at any point.

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::catalog::plan::{
    BillingModel, BillingPeriodType, DisplayType, Fee, Period, PeriodUnit, PlanContent, Price,
    Rate, RecurringBasis, RefundRules,
};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::{ManualClock, Timestamp};
use cascade_domain::ids::AccountId;
use cascade_store::accounts::Accounts;
use cascade_store::plans::Plans;
use cascade_store::subscriptions::{NewSubscription, Subscriptions};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::billing_run::{CrashPoint, RunError, RunOptions, run as billing_run};
use chrono::NaiveDate;
use std::collections::BTreeMap;

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn account(db: &Db, vendor: Option<AccountId>, kind: AccountKind, name: &str) -> AccountId {
    let facts = match vendor {
        Some(v) => Some(db.accounts().get(v).await.unwrap().facts()),
        None => None,
    };
    let new = NewAccountInput {
        kind,
        name: name.into(),
        contact: ContactInput::default(),
        country: "DE".into(),
        language: "en".into(),
        currency: vendor.is_none().then(|| "EUR".into()),
        customer_class_id: None,
    }
    .validate(facts.as_ref())
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

fn plan_content(
    model: BillingModel,
    period_type: BillingPeriodType,
    measurable: bool,
    rt: i64,
) -> PlanContent {
    let fee = |u: i64| Fee::of(Price::units(u));
    PlanContent {
        name: Localized::new("en", "Suite"),
        short_description: None,
        long_description: None,
        terms: None,
        plan_category: None,
        sales_categories: vec![],
        unique_group: None,
        published: true,
        visible: true,
        listing_priority: 0,
        billing_model: model,
        period_type,
        recurring_basis: RecurringBasis::BillingPeriod,
        periods: vec![Period {
            uid: "y1".into(),
            duration: 12,
            unit: PeriodUnit::Month,
            trial: false,
            active: true,
            setup: fee(0),
            recurring: fee(if model == BillingModel::ExternalRating {
                0
            } else {
                10
            }),
            renewal: fee(if model == BillingModel::ExternalRating {
                0
            } else {
                100
            }),
            transfer: fee(0),
            cancellation: fee(0),
            refund: RefundRules::default(),
            sort: 0,
            unconfirmed: false,
        }],
        rates: vec![Rate {
            uid: "seats".into(),
            resource_type_id: rt,
            resource_category_id: None,
            included: 1,
            min: 1,
            max: 1000,
            setup_fee: Price(0),
            recurring_fee: if model == BillingModel::ExternalRating {
                Price(0)
            } else {
                Price::units(2)
            },
            overuse_fee: Price(500_000),
            per_unit: true,
            measurable,
            show_in_store: true,
            show_in_panel: true,
            display: DisplayType::Spinner,
            unconfirmed: false,
        }],
        order_attributes: vec![],
        service_parameters: vec![],
    }
}

struct Fixture {
    db: Db,
    provider: AccountId,
    rt: i64,
    template: i64,
}

async fn fixture(db: Db) -> Fixture {
    let provider = account(&db, None, AccountKind::Provider, "P").await;
    let mut tx = db.begin().await.unwrap();
    let (rt,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ($1, 'seats', 's', 'seat', '{}', 0, 0) RETURNING id")
        .bind(provider.0).fetch_one(c).await).unwrap();
    let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ($1, 't', '[]', '{}', 0, 0) RETURNING id")
        .bind(provider.0).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    Fixture {
        db,
        provider,
        rt,
        template,
    }
}

impl Fixture {
    async fn plan(&self, model: BillingModel, pt: BillingPeriodType, measurable: bool) -> i64 {
        let mut tx = self.db.begin().await.unwrap();
        let p = Plans::create(
            &mut tx,
            self.provider,
            self.template,
            "EUR",
            &plan_content(model, pt, measurable, self.rt),
            T0,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        p.id
    }

    async fn subscribe(
        &self,
        customer: AccountId,
        plan: i64,
        start: &str,
        next: &str,
        renew: AutoRenew,
        seats: i64,
    ) -> i64 {
        let expires = cascade_domain::billing::calendar::add_months(d(start), 12).to_string();
        let s = NewSubscription {
            account_id: customer,
            vendor_id: self.provider,
            plan_id: plan,
            period_uid: "y1".into(),
            status: SubscriptionStatus::Active,
            start_date: start.into(),
            expires_on: expires,
            next_bill_date: next.into(),
            auto_renew: renew,
            quantities: BTreeMap::from([("seats".to_string(), seats)]),
            attributes: serde_json::json!({}),
        };
        let mut tx = self.db.begin().await.unwrap();
        let sub = Subscriptions::create(&mut tx, &s, T0).await.unwrap();
        tx.commit().await.unwrap();
        sub.id
    }

    async fn usage(&self, sub: i64, id: &str, qty: i64, day: &str) {
        let mut tx = self.db.begin().await.unwrap();
        on_tx!(&mut tx, c => sqlx::query("INSERT INTO usage_records (subscription_id, external_id, rate_uid, quantity, usage_date, created_at) VALUES ($1, $2, 'seats', $3, $4, 0)")
            .bind(sub).bind(id).bind(qty).bind(day).execute(c).await.map(|r| r.rows_affected())).unwrap();
        tx.commit().await.unwrap();
    }

    async fn bill(&self, day: &str) -> cascade_worker::billing_run::RunReport {
        billing_run(
            &self.db,
            &ManualClock::new(T0),
            d(day),
            &RunOptions::default(),
            |_, _| {},
        )
        .await
        .unwrap()
    }

    /// (kind, amount_minor, period_start) of every line billed to `customer`, in order.
    async fn lines(&self, customer: AccountId) -> Vec<(String, i64, Option<String>)> {
        let docs = self
            .db
            .documents()
            .of_account(customer, None, None, 1000)
            .await
            .unwrap()
            .items;
        let mut out = vec![];
        for doc in docs.iter().rev() {
            for l in self.db.documents().lines(doc.id).await.unwrap() {
                out.push((l.kind, l.amount_minor, l.period_start));
            }
        }
        out
    }

    async fn assert_books_balance(&self) {
        assert!(
            self.db
                .documents()
                .unbalanced(self.provider)
                .await
                .unwrap()
                .is_empty(),
            "books do not balance"
        );
    }
}

fn monthly() -> BillingPeriodType {
    BillingPeriodType::MonthlyOnStatementDay
}

both_backends! {
    async fn prepaid_monthly_bills_each_month_once(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let sub = f.subscribe(c, plan, "2024-01-15", "2024-02-01", AutoRenew::OnExpiry, 3).await;
        assert_eq!(f.bill("2024-01-31").await.documents_written, 0, "nothing due yet");
        let r = f.bill("2024-02-01").await;
        assert_eq!((r.accounts_done, r.documents_written, r.lines_written), (1, 1, 2));
        // 10.00 for February, 2 extra seats × 2.00.
        assert_eq!(f.lines(c).await, vec![("recurring".into(), 1000, Some("2024-02-01".into())), ("resource".into(), 400, Some("2024-02-01".into()))]);
        // Running the same day again charges nothing.
        let again = f.bill("2024-02-01").await;
        assert_eq!((again.documents_written, again.lines_written), (0, 0));
        assert_eq!(f.db.subscriptions().get(sub).await.unwrap().next_bill_date, "2024-03-01");
        // A missed run catches up: March and April on 10 April.
        f.bill("2024-04-10").await;
        let starts: Vec<_> = f.lines(c).await.into_iter().filter(|l| l.0 == "recurring").map(|l| l.2.unwrap()).collect();
        assert_eq!(starts, vec!["2024-02-01", "2024-03-01", "2024-04-01"]);
        f.assert_books_balance().await;
    }

    async fn anniversary_on_the_31st_bills_on_month_ends(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, BillingPeriodType::EveryNMonths { months: 1 }, false).await;
        f.subscribe(c, plan, "2024-01-31", "2024-02-29", AutoRenew::OnExpiry, 1).await;
        f.bill("2024-05-01").await;
        let starts: Vec<_> = f.lines(c).await.into_iter().map(|l| l.2.unwrap()).collect();
        assert_eq!(starts, vec!["2024-02-29", "2024-03-31", "2024-04-30"]);
    }

    async fn expiry_without_auto_renew_stops_billing(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let sub = f.subscribe(c, plan, "2024-01-01", "2024-12-01", AutoRenew::Off, 1).await;
        f.bill("2025-03-01").await;
        let s = f.db.subscriptions().get(sub).await.unwrap();
        assert_eq!(s.status, SubscriptionStatus::Expired);
        let starts: Vec<_> = f.lines(c).await.into_iter().map(|l| l.2.unwrap()).collect();
        assert_eq!(starts, vec!["2024-12-01"], "nothing after the term ends on 2025-01-01");
    }

    async fn overuse_and_payg_usage(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), true).await;
        let sub = f.subscribe(c, plan, "2024-01-01", "2024-02-01", AutoRenew::OnExpiry, 1).await;
        f.usage(sub, "u1", 4, "2024-01-10").await;
        f.usage(sub, "u2", 3, "2024-01-20").await;
        f.bill("2024-02-01").await;
        // 7 used, 1 included: 6 × 0.50 overuse for January.
        assert!(f.lines(c).await.contains(&("overuse".into(), 300, Some("2024-01-01".into()))));

        let c2 = account(&f.db, Some(f.provider), AccountKind::Customer, "PAYG").await;
        let payg = f.plan(BillingModel::ExternalRating, monthly(), true).await;
        let s2 = f.subscribe(c2, payg, "2024-01-01", "2024-02-01", AutoRenew::OnExpiry, 1).await;
        f.usage(s2, "x", 10, "2024-01-05").await;
        f.bill("2024-02-01").await;
        assert_eq!(f.lines(c2).await, vec![("usage".into(), 500, Some("2024-01-01".into()))]);
        f.assert_books_balance().await;
    }

    async fn crashing_anywhere_and_rerunning_never_charges_twice(db) {
        let f = fixture(db).await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let mut customers = vec![];
        for i in 0..4 {
            let c = account(&f.db, Some(f.provider), AccountKind::Customer, &format!("C{i}")).await;
            f.subscribe(c, plan, "2024-01-10", "2024-02-01", AutoRenew::OnExpiry, 2 + i).await;
            customers.push(c);
        }
        // Crash at every point in turn, re-run after each crash, and compare with what
        // one clean run produces.
        let points: Vec<CrashPoint> = (0..4).flat_map(|i| [CrashPoint::InsideAccount(i), CrashPoint::BetweenAccounts(i)]).collect();
        for (i, point) in points.iter().enumerate() {
            let day = format!("2024-{:02}-01", 2 + i);
            let crashed = billing_run(&f.db, &ManualClock::new(T0), d(&day), &RunOptions { batch: 2, crash: Some(*point) }, |_, _| {}).await;
            assert!(matches!(crashed, Err(RunError::Crash)), "{point:?}");
            billing_run(&f.db, &ManualClock::new(T0), d(&day), &RunOptions::default(), |_, _| {}).await.unwrap();
            billing_run(&f.db, &ManualClock::new(T0), d(&day), &RunOptions::default(), |_, _| {}).await.unwrap();
        }
        for (i, c) in customers.iter().enumerate() {
            let lines = f.lines(*c).await;
            let recurring: Vec<_> = lines.iter().filter(|l| l.0 == "recurring").map(|l| l.2.clone().unwrap()).collect();
            let months: Vec<String> = (2..=9).map(|m| format!("2024-{m:02}-01")).collect();
            assert_eq!(recurring, months, "customer {i}: each month exactly once");
            let seats = lines.iter().filter(|l| l.0 == "resource").count();
            assert_eq!(seats, 8, "customer {i}");
        }
        f.assert_books_balance().await;
    }
}

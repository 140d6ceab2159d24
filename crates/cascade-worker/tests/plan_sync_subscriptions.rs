//! Plan → subscriptions synchronization through the daily billing run, on both
//! backends: a plan edit changes nothing already sold; a sync with the subscriptions
//! option applies new limits at once and new prices from the next billing date — the
//! current period and the invoices already issued keep the old price.

use cascade_domain::account::AccountKind;
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::catalog::plan::{
    BillingModel, BillingPeriodType, DisplayType, Fee, Period, PeriodUnit, PlanContent, Price,
    Rate, RecurringBasis, RefundRules,
};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::ManualClock;
use cascade_domain::ids::AccountId;
use cascade_store::plans::Plans;
use cascade_store::subscriptions::{NewSubscription, Subscriptions};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::billing_run::{RunOptions, run as billing_run};
use chrono::NaiveDate;
use std::collections::BTreeMap;

mod common;
use common::{T0, account};

fn content(rt: i64) -> PlanContent {
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
        billing_model: BillingModel::ChargeBeforeBillingPeriod,
        period_type: BillingPeriodType::MonthlyOnStatementDay,
        recurring_basis: RecurringBasis::BillingPeriod,
        periods: vec![Period {
            uid: "y1".into(),
            duration: 12,
            unit: PeriodUnit::Month,
            trial: false,
            active: true,
            setup: fee(0),
            recurring: fee(10),
            renewal: fee(100),
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
            recurring_fee: Price::units(2),
            overuse_fee: Price(0),
            per_unit: true,
            measurable: false,
            show_in_store: true,
            show_in_panel: true,
            display: DisplayType::Spinner,
            unconfirmed: false,
        }],
        order_attributes: vec![],
        service_parameters: vec![],
    }
}

async fn bill(db: &Db, day: &str) {
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    billing_run(
        db,
        &ManualClock::new(T0),
        day,
        &RunOptions::default(),
        |_, _| {},
    )
    .await
    .unwrap();
}

/// (kind, amount_minor, period_start) of every line billed to `customer`, oldest first.
async fn lines(db: &Db, customer: AccountId) -> Vec<(String, i64, Option<String>)> {
    let docs = db
        .documents()
        .of_account(customer, None, None, 1000)
        .await
        .unwrap()
        .items;
    let mut out = vec![];
    for doc in docs.iter().rev() {
        for l in db.documents().lines(doc.id).await.unwrap() {
            out.push((l.kind, l.amount_minor, l.period_start));
        }
    }
    out
}

both_backends! {
    async fn synced_prices_start_with_the_next_billing_date(db) {
        let p = account(&db, None, AccountKind::Provider, "P").await;
        let c = account(&db, Some(p), AccountKind::Customer, "C").await;
        let mut tx = db.begin().await.unwrap();
        let (rt,): (i64,) = on_tx!(&mut tx, x => sqlx::query_as(
            "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ($1, 'seats', 's', 'seat', '{}', 0, 0) RETURNING id")
            .bind(p.0).fetch_one(x).await).unwrap();
        let (template,): (i64,) = on_tx!(&mut tx, x => sqlx::query_as(
            "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ($1, 't', '[]', '{}', 0, 0) RETURNING id")
            .bind(p.0).fetch_one(x).await).unwrap();
        let plan = Plans::create(&mut tx, p, template, "EUR", &content(rt), T0).await.unwrap();
        let sub = Subscriptions::create(&mut tx, &NewSubscription {
            account_id: c, vendor_id: p, plan_id: plan.id, period_uid: "y1".into(), status: SubscriptionStatus::Active,
            start_date: "2024-01-15".into(), expires_on: "2025-01-15".into(), next_bill_date: "2024-02-01".into(),
            auto_renew: AutoRenew::OnExpiry, quantities: BTreeMap::from([("seats".to_string(), 3)]), attributes: serde_json::json!({}),
        }, T0).await.unwrap();
        tx.commit().await.unwrap();
        // The provider doubles the monthly fee and lowers the seat limit below the 3 in use.
        let mut edited = content(rt);
        edited.periods[0].recurring = Fee::of(Price::units(20));
        edited.rates[0].max = 2;
        let mut tx = db.begin().await.unwrap();
        let plan = Plans::update(&mut tx, plan.id, plan.version, &edited, false, false, T0).await.unwrap();
        tx.commit().await.unwrap();
        // An edit alone changes nothing sold: February at the old 10.00 (+2 seats × 2.00).
        bill(&db, "2024-02-01").await;
        let feb = vec![("recurring".to_string(), 1000, Some("2024-02-01".to_string())), ("resource".to_string(), 400, Some("2024-02-01".to_string()))];
        assert_eq!(lines(&db, c).await, feb);
        // Mid-February a sync with the subscriptions option reaches the plan.
        let updates = db.subscriptions().sync_updates(&[(plan.id, &plan.content)], "2024-02-10").await.unwrap();
        assert_eq!(updates.len(), 1);
        assert_eq!(db.subscriptions().apply_sync_updates(&updates, T0).await.unwrap(), vec![sub.id]);
        let s = db.subscriptions().get(sub.id).await.unwrap();
        // The lower limit holds at once; the seats in use are kept (nothing deleted).
        assert_eq!(s.plan_terms("2024-02-10", &plan.content).rates[0].max, 2);
        assert_eq!((s.quantities["seats"], s.status), (3, SubscriptionStatus::Active));
        assert_eq!(s.terms.as_ref().unwrap().next.as_ref().unwrap().0, "2024-03-01");
        // Re-running February charges nothing and changes no issued invoice.
        bill(&db, "2024-02-10").await;
        assert_eq!(lines(&db, c).await, feb);
        // March: the new 20.00 from the next billing date on.
        bill(&db, "2024-03-01").await;
        let mut expected = feb.clone();
        expected.push(("recurring".into(), 2000, Some("2024-03-01".into())));
        expected.push(("resource".into(), 400, Some("2024-03-01".into())));
        assert_eq!(lines(&db, c).await, expected);
        // The same sync again moves nothing.
        assert!(db.subscriptions().sync_updates(&[(plan.id, &plan.content)], "2024-03-02").await.unwrap().is_empty());
    }
}

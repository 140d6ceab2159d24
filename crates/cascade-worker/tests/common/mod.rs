//! Fixtures the worker's integration tests share: a fixed instant, dates, accounts
//! created through the domain's validation, and a plan whose model and prices a test
//! picks.
// Each test binary uses part of this module.
#![allow(dead_code)]

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::catalog::plan::{
    BillingModel, BillingPeriodType, DisplayType, Fee, Period, PeriodUnit, PlanContent, Price,
    Rate, RecurringBasis, RefundRules,
};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_store::Db;
use cascade_store::accounts::Accounts;
use chrono::NaiveDate;

pub const T0: Timestamp = Timestamp(1_700_000_000_000_000);

pub fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub async fn account(
    db: &Db,
    vendor: Option<AccountId>,
    kind: AccountKind,
    name: &str,
) -> AccountId {
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

pub fn plan_content(
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

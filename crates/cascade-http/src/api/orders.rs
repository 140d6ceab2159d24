//! `/api/v1/…/orders` and `/api/v1/…/subscriptions`: buying, paying, provisioning,
//! changing, renewing, cancelling and restoring subscriptions.
//!
//! # An order from click to invoice
//!
//! `POST /accounts/{id}/orders` (an **SO**) is validated against the vendor's catalog
//! view (the plan must be the vendor's, on sale; period active; quantities within each
//! rate's range; unique group free; order attributes and service parameters checked by
//! `Attribute::check_value`), then **one transaction** writes: the subscription
//! (`ordered`), the invoice (setup fees and the first, prorated billing period, one line
//! per charge rounded with `amounts::to_minor`, each line guarded by its charge key), the
//! order, and one **wholesale transaction** per reseller in the chain, priced at the
//! reseller's vendor's copy of the plan as it is now (`cascade_store::wholesale`).
//!
//! **Payment gate**, in the same transaction: nothing to pay, or the customer's balance
//! covers the invoice → the customer's open payments and credit memos are allocated to
//! it and the order is `paid`; otherwise `waiting_for_payment` until
//! `POST /orders/{id}/pay` finds the money (after a top-up through the payments API). A
//! held account's order waits with the reason "account on hold".
//!
//! **Provisioning is a task**: `order.paid` → `orders.provision`
//! (`cascade_worker::provision`), which first checks that every reseller of the chain
//! can pay its part (else the order stays `paid` with the reason and the task retries),
//! then moves the order `provisioning` → `completed` and the subscription `ordered` →
//! `active`. Nothing here assumes it is instant: until the worker runs, the order is
//! visibly `paid` or `provisioning`. A failed provisioning leaves the order `failed`
//! with its reason; `POST /orders/{id}/retry` puts it back to `provisioning` and
//! enqueues the task again.
//!
//! **CH** (`/subscriptions/{id}/change`): an upgrade is charged at once, prorated
//! (`amounts::proration` of the recurring fee difference over the remaining days of the
//! current billing period) and applied when provisioning completes. A downgrade applied
//! at once is credited the same way (a credit memo). A change with `defer: true` (only a
//! downgrade) — and any change of the subscription period, which always waits — is
//! stored in the order's details with `effective_on` = the next billing date; the
//! order is `paid` (nothing to pay) with the reason "deferred until …" and its
//! provisioning task is enqueued to run on that date, when it applies the change. The
//! daily run needs to do nothing for it. A CH with `plan_id` **switches plans** (upgrade or
//! downgrade) to one of `switch_targets` (the seller's plans on sale for the same service
//! template, currency and billing terms, in the same unique group, with a period of the
//! same length): priced by `pricing::switch_lines`, (new plan's recurring fee − old one's)
//! × remaining days / days in the period, and deferrable like any downgrade; resources of
//! the same type keep their units.
//!
//! **CL** (`/subscriptions/{id}/cancel`): each reseller of the chain gets a negative
//! wholesale row, its share of the refund (`refund × its vendor's fee / the customer's
//! fee`, `pricing::tier_share`), netted on its next tier invoice.
//! The refund follows the period's refund rules
//! (`amounts::refund` on what was charged for the current term, over the span that
//! charge covers) and is written as a credit memo applied to the customer's open
//! invoices; a cancellation fee is an invoice. The subscription is cancelled at once;
//! the CL order unprovisions through the same task. **RN** (`/renew`) charges the
//! renewal fee (and, for plans charged per subscription period, the next term) and
//! extends the term once paid; it provisions nothing.
//!
//! Money computations that are pure live in [`pricing`] (they belong in the domain's
//! billing module; kept here until that module takes them).

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PageOut, PageParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::FieldError;
use cascade_domain::account::{Account, AccountKind, AccountStatus};
use cascade_domain::authz::{Action, Relation};
use cascade_domain::billing::amounts::{self, ROUNDING_RULE};
use cascade_domain::billing::charges::{ChargeLine, LineKind};
use cascade_domain::billing::lifecycle::{AutoRenew, OrderStatus, OrderType, SubscriptionStatus};
use cascade_domain::catalog::plan::{BillingModel, PlanContent, UNLIMITED};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::money::Currency;
use cascade_domain::privilege::Privilege;
use cascade_domain::validation::ValidationErrors;
use cascade_store::StoreError;
use cascade_store::documents::{DocKind, Document, Documents, NewDocument, NewLine};
use cascade_store::plans::Plan;
use cascade_store::subscriptions::{
    NewOrder, NewSubscription, Order, Orders, Subscription, Subscriptions,
};
use cascade_store::tasks::{NewTask, Tasks};
use cascade_store::wholesale::{self, NewWholesale, Wholesale, WholesaleTx};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The task kind that provisions an order (handled by `cascade_worker::provision`).
pub const PROVISION_TASK: &str = "orders.provision";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders, place_order))
        .routes(routes!(get_order))
        .routes(routes!(pay_order))
        .routes(routes!(retry_order))
        .routes(routes!(list_subscriptions))
        .routes(routes!(get_subscription, patch_subscription))
        .routes(routes!(cancel_subscription))
        .routes(routes!(change_subscription))
        .routes(routes!(renew_subscription))
        .routes(routes!(restore_subscription))
        .routes(routes!(invoice_preview))
}

// ---------------------------------------------------------------------------------------
// Pure pricing helpers.

pub mod pricing {
    //! What an order charges, computed from plan terms; no I/O.

    use cascade_domain::billing::amounts::{proration, to_minor};
    use cascade_domain::billing::calendar::{Cycle, Span, add_months};
    use cascade_domain::billing::charges::{
        BillingInput, ChargeLine, LineKind, period_months, recurring_lines,
        recurring_per_billing_period, setup_lines, usage_lines,
    };
    use cascade_domain::catalog::plan::{
        BillingModel, Period, PeriodUnit, PlanContent, Price, Rate, UNLIMITED,
    };
    use cascade_domain::money::Currency;
    use chrono::{Days, NaiveDate};
    use std::collections::BTreeMap;

    pub use cascade_domain::billing::charges::billing_cycle as cycle_of;

    /// The end of a subscription term of `period` starting on `start`.
    pub fn term_end(period: &Period, start: NaiveDate) -> NaiveDate {
        match period.unit {
            PeriodUnit::Day => start
                .checked_add_days(Days::new(u64::from(period.duration.max(1))))
                .unwrap_or(start),
            _ => add_months(start, period_months(period) as i32),
        }
    }

    /// The term containing `date` for a subscription started on `start`: terms follow
    /// each other from the start, each one period long.
    pub fn term_containing(period: &Period, start: NaiveDate, date: NaiveDate) -> Span {
        match period.unit {
            PeriodUnit::Day => {
                let len = i64::from(period.duration.max(1));
                let k = ((date - start).num_days().max(0)) / len;
                let s = start + chrono::Duration::days(k * len);
                Span {
                    start: s,
                    end: s + chrono::Duration::days(len),
                }
            }
            _ => Cycle::Anniversary {
                start,
                months: period_months(period).max(1),
            }
            .period_containing(date),
        }
    }

    /// Quantities with every rate present: the chosen ones, else the included units.
    pub fn full_quantities(
        plan: &PlanContent,
        chosen: &BTreeMap<String, i64>,
    ) -> BTreeMap<String, i64> {
        plan.rates
            .iter()
            .map(|r| {
                (
                    r.uid.clone(),
                    chosen.get(&r.uid).copied().unwrap_or(r.included.max(0)),
                )
            })
            .collect()
    }

    /// What a new subscription is charged on purchase, and when it is next billed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FirstCharge {
        pub lines: Vec<ChargeLine>,
        pub next_bill_date: NaiveDate,
    }

    /// Setup fees plus the recurring charges due before service starts: the first
    /// (prorated) billing period for plans charged before the billing period, the whole
    /// term (billing period by billing period, so the daily run's keys match) for plans
    /// charged before the subscription period, nothing recurring for postpaid and
    /// pay-as-you-go plans.
    #[allow(clippy::too_many_arguments)]
    pub fn first_charge(
        sub_id: i64,
        plan: &PlanContent,
        period: &Period,
        quantities: &BTreeMap<String, i64>,
        start: NaiveDate,
        expires: NaiveDate,
        statement_day: u32,
    ) -> FirstCharge {
        let (cycle, billing_months) = cycle_of(plan, start, statement_day);
        let usage = BTreeMap::new();
        let input = BillingInput {
            subscription_id: sub_id,
            plan,
            period,
            quantities,
            usage: &usage,
            billing_months,
        };
        let mut lines = setup_lines(&input);
        let first_end = cycle.next_boundary(start).min(expires);
        let next_bill_date = match plan.billing_model {
            BillingModel::ChargeBeforeBillingPeriod => {
                let span = Span {
                    start,
                    end: first_end,
                };
                lines.extend(recurring_lines(
                    &input,
                    span,
                    cycle.period_containing(start).days(),
                ));
                first_end
            }
            BillingModel::ChargeBeforeSubscriptionPeriod => {
                lines.extend(term_lines(&input, cycle, start, expires));
                // The daily run visits each billing period for overuse and renews at expiry.
                first_end
            }
            BillingModel::ChargeAfterBillingPeriod | BillingModel::ExternalRating => first_end,
        };
        FirstCharge {
            lines,
            next_bill_date,
        }
    }

    /// Recurring lines for every billing period of `[start, end)` (partial ones prorated).
    pub fn term_lines(
        input: &BillingInput<'_>,
        cycle: Cycle,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Vec<ChargeLine> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let p = cycle.period_containing(at);
            let span = Span {
                start: at,
                end: p.end.min(end),
            };
            out.extend(recurring_lines(input, span, p.days()));
            at = span.end;
        }
        out
    }

    /// Units billed for a rate at `qty`: above the included units for per-unit fees, one
    /// for a flat fee on a rate in use.
    pub fn billable_units(r: &Rate, qty: i64) -> i64 {
        if r.per_unit {
            (qty - r.included.max(0)).max(0)
        } else if qty > 0 {
            1
        } else {
            0
        }
    }

    /// The prorated charge (negative: a credit) of moving a subscription's quantities from
    /// `old` to `new` with `remaining` of `total` days of the billing period `span` left:
    /// one line per changed rate, `(new fee − old fee) × remaining / total`.
    #[allow(clippy::too_many_arguments)]
    pub fn change_lines(
        order_id: i64,
        plan: &PlanContent,
        period: &Period,
        billing_months: u32,
        old: &BTreeMap<String, i64>,
        new: &BTreeMap<String, i64>,
        today: NaiveDate,
        span: Span,
    ) -> Vec<ChargeLine> {
        let remaining = (span.end - today).num_days();
        let total = span.days();
        let mut out = Vec::new();
        for r in &plan.rates {
            let (a, b) = (
                old.get(&r.uid).copied().unwrap_or(r.included),
                new.get(&r.uid).copied().unwrap_or(r.included),
            );
            if a == b || r.recurring_fee.0 == 0 {
                continue;
            }
            let unit = recurring_per_billing_period(
                r.recurring_fee,
                plan.recurring_basis,
                period,
                billing_months,
            );
            let old_fee = Price(unit.0.saturating_mul(billable_units(r, a)));
            let new_fee = Price(unit.0.saturating_mul(billable_units(r, b)));
            let amount = proration(old_fee, new_fee, remaining, total);
            if amount.0 == 0 {
                continue;
            }
            out.push(ChargeLine {
                kind: LineKind::Proration,
                description: format!(
                    "{} {a} → {b}, {remaining} of {total} days left of {} to {}",
                    r.uid, span.start, span.end
                ),
                quantity: 1,
                unit_price: amount,
                amount,
                period: Some(Span {
                    start: today,
                    end: span.end,
                }),
                key: format!("order:{order_id}:chg:{}", r.uid),
            });
        }
        out
    }

    /// The period of `to` a subscription on `from`'s `period` moves to when it switches
    /// plans (an upgrade or downgrade), if the switch is allowed by the plans' terms: both
    /// plans bill the same way (billing model, billing period, recurring basis), share
    /// their unique group (the switch group: a customer holds one plan of it) and `to`
    /// has an active period of the same length.
    pub fn switch_period<'a>(
        from: &PlanContent,
        period: &Period,
        to: &'a PlanContent,
    ) -> Option<&'a Period> {
        if from.billing_model != to.billing_model
            || from.period_type != to.period_type
            || from.recurring_basis != to.recurring_basis
            || from.unique_group != to.unique_group
        {
            return None;
        }
        to.periods
            .iter()
            .filter(|p| p.active && !p.trial && !p.unconfirmed)
            .filter(|p| p.duration == period.duration && p.unit == period.unit)
            .min_by_key(|p| p.sort)
    }

    /// The quantities a subscription takes to `to` on a switch: for each of `to`'s rates,
    /// the units it had of the same resource type (kept within the new rate's range),
    /// else the new rate's included units; `chosen` (by rate uid of `to`) overrides.
    pub fn switch_quantities(
        from: &PlanContent,
        old: &BTreeMap<String, i64>,
        to: &PlanContent,
        chosen: &BTreeMap<String, i64>,
    ) -> BTreeMap<String, i64> {
        to.rates
            .iter()
            .map(|r| {
                let kept = from
                    .rates
                    .iter()
                    .find(|o| o.resource_type_id == r.resource_type_id)
                    .and_then(|o| old.get(&o.uid).copied())
                    .map(|q| {
                        let q = q.max(r.min);
                        if r.max == UNLIMITED { q } else { q.min(r.max) }
                    });
                let q = chosen
                    .get(&r.uid)
                    .copied()
                    .or(kept)
                    .unwrap_or(r.included.max(0));
                (r.uid.clone(), q)
            })
            .collect()
    }

    /// A plan's recurring fee for one billing period at `quantities`: the period's
    /// recurring fee plus every rate's recurring fee for its billable units.
    pub fn recurring_fee(
        plan: &PlanContent,
        period: &Period,
        billing_months: u32,
        quantities: &BTreeMap<String, i64>,
    ) -> Price {
        let per = |fee: Price| {
            recurring_per_billing_period(fee, plan.recurring_basis, period, billing_months)
        };
        let mut total = per(period.recurring.amount).0;
        for r in &plan.rates {
            let q = quantities.get(&r.uid).copied().unwrap_or(r.included);
            total =
                total.saturating_add(per(r.recurring_fee).0.saturating_mul(billable_units(r, q)));
        }
        Price(total)
    }

    /// The prorated charge (negative: a credit) of switching plans with `remaining` of
    /// the billing period `span` left: one line,
    /// `(new fee − old fee) × remaining days / days in the period` (domain §4).
    #[allow(clippy::too_many_arguments)]
    pub fn switch_lines(
        order_id: i64,
        from: (&PlanContent, &Period, &BTreeMap<String, i64>),
        to: (&PlanContent, &Period, &BTreeMap<String, i64>),
        billing_months: u32,
        today: NaiveDate,
        span: Span,
    ) -> Vec<ChargeLine> {
        let remaining = (span.end - today).num_days();
        let total = span.days();
        let old_fee = recurring_fee(from.0, from.1, billing_months, from.2);
        let new_fee = recurring_fee(to.0, to.1, billing_months, to.2);
        let amount = proration(old_fee, new_fee, remaining, total);
        if amount.0 == 0 {
            return vec![];
        }
        vec![ChargeLine {
            kind: LineKind::Proration,
            description: format!(
                "{} → {}, {remaining} of {total} days left of {} to {}",
                from.0.name.get(&from.0.name.default),
                to.0.name.get(&to.0.name.default),
                span.start,
                span.end
            ),
            quantity: 1,
            unit_price: amount,
            amount,
            period: Some(Span {
                start: today,
                end: span.end,
            }),
            key: format!("order:{order_id}:switch"),
        }]
    }

    /// What the daily run charges on a subscription's next billing date, and why: one
    /// step of `cascade_worker::billing_run::bill_subscription` (renewal or expiry at the
    /// term end, then the model's charges), kept in step with it.
    #[allow(clippy::too_many_arguments)]
    pub fn next_charge(
        sub_id: i64,
        plan: &PlanContent,
        period: &Period,
        quantities: &BTreeMap<String, i64>,
        usage: &BTreeMap<String, i64>,
        start: NaiveDate,
        next: NaiveDate,
        expires: NaiveDate,
        renews: bool,
        statement_day: u32,
    ) -> (Vec<ChargeLine>, Vec<String>) {
        let (cycle, billing_months) = cycle_of(plan, start, statement_day);
        let input = BillingInput {
            subscription_id: sub_id,
            plan,
            period,
            quantities,
            usage,
            billing_months,
        };
        let (mut lines, mut notes) = (Vec::new(), Vec::new());
        let before = |d: NaiveDate| d.pred_opt().unwrap_or(d);
        if next >= expires {
            if !renews {
                notes.push(format!(
                    "the term ends on {expires} and auto-renew is off: the subscription expires"
                ));
                if matches!(
                    plan.billing_model,
                    BillingModel::ChargeAfterBillingPeriod | BillingModel::ExternalRating
                ) || plan.rates.iter().any(|r| r.measurable)
                {
                    let span = cycle.period_containing(before(next));
                    lines.extend(usage_lines(&input, span));
                    if plan.billing_model == BillingModel::ChargeAfterBillingPeriod {
                        lines.extend(recurring_lines(&input, span, span.days()));
                    }
                }
                return (lines, notes);
            }
            let renewed = add_months(expires, period_months(period) as i32);
            notes.push(format!(
                "the term ends on {expires} and renews until {renewed}"
            ));
            if plan.billing_model == BillingModel::ChargeBeforeSubscriptionPeriod {
                lines.push(renewal_line(
                    sub_id,
                    plan,
                    period,
                    Span {
                        start: next,
                        end: renewed,
                    },
                ));
                return (lines, notes);
            }
        }
        match plan.billing_model {
            BillingModel::ChargeBeforeBillingPeriod => {
                let span = cycle.period_containing(next);
                lines.extend(recurring_lines(&input, span, span.days()));
                let prev = cycle.period_containing(before(next));
                if prev.end == next {
                    lines.extend(usage_lines(&input, prev));
                }
            }
            BillingModel::ChargeAfterBillingPeriod | BillingModel::ExternalRating => {
                let span = cycle.period_containing(before(next));
                lines.extend(recurring_lines(&input, span, span.days()));
                lines.extend(usage_lines(&input, span));
                notes.push(format!(
                    "usage recorded so far for {} to {}; more may come before the billing date",
                    span.start, span.end
                ));
            }
            BillingModel::ChargeBeforeSubscriptionPeriod => {
                lines.extend(usage_lines(&input, cycle.period_containing(before(next))));
                notes.push(
                    "the term was charged up front; between renewals only overuse is billed".into(),
                );
            }
        }
        (lines, notes)
    }

    /// The term charge of a plan charged per subscription period, on renewal: its renewal
    /// fee, under the same key the daily run's automatic renewal uses (exactly once
    /// whichever renews first).
    pub fn renewal_line(
        sub_id: i64,
        plan: &PlanContent,
        period: &Period,
        span: Span,
    ) -> ChargeLine {
        let amount = period.renewal.amount;
        ChargeLine {
            kind: LineKind::Recurring,
            description: format!(
                "{} — renewal {} to {}",
                plan.name.get(&plan.name.default),
                span.start,
                span.end
            ),
            quantity: 1,
            unit_price: amount,
            amount,
            period: Some(span),
            key: format!("sub:{sub_id}:term:{}", span.start),
        }
    }

    /// A price in minor units, rounded by the one rule.
    /// A reseller's share of a customer's refund: `refund × tier fee / customer fee`,
    /// rounded half up; 0 when the customer's fee is not positive.
    pub fn tier_share(refund_minor: i64, tier_fee: Price, customer_fee: Price) -> i64 {
        if customer_fee.0 <= 0 || tier_fee.0 <= 0 || refund_minor <= 0 {
            return 0;
        }
        let (r, t, c) = (
            i128::from(refund_minor),
            i128::from(tier_fee.0),
            i128::from(customer_fee.0),
        );
        i64::try_from((2 * r * t + c) / (2 * c)).unwrap_or(i64::MAX)
    }

    pub fn minor(p: Price, c: Currency) -> i64 {
        to_minor(p, c).minor
    }

    /// Minor units as a price.
    pub fn price_of_minor(minor: i64, c: Currency) -> Price {
        let digits = c.minor_digits().min(6);
        Price(minor.saturating_mul(10i64.pow(6 - digits)))
    }

    /// The sum of lines, each rounded to the minor unit first.
    pub fn total_minor(lines: &[ChargeLine], c: Currency) -> i64 {
        lines.iter().map(|l| minor(l.amount, c)).sum()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use cascade_domain::catalog::plan::{
            AfterRefundPeriod, BillingPeriodType, DisplayType, Fee, RecurringBasis, RefundRules,
        };
        use cascade_domain::catalog::text::Localized;

        fn d(y: i32, m: u32, day: u32) -> NaiveDate {
            NaiveDate::from_ymd_opt(y, m, day).unwrap()
        }

        fn plan(
            period_type: BillingPeriodType,
            basis: RecurringBasis,
            model: BillingModel,
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
                recurring_basis: basis,
                periods: vec![Period {
                    uid: "y1".into(),
                    duration: 12,
                    unit: PeriodUnit::Month,
                    trial: false,
                    active: true,
                    setup: fee(5),
                    recurring: fee(120),
                    renewal: fee(0),
                    transfer: fee(0),
                    cancellation: fee(0),
                    refund: RefundRules {
                        full_refund_days: 30,
                        non_refundable: Price(0),
                        after: AfterRefundPeriod::Prorated,
                    },
                    sort: 0,
                    unconfirmed: false,
                }],
                rates: vec![Rate {
                    uid: "seats".into(),
                    resource_type_id: 1,
                    resource_category_id: None,
                    included: 1,
                    min: 1,
                    max: 50,
                    setup_fee: Price(0),
                    recurring_fee: Price::units(24),
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

        #[test]
        fn a_resellers_share_of_a_refund_follows_its_vendors_fee() {
            // 23.45 refunded of a 47.00 fee; the reseller pays 36.00: 17.961… → 17.96.
            assert_eq!(tier_share(2345, Price::units(36), Price::units(47)), 1796);
            // Half a cent rounds up: 1 × 1/2.
            assert_eq!(tier_share(1, Price::units(1), Price::units(2)), 1);
            assert_eq!(
                tier_share(2345, Price::units(36), Price(0)),
                0,
                "nothing to share by"
            );
            assert_eq!(tier_share(0, Price::units(36), Price::units(47)), 0);
            assert_eq!(tier_share(-5, Price::units(36), Price::units(47)), 0);
        }

        #[test]
        fn plan_switch_terms_quantities_and_proration() {
            let m = BillingPeriodType::MonthlyOnStatementDay;
            let from = plan(
                m,
                RecurringBasis::BillingPeriod,
                BillingModel::ChargeBeforeBillingPeriod,
            );
            let mut to = from.clone();
            to.periods[0].uid = "p-y1".into();
            to.periods[0].recurring = Fee::of(Price::units(150));
            to.rates[0].uid = "pro-seats".into();
            to.rates[0].max = 4;
            // Same terms: the period of the same length; other terms or groups: none.
            assert_eq!(
                switch_period(&from, &from.periods[0], &to).map(|p| p.uid.as_str()),
                Some("p-y1")
            );
            let mut other = to.clone();
            other.unique_group = Some("g".into());
            assert!(switch_period(&from, &from.periods[0], &other).is_none());
            other = to.clone();
            other.billing_model = BillingModel::ChargeAfterBillingPeriod;
            assert!(switch_period(&from, &from.periods[0], &other).is_none());
            other = to.clone();
            other.periods[0].duration = 1;
            assert!(switch_period(&from, &from.periods[0], &other).is_none());
            // Seats of the same resource type are kept, within the new range; chosen wins.
            let old = BTreeMap::from([("seats".to_string(), 6)]);
            let q = switch_quantities(&from, &old, &to, &BTreeMap::new());
            assert_eq!(q, BTreeMap::from([("pro-seats".to_string(), 4)]));
            let chosen = BTreeMap::from([("pro-seats".to_string(), 2)]);
            assert_eq!(switch_quantities(&from, &old, &to, &chosen)["pro-seats"], 2);
            // 120 + 5 × 24 = 240 → 150 + 3 × 24 = 222: a credit of 18 × 10 / 30 = 6.00.
            let span = Span {
                start: d(2025, 4, 1),
                end: d(2025, 5, 1),
            };
            let lines = switch_lines(
                7,
                (&from, &from.periods[0], &old),
                (&to, &to.periods[0], &q),
                1,
                d(2025, 4, 21),
                span,
            );
            let eur = Currency::parse("EUR").unwrap();
            assert_eq!(total_minor(&lines, eur), -600);
            assert_eq!(lines[0].key, "order:7:switch");
            // The way back costs the same, and nothing on the last day.
            let back = switch_lines(
                7,
                (&to, &to.periods[0], &q),
                (&from, &from.periods[0], &old),
                1,
                d(2025, 4, 21),
                span,
            );
            assert_eq!(total_minor(&back, eur), 600);
            let none = switch_lines(
                7,
                (&to, &to.periods[0], &q),
                (&from, &from.periods[0], &old),
                1,
                d(2025, 5, 1),
                span,
            );
            assert!(none.is_empty());
        }

        #[test]
        fn annual_prepaid_on_the_anniversary() {
            let p = plan(
                BillingPeriodType::EveryNMonths { months: 12 },
                RecurringBasis::SubscriptionPeriod,
                BillingModel::ChargeBeforeBillingPeriod,
            );
            let q = BTreeMap::from([("seats".to_string(), 3)]);
            let start = d(2025, 1, 1);
            let end = term_end(&p.periods[0], start);
            assert_eq!(end, d(2026, 1, 1));
            let f = first_charge(9, &p, &p.periods[0], &q, start, end, 1);
            let eur = Currency::parse("EUR").unwrap();
            // Setup 5 + 120 for the year + 2 seats above the included one at 24.
            assert_eq!(total_minor(&f.lines, eur), 17_300);
            assert_eq!(f.next_bill_date, d(2026, 1, 1));
            // On its billing date (the term end) it renews and bills the next year.
            let none = BTreeMap::new();
            let (lines, notes) =
                next_charge(9, &p, &p.periods[0], &q, &none, start, end, end, true, 1);
            assert_eq!(total_minor(&lines, eur), 16_800);
            assert_eq!(lines[0].key, "sub:9:rec:2026-01-01");
            assert!(notes[0].contains("renews until 2027-01-01"));
            let (lines, notes) =
                next_charge(9, &p, &p.periods[0], &q, &none, start, end, end, false, 1);
            assert!(lines.is_empty() && notes[0].contains("auto-renew is off"));
            // Charged per subscription period: the renewal fee, under the daily run's key.
            let mut sp = p.clone();
            sp.billing_model = BillingModel::ChargeBeforeSubscriptionPeriod;
            sp.periods[0].renewal = Fee::of(Price::units(110));
            let (lines, _) =
                next_charge(9, &sp, &sp.periods[0], &q, &none, start, end, end, true, 1);
            assert_eq!(
                (lines.len(), lines[0].key.as_str(), lines[0].amount),
                (1, "sub:9:term:2026-01-01", Price::units(110))
            );
        }

        #[test]
        fn monthly_on_statement_day_prorates_the_first_period() {
            let mut p = plan(
                BillingPeriodType::MonthlyOnStatementDay,
                RecurringBasis::BillingPeriod,
                BillingModel::ChargeBeforeBillingPeriod,
            );
            p.periods[0].recurring = Fee::of(Price::units(30));
            p.periods[0].setup = Fee::of(Price(0));
            let q = BTreeMap::new();
            let start = d(2024, 4, 16);
            let f = first_charge(
                1,
                &p,
                &p.periods[0],
                &q,
                start,
                term_end(&p.periods[0], start),
                1,
            );
            assert_eq!(f.next_bill_date, d(2024, 5, 1));
            assert_eq!(f.lines.len(), 1);
            assert_eq!(
                f.lines[0].amount,
                Price::units(15),
                "15 of 30 days of 30.00"
            );
        }

        #[test]
        fn whole_term_up_front_uses_billing_period_keys() {
            let p = plan(
                BillingPeriodType::MonthlyOnStatementDay,
                RecurringBasis::SubscriptionPeriod,
                BillingModel::ChargeBeforeSubscriptionPeriod,
            );
            let q = BTreeMap::new();
            let start = d(2025, 1, 1);
            let f = first_charge(
                4,
                &p,
                &p.periods[0],
                &q,
                start,
                term_end(&p.periods[0], start),
                1,
            );
            let rec: Vec<_> = f
                .lines
                .iter()
                .filter(|l| l.kind == LineKind::Recurring)
                .collect();
            assert_eq!(rec.len(), 12);
            assert_eq!(rec[0].key, "sub:4:rec:2025-01-01");
            // 120 a year spread over 12 monthly periods.
            assert_eq!(rec.iter().map(|l| l.amount.0).sum::<i64>(), 120_000_000);
            assert_eq!(f.next_bill_date, d(2025, 2, 1));
        }

        #[test]
        fn upgrade_in_month_three() {
            let p = plan(
                BillingPeriodType::EveryNMonths { months: 12 },
                RecurringBasis::SubscriptionPeriod,
                BillingModel::ChargeBeforeBillingPeriod,
            );
            let old = BTreeMap::from([("seats".to_string(), 3)]);
            let new = BTreeMap::from([("seats".to_string(), 8)]);
            let span = Span {
                start: d(2025, 1, 1),
                end: d(2026, 1, 1),
            };
            let lines = change_lines(7, &p, &p.periods[0], 12, &old, &new, d(2025, 3, 15), span);
            // (7 − 2) seats × 24 = 120 more a year; 292 of 365 days left: 96.00.
            assert_eq!(lines.len(), 1);
            assert_eq!(lines[0].amount, Price::units(96));
            assert_eq!(lines[0].key, "order:7:chg:seats");
            let down = change_lines(8, &p, &p.periods[0], 12, &new, &old, d(2025, 3, 15), span);
            assert_eq!(down[0].amount, Price::units(-96));
        }

        #[test]
        fn terms_follow_the_start() {
            let p = plan(
                BillingPeriodType::MonthlyOnStatementDay,
                RecurringBasis::BillingPeriod,
                BillingModel::ChargeBeforeBillingPeriod,
            );
            let t = term_containing(&p.periods[0], d(2024, 1, 31), d(2025, 3, 1));
            assert_eq!(
                t,
                Span {
                    start: d(2025, 1, 31),
                    end: d(2026, 1, 31)
                }
            );
            let eur = Currency::parse("EUR").unwrap();
            assert_eq!(price_of_minor(1234, eur), Price(12_340_000));
            assert_eq!(minor(Price(12_345_000), eur), 1235);
        }
    }
}

// ---------------------------------------------------------------------------------------
// API types.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderIn {
    /// A plan of the customer's vendor, on sale.
    pub plan_id: i64,
    /// A subscription period of the plan (`uid`), active.
    pub period_uid: String,
    /// Units per resource rate (`uid`); rates not given get their included units.
    #[serde(default)]
    pub quantities: BTreeMap<String, i64>,
    /// Order attributes by key (strings, numbers or booleans).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, Value>,
    /// Service parameters by key (strings, numbers or booleans).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: BTreeMap<String, Value>,
    /// `{"mode": "off" | "on_expiry"}` or `{"mode": "days_before", "days": N}`; on expiry by default.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub auto_renew: Option<AutoRenew>,
    /// Domain items: the name servers to delegate the domain to (none, or 2–13 host
    /// names); stored with the subscription's parameters.
    #[serde(default)]
    pub name_servers: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WholesaleOut {
    /// The reseller that owes.
    pub buyer_account_id: i64,
    /// Its vendor, owed.
    pub seller_account_id: i64,
    pub currency: String,
    pub amount_minor: i64,
    pub charge_key: String,
    /// The invoice that billed it, once the daily run has.
    pub document_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderOut {
    pub id: i64,
    pub account_id: i64,
    pub vendor_id: i64,
    pub subscription_id: Option<i64>,
    /// `SO`, `RN`, `BO`, `CH` or `CL`.
    #[serde(rename = "type")]
    pub order_type: String,
    /// `new`, `waiting_for_payment`, `paid`, `provisioning`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Why the order waits or failed.
    pub reason: Option<String>,
    pub currency: String,
    pub total_minor: i64,
    /// What was ordered and the documents written for it (`invoice_id`, `credit_memo_id`, …).
    #[schema(value_type = Object)]
    pub details: Value,
    pub placed_by: Option<i64>,
    /// The chain's wholesale debts for this order that the caller may see (its own and
    /// those owed to it or below it); empty for customers.
    pub wholesale: Vec<WholesaleOut>,
    pub created_at: String,
    pub updated_at: String,
}

fn order_out(o: Order, wholesale: Vec<WholesaleOut>) -> OrderOut {
    OrderOut {
        id: o.id,
        account_id: o.account_id.0,
        vendor_id: o.vendor_id.0,
        subscription_id: o.subscription_id,
        order_type: o.order_type.as_str().into(),
        status: o.status.as_str().into(),
        reason: o.reason,
        currency: o.currency,
        total_minor: o.total_minor,
        details: o.details,
        placed_by: o.placed_by,
        wholesale,
        created_at: iso(o.created_at),
        updated_at: iso(o.updated_at),
    }
}

/// The order with the wholesale rows `auth` may see.
pub(crate) async fn order_view(st: &AppState, auth: &Authed, o: Order) -> ApiResult<OrderOut> {
    let rows = st.db.wholesale().of_order(o.id).await?;
    let mut visible = Vec::new();
    for w in rows {
        if visible_wholesale(st, auth, &w).await? {
            visible.push(WholesaleOut {
                buyer_account_id: w.buyer_account_id.0,
                seller_account_id: w.seller_account_id.0,
                currency: w.currency,
                amount_minor: w.amount_minor,
                charge_key: w.charge_key,
                document_id: w.document_id,
            });
        }
    }
    Ok(order_out(o, visible))
}

/// A reseller's cost is its own business and its vendors': the buyer and the seller (and
/// the seller's vendors) see it, nobody below.
async fn visible_wholesale(st: &AppState, auth: &Authed, w: &WholesaleTx) -> ApiResult<bool> {
    Ok(auth.actor.account_id == w.buyer_account_id
        || st
            .db
            .accounts()
            .relation_depth(auth.actor.account_id, w.seller_account_id)
            .await?
            .is_some())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: i64,
    pub account_id: i64,
    pub vendor_id: i64,
    pub plan_id: i64,
    pub period_uid: String,
    /// `ordered`, `active`, `expired`, `graced`, `credit_hold`, `admin_hold`, `cancelled` or `terminated`.
    pub status: String,
    pub start_date: String,
    /// End of the current term.
    pub expires_on: String,
    pub next_bill_date: String,
    #[schema(value_type = Object)]
    pub auto_renew: AutoRenew,
    pub quantities: BTreeMap<String, i64>,
    /// `{"attributes": {…}, "parameters": {…}}` as given at purchase.
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// The service's data no longer exists: a terminated subscription cannot be restored.
    pub data_removed: bool,
    /// While on hold: the date the hold began (the hold period counts from it).
    pub held_on: Option<String>,
    /// While terminated: the date it was terminated.
    pub terminated_on: Option<String>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

fn sub_out(s: Subscription) -> SubscriptionOut {
    SubscriptionOut {
        id: s.id,
        account_id: s.account_id.0,
        vendor_id: s.vendor_id.0,
        plan_id: s.plan_id,
        period_uid: s.period_uid,
        status: s.status.as_str().into(),
        start_date: s.start_date,
        expires_on: s.expires_on,
        next_bill_date: s.next_bill_date,
        auto_renew: s.auto_renew,
        quantities: s.quantities,
        attributes: s.attributes,
        data_removed: s.data_removed,
        held_on: s.held_on,
        terminated_on: s.terminated_on,
        version: s.version,
        created_at: iso(s.created_at),
        updated_at: iso(s.updated_at),
    }
}

// ---------------------------------------------------------------------------------------
// Shared helpers.

/// The subscription's plan with the terms the subscription holds today (see
/// `Plans::for_subscription`): prices of the current period, limits in force.
async fn plan_of(
    st: &AppState,
    sub: &cascade_store::subscriptions::Subscription,
) -> ApiResult<cascade_store::plans::Plan> {
    let day = today(st.clock.now()).to_string();
    Ok(st.db.plans().for_subscription(sub, &day).await?)
}

fn today(now: Timestamp) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(now.0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

fn date(s: &str, what: &str) -> ApiResult<NaiveDate> {
    s.parse().map_err(|_| {
        tracing::error!(value = s, what, "stored date does not parse");
        ApiError::internal()
    })
}

fn currency(code: &str) -> ApiResult<Currency> {
    Currency::parse(code).map_err(|_| {
        tracing::error!(code, "stored currency does not parse");
        ApiError::internal()
    })
}

/// `12345` in EUR → `123.45 EUR`.
fn fmt_minor(minor: i64, cur: Currency) -> String {
    let digits = cur.minor_digits();
    if digits == 0 {
        return format!("{minor} {}", cur.code());
    }
    let f = 10i64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$} {}",
        minor.abs() / f,
        minor.abs() % f,
        cur.code(),
        width = digits as usize
    )
}

fn is_held(a: &Account) -> bool {
    matches!(
        a.status,
        AccountStatus::CreditHold | AccountStatus::AdminHold
    )
}

/// Charge lines as document lines, each rounded to the minor unit by the one rule.
fn doc_lines(lines: &[ChargeLine], sub_id: i64, cur: Currency, negate: bool) -> Vec<NewLine> {
    lines
        .iter()
        .map(|l| {
            let sign = if negate { -1 } else { 1 };
            NewLine {
                subscription_id: Some(sub_id),
                kind: l.kind.as_str().to_string(),
                description: l.description.clone(),
                quantity: l.quantity,
                unit_price_micro: sign * l.unit_price.0,
                amount_minor: sign * pricing::minor(l.amount, cur),
                period_start: l.period.map(|p| p.start.to_string()),
                period_end: l.period.map(|p| p.end.to_string()),
                charge_key: Some(l.key.clone()),
            }
        })
        .collect()
}

/// Issue a document of `kind` from vendor to customer; `None` when there is nothing to
/// write (no lines, or every line already billed).
#[allow(clippy::too_many_arguments)]
async fn issue(
    tx: &mut cascade_store::Tx,
    kind: DocKind,
    vendor: AccountId,
    customer: AccountId,
    cur: Currency,
    lines: Vec<NewLine>,
    issued: NaiveDate,
    due_days: i64,
    now: Timestamp,
) -> ApiResult<Option<Document>> {
    if lines.is_empty() {
        return Ok(None);
    }
    let issue_date = issued.to_string();
    let due =
        (kind == DocKind::Invoice).then(|| (issued + chrono::Duration::days(due_days)).to_string());
    let head = NewDocument {
        kind,
        issuer: vendor,
        account: customer,
        currency: cur.code(),
        issue_date: &issue_date,
        due_date: due.as_deref(),
        charge_date: None,
        tax_bp: 0,
        method: None,
        external_ref: None,
        idem_key: None,
    };
    Ok(Documents::issue(tx, &head, &lines, now)
        .await?
        .map(|(d, _)| d))
}

/// The payment gate: what status an order whose charge is `invoice` takes now. Paid
/// when nothing is open or the customer's balance covers it (its open payments and
/// credit memos are then allocated to the invoice); a held account waits.
async fn gate(
    tx: &mut cascade_store::Tx,
    customer: &Account,
    invoice: Option<&Document>,
    now: Timestamp,
) -> ApiResult<(OrderStatus, Option<String>)> {
    let open = match invoice {
        Some(inv) => Documents::get_in(tx, inv.id).await?.open_minor,
        None => 0,
    };
    if is_held(customer) {
        let status = if open > 0 {
            OrderStatus::WaitingForPayment
        } else {
            OrderStatus::New
        };
        return Ok((status, Some("account on hold".into())));
    }
    let Some(inv) = invoice.filter(|_| open > 0) else {
        return Ok((OrderStatus::Paid, None));
    };
    if wholesale::balance_in(tx, customer.id, &inv.currency).await? <= 0 {
        wholesale::apply_credits(tx, inv, now).await?;
        let left = Documents::get_in(tx, inv.id).await?.open_minor;
        if left == 0 {
            return Ok((OrderStatus::Paid, None));
        }
    }
    Ok((
        OrderStatus::WaitingForPayment,
        Some(format!(
            "waiting for payment of {}",
            inv.number.clone().unwrap_or_default()
        )),
    ))
}

/// What follows payment: provisioning orders get `order.paid` (→ `orders.provision`);
/// renewals complete at once.
async fn after_paid(
    tx: &mut cascade_store::Tx,
    auth: &Authed,
    order: &Order,
    now: Timestamp,
) -> ApiResult<()> {
    if order.order_type.provisions() {
        emit(
            tx,
            now,
            "order.paid",
            order.account_id,
            auth,
            "order",
            order.id,
            json!({"order_id": order.id, "type": order.order_type.as_str()}),
        )
        .await?;
    } else {
        complete_renewal(tx, auth, order, now).await?;
    }
    Ok(())
}

/// A paid renewal: extend the term, reactivate an expired subscription, complete.
async fn complete_renewal(
    tx: &mut cascade_store::Tx,
    auth: &Authed,
    order: &Order,
    now: Timestamp,
) -> ApiResult<()> {
    let Some(sub_id) = order.subscription_id else {
        return Ok(());
    };
    let sub = Subscriptions::get_in(tx, sub_id).await?;
    let new_expires = order.details["new_expires_on"]
        .as_str()
        .unwrap_or(&sub.expires_on)
        .to_string();
    // The billing date stays: the daily run bills the new term's periods as they come.
    Subscriptions::update_terms(
        tx,
        &sub,
        &sub.period_uid.clone(),
        &sub.quantities,
        &new_expires,
        &sub.next_bill_date.clone(),
        now,
    )
    .await?;
    if matches!(
        sub.status,
        SubscriptionStatus::Expired | SubscriptionStatus::Graced
    ) {
        Subscriptions::move_status(tx, sub.id, sub.status, SubscriptionStatus::Active, now).await?;
    }
    // A renewal has nothing to provision: it passes through `provisioning` at once.
    OrderStatus::Paid
        .transition(OrderStatus::Provisioning)?
        .transition(OrderStatus::Completed)?;
    Orders::set_status(
        tx,
        order.id,
        OrderStatus::Paid,
        OrderStatus::Provisioning,
        None,
        now,
    )
    .await?;
    Orders::set_status(
        tx,
        order.id,
        OrderStatus::Provisioning,
        OrderStatus::Completed,
        None,
        now,
    )
    .await?;
    emit(
        tx,
        now,
        "order.completed",
        order.account_id,
        auth,
        "order",
        order.id,
        json!({"order_id": order.id, "type": "RN", "expires_on": new_expires}),
    )
    .await?;
    Ok(())
}

/// Parse attribute values: strings, numbers and booleans, checked against the plan's
/// definitions; unknown keys are refused.
fn check_attributes(
    e: &mut ValidationErrors,
    list: &str,
    defs: &[cascade_domain::catalog::plan::Attribute],
    given: &BTreeMap<String, Value>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in given {
        let field = format!("{list}.{k}");
        if !defs.iter().any(|a| &a.key == k) {
            e.push(FieldError::new(
                field,
                "unknown_attribute",
                "the plan asks for no such value",
            ));
            continue;
        }
        match v {
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            Value::Number(n) => {
                out.insert(k.clone(), n.to_string());
            }
            Value::Bool(b) => {
                out.insert(k.clone(), b.to_string());
            }
            Value::Null => {}
            _ => e.push(FieldError::new(
                field,
                "invalid_type",
                "a string, number or boolean",
            )),
        }
    }
    for a in defs {
        if let Err(x) = a.check_value(out.get(&a.key).map(String::as_str)) {
            e.push(x.under(list));
        }
    }
    out
}

/// Quantities within each rate's `[min, max]` (−1 = unlimited), for known rates only.
fn check_quantities(e: &mut ValidationErrors, plan: &PlanContent, q: &BTreeMap<String, i64>) {
    for (uid, n) in q {
        let field = format!("quantities.{uid}");
        match plan.rate(uid) {
            None => e.push(FieldError::new(
                field,
                "unknown_rate",
                "the plan has no such resource rate",
            )),
            Some(r) => {
                if *n < r.min || (r.max != UNLIMITED && *n > r.max) {
                    let max = if r.max == UNLIMITED {
                        "unlimited".to_string()
                    } else {
                        r.max.to_string()
                    };
                    e.push(FieldError::new(
                        field,
                        "out_of_range",
                        format!("between {} and {max} units", r.min),
                    ));
                }
            }
        }
    }
}

/// A subscription the caller may act on with `action` (404 outside its subtree).
pub(crate) async fn sub_for(
    st: &AppState,
    auth: &Authed,
    id: i64,
    action: Action,
) -> ApiResult<(Subscription, Relation)> {
    let sub = st.db.subscriptions().get(id).await?;
    let rel = auth.check(st, sub.account_id, action).await?;
    Ok((sub, rel))
}

async fn order_for(st: &AppState, auth: &Authed, id: i64, action: Action) -> ApiResult<Order> {
    let o = st.db.orders().get(id).await?;
    auth.check(st, o.account_id, action).await?;
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// SO: placing an order.

#[utoipa::path(post, path = "/api/v1/accounts/{id}/orders", tag = "orders", params(("id" = i64, Path, description = "The customer account")),
    request_body = PlaceOrderIn,
    responses((status = 201, body = OrderOut, description = "The SO order with its subscription and invoice; `paid` when the balance covered it"), ProblemResponses))]
pub(crate) async fn place_order(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PlaceOrderIn>,
) -> ApiResult<(StatusCode, Json<OrderOut>)> {
    let customer_id = AccountId(id);
    auth.check(&st, customer_id, Action::PlaceOrder).await?;
    let customer = st.db.accounts().get(customer_id).await?;
    let vendor = match (customer.kind, customer.vendor_id) {
        (AccountKind::Customer, Some(v)) => v,
        _ => {
            return Err(ApiError::field(
                "account_id",
                "not_a_customer",
                "orders are placed for customer accounts",
            ));
        }
    };
    let chain = st.db.accounts().vendor_chain(customer_id).await?;
    let so = prepare_so(&st, vendor, &chain, &body)
        .await
        .map_err(ApiError::from)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let order = write_so(&st, &mut tx, &auth, &customer, &so, now).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(order_view(&st, &auth, order).await?),
    ))
}

/// An SO checked against the seller's catalog view, with what writing it needs. Made
/// by [`prepare_so`] outside any transaction; written by [`write_so`]. Placing an order
/// (`POST /accounts/{id}/orders`) and the one-step checkout (`checkout`) share both.
pub(crate) struct PreparedSo {
    plan: Plan,
    period: cascade_domain::catalog::plan::Period,
    quantities: BTreeMap<String, i64>,
    attributes: BTreeMap<String, String>,
    parameters: BTreeMap<String, String>,
    name_servers: Vec<String>,
    auto_renew: AutoRenew,
    /// (buyer, its vendor, the vendor's copy of the plan) per reseller of the chain.
    tiers: Vec<(AccountId, AccountId, Plan)>,
}

/// Where an order's validation failed: a field error (the caller re-roots it under the
/// item it came from) or anything else.
pub(crate) enum PrepareError {
    Fields(ValidationErrors),
    Other(ApiError),
}

impl From<PrepareError> for ApiError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::Fields(v) => v.into(),
            PrepareError::Other(e) => e,
        }
    }
}

impl From<ApiError> for PrepareError {
    fn from(e: ApiError) -> Self {
        PrepareError::Other(e)
    }
}

impl From<StoreError> for PrepareError {
    fn from(e: StoreError) -> Self {
        PrepareError::Other(e.into())
    }
}

fn plan_err(code: &'static str, msg: &str) -> PrepareError {
    PrepareError::Fields(FieldError::new("plan_id", code, msg).into())
}

/// Check an SO for a customer of `vendor` (whose vendors, nearest first, are `chain`:
/// `vendor` itself, then its own vendors up to the provider) against the vendor's
/// catalog view: the plan is the vendor's, on sale; the period active; quantities in
/// range; attributes, service parameters and name servers valid. Every bad field is
/// named at once. Reads only; nothing is written.
pub(crate) async fn prepare_so(
    st: &AppState,
    vendor: AccountId,
    chain: &[Account],
    body: &PlaceOrderIn,
) -> Result<PreparedSo, PrepareError> {
    // The seller's catalog view: its own plans and copies, on sale.
    let plan = match st.db.plans().get(body.plan_id).await {
        Ok(p) => p,
        Err(StoreError::NotFound) => {
            return Err(plan_err(
                "unknown_plan",
                "no such plan in the seller's catalog",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if plan.owner_account_id != vendor {
        return Err(plan_err(
            "unknown_plan",
            "no such plan in the seller's catalog",
        ));
    }
    if !plan.on_sale() || plan.content.has_unconfirmed_prices() {
        return Err(plan_err(
            "not_on_sale",
            "the plan is not on sale (unpublished, hidden or withdrawn)",
        ));
    }
    let mut e = ValidationErrors::new();
    let period = plan
        .content
        .period(&body.period_uid)
        .filter(|p| p.active)
        .cloned();
    if period.is_none() {
        e.push(FieldError::new(
            "period_uid",
            "unknown_period",
            "the plan has no such active subscription period",
        ));
    }
    check_quantities(&mut e, &plan.content, &body.quantities);
    let attributes = check_attributes(
        &mut e,
        "attributes",
        &plan.content.order_attributes,
        &body.attributes,
    );
    let parameters = check_attributes(
        &mut e,
        "parameters",
        &plan.content.service_parameters,
        &body.parameters,
    );
    let name_servers =
        match cascade_domain::billing::checkout::name_servers("name_servers", &body.name_servers) {
            Ok(n) => n,
            Err(x) => {
                e.0.extend(x.0);
                Vec::new()
            }
        };
    e.into_result().map_err(PrepareError::Fields)?;
    let Some(period) = period else {
        return Err(ApiError::internal().into());
    };
    let quantities = pricing::full_quantities(&plan.content, &body.quantities);
    // Wholesale prices are read before the transaction: the copies up the chain as they are now.
    let tiers = wholesale_tiers(st, chain, &plan, &period.uid).await?;
    Ok(PreparedSo {
        plan,
        period,
        quantities,
        attributes,
        parameters,
        name_servers,
        auto_renew: body.auto_renew.unwrap_or(AutoRenew::OnExpiry),
        tiers,
    })
}

/// Write a prepared SO for `customer` inside `tx`: the subscription (`ordered`), its
/// first invoice, the order (through the payment gate), one wholesale transaction per
/// reseller of the chain and `order.placed` (and `order.paid` when the balance covered
/// it). A plan of the same unique group as a live subscription is refused.
pub(crate) async fn write_so(
    st: &AppState,
    tx: &mut cascade_store::Tx,
    auth: &Authed,
    customer: &Account,
    so: &PreparedSo,
    now: Timestamp,
) -> ApiResult<Order> {
    let customer_id = customer.id;
    let (plan, period, quantities) = (&so.plan, &so.period, &so.quantities);
    let vendor = plan.owner_account_id;
    let start = today(now);
    let expires = pricing::term_end(period, start);
    let cur = currency(&plan.currency)?;
    if let Some(group) = plan.content.unique_group.as_deref() {
        for other in Subscriptions::live_of_account_in(tx, customer_id, vendor).await? {
            let op = st.db.plans().get(other.plan_id).await?;
            if op.content.unique_group.as_deref() == Some(group) {
                return Err(ApiError::field(
                    "plan_id",
                    "unique_group_clash",
                    format!(
                        "subscription {} is in the same unique group `{group}`; plans of one group exclude each other",
                        other.id
                    ),
                ));
            }
        }
    }
    let terms = wholesale::account_terms(tx, customer_id).await?;
    let mut sub_attributes = json!({"attributes": so.attributes, "parameters": so.parameters});
    if !so.name_servers.is_empty() {
        sub_attributes["name_servers"] = json!(so.name_servers);
    }
    let sub = Subscriptions::create(
        tx,
        &NewSubscription {
            account_id: customer_id,
            vendor_id: vendor,
            plan_id: plan.id,
            period_uid: period.uid.clone(),
            status: SubscriptionStatus::Ordered,
            start_date: start.to_string(),
            expires_on: expires.to_string(),
            // Set below, once the first charge says when the next one is.
            next_bill_date: expires.to_string(),
            auto_renew: so.auto_renew,
            quantities: quantities.clone(),
            attributes: sub_attributes,
        },
        now,
    )
    .await?;
    let first = pricing::first_charge(
        sub.id,
        &plan.content,
        period,
        quantities,
        start,
        expires,
        terms.statement_day,
    );
    let sub = Subscriptions::update_terms(
        tx,
        &sub,
        &period.uid,
        quantities,
        &expires.to_string(),
        &first.next_bill_date.to_string(),
        now,
    )
    .await?;
    let invoice = issue(
        tx,
        DocKind::Invoice,
        vendor,
        customer_id,
        cur,
        doc_lines(&first.lines, sub.id, cur, false),
        start,
        terms.due_days,
        now,
    )
    .await?;
    if let Some(inv) = &invoice {
        // Net terms: the class's charge day is printed on the invoice.
        cascade_store::collections::date_by_terms(tx, &[(inv.id, customer_id)], start).await?;
    }
    let (status, reason) = gate(tx, customer, invoice.as_ref(), now).await?;
    let total = invoice.as_ref().map(|d| d.total_minor).unwrap_or(0);
    let mut details = json!({
        "plan_id": plan.id, "period_uid": period.uid, "quantities": quantities,
        "attributes": so.attributes, "parameters": so.parameters,
        "start_date": start.to_string(), "expires_on": expires.to_string(), "next_bill_date": first.next_bill_date.to_string(),
        "invoice_id": invoice.as_ref().map(|d| d.id), "invoice_number": invoice.as_ref().and_then(|d| d.number.clone()),
    });
    if !so.name_servers.is_empty() {
        details["name_servers"] = json!(so.name_servers);
    }
    let order = Orders::create(
        tx,
        &NewOrder {
            account_id: customer_id,
            vendor_id: vendor,
            subscription_id: Some(sub.id),
            order_type: OrderType::So,
            status: OrderStatus::New.transition(status).unwrap_or(status),
            reason,
            currency: cur.code().to_string(),
            total_minor: total,
            details,
            placed_by: Some(auth.actor.user_id.0),
        },
        now,
    )
    .await?;
    for (buyer, seller, tier_plan) in &so.tiers {
        let amount = pricing::total_minor(
            &pricing::first_charge(
                sub.id,
                &tier_plan.content,
                tier_plan.content.period(&period.uid).unwrap_or(period),
                quantities,
                start,
                expires,
                terms.statement_day,
            )
            .lines,
            cur,
        );
        Wholesale::record(
            tx,
            &NewWholesale {
                order_id: order.id,
                buyer: *buyer,
                seller: *seller,
                currency: cur.code().to_string(),
                amount_minor: amount,
            },
            now,
        )
        .await?;
    }
    emit(tx, now, "order.placed", customer_id, auth, "order", order.id,
        json!({"order_id": order.id, "type": "SO", "subscription_id": sub.id, "plan_id": plan.id, "status": order.status.as_str(), "total_minor": total})).await?;
    if order.status == OrderStatus::Paid {
        after_paid(tx, auth, &order, now).await?;
    }
    Ok(order)
}

/// Inside `tx`: an order waiting for payment whose invoice is now covered (paid through
/// an allocation, or by the balance) moves to `paid` and on to provisioning. Returns the
/// order as it is afterwards (unchanged when still not covered).
pub(crate) async fn promote_if_covered(
    tx: &mut cascade_store::Tx,
    auth: &Authed,
    customer: &Account,
    order: &Order,
    now: Timestamp,
) -> ApiResult<Order> {
    if !matches!(
        order.status,
        OrderStatus::New | OrderStatus::WaitingForPayment
    ) {
        return Ok(order.clone());
    }
    let invoice = match order.details["invoice_id"].as_i64() {
        Some(i) => Some(Documents::get_in(tx, i).await?),
        None => None,
    };
    let (status, reason) = gate(tx, customer, invoice.as_ref(), now).await?;
    if status != OrderStatus::Paid {
        Orders::set_reason(tx, order.id, reason.as_deref(), now).await?;
        return Orders::get_in(tx, order.id).await.map_err(Into::into);
    }
    order.status.transition(OrderStatus::Paid)?;
    if !Orders::set_status(tx, order.id, order.status, OrderStatus::Paid, None, now).await? {
        return Err(ApiError::conflict("the order changed meanwhile; try again"));
    }
    let paid = Orders::get_in(tx, order.id).await?;
    after_paid(tx, auth, &paid, now).await?;
    Ok(paid)
}

/// For each reseller between the customer and the provider: (buyer, its vendor, the
/// vendor's copy of the plan). Walks `parent_plan_id` up the chain; stops at an
/// original (a reseller's own plan owes nobody).
async fn wholesale_tiers(
    st: &AppState,
    chain: &[Account],
    plan: &Plan,
    period_uid: &str,
) -> ApiResult<Vec<(AccountId, AccountId, Plan)>> {
    let mut out = Vec::new();
    let mut current = plan.clone();
    for pair in chain.windows(2) {
        let (buyer, seller) = (&pair[0], &pair[1]);
        if buyer.kind != AccountKind::Reseller || current.owner_account_id != buyer.id {
            break;
        }
        let Some(parent_id) = current.parent_plan_id else {
            break;
        };
        let parent = st.db.plans().get(parent_id).await?;
        if parent.owner_account_id != seller.id {
            tracing::error!(
                plan = current.id,
                parent = parent.id,
                "a plan copy's parent is not owned by its owner's vendor"
            );
            return Err(ApiError::conflict(
                "the plan's delegation chain does not follow the account tree",
            ));
        }
        if parent.content.period(period_uid).is_none() {
            tracing::error!(
                plan = current.id,
                parent = parent.id,
                period_uid,
                "a plan copy has a period its parent lacks"
            );
            return Err(ApiError::conflict(
                "the vendor's copy of the plan lacks this subscription period",
            ));
        }
        out.push((buyer.id, seller.id, parent.clone()));
        current = parent;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Reads.

#[utoipa::path(get, path = "/api/v1/accounts/{id}/orders", tag = "orders", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = PageOut<OrderOut>, description = "The account's orders, newest first"), ProblemResponses))]
pub(crate) async fn list_orders(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<OrderOut>>> {
    auth.check(&st, AccountId(id), Action::ViewOrders).await?;
    let p = st
        .db
        .orders()
        .of_account(AccountId(id), q.after()?, q.limit()?)
        .await?;
    let mut items = Vec::with_capacity(p.items.len());
    for o in p.items {
        items.push(order_view(&st, &auth, o).await?);
    }
    Ok(Json(PageOut::new(items, p.next)))
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", params(("id" = i64, Path)), responses((status = 200, body = OrderOut), ProblemResponses))]
async fn get_order(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<OrderOut>> {
    let o = order_for(&st, &auth, id, Action::ViewOrders).await?;
    Ok(Json(order_view(&st, &auth, o).await?))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/subscriptions", tag = "orders", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = PageOut<SubscriptionOut>, description = "The account's subscriptions, oldest first"), ProblemResponses))]
pub(crate) async fn list_subscriptions(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<SubscriptionOut>>> {
    auth.check(&st, AccountId(id), Action::ViewOrders).await?;
    let p = st
        .db
        .subscriptions()
        .of_account(AccountId(id), q.after()?, q.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(sub_out).collect(),
        p.next,
    )))
}

#[utoipa::path(get, path = "/api/v1/subscriptions/{id}", tag = "orders", params(("id" = i64, Path)), responses((status = 200, body = SubscriptionOut), ProblemResponses))]
async fn get_subscription(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<SubscriptionOut>> {
    let (s, _) = sub_for(&st, &auth, id, Action::ViewOrders).await?;
    Ok(Json(sub_out(s)))
}

// ---------------------------------------------------------------------------------------
// Payment and provisioning retries.

#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = OrderOut, description = "Paid from the customer's balance (open payments and credit memos are allocated), or already past payment"),
        (status = 409, description = "The balance does not cover it (`insufficient_balance`), the account is held (`account_on_hold`), a deferred change is not due (`not_yet_due`), or the order is closed"),
        ProblemResponses))]
pub(crate) async fn pay_order(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<OrderOut>> {
    let order = order_for(&st, &auth, id, Action::PlaceOrder).await?;
    match order.status {
        OrderStatus::Paid | OrderStatus::Provisioning | OrderStatus::Completed => {
            return Ok(Json(order_view(&st, &auth, order).await?));
        }
        OrderStatus::Failed | OrderStatus::Cancelled => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "order_closed",
                "The order cannot be paid",
            )
            .detail(format!("the order is {}", order.status.as_str())));
        }
        OrderStatus::New | OrderStatus::WaitingForPayment => {}
    }
    let customer = st.db.accounts().get(order.account_id).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let order = Orders::get_in(&mut tx, order.id).await?;
    if !matches!(
        order.status,
        OrderStatus::New | OrderStatus::WaitingForPayment
    ) {
        return Ok(Json(order_view(&st, &auth, order).await?));
    }
    let after = promote_if_covered(&mut tx, &auth, &customer, &order, now).await?;
    if after.status != OrderStatus::Paid {
        tx.commit().await?;
        return Err(if is_held(&customer) {
            ApiError::new(
                StatusCode::CONFLICT,
                "account_on_hold",
                "The account is on hold",
            )
            .detail("orders of a held account wait until the hold is released")
        } else {
            let open = match order.details["invoice_id"].as_i64() {
                Some(i) => st.db.documents().get(i).await?.open_minor,
                None => 0,
            };
            ApiError::new(
                StatusCode::CONFLICT,
                "insufficient_balance",
                "The balance does not cover the invoice",
            )
            .detail(format!(
                "{} is open on the invoice; top up the balance and pay again",
                fmt_minor(open, currency(&order.currency)?)
            ))
        });
    }
    tx.commit().await?;
    let fresh = st.db.orders().get(order.id).await?;
    Ok(Json(order_view(&st, &auth, fresh).await?))
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/retry", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = OrderOut, description = "A failed order is back to `provisioning` (a paid order waiting on its chain stays `paid`), and provisioning is queued again"), ProblemResponses))]
pub(crate) async fn retry_order(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<OrderOut>> {
    let order = order_for(&st, &auth, id, Action::PlaceOrder).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let order = Orders::get_in(&mut tx, order.id).await?;
    match order.status {
        OrderStatus::Failed => {
            order.status.transition(OrderStatus::Provisioning)?;
            if !Orders::set_status(
                &mut tx,
                order.id,
                OrderStatus::Failed,
                OrderStatus::Provisioning,
                None,
                now,
            )
            .await?
            {
                return Err(ApiError::conflict("the order changed meanwhile; try again"));
            }
        }
        OrderStatus::Paid if order.order_type.provisions() => {}
        s => {
            return Err(ApiError::new(StatusCode::CONFLICT, "not_retryable", "Nothing to retry")
                .detail(format!("only failed orders (or paid ones waiting to be provisioned) are retried; this one is {}", s.as_str())));
        }
    }
    Tasks::enqueue(
        &mut tx,
        NewTask::new(
            PROVISION_TASK,
            Some(order.account_id),
            json!({"order_id": order.id}),
        ),
        now,
    )
    .await?;
    emit(
        &mut tx,
        now,
        "order.retried",
        order.account_id,
        &auth,
        "order",
        order.id,
        json!({"order_id": order.id}),
    )
    .await?;
    tx.commit().await?;
    let fresh = st.db.orders().get(order.id).await?;
    Ok(Json(order_view(&st, &auth, fresh).await?))
}

// ---------------------------------------------------------------------------------------
// CL: cancellation.

#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/cancel", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = OrderOut, description = "The CL order: the refund (credit memo) or cancellation fee (invoice) per the period's rules; the subscription is cancelled"),
        ProblemResponses))]
pub(crate) async fn cancel_subscription(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<OrderOut>> {
    let (sub, _) = sub_for(
        &st,
        &auth,
        id,
        Action::ManageSubscriptions {
            self_service: Some(Privilege::CancelSubscriptions),
        },
    )
    .await?;
    sub.status.transition(SubscriptionStatus::Cancelled)?;
    let plan = plan_of(&st, &sub).await?;
    let period = plan
        .content
        .period(&sub.period_uid)
        .cloned()
        .ok_or_else(ApiError::internal)?;
    let cur = currency(&plan.currency)?;
    let now = st.clock.now();
    let day = today(now);
    // The vendors' copies up the chain, for each reseller's share of a refund.
    let chains = st.db.wholesale().plan_chains(&[plan.id]).await?;
    let mut tx = st.db.begin().await?;
    let sub = Subscriptions::get_in(&mut tx, sub.id).await?;
    sub.status.transition(SubscriptionStatus::Cancelled)?;
    // Orders in flight end here: unpaid ones are cancelled; one being provisioned must finish first.
    let mut cancelled_orders = Vec::new();
    let mut their_invoices = Vec::new();
    for o in Orders::open_of_subscription_in(&mut tx, sub.id).await? {
        if o.status == OrderStatus::Provisioning {
            return Err(ApiError::conflict(format!(
                "order {} is being provisioned; cancel when it has finished",
                o.id
            )));
        }
        o.status.transition(OrderStatus::Cancelled)?;
        Orders::set_status(
            &mut tx,
            o.id,
            o.status,
            OrderStatus::Cancelled,
            Some("subscription cancelled"),
            now,
        )
        .await?;
        cancelled_orders.push(o.id);
        their_invoices.extend(o.details["invoice_id"].as_i64());
    }
    let start = date(&sub.start_date, "start_date")?;
    let term = pricing::term_containing(
        &period,
        start,
        day.min(
            date(&sub.expires_on, "expires_on")?
                .pred_opt()
                .unwrap_or(day),
        ),
    );
    let (charged, paid_until) = Subscriptions::charged_in_term(
        &mut tx,
        sub.id,
        &term.start.to_string(),
        &term.end.to_string(),
    )
    .await?;
    let covered_end = match paid_until {
        Some(e) => date(&e, "period_end")?.max(term.start + chrono::Duration::days(1)),
        None => term.end,
    };
    let covered_days = (covered_end - term.start).num_days().max(1);
    let days_used = (day - term.start).num_days().clamp(0, covered_days);
    let refund_price = amounts::refund(
        pricing::price_of_minor(charged.max(0), cur),
        &period.refund,
        days_used,
        covered_days,
    );
    let refund = pricing::minor(refund_price, cur);
    let terms = wholesale::account_terms(&mut tx, sub.account_id).await?;
    let fee = pricing::minor(period.cancellation.amount, cur);
    let fee_invoice = if fee > 0 {
        let line = ChargeLine {
            kind: LineKind::Cancellation,
            description: format!(
                "Cancellation fee — {}",
                plan.content.name.get(&plan.content.name.default)
            ),
            quantity: 1,
            unit_price: period.cancellation.amount,
            amount: period.cancellation.amount,
            period: None,
            key: format!("sub:{}:cancel:{}", sub.id, term.start),
        };
        issue(
            &mut tx,
            DocKind::Invoice,
            sub.vendor_id,
            sub.account_id,
            cur,
            doc_lines(&[line], sub.id, cur, false),
            day,
            terms.due_days,
            now,
        )
        .await?
    } else {
        None
    };
    let credit_memo = if refund > 0 {
        let line = ChargeLine {
            kind: LineKind::Refund,
            description: format!(
                "Refund — {days_used} of {covered_days} days used ({} to {covered_end}) of {} charged",
                term.start,
                fmt_minor(charged, cur)
            ),
            quantity: 1,
            unit_price: refund_price,
            amount: refund_price,
            period: None,
            key: format!("sub:{}:refund:{}", sub.id, term.start),
        };
        let mut lines = doc_lines(&[line], sub.id, cur, false);
        // The refund belongs to the term it gives back.
        for l in &mut lines {
            l.period_start = Some(term.start.to_string());
            l.period_end = Some(covered_end.to_string());
        }
        let cm = issue(
            &mut tx,
            DocKind::CreditMemo,
            sub.vendor_id,
            sub.account_id,
            cur,
            lines,
            day,
            terms.due_days,
            now,
        )
        .await?;
        if let Some(cm) = &cm {
            // The refund settles what this subscription still owes first.
            their_invoices.extend(fee_invoice.as_ref().map(|d| d.id));
            wholesale::apply_credit_to_open(&mut tx, cm, &their_invoices, now).await?;
        }
        cm
    } else {
        None
    };
    Subscriptions::move_status(
        &mut tx,
        sub.id,
        sub.status,
        SubscriptionStatus::Cancelled,
        now,
    )
    .await?;
    let order = Orders::create(
        &mut tx,
        &NewOrder {
            account_id: sub.account_id,
            vendor_id: sub.vendor_id,
            subscription_id: Some(sub.id),
            order_type: OrderType::Cl,
            // Cancelling never waits for the fee to be paid.
            status: OrderStatus::Paid,
            reason: None,
            currency: cur.code().to_string(),
            total_minor: fee_invoice.as_ref().map(|d| d.total_minor).unwrap_or(0) - credit_memo.as_ref().map(|d| d.total_minor).unwrap_or(0),
            details: json!({
                "term_start": term.start.to_string(), "term_end": term.end.to_string(), "covered_until": covered_end.to_string(),
                "days_used": days_used, "covered_days": covered_days, "charged_minor": charged, "refund_minor": refund,
                "credit_memo_id": credit_memo.as_ref().map(|d| d.id), "fee_invoice_id": fee_invoice.as_ref().map(|d| d.id),
                "invoice_id": fee_invoice.as_ref().map(|d| d.id), "cancelled_orders": cancelled_orders,
            }),
            placed_by: Some(auth.actor.user_id.0),
        },
        now,
    )
    .await?;
    if refund > 0 {
        // Each reseller of the chain gets back its share of the refund at its vendor's
        // price: a negative wholesale row, netted on its next tier invoice.
        let (_, billing_months) = pricing::cycle_of(&plan.content, start, terms.statement_day);
        let customer_fee =
            pricing::recurring_fee(&plan.content, &period, billing_months, &sub.quantities);
        for tier in chains.get(&plan.id).into_iter().flatten() {
            let Some(tier_period) = tier.content.period(&period.uid) else {
                continue;
            };
            let tier_fee =
                pricing::recurring_fee(&tier.content, tier_period, billing_months, &sub.quantities);
            // Plans charged per term (no recurring fee) share by their renewal prices.
            let share = if customer_fee.0 > 0 {
                pricing::tier_share(refund, tier_fee, customer_fee)
            } else {
                pricing::tier_share(refund, tier_period.renewal.amount, period.renewal.amount)
            };
            if share > 0 {
                Wholesale::record(
                    &mut tx,
                    &NewWholesale {
                        order_id: order.id,
                        buyer: tier.buyer,
                        seller: tier.seller,
                        currency: cur.code().to_string(),
                        amount_minor: -share,
                    },
                    now,
                )
                .await?;
            }
        }
    }
    emit(
        &mut tx,
        now,
        "order.placed",
        sub.account_id,
        &auth,
        "order",
        order.id,
        json!({"order_id": order.id, "type": "CL", "subscription_id": sub.id}),
    )
    .await?;
    emit(
        &mut tx,
        now,
        "subscription.cancelled",
        sub.account_id,
        &auth,
        "subscription",
        sub.id,
        json!({"subscription_id": sub.id, "refund_minor": refund}),
    )
    .await?;
    after_paid(&mut tx, &auth, &order, now).await?;
    tx.commit().await?;
    Ok(Json(order_view(&st, &auth, order).await?))
}

// ---------------------------------------------------------------------------------------
// CH: changes.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeIn {
    /// New units per rate (`uid`); rates not given keep theirs.
    pub quantities: Option<BTreeMap<String, i64>>,
    /// Switch to another active subscription period; always takes effect at the next billing date.
    pub period_uid: Option<String>,
    /// Apply at the next billing date instead of now (downgrades only).
    #[serde(default)]
    pub defer: bool,
    /// Switch to another plan (upgrade or downgrade): one of the same seller's plans on
    /// sale for the same service, currency and billing terms, in the same unique group
    /// (see `switch_targets`). Quantities then name the new plan's rates; resources of
    /// the same type keep their units.
    #[serde(default)]
    pub plan_id: Option<i64>,
}

/// A plan switch resolved for one subscription: the plan it moves to, that plan's
/// period matching the current one, and the quantities it will have.
pub(crate) struct Switch {
    pub plan: Plan,
    pub period: cascade_domain::catalog::plan::Period,
    pub quantities: BTreeMap<String, i64>,
}

/// The plans a subscription on `from` may switch to (upgrade or downgrade): the seller's
/// own plans on sale, for the same service template and currency, whose terms allow it
/// (`pricing::switch_period`), with that period. Sorted as the store lists them.
pub(crate) async fn switch_targets(
    st: &AppState,
    sub: &Subscription,
    from: &Plan,
) -> ApiResult<Vec<(Plan, cascade_domain::catalog::plan::Period)>> {
    let Some(period) = from.content.period(&sub.period_uid) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = st
            .db
            .plans()
            .of_owner(sub.vendor_id, true, after, 200)
            .await?;
        for p in page.items {
            if p.id == from.id
                || !p.on_sale()
                || p.template_id != from.template_id
                || p.currency != from.currency
            {
                continue;
            }
            if let Some(to) = pricing::switch_period(&from.content, period, &p.content).cloned() {
                out.push((p, to));
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    out.sort_by_key(|(p, _)| (p.content.listing_priority, p.id));
    Ok(out)
}

/// Resolve `plan_id` as a switch target of the subscription (a field error otherwise)
/// with its quantities (`chosen` by the new plan's rate uids, checked against its ranges).
pub(crate) async fn resolve_switch(
    st: &AppState,
    sub: &Subscription,
    from: &Plan,
    plan_id: i64,
    chosen: &BTreeMap<String, i64>,
) -> ApiResult<Switch> {
    let Some((plan, period)) = switch_targets(st, sub, from)
        .await?
        .into_iter()
        .find(|(p, _)| p.id == plan_id)
    else {
        return Err(ApiError::field(
            "plan_id",
            "not_switchable",
            "not a plan this subscription can switch to (the same seller's plans on sale for the same service and terms)",
        ));
    };
    let mut e = ValidationErrors::new();
    check_quantities(&mut e, &plan.content, chosen);
    e.into_result()?;
    let quantities =
        pricing::switch_quantities(&from.content, &sub.quantities, &plan.content, chosen);
    Ok(Switch {
        plan,
        period,
        quantities,
    })
}

/// What a plan switch costs now, computed exactly as [`change_subscription`] computes
/// it: the panels' "price before you confirm".
pub(crate) struct SwitchQuote {
    pub switch: Switch,
    /// Charged now (negative: credited now); zero for plans billed after the period.
    pub total_minor: i64,
    pub currency: Currency,
    /// The next billing date: when a deferred downgrade takes effect.
    pub effective_on: NaiveDate,
    /// Days left of the billing period, and its length.
    pub remaining_days: i64,
    pub period_days: i64,
}

pub(crate) async fn switch_quote(
    st: &AppState,
    auth: &Authed,
    id: i64,
    plan_id: i64,
) -> ApiResult<SwitchQuote> {
    let (sub, _) = sub_for(st, auth, id, Action::PlaceOrder).await?;
    let from = st.db.plans().get(sub.plan_id).await?;
    let switch = resolve_switch(st, &sub, &from, plan_id, &BTreeMap::new()).await?;
    let period = from
        .content
        .period(&sub.period_uid)
        .cloned()
        .ok_or_else(ApiError::internal)?;
    let cur = currency(&from.currency)?;
    let day = today(st.clock.now());
    let start = date(&sub.start_date, "start_date")?;
    let mut tx = st.db.begin().await?;
    let terms = wholesale::account_terms(&mut tx, sub.account_id).await?;
    tx.commit().await?;
    let (cycle, billing_months) = pricing::cycle_of(&from.content, start, terms.statement_day);
    let span = match from.content.billing_model {
        BillingModel::ChargeBeforeSubscriptionPeriod => {
            pricing::term_containing(&period, start, day)
        }
        _ => cycle.period_containing(day),
    };
    let prepaid = matches!(
        from.content.billing_model,
        BillingModel::ChargeBeforeBillingPeriod | BillingModel::ChargeBeforeSubscriptionPeriod
    );
    let total_minor = if prepaid {
        let lines = pricing::switch_lines(
            0,
            (&from.content, &period, &sub.quantities),
            (&switch.plan.content, &switch.period, &switch.quantities),
            billing_months,
            day,
            span,
        );
        pricing::total_minor(&lines, cur)
    } else {
        0
    };
    Ok(SwitchQuote {
        switch,
        total_minor,
        currency: cur,
        effective_on: date(&sub.next_bill_date, "next_bill_date")?.max(day),
        remaining_days: (span.end - day).num_days().clamp(0, span.days()),
        period_days: span.days(),
    })
}

/// What a change of quantities would be charged now (prorated to the rest of the current
/// billing period), computed exactly as [`change_subscription`] computes it: the panels'
/// "price before you confirm". Zero for plans billed after the period.
pub(crate) async fn change_quote(
    st: &AppState,
    auth: &Authed,
    id: i64,
    quantities: &BTreeMap<String, i64>,
) -> ApiResult<(i64, Currency)> {
    let (sub, _) = sub_for(st, auth, id, Action::PlaceOrder).await?;
    let plan = plan_of(st, &sub).await?;
    let mut e = ValidationErrors::new();
    check_quantities(&mut e, &plan.content, quantities);
    e.into_result()?;
    let period = plan
        .content
        .period(&sub.period_uid)
        .cloned()
        .ok_or_else(ApiError::internal)?;
    let cur = currency(&plan.currency)?;
    let day = today(st.clock.now());
    let mut new_q = sub.quantities.clone();
    for (k, v) in quantities {
        new_q.insert(k.clone(), *v);
    }
    let new_q = pricing::full_quantities(&plan.content, &new_q);
    let start = date(&sub.start_date, "start_date")?;
    let prepaid = matches!(
        plan.content.billing_model,
        BillingModel::ChargeBeforeBillingPeriod | BillingModel::ChargeBeforeSubscriptionPeriod
    );
    if !prepaid {
        return Ok((0, cur));
    }
    let mut tx = st.db.begin().await?;
    let terms = wholesale::account_terms(&mut tx, sub.account_id).await?;
    tx.commit().await?;
    let (cycle, billing_months) = pricing::cycle_of(&plan.content, start, terms.statement_day);
    let span = match plan.content.billing_model {
        BillingModel::ChargeBeforeSubscriptionPeriod => {
            pricing::term_containing(&period, start, day)
        }
        _ => cycle.period_containing(day),
    };
    let lines = pricing::change_lines(
        0,
        &plan.content,
        &period,
        billing_months,
        &sub.quantities,
        &new_q,
        day,
        span,
    );
    Ok((pricing::total_minor(&lines, cur), cur))
}

#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/change", tag = "orders", params(("id" = i64, Path)), request_body = ChangeIn,
    responses((status = 201, body = OrderOut, description = "The CH order: an upgrade is invoiced at once, prorated; a deferred change waits for the next billing date"),
        ProblemResponses))]
pub(crate) async fn change_subscription(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<ChangeIn>,
) -> ApiResult<(StatusCode, Json<OrderOut>)> {
    let (sub, _) = sub_for(&st, &auth, id, Action::PlaceOrder).await?;
    if sub.status != SubscriptionStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "subscription_not_active",
            "The subscription is not active",
        )
        .detail(format!(
            "only active subscriptions change; this one is {}",
            sub.status.as_str()
        )));
    }
    let plan = plan_of(&st, &sub).await?;
    let mut e = ValidationErrors::new();
    if body.quantities.is_none() && body.period_uid.is_none() && body.plan_id.is_none() {
        e.push(FieldError::new(
            "quantities",
            "nothing_to_change",
            "give new quantities, a period or a plan",
        ));
    }
    if body.plan_id.is_some() && body.period_uid.is_some() {
        e.push(FieldError::new(
            "period_uid",
            "not_with_plan_switch",
            "a plan switch keeps the length of the subscription period; change the period separately",
        ));
    }
    let switch = match body.plan_id {
        Some(pid) if body.period_uid.is_none() => Some(
            resolve_switch(
                &st,
                &sub,
                &plan,
                pid,
                &body.quantities.clone().unwrap_or_default(),
            )
            .await?,
        ),
        _ => None,
    };
    if let (Some(q), None) = (&body.quantities, &switch) {
        check_quantities(&mut e, &plan.content, q);
    }
    let new_period = match &body.period_uid {
        Some(uid) if uid != &sub.period_uid => {
            match plan.content.period(uid).filter(|p| p.active) {
                Some(p) => Some(p.clone()),
                None => {
                    e.push(FieldError::new(
                        "period_uid",
                        "unknown_period",
                        "the plan has no such active subscription period",
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    e.into_result()?;
    let period = plan
        .content
        .period(&sub.period_uid)
        .cloned()
        .ok_or_else(ApiError::internal)?;
    let customer = st.db.accounts().get(sub.account_id).await?;
    let cur = currency(&plan.currency)?;
    let now = st.clock.now();
    let day = today(now);
    let mut new_q = sub.quantities.clone();
    for (k, v) in body.quantities.clone().unwrap_or_default() {
        new_q.insert(k, v);
    }
    let new_q = match &switch {
        Some(sw) => sw.quantities.clone(),
        None => pricing::full_quantities(&plan.content, &new_q),
    };
    let start = date(&sub.start_date, "start_date")?;
    // Wholesale: the vendors' copies up the chain of the plan (and of the plan switched
    // to) as they are now, read before the transaction.
    let mut chain_plans = vec![plan.id];
    chain_plans.extend(switch.as_ref().map(|sw| sw.plan.id));
    let chains = st.db.wholesale().plan_chains(&chain_plans).await?;

    let mut tx = st.db.begin().await?;
    let sub = Subscriptions::get_in(&mut tx, sub.id).await?;
    if let Some(o) = Orders::open_of_subscription_in(&mut tx, sub.id)
        .await?
        .into_iter()
        .find(|o| matches!(o.order_type, OrderType::Ch | OrderType::Cl | OrderType::So))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_in_progress",
            "Another order is in progress",
        )
        .detail(format!(
            "order {} ({}) of this subscription has not finished",
            o.id,
            o.order_type.as_str()
        )));
    }
    let terms = wholesale::account_terms(&mut tx, sub.account_id).await?;
    let (cycle, billing_months) = pricing::cycle_of(&plan.content, start, terms.statement_day);
    let span = match plan.content.billing_model {
        BillingModel::ChargeBeforeSubscriptionPeriod => {
            pricing::term_containing(&period, start, day)
        }
        _ => cycle.period_containing(day),
    };
    // A placeholder order id is needed for the line keys: create the order first.
    let deferred = body.defer || new_period.is_some();
    let effective_on = date(&sub.next_bill_date, "next_bill_date")?.max(day);
    let order = Orders::create(
        &mut tx,
        &NewOrder {
            account_id: sub.account_id,
            vendor_id: sub.vendor_id,
            subscription_id: Some(sub.id),
            order_type: OrderType::Ch,
            status: OrderStatus::New,
            reason: None,
            currency: cur.code().to_string(),
            total_minor: 0,
            details: json!({}),
            placed_by: Some(auth.actor.user_id.0),
        },
        now,
    )
    .await?;
    let prepaid = matches!(
        plan.content.billing_model,
        BillingModel::ChargeBeforeBillingPeriod | BillingModel::ChargeBeforeSubscriptionPeriod
    );
    let price = |order_id: i64| match &switch {
        Some(sw) => pricing::switch_lines(
            order_id,
            (&plan.content, &period, &sub.quantities),
            (&sw.plan.content, &sw.period, &new_q),
            billing_months,
            day,
            span,
        ),
        None => pricing::change_lines(
            order_id,
            &plan.content,
            &period,
            billing_months,
            &sub.quantities,
            &new_q,
            day,
            span,
        ),
    };
    let lines = if prepaid && !deferred {
        price(order.id)
    } else {
        vec![]
    };
    let net = pricing::total_minor(&lines, cur);
    if body.defer && new_period.is_none() {
        // Only a change that costs less may wait for the next billing date.
        let probe = price(order.id);
        if pricing::total_minor(&probe, cur) > 0 {
            return Err(ApiError::field(
                "defer",
                "upgrade_not_deferrable",
                "an upgrade is charged and applied now; only downgrades can be deferred",
            ));
        }
    }
    let mut change = json!({"quantities": new_q, "period_uid": new_period.as_ref().map(|p| p.uid.clone()).unwrap_or_else(|| sub.period_uid.clone())});
    if let Some(sw) = &switch {
        change["plan_id"] = json!(sw.plan.id);
        change["period_uid"] = json!(sw.period.uid);
    }
    if let Some(p) = &new_period {
        // The new period starts a new term on the effective date.
        change["expires_on"] = json!(pricing::term_end(p, effective_on).to_string());
    }
    let mut details = json!({
        "change": change, "from": {"plan_id": sub.plan_id, "quantities": sub.quantities, "period_uid": sub.period_uid},
        "deferred": deferred, "effective_on": if deferred { json!(effective_on.to_string()) } else { Value::Null },
        "proration": {"period_start": span.start.to_string(), "period_end": span.end.to_string(), "remaining_days": (span.end - day).num_days(), "period_days": span.days()},
        "invoice_id": Value::Null, "credit_memo_id": Value::Null,
    });
    let (status, reason, total) = if deferred {
        (
            OrderStatus::Paid,
            Some(format!("deferred until {effective_on}")),
            0,
        )
    } else if net > 0 {
        let inv = issue(
            &mut tx,
            DocKind::Invoice,
            sub.vendor_id,
            sub.account_id,
            cur,
            doc_lines(&lines, sub.id, cur, false),
            day,
            terms.due_days,
            now,
        )
        .await?;
        details["invoice_id"] = json!(inv.as_ref().map(|d| d.id));
        // Each reseller of the chain owes its vendor's price for the same change.
        let to_plan = switch.as_ref().map_or(plan.id, |sw| sw.plan.id);
        for tier in chains.get(&plan.id).into_iter().flatten() {
            let Some(to) = chains
                .get(&to_plan)
                .and_then(|c| c.iter().find(|t| t.buyer == tier.buyer))
            else {
                continue;
            };
            let (Some(from_period), Some(to_period)) = (
                tier.content.period(&period.uid),
                to.content
                    .period(switch.as_ref().map_or(&period.uid, |sw| &sw.period.uid)),
            ) else {
                continue;
            };
            let tier_lines = match &switch {
                Some(_) => pricing::switch_lines(
                    order.id,
                    (&tier.content, from_period, &sub.quantities),
                    (&to.content, to_period, &new_q),
                    billing_months,
                    day,
                    span,
                ),
                None => pricing::change_lines(
                    order.id,
                    &tier.content,
                    from_period,
                    billing_months,
                    &sub.quantities,
                    &new_q,
                    day,
                    span,
                ),
            };
            let amount = pricing::total_minor(&tier_lines, cur);
            if amount > 0 {
                Wholesale::record(
                    &mut tx,
                    &NewWholesale {
                        order_id: order.id,
                        buyer: tier.buyer,
                        seller: tier.seller,
                        currency: cur.code().to_string(),
                        amount_minor: amount,
                    },
                    now,
                )
                .await?;
            }
        }
        let (s, r) = gate(&mut tx, &customer, inv.as_ref(), now).await?;
        (s, r, inv.map(|d| d.total_minor).unwrap_or(0))
    } else if net < 0 {
        let cm = issue(
            &mut tx,
            DocKind::CreditMemo,
            sub.vendor_id,
            sub.account_id,
            cur,
            doc_lines(&lines, sub.id, cur, true),
            day,
            terms.due_days,
            now,
        )
        .await?;
        if let Some(cm) = &cm {
            wholesale::apply_credit_to_open(&mut tx, cm, &[], now).await?;
        }
        details["credit_memo_id"] = json!(cm.as_ref().map(|d| d.id));
        (
            OrderStatus::Paid,
            None,
            -cm.map(|d| d.total_minor).unwrap_or(0),
        )
    } else {
        (OrderStatus::Paid, None, 0)
    };
    Orders::set_details(&mut tx, order.id, total, &details, now).await?;
    if status != OrderStatus::New {
        OrderStatus::New.transition(status)?;
        Orders::set_status(
            &mut tx,
            order.id,
            OrderStatus::New,
            status,
            reason.as_deref(),
            now,
        )
        .await?;
    }
    let order = Orders::get_in(&mut tx, order.id).await?;
    emit(&mut tx, now, "order.placed", sub.account_id, &auth, "order", order.id,
        json!({"order_id": order.id, "type": "CH", "subscription_id": sub.id, "status": order.status.as_str(), "deferred": deferred})).await?;
    if deferred {
        // Applied by the provisioning task on the effective date; nothing to pay.
        let run_at = effective_on
            .and_hms_opt(0, 0, 0)
            .map(|t| Timestamp(t.and_utc().timestamp_micros()))
            .unwrap_or(now);
        let mut task = NewTask::new(
            PROVISION_TASK,
            Some(sub.account_id),
            json!({"order_id": order.id}),
        );
        task.run_at = Some(run_at.max(now));
        Tasks::enqueue(&mut tx, task, now).await?;
        emit(
            &mut tx,
            now,
            "order.deferred",
            sub.account_id,
            &auth,
            "order",
            order.id,
            json!({"order_id": order.id, "effective_on": effective_on.to_string()}),
        )
        .await?;
    } else if order.status == OrderStatus::Paid {
        after_paid(&mut tx, &auth, &order, now).await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(order_view(&st, &auth, order).await?),
    ))
}

// ---------------------------------------------------------------------------------------
// RN: renewal.

#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/renew", tag = "orders", params(("id" = i64, Path)),
    responses((status = 201, body = OrderOut, description = "The RN order: renewal fee (and, for plans charged per subscription period, the next term) invoiced; the term is extended once paid"),
        ProblemResponses))]
async fn renew_subscription(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<OrderOut>)> {
    let (sub, _) = sub_for(&st, &auth, id, Action::PlaceOrder).await?;
    if !matches!(
        sub.status,
        SubscriptionStatus::Active | SubscriptionStatus::Expired | SubscriptionStatus::Graced
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_renewable",
            "The subscription cannot be renewed",
        )
        .detail(format!(
            "active, expired or graced subscriptions renew; this one is {}",
            sub.status.as_str()
        )));
    }
    let plan = plan_of(&st, &sub).await?;
    let period = plan
        .content
        .period(&sub.period_uid)
        .cloned()
        .ok_or_else(ApiError::internal)?;
    let customer = st.db.accounts().get(sub.account_id).await?;
    let cur = currency(&plan.currency)?;
    let now = st.clock.now();
    let day = today(now);
    let mut tx = st.db.begin().await?;
    let sub = Subscriptions::get_in(&mut tx, sub.id).await?;
    if let Some(o) = Orders::open_of_subscription_in(&mut tx, sub.id)
        .await?
        .into_iter()
        .next()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_in_progress",
            "Another order is in progress",
        )
        .detail(format!(
            "order {} ({}) of this subscription has not finished",
            o.id,
            o.order_type.as_str()
        )));
    }
    let terms = wholesale::account_terms(&mut tx, sub.account_id).await?;
    let term_start = date(&sub.expires_on, "expires_on")?;
    let term_end = cascade_domain::billing::calendar::add_months(
        term_start,
        cascade_domain::billing::charges::period_months(&period) as i32,
    );
    // As the daily run's automatic renewal: a plan charged per subscription period pays
    // its renewal fee for the new term; other plans are billed period by period anyway.
    let mut lines = Vec::new();
    if plan.content.billing_model == BillingModel::ChargeBeforeSubscriptionPeriod {
        lines.push(pricing::renewal_line(
            sub.id,
            &plan.content,
            &period,
            cascade_domain::billing::calendar::Span {
                start: term_start,
                end: term_end,
            },
        ));
    }
    let invoice = issue(
        &mut tx,
        DocKind::Invoice,
        sub.vendor_id,
        sub.account_id,
        cur,
        doc_lines(&lines, sub.id, cur, false),
        day,
        terms.due_days,
        now,
    )
    .await?;
    let (status, reason) = gate(&mut tx, &customer, invoice.as_ref(), now).await?;
    let order = Orders::create(
        &mut tx,
        &NewOrder {
            account_id: sub.account_id,
            vendor_id: sub.vendor_id,
            subscription_id: Some(sub.id),
            order_type: OrderType::Rn,
            status,
            reason,
            currency: cur.code().to_string(),
            total_minor: invoice.as_ref().map(|d| d.total_minor).unwrap_or(0),
            details: json!({"term_start": term_start.to_string(), "new_expires_on": term_end.to_string(),
                "invoice_id": invoice.as_ref().map(|d| d.id), "invoice_number": invoice.as_ref().and_then(|d| d.number.clone())}),
            placed_by: Some(auth.actor.user_id.0),
        },
        now,
    )
    .await?;
    emit(&mut tx, now, "order.placed", sub.account_id, &auth, "order", order.id, json!({"order_id": order.id, "type": "RN", "subscription_id": sub.id, "status": order.status.as_str()})).await?;
    if order.status == OrderStatus::Paid {
        after_paid(&mut tx, &auth, &order, now).await?;
    }
    tx.commit().await?;
    let fresh = st.db.orders().get(order.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(order_view(&st, &auth, fresh).await?),
    ))
}

// ---------------------------------------------------------------------------------------
// Restore and auto-renew.

#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/restore", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = SubscriptionOut, description = "Terminated → active, when the service's data still exists (else 422 `data_gone`)"), ProblemResponses))]
async fn restore_subscription(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<SubscriptionOut>> {
    let (sub, _) = sub_for(
        &st,
        &auth,
        id,
        Action::ManageSubscriptions { self_service: None },
    )
    .await?;
    if sub.status != SubscriptionStatus::Terminated {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_terminated",
            "Only terminated subscriptions are restored",
        )
        .detail(format!("this subscription is {}", sub.status.as_str())));
    }
    if sub.data_removed {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "data_gone",
            "The subscription's data is gone",
        )
        .detail(
            "the service's data was removed after termination; the subscription cannot be restored",
        ));
    }
    sub.status.transition(SubscriptionStatus::Active)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if !Subscriptions::move_status(
        &mut tx,
        sub.id,
        SubscriptionStatus::Terminated,
        SubscriptionStatus::Active,
        now,
    )
    .await?
    {
        return Err(ApiError::conflict(
            "the subscription changed meanwhile; try again",
        ));
    }
    Subscriptions::clear_termination(&mut tx, sub.id).await?;
    emit(
        &mut tx,
        now,
        "subscription.restored",
        sub.account_id,
        &auth,
        "subscription",
        sub.id,
        json!({"subscription_id": sub.id}),
    )
    .await?;
    let fresh = Subscriptions::get_in(&mut tx, sub.id).await?;
    tx.commit().await?;
    Ok(Json(sub_out(fresh)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSubscriptionIn {
    /// `{"mode": "off" | "on_expiry"}` or `{"mode": "days_before", "days": N}`.
    #[schema(value_type = Object)]
    pub auto_renew: AutoRenew,
}

#[utoipa::path(patch, path = "/api/v1/subscriptions/{id}", tag = "orders", params(("id" = i64, Path)), request_body = PatchSubscriptionIn,
    responses((status = 200, body = SubscriptionOut, description = "Auto-renew changed (customers need CHANGE_AUTO_RENEW)"), ProblemResponses))]
pub(crate) async fn patch_subscription(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PatchSubscriptionIn>,
) -> ApiResult<Json<SubscriptionOut>> {
    let (sub, _) = sub_for(
        &st,
        &auth,
        id,
        Action::ManageSubscriptions {
            self_service: Some(Privilege::ChangeAutoRenew),
        },
    )
    .await?;
    if let AutoRenew::DaysBefore { days } = body.auto_renew
        && !(1..=365).contains(&days)
    {
        return Err(ApiError::field(
            "auto_renew.days",
            "out_of_range",
            "between 1 and 365 days",
        ));
    }
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let fresh = Subscriptions::set_auto_renew(&mut tx, sub.id, body.auto_renew, now).await?;
    emit(
        &mut tx,
        now,
        "subscription.updated",
        sub.account_id,
        &auth,
        "subscription",
        sub.id,
        json!({"auto_renew": body.auto_renew}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(sub_out(fresh)))
}

// ---------------------------------------------------------------------------------------
// Invoice preview.

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewLineOut {
    /// `recurring`, `resource`, `overuse`, `usage`, `adjustment` (renewal fee), …
    pub kind: String,
    /// Why: what is billed, for which days, and any proration.
    pub description: String,
    pub quantity: i64,
    /// Exact unit price in millionths of the currency unit.
    pub unit_price_micro: i64,
    /// The line's amount, rounded to the minor unit.
    pub amount_minor: i64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    /// The exactly-once key the line will be billed under.
    pub charge_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoicePreviewOut {
    pub subscription_id: i64,
    /// The next billing date.
    pub billing_date: String,
    pub currency: String,
    pub lines: Vec<PreviewLineOut>,
    pub total_minor: i64,
    /// How lines are rounded.
    pub rounding: String,
    /// Anything else that decides the charge (expiry, deferred changes, postpaid usage so far).
    pub notes: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/subscriptions/{id}/invoice-preview", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = InvoicePreviewOut, description = "What the subscription will be charged on its next billing date, line by line, and why"), ProblemResponses))]
async fn invoice_preview(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<InvoicePreviewOut>> {
    let (sub, _) = sub_for(&st, &auth, id, Action::ViewOrders).await?;
    let plan = plan_of(&st, &sub).await?;
    let cur = currency(&plan.currency)?;
    let billing_date = date(&sub.next_bill_date, "next_bill_date")?;
    let expires = date(&sub.expires_on, "expires_on")?;
    let start = date(&sub.start_date, "start_date")?;
    let mut notes = Vec::new();
    let mut out = InvoicePreviewOut {
        subscription_id: sub.id,
        billing_date: billing_date.to_string(),
        currency: cur.code().to_string(),
        lines: vec![],
        total_minor: 0,
        rounding: ROUNDING_RULE.to_string(),
        notes: vec![],
    };
    if !matches!(
        sub.status,
        SubscriptionStatus::Active | SubscriptionStatus::Graced | SubscriptionStatus::Expired
    ) {
        out.notes.push(format!(
            "the subscription is {}: nothing is billed",
            sub.status.as_str()
        ));
        return Ok(Json(out));
    }
    // Deferred changes effective by the billing date are part of what will be billed.
    let mut quantities = sub.quantities.clone();
    let mut period_uid = sub.period_uid.clone();
    // Deferred changes wait as paid orders: the unfinished ones, oldest first.
    for o in st.db.orders().open_of_subscription(sub.id).await? {
        if o.order_type == OrderType::Ch
            && o.status == OrderStatus::Paid
            && o.details["deferred"] == json!(true)
        {
            let eff = o.details["effective_on"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if eff.as_str() <= billing_date.to_string().as_str() {
                if let Ok(q) = serde_json::from_value::<BTreeMap<String, i64>>(
                    o.details["change"]["quantities"].clone(),
                ) {
                    quantities = q;
                }
                if let Some(p) = o.details["change"]["period_uid"].as_str() {
                    period_uid = p.to_string();
                }
                notes.push(format!(
                    "includes the change of order {} effective {eff}",
                    o.id
                ));
            }
        }
    }
    let period = plan
        .content
        .period(&period_uid)
        .cloned()
        .ok_or_else(ApiError::internal)?;
    let terms = st.db.wholesale().account_terms(sub.account_id).await?;
    let (cycle, _) = pricing::cycle_of(&plan.content, start, terms.statement_day);
    // The usage the daily run will take: of the period ending before the billing date.
    let span = cycle.period_containing(billing_date.pred_opt().unwrap_or(start));
    let usage = st
        .db
        .subscriptions()
        .unbilled_usage(sub.id, &span.start.to_string(), &span.end.to_string())
        .await?;
    let (lines, why) = pricing::next_charge(
        sub.id,
        &plan.content,
        &period,
        &quantities,
        &usage,
        start,
        billing_date,
        expires,
        sub.auto_renew != AutoRenew::Off,
        terms.statement_day,
    );
    notes.extend(why);
    out.lines = lines
        .iter()
        .map(|l| PreviewLineOut {
            kind: l.kind.as_str().to_string(),
            description: l.description.clone(),
            quantity: l.quantity,
            unit_price_micro: l.unit_price.0,
            amount_minor: pricing::minor(l.amount, cur),
            period_start: l.period.map(|p| p.start.to_string()),
            period_end: l.period.map(|p| p.end.to_string()),
            charge_key: l.key.clone(),
        })
        .collect();
    out.total_minor = out.lines.iter().map(|l| l.amount_minor).sum();
    out.notes = notes;
    Ok(Json(out))
}

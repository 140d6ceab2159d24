//! What a subscription is charged, line by line, for a billing period.
//!
//! Pure: given the plan's terms as the subscription sees them (its period, its resource
//! quantities and usage) and the period being billed, produce the charge lines with
//! their exactly-once keys. The same function answers "what will this subscription be
//! charged on its next billing date, and why" (invoice preview) and feeds the daily run.

use super::amounts::{scale, times};
use super::calendar::Span;
use crate::catalog::plan::{BillingModel, Period, PeriodUnit, PlanContent, Price, RecurringBasis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Setup,
    Recurring,
    Resource,
    Overuse,
    Usage,
    Proration,
    Refund,
    Cancellation,
    Adjustment,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Setup => "setup",
            LineKind::Recurring => "recurring",
            LineKind::Resource => "resource",
            LineKind::Overuse => "overuse",
            LineKind::Usage => "usage",
            LineKind::Proration => "proration",
            LineKind::Refund => "refund",
            LineKind::Cancellation => "cancellation",
            LineKind::Adjustment => "adjustment",
        }
    }
}

/// One charge, before rounding to the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeLine {
    pub kind: LineKind,
    pub description: String,
    pub quantity: i64,
    pub unit_price: Price,
    pub amount: Price,
    pub period: Option<Span>,
    /// Unique per thing billed: the same charge computed twice has the same key.
    pub key: String,
}

/// The billing cycle of a subscription of `plan` started on `start` for an account whose
/// statement day is `statement_day`, and the months in one billing period.
pub fn billing_cycle(
    plan: &PlanContent,
    start: chrono::NaiveDate,
    statement_day: u32,
) -> (super::calendar::Cycle, u32) {
    use super::calendar::Cycle;
    use crate::catalog::plan::BillingPeriodType;
    match plan.period_type {
        BillingPeriodType::MonthlyOnStatementDay => (Cycle::Statement { day: statement_day }, 1),
        BillingPeriodType::EveryNMonths { months } => (
            Cycle::Anniversary {
                start,
                months: months.max(1),
            },
            months.max(1),
        ),
    }
}

/// Length of a subscription period in months (days count as 1/30 month, rounded up).
pub fn period_months(p: &Period) -> u32 {
    match p.unit {
        PeriodUnit::Month => p.duration,
        PeriodUnit::Year => p.duration * 12,
        PeriodUnit::Day => p.duration.div_ceil(30).max(1),
    }
}

/// The recurring fee for one billing period of `billing_months`, from a fee stated per
/// billing period or per subscription period.
pub fn recurring_per_billing_period(
    fee: Price,
    basis: RecurringBasis,
    period: &Period,
    billing_months: u32,
) -> Price {
    match basis {
        RecurringBasis::BillingPeriod => fee,
        RecurringBasis::SubscriptionPeriod => scale(
            fee,
            i64::from(billing_months),
            i64::from(period_months(period).max(1)),
        ),
    }
}

/// Inputs for billing one subscription over one span.
#[derive(Debug, Clone)]
pub struct BillingInput<'a> {
    pub subscription_id: i64,
    pub plan: &'a PlanContent,
    pub period: &'a Period,
    /// Chosen quantities per rate uid (the included units when absent).
    pub quantities: &'a BTreeMap<String, i64>,
    /// Recorded usage per rate uid within `span` (measurable rates).
    pub usage: &'a BTreeMap<String, i64>,
    /// Months in one billing period (1 for monthly-on-statement-day, N for every N months).
    pub billing_months: u32,
}

/// Recurring and resource charges for `span` (a whole or partial billing period of
/// `full_days` days). Partial spans (the first period from the purchase to the next
/// statement day) are prorated by days.
pub fn recurring_lines(i: &BillingInput<'_>, span: Span, full_days: i64) -> Vec<ChargeLine> {
    if i.plan.billing_model == BillingModel::ExternalRating {
        return vec![];
    }
    let part = |p: Price| {
        if span.days() >= full_days {
            p
        } else {
            scale(p, span.days(), full_days.max(1))
        }
    };
    let tag = if span.days() >= full_days {
        String::new()
    } else {
        format!(" ({} of {} days)", span.days(), full_days)
    };
    let mut out = Vec::new();
    let fee = recurring_per_billing_period(
        i.period.recurring.amount,
        i.plan.recurring_basis,
        i.period,
        i.billing_months,
    );
    if fee.0 != 0 || i.period.recurring.show_zero {
        let amount = part(fee);
        out.push(ChargeLine {
            kind: LineKind::Recurring,
            description: format!(
                "{} — {} to {}{tag}",
                i.plan.name.get(&i.plan.name.default),
                span.start,
                span.end
            ),
            quantity: 1,
            unit_price: amount,
            amount,
            period: Some(span),
            key: format!("sub:{}:rec:{}", i.subscription_id, span.start),
        });
    }
    for r in &i.plan.rates {
        let qty = i
            .quantities
            .get(&r.uid)
            .copied()
            .unwrap_or(r.included)
            .max(0);
        let billable = if r.per_unit {
            (qty - r.included.max(0)).max(0)
        } else if qty > 0 {
            1
        } else {
            0
        };
        if billable == 0 || r.recurring_fee.0 == 0 {
            continue;
        }
        let unit = part(recurring_per_billing_period(
            r.recurring_fee,
            i.plan.recurring_basis,
            i.period,
            i.billing_months,
        ));
        out.push(ChargeLine {
            kind: LineKind::Resource,
            description: format!(
                "{} × {} — {} to {}{tag}",
                billable, r.uid, span.start, span.end
            ),
            quantity: billable,
            unit_price: unit,
            amount: times(unit, billable),
            period: Some(span),
            key: format!("sub:{}:res:{}:{}", i.subscription_id, r.uid, span.start),
        });
    }
    out
}

/// Overuse of measurable resources above the included units, and pay-as-you-go usage,
/// for a period that has ended.
pub fn usage_lines(i: &BillingInput<'_>, span: Span) -> Vec<ChargeLine> {
    let mut out = Vec::new();
    for r in &i.plan.rates {
        let used = i.usage.get(&r.uid).copied().unwrap_or(0);
        if used <= 0 {
            continue;
        }
        let (kind, billable, unit) = if i.plan.billing_model == BillingModel::ExternalRating {
            (LineKind::Usage, used, r.overuse_fee)
        } else if r.measurable {
            let included = if r.included < 0 { i64::MAX } else { r.included };
            (LineKind::Overuse, (used - included).max(0), r.overuse_fee)
        } else {
            continue;
        };
        if billable == 0 || unit.0 == 0 {
            continue;
        }
        out.push(ChargeLine {
            kind,
            description: format!(
                "{} {} used — {} to {}",
                billable, r.uid, span.start, span.end
            ),
            quantity: billable,
            unit_price: unit,
            amount: times(unit, billable),
            period: Some(span),
            key: format!(
                "sub:{}:{}:{}:{}",
                i.subscription_id,
                kind.as_str(),
                r.uid,
                span.start
            ),
        });
    }
    out
}

/// The setup fee of a new subscription.
pub fn setup_lines(i: &BillingInput<'_>) -> Vec<ChargeLine> {
    let mut out = Vec::new();
    if i.period.setup.amount.0 != 0 {
        out.push(ChargeLine {
            kind: LineKind::Setup,
            description: format!("Setup — {}", i.plan.name.get(&i.plan.name.default)),
            quantity: 1,
            unit_price: i.period.setup.amount,
            amount: i.period.setup.amount,
            period: None,
            key: format!("sub:{}:setup", i.subscription_id),
        });
    }
    for r in &i.plan.rates {
        let qty = i
            .quantities
            .get(&r.uid)
            .copied()
            .unwrap_or(r.included)
            .max(0);
        if r.setup_fee.0 == 0 || qty == 0 {
            continue;
        }
        let n = if r.per_unit { qty } else { 1 };
        out.push(ChargeLine {
            kind: LineKind::Setup,
            description: format!("Setup — {} × {}", n, r.uid),
            quantity: n,
            unit_price: r.setup_fee,
            amount: times(r.setup_fee, n),
            period: None,
            key: format!("sub:{}:setup:{}", i.subscription_id, r.uid),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::calendar::Cycle;
    use crate::catalog::plan::fixtures::plan;
    use chrono::NaiveDate;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn monthly_lines_and_keys() {
        let p = plan();
        let q = BTreeMap::from([("seats".to_string(), 5)]);
        let u = BTreeMap::new();
        let i = BillingInput {
            subscription_id: 7,
            plan: &p,
            period: &p.periods[0],
            quantities: &q,
            usage: &u,
            billing_months: 1,
        };
        let span = Cycle::Statement { day: 1 }.period_containing(d(2024, 3, 1));
        let lines = recurring_lines(&i, span, span.days());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].amount, Price::units(10));
        assert_eq!(lines[0].key, "sub:7:rec:2024-03-01");
        // 5 seats, 1 included, 2.00 each.
        assert_eq!((lines[1].quantity, lines[1].amount), (4, Price::units(8)));
        // Same inputs, same keys: the basis of exactly-once.
        assert_eq!(recurring_lines(&i, span, span.days()), lines);
    }

    #[test]
    fn partial_first_period_is_prorated() {
        let p = plan();
        let q = BTreeMap::new();
        let u = BTreeMap::new();
        let i = BillingInput {
            subscription_id: 1,
            plan: &p,
            period: &p.periods[0],
            quantities: &q,
            usage: &u,
            billing_months: 1,
        };
        let span = Span {
            start: d(2024, 4, 16),
            end: d(2024, 5, 1),
        };
        let lines = recurring_lines(&i, span, 30);
        assert_eq!(lines[0].amount, Price(5_000_000), "15 of 30 days of 10.00");
    }

    #[test]
    fn fee_per_subscription_period_is_spread() {
        let mut p = plan();
        p.recurring_basis = RecurringBasis::SubscriptionPeriod;
        // The yearly period costs 100 per year: 8.333333 per monthly billing period.
        assert_eq!(
            recurring_per_billing_period(
                p.periods[1].recurring.amount,
                p.recurring_basis,
                &p.periods[1],
                1
            ),
            Price(8_333_333)
        );
    }

    #[test]
    fn overuse_only_above_included() {
        let mut p = plan();
        p.rates[1].measurable = true;
        p.rates[1].included = 10;
        p.rates[1].max = 1000;
        p.rates[1].overuse_fee = Price(500_000);
        let q = BTreeMap::new();
        let u = BTreeMap::from([("storage".to_string(), 25)]);
        let i = BillingInput {
            subscription_id: 3,
            plan: &p,
            period: &p.periods[0],
            quantities: &q,
            usage: &u,
            billing_months: 1,
        };
        let lines = usage_lines(
            &i,
            Span {
                start: d(2024, 1, 1),
                end: d(2024, 2, 1),
            },
        );
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].quantity, lines[0].amount), (15, Price(7_500_000)));
    }
}

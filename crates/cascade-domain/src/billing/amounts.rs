//! Exact amounts for billing: proration, refunds and the one rounding rule.
//!
//! Prices carry six decimals ([`Price`], millionths); documents carry the currency's
//! minor unit ([`Money`]). The conversion happens in exactly one place,
//! [`to_minor`], with one rule: **half away from zero** (commercial rounding), applied
//! per invoice line, so the lines a customer reads add up to the total.

use crate::catalog::plan::{AfterRefundPeriod, Price, RefundRules};
use crate::money::{Currency, Money};

/// The rounding rule, stated for documents and tests.
pub const ROUNDING_RULE: &str = "half away from zero, per line, to the currency's minor unit";

fn div_round(n: i128, d: i128) -> i128 {
    if d == 0 {
        return 0;
    }
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d.abs() {
        q + if (n < 0) != (d < 0) { -1 } else { 1 }
    } else {
        q
    }
}

/// A price converted to the currency's minor unit, rounded half away from zero.
pub fn to_minor(p: Price, currency: Currency) -> Money {
    let digits = currency.minor_digits().min(6);
    let factor = 10i128.pow(6 - digits);
    Money::new(div_round(i128::from(p.0), factor) as i64, currency)
}

/// `amount × num / den`, exact to the millionth (half away from zero).
pub fn scale(amount: Price, num: i64, den: i64) -> Price {
    Price(div_round(i128::from(amount.0) * i128::from(num), i128::from(den)) as i64)
}

/// `unit price × quantity`.
pub fn times(unit: Price, qty: i64) -> Price {
    Price(unit.0.saturating_mul(qty))
}

/// The prorated charge of moving from `old` to `new` for the `remaining` of `total`
/// days of the billing period: (new − old) × remaining / total. Negative for a
/// downgrade (a credit).
pub fn proration(old: Price, new: Price, remaining_days: i64, total_days: i64) -> Price {
    scale(
        Price(new.0 - old.0),
        remaining_days.clamp(0, total_days.max(0)),
        total_days.max(1),
    )
}

/// The refund on cancelling after `days_used` of a `term_days` term that was `paid`,
/// following the period's refund rules: full refund (less the non-refundable amount)
/// within the full-refund period; after it, prorated for the unused days or nothing.
pub fn refund(paid: Price, rules: &RefundRules, days_used: i64, term_days: i64) -> Price {
    let keep = rules.non_refundable.0.min(paid.0);
    let base = if days_used <= i64::from(rules.full_refund_days) {
        paid.0
    } else {
        match rules.after {
            AfterRefundPeriod::NoRefund => 0,
            AfterRefundPeriod::Prorated => {
                scale(paid, (term_days - days_used).max(0), term_days.max(1)).0
            }
        }
    };
    Price((base - keep).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(to_minor(Price(12_345_000), eur()).minor, 1235); // 12.345 → 12.35
        assert_eq!(to_minor(Price(-12_345_000), eur()).minor, -1235);
        assert_eq!(to_minor(Price(12_344_999), eur()).minor, 1234);
        assert_eq!(
            to_minor(Price(1_500_000), Currency::parse("JPY").unwrap()).minor,
            2
        );
        assert_eq!(
            to_minor(Price(1_234_500), Currency::parse("KWD").unwrap()).minor,
            1235
        );
    }

    #[test]
    fn upgrade_in_the_middle_of_a_month() {
        // 10 → 20 per month, 15 of 30 days left: 5.00 more.
        assert_eq!(
            proration(Price::units(10), Price::units(20), 15, 30),
            Price::units(5)
        );
        assert_eq!(
            proration(Price::units(20), Price::units(10), 10, 30),
            Price(-3_333_333)
        );
    }

    #[test]
    fn refunds_follow_the_rules() {
        let r = RefundRules {
            full_refund_days: 30,
            non_refundable: Price::units(5),
            after: AfterRefundPeriod::Prorated,
        };
        assert_eq!(refund(Price::units(120), &r, 10, 365), Price::units(115));
        // Day 200 of 365: 165/365 of 120 = 54.246575…, less 5.
        assert_eq!(refund(Price::units(120), &r, 200, 365), Price(49_246_575));
        let none = RefundRules {
            after: AfterRefundPeriod::NoRefund,
            ..r
        };
        assert_eq!(refund(Price::units(120), &none, 200, 365), Price(0));
    }

    proptest! {
        #[test]
        fn proration_is_bounded_and_antisymmetric(old in 0i64..10_000_000_000, new in 0i64..10_000_000_000, total in 1i64..400, rem in 0i64..400) {
            let rem = rem.min(total);
            let up = proration(Price(old), Price(new), rem, total);
            let down = proration(Price(new), Price(old), rem, total);
            prop_assert_eq!(up.0, -down.0);
            prop_assert!(up.0.abs() <= (new - old).abs());
        }

        #[test]
        fn refund_never_exceeds_payment(paid in 0i64..10_000_000_000, keep in 0i64..1_000_000_000, days in 0i64..800, term in 1i64..800, full in 0u32..60) {
            let r = RefundRules { full_refund_days: full, non_refundable: Price(keep), after: AfterRefundPeriod::Prorated };
            let x = refund(Price(paid), &r, days, term);
            prop_assert!(x.0 >= 0 && x.0 <= paid);
        }

        #[test]
        fn lines_round_within_half_a_cent(p in -10_000_000_000i64..10_000_000_000) {
            let m = to_minor(Price(p), eur());
            prop_assert!((m.minor as i128 * 10_000 - p as i128).abs() <= 5_000);
        }
    }
}

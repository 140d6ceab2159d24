//! Billing calendar: months, anniversaries and billing periods.
//!
//! Month-end rule: an anniversary on the 29th–31st falls on the last day of shorter
//! months (a subscription started on 31 January renews on 28/29 February, 31 March,
//! 30 April…), and it always returns to its own day when the month is long enough — the
//! day is computed from the anchor, never from the previous (clamped) date.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

pub fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

/// `anchor_day` of the month `months` after (`year`, `month`), clamped to the month's end.
pub fn month_day(year: i32, month: u32, months: i32, anchor_day: u32) -> NaiveDate {
    let idx = year * 12 + month as i32 - 1 + months;
    let (y, m) = (idx.div_euclid(12), idx.rem_euclid(12) as u32 + 1);
    let d = anchor_day.min(days_in_month(y, m)).max(1);
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// The statement days (1–31) whose statement date is `date`: its own day, and on the
/// last day of a month also every later day the month lacks (a statement day of 31
/// falls on 30 April and 28/29 February). Inclusive range. Tier invoices use it to pick
/// the resellers whose billing day it is.
pub fn statement_days_on(date: NaiveDate) -> (u32, u32) {
    let day = date.day();
    if day == days_in_month(date.year(), date.month()) {
        (day, 31)
    } else {
        (day, day)
    }
}

/// The date `months` after `start`, keeping `start`'s day (clamped at month end).
pub fn add_months(start: NaiveDate, months: i32) -> NaiveDate {
    month_day(start.year(), start.month(), months, start.day())
}

/// How a subscription's billing periods are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Cycle {
    /// Monthly periods from the account's statement day (1–31, clamped at month end).
    Statement { day: u32 },
    /// Every `months` months from the subscription's start (its anniversary).
    Anniversary { start: NaiveDate, months: u32 },
}

/// A half-open range of days `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Span {
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d < self.end
    }
}

impl Cycle {
    /// The billing period containing `date`.
    pub fn period_containing(&self, date: NaiveDate) -> Span {
        match *self {
            Cycle::Statement { day } => {
                let this = month_day(date.year(), date.month(), 0, day);
                let start = if this <= date {
                    this
                } else {
                    month_day(date.year(), date.month(), -1, day)
                };
                Span {
                    start,
                    end: month_day(start.year(), start.month(), 1, day),
                }
            }
            Cycle::Anniversary { start, months } => {
                let months = months.max(1) as i32;
                // Periods are computed from the anchor: k-th period = [start + k·n, start + (k+1)·n).
                let approx =
                    (date.year() - start.year()) * 12 + date.month() as i32 - start.month() as i32;
                let mut k = approx.div_euclid(months);
                loop {
                    let s = add_months(start, k * months);
                    let e = add_months(start, (k + 1) * months);
                    if date < s {
                        k -= 1;
                    } else if date >= e {
                        k += 1;
                    } else {
                        return Span { start: s, end: e };
                    }
                }
            }
        }
    }

    /// The first period boundary strictly after `date`.
    pub fn next_boundary(&self, date: NaiveDate) -> NaiveDate {
        self.period_containing(date).end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn statement_days_fall_on_the_month_end_when_the_month_lacks_them() {
        assert_eq!(statement_days_on(d(2024, 3, 15)), (15, 15));
        assert_eq!(statement_days_on(d(2024, 2, 29)), (29, 31));
        assert_eq!(statement_days_on(d(2023, 2, 28)), (28, 31));
        assert_eq!(statement_days_on(d(2024, 4, 30)), (30, 31));
        assert_eq!(statement_days_on(d(2024, 1, 30)), (30, 30));
        assert_eq!(statement_days_on(d(2024, 1, 31)), (31, 31));
        for day in 1..=31 {
            // Every statement day has exactly one date in every month.
            let hits = (1..=30)
                .filter(|x| {
                    let (lo, hi) = statement_days_on(d(2024, 4, *x));
                    (lo..=hi).contains(&day)
                })
                .count();
            assert_eq!(hits, 1, "day {day}");
        }
    }

    #[test]
    fn anniversary_on_the_31st_uses_month_ends_and_comes_back() {
        let c = Cycle::Anniversary {
            start: d(2024, 1, 31),
            months: 1,
        };
        let mut ends = vec![];
        let mut at = d(2024, 1, 31);
        for _ in 0..5 {
            let p = c.period_containing(at);
            ends.push(p.end);
            at = p.end;
        }
        assert_eq!(
            ends,
            vec![
                d(2024, 2, 29),
                d(2024, 3, 31),
                d(2024, 4, 30),
                d(2024, 5, 31),
                d(2024, 6, 30)
            ]
        );
        assert_eq!(add_months(d(2023, 1, 31), 1), d(2023, 2, 28));
    }

    #[test]
    fn statement_day_periods() {
        let c = Cycle::Statement { day: 15 };
        assert_eq!(
            c.period_containing(d(2024, 3, 20)),
            Span {
                start: d(2024, 3, 15),
                end: d(2024, 4, 15)
            }
        );
        assert_eq!(
            c.period_containing(d(2024, 3, 10)),
            Span {
                start: d(2024, 2, 15),
                end: d(2024, 3, 15)
            }
        );
        let end = Cycle::Statement { day: 31 };
        assert_eq!(
            end.period_containing(d(2023, 2, 28)),
            Span {
                start: d(2023, 2, 28),
                end: d(2023, 3, 31)
            }
        );
    }

    #[test]
    fn leap_years() {
        let c = Cycle::Anniversary {
            start: d(2024, 2, 29),
            months: 12,
        };
        assert_eq!(
            c.period_containing(d(2025, 3, 1)),
            Span {
                start: d(2025, 2, 28),
                end: d(2026, 2, 28)
            }
        );
        assert_eq!(c.period_containing(d(2028, 2, 29)).start, d(2028, 2, 29));
    }

    proptest! {
        #[test]
        fn periods_tile_the_calendar(y in 2000i32..2100, m in 1u32..=12, day in 1u32..=31, months in 1u32..=24, offset in 0i64..4000) {
            let start = month_day(y, m, 0, day);
            let c = Cycle::Anniversary { start, months };
            let date = start + chrono::Duration::days(offset);
            let p = c.period_containing(date);
            prop_assert!(p.contains(date));
            // The next period starts where this one ends, and the previous ends where it starts.
            prop_assert_eq!(c.period_containing(p.end).start, p.end);
            prop_assert_eq!(c.period_containing(p.start.pred_opt().unwrap()).end, p.start);
            // Anchored: the day of a boundary is the start's day or the month's last day.
            prop_assert!(p.end.day() == start.day() || p.end.day() == days_in_month(p.end.year(), p.end.month()));
        }

        #[test]
        fn statement_periods_tile(day in 1u32..=31, y in 2000i32..2100, m in 1u32..=12, dd in 1u32..=28) {
            let c = Cycle::Statement { day };
            let date = d(y, m, dd);
            let p = c.period_containing(date);
            prop_assert!(p.contains(date));
            prop_assert_eq!(c.period_containing(p.end).start, p.end);
            prop_assert!((28..=31).contains(&p.days()));
        }
    }
}

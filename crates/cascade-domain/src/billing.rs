//! Billing computations, pure: the billing calendar, proration, refunds, rounding.

pub mod amounts;
pub mod calendar;

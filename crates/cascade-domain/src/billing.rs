//! Billing computations, pure: the billing calendar, proration, refunds, rounding.

pub mod amounts;
pub mod calendar;
pub mod charges;
pub mod checkout;
pub mod lifecycle;
pub mod payments;
pub mod visibility;

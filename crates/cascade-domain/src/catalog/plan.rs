//! Service plans: the sellable offer built on one service template.
//!
//! A plan's *content* is one value ([`PlanContent`]) so that a delegated copy is simply
//! another content linked to its original, and synchronization is a pure function from
//! (original, copy, options, restrictions) to a new copy (see [`super::sync`]). Periods
//! and resource rates carry a stable `uid` shared by the original and all its copies:
//! that is how a sync knows which period of the copy is which period of the original.
//!
//! Prices are [`Price`]s: integers in millionths of the plan's currency unit, because
//! per-unit and hourly prices need up to six decimals; invoices round to the currency's
//! minor unit at one named place (the billing module).

use super::text::{Localized, LocalizedInput};
use crate::validation::{FieldError, ValidationErrors, bounded_text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// An exact price in millionths of a currency unit (1.5 EUR = 1_500_000).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Price(pub i64);

impl Price {
    pub const SCALE: i64 = 1_000_000;
    pub fn units(u: i64) -> Price {
        Price(u * Self::SCALE)
    }
    fn check(self, field: &str) -> Result<(), FieldError> {
        if self.0 < 0 {
            Err(FieldError::new(
                field,
                "negative_fee",
                "fees cannot be negative",
            ))
        } else if self.0 > 1_000_000_000 * Self::SCALE {
            Err(FieldError::new(
                field,
                "fee_too_large",
                "fees are at most 1,000,000,000 currency units",
            ))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingModel {
    /// Charge before the billing period (prepaid): the default.
    ChargeBeforeBillingPeriod,
    /// Charge the whole subscription term up front.
    ChargeBeforeSubscriptionPeriod,
    /// Charge after the billing period (postpaid).
    ChargeAfterBillingPeriod,
    /// Pay as you go: usage is rated outside and imported; plan fees are zero.
    ExternalRating,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum BillingPeriodType {
    /// Monthly, on the account's statement day.
    MonthlyOnStatementDay,
    /// Every N months on the subscription's anniversary.
    EveryNMonths { months: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurringBasis {
    /// A recurring fee is stated per billing period.
    BillingPeriod,
    /// A recurring fee is stated per subscription period.
    SubscriptionPeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    Day,
    Month,
    Year,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fee {
    pub amount: Price,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Localized>,
    /// Show the fee even when it is zero ("Free").
    #[serde(default)]
    pub show_zero: bool,
}

impl Fee {
    pub fn of(amount: Price) -> Fee {
        Fee {
            amount,
            description: None,
            show_zero: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterRefundPeriod {
    Prorated,
    NoRefund,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRules {
    /// Days after purchase with a full refund.
    pub full_refund_days: u32,
    /// Kept on any refund.
    pub non_refundable: Price,
    pub after: AfterRefundPeriod,
}

impl Default for RefundRules {
    fn default() -> Self {
        Self {
            full_refund_days: 30,
            non_refundable: Price(0),
            after: AfterRefundPeriod::Prorated,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// Stable key shared by the original and its copies.
    pub uid: String,
    pub duration: u32,
    pub unit: PeriodUnit,
    #[serde(default)]
    pub trial: bool,
    /// Inactive periods cannot be ordered but keep serving existing subscriptions.
    pub active: bool,
    pub setup: Fee,
    pub recurring: Fee,
    pub renewal: Fee,
    pub transfer: Fee,
    pub cancellation: Fee,
    pub refund: RefundRules,
    pub sort: i32,
    /// On a copy: added by a sync while the copy's prices were locked; its prices are
    /// not chosen by the copy's owner until confirmed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum DisplayType {
    Spinner,
    Slider { min: i64, max: i64, step: i64 },
}

/// −1 stands for unlimited in `max` (and `included`).
pub const UNLIMITED: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub uid: String,
    pub resource_type_id: i64,
    /// Resource grouping: the resource category it is shown under.
    #[serde(default)]
    pub resource_category_id: Option<i64>,
    pub included: i64,
    pub min: i64,
    pub max: i64,
    pub setup_fee: Price,
    pub recurring_fee: Price,
    pub overuse_fee: Price,
    /// Fees are per unit (else flat).
    pub per_unit: bool,
    /// Usage above the included units is billed as overuse.
    pub measurable: bool,
    pub show_in_store: bool,
    pub show_in_panel: bool,
    pub display: DisplayType,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    Text,
    Integer,
    Boolean,
    Email,
    /// One of `options`.
    Choice,
}

/// An order attribute (asked of the customer at purchase) or a service parameter
/// (a value the template's connector needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub key: String,
    pub label: Localized,
    pub kind: AttributeKind,
    pub required: bool,
    /// Text: a maximum length; Integer: bounds.
    #[serde(default)]
    pub max_length: Option<u32>,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl Attribute {
    /// Check a value a customer entered.
    pub fn check_value(&self, v: Option<&str>) -> Result<(), FieldError> {
        let f = &self.key;
        let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
            return if self.required {
                Err(FieldError::new(f, "required", "this value is required"))
            } else {
                Ok(())
            };
        };
        match self.kind {
            AttributeKind::Text => {
                let max = self.max_length.unwrap_or(1000) as usize;
                bounded_text(v, max)
                    .map(|_| ())
                    .map_err(|e| FieldError::new(f, e.code, e.message))
            }
            AttributeKind::Integer => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| FieldError::new(f, "not_an_integer", "must be a whole number"))?;
                if self.min.is_some_and(|m| n < m) || self.max.is_some_and(|m| n > m) {
                    return Err(FieldError::new(
                        f,
                        "out_of_range",
                        format!("must be between {:?} and {:?}", self.min, self.max),
                    ));
                }
                Ok(())
            }
            AttributeKind::Boolean => match v {
                "true" | "false" => Ok(()),
                _ => Err(FieldError::new(f, "not_a_boolean", "must be true or false")),
            },
            AttributeKind::Email => crate::account::Email::parse(v)
                .map(|_| ())
                .map_err(|e| FieldError::new(f, e.code, e.message)),
            AttributeKind::Choice => {
                if self.options.iter().any(|o| o == v) {
                    Ok(())
                } else {
                    Err(FieldError::new(
                        f,
                        "not_an_option",
                        format!("must be one of {}", self.options.join(", ")),
                    ))
                }
            }
        }
    }
}

/// Everything a plan says, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanContent {
    pub name: Localized,
    #[serde(default)]
    pub short_description: Option<Localized>,
    #[serde(default)]
    pub long_description: Option<Localized>,
    /// Terms and conditions.
    #[serde(default)]
    pub terms: Option<Localized>,
    #[serde(default)]
    pub plan_category: Option<String>,
    /// Codes of sales categories in the owner's store.
    #[serde(default)]
    pub sales_categories: Vec<String>,
    /// Plans in one unique group exclude each other for a customer.
    #[serde(default)]
    pub unique_group: Option<String>,
    pub published: bool,
    pub visible: bool,
    pub listing_priority: i32,
    pub billing_model: BillingModel,
    pub period_type: BillingPeriodType,
    pub recurring_basis: RecurringBasis,
    pub periods: Vec<Period>,
    pub rates: Vec<Rate>,
    #[serde(default)]
    pub order_attributes: Vec<Attribute>,
    #[serde(default)]
    pub service_parameters: Vec<Attribute>,
}

fn key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// One resource of a [`PlanContent::starter`] plan: its rate key, its resource type and
/// the units included (the template's default limit; −1 unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterResource {
    pub uid: String,
    pub resource_type_id: i64,
    pub included: i64,
}

impl PlanContent {
    /// The starter plan the connector deployment wizard creates: one monthly period,
    /// prepaid, a rate per resource with the template's default limit included, every
    /// price zero, and **not published** — nobody can buy it before the seller has set
    /// its prices and published it (nobody may be sold something at a price nobody chose).
    pub fn starter(name: Localized, resources: &[StarterResource]) -> PlanContent {
        let zero = || Fee::of(Price(0));
        PlanContent {
            name,
            short_description: None,
            long_description: None,
            terms: None,
            plan_category: None,
            sales_categories: Vec::new(),
            unique_group: None,
            published: false,
            visible: false,
            listing_priority: 0,
            billing_model: BillingModel::ChargeBeforeBillingPeriod,
            period_type: BillingPeriodType::MonthlyOnStatementDay,
            recurring_basis: RecurringBasis::BillingPeriod,
            periods: vec![Period {
                uid: "m1".into(),
                duration: 1,
                unit: PeriodUnit::Month,
                trial: false,
                active: true,
                setup: zero(),
                recurring: zero(),
                renewal: zero(),
                transfer: zero(),
                cancellation: zero(),
                refund: RefundRules::default(),
                sort: 0,
                unconfirmed: false,
            }],
            rates: resources
                .iter()
                .map(|r| Rate {
                    uid: r.uid.clone(),
                    resource_type_id: r.resource_type_id,
                    resource_category_id: None,
                    included: r.included,
                    min: 0,
                    max: UNLIMITED,
                    setup_fee: Price(0),
                    recurring_fee: Price(0),
                    overuse_fee: Price(0),
                    per_unit: true,
                    measurable: false,
                    show_in_store: true,
                    show_in_panel: true,
                    display: DisplayType::Spinner,
                    unconfirmed: false,
                })
                .collect(),
            order_attributes: Vec::new(),
            service_parameters: Vec::new(),
        }
    }

    pub fn period(&self, uid: &str) -> Option<&Period> {
        self.periods.iter().find(|p| p.uid == uid)
    }
    pub fn rate(&self, uid: &str) -> Option<&Rate> {
        self.rates.iter().find(|r| r.uid == uid)
    }

    /// Whether the plan can be sold: published and nothing awaits price confirmation.
    pub fn has_unconfirmed_prices(&self) -> bool {
        self.periods.iter().any(|p| p.unconfirmed) || self.rates.iter().any(|r| r.unconfirmed)
    }

    /// Every rule a plan's content obeys.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        let text = |e: &mut ValidationErrors, field: &str, t: &Localized, max: usize| {
            if let Err(errs) = Localized::parse(&LocalizedInput::from(t), max) {
                for x in errs.0 {
                    e.push(x.under(field));
                }
            }
        };
        text(&mut e, "name", &self.name, 200);
        for (f, t) in [
            ("short_description", &self.short_description),
            ("long_description", &self.long_description),
            ("terms", &self.terms),
        ] {
            if let Some(t) = t {
                text(
                    &mut e,
                    f,
                    t,
                    if f == "short_description" {
                        500
                    } else {
                        20_000
                    },
                );
            }
        }
        for (f, v) in [
            ("plan_category", &self.plan_category),
            ("unique_group", &self.unique_group),
        ] {
            if let Some(v) = v
                && !key_ok(v)
            {
                e.push(FieldError::new(
                    f,
                    "invalid_code",
                    "a code of 1–64 letters, digits, `_ - .`",
                ));
            }
        }
        for (i, c) in self.sales_categories.iter().enumerate() {
            if !key_ok(c) {
                e.push(FieldError::new(
                    format!("sales_categories[{i}]"),
                    "invalid_code",
                    "a sales category code",
                ));
            }
        }
        if let BillingPeriodType::EveryNMonths { months } = self.period_type
            && !(1..=120).contains(&months)
        {
            e.push(FieldError::new(
                "period_type.months",
                "out_of_range",
                "between 1 and 120 months",
            ));
        }
        if self.periods.is_empty() {
            e.push(FieldError::new(
                "periods",
                "required",
                "a plan needs at least one subscription period",
            ));
        }
        let mut uids = BTreeSet::new();
        for (i, p) in self.periods.iter().enumerate() {
            let f = format!("periods[{i}]");
            if !key_ok(&p.uid) || !uids.insert(p.uid.clone()) {
                e.push(FieldError::new(
                    format!("{f}.uid"),
                    "invalid_uid",
                    "a unique key of letters, digits, `_ - .`",
                ));
            }
            if p.duration == 0 || p.duration > 120 {
                e.push(FieldError::new(
                    format!("{f}.duration"),
                    "out_of_range",
                    "between 1 and 120",
                ));
            }
            for (name, fee) in [
                ("setup", &p.setup),
                ("recurring", &p.recurring),
                ("renewal", &p.renewal),
                ("transfer", &p.transfer),
                ("cancellation", &p.cancellation),
            ] {
                if let Err(x) = fee.amount.check(&format!("{f}.{name}.amount")) {
                    e.push(x);
                }
                if self.billing_model == BillingModel::ExternalRating && fee.amount.0 != 0 {
                    e.push(FieldError::new(
                        format!("{f}.{name}.amount"),
                        "payg_fees_zero",
                        "pay-as-you-go plans have zero plan fees",
                    ));
                }
                if let Some(d) = &fee.description {
                    text(&mut e, &format!("{f}.{name}.description"), d, 500);
                }
            }
            if let Err(x) = p
                .refund
                .non_refundable
                .check(&format!("{f}.refund.non_refundable"))
            {
                e.push(x);
            }
            if p.refund.full_refund_days > 3650 {
                e.push(FieldError::new(
                    format!("{f}.refund.full_refund_days"),
                    "out_of_range",
                    "at most 3650 days",
                ));
            }
        }
        let mut rate_uids = BTreeSet::new();
        let mut types = BTreeSet::new();
        for (i, r) in self.rates.iter().enumerate() {
            let f = format!("rates[{i}]");
            if !key_ok(&r.uid) || !rate_uids.insert(r.uid.clone()) {
                e.push(FieldError::new(
                    format!("{f}.uid"),
                    "invalid_uid",
                    "a unique key of letters, digits, `_ - .`",
                ));
            }
            if !types.insert(r.resource_type_id) {
                e.push(FieldError::new(
                    format!("{f}.resource_type_id"),
                    "duplicate_resource",
                    "one rate per resource type",
                ));
            }
            if r.min < 0 {
                e.push(FieldError::new(
                    format!("{f}.min"),
                    "out_of_range",
                    "min units cannot be negative",
                ));
            }
            if r.max != UNLIMITED && r.max < r.min {
                e.push(FieldError::new(
                    format!("{f}.max"),
                    "min_above_max",
                    "min units cannot exceed max units",
                ));
            }
            let inc_ok = if r.included == UNLIMITED {
                r.max == UNLIMITED
            } else {
                r.included >= r.min && (r.max == UNLIMITED || r.included <= r.max)
            };
            if !inc_ok {
                e.push(FieldError::new(
                    format!("{f}.included"),
                    "included_out_of_range",
                    "included units must lie within [min, max]",
                ));
            }
            for (name, fee) in [
                ("setup_fee", r.setup_fee),
                ("recurring_fee", r.recurring_fee),
                ("overuse_fee", r.overuse_fee),
            ] {
                if let Err(x) = fee.check(&format!("{f}.{name}")) {
                    e.push(x);
                }
            }
            if let DisplayType::Slider { min, max, step } = r.display
                && (step <= 0
                    || min > max
                    || min < r.min
                    || (r.max != UNLIMITED && max > r.max)
                    || (max - min) % step != 0)
            {
                e.push(FieldError::new(
                    format!("{f}.display"),
                    "invalid_slider",
                    "a slider needs step > 0, min ≤ max within the rate's [min, max], and (max − min) a multiple of step",
                ));
            }
        }
        for (list, attrs) in [
            ("order_attributes", &self.order_attributes),
            ("service_parameters", &self.service_parameters),
        ] {
            let mut keys = BTreeSet::new();
            for (i, a) in attrs.iter().enumerate() {
                let f = format!("{list}[{i}]");
                if !key_ok(&a.key) || !keys.insert(a.key.clone()) {
                    e.push(FieldError::new(
                        format!("{f}.key"),
                        "invalid_key",
                        "a unique key of letters, digits, `_ - .`",
                    ));
                }
                text(&mut e, &format!("{f}.label"), &a.label, 200);
                if a.kind == AttributeKind::Choice && a.options.is_empty() {
                    e.push(FieldError::new(
                        format!("{f}.options"),
                        "required",
                        "a choice needs options",
                    ));
                }
                if let (Some(lo), Some(hi)) = (a.min, a.max)
                    && lo > hi
                {
                    e.push(FieldError::new(
                        format!("{f}.min"),
                        "min_above_max",
                        "min cannot exceed max",
                    ));
                }
            }
        }
        e.into_result()
    }

    /// The structure of a plan: what a copy may never change.
    pub fn structure(&self) -> Structure {
        Structure {
            billing_model: self.billing_model,
            period_type: self.period_type,
            periods: self
                .periods
                .iter()
                .map(|p| (p.uid.clone(), p.duration, p.unit, p.trial))
                .collect(),
            rates: self
                .rates
                .iter()
                .map(|r| {
                    (
                        r.uid.clone(),
                        r.resource_type_id,
                        r.included,
                        r.min,
                        r.max,
                        r.measurable,
                    )
                })
                .collect(),
            order_attributes: self.order_attributes.clone(),
            service_parameters: self.service_parameters.clone(),
        }
    }

    /// Check an edit of a delegated copy by its owner: prices, descriptions,
    /// categories and publication may change; the structure may not.
    pub fn check_copy_edit(&self, next: &PlanContent) -> Result<(), ValidationErrors> {
        let (a, b) = (self.structure(), next.structure());
        let mut e = ValidationErrors::new();
        let mut no = |field: &str, what: &str| {
            e.push(FieldError::new(
                field,
                "structure_locked",
                format!("a delegated copy cannot change {what}"),
            ))
        };
        if a.billing_model != b.billing_model {
            no("billing_model", "the billing model");
        }
        if a.period_type != b.period_type {
            no("period_type", "the billing period type");
        }
        if a.periods != b.periods {
            no(
                "periods",
                "which subscription periods it has or their durations",
            );
        }
        if a.rates != b.rates {
            no("rates", "which resources it has or their limits");
        }
        if a.order_attributes != b.order_attributes || a.service_parameters != b.service_parameters
        {
            no("order_attributes", "order attributes or service parameters");
        }
        e.into_result()
    }
}

/// See [`PlanContent::structure`].
#[derive(Debug, PartialEq, Eq)]
pub struct Structure {
    billing_model: BillingModel,
    period_type: BillingPeriodType,
    periods: Vec<(String, u32, PeriodUnit, bool)>,
    rates: Vec<(String, i64, i64, i64, i64, bool)>,
    order_attributes: Vec<Attribute>,
    service_parameters: Vec<Attribute>,
}

#[cfg(test)]
pub mod fixtures {
    use super::*;

    pub fn period(uid: &str, months: u32, recurring: i64) -> Period {
        Period {
            uid: uid.into(),
            duration: months,
            unit: PeriodUnit::Month,
            trial: false,
            active: true,
            setup: Fee::of(Price(0)),
            recurring: Fee::of(Price::units(recurring)),
            renewal: Fee::of(Price::units(recurring)),
            transfer: Fee::of(Price(0)),
            cancellation: Fee::of(Price(0)),
            refund: RefundRules::default(),
            sort: 0,
            unconfirmed: false,
        }
    }

    pub fn rate(uid: &str, rt: i64) -> Rate {
        Rate {
            uid: uid.into(),
            resource_type_id: rt,
            resource_category_id: None,
            included: 1,
            min: 1,
            max: 100,
            setup_fee: Price(0),
            recurring_fee: Price::units(2),
            overuse_fee: Price(0),
            per_unit: true,
            measurable: false,
            show_in_store: true,
            show_in_panel: true,
            display: DisplayType::Slider {
                min: 1,
                max: 100,
                step: 1,
            },
            unconfirmed: false,
        }
    }

    pub fn plan() -> PlanContent {
        PlanContent {
            name: Localized::new("en", "Office Suite").with("fr", "Suite bureautique"),
            short_description: Some(Localized::new("en", "Mail and documents")),
            long_description: None,
            terms: None,
            plan_category: Some("productivity".into()),
            sales_categories: vec!["office".into()],
            unique_group: None,
            published: true,
            visible: true,
            listing_priority: 10,
            billing_model: BillingModel::ChargeBeforeBillingPeriod,
            period_type: BillingPeriodType::MonthlyOnStatementDay,
            recurring_basis: RecurringBasis::BillingPeriod,
            periods: vec![period("m1", 1, 10), period("y1", 12, 100)],
            rates: vec![rate("seats", 1), rate("storage", 2)],
            order_attributes: vec![],
            service_parameters: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn codes(p: &PlanContent) -> Vec<&'static str> {
        p.validate()
            .err()
            .map(|e| e.0.iter().map(|x| x.code).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_starter_plan_is_valid_unpublished_and_free() {
        let p = PlanContent::starter(
            Localized::new("en", "Mail"),
            &[
                StarterResource {
                    uid: "mailbox".into(),
                    resource_type_id: 7,
                    included: 5,
                },
                StarterResource {
                    uid: "disk".into(),
                    resource_type_id: 8,
                    included: UNLIMITED,
                },
            ],
        );
        assert_eq!(codes(&p), Vec::<&str>::new());
        assert!(!p.published && !p.visible);
        assert_eq!(
            p.rates
                .iter()
                .map(|r| (r.resource_type_id, r.included))
                .collect::<Vec<_>>(),
            vec![(7, 5), (8, UNLIMITED)]
        );
        assert!(
            p.periods
                .iter()
                .all(|x| x.recurring.amount == Price(0) && x.setup.amount == Price(0))
        );
    }

    #[test]
    fn a_sound_plan_validates() {
        assert_eq!(codes(&plan()), Vec::<&str>::new());
    }

    #[test]
    fn bad_values_are_named() {
        let mut p = plan();
        p.periods[0].recurring.amount = Price(-1);
        p.rates[0].min = 10;
        p.rates[0].max = 5;
        p.rates[1].included = 500;
        p.rates[1].display = DisplayType::Slider {
            min: 0,
            max: 7,
            step: 2,
        };
        let c = codes(&p);
        for want in [
            "negative_fee",
            "min_above_max",
            "included_out_of_range",
            "invalid_slider",
        ] {
            assert!(c.contains(&want), "{want} missing from {c:?}");
        }
        let mut q = plan();
        q.billing_model = BillingModel::ExternalRating;
        assert!(codes(&q).contains(&"payg_fees_zero"));
        let mut r = plan();
        r.name.values.insert("xx!".into(), "x".into());
        assert!(codes(&r).contains(&"invalid_language"));
    }

    #[test]
    fn copies_cannot_change_structure_but_can_change_prices() {
        let p = plan();
        let mut priced = p.clone();
        priced.periods[0].recurring.amount = Price::units(12);
        priced.rates[0].recurring_fee = Price::units(3);
        priced.name = Localized::new("en", "My Suite");
        priced.published = false;
        assert!(p.check_copy_edit(&priced).is_ok());
        let mut s = p.clone();
        s.periods.pop();
        assert_eq!(
            p.check_copy_edit(&s).unwrap_err().0[0].code,
            "structure_locked"
        );
        let mut b = p.clone();
        b.billing_model = BillingModel::ChargeAfterBillingPeriod;
        assert!(p.check_copy_edit(&b).is_err());
        let mut l = p.clone();
        l.rates[0].max = 1000;
        assert!(p.check_copy_edit(&l).is_err());
    }

    #[test]
    fn attribute_values() {
        let a = Attribute {
            key: "login".into(),
            label: Localized::new("en", "Login"),
            kind: AttributeKind::Text,
            required: true,
            max_length: Some(5),
            min: None,
            max: None,
            options: vec![],
        };
        assert!(a.check_value(Some("bob")).is_ok());
        assert!(a.check_value(None).is_err());
        assert!(a.check_value(Some("toolong")).is_err());
    }
}

//! Payments, allocations and credit terms, pure.
//!
//! Everything here decides; nothing here writes. The HTTP layer parses requests into
//! these types and the storage layer applies the decisions inside one transaction, so
//! the rules (what may be paid, applied, refunded; when an invoice is due, when a net-terms
//! charge is taken, when an account goes on credit hold) are tested without a database.
//!
//! **Card numbers** never leave this module in clear except through
//! [`CardNumber::expose`], which only a payment gateway calls: `Debug` shows the last four
//! digits, and nothing here implements `Display` or `Serialize` for a card.
//!
//! **The test gateway** ([`test_gateway_decision`]) is deterministic so that tests and
//! demos can walk every branch of a card payment: a number ending in `0000` is declined,
//! one ending in `1111` stays pending until confirmed, anything else is approved.
//!
//! **Dates** of the billing calendar are [`NaiveDate`]s (UTC days); periods are counted in
//! calendar days, so month ends and leap years need no special case: an invoice issued
//! on 31 January with 30 days to pay is due on 2 March (1 March in a leap year).

use crate::money::{Currency, Money};
use crate::validation::{FieldError, ValidationErrors, optional_text};
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest amount accepted on one document: 10^15 minor units (10 trillion in a
/// two-decimal currency), far from `i64` overflow when summed.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

/// A positive amount in minor units, within [`MAX_AMOUNT_MINOR`].
pub fn positive_amount(amount_minor: i64) -> Result<i64, FieldError> {
    if amount_minor <= 0 {
        return Err(FieldError::new(
            "",
            "must_be_positive",
            "must be a positive amount in minor units (e.g. cents)",
        ));
    }
    if amount_minor > MAX_AMOUNT_MINOR {
        return Err(FieldError::new(
            "",
            "too_large",
            format!("must be at most {MAX_AMOUNT_MINOR}"),
        ));
    }
    Ok(amount_minor)
}

// ---------------------------------------------------------------------------------------
// Payment methods and cards
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Recorded by the seller when the money arrives on its bank account.
    BankTransfer,
    /// Recorded by the seller when the check is cashed.
    Check,
    /// Charged through the payment gateway.
    Card,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 3] = [
        PaymentMethod::BankTransfer,
        PaymentMethod::Check,
        PaymentMethod::Card,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::BankTransfer => "bank_transfer",
            PaymentMethod::Check => "check",
            PaymentMethod::Card => "card",
        }
    }
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "",
                    "invalid_method",
                    "must be one of bank_transfer, check, card",
                )
            })
    }
    /// Money that arrived outside Cascade and is recorded by the seller (not charged).
    pub fn is_manual(self) -> bool {
        !matches!(self, PaymentMethod::Card)
    }
    /// What a customer reads on the document.
    pub fn label(self) -> &'static str {
        match self {
            PaymentMethod::BankTransfer => "bank transfer",
            PaymentMethod::Check => "check",
            PaymentMethod::Card => "card",
        }
    }
}

/// A card number: 12 to 19 digits (spaces and dashes between groups are accepted and
/// dropped). Deliberately not `Display`/`Serialize`: only its last four digits are ever
/// shown, stored or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let digits: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.is_empty() {
            return Err(FieldError::new(
                "",
                "required",
                "a card payment needs the card number",
            ));
        }
        if !digits.chars().all(|c| c.is_ascii_digit()) || !(12..=19).contains(&digits.len()) {
            return Err(FieldError::new(
                "",
                "invalid_card_number",
                "must be 12 to 19 digits",
            ));
        }
        Ok(CardNumber(digits))
    }
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
    /// `•••• 4242`, for people.
    pub fn masked(&self) -> String {
        format!("•••• {}", self.last4())
    }
    /// The full number, for the payment gateway only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(…{})", self.last4())
    }
}

/// What a payment gateway answered to a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayDecision {
    /// The money was taken: record the payment.
    Approved,
    /// The gateway needs more time (3-D Secure, bank review): record nothing yet.
    Pending,
    /// Refused: nothing moves.
    Declined,
}

/// The built-in deterministic test gateway: a card ending in `0000` is declined, `1111`
/// stays pending, anything else is approved.
pub fn test_gateway_decision(card: &CardNumber) -> GatewayDecision {
    test_gateway_decision_last4(card.last4())
}

/// [`test_gateway_decision`] for a stored card, known by its last four digits.
pub fn test_gateway_decision_last4(last4: &str) -> GatewayDecision {
    match last4 {
        "0000" => GatewayDecision::Declined,
        "1111" => GatewayDecision::Pending,
        _ => GatewayDecision::Approved,
    }
}

// ---------------------------------------------------------------------------------------
// Requests: payments, memos, refunds
// ---------------------------------------------------------------------------------------

/// A payment as the API receives it.
#[derive(Debug, Clone, Default)]
pub struct PaymentInput {
    pub amount_minor: i64,
    pub currency: String,
    pub method: String,
    pub card_number: Option<String>,
    pub apply_to: Vec<i64>,
    pub external_ref: Option<String>,
}

/// A validated payment.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub amount: Money,
    pub method: PaymentMethod,
    /// Present exactly when `method` is `card`.
    pub card: Option<CardNumber>,
    /// Documents to pay, in order; whatever is left stays open as a top-up.
    pub apply_to: Vec<i64>,
    pub external_ref: Option<String>,
}

/// Most documents one payment may name in `apply_to`.
pub const MAX_APPLY_TO: usize = 100;

fn currency_of(
    code: &str,
    account_currency: Currency,
    e: &mut ValidationErrors,
) -> Option<Currency> {
    let c = e.check("currency", Currency::parse(code))?;
    if c != account_currency {
        e.push(FieldError::new(
            "currency",
            "currency_mismatch",
            format!("the account is billed in {account_currency}"),
        ));
        return None;
    }
    Some(c)
}

impl PaymentInput {
    /// Every bad field at once; `account_currency` is the currency the account is billed in.
    pub fn validate(self, account_currency: Currency) -> Result<NewPayment, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let amount = e.check("amount_minor", positive_amount(self.amount_minor));
        let currency = currency_of(&self.currency, account_currency, &mut e);
        let method = e.check("method", PaymentMethod::parse(&self.method));
        let card = match (method, self.card_number.as_deref()) {
            (Some(PaymentMethod::Card), Some(n)) => e.check("card_number", CardNumber::parse(n)),
            (Some(PaymentMethod::Card), None) => {
                e.push(FieldError::new(
                    "card_number",
                    "required",
                    "a card payment needs the card number",
                ));
                None
            }
            (Some(_), Some(_)) => {
                e.push(FieldError::new(
                    "card_number",
                    "not_allowed",
                    "only card payments carry a card number",
                ));
                None
            }
            _ => None,
        };
        check_apply_to(&self.apply_to, &mut e);
        let external_ref = e
            .check(
                "external_ref",
                optional_text(self.external_ref.as_deref(), 200),
            )
            .flatten();
        e.into_result()?;
        match (amount, currency, method) {
            (Some(a), Some(c), Some(m)) => Ok(NewPayment {
                amount: Money::new(a, c),
                method: m,
                card,
                apply_to: self.apply_to,
                external_ref,
            }),
            _ => Err(ValidationErrors::from(FieldError::new(
                "",
                "invalid",
                "invalid payment",
            ))),
        }
    }
}

fn check_apply_to(ids: &[i64], e: &mut ValidationErrors) {
    if ids.len() > MAX_APPLY_TO {
        e.push(FieldError::new(
            "apply_to",
            "too_many",
            format!("at most {MAX_APPLY_TO} documents"),
        ));
        return;
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            e.push(FieldError::new(
                format!("apply_to[{i}]"),
                "duplicate",
                "each document at most once",
            ));
        }
    }
}

/// A credit or debit memo as the API receives it.
#[derive(Debug, Clone, Default)]
pub struct MemoInput {
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    /// Credit memos only: documents to settle at once.
    pub apply_to: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct NewMemo {
    pub amount: Money,
    pub reason: String,
    pub apply_to: Vec<i64>,
}

impl MemoInput {
    pub fn validate(self, account_currency: Currency) -> Result<NewMemo, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let amount = e.check("amount_minor", positive_amount(self.amount_minor));
        let currency = currency_of(&self.currency, account_currency, &mut e);
        let reason = e.check("reason", crate::validation::bounded_text(&self.reason, 500));
        check_apply_to(&self.apply_to, &mut e);
        e.into_result()?;
        match (amount, currency, reason) {
            (Some(a), Some(c), Some(r)) => Ok(NewMemo {
                amount: Money::new(a, c),
                reason: r,
                apply_to: self.apply_to,
            }),
            _ => Err(ValidationErrors::from(FieldError::new(
                "",
                "invalid",
                "invalid memo",
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Allocations: applying a payment or credit memo to what is owed
// ---------------------------------------------------------------------------------------

/// Which side of the books a document is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The account owes it (invoice, debit memo, refund): its open balance is a debt.
    Debit,
    /// The account has it to spend (payment, credit memo): its open balance is a credit.
    Credit,
}

/// What the allocation rule needs to know about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDocument {
    pub id: i64,
    pub side: Side,
    pub issuer: i64,
    pub account: i64,
    pub currency: String,
    pub issued: bool,
    pub open_minor: i64,
}

/// Why an allocation is refused. `field` names the request field to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("the amount must be positive")]
    NotPositive,
    #[error("only a payment or a credit memo can be applied")]
    SourceNotCredit,
    #[error("a payment or credit memo is applied to an invoice, debit memo or refund")]
    TargetNotDebit,
    #[error("the documents belong to different accounts")]
    OtherAccount,
    #[error("the documents are in different currencies")]
    CurrencyMismatch,
    #[error("only issued documents take part in allocations")]
    NotIssued,
    #[error("the amount exceeds what is open on the payment ({open})")]
    ExceedsSource { open: i64 },
    #[error("the amount exceeds what is open on the invoice ({open})")]
    ExceedsTarget { open: i64 },
}

impl AllocationError {
    /// The request field this error is about (`amount_minor` or `invoice_id`).
    pub fn field(&self) -> &'static str {
        match self {
            AllocationError::NotPositive
            | AllocationError::ExceedsSource { .. }
            | AllocationError::ExceedsTarget { .. } => "amount_minor",
            AllocationError::SourceNotCredit => "id",
            _ => "invoice_id",
        }
    }
    pub fn code(&self) -> &'static str {
        match self {
            AllocationError::NotPositive => "must_be_positive",
            AllocationError::SourceNotCredit => "not_a_credit",
            AllocationError::TargetNotDebit => "not_payable",
            AllocationError::OtherAccount => "unknown_invoice",
            AllocationError::CurrencyMismatch => "currency_mismatch",
            AllocationError::NotIssued => "not_issued",
            AllocationError::ExceedsSource { .. } | AllocationError::ExceedsTarget { .. } => {
                "exceeds_open_balance"
            }
        }
    }
    pub fn to_field_error(&self) -> FieldError {
        FieldError::new(self.field(), self.code(), self.to_string())
    }
}

/// May `amount` of `from` be applied to `to`? Same issuer, account and currency, a credit
/// onto a debit, both issued, and within both open balances.
pub fn check_allocation(
    from: &OpenDocument,
    to: &OpenDocument,
    amount: i64,
) -> Result<(), AllocationError> {
    if amount <= 0 {
        return Err(AllocationError::NotPositive);
    }
    if from.side != Side::Credit {
        return Err(AllocationError::SourceNotCredit);
    }
    if to.side != Side::Debit {
        return Err(AllocationError::TargetNotDebit);
    }
    if from.account != to.account || from.issuer != to.issuer {
        return Err(AllocationError::OtherAccount);
    }
    if from.currency != to.currency {
        return Err(AllocationError::CurrencyMismatch);
    }
    if !from.issued || !to.issued {
        return Err(AllocationError::NotIssued);
    }
    if amount > from.open_minor {
        return Err(AllocationError::ExceedsSource {
            open: from.open_minor,
        });
    }
    if amount > to.open_minor {
        return Err(AllocationError::ExceedsTarget {
            open: to.open_minor,
        });
    }
    Ok(())
}

/// Spread `amount` over documents owing `opens` (in order), each up to what it owes:
/// the amount per document (zeros included) and what is left over.
pub fn spread(amount: i64, opens: &[i64]) -> (Vec<i64>, i64) {
    let mut left = amount.max(0);
    let parts = opens
        .iter()
        .map(|o| {
            let take = left.min((*o).max(0));
            left -= take;
            take
        })
        .collect();
    (parts, left)
}

/// May `amount` of a payment with `open_minor` still unapplied be refunded?
pub fn check_refund(amount_minor: i64, open_minor: i64) -> Result<i64, FieldError> {
    let a = positive_amount(amount_minor).map_err(|e| e.under("amount_minor"))?;
    if a > open_minor {
        return Err(FieldError::new(
            "amount_minor",
            "exceeds_open_balance",
            format!("at most what is still open on the payment ({open_minor})"),
        ));
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// Credit terms
// ---------------------------------------------------------------------------------------

/// Longest period, in days, any credit term may span.
pub const MAX_TERM_DAYS: u32 = 365;

/// The credit terms of a customer class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditTerms {
    /// Invoice date → due date.
    pub due_days: u32,
    /// After the due date, before anything happens.
    pub grace_days: u32,
    /// After the grace period, before an automatic credit hold; and, once held, how
    /// long a subscription stays on credit hold before the daily run terminates it
    /// ([`hold_termination_date`]).
    pub hold_days: u32,
    /// Most the account may owe (minor units); `None` = no limit.
    pub credit_limit_minor: Option<i64>,
    pub auto_credit_hold: bool,
    /// Net terms: automatic charges are taken this many days after issue (1..=due_days),
    /// never on the issue day. `None` = charged on issue.
    pub payment_delay_days: Option<u32>,
    /// Pay-as-you-go: days between a short balance and suspension.
    pub payg_grace_days: u32,
}

impl Default for CreditTerms {
    /// The schema's defaults: due in 14 days, 7 days' grace, hold 30 days later.
    fn default() -> Self {
        CreditTerms {
            due_days: 14,
            grace_days: 7,
            hold_days: 30,
            credit_limit_minor: None,
            auto_credit_hold: true,
            payment_delay_days: None,
            payg_grace_days: 5,
        }
    }
}

/// Changes to credit terms, as the API receives them (integers unchecked). For the two
/// optional terms, `Some(None)` clears them.
#[derive(Debug, Clone, Default)]
pub struct CreditTermsInput {
    pub due_days: Option<i64>,
    pub grace_days: Option<i64>,
    pub hold_days: Option<i64>,
    pub credit_limit_minor: Option<Option<i64>>,
    pub auto_credit_hold: Option<bool>,
    pub payment_delay_days: Option<Option<i64>>,
    pub payg_grace_days: Option<i64>,
}

fn days(v: i64, min: u32) -> Result<u32, FieldError> {
    if v < i64::from(min) || v > i64::from(MAX_TERM_DAYS) {
        return Err(FieldError::new(
            "",
            "out_of_range",
            format!("must be between {min} and {MAX_TERM_DAYS} days"),
        ));
    }
    Ok(v as u32)
}

impl CreditTermsInput {
    /// The terms after applying these changes to `current`, with every rule checked.
    pub fn apply(&self, current: &CreditTerms) -> Result<CreditTerms, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let mut t = *current;
        if let Some(v) = self.due_days
            && let Some(d) = e.check("due_days", days(v, 0))
        {
            t.due_days = d;
        }
        if let Some(v) = self.grace_days
            && let Some(d) = e.check("grace_days", days(v, 0))
        {
            t.grace_days = d;
        }
        if let Some(v) = self.hold_days
            && let Some(d) = e.check("hold_days", days(v, 0))
        {
            t.hold_days = d;
        }
        if let Some(v) = self.payg_grace_days
            && let Some(d) = e.check("payg_grace_days", days(v, 0))
        {
            t.payg_grace_days = d;
        }
        if let Some(v) = self.auto_credit_hold {
            t.auto_credit_hold = v;
        }
        match self.credit_limit_minor {
            Some(Some(v)) if !(0..=MAX_AMOUNT_MINOR).contains(&v) => {
                e.push(FieldError::new(
                    "credit_limit_minor",
                    "out_of_range",
                    format!("must be between 0 and {MAX_AMOUNT_MINOR}"),
                ));
            }
            Some(v) => t.credit_limit_minor = v,
            None => {}
        }
        match self.payment_delay_days {
            Some(Some(v)) => {
                if let Some(d) = e.check("payment_delay_days", days(v, 1)) {
                    t.payment_delay_days = Some(d);
                }
            }
            Some(None) => t.payment_delay_days = None,
            None => {}
        }
        if e.is_empty()
            && let Err(x) = t.validate()
        {
            e.0.extend(x.0);
        }
        e.into_result().map(|()| t)
    }
}

impl CreditTerms {
    /// Rules between terms: a net-terms charge falls after the issue day and at the latest
    /// on the due date.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        for (field, v) in [
            ("due_days", self.due_days),
            ("grace_days", self.grace_days),
            ("hold_days", self.hold_days),
            ("payg_grace_days", self.payg_grace_days),
        ] {
            if v > MAX_TERM_DAYS {
                e.push(FieldError::new(
                    field,
                    "out_of_range",
                    format!("must be between 0 and {MAX_TERM_DAYS} days"),
                ));
            }
        }
        if let Some(l) = self.credit_limit_minor
            && !(0..=MAX_AMOUNT_MINOR).contains(&l)
        {
            e.push(FieldError::new(
                "credit_limit_minor",
                "out_of_range",
                format!("must be between 0 and {MAX_AMOUNT_MINOR}"),
            ));
        }
        if let Some(d) = self.payment_delay_days {
            if d < 1 {
                e.push(FieldError::new(
                    "payment_delay_days",
                    "out_of_range",
                    "charges are never taken on the issue day: at least 1",
                ));
            } else if d > self.due_days {
                e.push(FieldError::new(
                    "payment_delay_days",
                    "after_due_date",
                    format!(
                        "the charge is taken at the latest on the due date: at most due_days ({})",
                        self.due_days
                    ),
                ));
            }
        }
        e.into_result()
    }
}

fn plus_days(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_add_days(Days::new(u64::from(n)))
        .unwrap_or(NaiveDate::MAX)
}

/// The due date of a document issued on `issue`.
pub fn due_date(issue: NaiveDate, terms: &CreditTerms) -> NaiveDate {
    plus_days(issue, terms.due_days)
}

/// Net terms: the day the automatic charge for a document issued on `issue` is taken —
/// after the issue day and at the latest on the due date. `None` when the class has no
/// delayed payment schedule (the charge is taken on issue, as usual).
pub fn charge_date(issue: NaiveDate, terms: &CreditTerms) -> Option<NaiveDate> {
    let delay = terms.payment_delay_days?.max(1);
    let due = due_date(issue, terms);
    Some(plus_days(issue, delay).min(due.max(plus_days(issue, 1))))
}

/// The first day an account whose oldest unpaid document was due on `due` is put on
/// credit hold (when the class holds automatically): after the due date, the grace period
/// and the hold period.
pub fn hold_date(due: NaiveDate, terms: &CreditTerms) -> NaiveDate {
    plus_days(
        plus_days(plus_days(due, terms.grace_days), terms.hold_days),
        1,
    )
}

/// The first run date on which a subscription put on credit hold on `held_on` is
/// terminated: once it has been held for the class's whole hold period (`hold_days`).
pub fn hold_termination_date(held_on: NaiveDate, terms: &CreditTerms) -> NaiveDate {
    plus_days(held_on, terms.hold_days)
}

/// The first run date on which a subscription that expired without renewal on
/// `expires_on` (its term end) is terminated: once the class's grace period has passed.
pub fn expiry_termination_date(expires_on: NaiveDate, terms: &CreditTerms) -> NaiveDate {
    plus_days(expires_on, terms.grace_days)
}

/// What the daily run does about an account's credit hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldDecision {
    /// Put the account on credit hold (if it is not already).
    Hold,
    /// Nothing is overdue: lift a credit hold if there is one (never an administrative hold).
    Release,
    /// Leave the account as it is (something is overdue, but within grace and hold
    /// periods, or the class does not hold automatically).
    Nothing,
}

/// Decide the credit hold of an account on `today`, from the due date of its oldest
/// unpaid invoice or debit memo (`None` when nothing is open). A due date that is today
/// or later is not overdue. Hold once `today` is past due + grace + hold days and the
/// class holds automatically.
pub fn credit_hold_decision(
    oldest_overdue_due: Option<NaiveDate>,
    today: NaiveDate,
    terms: &CreditTerms,
) -> HoldDecision {
    match oldest_overdue_due {
        None => HoldDecision::Release,
        Some(due) if due >= today => HoldDecision::Release,
        Some(due) if terms.auto_credit_hold && today >= hold_date(due, terms) => HoldDecision::Hold,
        Some(_) => HoldDecision::Nothing,
    }
}

/// Pay-as-you-go: the suspension deadline of a subscription whose balance ran short on
/// `short_on`; a top-up on or before the deadline clears it.
pub fn payg_suspension_deadline(short_on: NaiveDate, terms: &CreditTerms) -> NaiveDate {
    plus_days(short_on, terms.payg_grace_days)
}

/// What the account may still owe before reaching its credit limit (negative when over);
/// `None` without a limit. `balance_minor` is owed − credit.
pub fn credit_available(terms: &CreditTerms, balance_minor: i64) -> Option<i64> {
    terms
        .credit_limit_minor
        .map(|l| l.saturating_sub(balance_minor))
}

/// Would charging `amount_minor` more take the account over its credit limit?
pub fn exceeds_credit_limit(terms: &CreditTerms, balance_minor: i64, amount_minor: i64) -> bool {
    terms
        .credit_limit_minor
        .is_some_and(|l| balance_minor.saturating_add(amount_minor) > l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }
    fn card(n: &str) -> CardNumber {
        CardNumber::parse(n).unwrap()
    }

    #[test]
    fn termination_after_the_hold_period_and_after_expiry_grace() {
        let t = CreditTerms {
            grace_days: 7,
            hold_days: 30,
            ..Default::default()
        };
        assert_eq!(hold_termination_date(d(2024, 2, 22), &t), d(2024, 3, 23));
        assert_eq!(expiry_termination_date(d(2024, 2, 28), &t), d(2024, 3, 6));
        let none = CreditTerms {
            grace_days: 0,
            hold_days: 0,
            ..t
        };
        assert_eq!(hold_termination_date(d(2024, 2, 22), &none), d(2024, 2, 22));
        assert_eq!(
            expiry_termination_date(d(2024, 12, 31), &none),
            d(2024, 12, 31)
        );
    }

    #[test]
    fn test_gateway_walks_every_branch() {
        assert_eq!(
            test_gateway_decision(&card("4000 0000 0000 0000")),
            GatewayDecision::Declined
        );
        assert_eq!(
            test_gateway_decision(&card("4000-0000-0000-1111")),
            GatewayDecision::Pending
        );
        assert_eq!(
            test_gateway_decision(&card("4242424242424242")),
            GatewayDecision::Approved
        );
        assert_eq!(
            test_gateway_decision(&card("424242424242")),
            GatewayDecision::Approved
        );
    }

    #[test]
    fn card_numbers_are_checked_and_never_shown() {
        assert_eq!(
            CardNumber::parse("4242 4242 4242 4242").unwrap().last4(),
            "4242"
        );
        assert_eq!(
            CardNumber::parse("4242").unwrap_err().code,
            "invalid_card_number"
        );
        assert_eq!(
            CardNumber::parse("4242x4242x4242x4242").unwrap_err().code,
            "invalid_card_number"
        );
        assert_eq!(CardNumber::parse("  ").unwrap_err().code, "required");
        let c = card("4000000000001234");
        assert_eq!(format!("{c:?}"), "CardNumber(…1234)");
        assert_eq!(c.masked(), "•••• 1234");
    }

    fn payment(amount: i64, method: &str, card: Option<&str>) -> PaymentInput {
        PaymentInput {
            amount_minor: amount,
            currency: "EUR".into(),
            method: method.into(),
            card_number: card.map(str::to_string),
            ..Default::default()
        }
    }

    fn fields(e: &ValidationErrors) -> Vec<(&str, &str)> {
        e.0.iter().map(|f| (f.field.as_str(), f.code)).collect()
    }

    #[test]
    fn payments_are_validated_field_by_field() {
        let ok = payment(1000, "bank_transfer", None)
            .validate(eur())
            .unwrap();
        assert_eq!(
            (ok.amount.minor, ok.method),
            (1000, PaymentMethod::BankTransfer)
        );
        let e = payment(0, "card", None).validate(eur()).unwrap_err();
        assert_eq!(
            fields(&e),
            vec![
                ("amount_minor", "must_be_positive"),
                ("card_number", "required")
            ]
        );
        let e = payment(-5, "cash", None).validate(eur()).unwrap_err();
        assert_eq!(
            fields(&e),
            vec![
                ("amount_minor", "must_be_positive"),
                ("method", "invalid_method")
            ]
        );
        let e = payment(5, "check", Some("4242424242424242"))
            .validate(eur())
            .unwrap_err();
        assert_eq!(fields(&e), vec![("card_number", "not_allowed")]);
        let e = PaymentInput {
            currency: "USD".into(),
            ..payment(5, "check", None)
        }
        .validate(eur())
        .unwrap_err();
        assert_eq!(fields(&e), vec![("currency", "currency_mismatch")]);
        let e = PaymentInput {
            apply_to: vec![3, 4, 3],
            ..payment(5, "check", None)
        }
        .validate(eur())
        .unwrap_err();
        assert_eq!(fields(&e), vec![("apply_to[2]", "duplicate")]);
        let e = payment(MAX_AMOUNT_MINOR + 1, "check", None)
            .validate(eur())
            .unwrap_err();
        assert_eq!(fields(&e), vec![("amount_minor", "too_large")]);
    }

    #[test]
    fn memos_need_a_reason() {
        let e = MemoInput {
            amount_minor: 10,
            currency: "EUR".into(),
            reason: "  ".into(),
            apply_to: vec![],
        }
        .validate(eur())
        .unwrap_err();
        assert_eq!(fields(&e), vec![("reason", "required")]);
        let m = MemoInput {
            amount_minor: 10,
            currency: "EUR".into(),
            reason: " goodwill ".into(),
            apply_to: vec![],
        }
        .validate(eur())
        .unwrap();
        assert_eq!(m.reason, "goodwill");
    }

    fn doc(id: i64, side: Side, open: i64) -> OpenDocument {
        OpenDocument {
            id,
            side,
            issuer: 1,
            account: 7,
            currency: "EUR".into(),
            issued: true,
            open_minor: open,
        }
    }

    #[test]
    fn allocations_stay_within_both_open_balances() {
        let pay = doc(1, Side::Credit, 500);
        let inv = doc(2, Side::Debit, 300);
        assert_eq!(check_allocation(&pay, &inv, 300), Ok(()));
        assert_eq!(
            check_allocation(&pay, &inv, 0),
            Err(AllocationError::NotPositive)
        );
        assert_eq!(
            check_allocation(&pay, &inv, -1),
            Err(AllocationError::NotPositive)
        );
        assert_eq!(
            check_allocation(&pay, &inv, 301),
            Err(AllocationError::ExceedsTarget { open: 300 })
        );
        assert_eq!(
            check_allocation(&doc(1, Side::Credit, 100), &inv, 200),
            Err(AllocationError::ExceedsSource { open: 100 })
        );
        assert_eq!(
            check_allocation(&inv, &pay, 1),
            Err(AllocationError::SourceNotCredit)
        );
        assert_eq!(
            check_allocation(&pay, &doc(3, Side::Credit, 50), 1),
            Err(AllocationError::TargetNotDebit)
        );
        let other = OpenDocument {
            account: 8,
            ..inv.clone()
        };
        assert_eq!(
            check_allocation(&pay, &other, 1),
            Err(AllocationError::OtherAccount)
        );
        let usd = OpenDocument {
            currency: "USD".into(),
            ..inv.clone()
        };
        assert_eq!(
            check_allocation(&pay, &usd, 1),
            Err(AllocationError::CurrencyMismatch)
        );
        let draft = OpenDocument {
            issued: false,
            ..inv.clone()
        };
        assert_eq!(
            check_allocation(&pay, &draft, 1),
            Err(AllocationError::NotIssued)
        );
        assert_eq!(
            AllocationError::OtherAccount.to_field_error().field,
            "invoice_id"
        );
        assert_eq!(
            AllocationError::ExceedsTarget { open: 1 }
                .to_field_error()
                .field,
            "amount_minor"
        );
    }

    #[test]
    fn spreading_a_payment_over_invoices() {
        assert_eq!(spread(1000, &[300, 500, 400]), (vec![300, 500, 200], 0));
        assert_eq!(spread(1000, &[300]), (vec![300], 700));
        assert_eq!(spread(0, &[300]), (vec![0], 0));
        assert_eq!(spread(100, &[]), (vec![], 100));
    }

    #[test]
    fn refunds_are_bounded_by_the_open_amount() {
        assert_eq!(check_refund(50, 50), Ok(50));
        assert_eq!(
            check_refund(51, 50).unwrap_err().code,
            "exceeds_open_balance"
        );
        assert_eq!(check_refund(0, 50).unwrap_err().field, "amount_minor");
    }

    #[test]
    fn due_dates_across_month_ends_and_leap_years() {
        let t = CreditTerms {
            due_days: 30,
            ..Default::default()
        };
        assert_eq!(due_date(d(2023, 1, 31), &t), d(2023, 3, 2));
        assert_eq!(due_date(d(2024, 1, 31), &t), d(2024, 3, 1));
        assert_eq!(due_date(d(2023, 12, 15), &t), d(2024, 1, 14));
        assert_eq!(
            due_date(d(2024, 2, 29), &CreditTerms { due_days: 1, ..t }),
            d(2024, 3, 1)
        );
        assert_eq!(
            due_date(d(2023, 2, 28), &CreditTerms { due_days: 1, ..t }),
            d(2023, 3, 1)
        );
        assert_eq!(
            due_date(d(2024, 5, 31), &CreditTerms { due_days: 0, ..t }),
            d(2024, 5, 31)
        );
    }

    #[test]
    fn net_terms_charge_between_issue_and_due_date() {
        let net30 = CreditTerms {
            due_days: 30,
            payment_delay_days: Some(30),
            ..Default::default()
        };
        assert_eq!(charge_date(d(2024, 1, 31), &net30), Some(d(2024, 3, 1)));
        let net60_charge_45 = CreditTerms {
            due_days: 60,
            payment_delay_days: Some(45),
            ..Default::default()
        };
        assert_eq!(
            charge_date(d(2023, 12, 31), &net60_charge_45),
            Some(d(2024, 2, 14))
        );
        let next_day = CreditTerms {
            due_days: 14,
            payment_delay_days: Some(1),
            ..Default::default()
        };
        assert_eq!(charge_date(d(2024, 2, 28), &next_day), Some(d(2024, 2, 29)));
        assert_eq!(charge_date(d(2023, 2, 28), &next_day), Some(d(2023, 3, 1)));
        assert_eq!(charge_date(d(2024, 1, 1), &CreditTerms::default()), None);
    }

    #[test]
    fn credit_terms_rules() {
        let cur = CreditTerms::default();
        let t = CreditTermsInput {
            due_days: Some(60),
            payment_delay_days: Some(Some(45)),
            ..Default::default()
        }
        .apply(&cur)
        .unwrap();
        assert_eq!((t.due_days, t.payment_delay_days), (60, Some(45)));
        let e = CreditTermsInput {
            payment_delay_days: Some(Some(0)),
            ..Default::default()
        }
        .apply(&cur)
        .unwrap_err();
        assert_eq!(fields(&e), vec![("payment_delay_days", "out_of_range")]);
        let e = CreditTermsInput {
            payment_delay_days: Some(Some(15)),
            ..Default::default()
        }
        .apply(&cur)
        .unwrap_err();
        assert_eq!(fields(&e), vec![("payment_delay_days", "after_due_date")]);
        // Shortening the due period below an existing delay is refused too.
        let e = CreditTermsInput {
            due_days: Some(10),
            ..Default::default()
        }
        .apply(&t)
        .unwrap_err();
        assert_eq!(fields(&e), vec![("payment_delay_days", "after_due_date")]);
        let e = CreditTermsInput {
            due_days: Some(-1),
            grace_days: Some(366),
            credit_limit_minor: Some(Some(-5)),
            ..Default::default()
        }
        .apply(&cur)
        .unwrap_err();
        assert_eq!(
            fields(&e),
            vec![
                ("due_days", "out_of_range"),
                ("grace_days", "out_of_range"),
                ("credit_limit_minor", "out_of_range")
            ]
        );
        let cleared = CreditTermsInput {
            payment_delay_days: Some(None),
            credit_limit_minor: Some(None),
            ..Default::default()
        }
        .apply(&t)
        .unwrap();
        assert_eq!(
            (cleared.payment_delay_days, cleared.credit_limit_minor),
            (None, None)
        );
        assert!(CreditTerms::default().validate().is_ok());
    }

    #[test]
    fn credit_hold_after_due_grace_and_hold_periods() {
        // Due 31 Jan 2024, 7 days' grace, 21 days' hold: hold from 29 Feb + 1 = 1 Mar.
        let t = CreditTerms {
            grace_days: 7,
            hold_days: 22,
            ..Default::default()
        };
        let due = d(2024, 1, 31);
        assert_eq!(hold_date(due, &t), d(2024, 3, 1));
        assert_eq!(
            credit_hold_decision(Some(due), d(2024, 2, 29), &t),
            HoldDecision::Nothing
        );
        assert_eq!(
            credit_hold_decision(Some(due), d(2024, 3, 1), &t),
            HoldDecision::Hold
        );
        // The same in a common year lands a day earlier in March.
        assert_eq!(hold_date(d(2023, 1, 31), &t), d(2023, 3, 2));
        // Not yet overdue, or nothing open: release.
        assert_eq!(
            credit_hold_decision(Some(due), due, &t),
            HoldDecision::Release
        );
        assert_eq!(
            credit_hold_decision(None, d(2024, 3, 1), &t),
            HoldDecision::Release
        );
        // Overdue but the class does not hold automatically.
        let manual = CreditTerms {
            auto_credit_hold: false,
            ..t
        };
        assert_eq!(
            credit_hold_decision(Some(due), d(2025, 1, 1), &manual),
            HoldDecision::Nothing
        );
        // Zero grace and hold: held the day after the due date.
        let strict = CreditTerms {
            grace_days: 0,
            hold_days: 0,
            ..t
        };
        assert_eq!(
            credit_hold_decision(Some(d(2023, 12, 31)), d(2024, 1, 1), &strict),
            HoldDecision::Hold
        );
    }

    #[test]
    fn payg_deadline_and_credit_limit() {
        let t = CreditTerms {
            payg_grace_days: 5,
            credit_limit_minor: Some(10_000),
            ..Default::default()
        };
        assert_eq!(payg_suspension_deadline(d(2024, 2, 27), &t), d(2024, 3, 3));
        assert_eq!(credit_available(&t, 2_500), Some(7_500));
        assert_eq!(credit_available(&t, -500), Some(10_500));
        assert_eq!(credit_available(&CreditTerms::default(), 2_500), None);
        assert!(exceeds_credit_limit(&t, 9_000, 1_001));
        assert!(!exceeds_credit_limit(&t, 9_000, 1_000));
        assert!(!exceeds_credit_limit(&CreditTerms::default(), i64::MAX, 1));
    }

    proptest! {
        #[test]
        fn charge_date_is_after_issue_and_not_after_due(y in 2000i32..2100, doy in 0u64..366, due in 1u32..=365, delay in 1u32..=365) {
            let issue = d(y, 1, 1) + Days::new(doy);
            let t = CreditTerms { due_days: due, payment_delay_days: Some(delay.min(due)), ..Default::default() };
            let c = charge_date(issue, &t).unwrap();
            prop_assert!(c > issue);
            prop_assert!(c <= due_date(issue, &t));
        }

        #[test]
        fn spread_never_takes_more_than_given_or_owed(amount in 0i64..1_000_000, opens in proptest::collection::vec(0i64..100_000, 0..10)) {
            let (parts, left) = spread(amount, &opens);
            prop_assert_eq!(parts.iter().sum::<i64>() + left, amount);
            for (p, o) in parts.iter().zip(&opens) {
                prop_assert!(*p >= 0 && p <= o);
            }
        }

        #[test]
        fn hold_never_before_grace_and_hold_have_passed(grace in 0u32..60, hold in 0u32..60, late in 0u64..200) {
            let t = CreditTerms { grace_days: grace, hold_days: hold, ..Default::default() };
            let due = d(2024, 1, 31);
            let today = due + Days::new(late);
            let decision = credit_hold_decision(Some(due), today, &t);
            let past = late > u64::from(grace + hold);
            prop_assert_eq!(decision == HoldDecision::Hold, past);
        }
    }
}

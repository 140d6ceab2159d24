//! Collections: what the daily run does after billing, for the run date.
//!
//! 1. **Automatic charges** of accounts with a stored payment method (a card kept at the
//!    gateway as a token). An open invoice or debit memo is charged on its charge day:
//!    the issue day as a rule, and for accounts of a class with a delayed payment
//!    schedule (net terms) the day `payments::charge_date` gives — after the issue day,
//!    at the latest on the due date, never on the issue day. Exactly once: the attempt is
//!    recorded (`auto_charges`, unique per document and attempt date) and committed
//!    before the gateway is called with the key `auto:{document}:{date}`; the payment is
//!    recorded with the same key (unique). A run killed in between finishes the
//!    `started` attempt with the same key first, so the gateway recognises it. Approved
//!    → a payment applied to the document (`payment.recorded`); declined → nothing
//!    moves, `payment.declined` is emitted as a notice and the document is tried again
//!    on the next run date; pending → a pending card attempt, confirmed as usual.
//! 2. **Credit holds**: per account with something overdue (or on credit hold),
//!    `payments::credit_hold_decision` → hold (`account.credit_hold`) once past due +
//!    grace + hold days when its class holds automatically, release
//!    (`account.credit_released`) when nothing is overdue any more. An administrative
//!    hold is never touched. The account's running subscriptions follow in the same
//!    transaction (`cascade_store::holds`): on credit hold with it (one
//!    `subscription.suspended` each), back to active on release (only those its hold
//!    suspended).
//! 3. **Pay-as-you-go deadlines**: a PAYG subscription (external rating) whose account
//!    owes more than its credit (open invoices beyond open payments and credit memos,
//!    beyond the credit limit if any) gets a suspension deadline
//!    (`payments::payg_suspension_deadline`: the class's PAYG grace) and a notice
//!    (`subscription.suspension_notice`); a top-up on or before the deadline clears it
//!    (`subscription.suspension_cleared`); after it the subscription goes on credit hold
//!    (`subscription.credit_hold`), and back to active once the balance is covered.
//! 4. **Terminations**: a subscription on credit hold for the class's whole hold period
//!    (`payments::hold_termination_date`), or expired without renewal for the class's
//!    whole grace period (`payments::expiry_termination_date`), is terminated
//!    (`subscription.terminated` → the connector unprovisions), its termination date
//!    recorded. Guarded by status and version, 500 per transaction: exactly once.
//!
//! Each step is idempotent by construction (state moves guarded by the current state
//! and version, events written in the same transaction as the move), so re-running the
//! same date changes nothing twice. One account's failure is logged and skipped; the
//! next run looks again.

use cascade_domain::account::AccountStatus;
use cascade_domain::billing::lifecycle::SubscriptionStatus;
use cascade_domain::billing::payments::{
    GatewayDecision, HoldDecision, charge_date, credit_hold_decision, expiry_termination_date,
    hold_termination_date, payg_suspension_deadline,
};
use cascade_domain::catalog::plan::{BillingModel, PlanContent};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::money::{Currency, Money};
use cascade_store::accounts::Accounts;
use cascade_store::billing_batch::{self, BatchEvent};
use cascade_store::collections::{self, AutoCharge, AutoCharges};
use cascade_store::documents::{
    DocKind, Documents, NewAttempt, NewDocument, PaymentAttempts, PaymentGateway,
    TokenChargeRequest,
};
use cascade_store::events::{Events, NewEvent};
use cascade_store::holds;
use cascade_store::subscriptions::Subscriptions;
use cascade_store::{Db, StoreError, StoreResult, Tx};
use chrono::NaiveDate;
use serde_json::json;

/// What collections did on one run date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionsReport {
    pub charges_approved: u64,
    pub charges_declined: u64,
    pub charges_pending: u64,
    pub accounts_held: u64,
    pub accounts_released: u64,
    pub payg_notices: u64,
    pub payg_cleared: u64,
    pub payg_held: u64,
    /// Subscriptions suspended / resumed with their account's credit hold.
    pub subscriptions_held: u64,
    pub subscriptions_released: u64,
    /// Subscriptions terminated (hold period over, or expired past the grace period).
    pub subscriptions_terminated: u64,
    pub failures: u64,
}

async fn event(
    tx: &mut Tx,
    kind: &'static str,
    account: AccountId,
    subject_type: &'static str,
    subject_id: i64,
    payload: serde_json::Value,
    now: Timestamp,
) -> StoreResult<()> {
    Events::emit(
        tx,
        NewEvent {
            kind,
            account_id: Some(account),
            actor_user_id: None,
            subject_type,
            subject_id,
            payload,
        },
        now,
    )
    .await?;
    Ok(())
}

fn parse_day(s: &str) -> StoreResult<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| StoreError::Corrupt(format!("bad date {s}: {e}")))
}

/// Run collections for `today`. Without a gateway, automatic charges are skipped (and
/// the documents stay open for the next run that has one).
pub async fn run(
    db: &Db,
    gateway: Option<&dyn PaymentGateway>,
    today: NaiveDate,
    now: Timestamp,
) -> StoreResult<CollectionsReport> {
    let mut report = CollectionsReport::default();
    if let Some(gw) = gateway {
        auto_charges(db, gw, today, now, &mut report).await?;
    }
    credit_holds(db, today, now, &mut report).await?;
    payg(db, today, now, &mut report).await?;
    terminations(db, today, now, &mut report).await?;
    Ok(report)
}

async fn auto_charges(
    db: &Db,
    gw: &dyn PaymentGateway,
    today: NaiveDate,
    now: Timestamp,
    report: &mut CollectionsReport,
) -> StoreResult<()> {
    // First what a stopped run left half done, with its own key.
    for c in db.auto_charges().started().await? {
        if let Err(e) = settle(db, gw, &c, now, report).await {
            report.failures += 1;
            tracing::error!(error = %e, charge = c.id, "automatic charge could not be finished; retried next run");
        }
    }
    let day = today.to_string();
    for c in db.auto_charges().chargeable(&day).await? {
        let issue = parse_day(&c.issue_date)?;
        let when = match &c.charge_date {
            Some(d) => parse_day(d)?,
            None => charge_date(issue, &c.terms).unwrap_or(issue),
        };
        if when > today || c.method.gateway != gw.name() {
            continue;
        }
        let mut tx = db.begin().await?;
        let started = AutoCharges::start(
            &mut tx,
            c.document_id,
            c.account_id,
            &day,
            c.method.id,
            c.open_minor,
            now,
        )
        .await?;
        tx.commit().await?;
        let Some(started) = started else { continue };
        if let Err(e) = settle(db, gw, &started, now, report).await {
            report.failures += 1;
            tracing::error!(error = %e, charge = started.id, "automatic charge failed; retried next run");
        }
    }
    Ok(())
}

/// Ask the gateway (again, with the same key) and record the outcome of a `started` charge.
async fn settle(
    db: &Db,
    gw: &dyn PaymentGateway,
    c: &AutoCharge,
    now: Timestamp,
    report: &mut CollectionsReport,
) -> StoreResult<()> {
    let doc = db.documents().get(c.document_id).await?;
    let method = db.payment_methods().get(c.payment_method_id).await?;
    let currency = Currency::parse(&doc.currency)
        .map_err(|e| StoreError::Corrupt(format!("currency {}: {}", doc.currency, e.message)))?;
    let amount = Money::new(c.amount_minor, currency);
    let outcome = gw
        .charge_token(TokenChargeRequest {
            account: c.account_id,
            amount,
            token: &method.token,
            idem_key: &c.idem_key,
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("gateway: {e}")))?;
    let mut tx = db.begin().await?;
    match outcome.decision {
        GatewayDecision::Approved => {
            let paid = match db.documents().by_idem_key(&c.idem_key).await? {
                Some(p) => p,
                None => {
                    let head = NewDocument {
                        kind: DocKind::Payment,
                        issuer: doc.issuer_account_id,
                        account: c.account_id,
                        currency: &doc.currency,
                        issue_date: &c.attempt_date,
                        due_date: None,
                        charge_date: None,
                        tax_bp: 0,
                        method: Some("card"),
                        external_ref: Some(&outcome.reference),
                        idem_key: Some(&c.idem_key),
                    };
                    let p = Documents::issue_single(
                        &mut tx,
                        &head,
                        "payment",
                        &format!("Automatic charge of stored card …{}", method.card_last4),
                        c.amount_minor,
                        now,
                    )
                    .await?;
                    // Whatever the document still owes, up to the charge; the rest stays
                    // open on the payment as credit.
                    let open = Documents::get_in(&mut tx, doc.id).await?.open_minor;
                    let applied = open.min(c.amount_minor);
                    if applied > 0 {
                        Documents::apply(&mut tx, p.id, doc.id, applied, now)
                            .await?
                            .map_err(|e| StoreError::Corrupt(format!("allocation: {e:?}")))?;
                    }
                    event(&mut tx, "payment.recorded", c.account_id, "document", p.id,
                        json!({"number": p.number, "amount_minor": c.amount_minor, "currency": doc.currency, "method": "card",
                               "automatic": true, "applied": [{"document_id": doc.id, "amount_minor": applied}]}), now).await?;
                    p
                }
            };
            if AutoCharges::finish(
                &mut tx,
                c.id,
                "approved",
                Some(&outcome.reference),
                None,
                Some(paid.id),
                now,
            )
            .await?
            {
                report.charges_approved += 1;
            }
        }
        GatewayDecision::Declined => {
            let message = outcome
                .message
                .unwrap_or_else(|| "the card was declined".into());
            if AutoCharges::finish(
                &mut tx,
                c.id,
                "declined",
                Some(&outcome.reference),
                Some(&message),
                None,
                now,
            )
            .await?
            {
                event(&mut tx, "payment.declined", c.account_id, "document", doc.id,
                    json!({"document_id": doc.id, "number": doc.number, "amount_minor": c.amount_minor, "currency": doc.currency,
                           "method": "card", "card_last4": method.card_last4, "automatic": true, "message": message,
                           "retry": "next daily run"}), now).await?;
                report.charges_declined += 1;
            }
        }
        GatewayDecision::Pending => {
            if AutoCharges::finish(
                &mut tx,
                c.id,
                "pending",
                Some(&outcome.reference),
                None,
                None,
                now,
            )
            .await?
            {
                let attempt = PaymentAttempts::create(
                    &mut tx,
                    &NewAttempt {
                        reference: &outcome.reference,
                        gateway: gw.name(),
                        issuer: doc.issuer_account_id,
                        account: c.account_id,
                        amount,
                        card_last4: Some(&method.card_last4),
                        apply_to: &[doc.id],
                        external_ref: None,
                        idem_key: Some(&c.idem_key),
                        created_by: None,
                    },
                    now,
                )
                .await?;
                event(&mut tx, "payment.pending", c.account_id, "payment_attempt", attempt.id,
                    json!({"reference": attempt.reference, "amount_minor": c.amount_minor, "currency": doc.currency, "automatic": true}), now).await?;
                report.charges_pending += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn credit_holds(
    db: &Db,
    today: NaiveDate,
    now: Timestamp,
    report: &mut CollectionsReport,
) -> StoreResult<()> {
    let day = today.to_string();
    for (account, status, oldest, terms) in collections::credit_candidates(db, &day).await? {
        let oldest = oldest.as_deref().map(parse_day).transpose()?;
        let decision = credit_hold_decision(oldest, today, &terms);
        let to = match (decision, status.as_str()) {
            (HoldDecision::Hold, "active") => AccountStatus::CreditHold,
            (HoldDecision::Release, "credit_hold") => AccountStatus::Active,
            _ => continue,
        };
        let r: StoreResult<()> = async {
            let mut tx = db.begin().await?;
            let a = Accounts::get_in(&mut tx, account).await?;
            // Moved meanwhile (e.g. an administrative hold): leave it.
            if a.status.as_str() != status {
                return Ok(());
            }
            Accounts::set_status(&mut tx, account, to, now).await?;
            let moves =
                Subscriptions::follow_account_status(&mut tx, account, a.status, to, &day, now)
                    .await?;
            report.subscriptions_held += moves.suspended.len() as u64;
            report.subscriptions_released += moves.resumed.len() as u64;
            let (kind, payload) = if to == AccountStatus::CreditHold {
                report.accounts_held += 1;
                ("account.credit_hold", json!({"oldest_overdue_due_date": oldest.map(|d| d.to_string()), "automatic": true,
                    "subscriptions_suspended": moves.suspended}))
            } else {
                report.accounts_released += 1;
                ("account.credit_released", json!({"automatic": true, "reason": "nothing overdue", "subscriptions_resumed": moves.resumed}))
            };
            event(&mut tx, kind, account, "account", account.0, payload, now).await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            report.failures += 1;
            tracing::error!(error = %e, account = account.0, "credit check failed; retried next run");
        }
    }
    Ok(())
}

async fn payg(
    db: &Db,
    today: NaiveDate,
    now: Timestamp,
    report: &mut CollectionsReport,
) -> StoreResult<()> {
    let plans: Vec<i64> = collections::plan_contents(db)
        .await?
        .into_iter()
        .filter(|(_, c)| {
            serde_json::from_str::<PlanContent>(c)
                .is_ok_and(|p| p.billing_model == BillingModel::ExternalRating)
        })
        .map(|(id, _)| id)
        .collect();
    if plans.is_empty() {
        return Ok(());
    }
    // Decide every move first, then write them in chunks of one transaction each (a
    // chunk that fails is written again one subscription per transaction).
    let mut moves: Vec<PaygMove> = Vec::new();
    for s in collections::payg_candidates(db, &plans).await? {
        let short = s.balance_minor > s.credit_limit_minor.unwrap_or(0);
        let deadline = s
            .suspension_deadline
            .as_deref()
            .map(parse_day)
            .transpose()?;
        // (new status, new deadline, event)
        let (status, new_deadline, kind): (&'static str, Option<NaiveDate>, &'static str) =
            match (short, deadline, s.status.as_str()) {
                (true, None, "active") => (
                    "active",
                    Some(payg_suspension_deadline(
                        today,
                        &cascade_domain::billing::payments::CreditTerms {
                            payg_grace_days: s.payg_grace_days,
                            ..Default::default()
                        },
                    )),
                    "subscription.suspension_notice",
                ),
                (true, Some(d), "active") if today > d => {
                    ("credit_hold", Some(d), "subscription.credit_hold")
                }
                (false, Some(_), "active") => ("active", None, "subscription.suspension_cleared"),
                (false, _, "credit_hold") if s.suspension_deadline.is_some() => {
                    ("active", None, "subscription.credit_released")
                }
                _ => continue,
            };
        moves.push(PaygMove {
            status,
            deadline: new_deadline.map(|d| d.to_string()),
            kind,
            s,
        });
    }
    for chunk in moves.chunks(PAYG_CHUNK) {
        let mut counts = CollectionsReport::default();
        match write_payg(db, chunk, &today.to_string(), now, &mut counts).await {
            Ok(()) => add_payg(report, &counts),
            Err(e) if chunk.len() > 1 => {
                tracing::warn!(error = %e, "PAYG chunk failed; writing its subscriptions one by one");
                for m in chunk {
                    let mut one = CollectionsReport::default();
                    match write_payg(
                        db,
                        std::slice::from_ref(m),
                        &today.to_string(),
                        now,
                        &mut one,
                    )
                    .await
                    {
                        Ok(()) => add_payg(report, &one),
                        Err(e) => {
                            report.failures += 1;
                            tracing::error!(error = %e, subscription = m.s.subscription_id, "PAYG check failed; retried next run");
                        }
                    }
                }
            }
            Err(e) => {
                report.failures += 1;
                tracing::error!(error = %e, "PAYG check failed; retried next run");
            }
        }
    }
    Ok(())
}

/// Subscriptions moved per transaction by the PAYG check.
const PAYG_CHUNK: usize = 500;

struct PaygMove {
    status: &'static str,
    deadline: Option<String>,
    kind: &'static str,
    s: collections::PaygCandidate,
}

fn add_payg(report: &mut CollectionsReport, c: &CollectionsReport) {
    report.payg_notices += c.payg_notices;
    report.payg_held += c.payg_held;
    report.payg_cleared += c.payg_cleared;
}

/// Write PAYG moves in one transaction: each subscription still at the version it was
/// read at moves (one statement for all), with its event (one statement for all); one
/// changed meanwhile is left for the next run.
async fn write_payg(
    db: &Db,
    moves: &[PaygMove],
    day: &str,
    now: Timestamp,
    counts: &mut CollectionsReport,
) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    let states: Vec<collections::PaygState<'_>> = moves
        .iter()
        .map(|m| collections::PaygState {
            subscription: m.s.subscription_id,
            version: m.s.version,
            status: m.status,
            deadline: m.deadline.as_deref(),
        })
        .collect();
    let moved = collections::set_payg_states(&mut tx, &states, now).await?;
    let mut events = Vec::with_capacity(moved.len());
    for m in moves
        .iter()
        .filter(|m| moved.contains(&m.s.subscription_id))
    {
        let s = &m.s;
        // A hold suspends the service, a release resumes it: connectors and mails follow.
        // (Few subscriptions change status on a given day; these go one by one.)
        if let (Ok(from), Ok(to)) = (
            SubscriptionStatus::parse(&s.status),
            SubscriptionStatus::parse(m.status),
        ) && from != to
        {
            Subscriptions::announce_move(&mut tx, s.subscription_id, s.account_id, from, to, now)
                .await?;
            // The hold period (termination) counts from the day it was held.
            let held = (to == SubscriptionStatus::CreditHold).then_some(day);
            Subscriptions::mark_payg_hold(&mut tx, s.subscription_id, held).await?;
        }
        events.push(BatchEvent {
            kind: m.kind,
            account_id: s.account_id.0,
            subject_type: "subscription",
            subject_id: s.subscription_id,
            payload: json!({"subscription_id": s.subscription_id, "suspension_deadline": m.deadline, "balance_minor": s.balance_minor,
                   "currency": s.currency, "status": m.status}).to_string(),
        });
        match m.kind {
            "subscription.suspension_notice" => counts.payg_notices += 1,
            "subscription.credit_hold" => counts.payg_held += 1,
            _ => counts.payg_cleared += 1,
        }
    }
    billing_batch::insert_events(&mut tx, &events, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Subscriptions read (and terminated) per transaction by the termination step.
const TERMINATION_CHUNK: i64 = 500;

async fn terminations(
    db: &Db,
    today: NaiveDate,
    now: Timestamp,
    report: &mut CollectionsReport,
) -> StoreResult<()> {
    let day = today.to_string();
    let mut after = 0;
    loop {
        let page = holds::termination_candidates(db, after, TERMINATION_CHUNK).await?;
        let Some(last) = page.last() else { break };
        after = last.subscription_id;
        let due: Vec<&holds::TerminationCandidate> = page
            .iter()
            .filter(|c| match parse_day(&c.since) {
                Ok(since) => {
                    let from = match c.status {
                        SubscriptionStatus::CreditHold => hold_termination_date(since, &c.terms),
                        _ => expiry_termination_date(since, &c.terms),
                    };
                    today >= from
                }
                Err(e) => {
                    tracing::error!(error = %e, subscription = c.subscription_id, "bad hold or expiry date; not terminated");
                    false
                }
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        let r: StoreResult<u64> = async {
            let mut tx = db.begin().await?;
            let mut n = 0;
            for c in &due {
                if Subscriptions::terminate(&mut tx, c, &day, now).await? {
                    n += 1;
                }
            }
            tx.commit().await?;
            Ok(n)
        }
        .await;
        match r {
            Ok(n) => report.subscriptions_terminated += n,
            Err(e) => {
                report.failures += 1;
                tracing::error!(error = %e, "termination chunk failed; retried next run");
            }
        }
    }
    Ok(())
}

//! The daily billing run.
//!
//! For every account with something due on the run date: renewals and expiries, charges
//! for the billing periods that start (prepaid) or end (postpaid, overuse, usage), and
//! one invoice per account and currency. Design:
//!
//! - **Set-wise, in batches.** Due accounts come from one indexed query
//!   (`subscriptions.next_bill_date`) a batch at a time; plans are loaded once per run
//!   and cached; each account is billed in **one short transaction**, so the run never
//!   holds a long lock and orders placed meanwhile go through.
//! - **Exactly once.** Every charge line carries a key derived from what it bills
//!   (subscription, period start, kind) under a unique index, and the subscription's
//!   `next_bill_date` moves in the same transaction as its lines. Killing the process at
//!   any point loses at most the account in flight (its transaction rolls back); the
//!   re-run bills it, and never bills anything twice.
//! - **Isolated failures.** An account that fails is logged and counted; the others go
//!   on; its subscriptions stay due and the next run retries it.

use cascade_domain::account::Account;
use cascade_domain::billing::amounts::to_minor;
use cascade_domain::billing::calendar::{Cycle, Span, add_months};
use cascade_domain::billing::charges::{
    BillingInput, ChargeLine, period_months, recurring_lines, usage_lines,
};
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::catalog::plan::{BillingModel, BillingPeriodType, PlanContent};
use cascade_domain::clock::Clock;
use cascade_domain::ids::AccountId;
use cascade_domain::money::Currency;
use cascade_store::documents::{DocKind, Documents, NewDocument, NewLine};
use cascade_store::subscriptions::{Subscription, Subscriptions};
use cascade_store::{Db, StoreError, StoreResult, Tx, on_tx};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;

/// Subscriptions that expired without renewal are not due again.
pub const NEVER: &str = "9999-12-31";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub run_id: i64,
    pub accounts_done: u64,
    pub accounts_failed: u64,
    pub subscriptions_billed: u64,
    pub documents_written: u64,
    pub lines_written: u64,
}

/// Test hook: a point in the run where a crash is simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After this many accounts were committed, before the next one starts.
    BetweenAccounts(u64),
    /// Inside the transaction of the n-th account (0-based), after its invoice was
    /// written and before its subscriptions moved on.
    InsideAccount(u64),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Accounts fetched per batch.
    pub batch: i64,
    /// Simulated crash (tests only): the run stops with an error there.
    pub crash: Option<CrashPoint>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            crash: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("simulated crash")]
    Crash,
}

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        RunError::Store(e.into())
    }
}

/// Plans by id, loaded once per run.
#[derive(Default)]
struct PlanCache(Mutex<HashMap<i64, Arc<(PlanContent, String)>>>);

impl PlanCache {
    async fn get(&self, db: &Db, id: i64) -> StoreResult<Arc<(PlanContent, String)>> {
        if let Some(p) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(p.clone());
        }
        let plan = db.plans().get(id).await?;
        let v = Arc::new((plan.content, plan.currency));
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, v.clone());
        Ok(v)
    }
}

fn date(s: &str) -> StoreResult<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| StoreError::Corrupt(format!("date `{s}`: {e}")))
}

/// The billing cycle of a subscription.
pub fn cycle_of(plan: &PlanContent, sub_start: NaiveDate, statement_day: u32) -> (Cycle, u32) {
    match plan.period_type {
        BillingPeriodType::MonthlyOnStatementDay => (Cycle::Statement { day: statement_day }, 1),
        BillingPeriodType::EveryNMonths { months } => (
            Cycle::Anniversary {
                start: sub_start,
                months,
            },
            months.max(1),
        ),
    }
}

/// What billing one subscription on `today` produces.
pub struct SubBilling {
    pub lines: Vec<ChargeLine>,
    pub next_bill_date: String,
    pub expires_on: String,
    pub status: SubscriptionStatus,
}

/// Bill one subscription for everything due up to `today` (catching up missed days).
pub fn bill_subscription(
    sub: &Subscription,
    plan: &PlanContent,
    statement_day: u32,
    usage: &BTreeMap<String, i64>,
    today: NaiveDate,
) -> StoreResult<SubBilling> {
    let Some(period) = plan.period(&sub.period_uid) else {
        return Err(StoreError::Corrupt(format!(
            "subscription {}: plan has no period {}",
            sub.id, sub.period_uid
        )));
    };
    let start = date(&sub.start_date)?;
    let (cycle, billing_months) = cycle_of(plan, start, statement_day);
    let mut next = date(&sub.next_bill_date)?;
    let mut expires = date(&sub.expires_on)?;
    let mut status = sub.status;
    let mut lines = Vec::new();
    let input = BillingInput {
        subscription_id: sub.id,
        plan,
        period,
        quantities: &sub.quantities,
        usage,
        billing_months,
    };
    let term_months = period_months(period) as i32;
    let mut guard = 0;
    while next <= today && guard < 1000 {
        guard += 1;
        // Term end: renew or expire.
        if next >= expires {
            let renews = match sub.auto_renew {
                AutoRenew::Off => false,
                AutoRenew::OnExpiry | AutoRenew::DaysBefore { .. } => true,
            };
            if !renews {
                // The last period's usage is still billed.
                if matches!(
                    plan.billing_model,
                    BillingModel::ChargeAfterBillingPeriod | BillingModel::ExternalRating
                ) || plan.rates.iter().any(|r| r.measurable)
                {
                    let span = cycle.period_containing(next.pred_opt().unwrap_or(next));
                    lines.extend(usage_lines(&input, span));
                    if plan.billing_model == BillingModel::ChargeAfterBillingPeriod {
                        lines.extend(recurring_lines(&input, span, span.days()));
                    }
                }
                status = SubscriptionStatus::Expired;
                next = date(NEVER)?;
                break;
            }
            expires = add_months(expires, term_months);
            if plan.billing_model == BillingModel::ChargeBeforeSubscriptionPeriod {
                let span = Span {
                    start: next,
                    end: expires,
                };
                let amount = period.renewal.amount;
                lines.push(ChargeLine {
                    kind: cascade_domain::billing::charges::LineKind::Recurring,
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
                    key: format!("sub:{}:term:{}", sub.id, span.start),
                });
                next = expires;
                continue;
            }
        }
        match plan.billing_model {
            BillingModel::ChargeBeforeBillingPeriod => {
                let span = cycle.period_containing(next);
                lines.extend(recurring_lines(&input, span, span.days()));
                // Overuse of the period that just ended.
                let prev = cycle.period_containing(next.pred_opt().unwrap_or(next));
                if prev.end == next {
                    lines.extend(usage_lines(&input, prev));
                }
                next = span.end;
            }
            BillingModel::ChargeAfterBillingPeriod | BillingModel::ExternalRating => {
                let span = cycle.period_containing(next.pred_opt().unwrap_or(next));
                lines.extend(recurring_lines(&input, span, span.days()));
                lines.extend(usage_lines(&input, span));
                next = cycle.next_boundary(next);
            }
            BillingModel::ChargeBeforeSubscriptionPeriod => {
                // Charged per term at renewal; between renewals only overuse.
                let prev = cycle.period_containing(next.pred_opt().unwrap_or(next));
                lines.extend(usage_lines(&input, prev));
                next = cycle.next_boundary(next).min(expires);
            }
        }
    }
    if status == SubscriptionStatus::Expired && next.format("%Y-%m-%d").to_string() != NEVER {
        next = date(NEVER)?;
    }
    Ok(SubBilling {
        lines,
        next_bill_date: next.format("%Y-%m-%d").to_string(),
        expires_on: expires.format("%Y-%m-%d").to_string(),
        status,
    })
}

/// Bill one account in one transaction. Returns (subscriptions billed, documents, lines).
async fn bill_account(
    db: &Db,
    plans: &PlanCache,
    account: &Account,
    today: NaiveDate,
    now: cascade_domain::clock::Timestamp,
    crash_inside: bool,
) -> Result<(u64, u64, u64), RunError> {
    let day = today.format("%Y-%m-%d").to_string();
    let mut tx = db.begin().await?;
    let subs = Subscriptions::due_of_account_in(&mut tx, account.id, &day).await?;
    let statement_day = statement_day(&mut tx, account.id).await?;
    // Lines per (issuer, currency).
    let mut invoices: BTreeMap<(i64, String), Vec<NewLine>> = BTreeMap::new();
    let mut moves = Vec::with_capacity(subs.len());
    for sub in &subs {
        let plan = plans.get(db, sub.plan_id).await?;
        let (content, currency) = (&plan.0, &plan.1);
        let start = date(&sub.start_date)?;
        let (cycle, _) = cycle_of(content, start, statement_day);
        // Usage recorded up to the end of the period that ends on or before today.
        let span = cycle.period_containing(date(&sub.next_bill_date)?.pred_opt().unwrap_or(start));
        let usage = Subscriptions::unbilled_usage_in(
            &mut tx,
            sub.id,
            &span.start.to_string(),
            &span.end.to_string(),
        )
        .await?;
        let billed = bill_subscription(sub, content, statement_day, &usage, today)?;
        let cur = Currency::parse(currency).map_err(|e| StoreError::Corrupt(e.message))?;
        let entry = invoices
            .entry((sub.vendor_id.0, currency.clone()))
            .or_default();
        for l in &billed.lines {
            entry.push(NewLine {
                subscription_id: Some(sub.id),
                kind: l.kind.as_str().into(),
                description: l.description.clone(),
                quantity: l.quantity,
                unit_price_micro: l.unit_price.0,
                amount_minor: to_minor(l.amount, cur).minor,
                period_start: l.period.map(|p| p.start.to_string()),
                period_end: l.period.map(|p| p.end.to_string()),
                charge_key: Some(l.key.clone()),
            });
        }
        moves.push((sub, billed));
    }
    let (mut docs, mut lines) = (0u64, 0u64);
    for ((issuer, currency), ls) in &invoices {
        if ls.is_empty() {
            continue;
        }
        let due = (today + chrono::Duration::days(14))
            .format("%Y-%m-%d")
            .to_string();
        let head = NewDocument {
            kind: DocKind::Invoice,
            issuer: AccountId(*issuer),
            account: account.id,
            currency,
            issue_date: &day,
            due_date: Some(&due),
            charge_date: None,
            tax_bp: 0,
            method: None,
            external_ref: None,
            idem_key: None,
        };
        if let Some((_, n)) = Documents::issue(&mut tx, &head, ls, now).await? {
            docs += 1;
            lines += n as u64;
        }
    }
    if crash_inside {
        // Dropping the transaction without commit is what a killed process leaves behind.
        drop(tx);
        return Err(RunError::Crash);
    }
    for (sub, b) in &moves {
        Subscriptions::after_billing(
            &mut tx,
            sub,
            &b.next_bill_date,
            &b.expires_on,
            b.status,
            now,
        )
        .await?;
        let until = if b.next_bill_date < day {
            b.next_bill_date.clone()
        } else {
            day.clone()
        };
        mark_usage_billed(&mut tx, sub.id, &until).await?;
    }
    tx.commit().await?;
    Ok((moves.len() as u64, docs, lines))
}

async fn statement_day(tx: &mut Tx, account: AccountId) -> StoreResult<u32> {
    let (d,): (i32,) = on_tx!(tx, c => sqlx::query_as("SELECT statement_day FROM accounts WHERE id = $1").bind(account.0).fetch_one(c).await)?;
    Ok(d.clamp(1, 31) as u32)
}

/// Usage before `until` has been billed (by the lines just written).
async fn mark_usage_billed(tx: &mut Tx, sub: i64, until: &str) -> StoreResult<()> {
    on_tx!(tx, c => sqlx::query("UPDATE usage_records SET billed_line_id = 0 WHERE subscription_id = $1 AND usage_date < $2 AND billed_line_id IS NULL")
        .bind(sub).bind(until).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Run billing for `today`. `progress` is called with (accounts done, accounts failed).
pub async fn run(
    db: &Db,
    clock: &dyn Clock,
    today: NaiveDate,
    opts: &RunOptions,
    progress: impl Fn(u64, u64),
) -> Result<RunReport, RunError> {
    let day = today.format("%Y-%m-%d").to_string();
    let started = clock.now();
    let mut tx = db.begin().await?;
    let (run_id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO billing_runs (run_date, started_at, accounts_done, accounts_failed, subscriptions_billed, documents_written, lines_written)
         VALUES ($1, $2, 0, 0, 0, 0, 0) RETURNING id").bind(&day).bind(started.0).fetch_one(c).await)?;
    tx.commit().await?;
    let plans = PlanCache::default();
    let mut report = RunReport {
        run_id,
        ..Default::default()
    };
    let mut after = 0i64;
    let mut index = 0u64;
    loop {
        let batch = db
            .subscriptions()
            .accounts_due(&day, after, opts.batch)
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.0;
        for account_id in batch {
            if opts.crash == Some(CrashPoint::BetweenAccounts(report.accounts_done)) {
                return Err(RunError::Crash);
            }
            let account = db.accounts().get(account_id).await?;
            let crash_inside = opts.crash == Some(CrashPoint::InsideAccount(index));
            index += 1;
            match bill_account(db, &plans, &account, today, clock.now(), crash_inside).await {
                Ok((subs, docs, lines)) => {
                    report.accounts_done += 1;
                    report.subscriptions_billed += subs;
                    report.documents_written += docs;
                    report.lines_written += lines;
                }
                Err(RunError::Crash) => return Err(RunError::Crash),
                Err(RunError::Store(e)) => {
                    report.accounts_failed += 1;
                    tracing::warn!(account = account_id.0, error = %e, "billing failed for an account; it stays due and is retried next run");
                    // Skip it for the rest of this run: its subscriptions stay due.
                }
            }
            progress(report.accounts_done, report.accounts_failed);
        }
    }
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, c => sqlx::query(
        "UPDATE billing_runs SET finished_at = $2, accounts_done = $3, accounts_failed = $4, subscriptions_billed = $5, documents_written = $6, lines_written = $7 WHERE id = $1")
        .bind(run_id).bind(clock.now().0).bind(report.accounts_done as i64).bind(report.accounts_failed as i64)
        .bind(report.subscriptions_billed as i64).bind(report.documents_written as i64).bind(report.lines_written as i64)
        .execute(c).await.map(|r| r.rows_affected()))?;
    tx.commit().await?;
    tracing::info!(run_id, date = %day, accounts = report.accounts_done, failed = report.accounts_failed,
        subscriptions = report.subscriptions_billed, documents = report.documents_written, lines = report.lines_written, "billing run finished");
    Ok(report)
}

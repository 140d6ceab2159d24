//! The daily billing run.
//!
//! For every account with something due on the run date: renewals and expiries, charges
//! for the billing periods that start (prepaid) or end (postpaid, overuse, usage), and
//! one invoice per account, issuer and currency. Design:
//!
//! - **Set-wise.** The due accounts come from one indexed query at the start (a few MiB
//!   of ids even for millions of subscriptions). They are billed in batches of
//!   `RunOptions::batch` accounts, with a constant number of statements per batch
//!   (`cascade_store::billing_batch`): the batch's due subscriptions, plans not cached
//!   yet and unbilled usage are read in three queries **outside** any write transaction;
//!   the charges are computed in memory by [`bill_subscription`]; then one short write
//!   transaction moves every subscription (version-checked), marks usage billed, drops
//!   charge keys billed already, reserves invoice numbers per issuer and inserts invoices
//!   and lines with multi-row statements. Reading outside the transaction is safe
//!   because nothing is written unless every subscription is still at the version it
//!   was read at, and it keeps the writer (SQLite has one) free while the next batch is
//!   read and computed.
//! - **Pipelined.** A few batches are in flight at once (`default_parallel`): on SQLite
//!   one reads and computes while another holds the single writer; on PostgreSQL they
//!   also write concurrently (accounts are disjoint, invoice counters are taken in issuer
//!   order, so batches do not deadlock on each other).
//! - **Exactly once.** Every charge line carries a key derived from what it bills
//!   (subscription, period start, kind) under a unique index, and a subscription's
//!   `next_bill_date` moves in the same transaction as its lines. Killing the process at
//!   any point loses at most the batches in flight (their transactions roll back); the
//!   re-run bills them and never bills anything twice.
//! - **Isolated failures.** A subscription changed concurrently (version check) takes
//!   only its account out of the batch: the rest is written, and that account is billed
//!   on its own. If a batch cannot be read or written at all, its accounts are billed one
//!   per transaction (the per-account path, [`bill_account`]), so one bad account never
//!   blocks the others. An account that still fails is logged and counted; its
//!   subscriptions stay due and the next run retries it.
//! - **BO orders.** Every subscription billed gets one BO (billing) order per billed
//!   period (a catch-up covering two periods writes two), status `completed` (nothing to
//!   provision), vendor = the invoice's issuer; `details` link it to its invoice
//!   (`invoice_id`, `invoice_number`) and to its lines (`charge_keys`, `period_start`,
//!   `period_end`, `billed_on`). They are inserted with one multi-row statement in the
//!   batch transaction, only for lines actually written: exactly once under the same
//!   charge keys. They show in `GET /accounts/{id}/orders` like any order.
//! - **Events.** `invoice.issued` for every invoice written (one `INSERT … SELECT` from
//!   the documents, after their due date is set, in the same transaction), and after the
//!   batches `subscription.expiring` for each live subscription that will not renew
//!   (`auto_renew` off) and ends within `RunOptions::expiry_notice_days` (7 by default),
//!   once per subscription and end date: a `subscription_notices` row (primary key) is
//!   written with the event. Both are routed to the notification mails (`routing`).
//! - **Usage per period.** A catch-up bills each period's usage with that period, and
//!   marks billed only the usage dated before the end of the last span billed.
//! - **Throughput on PostgreSQL.** Batch transactions commit with `synchronous_commit =
//!   off` (`billing_batch::begin`): the run never waits for a WAL flush per batch. This
//!   is safe because the run is idempotent: a batch lost in a server crash leaves its
//!   subscriptions due, and the re-run (which follows every crash anyway) bills them; no
//!   charge can be billed twice because of the charge keys. `durable_batches` turns it
//!   off.
//! - **Pacing under load.** The charges are computed on blocking threads, never on the
//!   async workers that serve pages. After every read and write step of a batch, the run
//!   pauses in proportion to the step's duration and to the load of the panels and API
//!   in this process (`billing_batch::pace`, up to `RunOptions::pace_max`, 8× by
//!   default): under saturating page traffic it takes at most a ninth of the machine,
//!   while API writes (orders) are recent at most a third (`WRITE_PACE`); on a quiet
//!   system it never pauses.
//! - **Yielding to interactive work.** Before every write transaction the run waits while
//!   mutating API requests are in flight in this process (at most `yield_max`, 50 ms, so
//!   it always progresses): `billing_batch::interactive` is held by the HTTP layer.
//!   `write_chunk` splits a batch's writes into shorter transactions (less time holding
//!   SQLite's writer and PostgreSQL row locks) at some cost in throughput, and no more
//!   than two batches (one on SQLite) are in flight (`busy_parallel`) while API writes
//!   are recent.

use cascade_domain::billing::amounts::to_minor;
use cascade_domain::billing::calendar::{Span, add_months};
use cascade_domain::billing::charges::{BillingInput, ChargeLine, period_months, recurring_lines};
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::catalog::plan::{BillingModel, PlanContent};
use cascade_domain::clock::{Clock, Timestamp};
use cascade_domain::ids::AccountId;
use cascade_domain::money::Currency;
use cascade_store::billing_batch::{
    self, BatchEvent, BillingOrder, DueSubscription, InvoiceHead, Issued, KeyCheck, NewInvoice,
    SubscriptionMove, UsageRecord,
};
use cascade_store::documents::{NewLine, PaymentGateway};
use cascade_store::subscriptions::{Subscription, Subscriptions};
use cascade_store::wholesale::{self, RecurringWholesale, Wholesale};
use cascade_store::{Backend, Db, StoreError, StoreResult, Tx, on_tx};
use chrono::NaiveDate;

pub use cascade_domain::billing::charges::billing_cycle as cycle_of;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;

/// Default of [`RunOptions::expiry_notice_days`].
pub const DEFAULT_EXPIRY_NOTICE_DAYS: u32 = 7;

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
    /// BO orders written: one per subscription and billed period.
    pub orders_written: u64,
    /// `invoice.issued` events (one per invoice written).
    pub invoice_events: u64,
    /// `subscription.expiring` events.
    pub expiring_notices: u64,
    /// Consolidated wholesale rows inserted or grown for the BO orders: one per batch and
    /// (billed day, plan priced, reseller) it billed (`wholesale::record_recurring`).
    pub wholesale_rows: u64,
    /// Tier invoices (`tier_billing`): resellers invoiced by their vendors today.
    pub tiers: crate::tier_billing::TierReport,
    /// Accounts that were billed one per transaction instead of with their batch
    /// (changed concurrently, bad data, or a batch that failed); included in
    /// `accounts_done` / `accounts_failed`.
    pub accounts_billed_alone: u64,
    /// After billing: automatic charges, credit holds, PAYG deadlines.
    pub collections: crate::collections::CollectionsReport,
    /// Wall time of each phase, in order: the batches, expiry notices, tier invoices,
    /// collections (what `cascade bench billing` prints).
    pub phases: Vec<(&'static str, std::time::Duration)>,
    /// Where the batches' time went, summed over all batches.
    pub batch_steps: BatchSteps,
}

/// Wall time of each step of a batch, summed over the run's batches. Batches in flight
/// overlap, so the sums exceed the batches phase: `wait_writer` is time a batch was
/// ready to write while another held the writer (SQLite) or the pool was busy.
/// `cascade bench billing` prints them to show what limits a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSteps {
    /// Reading the due subscriptions, plans not cached yet and unbilled usage.
    pub read: std::time::Duration,
    /// Computing the charges (on a blocking thread).
    pub compute: std::time::Duration,
    /// Yielding to API writes and starting the write transaction.
    pub wait_writer: std::time::Duration,
    /// Moving the subscriptions and marking usage billed.
    pub subscriptions: std::time::Duration,
    /// Invoice numbers, documents and lines.
    pub invoices: std::time::Duration,
    /// Due dates, BO orders, wholesale rows and `invoice.issued` events.
    pub orders: std::time::Duration,
    pub commit: std::time::Duration,
    /// Pauses for panel and API load (`billing_batch::pace`).
    pub paced: std::time::Duration,
}

impl BatchSteps {
    fn add(&mut self, o: &BatchSteps) {
        self.read += o.read;
        self.compute += o.compute;
        self.wait_writer += o.wait_writer;
        self.subscriptions += o.subscriptions;
        self.invoices += o.invoices;
        self.orders += o.orders;
        self.commit += o.commit;
        self.paced += o.paced;
    }

    /// The steps with their names, in the order a batch goes through them.
    pub fn named(&self) -> [(&'static str, std::time::Duration); 8] {
        [
            ("read", self.read),
            ("compute", self.compute),
            ("wait for writer", self.wait_writer),
            ("subscriptions", self.subscriptions),
            ("invoices", self.invoices),
            ("orders+wholesale+events", self.orders),
            ("commit", self.commit),
            ("paced", self.paced),
        ]
    }
}

/// A stopwatch for [`BatchSteps`] and the run's phases: `lap` returns the time since the
/// previous lap.
struct Lap(std::time::Instant);

impl Lap {
    fn start() -> Self {
        Lap(std::time::Instant::now())
    }

    fn lap(&mut self) -> std::time::Duration {
        let now = std::time::Instant::now();
        let d = now - self.0;
        self.0 = now;
        d
    }
}

/// Test hook: a point in the run where a crash is simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After this many accounts (in due order) were committed, before the next one
    /// starts: batches are cut there, the ones in flight finish, then the run stops.
    BetweenAccounts(u64),
    /// Inside the transaction that bills the n-th account (0-based, in due order) —
    /// its batch's, or its own when billed alone — after the invoices were written and
    /// before the commit: the whole transaction is lost.
    InsideAccount(u64),
}

#[derive(Clone)]
pub struct RunOptions {
    /// Accounts billed per batch transaction.
    pub batch: i64,
    /// Simulated crash (tests only): the run stops with an error there.
    pub crash: Option<CrashPoint>,
    /// The card gateway automatic charges go through (`collections`); none = no
    /// automatic charges this run.
    pub gateway: Option<Arc<dyn PaymentGateway>>,
    /// Subscriptions that will not renew are told `subscription.expiring` this many days
    /// before their term ends (once per subscription and end date).
    pub expiry_notice_days: u32,
    /// Commit batch transactions durably (`synchronous_commit` on, PostgreSQL). Off by
    /// default: see `billing_batch::begin` for why a lost batch is harmless.
    pub durable_batches: bool,
    /// Accounts per write transaction within a batch (0: the whole batch). Shorter write
    /// transactions hold the writer (SQLite) and row locks for less time.
    pub write_chunk: usize,
    /// Before each write transaction the run waits while API writes are in flight in
    /// this process, at most this long (`billing_batch::yield_to_interactive`).
    pub yield_max: std::time::Duration,
    /// Resellers per tier-invoice transaction (`tier_billing`).
    pub tier_chunk: i64,
    /// Simulated crash (tests only) inside the transaction of this chunk (0-based) of
    /// tier invoices, before its commit.
    pub tier_crash: Option<u64>,
    /// Accounts per write transaction while API writes are in flight or were within
    /// `busy_window` (when `write_chunk` is 0; 0 here: never shrink). Short transactions
    /// bound how long an API write can wait behind the run; the whole batch is written
    /// at once when the API is quiet.
    pub busy_chunk: usize,
    pub busy_window: std::time::Duration,
    /// Yielding the machine to people: after each read or write step of a batch, the run
    /// pauses for the step's duration times a factor that grows with the load of the
    /// panels and API in this process, up to this (`billing_batch::pace`; 0: never
    /// pause). At 8 (the default), a run under saturating page traffic works at most a ninth of the
    /// time.
    pub pace_max: f64,
}

/// How batches write (from [`RunOptions`]).
#[derive(Debug, Clone, Copy)]
struct WriteOpts {
    /// The run (keys of its consolidated wholesale rows).
    run_id: i64,
    durable: bool,
    chunk: usize,
    yield_max: std::time::Duration,
    busy_chunk: usize,
    busy_window: std::time::Duration,
    pace_max: f64,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("batch", &self.batch)
            .field("crash", &self.crash)
            .field("gateway", &self.gateway.as_ref().map(|g| g.name()))
            .field("expiry_notice_days", &self.expiry_notice_days)
            .field("durable_batches", &self.durable_batches)
            .field("write_chunk", &self.write_chunk)
            .field("yield_max", &self.yield_max)
            .field("tier_chunk", &self.tier_chunk)
            .field("tier_crash", &self.tier_crash)
            .field("busy_chunk", &self.busy_chunk)
            .field("busy_window", &self.busy_window)
            .field("pace_max", &self.pace_max)
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            crash: None,
            gateway: None,
            expiry_notice_days: DEFAULT_EXPIRY_NOTICE_DAYS,
            durable_batches: false,
            write_chunk: 0,
            yield_max: std::time::Duration::from_millis(50),
            tier_chunk: crate::tier_billing::TIER_CHUNK,
            tier_crash: None,
            busy_chunk: 10,
            busy_window: std::time::Duration::from_secs(2),
            pace_max: billing_batch::DEFAULT_PACE_MAX,
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

/// A plan as billing needs it.
struct CachedPlan {
    content: PlanContent,
    currency: String,
    parsed: Result<Currency, String>,
}

impl CachedPlan {
    fn new(content: PlanContent, currency: String) -> CachedPlan {
        let parsed = Currency::parse(&currency).map_err(|e| e.message);
        CachedPlan {
            content,
            currency,
            parsed,
        }
    }
    fn currency(&self) -> StoreResult<Currency> {
        self.parsed.clone().map_err(StoreError::Corrupt)
    }
}

/// Plans by id, loaded once per run (a batch loads the ones it misses in one query),
/// and their delegation chains (the wholesale tiers above them).
#[derive(Default)]
struct PlanCache(
    Mutex<HashMap<i64, Arc<CachedPlan>>>,
    crate::tier_billing::TierCache,
);

impl PlanCache {
    fn cached(&self, id: i64) -> Option<Arc<CachedPlan>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    async fn get(&self, db: &Db, id: i64) -> StoreResult<Arc<CachedPlan>> {
        if let Some(p) = self.cached(id) {
            return Ok(p);
        }
        let plan = db.plans().get(id).await?;
        let v = Arc::new(CachedPlan::new(plan.content, plan.currency));
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, v.clone());
        Ok(v)
    }

    fn contains(&self, id: i64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    fn insert_all(&self, plans: Vec<(i64, String, PlanContent)>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (id, currency, content) in plans {
            cache.insert(id, Arc::new(CachedPlan::new(content, currency)));
        }
    }
}

fn date(s: &str) -> StoreResult<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| StoreError::Corrupt(format!("date `{s}`: {e}")))
}

/// What billing one subscription on `today` produces.
pub struct SubBilling {
    pub lines: Vec<ChargeLine>,
    /// The billing dates this billing covers, each with the position in `lines` where
    /// its lines start (a catch-up covers several): one BO order each.
    pub periods: Vec<(NaiveDate, usize)>,
    /// Usage dated before this day is accounted for by `lines` (the end of the last span
    /// whose usage was billed); none when no usage was billed.
    pub usage_until: Option<NaiveDate>,
    pub next_bill_date: String,
    pub expires_on: String,
    pub status: SubscriptionStatus,
    /// What each reseller of the plan's chain owes for these periods (filled by the run
    /// after billing: `tier_billing::charges`).
    pub wholesale: Vec<crate::tier_billing::TierCharge>,
}

/// Bill one subscription for everything due up to `today` (catching up missed days).
/// `usage(span)`: the unbilled usage per rate dated within the span. A catch-up bills
/// each period's usage with that period (never one period's usage twice).
pub fn bill_subscription(
    sub: &Subscription,
    plan: &PlanContent,
    statement_day: u32,
    usage: &dyn Fn(Span) -> BTreeMap<String, i64>,
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
    let no_usage = BTreeMap::new();
    let input = BillingInput {
        subscription_id: sub.id,
        plan,
        period,
        quantities: &sub.quantities,
        usage: &no_usage,
        billing_months,
    };
    let mut usage_until: Option<NaiveDate> = None;
    let mut usage_lines = |span: Span| {
        let u = usage(span);
        usage_until = usage_until.max(Some(span.end));
        cascade_domain::billing::charges::usage_lines(&BillingInput { usage: &u, ..input }, span)
    };
    let term_months = period_months(period) as i32;
    let mut guard = 0;
    let mut periods = Vec::new();
    while next <= today && guard < 1000 {
        guard += 1;
        periods.push((next, lines.len()));
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
                    lines.extend(usage_lines(span));
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
                    lines.extend(usage_lines(prev));
                }
                next = span.end;
            }
            BillingModel::ChargeAfterBillingPeriod | BillingModel::ExternalRating => {
                let span = cycle.period_containing(next.pred_opt().unwrap_or(next));
                lines.extend(recurring_lines(&input, span, span.days()));
                lines.extend(usage_lines(span));
                next = cycle.next_boundary(next);
            }
            BillingModel::ChargeBeforeSubscriptionPeriod => {
                // Charged per term at renewal; between renewals only overuse.
                let prev = cycle.period_containing(next.pred_opt().unwrap_or(next));
                lines.extend(usage_lines(prev));
                next = cycle.next_boundary(next).min(expires);
            }
        }
    }
    if status == SubscriptionStatus::Expired && next.format("%Y-%m-%d").to_string() != NEVER {
        next = date(NEVER)?;
    }
    Ok(SubBilling {
        lines,
        periods,
        usage_until,
        next_bill_date: next.format("%Y-%m-%d").to_string(),
        expires_on: expires.format("%Y-%m-%d").to_string(),
        status,
        wholesale: vec![],
    })
}

/// An invoice line for a charge.
fn new_line(sub: i64, l: &ChargeLine, currency: Currency) -> NewLine {
    NewLine {
        subscription_id: Some(sub),
        kind: l.kind.as_str().into(),
        description: l.description.clone(),
        quantity: l.quantity,
        unit_price_micro: l.unit_price.0,
        amount_minor: to_minor(l.amount, currency).minor,
        period_start: l.period.map(|p| p.start.to_string()),
        period_end: l.period.map(|p| p.end.to_string()),
        charge_key: Some(l.key.clone()),
    }
}

/// The span whose usage a subscription's billing reads: the period containing the day
/// before its next billing date.
fn usage_span(sub: &Subscription, plan: &PlanContent, statement_day: u32) -> StoreResult<Span> {
    let start = date(&sub.start_date)?;
    let (cycle, _) = cycle_of(plan, start, statement_day);
    Ok(cycle.period_containing(date(&sub.next_bill_date)?.pred_opt().unwrap_or(start)))
}

/// The plan terms a subscription's charge on its next billing date uses: those of the
/// period it bills (in advance: the period starting then; in arrears: the one ending
/// then). A sync's new prices thus start with the first period beginning on or after
/// the billing date they were given, never inside a period already running.
fn terms_billed<'a>(
    sub: &'a Subscription,
    live: &'a PlanContent,
    statement_day: u32,
) -> StoreResult<&'a PlanContent> {
    let ahead = sub.plan_terms(&sub.next_bill_date, live);
    match ahead.billing_model {
        BillingModel::ChargeBeforeBillingPeriod | BillingModel::ChargeBeforeSubscriptionPeriod => {
            Ok(ahead)
        }
        BillingModel::ChargeAfterBillingPeriod | BillingModel::ExternalRating => {
            let span = usage_span(sub, ahead, statement_day)?;
            Ok(sub.plan_terms(&span.start.to_string(), live))
        }
    }
}

/// Usage per rate dated within `span`, of records (`rate_uid`, quantity, date).
fn usage_in<'a>(
    records: impl Iterator<Item = (&'a str, i64, &'a str)>,
    span: Span,
) -> BTreeMap<String, i64> {
    let (from, to) = (span.start.to_string(), span.end.to_string());
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for (rate, q, day) in records {
        if day >= from.as_str() && day < to.as_str() {
            *sums.entry(rate.to_string()).or_default() += q;
        }
    }
    sums
}

/// Bill one account in one transaction (the per-account path: batches fall back to it).
async fn bill_account(
    db: &Db,
    run_id: i64,
    plans: &PlanCache,
    account: AccountId,
    today: NaiveDate,
    now: Timestamp,
    crash_inside: bool,
) -> Result<Counts, RunError> {
    let day = today.format("%Y-%m-%d").to_string();
    let mut tx = db.begin().await?;
    let subs = Subscriptions::due_of_account_in(&mut tx, account, &day).await?;
    let statement_day = statement_day(&mut tx, account).await?;
    plans.1.load(db, subs.iter().map(|s| s.plan_id)).await?;
    let mut billed = Vec::with_capacity(subs.len());
    for sub in &subs {
        let plan = plans.get(db, sub.plan_id).await?;
        // Unbilled usage dated before today, summed per span billed.
        let records: Vec<(String, i64, String)> = on_tx!(&mut tx, c => sqlx::query_as(
            "SELECT rate_uid, quantity, usage_date FROM usage_records WHERE subscription_id = $1 AND billed_line_id IS NULL AND usage_date < $2")
            .bind(sub.id).bind(&day).fetch_all(c).await)?;
        let usage = |span: Span| {
            usage_in(
                records.iter().map(|r| (r.0.as_str(), r.1, r.2.as_str())),
                span,
            )
        };
        let content = terms_billed(sub, &plan.content, statement_day)?;
        let mut b = bill_subscription(sub, content, statement_day, &usage, today)?;
        if let Some(tiers) = plans.1.get(sub.plan_id) {
            b.wholesale = crate::tier_billing::charges(
                sub,
                &tiers,
                statement_day,
                &usage,
                today,
                &b,
                plan.currency()?,
            );
        }
        billed.push((sub, plan, b));
    }
    let assembled = assemble(
        account,
        billed
            .iter()
            .map(|(sub, plan, b)| (sub.id, sub.vendor_id.0, b, plan.as_ref())),
    )?;
    let invoices: Vec<&NewInvoice> = assembled.invoices.iter().collect();
    let due = due_date(today);
    let head = InvoiceHead {
        issue_date: &day,
        due_date: Some(&due),
        tax_bp: 0,
    };
    let issued = billing_batch::issue_invoices(&mut tx, &head, &invoices, now, KeyCheck::Before)
        .await?
        .ok_or_else(|| StoreError::Corrupt("charge keys were checked before issuing".into()))?;
    let mut counts = finish_invoices(
        &mut tx,
        run_id,
        &invoices,
        &assembled
            .orders
            .iter()
            .map(|o| (o.invoice, o))
            .collect::<Vec<_>>(),
        &issued,
        today,
        now,
    )
    .await?;
    if crash_inside {
        // Dropping the transaction without commit is what a killed process leaves behind.
        drop(tx);
        return Err(RunError::Crash);
    }
    for (sub, _, b) in &billed {
        Subscriptions::after_billing(
            &mut tx,
            sub,
            &b.next_bill_date,
            &b.expires_on,
            b.status,
            now,
        )
        .await?;
        if let Some(until) = b.usage_until {
            mark_usage_billed(&mut tx, sub.id, &until.to_string()).await?;
        }
    }
    tx.commit().await?;
    counts.subscriptions = billed.len() as u64;
    Ok(counts)
}

/// Invoices are due 14 days after the run date (unless the account's class says
/// otherwise: `collections::date_by_terms`).
fn due_date(today: NaiveDate) -> String {
    (today + chrono::Duration::days(14))
        .format("%Y-%m-%d")
        .to_string()
}

/// What billing wrote.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    subscriptions: u64,
    documents: u64,
    lines: u64,
    orders: u64,
    invoice_events: u64,
    wholesale: u64,
}

/// A BO order to write once its invoice is issued: lines `lines` of invoice `invoice`
/// (a position in the account's invoices) bill subscription `sub` for the period due on
/// `billed_on`.
struct PlannedOrder {
    invoice: usize,
    sub: i64,
    billed_on: NaiveDate,
    lines: Range<usize>,
    /// Each reseller of the chain for this period: (buyer, seller, amount, plan priced,
    /// its name).
    wholesale: Vec<Tier>,
}

/// What one reseller owes for one billed period: (buyer, seller, amount, plan priced,
/// its name).
type Tier = (AccountId, AccountId, i64, i64, Arc<str>);

/// An account's invoices (one per issuer and currency, none empty) and BO orders.
#[derive(Default)]
struct Assembled {
    invoices: Vec<NewInvoice>,
    orders: Vec<PlannedOrder>,
}

/// Group an account's billed subscriptions — (id, vendor, billing, plan) — into invoices
/// and plan one BO order per subscription and billed period.
fn assemble<'a>(
    account: AccountId,
    billed: impl Iterator<Item = (i64, i64, &'a SubBilling, &'a CachedPlan)>,
) -> StoreResult<Assembled> {
    type Tiers = Vec<Tier>;
    type Group = (Vec<NewLine>, Vec<(i64, NaiveDate, Range<usize>, Tiers)>);
    let mut groups: BTreeMap<(i64, String), Group> = BTreeMap::new();
    for (sub, vendor, b, plan) in billed {
        let cur = plan.currency()?;
        let (lines, orders) = groups.entry((vendor, plan.currency.clone())).or_default();
        let base = lines.len();
        lines.extend(b.lines.iter().map(|l| new_line(sub, l, cur)));
        for (i, (on, start)) in b.periods.iter().enumerate() {
            let end = b.periods.get(i + 1).map_or(b.lines.len(), |p| p.1);
            if end > *start {
                let tiers = b
                    .wholesale
                    .iter()
                    .filter_map(|t| {
                        let amount = t.per_period.get(on).copied().unwrap_or(0);
                        (amount != 0)
                            .then(|| (t.buyer, t.seller, amount, t.plan_id, t.plan_name.clone()))
                    })
                    .collect();
                orders.push((sub, *on, base + start..base + end, tiers));
            }
        }
    }
    let mut out = Assembled::default();
    for ((issuer, currency), (lines, orders)) in groups {
        if lines.is_empty() {
            continue;
        }
        let invoice = out.invoices.len();
        out.orders.extend(
            orders
                .into_iter()
                .map(|(sub, billed_on, lines, wholesale)| PlannedOrder {
                    invoice,
                    sub,
                    billed_on,
                    lines,
                    wholesale,
                }),
        );
        out.invoices.push(NewInvoice {
            issuer: AccountId(issuer),
            account,
            currency,
            lines,
        });
    }
    Ok(out)
}

/// After `issue_invoices`, in the same transaction: date the invoices by the accounts'
/// terms, write the BO orders of the lines written (a planned order whose lines were all
/// billed before writes nothing: exactly once, like its lines), and emit `invoice.issued`
/// for each invoice written. `orders` come with the position of their invoice in
/// `invoices`.
#[allow(clippy::too_many_arguments)]
async fn finish_invoices(
    tx: &mut Tx,
    run_id: i64,
    invoices: &[&NewInvoice],
    orders: &[(usize, &PlannedOrder)],
    issued: &[Option<Issued>],
    today: NaiveDate,
    now: Timestamp,
) -> StoreResult<Counts> {
    let dated: Vec<(i64, AccountId)> = invoices
        .iter()
        .zip(issued)
        .filter_map(|(inv, d)| d.as_ref().map(|d| (d.id, inv.account)))
        .collect();
    cascade_store::collections::date_by_terms(tx, &dated, today).await?;
    let mut bo = Vec::new();
    let mut planned = Vec::new();
    for &(i, o) in orders {
        let (Some(inv), Some(Some(doc))) = (invoices.get(i), issued.get(i)) else {
            continue;
        };
        let lines: Vec<&NewLine> = doc
            .lines
            .iter()
            .filter(|n| o.lines.contains(n))
            .map(|n| &inv.lines[*n])
            .collect();
        if lines.is_empty() {
            continue;
        }
        let keys: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.charge_key.as_deref())
            .collect();
        let details = serde_json::json!({
            "invoice_id": doc.id,
            "invoice_number": doc.number,
            "billed_on": o.billed_on.to_string(),
            "period_start": lines.iter().filter_map(|l| l.period_start.as_deref()).min(),
            "period_end": lines.iter().filter_map(|l| l.period_end.as_deref()).max(),
            "charge_keys": keys,
        });
        bo.push(BillingOrder {
            account: inv.account,
            vendor: inv.issuer,
            subscription_id: o.sub,
            currency: inv.currency.clone(),
            total_minor: lines.iter().map(|l| l.amount_minor).sum(),
            details: details.to_string(),
        });
        planned.push(o);
    }
    billing_batch::insert_billing_orders(tx, &bo, now).await?;
    // What each reseller owes for the periods billed, consolidated per (billed day, plan
    // priced, buyer) into the run's rows, in the map's order: the same in every batch, so
    // batches in flight lock the rows they share in the same order.
    type Key<'a> = (NaiveDate, i64, AccountId, &'a str);
    let mut owed: BTreeMap<Key<'_>, (AccountId, i64, i64, &Arc<str>)> = BTreeMap::new();
    for (o, order) in planned.iter().zip(&bo) {
        for (buyer, seller, amount, plan, name) in &o.wholesale {
            let e = owed
                .entry((o.billed_on, *plan, *buyer, order.currency.as_str()))
                .or_insert((*seller, 0, 0, name));
            e.1 += amount;
            e.2 += 1;
        }
    }
    let rows: Vec<RecurringWholesale> = owed
        .into_iter()
        .map(
            |((on, plan, buyer, currency), (seller, amount, periods, name))| {
                let on = on.to_string();
                RecurringWholesale {
                    charge_key: Wholesale::recurring_key(run_id, &on, plan, buyer),
                    description: format!("{name} (plan #{plan}) billed on {on}"),
                    buyer,
                    seller,
                    currency: currency.to_string(),
                    plan_id: plan,
                    billed_on: on,
                    amount_minor: amount,
                    periods,
                }
            },
        )
        .collect();
    let wholesale_rows = wholesale::record_recurring(tx, &rows, now).await?;
    let ids: Vec<i64> = dated.iter().map(|d| d.0).collect();
    let events = billing_batch::emit_invoices_issued(tx, &ids, now).await?;
    Ok(Counts {
        subscriptions: 0,
        documents: ids.len() as u64,
        lines: issued.iter().flatten().map(|d| d.lines.len() as u64).sum(),
        orders: bo.len() as u64,
        invoice_events: events,
        wholesale: wholesale_rows,
    })
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

/// What billing one account produced in memory, ready to be written with its batch.
struct AccountBill {
    /// Position of the account in its batch.
    index: usize,
    moves: Vec<SubscriptionMove>,
    invoices: Vec<NewInvoice>,
    /// BO orders, with positions in `invoices`.
    orders: Vec<PlannedOrder>,
    /// Usage records the written lines account for.
    usage: Vec<i64>,
}

/// Compute one account's billing from what its batch read.
fn bill_in_memory(
    index: usize,
    account: AccountId,
    subs: &[DueSubscription],
    usage: &HashMap<i64, &[UsageRecord]>,
    plans: &PlanCache,
    today: NaiveDate,
) -> StoreResult<AccountBill> {
    let mut billed = Vec::with_capacity(subs.len());
    let mut bill = AccountBill {
        index,
        moves: Vec::with_capacity(subs.len()),
        invoices: vec![],
        orders: vec![],
        usage: vec![],
    };
    for DueSubscription { sub, statement_day } in subs {
        let plan = plans.cached(sub.plan_id).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "subscription {}: plan {} not found",
                sub.id, sub.plan_id
            ))
        })?;
        let records = usage.get(&sub.id).copied().unwrap_or_default();
        let in_span = |span: Span| {
            usage_in(
                records
                    .iter()
                    .map(|r| (r.rate_uid.as_str(), r.quantity, r.usage_date.as_str())),
                span,
            )
        };
        let content = terms_billed(sub, &plan.content, *statement_day)?;
        let mut b = bill_subscription(sub, content, *statement_day, &in_span, today)?;
        if let Some(tiers) = plans.1.get(sub.plan_id) {
            b.wholesale = crate::tier_billing::charges(
                sub,
                &tiers,
                *statement_day,
                &in_span,
                today,
                &b,
                plan.currency()?,
            );
        }
        if let Some(until) = b.usage_until.map(|u| u.to_string()) {
            bill.usage.extend(
                records
                    .iter()
                    .filter(|r| r.usage_date < until)
                    .map(|r| r.id),
            );
        }
        bill.moves.push(SubscriptionMove {
            id: sub.id,
            version: sub.version,
            next_bill_date: b.next_bill_date.clone(),
            expires_on: b.expires_on.clone(),
            status: b.status,
        });
        billed.push((sub.id, sub.vendor_id.0, b, plan));
    }
    let assembled = assemble(
        account,
        billed
            .iter()
            .map(|(id, vendor, b, plan)| (*id, *vendor, b, plan.as_ref())),
    )?;
    bill.invoices = assembled.invoices;
    bill.orders = assembled.orders;
    Ok(bill)
}

/// What a batch did.
#[derive(Debug, Default)]
struct BatchReport {
    accounts_done: u64,
    accounts_failed: u64,
    subscriptions_billed: u64,
    documents_written: u64,
    lines_written: u64,
    orders_written: u64,
    invoice_events: u64,
    accounts_billed_alone: u64,
    wholesale_rows: u64,
    steps: BatchSteps,
}

impl BatchReport {
    fn add(&mut self, c: Counts) {
        self.subscriptions_billed += c.subscriptions;
        self.documents_written += c.documents;
        self.lines_written += c.lines;
        self.orders_written += c.orders;
        self.invoice_events += c.invoice_events;
        self.wholesale_rows += c.wholesale;
    }
}

enum Written {
    Committed(Counts),
    /// Subscriptions of these accounts (positions in the batch) changed since they were
    /// read; nothing was written.
    Conflicts(HashSet<usize>),
    /// Some charge was billed already (`KeyCheck::Optimistic`); nothing was written.
    KeysBilled,
}

/// Write a batch's billing in one transaction.
#[allow(clippy::too_many_arguments)]
async fn write_batch(
    db: &Db,
    bills: &[AccountBill],
    today: NaiveDate,
    now: Timestamp,
    check: KeyCheck,
    crash: bool,
    w: WriteOpts,
    steps: &mut BatchSteps,
) -> Result<Written, RunError> {
    let day = today.format("%Y-%m-%d").to_string();
    let due = due_date(today);
    let mut lap = Lap::start();
    billing_batch::yield_to_interactive(w.yield_max).await;
    let mut tx = billing_batch::begin(db, w.durable).await?;
    steps.wait_writer += lap.lap();
    let moves: Vec<SubscriptionMove> = bills.iter().flat_map(|b| b.moves.iter().cloned()).collect();
    let moved = billing_batch::move_subscriptions(&mut tx, &moves, now).await?;
    if moved.len() != moves.len() {
        let conflicts = bills
            .iter()
            .filter(|b| b.moves.iter().any(|m| !moved.contains(&m.id)))
            .map(|b| b.index)
            .collect();
        tx.rollback().await?;
        return Ok(Written::Conflicts(conflicts));
    }
    let usage: Vec<i64> = bills.iter().flat_map(|b| b.usage.iter().copied()).collect();
    billing_batch::mark_usage_billed(&mut tx, &usage).await?;
    steps.subscriptions += lap.lap();
    let invoices: Vec<&NewInvoice> = bills.iter().flat_map(|b| &b.invoices).collect();
    let head = InvoiceHead {
        issue_date: &day,
        due_date: Some(&due),
        tax_bp: 0,
    };
    let Some(issued) = billing_batch::issue_invoices(&mut tx, &head, &invoices, now, check).await?
    else {
        tx.rollback().await?;
        return Ok(Written::KeysBilled);
    };
    steps.invoices += lap.lap();
    // BO orders with the positions of their invoices in `invoices`.
    let mut offset = 0;
    let mut orders = Vec::new();
    for b in bills {
        orders.extend(b.orders.iter().map(|o| (offset + o.invoice, o)));
        offset += b.invoices.len();
    }
    let mut counts =
        finish_invoices(&mut tx, w.run_id, &invoices, &orders, &issued, today, now).await?;
    steps.orders += lap.lap();
    if crash {
        drop(tx);
        return Err(RunError::Crash);
    }
    tx.commit().await?;
    steps.commit += lap.lap();
    counts.subscriptions = moves.len() as u64;
    Ok(Written::Committed(counts))
}

/// Read a batch and compute its billing: per account (in batch order), its bill or the
/// error that sends it down the per-account path.
async fn prepare_batch(
    db: &Db,
    plans: &Arc<PlanCache>,
    accounts: &[AccountId],
    today: NaiveDate,
    steps: &mut BatchSteps,
) -> StoreResult<Vec<Result<AccountBill, StoreError>>> {
    let mut lap = Lap::start();
    let day = today.format("%Y-%m-%d").to_string();
    let read = billing_batch::read_batch(db, accounts, &day, |id| plans.contains(id)).await?;
    plans.insert_all(read.plans);
    plans
        .1
        .load(
            db,
            read.subscriptions.iter().flatten().map(|s| s.sub.plan_id),
        )
        .await?;
    steps.read += lap.lap();
    // The charges are computed off the async workers (a batch is tens of milliseconds of
    // CPU): the panels and API requests those workers serve never queue behind it.
    let plans = plans.clone();
    let accounts = accounts.to_vec();
    let (subscriptions, records) = (read.subscriptions, read.usage);
    let bills = tokio::task::spawn_blocking(move || {
        let mut subs: HashMap<AccountId, Vec<DueSubscription>> =
            HashMap::with_capacity(accounts.len());
        let mut broken: HashMap<AccountId, StoreError> = HashMap::new();
        for r in subscriptions {
            match r {
                Ok(s) => subs.entry(s.sub.account_id).or_default().push(s),
                Err((account, e)) => {
                    broken.insert(account, e);
                }
            }
        }
        let mut usage: HashMap<i64, &[UsageRecord]> = HashMap::new();
        for chunk in records.chunk_by(|a, b| a.subscription_id == b.subscription_id) {
            usage.insert(chunk[0].subscription_id, chunk);
        }
        accounts
            .iter()
            .enumerate()
            .map(|(i, a)| match broken.remove(a) {
                Some(e) => Err(e),
                None => bill_in_memory(
                    i,
                    *a,
                    subs.get(a).map(Vec::as_slice).unwrap_or_default(),
                    &usage,
                    &plans,
                    today,
                ),
            })
            .collect()
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("computing a billing batch: {e}")));
    steps.compute += lap.lap();
    bills
}

/// Bill a batch of accounts: set-wise in one transaction, the accounts that cannot be
/// (conflicts, bad data, a failed batch) one by one. `crash_at`: position in the batch
/// of the account whose transaction crashes (tests).
async fn bill_batch(
    db: Db,
    plans: Arc<PlanCache>,
    accounts: Vec<AccountId>,
    today: NaiveDate,
    now: Timestamp,
    crash_at: Option<usize>,
    w: WriteOpts,
) -> Result<BatchReport, RunError> {
    let mut report = BatchReport::default();
    let mut alone: Vec<usize> = Vec::new();
    let mut bills: Vec<AccountBill> = Vec::with_capacity(accounts.len());
    let started = std::time::Instant::now();
    let prepared = prepare_batch(&db, &plans, &accounts, today, &mut report.steps).await;
    report.steps.paced += billing_batch::pace(started.elapsed(), w.pace_max).await;
    match prepared {
        Ok(prepared) => {
            for (i, b) in prepared.into_iter().enumerate() {
                match b {
                    Ok(b) => bills.push(b),
                    Err(e) => {
                        tracing::debug!(account = accounts[i].0, error = %e, "account cannot be billed with its batch; billing it alone");
                        alone.push(i);
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, accounts = accounts.len(), "reading a billing batch failed; billing its accounts one by one");
            alone.extend(0..accounts.len());
        }
    }
    while !bills.is_empty() {
        let chunk = billing_batch::write_chunk(
            bills.len(),
            w.chunk,
            w.busy_chunk,
            billing_batch::interactive_within(w.busy_window),
        );
        let tail = bills.split_off(chunk);
        let mut part = std::mem::replace(&mut bills, tail);
        // A run normally meets only charges it has never billed: insert optimistically, and
        // look the keys up first only when that fails.
        let mut check = KeyCheck::Optimistic;
        while !part.is_empty() {
            let crash = crash_at.is_some_and(|c| part.iter().any(|b| b.index == c));
            let started = std::time::Instant::now();
            let written =
                write_batch(&db, &part, today, now, check, crash, w, &mut report.steps).await;
            report.steps.paced += billing_batch::pace(started.elapsed(), w.pace_max).await;
            match written {
                Ok(Written::Committed(counts)) => {
                    report.accounts_done += part.len() as u64;
                    report.add(counts);
                    break;
                }
                Ok(Written::Conflicts(changed)) => {
                    // Each round takes at least one account out, so this ends.
                    tracing::debug!(
                        accounts = changed.len(),
                        "subscriptions changed during billing; billing their accounts alone"
                    );
                    part.retain(|b| !changed.contains(&b.index));
                    alone.extend(changed);
                }
                Ok(Written::KeysBilled) if check == KeyCheck::Optimistic => {
                    check = KeyCheck::Before
                }
                Ok(Written::KeysBilled) => {
                    // Keys billed meanwhile by someone else: the per-account path sorts it out.
                    tracing::warn!(
                        accounts = part.len(),
                        "charges of a billing batch were billed concurrently; billing its accounts one by one"
                    );
                    alone.extend(part.iter().map(|b| b.index));
                    break;
                }
                Err(RunError::Crash) => return Err(RunError::Crash),
                Err(RunError::Store(e)) => {
                    tracing::warn!(error = %e, accounts = part.len(), "writing a billing batch failed; billing its accounts one by one");
                    alone.extend(part.iter().map(|b| b.index));
                    break;
                }
            }
        }
    }
    alone.sort_unstable();
    report.accounts_billed_alone = alone.len() as u64;
    for i in alone {
        let account = accounts[i];
        match bill_account(
            &db,
            w.run_id,
            &plans,
            account,
            today,
            now,
            crash_at == Some(i),
        )
        .await
        {
            Ok(counts) => {
                report.accounts_done += 1;
                report.add(counts);
            }
            Err(RunError::Crash) => return Err(RunError::Crash),
            Err(RunError::Store(e)) => {
                report.accounts_failed += 1;
                // Its subscriptions stay due: the next run retries it.
                tracing::warn!(account = account.0, error = %e, "billing failed for an account; it stays due and is retried next run");
            }
        }
    }
    Ok(report)
}

/// Order the due accounts and cut them into batches of about `batch` accounts, so that
/// `lanes` consecutive batches (those in flight together) bill disjoint sets of issuers
/// while touching the same region of the tables.
///
/// Accounts go in id order, which follows the tables' physical order: a batch reads and
/// moves subscriptions that sit on few pages (at a million subscriptions, far more than
/// the database's cache, this halves the work per subscription). But customers of one
/// reseller are spread over the whole id range, so every batch would touch nearly every
/// issuer's invoice counter, and batches in flight at once would queue on those row
/// locks until commit. So each stretch of `batch × lanes` accounts is split into `lanes`
/// batches by the account's vendor (who issues its invoices): batches dispatched one
/// after another then never share a counter. Returns the accounts in billing order and
/// the batches as ranges of it.
fn lay_out(
    due: Vec<(AccountId, i64)>,
    batch: usize,
    lanes: usize,
) -> (Vec<AccountId>, Vec<Range<usize>>) {
    let lanes = lanes.max(1);
    let mut order = Vec::with_capacity(due.len());
    let mut batches = Vec::with_capacity(due.len() / batch.max(1) + lanes);
    let mut by_lane: Vec<Vec<AccountId>> = vec![Vec::new(); lanes];
    for stretch in due.chunks(batch.max(1) * lanes) {
        for (account, vendor) in stretch {
            by_lane[vendor.rem_euclid(lanes as i64) as usize].push(*account);
        }
        for lane in &mut by_lane {
            if !lane.is_empty() {
                batches.push(order.len()..order.len() + lane.len());
                order.append(lane);
            }
        }
    }
    (order, batches)
}

/// Subscriptions told `subscription.expiring` per transaction.
const NOTICE_CHUNK: i64 = 1000;

/// Emit `subscription.expiring` for every live subscription that will not renew and ends
/// within `days` after `today`, once per subscription and end date (the
/// `subscription_notices` row is written with the event). Set-wise: one read and one
/// short transaction per [`NOTICE_CHUNK`] subscriptions. A chunk that fails is logged and
/// skipped; nothing of it was recorded, so the next run sends it. Returns the events
/// written.
async fn expiring_notices(
    db: &Db,
    plans: &PlanCache,
    today: NaiveDate,
    days: u32,
    now: Timestamp,
) -> u64 {
    if days == 0 {
        return 0;
    }
    let from = today.to_string();
    let until = (today + chrono::Duration::days(i64::from(days))).to_string();
    let mut after = 0;
    let mut written = 0;
    loop {
        let subs = match billing_batch::expiring_subscriptions(
            db,
            &from,
            &until,
            after,
            NOTICE_CHUNK,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading expiring subscriptions failed; the next run notices them");
                return written;
            }
        };
        let Some(last) = subs.last() else {
            return written;
        };
        after = last.id;
        match notice_chunk(db, plans, &subs, now).await {
            Ok(n) => written += n,
            Err(e) => {
                tracing::warn!(error = %e, subscriptions = subs.len(), "expiry notices failed; the next run sends them");
            }
        }
        if (subs.len() as i64) < NOTICE_CHUNK {
            return written;
        }
    }
}

async fn notice_chunk(
    db: &Db,
    plans: &PlanCache,
    subs: &[billing_batch::Expiring],
    now: Timestamp,
) -> StoreResult<u64> {
    let mut names = HashMap::new();
    for s in subs {
        if let std::collections::hash_map::Entry::Vacant(e) = names.entry(s.plan_id) {
            let plan = plans.get(db, s.plan_id).await?;
            e.insert(
                plan.content
                    .name
                    .get(&plan.content.name.default)
                    .to_string(),
            );
        }
    }
    let pairs: Vec<(i64, &str)> = subs.iter().map(|s| (s.id, s.expires_on.as_str())).collect();
    let mut tx = db.begin().await?;
    let fresh = billing_batch::record_expiring_notices(&mut tx, &pairs, now).await?;
    let events: Vec<BatchEvent> = subs
        .iter()
        .filter(|s| fresh.contains(&s.id))
        .map(|s| BatchEvent {
            kind: "subscription.expiring",
            account_id: s.account_id,
            subject_type: "subscription",
            subject_id: s.id,
            payload: serde_json::json!({
                "subscription_id": s.id,
                "expires_on": s.expires_on,
                "plan_id": s.plan_id,
                "plan_name": names.get(&s.plan_id),
            })
            .to_string(),
        })
        .collect();
    billing_batch::insert_events(&mut tx, &events, now).await?;
    tx.commit().await?;
    Ok(events.len() as u64)
}

/// Batches in flight at once: SQLite has one writer, so two (one reads and computes
/// while the other writes); PostgreSQL writes concurrently too, and four keep two cores
/// busy while batches wait on round trips and commits (1M subscriptions, tuned server,
/// no API load: 17,120 subs/s with three in flight, 23,063 with four).
pub fn default_parallel(db: &Db) -> usize {
    match db.backend() {
        Backend::Sqlite => 2,
        Backend::Postgres => 4,
    }
}

/// Batches in flight while people use the system: one while the panels and API carry
/// more than [`BUSY_LOAD`] requests in flight on average (`billing_batch::request_load`);
/// at most `busy_max` ([`busy_max`]) while API writes are in flight or were within
/// `busy_window`. Each batch paces itself (`billing_batch::pace`), so the run's share of
/// the machine grows with the batches in flight: under saturating panel traffic, page p99
/// during a run on PostgreSQL was 2.86× idle with four in flight and 2.33× with two.
fn busy_parallel(
    parallel: usize,
    busy_max: usize,
    busy_window: std::time::Duration,
    load: f64,
) -> usize {
    if load > BUSY_LOAD {
        parallel.min(1)
    } else if billing_batch::interactive_within(busy_window) {
        parallel.min(busy_max)
    } else {
        parallel
    }
}

/// See [`busy_parallel`]: a lone request at a time does not count as load.
const BUSY_LOAD: f64 = 1.0;

/// See [`busy_parallel`]. PostgreSQL: two (with four in flight, order p99 during a 1M run
/// reached 2.0× idle). SQLite: one, so that no batch reads and computes on the second
/// core while another writes: an order then has a core to itself, and waits for the one
/// writer behind a single short transaction (1M run with orders placed during its first
/// ten seconds: p99 2.73× idle with two in flight).
fn busy_max(db: &Db) -> usize {
    match db.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    }
}

/// Run billing for `today`. `progress` is called with (accounts done, accounts failed).
pub async fn run(
    db: &Db,
    clock: &dyn Clock,
    today: NaiveDate,
    opts: &RunOptions,
    progress: impl Fn(u64, u64),
) -> Result<RunReport, RunError> {
    run_with(db, clock, today, opts, default_parallel(db), progress).await
}

/// [`run`] with at most `parallel` batches in flight.
pub async fn run_with(
    db: &Db,
    clock: &dyn Clock,
    today: NaiveDate,
    opts: &RunOptions,
    parallel: usize,
    progress: impl Fn(u64, u64),
) -> Result<RunReport, RunError> {
    let day = today.format("%Y-%m-%d").to_string();
    let started = clock.now();
    let mut phase = Lap::start();
    let mut tx = db.begin().await?;
    let (run_id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO billing_runs (run_date, started_at, accounts_done, accounts_failed, subscriptions_billed, documents_written, lines_written)
         VALUES ($1, $2, 0, 0, 0, 0, 0) RETURNING id").bind(&day).bind(started.0).fetch_one(c).await)?;
    tx.commit().await?;
    let parallel = parallel.max(1);
    // SQLite has one writer: batches never wait on each other's counters there.
    let lanes = match db.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => parallel,
    };
    let (due, batches) = lay_out(
        billing_batch::due_accounts(db, &day).await?,
        opts.batch.max(1) as usize,
        lanes,
    );
    let plans = Arc::new(PlanCache::default());
    let write_opts = WriteOpts {
        run_id,
        durable: opts.durable_batches,
        chunk: opts.write_chunk,
        yield_max: opts.yield_max,
        busy_chunk: opts.busy_chunk,
        busy_window: opts.busy_window,
        pace_max: opts.pace_max,
    };
    let mut report = RunReport {
        run_id,
        ..Default::default()
    };
    let mut in_flight = JoinSet::new();
    let mut batches = batches.into_iter();
    let mut stop: Option<RunError> = None;
    loop {
        while stop.is_none()
            && in_flight.len()
                < busy_parallel(
                    parallel,
                    busy_max(db),
                    opts.busy_window,
                    billing_batch::request_load(),
                )
        {
            let Some(mut range) = batches.next() else {
                break;
            };
            if opts.crash == Some(CrashPoint::BetweenAccounts(range.start as u64)) {
                stop = Some(RunError::Crash);
                break;
            }
            if let Some(CrashPoint::BetweenAccounts(n)) = opts.crash {
                let n = n as usize;
                if range.contains(&n) && n > range.start {
                    // Cut the batch there: the rest is the next batch, where the crash is.
                    let rest = n..range.end;
                    range.end = n;
                    let mut left: Vec<Range<usize>> = vec![rest];
                    left.extend(batches.by_ref());
                    batches = left.into_iter();
                }
            }
            let crash_at = match opts.crash {
                Some(CrashPoint::InsideAccount(i)) if range.contains(&(i as usize)) => {
                    Some(i as usize - range.start)
                }
                _ => None,
            };
            in_flight.spawn(bill_batch(
                db.clone(),
                plans.clone(),
                due[range].to_vec(),
                today,
                clock.now(),
                crash_at,
                write_opts,
            ));
        }
        // Batches in flight always finish (or roll back) before the run returns.
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        match joined {
            Ok(Ok(b)) => {
                report.accounts_done += b.accounts_done;
                report.accounts_failed += b.accounts_failed;
                report.subscriptions_billed += b.subscriptions_billed;
                report.documents_written += b.documents_written;
                report.lines_written += b.lines_written;
                report.orders_written += b.orders_written;
                report.invoice_events += b.invoice_events;
                report.accounts_billed_alone += b.accounts_billed_alone;
                report.wholesale_rows += b.wholesale_rows;
                report.batch_steps.add(&b.steps);
                progress(report.accounts_done, report.accounts_failed);
            }
            Ok(Err(e)) => {
                stop.get_or_insert(e);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                stop.get_or_insert(RunError::Store(StoreError::Corrupt(format!(
                    "billing batch cancelled: {e}"
                ))));
            }
        }
    }
    if let Some(e) = stop {
        return Err(e);
    }
    report.phases.push(("batches", phase.lap()));
    report.expiring_notices =
        expiring_notices(db, &plans, today, opts.expiry_notice_days, clock.now()).await;
    report.phases.push(("expiry notices", phase.lap()));
    // Before collections, so that automatic charges and credit holds see the resellers'
    // new invoices.
    report.tiers = crate::tier_billing::invoice_tiers(
        db,
        today,
        clock.now(),
        opts.tier_chunk,
        opts.tier_crash,
    )
    .await?;
    report.phases.push(("tier invoices", phase.lap()));
    report.collections =
        crate::collections::run(db, opts.gateway.as_deref(), today, clock.now()).await?;
    report.phases.push(("collections", phase.lap()));
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, c => sqlx::query(
        "UPDATE billing_runs SET finished_at = $2, accounts_done = $3, accounts_failed = $4, subscriptions_billed = $5, documents_written = $6, lines_written = $7 WHERE id = $1")
        .bind(run_id).bind(clock.now().0).bind(report.accounts_done as i64).bind(report.accounts_failed as i64)
        .bind(report.subscriptions_billed as i64).bind(report.documents_written as i64).bind(report.lines_written as i64)
        .execute(c).await.map(|r| r.rows_affected()))?;
    tx.commit().await?;
    tracing::info!(run_id, date = %day, accounts = report.accounts_done, failed = report.accounts_failed,
        subscriptions = report.subscriptions_billed, documents = report.documents_written, lines = report.lines_written,
        billed_alone = report.accounts_billed_alone, "billing run finished");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_batches_are_in_flight_while_api_writes_are_recent() {
        let window = std::time::Duration::from_secs(3600);
        // Each test is its own process under nextest: no API write yet.
        assert_eq!(busy_parallel(4, 2, window, 0.0), 4);
        assert_eq!(busy_parallel(1, 2, window, 0.0), 1);
        assert_eq!(busy_parallel(4, 2, window, 1.0), 4, "one request at a time");
        assert_eq!(busy_parallel(4, 2, window, 6.0), 1, "panel traffic");
        let g = billing_batch::interactive();
        assert_eq!(busy_parallel(4, 2, window, 0.0), 2);
        assert_eq!(busy_parallel(2, 1, window, 0.0), 1);
        drop(g);
        assert_eq!(busy_parallel(4, 2, window, 0.0), 2, "recent");
        assert_eq!(busy_parallel(1, 2, window, 0.0), 1, "never more than asked");
    }

    #[test]
    fn batches_in_flight_together_bill_different_issuers() {
        // 10,000 accounts whose vendors are spread over 100 resellers.
        let due: Vec<(AccountId, i64)> = (0..10_000)
            .map(|i| (AccountId(1000 + i), 2 + (i * 7) % 100))
            .collect();
        let vendor: HashMap<AccountId, i64> = due.iter().copied().collect();
        let (order, batches) = lay_out(due.clone(), 250, 3);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            due.iter().map(|d| d.0).collect::<Vec<_>>(),
            "every account once"
        );
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), order.len());
        assert!(batches.windows(2).all(|w| w[0].end == w[1].start));
        // (The last stretch is short.)
        assert!(
            batches[..batches.len() - 3]
                .iter()
                .all(|b| (200..=300).contains(&b.len())),
            "about 250 accounts each"
        );
        for w in batches.windows(3) {
            let issuers: Vec<HashSet<i64>> = w
                .iter()
                .map(|b| order[b.clone()].iter().map(|a| vendor[a]).collect())
                .collect();
            assert!(
                issuers[0].is_disjoint(&issuers[1])
                    && issuers[1].is_disjoint(&issuers[2])
                    && issuers[0].is_disjoint(&issuers[2])
            );
        }
        // One lane: plain account order.
        let (order, batches) = lay_out(due.clone(), 500, 1);
        assert_eq!(order, due.iter().map(|d| d.0).collect::<Vec<_>>());
        assert_eq!(batches.len(), 20);
    }
}

//! Wholesale billing down the channel: what each reseller owes its vendor for the
//! recurring charges of the daily run, and the consolidated **tier invoices**.
//!
//! - **Recurring wholesale.** When the run bills a customer's subscription sold from a
//!   plan copy, every reseller of the copy's chain owes its vendor the vendor's price for
//!   the same period, resources and quantities: the period is billed again in memory
//!   with the vendor's copy as it is now ([`charges`]). The amounts are **consolidated**:
//!   one row per (run, billed day, plan priced, buyer), grown by every batch of the run
//!   with one upsert statement in the batch's transaction (`wholesale::record_recurring`;
//!   key `run:{run}:bill:{date}:plan:{plan}:wholesale:{buyer}`), so it is exactly-once
//!   with the BO orders and lines it sums, and a 1M-subscription run writes a few
//!   thousand rows instead of two million. The chains are read once per run for the
//!   plans a batch meets (one query per level of delegation, [`TierCache`]).
//! - **Tier invoices.** On a reseller's own billing day (its statement day, clamped at
//!   month end like its customers' periods: `calendar::statement_days_on`) the run
//!   issues one invoice per (vendor, reseller, currency) for every uninvoiced row it owes
//!   (rows of orders that passed the chain check, and the consolidated recurring rows),
//!   **one line per wholesale row**: per SO or CH order, and per plan and billing day
//!   for the recurring charges ("Plan X billed on D, 412 subscription periods"). The invoice is numbered in the vendor's sequence, due by
//!   the reseller's credit terms (`collections::date_by_terms`), and `document_id` is set
//!   on its rows in the same transaction; `invoice.issued` is emitted as for customer
//!   invoices. Resellers are taken [`TIER_CHUNK`] at a time, one read and one short write
//!   transaction each. Each line's charge key is `tier:` + the row's key under the
//!   unique index of invoice lines, so even two runs racing cannot bill a row twice; a
//!   crash loses only the chunk in flight, which the re-run of the day invoices.
//! - Refunds: a cancellation's refund gives each reseller of the chain a negative row
//!   (its share), which nets on its next tier invoice; when a vendor's rows come to
//!   nothing or less, no invoice is issued and the credit waits for the next one.
//! - A row is owed once: before invoicing it counts as pending exposure in the chain
//!   check (`Wholesale::chain_shortfall`), afterwards as the reseller's invoice balance.

use crate::billing_run::{RunError, SubBilling, bill_subscription};
use cascade_domain::billing::amounts::to_minor;
use cascade_domain::billing::calendar::{Span, statement_days_on};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::money::Currency;
use cascade_store::billing_batch::{self, InvoiceHead, KeyCheck, NewInvoice};
use cascade_store::documents::NewLine;
use cascade_store::subscriptions::Subscription;
use cascade_store::wholesale::{self, TierPlan, Uninvoiced};
use cascade_store::{Db, StoreResult};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Resellers invoiced per transaction. Small, because a chunk's uninvoiced rows are
/// read into memory: at 200 the 1M-subscription bench (2M rows over 1,000 resellers)
/// held ~400k rows at once and peaked at 1.2 GiB.
pub const TIER_CHUNK: i64 = 20;

/// What one reseller of a chain owes for a subscription's billing: per billed period
/// (the billing date of `SubBilling::periods`), in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierCharge {
    pub buyer: AccountId,
    pub seller: AccountId,
    /// The plan priced (the vendor's copy) and its name.
    pub plan_id: i64,
    pub plan_name: Arc<str>,
    pub per_period: BTreeMap<NaiveDate, i64>,
}

/// Plan chains by plan id, read once per run.
#[derive(Default)]
pub struct TierCache(Mutex<HashMap<i64, Arc<Vec<TierPlan>>>>);

impl TierCache {
    pub fn get(&self, plan: i64) -> Option<Arc<Vec<TierPlan>>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&plan)
            .cloned()
    }

    /// Read the chains of the plans not cached yet (one query per delegation level).
    pub async fn load(&self, db: &Db, plans: impl Iterator<Item = i64>) -> StoreResult<()> {
        let mut missing: Vec<i64> = plans.filter(|p| self.get(*p).is_none()).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let chains = db.wholesale().plan_chains(&missing).await?;
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (id, tiers) in chains {
            cache.insert(id, Arc::new(tiers));
        }
        Ok(())
    }
}

/// What each tier of `tiers` owes for `billed` (the customer's billing of `sub` on
/// `today`): the same periods billed with the tier's plan (its vendor's copy, now).
pub fn charges(
    sub: &Subscription,
    tiers: &[TierPlan],
    statement_day: u32,
    usage: &dyn Fn(Span) -> BTreeMap<String, i64>,
    today: NaiveDate,
    billed: &SubBilling,
    currency: Currency,
) -> Vec<TierCharge> {
    if billed.periods.is_empty() {
        return vec![];
    }
    let mut out = Vec::with_capacity(tiers.len());
    for t in tiers {
        let b = match bill_subscription(sub, &t.content, statement_day, usage, today) {
            Ok(b) => b,
            Err(e) => {
                // A copy without the subscription's period: nothing can be priced.
                tracing::error!(subscription = sub.id, plan = t.plan_id, error = %e, "wholesale price not computable");
                continue;
            }
        };
        let mut per_period = BTreeMap::new();
        for (i, (on, start)) in b.periods.iter().enumerate() {
            let end = b.periods.get(i + 1).map_or(b.lines.len(), |p| p.1);
            let amount: i64 = b.lines[*start..end]
                .iter()
                .map(|l| to_minor(l.amount, currency).minor)
                .sum();
            per_period.insert(*on, amount);
        }
        out.push(TierCharge {
            buyer: t.buyer,
            seller: t.seller,
            plan_id: t.plan_id,
            plan_name: t.name.clone(),
            per_period,
        });
    }
    out
}

/// What the tier-invoicing step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierReport {
    pub invoices: u64,
    pub rows: u64,
    pub events: u64,
    /// Chunks of resellers that failed (logged; their rows stay uninvoiced).
    pub chunks_failed: u64,
}

/// Issue the tier invoices due on `today` (see the module doc). `crash_in_chunk`: the
/// chunk (0-based) whose transaction is dropped before its commit (tests).
pub async fn invoice_tiers(
    db: &Db,
    today: NaiveDate,
    now: Timestamp,
    chunk: i64,
    crash_in_chunk: Option<u64>,
) -> Result<TierReport, RunError> {
    let days = statement_days_on(today);
    // Everything owed up to the end of the run date, or up to now when re-running a past
    // date (its own BO rows are written now): nothing owed is left for a month.
    let until = today
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Timestamp(t.and_utc().timestamp_micros()))
        .unwrap_or(now)
        .max(Timestamp(now.0 + 1));
    let mut report = TierReport::default();
    // The resellers due: one read for the whole run, then invoiced a chunk at a time.
    let due = db
        .wholesale()
        .tier_invoice_due(days, until, 0, i64::MAX)
        .await?;
    for (n, buyers) in due.chunks(chunk.max(1) as usize).enumerate() {
        let crash = crash_in_chunk == Some(n as u64);
        match invoice_chunk(db, buyers, until, today, now, crash).await {
            Ok(r) => {
                report.invoices += r.invoices;
                report.rows += r.rows;
                report.events += r.events;
            }
            Err(RunError::Crash) => return Err(RunError::Crash),
            Err(RunError::Store(e)) => {
                report.chunks_failed += 1;
                tracing::warn!(error = %e, resellers = buyers.len(), "tier invoices failed for a chunk of resellers; their rows stay uninvoiced");
            }
        }
    }
    Ok(report)
}

/// Group rows into one invoice per (vendor, reseller, currency), one line per row.
pub fn tier_invoices(rows: &[Uninvoiced]) -> StoreResult<Vec<(NewInvoice, Vec<i64>)>> {
    /// (seller, buyer, currency) → (lines, row ids).
    type Groups<'a> = BTreeMap<(i64, i64, &'a str), (Vec<NewLine>, Vec<i64>)>;
    let mut groups: Groups<'_> = BTreeMap::new();
    for r in rows {
        let cur = Currency::parse(&r.currency)
            .map_err(|e| cascade_store::StoreError::Corrupt(e.message))?;
        let scale = 10_i64.pow(6u32.saturating_sub(cur.minor_digits()));
        let (lines, ids) = groups
            .entry((r.seller.0, r.buyer.0, r.currency.as_str()))
            .or_default();
        let what = match (r.order_id, &r.order_type, r.subscription_id) {
            (Some(o), Some(t), Some(s)) => {
                format!("Wholesale: {t} order #{o} (subscription #{s})")
            }
            (Some(o), Some(t), None) => format!("Wholesale: {t} order #{o}"),
            _ => format!(
                "Wholesale: {}, {} subscription period{}",
                r.description.as_deref().unwrap_or("recurring charges"),
                r.periods,
                if r.periods == 1 { "" } else { "s" }
            ),
        };
        lines.push(NewLine {
            subscription_id: None,
            kind: "wholesale".into(),
            description: what,
            quantity: 1,
            unit_price_micro: r.amount_minor.saturating_mul(scale),
            amount_minor: r.amount_minor,
            period_start: None,
            period_end: None,
            charge_key: Some(format!("tier:{}", r.charge_key)),
        });
        ids.push(r.id);
    }
    Ok(groups
        .into_iter()
        // Refunds (negative rows) net against what is owed; a vendor whose rows come to
        // nothing or less issues no invoice, and the credit waits for the next one.
        .filter(|(_, (lines, _))| lines.iter().map(|l| l.amount_minor).sum::<i64>() > 0)
        .map(|((seller, buyer, currency), (lines, ids))| {
            (
                NewInvoice {
                    issuer: AccountId(seller),
                    account: AccountId(buyer),
                    currency: currency.to_string(),
                    lines,
                },
                ids,
            )
        })
        .collect())
}

async fn invoice_chunk(
    db: &Db,
    buyers: &[AccountId],
    until: Timestamp,
    today: NaiveDate,
    now: Timestamp,
    crash: bool,
) -> Result<TierReport, RunError> {
    let day = today.format("%Y-%m-%d").to_string();
    let due = (today + chrono::Duration::days(14))
        .format("%Y-%m-%d")
        .to_string();
    let mut tx = db.begin().await?;
    let rows = wholesale::uninvoiced_in(&mut tx, buyers, until).await?;
    let grouped = tier_invoices(&rows)?;
    let invoices: Vec<&NewInvoice> = grouped.iter().map(|g| &g.0).collect();
    let head = InvoiceHead {
        issue_date: &day,
        due_date: Some(&due),
        tax_bp: 0,
    };
    let issued = billing_batch::issue_invoices(&mut tx, &head, &invoices, now, KeyCheck::Before)
        .await?
        .ok_or_else(|| {
            cascade_store::StoreError::Corrupt("charge keys were checked before issuing".into())
        })?;
    let mut pairs = Vec::with_capacity(rows.len());
    let mut dated = Vec::new();
    for ((inv, ids), doc) in grouped.iter().zip(&issued) {
        let Some(doc) = doc else { continue };
        dated.push((doc.id, inv.account));
        // Lines billed before (a racing run) are not on this invoice; their rows are
        // marked by whoever wrote them.
        pairs.extend(doc.lines.iter().map(|i| (ids[*i], doc.id)));
    }
    let marked = wholesale::mark_invoiced(&mut tx, &pairs).await?;
    cascade_store::collections::date_by_terms(&mut tx, &dated, today).await?;
    let doc_ids: Vec<i64> = dated.iter().map(|d| d.0).collect();
    let events = billing_batch::emit_invoices_issued(&mut tx, &doc_ids, now).await?;
    if crash {
        drop(tx);
        return Err(RunError::Crash);
    }
    tx.commit().await?;
    Ok(TierReport {
        invoices: doc_ids.len() as u64,
        rows: marked,
        events,
        chunks_failed: 0,
    })
}

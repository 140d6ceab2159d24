//! Wholesale transactions and the money checks of the order flow.
//!
//! When a customer of an L2 reseller buys, the L2 owes its vendor (the L1) the L1's
//! price and the L1 owes the provider the provider's price, each **fixed at the time of
//! purchase**: one `wholesale_transactions` row per reseller in the chain, written in the
//! same transaction as the order. The amount is stored, never recomputed, so a later
//! price change on any copy cannot reach an order already placed. Each row carries a
//! unique `charge_key` (`order:{id}:wholesale:{buyer}`): recording it twice writes one
//! row. Invoicing the rows to each tier (setting `document_id`) is the daily run's job.
//!
//! The chain check ([`Wholesale::chain_shortfall`]) runs before provisioning: every
//! reseller must have available balance or credit for what it owes on this order. Its
//! exposure is its document balance plus the wholesale amounts it owes on other orders
//! that already passed the check and are not invoiced yet; its credit is the
//! `credit_limit_minor` of its customer class (`NULL`, or no class: unlimited for now).
//! Two checks racing on PostgreSQL can both pass for the last unit of credit; the
//! amounts are small relative to limits and the daily credit-terms check catches it.
//!
//! The balance and open-credit reads here run **inside the caller's transaction**
//! (unlike [`crate::documents::Documents::balance`], which reads the pool), because the
//! payment gate decides on documents written moments earlier in that transaction.

use crate::documents::{Document, Documents};
use crate::{Db, StoreResult, Tx, on_db, on_tx};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use std::collections::HashMap;

/// One reseller's debt to its vendor for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholesaleTx {
    pub id: i64,
    /// None for the daily run's consolidated recurring rows (see [`RecurringWholesale`]).
    pub order_id: Option<i64>,
    pub buyer_account_id: AccountId,
    pub seller_account_id: AccountId,
    pub currency: String,
    pub amount_minor: i64,
    pub charge_key: String,
    pub document_id: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewWholesale {
    pub order_id: i64,
    pub buyer: AccountId,
    pub seller: AccountId,
    pub currency: String,
    pub amount_minor: i64,
}

/// A reseller that cannot pay for its part of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub reseller: AccountId,
    pub reseller_name: String,
    /// What it owes on this order.
    pub needed_minor: i64,
    /// Credit limit less exposure (may be negative).
    pub available_minor: i64,
}

impl Shortfall {
    /// The reason shown on the order.
    pub fn reason(&self) -> String {
        format!(
            "reseller {} (#{}) lacks balance or credit",
            self.reseller_name, self.reseller.0
        )
    }
}

/// The billing terms of an account that the order flow needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountTerms {
    /// Day of the month monthly billing periods start on (1–31, clamped at month end).
    pub statement_day: u32,
    /// Days from an invoice's issue to its due date (customer class, else 14).
    pub due_days: i64,
    /// Credit limit of the account's customer class; `None` = unlimited.
    pub credit_limit_minor: Option<i64>,
}

type Row = (
    i64,
    Option<i64>,
    i64,
    i64,
    String,
    i64,
    String,
    Option<i64>,
    i64,
);
const COLUMNS: &str = "id, order_id, buyer_account_id, seller_account_id, currency, amount_minor, charge_key, document_id, created_at";

fn from_row(r: Row) -> WholesaleTx {
    WholesaleTx {
        id: r.0,
        order_id: r.1,
        buyer_account_id: AccountId(r.2),
        seller_account_id: AccountId(r.3),
        currency: r.4,
        amount_minor: r.5,
        charge_key: r.6,
        document_id: r.7,
        created_at: Timestamp(r.8),
    }
}

pub struct Wholesale<'a>(pub &'a Db);

impl Db {
    pub fn wholesale(&self) -> Wholesale<'_> {
        Wholesale(self)
    }
}

impl Wholesale<'_> {
    /// The exactly-once key of `buyer`'s debt for `order`.
    pub fn charge_key(order_id: i64, buyer: AccountId) -> String {
        format!("order:{order_id}:wholesale:{}", buyer.0)
    }

    /// Record a debt; a second record with the same key writes nothing (`false`).
    pub async fn record(tx: &mut Tx, w: &NewWholesale, now: Timestamp) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query(
            "INSERT INTO wholesale_transactions (order_id, buyer_account_id, seller_account_id, currency, amount_minor, charge_key, document_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7) ON CONFLICT (charge_key) DO NOTHING")
            .bind(w.order_id).bind(w.buyer.0).bind(w.seller.0).bind(&w.currency).bind(w.amount_minor)
            .bind(Self::charge_key(w.order_id, w.buyer)).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// The rows of an order, nearest reseller first (the order they were written in).
    pub async fn of_order(&self, order_id: i64) -> StoreResult<Vec<WholesaleTx>> {
        let sql =
            format!("SELECT {COLUMNS} FROM wholesale_transactions WHERE order_id = $1 ORDER BY id");
        let rows: Vec<Row> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(order_id).fetch_all(p).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    pub async fn of_order_in(tx: &mut Tx, order_id: i64) -> StoreResult<Vec<WholesaleTx>> {
        let sql =
            format!("SELECT {COLUMNS} FROM wholesale_transactions WHERE order_id = $1 ORDER BY id");
        let rows: Vec<Row> =
            on_tx!(tx, c => sqlx::query_as(&sql).bind(order_id).fetch_all(c).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// [`account_terms`] outside a transaction.
    pub async fn account_terms(&self, account: AccountId) -> StoreResult<AccountTerms> {
        let r: (i32, Option<i32>, Option<i64>) =
            on_db!(self.0, p => sqlx::query_as(TERMS_SQL).bind(account.0).fetch_one(p).await)?;
        Ok(terms_from(r))
    }

    /// The first reseller of the order's chain (nearest the customer first) that lacks
    /// available balance or credit for its wholesale amount; `None` when all can pay.
    pub async fn chain_shortfall(tx: &mut Tx, order_id: i64) -> StoreResult<Option<Shortfall>> {
        for w in Self::of_order_in(tx, order_id).await? {
            let terms = account_terms(tx, w.buyer_account_id).await?;
            let Some(limit) = terms.credit_limit_minor else {
                continue;
            };
            let balance = balance_in(tx, w.buyer_account_id, &w.currency).await?;
            let (pending,): (Option<i64>,) = on_tx!(tx, c => sqlx::query_as(
                "SELECT CAST(SUM(w.amount_minor) AS BIGINT) FROM wholesale_transactions w LEFT JOIN orders o ON o.id = w.order_id
                 WHERE w.buyer_account_id = $1 AND w.currency = $2 AND w.document_id IS NULL
                   AND (w.order_id IS NULL OR (w.order_id <> $3 AND o.status IN ('provisioning', 'completed', 'failed')))")
                .bind(w.buyer_account_id.0).bind(&w.currency).bind(order_id).fetch_one(c).await)?;
            let available = limit - balance - pending.unwrap_or(0);
            if available < w.amount_minor {
                let (name,): (String,) = on_tx!(tx, c => sqlx::query_as("SELECT name FROM accounts WHERE id = $1")
                    .bind(w.buyer_account_id.0).fetch_one(c).await)?;
                return Ok(Some(Shortfall {
                    reseller: w.buyer_account_id,
                    reseller_name: name,
                    needed_minor: w.amount_minor,
                    available_minor: available,
                }));
            }
        }
        Ok(None)
    }
}

/// An account's statement day, due days and credit limit.
pub async fn account_terms(tx: &mut Tx, account: AccountId) -> StoreResult<AccountTerms> {
    let r: (i32, Option<i32>, Option<i64>) =
        on_tx!(tx, c => sqlx::query_as(TERMS_SQL).bind(account.0).fetch_one(c).await)?;
    Ok(terms_from(r))
}

const TERMS_SQL: &str = "SELECT a.statement_day, c.due_days, c.credit_limit_minor FROM accounts a
     LEFT JOIN customer_classes c ON c.id = a.customer_class_id WHERE a.id = $1";

fn terms_from((day, due, limit): (i32, Option<i32>, Option<i64>)) -> AccountTerms {
    AccountTerms {
        statement_day: day.clamp(1, 31) as u32,
        due_days: i64::from(due.unwrap_or(14).max(0)),
        credit_limit_minor: limit,
    }
}

/// [`Documents::balance`] inside a transaction: what the account owes less what it has
/// open to apply, in `currency`. Negative = credit.
pub async fn balance_in(tx: &mut Tx, account: AccountId, currency: &str) -> StoreResult<i64> {
    let (owed, credit): (Option<i64>, Option<i64>) = on_tx!(tx, c => sqlx::query_as(
        "SELECT CAST(SUM(CASE WHEN kind IN ('invoice', 'debit_memo', 'refund') THEN open_minor ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN kind IN ('payment', 'credit_memo') THEN open_minor ELSE 0 END) AS BIGINT)
         FROM documents WHERE account_id = $1 AND currency = $2 AND status = 'issued'")
        .bind(account.0).bind(currency).fetch_one(c).await)?;
    Ok(owed.unwrap_or(0) - credit.unwrap_or(0))
}

/// Apply the account's open payments and credit memos (oldest first) to `target` (an
/// invoice or debit memo of the same account and currency) until it is settled or the
/// credit runs out. Returns the amount applied.
pub async fn apply_credits(tx: &mut Tx, target: &Document, now: Timestamp) -> StoreResult<i64> {
    let target = Documents::get_in(tx, target.id).await?;
    let mut left = target.open_minor;
    if left <= 0 {
        return Ok(0);
    }
    let ids: Vec<(i64,)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT id FROM documents WHERE account_id = $1 AND currency = $2 AND kind IN ('payment', 'credit_memo')
           AND status = 'issued' AND open_minor > 0 ORDER BY id")
        .bind(target.account_id.0).bind(&target.currency).fetch_all(c).await)?;
    let mut applied = 0;
    for (id,) in ids {
        if left == 0 {
            break;
        }
        let from = Documents::get_in(tx, id).await?;
        let amount = from.open_minor.min(left);
        if amount <= 0 {
            continue;
        }
        Documents::allocate(tx, &from, &target, amount, now).await?;
        left -= amount;
        applied += amount;
    }
    Ok(applied)
}

/// Apply an open credit memo or payment to the account's open invoices and debit memos
/// in its currency: the documents in `prefer` first (e.g. the invoice a refund gives
/// back), then the oldest. Returns the amount applied.
pub async fn apply_credit_to_open(
    tx: &mut Tx,
    credit: &Document,
    prefer: &[i64],
    now: Timestamp,
) -> StoreResult<i64> {
    let credit = Documents::get_in(tx, credit.id).await?;
    let mut left = credit.open_minor;
    let rows: Vec<(i64,)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT id FROM documents WHERE account_id = $1 AND currency = $2 AND kind IN ('invoice', 'debit_memo')
           AND status = 'issued' AND open_minor > 0 ORDER BY id")
        .bind(credit.account_id.0).bind(&credit.currency).fetch_all(c).await)?;
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|r| r.0)
        .filter(|id| prefer.contains(id))
        .collect();
    ids.extend(rows.iter().map(|r| r.0).filter(|id| !prefer.contains(id)));
    let mut applied = 0;
    for id in ids {
        if left <= 0 {
            break;
        }
        let to = Documents::get_in(tx, id).await?;
        let amount = to.open_minor.min(left);
        if amount <= 0 {
            continue;
        }
        Documents::allocate(tx, &credit, &to, amount, now).await?;
        left -= amount;
        applied += amount;
    }
    Ok(applied)
}

// ---------------------------------------------------------------------------------------
// Recurring charges, plan chains and tier invoices (the daily run).

/// Rows that count: the daily run's recurring rows (no order), and rows of orders that
/// passed the chain check (or, for BO orders, needed none). The chain check's exposure
/// and the tier invoices read the same set, so a row is owed exactly once: as pending
/// exposure before it is invoiced, as an invoice balance after. `w` is the row, `o` its
/// order (LEFT JOIN).
const PASSED: &str = "(w.order_id IS NULL OR o.status IN ('provisioning', 'completed', 'failed'))";

fn encode<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v)
        .map_err(|e| crate::StoreError::Corrupt(format!("encoding wholesale rows: {e}")))
}

/// What a reseller owes for the recurring charges of one plan billed on one day by one
/// billing run, consolidated: one row per (run, billed day, plan, buyer), whose amount
/// and `periods` grow with every batch of the run that bills such subscriptions
/// ([`record_recurring`], an upsert in the batch's transaction, so exactly once with the
/// BO orders and lines it sums).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurringWholesale {
    pub buyer: AccountId,
    pub seller: AccountId,
    pub currency: String,
    /// The plan priced: the vendor's copy.
    pub plan_id: i64,
    pub billed_on: String,
    pub amount_minor: i64,
    /// Subscription periods summed.
    pub periods: i64,
    /// What the tier invoice line says.
    pub description: String,
    pub charge_key: String,
}

/// One tier above a plan copy: `buyer` (the copy's owner) owes `seller` (the owner of the
/// copy's parent) the parent's price; `content` is the parent as it is now.
#[derive(Debug, Clone)]
pub struct TierPlan {
    pub buyer: AccountId,
    pub seller: AccountId,
    pub plan_id: i64,
    pub content: cascade_domain::catalog::plan::PlanContent,
    /// The parent's name in its default language.
    pub name: std::sync::Arc<str>,
}

/// A wholesale row not invoiced yet, with what its invoice line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uninvoiced {
    pub id: i64,
    /// The SO/CH order; none for a consolidated recurring row.
    pub order_id: Option<i64>,
    pub order_type: Option<String>,
    pub subscription_id: Option<i64>,
    pub buyer: AccountId,
    pub seller: AccountId,
    pub currency: String,
    pub amount_minor: i64,
    pub charge_key: String,
    pub created_at: Timestamp,
    /// Recurring rows: the plan priced, the day billed, subscription periods summed and
    /// the line's text.
    pub plan_id: Option<i64>,
    pub billed_on: Option<String>,
    pub periods: i64,
    pub description: Option<String>,
}

#[derive(sqlx::FromRow)]
struct UninvoicedRow {
    id: i64,
    order_id: Option<i64>,
    order_type: Option<String>,
    subscription_id: Option<i64>,
    buyer_account_id: i64,
    seller_account_id: i64,
    currency: String,
    amount_minor: i64,
    charge_key: String,
    created_at: i64,
    plan_id: Option<i64>,
    billed_on: Option<String>,
    periods: i64,
    description: Option<String>,
}

fn uninvoiced_from(r: UninvoicedRow) -> Uninvoiced {
    Uninvoiced {
        id: r.id,
        order_id: r.order_id,
        order_type: r.order_type,
        subscription_id: r.subscription_id,
        buyer: AccountId(r.buyer_account_id),
        seller: AccountId(r.seller_account_id),
        currency: r.currency,
        amount_minor: r.amount_minor,
        charge_key: r.charge_key,
        created_at: Timestamp(r.created_at),
        plan_id: r.plan_id,
        billed_on: r.billed_on,
        periods: r.periods,
        description: r.description,
    }
}

const UNINVOICED_SQL: &str = "SELECT w.id, w.order_id, o.order_type, o.subscription_id, w.buyer_account_id, w.seller_account_id,
        w.currency, w.amount_minor, w.charge_key, w.created_at, w.plan_id, w.billed_on, w.periods, w.description
     FROM wholesale_transactions w LEFT JOIN orders o ON o.id = w.order_id";

/// A list of ids for an `IN (…)`: integers formatted here, nothing from outside.
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl Wholesale<'_> {
    /// The key of `buyer`'s consolidated row for `plan` billed on `billed_on` by billing
    /// run `run` ([`RecurringWholesale`]).
    pub fn recurring_key(run: i64, billed_on: &str, plan: i64, buyer: AccountId) -> String {
        format!(
            "run:{run}:bill:{billed_on}:plan:{plan}:wholesale:{}",
            buyer.0
        )
    }

    /// What `buyer` owes and has not been invoiced yet (what its next tier invoice will
    /// bill), oldest first: rows of orders that passed the chain check.
    pub async fn uninvoiced_of(&self, buyer: AccountId) -> StoreResult<Vec<Uninvoiced>> {
        let sql = format!(
            "{UNINVOICED_SQL} WHERE w.buyer_account_id = $1 AND w.document_id IS NULL AND {PASSED} ORDER BY w.id"
        );
        let rows: Vec<UninvoicedRow> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(buyer.0).fetch_all(p).await)?;
        Ok(rows.into_iter().map(uninvoiced_from).collect())
    }

    /// The rows of a tier invoice.
    pub async fn of_document(&self, document_id: i64) -> StoreResult<Vec<WholesaleTx>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM wholesale_transactions WHERE document_id = $1 ORDER BY id"
        );
        let rows: Vec<Row> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(document_id).fetch_all(p).await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// For each plan, the tiers above it, nearest first (empty for an original): walks
    /// `parent_plan_id` with one query per level of delegation for the whole set.
    pub async fn plan_chains(&self, plan_ids: &[i64]) -> StoreResult<HashMap<i64, Vec<TierPlan>>> {
        type PlanRow = (i64, i64, Option<i64>, String);
        let mut known: HashMap<i64, (AccountId, Option<i64>, String)> = HashMap::new();
        let mut wanted: Vec<i64> = plan_ids.to_vec();
        for _ in 0..32 {
            wanted.retain(|id| !known.contains_key(id));
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for chunk in wanted.chunks(1000) {
                let sql = format!(
                    "SELECT id, owner_account_id, parent_plan_id, content FROM plans WHERE id IN ({})",
                    id_list(chunk)
                );
                let rows: Vec<PlanRow> =
                    on_db!(self.0, p => sqlx::query_as(&sql).fetch_all(p).await)?;
                for (id, owner, parent, content) in rows {
                    next.extend(parent);
                    known.insert(id, (AccountId(owner), parent, content));
                }
            }
            wanted = next;
        }
        let mut parsed: HashMap<i64, cascade_domain::catalog::plan::PlanContent> = HashMap::new();
        let mut out = HashMap::new();
        for &id in plan_ids {
            let mut tiers = Vec::new();
            let mut current = id;
            while let Some((owner, Some(parent))) = known.get(&current).map(|k| (k.0, k.1)) {
                let Some((seller, _, content)) = known.get(&parent) else {
                    break;
                };
                if tiers.len() > 32 {
                    return Err(crate::StoreError::Corrupt(format!(
                        "plan {id}: delegation chain does not end"
                    )));
                }
                let content = match parsed.get(&parent) {
                    Some(c) => c.clone(),
                    None => {
                        let c: cascade_domain::catalog::plan::PlanContent =
                            serde_json::from_str(content).map_err(|e| {
                                crate::StoreError::Corrupt(format!("plan {parent}: content: {e}"))
                            })?;
                        parsed.insert(parent, c.clone());
                        c
                    }
                };
                let name = std::sync::Arc::from(content.name.get(&content.name.default));
                tiers.push(TierPlan {
                    buyer: owner,
                    seller: *seller,
                    plan_id: parent,
                    content,
                    name,
                });
                current = parent;
            }
            out.insert(id, tiers);
        }
        Ok(out)
    }

    /// Resellers (after `after`, in id order, at most `limit`) whose statement day is
    /// within `days` (inclusive) and who owe uninvoiced rows created before `until`.
    pub async fn tier_invoice_due(
        &self,
        days: (u32, u32),
        until: Timestamp,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AccountId>> {
        let sql = format!(
            "SELECT DISTINCT w.buyer_account_id FROM wholesale_transactions w
               JOIN accounts a ON a.id = w.buyer_account_id LEFT JOIN orders o ON o.id = w.order_id
             WHERE w.document_id IS NULL AND a.statement_day BETWEEN $1 AND $2 AND w.created_at < $3
               AND w.buyer_account_id > $4 AND {PASSED}
             ORDER BY w.buyer_account_id LIMIT $5"
        );
        let rows: Vec<(i64,)> = on_db!(self.0, p => sqlx::query_as(&sql)
            .bind(days.0 as i32).bind(days.1 as i32).bind(until.0).bind(after).bind(limit)
            .fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| AccountId(r.0)).collect())
    }
}

/// Add the run's recurring debts to their consolidated rows (an upsert per key, one
/// statement; `rows` must have distinct keys, in an order every caller shares so that
/// concurrent batches lock rows in the same order). A row invoiced already is never added to: that fails
/// with a conflict (two runs racing), which rolls the caller's batch back.
/// Returns the rows inserted or grown.
pub async fn record_recurring(
    tx: &mut Tx,
    rows: &[RecurringWholesale],
    now: Timestamp,
) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = match tx {
        Tx::Postgres(t) => sqlx::query(
            "INSERT INTO wholesale_transactions AS w (order_id, buyer_account_id, seller_account_id, currency, amount_minor, charge_key, document_id, created_at, plan_id, billed_on, periods, description)
             SELECT NULL, v.b, v.s, v.c, v.a, v.k, NULL, $10, v.p, v.d, v.n, v.t
             FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::int8[], $7::text[], $8::int8[], $9::text[]) AS v(b, s, c, a, k, p, d, n, t)
             ON CONFLICT (charge_key) DO UPDATE SET amount_minor = w.amount_minor + EXCLUDED.amount_minor, periods = w.periods + EXCLUDED.periods
             WHERE w.document_id IS NULL",
        )
        .bind(rows.iter().map(|r| r.buyer.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.seller.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.currency.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.amount_minor).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.charge_key.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.plan_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.billed_on.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.periods).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.description.as_str()).collect::<Vec<_>>())
        .bind(now.0)
        .execute(&mut **t)
        .await?
        .rows_affected(),
        Tx::Sqlite(t) => {
            type V<'a> = (i64, i64, &'a str, i64, &'a str, i64, &'a str, i64, &'a str);
            let v: Vec<V<'_>> = rows
                .iter()
                .map(|r| {
                    (
                        r.buyer.0,
                        r.seller.0,
                        r.currency.as_str(),
                        r.amount_minor,
                        r.charge_key.as_str(),
                        r.plan_id,
                        r.billed_on.as_str(),
                        r.periods,
                        r.description.as_str(),
                    )
                })
                .collect();
            // `WHERE true` settles the parsing ambiguity of INSERT … SELECT … ON CONFLICT.
            sqlx::query(
                "INSERT INTO wholesale_transactions (order_id, buyer_account_id, seller_account_id, currency, amount_minor, charge_key, document_id, created_at, plan_id, billed_on, periods, description)
                 SELECT NULL, v.value ->> 0, v.value ->> 1, v.value ->> 2, v.value ->> 3, v.value ->> 4, NULL, $2, v.value ->> 5, v.value ->> 6, v.value ->> 7, v.value ->> 8
                 FROM json_each($1) AS v WHERE true
                 ON CONFLICT (charge_key) DO UPDATE SET amount_minor = wholesale_transactions.amount_minor + excluded.amount_minor,
                    periods = wholesale_transactions.periods + excluded.periods
                 WHERE wholesale_transactions.document_id IS NULL",
            )
            .bind(encode(&v)?)
            .bind(now.0)
            .execute(&mut **t)
            .await?
            .rows_affected()
        }
    };
    if n != rows.len() as u64 {
        return Err(crate::StoreError::Conflict {
            what: format!(
                "{} consolidated wholesale rows were invoiced while their billing run was still adding to them",
                rows.len() as u64 - n
            ),
        });
    }
    Ok(n)
}

/// The uninvoiced rows (of orders that passed the check) `buyers` owe, created before
/// `until`, in buyer and id order. One query for the set.
pub async fn uninvoiced_in(
    tx: &mut Tx,
    buyers: &[AccountId],
    until: Timestamp,
) -> StoreResult<Vec<Uninvoiced>> {
    if buyers.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<i64> = buyers.iter().map(|b| b.0).collect();
    let sql = format!(
        "{UNINVOICED_SQL} WHERE w.buyer_account_id IN ({}) AND w.document_id IS NULL AND w.created_at < $1
           AND {PASSED} ORDER BY w.buyer_account_id, w.id",
        id_list(&ids)
    );
    let rows: Vec<UninvoicedRow> =
        on_tx!(tx, c => sqlx::query_as(&sql).bind(until.0).fetch_all(c).await)?;
    Ok(rows.into_iter().map(uninvoiced_from).collect())
}

/// Set `document_id` on rows still uninvoiced, with one statement: (row id, document id).
/// Returns the rows marked.
pub async fn mark_invoiced(tx: &mut Tx, pairs: &[(i64, i64)]) -> StoreResult<u64> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let n = match tx {
        Tx::Postgres(t) => sqlx::query(
            "UPDATE wholesale_transactions AS w SET document_id = v.doc
             FROM unnest($1::int8[], $2::int8[]) AS v(id, doc)
             WHERE w.id = v.id AND w.document_id IS NULL",
        )
        .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
        .execute(&mut **t)
        .await?
        .rows_affected(),
        Tx::Sqlite(t) => {
            // One statement per document with an `IN (json_each)` list: an `UPDATE … FROM
            // json_each` join let SQLite's planner scan every uninvoiced row and re-parse the
            // JSON for each (seen: a tier step of 40,000 rows running for minutes).
            let mut by_doc: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
            for (row, doc) in pairs {
                by_doc.entry(*doc).or_default().push(*row);
            }
            let mut n = 0;
            for (doc, rows) in by_doc {
                n += sqlx::query(
                    "UPDATE wholesale_transactions SET document_id = $1
                     WHERE id IN (SELECT value FROM json_each($2)) AND document_id IS NULL",
                )
                .bind(doc)
                .bind(encode(&rows)?)
                .execute(&mut **t)
                .await?
                .rows_affected();
            }
            n
        }
    };
    Ok(n)
}

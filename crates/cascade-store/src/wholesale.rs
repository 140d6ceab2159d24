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

/// One reseller's debt to its vendor for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholesaleTx {
    pub id: i64,
    pub order_id: i64,
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

type Row = (i64, i64, i64, i64, String, i64, String, Option<i64>, i64);
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
                "SELECT CAST(SUM(w.amount_minor) AS BIGINT) FROM wholesale_transactions w JOIN orders o ON o.id = w.order_id
                 WHERE w.buyer_account_id = $1 AND w.currency = $2 AND w.document_id IS NULL AND w.order_id <> $3
                   AND o.status IN ('provisioning', 'completed', 'failed')")
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

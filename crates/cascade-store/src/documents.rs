//! Money documents: invoices, payments, credit memos, debit memos, refunds.
//!
//! Every document has a total and an open balance; an account's balance is derived from
//! its documents, never stored. Issued documents are immutable except for their open
//! balance, which only allocations move. Invoice lines carry the charge key of what they
//! bill under a unique index: writing the same charge twice is impossible, which makes
//! billing runs safe to re-run after a crash.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Invoice,
    Payment,
    CreditMemo,
    DebitMemo,
    Refund,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Invoice => "invoice",
            DocKind::Payment => "payment",
            DocKind::CreditMemo => "credit_memo",
            DocKind::DebitMemo => "debit_memo",
            DocKind::Refund => "refund",
        }
    }
    pub fn parse(s: &str) -> Option<DocKind> {
        [DocKind::Invoice, DocKind::Payment, DocKind::CreditMemo, DocKind::DebitMemo, DocKind::Refund].into_iter().find(|k| k.as_str() == s)
    }
    /// Documents that the account owes (their open balance is a debt).
    pub fn is_debit(self) -> bool {
        matches!(self, DocKind::Invoice | DocKind::DebitMemo | DocKind::Refund)
    }
    fn prefix(self) -> &'static str {
        match self {
            DocKind::Invoice => "INV",
            DocKind::Payment => "PAY",
            DocKind::CreditMemo => "CM",
            DocKind::DebitMemo => "DM",
            DocKind::Refund => "RF",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Document {
    pub id: i64,
    pub kind: DocKind,
    pub number: Option<String>,
    pub issuer_account_id: AccountId,
    pub account_id: AccountId,
    pub currency: String,
    pub status: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub open_minor: i64,
    pub issue_date: Option<String>,
    pub due_date: Option<String>,
    pub charge_date: Option<String>,
    pub method: Option<String>,
    pub external_ref: Option<String>,
    pub created_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    number: Option<String>,
    issuer_account_id: i64,
    account_id: i64,
    currency: String,
    status: String,
    subtotal_minor: i64,
    tax_minor: i64,
    total_minor: i64,
    open_minor: i64,
    issue_date: Option<String>,
    due_date: Option<String>,
    charge_date: Option<String>,
    method: Option<String>,
    external_ref: Option<String>,
    created_at: i64,
}

const COLUMNS: &str = "id, kind, number, issuer_account_id, account_id, currency, status, subtotal_minor, tax_minor, total_minor, open_minor, \
     issue_date, due_date, charge_date, method, external_ref, created_at";

impl TryFrom<Row> for Document {
    type Error = StoreError;
    fn try_from(r: Row) -> StoreResult<Document> {
        Ok(Document {
            id: r.id,
            kind: DocKind::parse(&r.kind).ok_or_else(|| StoreError::Corrupt(format!("document {}: kind {}", r.id, r.kind)))?,
            number: r.number,
            issuer_account_id: AccountId(r.issuer_account_id),
            account_id: AccountId(r.account_id),
            currency: r.currency,
            status: r.status,
            subtotal_minor: r.subtotal_minor,
            tax_minor: r.tax_minor,
            total_minor: r.total_minor,
            open_minor: r.open_minor,
            issue_date: r.issue_date,
            due_date: r.due_date,
            charge_date: r.charge_date,
            method: r.method,
            external_ref: r.external_ref,
            created_at: Timestamp(r.created_at),
        })
    }
}

/// A line to write on a new document.
#[derive(Debug, Clone)]
pub struct NewLine {
    pub subscription_id: Option<i64>,
    pub kind: String,
    pub description: String,
    pub quantity: i64,
    pub unit_price_micro: i64,
    pub amount_minor: i64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    /// Unique key of what the line bills; `None` for lines that need no guard.
    pub charge_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub id: i64,
    pub subscription_id: Option<i64>,
    pub kind: String,
    pub description: String,
    pub quantity: i64,
    pub unit_price_micro: i64,
    pub amount_minor: i64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
}

/// The head of a new issued document.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    pub kind: DocKind,
    pub issuer: AccountId,
    pub account: AccountId,
    pub currency: &'a str,
    pub issue_date: &'a str,
    pub due_date: Option<&'a str>,
    pub charge_date: Option<&'a str>,
    /// Tax rate in basis points (1/100 of a percent) applied to the subtotal.
    pub tax_bp: i64,
    pub method: Option<&'a str>,
    pub external_ref: Option<&'a str>,
    pub idem_key: Option<&'a str>,
}

pub struct Documents<'a>(pub &'a Db);

impl Db {
    pub fn documents(&self) -> Documents<'_> {
        Documents(self)
    }
}

/// Tax on a subtotal, in basis points, rounded half away from zero.
pub fn tax_of(subtotal: i64, bp: i64) -> i64 {
    let n = i128::from(subtotal) * i128::from(bp);
    let q = n / 10_000;
    let r = n % 10_000;
    (if 2 * r.abs() >= 10_000 { q + n.signum() } else { q }) as i64
}

impl Documents<'_> {
    /// The next number of `kind` for `issuer`: `INV-000042`. Sequential, gap-free within
    /// committed transactions (the counter row is locked by the update).
    pub async fn next_number(tx: &mut Tx, issuer: AccountId, kind: DocKind) -> StoreResult<String> {
        let (n,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO document_sequences (issuer_account_id, kind, next_number) VALUES ($1, $2, 1)
             ON CONFLICT (issuer_account_id, kind) DO UPDATE SET next_number = document_sequences.next_number + 1
             RETURNING next_number")
            .bind(issuer.0).bind(kind.as_str()).fetch_one(c).await)?;
        Ok(format!("{}-{:06}", kind.prefix(), n))
    }

    /// Write an issued document with its lines. Lines whose charge key was already billed
    /// are dropped; when nothing is left to bill, no document is written (`None`).
    pub async fn issue(tx: &mut Tx, head: &NewDocument<'_>, lines: &[NewLine], now: Timestamp) -> StoreResult<Option<(Document, usize)>> {
        let mut fresh = Vec::with_capacity(lines.len());
        for l in lines {
            if let Some(k) = &l.charge_key {
                let seen: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as("SELECT id FROM document_lines WHERE charge_key = $1").bind(k).fetch_optional(c).await)?;
                if seen.is_some() {
                    continue;
                }
            }
            fresh.push(l);
        }
        if fresh.is_empty() && !lines.is_empty() {
            return Ok(None);
        }
        let subtotal: i64 = fresh.iter().map(|l| l.amount_minor).sum();
        let tax = tax_of(subtotal, head.tax_bp);
        let total = subtotal + tax;
        let number = Self::next_number(tx, head.issuer, head.kind).await?;
        let sql = format!(
            "INSERT INTO documents (kind, number, issuer_account_id, account_id, currency, status, subtotal_minor, tax_minor, total_minor, open_minor,
                issue_date, due_date, charge_date, method, external_ref, idem_key, created_at, issued_at)
             VALUES ($1, $2, $3, $4, $5, 'issued', $6, $7, $8, $8, $9, $10, $11, $12, $13, $14, $15, $15) RETURNING {COLUMNS}"
        );
        let row: Row = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(head.kind.as_str()).bind(&number).bind(head.issuer.0).bind(head.account.0).bind(head.currency)
            .bind(subtotal).bind(tax).bind(total).bind(head.issue_date).bind(head.due_date).bind(head.charge_date)
            .bind(head.method).bind(head.external_ref).bind(head.idem_key).bind(now.0).fetch_one(c).await)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::Conflict { what: "a document with this idempotency key exists".into() },
            o => o,
        })?;
        let doc: Document = row.try_into()?;
        for part in fresh.chunks(500) {
            on_tx!(tx, c => {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO document_lines (document_id, subscription_id, line_kind, description, quantity, unit_price_micro, amount_minor, period_start, period_end, charge_key) ");
                qb.push_values(part, |mut b, l| {
                    b.push_bind(doc.id).push_bind(l.subscription_id).push_bind(l.kind.clone()).push_bind(l.description.clone())
                        .push_bind(l.quantity).push_bind(l.unit_price_micro).push_bind(l.amount_minor)
                        .push_bind(l.period_start.clone()).push_bind(l.period_end.clone()).push_bind(l.charge_key.clone());
                });
                qb.build().execute(&mut *c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(Some((doc, fresh.len())))
    }

    pub async fn get(&self, id: i64) -> StoreResult<Document> {
        let sql = format!("SELECT {COLUMNS} FROM documents WHERE id = $1");
        let r: Row = on_db!(self.0, p => sqlx::query_as(&sql).bind(id).fetch_one(p).await)?;
        r.try_into()
    }

    pub async fn get_in(tx: &mut Tx, id: i64) -> StoreResult<Document> {
        let sql = format!("SELECT {COLUMNS} FROM documents WHERE id = $1");
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_one(c).await)?;
        r.try_into()
    }

    pub async fn lines(&self, document: i64) -> StoreResult<Vec<Line>> {
        type R = (i64, Option<i64>, String, String, i64, i64, i64, Option<String>, Option<String>);
        let rows: Vec<R> = on_db!(self.0, p => sqlx::query_as(
            "SELECT id, subscription_id, line_kind, description, quantity, unit_price_micro, amount_minor, period_start, period_end
             FROM document_lines WHERE document_id = $1 ORDER BY id").bind(document).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|r| Line {
                id: r.0,
                subscription_id: r.1,
                kind: r.2,
                description: r.3,
                quantity: r.4,
                unit_price_micro: r.5,
                amount_minor: r.6,
                period_start: r.7,
                period_end: r.8,
            })
            .collect())
    }

    /// Documents of an account, newest first, optionally of one kind.
    pub async fn of_account(&self, account: AccountId, kind: Option<DocKind>, before: Option<i64>, limit: i64) -> StoreResult<Page<Document>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM documents WHERE account_id = $1 AND ($2 IS NULL OR kind = $2) AND id < $3 ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql)
            .bind(account.0).bind(kind.map(|k| k.as_str())).bind(before.unwrap_or(i64::MAX)).bind(limit + 1).fetch_all(p).await)?;
        let docs = rows.into_iter().map(Document::try_from).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(docs, limit, |d| d.id))
    }

    /// Apply `amount` of a payment or credit memo to an invoice or debit memo of the same
    /// account and currency, within both open balances. Both open balances move in the
    /// same transaction as the allocation row, so the books always balance.
    pub async fn allocate(tx: &mut Tx, from: &Document, to: &Document, amount: i64, now: Timestamp) -> StoreResult<()> {
        let (a,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "UPDATE documents SET open_minor = open_minor - $2 WHERE id = $1 AND open_minor >= $2 RETURNING open_minor")
            .bind(from.id).bind(amount).fetch_one(c).await)
        .map_err(|_| StoreError::Conflict { what: "the amount exceeds what is open on the payment".into() })?;
        let (b,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "UPDATE documents SET open_minor = open_minor - $2 WHERE id = $1 AND open_minor >= $2 RETURNING open_minor")
            .bind(to.id).bind(amount).fetch_one(c).await)
        .map_err(|_| StoreError::Conflict { what: "the amount exceeds what is open on the invoice".into() })?;
        let _ = (a, b);
        on_tx!(tx, c => sqlx::query("INSERT INTO allocations (from_document_id, to_document_id, amount_minor, created_at) VALUES ($1, $2, $3, $4)")
            .bind(from.id).bind(to.id).bind(amount).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// An account's balance in a currency: what it owes (open invoices, debit memos,
    /// refunds) minus what it has open to apply (payments, credit memos). Negative = credit.
    pub async fn balance(&self, account: AccountId, currency: &str) -> StoreResult<i64> {
        let (owed, credit): (Option<i64>, Option<i64>) = on_db!(self.0, p => sqlx::query_as(
            "SELECT CAST(SUM(CASE WHEN kind IN ('invoice', 'debit_memo', 'refund') THEN open_minor ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN kind IN ('payment', 'credit_memo') THEN open_minor ELSE 0 END) AS BIGINT)
             FROM documents WHERE account_id = $1 AND currency = $2 AND status = 'issued'")
            .bind(account.0).bind(currency).fetch_one(p).await)?;
        Ok(owed.unwrap_or(0) - credit.unwrap_or(0))
    }

    /// The books invariant for an issuer: every document's total equals its open balance
    /// plus what was allocated from or to it, and every line sum equals its subtotal.
    /// Returns the ids of documents that break it (empty when the books balance).
    pub async fn unbalanced(&self, issuer: AccountId) -> StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT d.id FROM documents d
             WHERE d.issuer_account_id = $1 AND (
               d.total_minor <> d.open_minor
                 + COALESCE((SELECT SUM(a.amount_minor) FROM allocations a WHERE a.from_document_id = d.id), 0)
                 + COALESCE((SELECT SUM(a.amount_minor) FROM allocations a WHERE a.to_document_id = d.id), 0)
               OR d.total_minor <> d.subtotal_minor + d.tax_minor
               OR (d.kind = 'invoice' AND d.subtotal_minor <> COALESCE((SELECT SUM(l.amount_minor) FROM document_lines l WHERE l.document_id = d.id), 0)))
             ORDER BY d.id")
            .bind(issuer.0).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

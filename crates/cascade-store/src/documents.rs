//! Money documents: invoices, payments, credit memos, debit memos, refunds.
//!
//! Every document has a total and an open balance; an account's balance is derived from
//! its documents, never stored. Issued documents are immutable except for their open
//! balance, which only allocations move. Invoice lines carry the charge key of what they
//! bill under a unique index: writing the same charge twice is impossible, which makes
//! billing runs safe to re-run after a crash.
//!
//! Allocations (a payment or credit memo applied to what is owed) follow the pure rule
//! [`check_allocation`]; the conditional updates in [`Documents::allocate`] are the last
//! guard, so two concurrent applications of one payment can never overdraw it.
//!
//! Card payments go through a [`PaymentGateway`]. A charge the gateway leaves pending is
//! not money yet: it is kept as a [`PaymentAttempt`] and becomes a payment document only
//! when confirmed. Every charge carries an idempotency key to the gateway and into
//! `documents.idem_key` (unique), so a retried charge is recognised, never taken twice.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::billing::payments::{
    AllocationError, CardNumber, GatewayDecision, OpenDocument, Side, check_allocation,
    test_gateway_decision, test_gateway_decision_last4,
};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::money::{Currency, Money};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

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
        [
            DocKind::Invoice,
            DocKind::Payment,
            DocKind::CreditMemo,
            DocKind::DebitMemo,
            DocKind::Refund,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
    /// Documents that the account owes (their open balance is a debt).
    pub fn is_debit(self) -> bool {
        matches!(
            self,
            DocKind::Invoice | DocKind::DebitMemo | DocKind::Refund
        )
    }
    /// The side of the books the document's open balance is on.
    pub fn side(self) -> Side {
        if self.is_debit() {
            Side::Debit
        } else {
            Side::Credit
        }
    }
    /// What a customer reads as the document's title.
    pub fn title(self) -> &'static str {
        match self {
            DocKind::Invoice => "Invoice",
            DocKind::Payment => "Payment receipt",
            DocKind::CreditMemo => "Credit memo",
            DocKind::DebitMemo => "Debit memo",
            DocKind::Refund => "Refund",
        }
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
    /// The tax rate the document was issued with, in basis points (absent on documents
    /// written before it was recorded).
    pub tax_bp: Option<i64>,
}

impl Document {
    /// What the allocation rule needs to know about this document.
    pub fn open_view(&self) -> OpenDocument {
        OpenDocument {
            id: self.id,
            side: self.kind.side(),
            issuer: self.issuer_account_id.0,
            account: self.account_id.0,
            currency: self.currency.clone(),
            issued: self.status == "issued",
            open_minor: self.open_minor,
        }
    }
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
    tax_bp: Option<i64>,
}

const COLUMNS: &str = "id, kind, number, issuer_account_id, account_id, currency, status, subtotal_minor, tax_minor, total_minor, open_minor, \
     issue_date, due_date, charge_date, method, external_ref, created_at, tax_bp";

impl TryFrom<Row> for Document {
    type Error = StoreError;
    fn try_from(r: Row) -> StoreResult<Document> {
        Ok(Document {
            id: r.id,
            kind: DocKind::parse(&r.kind).ok_or_else(|| {
                StoreError::Corrupt(format!("document {}: kind {}", r.id, r.kind))
            })?,
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
            tax_bp: r.tax_bp,
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
    (if 2 * r.abs() >= 10_000 {
        q + n.signum()
    } else {
        q
    }) as i64
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
    pub async fn issue(
        tx: &mut Tx,
        head: &NewDocument<'_>,
        lines: &[NewLine],
        now: Timestamp,
    ) -> StoreResult<Option<(Document, usize)>> {
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
                issue_date, due_date, charge_date, method, external_ref, idem_key, created_at, issued_at, tax_bp)
             VALUES ($1, $2, $3, $4, $5, 'issued', $6, $7, $8, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16) RETURNING {COLUMNS}"
        );
        let row: Row = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(head.kind.as_str()).bind(&number).bind(head.issuer.0).bind(head.account.0).bind(head.currency)
            .bind(subtotal).bind(tax).bind(total).bind(head.issue_date).bind(head.due_date).bind(head.charge_date)
            .bind(head.method).bind(head.external_ref).bind(head.idem_key).bind(now.0).bind(head.tax_bp).fetch_one(c).await)
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
        type R = (
            i64,
            Option<i64>,
            String,
            String,
            i64,
            i64,
            i64,
            Option<String>,
            Option<String>,
        );
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
    pub async fn of_account(
        &self,
        account: AccountId,
        kind: Option<DocKind>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<Document>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM documents WHERE account_id = $1 AND ($2 IS NULL OR kind = $2) AND id < $3 ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql)
            .bind(account.0).bind(kind.map(|k| k.as_str())).bind(before.unwrap_or(i64::MAX)).bind(limit + 1).fetch_all(p).await)?;
        let docs = rows
            .into_iter()
            .map(Document::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(docs, limit, |d| d.id))
    }

    /// Apply `amount` of a payment or credit memo to an invoice or debit memo of the same
    /// account and currency, within both open balances. Both open balances move in the
    /// same transaction as the allocation row, so the books always balance.
    ///
    /// The rule is checked on the given documents (kinds, account, issuer, currency, a
    /// positive amount); the open balances are checked again by the updates themselves,
    /// so stale copies can never overdraw. A broken rule is a [`StoreError::Conflict`].
    pub async fn allocate(
        tx: &mut Tx,
        from: &Document,
        to: &Document,
        amount: i64,
        now: Timestamp,
    ) -> StoreResult<()> {
        // Open balances are re-checked by the conditional updates below, against the
        // current rows: only the static facts are taken from the given copies.
        let mut f = from.open_view();
        let mut t = to.open_view();
        f.open_minor = i64::MAX;
        t.open_minor = i64::MAX;
        check_allocation(&f, &t, amount).map_err(|e| StoreError::Conflict {
            what: e.to_string(),
        })?;
        let a: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "UPDATE documents SET open_minor = open_minor - $2 WHERE id = $1 AND status = 'issued' AND open_minor >= $2 RETURNING open_minor")
            .bind(from.id).bind(amount).fetch_optional(c).await)?;
        if a.is_none() {
            return Err(StoreError::Conflict {
                what: "the amount exceeds what is open on the payment".into(),
            });
        }
        let b: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "UPDATE documents SET open_minor = open_minor - $2 WHERE id = $1 AND status = 'issued' AND open_minor >= $2 RETURNING open_minor")
            .bind(to.id).bind(amount).fetch_optional(c).await)?;
        if b.is_none() {
            return Err(StoreError::Conflict {
                what: "the amount exceeds what is open on the invoice".into(),
            });
        }
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

/// One application of a payment or credit memo to a debit document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub id: i64,
    pub from_document_id: i64,
    pub to_document_id: i64,
    pub amount_minor: i64,
    pub created_at: Timestamp,
}

/// Open debits of an account in one currency: how many and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenDebits {
    pub count: i64,
    pub total_minor: i64,
}

impl Documents<'_> {
    /// Issue a document of one line for `amount_minor` (payments, memos, refunds): the
    /// line carries the description, quantity 1 and the amount as its unit price.
    pub async fn issue_single(
        tx: &mut Tx,
        head: &NewDocument<'_>,
        line_kind: &str,
        description: &str,
        amount_minor: i64,
        now: Timestamp,
    ) -> StoreResult<Document> {
        let currency = Currency::parse(head.currency).map_err(|e| {
            StoreError::Corrupt(format!(
                "document currency {}: {}",
                head.currency, e.message
            ))
        })?;
        let unit_price_micro = 10i64
            .checked_pow(6u32.saturating_sub(currency.minor_digits()))
            .and_then(|f| amount_minor.checked_mul(f))
            .ok_or_else(|| StoreError::Conflict {
                what: "amount too large".into(),
            })?;
        let line = NewLine {
            subscription_id: None,
            kind: line_kind.to_string(),
            description: description.to_string(),
            quantity: 1,
            unit_price_micro,
            amount_minor,
            period_start: None,
            period_end: None,
            charge_key: None,
        };
        match Self::issue(tx, head, std::slice::from_ref(&line), now).await? {
            Some((doc, _)) => Ok(doc),
            None => Err(StoreError::Corrupt(
                "a line without a charge key was dropped".into(),
            )),
        }
    }

    /// The document written with this idempotency key, if any.
    pub async fn by_idem_key(&self, key: &str) -> StoreResult<Option<Document>> {
        let sql = format!("SELECT {COLUMNS} FROM documents WHERE idem_key = $1");
        let r: Option<Row> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(key).fetch_optional(p).await)?;
        r.map(Document::try_from).transpose()
    }

    /// Allocations from or to a document, oldest first.
    pub async fn allocations(&self, document: i64) -> StoreResult<Vec<Allocation>> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT id, from_document_id, to_document_id, amount_minor, created_at FROM allocations
             WHERE from_document_id = $1 OR to_document_id = $1 ORDER BY id")
            .bind(document).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|r| Allocation {
                id: r.0,
                from_document_id: r.1,
                to_document_id: r.2,
                amount_minor: r.3,
                created_at: Timestamp(r.4),
            })
            .collect())
    }

    /// Apply `amount` of the credit document `from` to the debit document `to`, checking
    /// the allocation rule against the current rows: the updated documents, or
    /// `Ok(Err(rule))` when the rule refuses. On a refusal the caller rolls the
    /// transaction back: when a concurrent transaction moved an open balance between the
    /// read and the update, half of the allocation may already be written in it.
    pub async fn apply(
        tx: &mut Tx,
        from: i64,
        to: i64,
        amount: i64,
        now: Timestamp,
    ) -> StoreResult<Result<(Document, Document), AllocationError>> {
        let f = Self::get_in(tx, from).await?;
        let t = Self::get_in(tx, to).await?;
        if let Err(e) = check_allocation(&f.open_view(), &t.open_view(), amount) {
            return Ok(Err(e));
        }
        match Self::allocate(tx, &f, &t, amount, now).await {
            Ok(()) => {}
            // Moved by a concurrent transaction between the read and the update.
            Err(StoreError::Conflict { .. }) => {
                let f = Self::get_in(tx, from).await?;
                let t = Self::get_in(tx, to).await?;
                return Ok(Err(check_allocation(
                    &f.open_view(),
                    &t.open_view(),
                    amount,
                )
                .err()
                .unwrap_or(AllocationError::ExceedsSource { open: f.open_minor })));
            }
            Err(e) => return Err(e),
        }
        Ok(Ok((
            Self::get_in(tx, from).await?,
            Self::get_in(tx, to).await?,
        )))
    }

    /// Issued invoices and debit memos of an account still open, in one currency.
    pub async fn open_debits(&self, account: AccountId, currency: &str) -> StoreResult<OpenDebits> {
        let (count, total): (i64, Option<i64>) = on_db!(self.0, p => sqlx::query_as(
            "SELECT COUNT(*), CAST(SUM(open_minor) AS BIGINT) FROM documents
             WHERE account_id = $1 AND currency = $2 AND status = 'issued' AND kind IN ('invoice', 'debit_memo') AND open_minor > 0")
            .bind(account.0).bind(currency).fetch_one(p).await)?;
        Ok(OpenDebits {
            count,
            total_minor: total.unwrap_or(0),
        })
    }

    /// For the daily credit check: the due date (`YYYY-MM-DD`) of the account's oldest
    /// issued invoice or debit memo that is still open and was due before `today`
    /// (`YYYY-MM-DD`); `None` when nothing is overdue. Feed it to
    /// [`cascade_domain::billing::payments::credit_hold_decision`].
    pub async fn oldest_overdue_due_date(
        &self,
        account: AccountId,
        today: &str,
    ) -> StoreResult<Option<String>> {
        let (d,): (Option<String>,) = on_db!(self.0, p => sqlx::query_as(
            "SELECT MIN(due_date) FROM documents
             WHERE account_id = $1 AND status = 'issued' AND kind IN ('invoice', 'debit_memo') AND open_minor > 0
               AND due_date IS NOT NULL AND due_date < $2")
            .bind(account.0).bind(today).fetch_one(p).await)?;
        Ok(d)
    }
}

// ---------------------------------------------------------------------------------------
// Card payments waiting at the gateway
// ---------------------------------------------------------------------------------------

/// A card charge the gateway left pending: no money has moved yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAttempt {
    pub id: i64,
    pub reference: String,
    pub gateway: String,
    pub issuer_account_id: AccountId,
    pub account_id: AccountId,
    pub currency: String,
    pub amount_minor: i64,
    /// `pending`, `confirmed` (the payment document exists) or `failed`.
    pub status: String,
    pub card_last4: Option<String>,
    /// Documents to pay once confirmed, in order.
    pub apply_to: Vec<i64>,
    pub external_ref: Option<String>,
    pub idem_key: Option<String>,
    pub document_id: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub reference: &'a str,
    pub gateway: &'a str,
    pub issuer: AccountId,
    pub account: AccountId,
    pub amount: Money,
    pub card_last4: Option<&'a str>,
    pub apply_to: &'a [i64],
    pub external_ref: Option<&'a str>,
    pub idem_key: Option<&'a str>,
    pub created_by: Option<i64>,
}

type AttemptRow = (
    i64,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
);
const ATTEMPT_COLUMNS: &str = "id, reference, gateway, issuer_account_id, account_id, currency, amount_minor, status, card_last4, apply_to, \
     external_ref, idem_key, document_id, created_at";

fn attempt_from(r: AttemptRow) -> StoreResult<PaymentAttempt> {
    let apply_to = serde_json::from_str(&r.9)
        .map_err(|e| StoreError::Corrupt(format!("payment attempt {}: apply_to: {e}", r.0)))?;
    Ok(PaymentAttempt {
        id: r.0,
        reference: r.1,
        gateway: r.2,
        issuer_account_id: AccountId(r.3),
        account_id: AccountId(r.4),
        currency: r.5,
        amount_minor: r.6,
        status: r.7,
        card_last4: r.8,
        apply_to,
        external_ref: r.10,
        idem_key: r.11,
        document_id: r.12,
        created_at: Timestamp(r.13),
    })
}

pub struct PaymentAttempts<'a>(pub &'a Db);

impl Db {
    pub fn payment_attempts(&self) -> PaymentAttempts<'_> {
        PaymentAttempts(self)
    }
}

impl PaymentAttempts<'_> {
    pub async fn create(
        tx: &mut Tx,
        a: &NewAttempt<'_>,
        now: Timestamp,
    ) -> StoreResult<PaymentAttempt> {
        let apply_to =
            serde_json::to_string(a.apply_to).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sql = format!(
            "INSERT INTO payment_attempts (reference, gateway, issuer_account_id, account_id, currency, amount_minor, status, card_last4, apply_to,
                external_ref, idem_key, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12, $12) RETURNING {ATTEMPT_COLUMNS}"
        );
        let r: AttemptRow = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(a.reference).bind(a.gateway).bind(a.issuer.0).bind(a.account.0).bind(a.amount.currency.code()).bind(a.amount.minor)
            .bind(a.card_last4).bind(&apply_to).bind(a.external_ref).bind(a.idem_key).bind(a.created_by).bind(now.0).fetch_one(c).await)?;
        attempt_from(r)
    }

    pub async fn get(&self, reference: &str) -> StoreResult<PaymentAttempt> {
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE reference = $1");
        let r: AttemptRow =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(reference).fetch_one(p).await)?;
        attempt_from(r)
    }

    pub async fn by_idem_key(&self, key: &str) -> StoreResult<Option<PaymentAttempt>> {
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE idem_key = $1");
        let r: Option<AttemptRow> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(key).fetch_optional(p).await)?;
        r.map(attempt_from).transpose()
    }

    /// Take a pending attempt for settlement: `None` when it is no longer pending (a
    /// concurrent confirmation won; on PostgreSQL the loser waits for the winner's commit).
    pub async fn claim(
        tx: &mut Tx,
        reference: &str,
        status: &str,
        now: Timestamp,
    ) -> StoreResult<Option<PaymentAttempt>> {
        let sql = format!(
            "UPDATE payment_attempts SET status = $2, updated_at = $3 WHERE reference = $1 AND status = 'pending' RETURNING {ATTEMPT_COLUMNS}"
        );
        let r: Option<AttemptRow> = on_tx!(tx, c => sqlx::query_as(&sql).bind(reference).bind(status).bind(now.0).fetch_optional(c).await)?;
        r.map(attempt_from).transpose()
    }

    /// Link a confirmed attempt to the payment document written for it.
    pub async fn set_document(
        tx: &mut Tx,
        id: i64,
        document: i64,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query("UPDATE payment_attempts SET document_id = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(document).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The payment gateway
// ---------------------------------------------------------------------------------------

/// A card charge to send to the gateway.
#[derive(Debug, Clone)]
pub struct ChargeRequest<'a> {
    pub account: AccountId,
    pub amount: Money,
    pub card: &'a CardNumber,
    /// Always sent: the gateway recognises a retried charge by it and does not take the
    /// money twice.
    pub idem_key: &'a str,
}

/// A charge of a stored card, known to the gateway by its token.
#[derive(Debug, Clone)]
pub struct TokenChargeRequest<'a> {
    pub account: AccountId,
    pub amount: Money,
    pub token: &'a str,
    /// As for [`ChargeRequest::idem_key`].
    pub idem_key: &'a str,
}

/// What the gateway answered to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeOutcome {
    pub decision: GatewayDecision,
    /// The gateway's reference of the charge (stored as the payment's `external_ref`).
    pub reference: String,
    /// Why it was declined, for people.
    pub message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the payment gateway is unavailable: {0}")]
    Unavailable(String),
    #[error("the payment gateway does not know the charge {0}")]
    UnknownCharge(String),
}

/// A payment gateway: charges cards, reports on pending charges, refunds. One
/// implementation per provider of card payments; [`TestGateway`] is built in.
pub trait PaymentGateway: Send + Sync {
    /// Short name stored with pending attempts (`test`, …).
    fn name(&self) -> &'static str;
    fn charge<'a>(
        &'a self,
        req: ChargeRequest<'a>,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>>;
    /// The state of a charge the gateway left pending.
    fn status<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<GatewayDecision, GatewayError>>;
    /// Keep a card at the gateway for later automatic charges: the gateway's token (the
    /// card number itself is never stored by Cascade).
    fn tokenize<'a>(&'a self, card: &'a CardNumber) -> BoxFuture<'a, Result<String, GatewayError>>;
    /// Charge a stored card by its token (automatic charges of the daily run).
    fn charge_token<'a>(
        &'a self,
        req: TokenChargeRequest<'a>,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>>;
    /// Give back `amount` of a settled charge: the gateway's reference of the refund.
    fn refund<'a>(
        &'a self,
        reference: &'a str,
        amount: Money,
        idem_key: &'a str,
    ) -> BoxFuture<'a, Result<String, GatewayError>>;
}

/// The built-in deterministic gateway for tests and demos
/// ([`test_gateway_decision`]: `…0000` declined, `…1111` pending, anything else
/// approved). References derive from the idempotency key, so a retry gets the same one.
/// Pending charges settle as approved when asked. It moves no real money.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestGateway;

fn gateway_ref(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("{prefix}{}", &hex::encode(h.finalize())[..24])
}

impl PaymentGateway for TestGateway {
    fn name(&self) -> &'static str {
        "test"
    }
    fn charge<'a>(
        &'a self,
        req: ChargeRequest<'a>,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>> {
        Box::pin(async move {
            let decision = test_gateway_decision(req.card);
            let message = (decision == GatewayDecision::Declined).then(|| {
                format!(
                    "declined by the test gateway (card ending {})",
                    req.card.last4()
                )
            });
            Ok(ChargeOutcome {
                decision,
                reference: gateway_ref("tg_ch_", &[req.idem_key]),
                message,
            })
        })
    }
    fn tokenize<'a>(&'a self, card: &'a CardNumber) -> BoxFuture<'a, Result<String, GatewayError>> {
        Box::pin(async move {
            // The last four digits stay readable in the token: they decide its charges.
            Ok(format!(
                "{}_{}",
                gateway_ref("tg_tok_", &[card.expose()]),
                card.last4()
            ))
        })
    }
    fn charge_token<'a>(
        &'a self,
        req: TokenChargeRequest<'a>,
    ) -> BoxFuture<'a, Result<ChargeOutcome, GatewayError>> {
        Box::pin(async move {
            let last4 = req
                .token
                .strip_prefix("tg_tok_")
                .and_then(|t| t.rsplit('_').next())
                .ok_or_else(|| GatewayError::UnknownCharge(req.token.to_string()))?;
            let decision = test_gateway_decision_last4(last4);
            let message = (decision == GatewayDecision::Declined)
                .then(|| format!("declined by the test gateway (stored card ending {last4})"));
            Ok(ChargeOutcome {
                decision,
                reference: gateway_ref("tg_ch_", &[req.idem_key]),
                message,
            })
        })
    }
    fn status<'a>(
        &'a self,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<GatewayDecision, GatewayError>> {
        Box::pin(async move {
            if reference.starts_with("tg_ch_") {
                Ok(GatewayDecision::Approved)
            } else {
                Err(GatewayError::UnknownCharge(reference.to_string()))
            }
        })
    }
    fn refund<'a>(
        &'a self,
        reference: &'a str,
        amount: Money,
        idem_key: &'a str,
    ) -> BoxFuture<'a, Result<String, GatewayError>> {
        Box::pin(async move {
            Ok(gateway_ref(
                "tg_rf_",
                &[reference, &amount.minor.to_string(), idem_key],
            ))
        })
    }
}

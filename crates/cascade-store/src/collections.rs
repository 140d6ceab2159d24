//! What the daily run collects after billing: stored payment methods and automatic
//! charges, credit holds, pay-as-you-go suspension deadlines.
//!
//! Storage only; the decisions are the domain's (`billing::payments`: `charge_date`,
//! `credit_hold_decision`, `payg_suspension_deadline`) and the run's
//! (`cascade_worker::collections`).
//!
//! **Exactly-once automatic charges**: [`AutoCharges::start`] writes one row per
//! (document, attempt date) under a unique index *before* the gateway is called, with the
//! idempotency key the gateway gets; [`AutoCharges::finish`] moves it from `started` to
//! its outcome in the transaction that records the payment (whose `documents.idem_key`
//! is the same key, unique too). A run killed in between leaves the row `started`; the
//! next run finishes it with the same key first ([`AutoCharges::started`]).

use crate::{Db, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::billing::payments::CreditTerms;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;

/// A card kept at the gateway for automatic charges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    pub id: i64,
    pub account_id: AccountId,
    pub gateway: String,
    pub token: String,
    pub card_last4: String,
    pub active: bool,
    pub created_at: Timestamp,
}

type MethodRow = (i64, i64, String, String, String, bool, i64);
const METHOD_COLUMNS: &str = "id, account_id, gateway, token, card_last4, active, created_at";

fn method_from(r: MethodRow) -> PaymentMethod {
    PaymentMethod {
        id: r.0,
        account_id: AccountId(r.1),
        gateway: r.2,
        token: r.3,
        card_last4: r.4,
        active: r.5,
        created_at: Timestamp(r.6),
    }
}

pub struct PaymentMethods<'a>(pub &'a Db);

impl Db {
    pub fn payment_methods(&self) -> PaymentMethods<'_> {
        PaymentMethods(self)
    }
}

impl PaymentMethods<'_> {
    /// Store a card (as its gateway token) for `account`'s automatic charges.
    pub async fn create(
        tx: &mut Tx,
        account: AccountId,
        gateway: &str,
        token: &str,
        card_last4: &str,
        created_by: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<PaymentMethod> {
        let sql = format!(
            "INSERT INTO payment_methods (account_id, gateway, token, card_last4, active, created_by, created_at)
             VALUES ($1, $2, $3, $4, TRUE, $5, $6) RETURNING {METHOD_COLUMNS}"
        );
        let r: MethodRow = on_tx!(tx, c => sqlx::query_as(&sql).bind(account.0).bind(gateway).bind(token)
            .bind(card_last4).bind(created_by).bind(now.0).fetch_one(c).await)?;
        Ok(method_from(r))
    }

    pub async fn get(&self, id: i64) -> StoreResult<PaymentMethod> {
        let sql = format!("SELECT {METHOD_COLUMNS} FROM payment_methods WHERE id = $1");
        let r: MethodRow = on_db!(self.0, p => sqlx::query_as(&sql).bind(id).fetch_one(p).await)?;
        Ok(method_from(r))
    }

    /// An account's stored methods, newest first (removed ones included, inactive).
    pub async fn of_account(&self, account: AccountId) -> StoreResult<Vec<PaymentMethod>> {
        let sql = format!(
            "SELECT {METHOD_COLUMNS} FROM payment_methods WHERE account_id = $1 ORDER BY id DESC LIMIT 100"
        );
        let rows: Vec<MethodRow> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(account.0).fetch_all(p).await)?;
        Ok(rows.into_iter().map(method_from).collect())
    }

    /// Stop using a stored method; `false` when it was not active.
    pub async fn deactivate(tx: &mut Tx, id: i64) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query("UPDATE payment_methods SET active = FALSE WHERE id = $1 AND active")
            .bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}

/// An open document of an account with a stored payment method: a candidate for an
/// automatic charge on the run date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chargeable {
    pub document_id: i64,
    pub account_id: AccountId,
    pub issuer_account_id: AccountId,
    pub currency: String,
    pub open_minor: i64,
    pub issue_date: String,
    pub due_date: Option<String>,
    /// Set on documents issued with a delayed payment schedule.
    pub charge_date: Option<String>,
    pub method: PaymentMethod,
    pub terms: CreditTerms,
}

/// An automatic charge row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoCharge {
    pub id: i64,
    pub document_id: i64,
    pub account_id: AccountId,
    pub attempt_date: String,
    pub payment_method_id: i64,
    pub amount_minor: i64,
    pub idem_key: String,
    pub status: String,
    pub reference: Option<String>,
    pub message: Option<String>,
    pub payment_document_id: Option<i64>,
}

type ChargeRow = (
    i64,
    i64,
    i64,
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);
const CHARGE_COLUMNS: &str = "id, document_id, account_id, attempt_date, payment_method_id, amount_minor, idem_key, status, reference, message, payment_document_id";

fn charge_from(r: ChargeRow) -> AutoCharge {
    AutoCharge {
        id: r.0,
        document_id: r.1,
        account_id: AccountId(r.2),
        attempt_date: r.3,
        payment_method_id: r.4,
        amount_minor: r.5,
        idem_key: r.6,
        status: r.7,
        reference: r.8,
        message: r.9,
        payment_document_id: r.10,
    }
}

pub struct AutoCharges<'a>(pub &'a Db);

impl Db {
    pub fn auto_charges(&self) -> AutoCharges<'_> {
        AutoCharges(self)
    }
}

/// The idempotency key of the automatic charge of `document` attempted on `date`.
pub fn auto_charge_key(document: i64, date: &str) -> String {
    format!("auto:{document}:{date}")
}

impl AutoCharges<'_> {
    /// Open issued invoices and debit memos (issued on or before `today`) of accounts
    /// with an active stored method, that have no automatic charge settled, pending or
    /// in progress, and none attempted on `today` yet; with the account's newest active
    /// method and its credit terms. Whether each is due today is the caller's decision.
    pub async fn chargeable(&self, today: &str) -> StoreResult<Vec<Chargeable>> {
        type Row = (
            i64,
            i64,
            i64,
            String,
            i64,
            String,
            Option<String>,
            Option<String>,
            i64,
            Option<i32>,
            Option<i32>,
        );
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(
            "SELECT d.id, d.account_id, d.issuer_account_id, d.currency, d.open_minor, d.issue_date, d.due_date, d.charge_date,
                    (SELECT MAX(m.id) FROM payment_methods m WHERE m.account_id = d.account_id AND m.active),
                    c.due_days, c.payment_delay_days
             FROM documents d JOIN accounts a ON a.id = d.account_id
             LEFT JOIN customer_classes c ON c.id = a.customer_class_id
             WHERE d.account_id IN (SELECT account_id FROM payment_methods WHERE active)
               AND d.status = 'issued' AND d.kind IN ('invoice', 'debit_memo') AND d.open_minor > 0 AND d.issue_date <= $1
               AND NOT EXISTS (SELECT 1 FROM auto_charges x WHERE x.document_id = d.id
                               AND (x.attempt_date = $1 OR x.status IN ('started', 'approved', 'pending')))
             ORDER BY d.id")
            .bind(today).fetch_all(p).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let method = PaymentMethods(self.0).get(r.8).await?;
            let mut terms = CreditTerms::default();
            if let Some(d) = r.9 {
                terms.due_days = d.max(0) as u32;
            }
            terms.payment_delay_days = r.10.map(|d| d.max(0) as u32);
            out.push(Chargeable {
                document_id: r.0,
                account_id: AccountId(r.1),
                issuer_account_id: AccountId(r.2),
                currency: r.3,
                open_minor: r.4,
                issue_date: r.5,
                due_date: r.6,
                charge_date: r.7,
                method,
                terms,
            });
        }
        Ok(out)
    }

    /// Record that the charge of `document` is attempted on `date` (committed before the
    /// gateway is called). `None` when it was attempted on that date already.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        tx: &mut Tx,
        document: i64,
        account: AccountId,
        date: &str,
        method: i64,
        amount_minor: i64,
        now: Timestamp,
    ) -> StoreResult<Option<AutoCharge>> {
        let sql = format!(
            "INSERT INTO auto_charges (document_id, account_id, attempt_date, payment_method_id, amount_minor, idem_key, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'started', $7, $7)
             ON CONFLICT (document_id, attempt_date) DO NOTHING RETURNING {CHARGE_COLUMNS}"
        );
        let key = auto_charge_key(document, date);
        let r: Option<ChargeRow> = on_tx!(tx, c => sqlx::query_as(&sql).bind(document).bind(account.0).bind(date)
            .bind(method).bind(amount_minor).bind(&key).bind(now.0).fetch_optional(c).await)?;
        Ok(r.map(charge_from))
    }

    /// Charges left `started` by a run that stopped between the gateway and the commit.
    pub async fn started(&self) -> StoreResult<Vec<AutoCharge>> {
        let sql = format!(
            "SELECT {CHARGE_COLUMNS} FROM auto_charges WHERE status = 'started' ORDER BY id"
        );
        let rows: Vec<ChargeRow> = on_db!(self.0, p => sqlx::query_as(&sql).fetch_all(p).await)?;
        Ok(rows.into_iter().map(charge_from).collect())
    }

    /// The automatic charges of a document, oldest first.
    pub async fn of_document(&self, document: i64) -> StoreResult<Vec<AutoCharge>> {
        let sql =
            format!("SELECT {CHARGE_COLUMNS} FROM auto_charges WHERE document_id = $1 ORDER BY id");
        let rows: Vec<ChargeRow> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(document).fetch_all(p).await)?;
        Ok(rows.into_iter().map(charge_from).collect())
    }

    /// Move a `started` charge to its outcome; `false` when another run finished it.
    pub async fn finish(
        tx: &mut Tx,
        id: i64,
        status: &str,
        reference: Option<&str>,
        message: Option<&str>,
        payment_document: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE auto_charges SET status = $2, reference = $3, message = $4, payment_document_id = $5, updated_at = $6
             WHERE id = $1 AND status = 'started'")
            .bind(id).bind(status).bind(reference).bind(message).bind(payment_document).bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}

/// The credit check's candidates: accounts with an open invoice or debit memo due
/// before `today` (with the oldest such due date), and accounts on credit hold (due
/// date `None` when nothing of theirs is overdue), with their credit terms and status.
pub async fn credit_candidates(
    db: &Db,
    today: &str,
) -> StoreResult<Vec<(AccountId, String, Option<String>, CreditTerms)>> {
    type Row = (
        i64,
        String,
        Option<String>,
        Option<i32>,
        Option<i32>,
        Option<i32>,
        Option<bool>,
    );
    let rows: Vec<Row> = on_db!(db, p => sqlx::query_as(
        "SELECT a.id, a.status, o.oldest, c.due_days, c.grace_days, c.hold_days, c.auto_credit_hold
         FROM accounts a
         LEFT JOIN (SELECT account_id, MIN(due_date) AS oldest FROM documents
                    WHERE open_minor > 0 AND due_date < $1 AND status = 'issued' AND kind IN ('invoice', 'debit_memo')
                    GROUP BY account_id) o ON o.account_id = a.id
         LEFT JOIN customer_classes c ON c.id = a.customer_class_id
         WHERE o.oldest IS NOT NULL OR a.status = 'credit_hold'
         ORDER BY a.id")
        .bind(today).fetch_all(p).await)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut t = CreditTerms::default();
            if let Some(v) = r.3 {
                t.due_days = v.max(0) as u32;
            }
            if let Some(v) = r.4 {
                t.grace_days = v.max(0) as u32;
            }
            if let Some(v) = r.5 {
                t.hold_days = v.max(0) as u32;
            }
            if let Some(v) = r.6 {
                t.auto_credit_hold = v;
            }
            (AccountId(r.0), r.1, r.2, t)
        })
        .collect())
}

/// A pay-as-you-go subscription the PAYG check looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaygCandidate {
    pub subscription_id: i64,
    pub account_id: AccountId,
    pub status: String,
    pub suspension_deadline: Option<String>,
    pub version: i64,
    pub currency: String,
    /// What the account owes less its open credit, in the plan's currency.
    pub balance_minor: i64,
    pub credit_limit_minor: Option<i64>,
    pub payg_grace_days: u32,
}

/// Live subscriptions (active or on credit hold) of the given plans, with their
/// account's balance in the plan's currency and its PAYG terms. Subscriptions their
/// account's hold suspended are the account's to release (`holds`), not this check's.
pub async fn payg_candidates(db: &Db, plans: &[i64]) -> StoreResult<Vec<PaygCandidate>> {
    let mut out = Vec::new();
    for chunk in plans.chunks(500) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        type Row = (
            i64,
            i64,
            String,
            Option<String>,
            i64,
            String,
            Option<i64>,
            Option<i64>,
            Option<i32>,
        );
        // Ids are integers we formatted ourselves: nothing from outside reaches the SQL.
        let sql = format!(
            "SELECT s.id, s.account_id, s.status, s.suspension_deadline, s.version, p.currency,
                (SELECT CAST(SUM(CASE WHEN d.kind IN ('invoice', 'debit_memo', 'refund') THEN d.open_minor ELSE -d.open_minor END) AS BIGINT)
                   FROM documents d WHERE d.account_id = s.account_id AND d.currency = p.currency AND d.status = 'issued' AND d.open_minor > 0),
                c.credit_limit_minor, c.payg_grace_days
             FROM subscriptions s JOIN plans p ON p.id = s.plan_id JOIN accounts a ON a.id = s.account_id
             LEFT JOIN customer_classes c ON c.id = a.customer_class_id
             WHERE s.plan_id IN ({list}) AND s.status IN ('active', 'credit_hold')
               AND (s.held_by IS NULL OR s.held_by <> 'account')
             ORDER BY s.id"
        );
        let rows: Vec<Row> = on_db!(db, p => sqlx::query_as(&sql).fetch_all(p).await)?;
        out.extend(rows.into_iter().map(|r| {
            PaygCandidate {
                subscription_id: r.0,
                account_id: AccountId(r.1),
                status: r.2,
                suspension_deadline: r.3,
                version: r.4,
                currency: r.5,
                balance_minor: r.6.unwrap_or(0),
                credit_limit_minor: r.7,
                payg_grace_days: r
                    .8
                    .map(|d| d.max(0) as u32)
                    .unwrap_or(CreditTerms::default().payg_grace_days),
            }
        }));
    }
    Ok(out)
}

/// A PAYG subscription's new status and suspension deadline, if it is still at `version`.
#[derive(Debug, Clone)]
pub struct PaygState<'a> {
    pub subscription: i64,
    pub version: i64,
    pub status: &'a str,
    pub deadline: Option<&'a str>,
}

/// Set the status and suspension deadline of many PAYG subscriptions with one statement,
/// each only if still at its `version`. Returns the ids that moved; the others changed
/// meanwhile (the next run looks again).
pub async fn set_payg_states(
    tx: &mut Tx,
    states: &[PaygState<'_>],
    now: Timestamp,
) -> StoreResult<std::collections::HashSet<i64>> {
    if states.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(i64,)> = match tx {
        Tx::Postgres(t) => {
            sqlx::query_as(
                "UPDATE subscriptions AS s
                 SET status = v.status, suspension_deadline = v.deadline, version = s.version + 1, updated_at = $5
                 FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[]) AS v(id, version, status, deadline)
                 WHERE s.id = v.id AND s.version = v.version
                 RETURNING s.id",
            )
            .bind(states.iter().map(|m| m.subscription).collect::<Vec<_>>())
            .bind(states.iter().map(|m| m.version).collect::<Vec<_>>())
            .bind(states.iter().map(|m| m.status).collect::<Vec<_>>())
            .bind(states.iter().map(|m| m.deadline).collect::<Vec<_>>())
            .bind(now.0)
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            let rows: Vec<(i64, i64, &str, Option<&str>)> = states
                .iter()
                .map(|m| (m.subscription, m.version, m.status, m.deadline))
                .collect();
            let json = serde_json::to_string(&rows)
                .map_err(|e| StoreError::Corrupt(format!("encoding PAYG states: {e}")))?;
            sqlx::query_as(
                "UPDATE subscriptions
                 SET status = v.value ->> 2, suspension_deadline = v.value ->> 3, version = version + 1, updated_at = $2
                 FROM json_each($1) AS v
                 WHERE subscriptions.id = v.value ->> 0 AND subscriptions.version = v.value ->> 1
                 RETURNING subscriptions.id",
            )
            .bind(json)
            .bind(now.0)
            .fetch_all(&mut **t)
            .await?
        }
    };
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Ids and contents of every plan (the run keeps those billed by external rating).
pub async fn plan_contents(db: &Db) -> StoreResult<Vec<(i64, String)>> {
    Ok(
        on_db!(db, p => sqlx::query_as("SELECT id, content FROM plans ORDER BY id").fetch_all(p).await)?,
    )
}

/// Date documents just issued on `issue` by their account's credit terms: the due date
/// (`due_days` of the account's class) and, for a class with a delayed payment schedule,
/// the charge date (`payments::charge_date`). Documents of accounts without a class keep
/// the default terms they were written with. One read per 1,000 accounts and one update
/// for the documents whose account has a class.
pub async fn date_by_terms(
    tx: &mut Tx,
    docs: &[(i64, AccountId)],
    issue: chrono::NaiveDate,
) -> StoreResult<()> {
    use cascade_domain::billing::payments::{charge_date, due_date};
    use std::collections::HashMap;
    let mut by_account: HashMap<i64, Vec<i64>> = HashMap::new();
    for (doc, account) in docs {
        by_account.entry(account.0).or_default().push(*doc);
    }
    let accounts: Vec<i64> = by_account.keys().copied().collect();
    let mut dated: Vec<(i64, String, Option<String>)> = Vec::new();
    for chunk in accounts.chunks(1000) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // Ids are integers we formatted ourselves: nothing from outside reaches the SQL.
        let sql = format!(
            "SELECT a.id, c.due_days, c.payment_delay_days FROM accounts a JOIN customer_classes c ON c.id = a.customer_class_id
             WHERE a.id IN ({list})"
        );
        let rows: Vec<(i64, i32, Option<i32>)> =
            on_tx!(tx, c => sqlx::query_as(&sql).fetch_all(c).await)?;
        for (account, due_days, delay) in rows {
            let terms = CreditTerms {
                due_days: due_days.max(0) as u32,
                payment_delay_days: delay.map(|d| d.max(0) as u32),
                ..Default::default()
            };
            let due = due_date(issue, &terms).to_string();
            let charge = charge_date(issue, &terms).map(|d| d.to_string());
            for doc in by_account.get(&account).into_iter().flatten() {
                dated.push((*doc, due.clone(), charge.clone()));
            }
        }
    }
    set_dates(tx, &dated).await
}

/// Set (document, due date, charge date) with one statement (the billing run dates
/// thousands of invoices per batch: one statement per invoice was most of its round
/// trips for accounts with a class).
async fn set_dates(tx: &mut Tx, dated: &[(i64, String, Option<String>)]) -> StoreResult<()> {
    if dated.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Postgres(t) => {
            sqlx::query(
                "UPDATE documents AS d SET due_date = v.due, charge_date = v.charge
                 FROM unnest($1::int8[], $2::text[], $3::text[]) AS v(id, due, charge)
                 WHERE d.id = v.id AND d.kind IN ('invoice', 'debit_memo')",
            )
            .bind(dated.iter().map(|d| d.0).collect::<Vec<_>>())
            .bind(dated.iter().map(|d| d.1.as_str()).collect::<Vec<_>>())
            .bind(dated.iter().map(|d| d.2.as_deref()).collect::<Vec<_>>())
            .execute(&mut **t)
            .await?;
        }
        Tx::Sqlite(t) => {
            let rows = serde_json::to_string(dated)
                .map_err(|e| StoreError::Corrupt(format!("encoding due dates: {e}")))?;
            sqlx::query(
                "UPDATE documents SET due_date = v.value ->> 1, charge_date = v.value ->> 2
                 FROM json_each($1) AS v
                 WHERE documents.id = v.value ->> 0 AND documents.kind IN ('invoice', 'debit_memo')",
            )
            .bind(rows)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

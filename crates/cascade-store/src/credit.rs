//! Customer classes and their credit terms.
//!
//! A class is defined by a seller (provider or reseller) for the accounts it sells to;
//! an account points at one class of its vendor (`accounts.customer_class_id`). The
//! terms (due period, grace, hold, credit limit, automatic hold, net-terms delay,
//! pay-as-you-go grace) are the domain's [`CreditTerms`], validated there; this module
//! only stores them. An account without a class gets [`CreditTerms::default`], the
//! schema's column defaults.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::billing::payments::CreditTerms;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, CustomerClassId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerClass {
    pub id: CustomerClassId,
    /// The seller that defines the class.
    pub owner_account_id: AccountId,
    pub name: String,
    pub terms: CreditTerms,
    pub created_at: Timestamp,
}

type Row = (
    i64,
    i64,
    String,
    i64,
    i32,
    i32,
    i32,
    Option<i64>,
    bool,
    Option<i32>,
    i32,
);

const COLUMNS: &str = "id, owner_account_id, name, created_at, due_days, grace_days, hold_days, credit_limit_minor, \
     auto_credit_hold, payment_delay_days, payg_grace_days";

fn nonneg(id: i64, what: &str, v: i32) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("customer class {id}: {what} = {v}")))
}

fn class_from(r: Row) -> StoreResult<CustomerClass> {
    let id = r.0;
    Ok(CustomerClass {
        id: CustomerClassId(id),
        owner_account_id: AccountId(r.1),
        name: r.2,
        created_at: Timestamp(r.3),
        terms: CreditTerms {
            due_days: nonneg(id, "due_days", r.4)?,
            grace_days: nonneg(id, "grace_days", r.5)?,
            hold_days: nonneg(id, "hold_days", r.6)?,
            credit_limit_minor: r.7,
            auto_credit_hold: r.8,
            payment_delay_days: r
                .9
                .map(|d| nonneg(id, "payment_delay_days", d))
                .transpose()?,
            payg_grace_days: nonneg(id, "payg_grace_days", r.10)?,
        },
    })
}

fn db_days(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn name_taken(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict { .. } => StoreError::Conflict {
            what: "a customer class with this name exists at this seller".into(),
        },
        o => o,
    }
}

pub struct CustomerClasses<'a>(pub &'a Db);

impl Db {
    pub fn customer_classes(&self) -> CustomerClasses<'_> {
        CustomerClasses(self)
    }
}

impl CustomerClasses<'_> {
    /// A new class of `owner` with `terms` (already validated by the domain). A name
    /// already used by the owner is a [`StoreError::Conflict`].
    pub async fn create(
        tx: &mut Tx,
        owner: AccountId,
        name: &str,
        terms: &CreditTerms,
        now: Timestamp,
    ) -> StoreResult<CustomerClass> {
        let sql = format!(
            "INSERT INTO customer_classes (owner_account_id, name, created_at, due_days, grace_days, hold_days, credit_limit_minor,
                auto_credit_hold, payment_delay_days, payg_grace_days)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
        );
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(owner.0).bind(name).bind(now.0)
            .bind(db_days(terms.due_days)).bind(db_days(terms.grace_days)).bind(db_days(terms.hold_days)).bind(terms.credit_limit_minor)
            .bind(terms.auto_credit_hold).bind(terms.payment_delay_days.map(db_days)).bind(db_days(terms.payg_grace_days))
            .fetch_one(c).await)
        .map_err(|e| name_taken(e.into()))?;
        class_from(r)
    }

    pub async fn get(&self, id: CustomerClassId) -> StoreResult<CustomerClass> {
        let sql = format!("SELECT {COLUMNS} FROM customer_classes WHERE id = $1");
        let r: Row = on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        class_from(r)
    }

    pub async fn get_in(tx: &mut Tx, id: CustomerClassId) -> StoreResult<CustomerClass> {
        let sql = format!("SELECT {COLUMNS} FROM customer_classes WHERE id = $1");
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql).bind(id.0).fetch_one(c).await)?;
        class_from(r)
    }

    /// The classes a seller defines, by id, one page at a time.
    pub async fn of_owner(
        &self,
        owner: AccountId,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<CustomerClass>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM customer_classes WHERE owner_account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql).bind(owner.0).bind(after.unwrap_or(0)).bind(limit + 1).fetch_all(p).await)?;
        let classes = rows
            .into_iter()
            .map(class_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(classes, limit, |c| c.id.0))
    }

    /// Replace a class's name and terms.
    pub async fn update(
        tx: &mut Tx,
        id: CustomerClassId,
        name: &str,
        terms: &CreditTerms,
    ) -> StoreResult<CustomerClass> {
        let sql = format!(
            "UPDATE customer_classes SET name = $2, due_days = $3, grace_days = $4, hold_days = $5, credit_limit_minor = $6,
                auto_credit_hold = $7, payment_delay_days = $8, payg_grace_days = $9
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let r: Option<Row> = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(id.0).bind(name)
            .bind(db_days(terms.due_days)).bind(db_days(terms.grace_days)).bind(db_days(terms.hold_days)).bind(terms.credit_limit_minor)
            .bind(terms.auto_credit_hold).bind(terms.payment_delay_days.map(db_days)).bind(db_days(terms.payg_grace_days))
            .fetch_optional(c).await)
        .map_err(|e| name_taken(e.into()))?;
        class_from(r.ok_or(StoreError::NotFound)?)
    }

    /// The class of an account, if it has one.
    pub async fn of_account(&self, account: AccountId) -> StoreResult<Option<CustomerClass>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM customer_classes WHERE id = (SELECT customer_class_id FROM accounts WHERE id = $1)"
        );
        let r: Option<Row> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(account.0).fetch_optional(p).await)?;
        r.map(class_from).transpose()
    }

    /// The credit terms an account is under: its class's, or the defaults.
    pub async fn terms_of_account(&self, account: AccountId) -> StoreResult<CreditTerms> {
        Ok(self
            .of_account(account)
            .await?
            .map(|c| c.terms)
            .unwrap_or_default())
    }
}

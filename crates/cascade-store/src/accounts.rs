//! The account tree.
//!
//! Representation: a closure table (`account_closure`) with one row per
//! (ancestor, descendant) pair, self-pairs included. Chosen over a materialised path
//! because both hot queries — all descendants of an account, the vendor chain above an
//! account — become a single index range scan on either backend (no `LIKE` prefix
//! scans that need PostgreSQL-specific operator classes, no recursive CTEs), and the
//! relation test used by every authorization check ("is B in A's subtree, and how
//! deep?") is a primary-key lookup. The cost is depth+1 rows per account, written once
//! at creation; accounts are never moved between vendors in this model.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::account::{
    Account, AccountKind, AccountStatus, Contact, Country, Email, Language, NewAccount, Phone,
};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, CustomerClassId};
use cascade_domain::money::Currency;

const COLUMNS: &str = "a.id, a.kind, a.vendor_id, a.name, a.email, a.phone, a.address_line1, a.address_line2, a.city, a.postal_code, \
     a.tax_id, a.country, a.language, a.currency, a.status, a.customer_class_id, a.depth, a.created_at, a.updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    vendor_id: Option<i64>,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    address_line1: Option<String>,
    address_line2: Option<String>,
    city: Option<String>,
    postal_code: Option<String>,
    tax_id: Option<String>,
    country: String,
    language: String,
    currency: String,
    status: String,
    customer_class_id: Option<i64>,
    depth: i32,
    created_at: i64,
    updated_at: i64,
}

fn corrupt(id: i64, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("account {id}: {what}: {e}"))
}

impl TryFrom<Row> for Account {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        let id = r.id;
        Ok(Account {
            id: AccountId(r.id),
            kind: r.kind.parse().map_err(|e| corrupt(id, "kind", e))?,
            vendor_id: r.vendor_id.map(AccountId),
            name: r.name,
            contact: Contact {
                email: r
                    .email
                    .as_deref()
                    .map(Email::parse)
                    .transpose()
                    .map_err(|e| corrupt(id, "email", e))?,
                phone: r
                    .phone
                    .as_deref()
                    .map(Phone::parse)
                    .transpose()
                    .map_err(|e| corrupt(id, "phone", e))?,
                address_line1: r.address_line1,
                address_line2: r.address_line2,
                city: r.city,
                postal_code: r.postal_code,
                tax_id: r.tax_id,
            },
            country: Country::parse(&r.country).map_err(|e| corrupt(id, "country", e))?,
            language: Language::parse(&r.language).map_err(|e| corrupt(id, "language", e))?,
            currency: Currency::parse(&r.currency).map_err(|e| corrupt(id, "currency", e))?,
            status: r.status.parse().map_err(|e| corrupt(id, "status", e))?,
            customer_class_id: r.customer_class_id.map(CustomerClassId),
            depth: r.depth.max(0) as u32,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

fn rows_to_accounts(rows: Vec<Row>) -> StoreResult<Vec<Account>> {
    rows.into_iter().map(Account::try_from).collect()
}

/// Filters for listing accounts.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    pub kind: Option<AccountKind>,
    pub status: Option<AccountStatus>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    /// Only accounts at most this many levels below the ancestor.
    pub max_depth: Option<u32>,
}

pub struct Accounts<'a>(pub &'a Db);

impl Db {
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts(self)
    }
}

impl Accounts<'_> {
    /// Insert an account and its closure rows in the caller's transaction.
    pub async fn create(tx: &mut Tx, a: &NewAccount, now: Timestamp) -> StoreResult<Account> {
        let depth: i32 = match a.vendor_id {
            None => 0,
            Some(v) => {
                let d: (i32,) = on_tx!(tx, c => sqlx::query_as("SELECT depth FROM accounts WHERE id = $1").bind(v.0).fetch_one(c).await)?;
                d.0 + 1
            }
        };
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO accounts (kind, vendor_id, name, email, phone, address_line1, address_line2, city, postal_code, tax_id,
                country, language, currency, status, customer_class_id, depth, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'active', $14, $15, $16, $16) RETURNING id")
            .bind(a.kind.as_str())
            .bind(a.vendor_id.map(|v| v.0))
            .bind(&a.name)
            .bind(a.contact.email.as_ref().map(|e| e.as_str()))
            .bind(a.contact.phone.as_ref().map(|e| e.as_str()))
            .bind(&a.contact.address_line1)
            .bind(&a.contact.address_line2)
            .bind(&a.contact.city)
            .bind(&a.contact.postal_code)
            .bind(&a.contact.tax_id)
            .bind(a.country.as_str())
            .bind(a.language.as_str())
            .bind(a.currency.code())
            .bind(a.customer_class_id.map(|c| c.0))
            .bind(depth)
            .bind(now.0)
            .fetch_one(c).await)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::Conflict { what: "provider already exists".into() },
            other => other,
        })?;
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO account_closure (ancestor_id, descendant_id, depth)
             SELECT ancestor_id, $1, depth + 1 FROM account_closure WHERE descendant_id = $2
             UNION ALL SELECT $1, $1, 0")
            .bind(id).bind(a.vendor_id.map(|v| v.0).unwrap_or(-1)).execute(c).await.map(|r| r.rows_affected()))?;
        Self::get_in(tx, AccountId(id)).await
    }

    pub async fn get_in(tx: &mut Tx, id: AccountId) -> StoreResult<Account> {
        let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1");
        let row: Row = on_tx!(tx, c => sqlx::query_as(&sql).bind(id.0).fetch_one(c).await)?;
        row.try_into()
    }

    pub async fn get(&self, id: AccountId) -> StoreResult<Account> {
        let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1");
        let row: Row = on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        row.try_into()
    }

    /// The installation's provider, if bootstrapped.
    pub async fn provider(&self) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE a.kind = 'provider'");
        let row: Option<Row> = on_db!(self.0, p => sqlx::query_as(&sql).fetch_optional(p).await)?;
        row.map(Account::try_from).transpose()
    }

    /// How far below `ancestor` the account `descendant` is: `Some(0)` for the same
    /// account, `None` when it is not in `ancestor`'s subtree.
    pub async fn relation_depth(
        &self,
        ancestor: AccountId,
        descendant: AccountId,
    ) -> StoreResult<Option<i64>> {
        let d: Option<(i32,)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT depth FROM account_closure WHERE ancestor_id = $1 AND descendant_id = $2")
            .bind(ancestor.0).bind(descendant.0).fetch_optional(p).await)?;
        Ok(d.map(|d| i64::from(d.0)))
    }

    /// Accounts in `ancestor`'s subtree (excluding itself), by id, one page at a time.
    pub async fn descendants(
        &self,
        ancestor: AccountId,
        f: &AccountFilter,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<Account>> {
        self.list_below(ancestor, f, after, limit, false).await
    }

    /// Direct children of `vendor`.
    pub async fn children(
        &self,
        vendor: AccountId,
        f: &AccountFilter,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<Account>> {
        self.list_below(vendor, f, after, limit, true).await
    }

    async fn list_below(
        &self,
        root: AccountId,
        f: &AccountFilter,
        after: Option<i64>,
        limit: i64,
        children_only: bool,
    ) -> StoreResult<Page<Account>> {
        let max_depth = if children_only {
            1
        } else {
            f.max_depth.map(i64::from).unwrap_or(i64::from(i32::MAX))
        };
        let pattern = f
            .name_contains
            .as_ref()
            .map(|n| format!("%{}%", escape_like(&n.to_lowercase())));
        let sql = format!(
            "SELECT {COLUMNS} FROM account_closure c JOIN accounts a ON a.id = c.descendant_id
             WHERE c.ancestor_id = $1 AND c.depth > 0 AND c.depth <= $2 AND c.descendant_id > $3
               AND ($4 IS NULL OR a.kind = $4) AND ($5 IS NULL OR a.status = $5)
               AND ($6 IS NULL OR LOWER(a.name) LIKE $6 ESCAPE '\\')
             ORDER BY c.descendant_id LIMIT $7"
        );
        let kind = f.kind.map(|k| k.as_str());
        let status = f.status.map(|s| s.as_str());
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql)
            .bind(root.0).bind(max_depth).bind(after.unwrap_or(0)).bind(kind).bind(status).bind(&pattern).bind(limit + 1)
            .fetch_all(p).await)?;
        Ok(Page::from_rows(rows_to_accounts(rows)?, limit, |a| a.id.0))
    }

    /// The vendors above `id`, nearest first, ending with the provider.
    pub async fn vendor_chain(&self, id: AccountId) -> StoreResult<Vec<Account>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM account_closure c JOIN accounts a ON a.id = c.ancestor_id
             WHERE c.descendant_id = $1 AND c.depth > 0 ORDER BY c.depth"
        );
        let rows: Vec<Row> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_all(p).await)?;
        rows_to_accounts(rows)
    }

    /// Number of accounts in `ancestor`'s subtree, itself excluded.
    pub async fn count_descendants(&self, ancestor: AccountId) -> StoreResult<i64> {
        let (n,): (i64,) = on_db!(self.0, p => sqlx::query_as(
            "SELECT COUNT(*) FROM account_closure WHERE ancestor_id = $1 AND depth > 0").bind(ancestor.0).fetch_one(p).await)?;
        Ok(n)
    }

    /// Write the profile fields of `a` (name, contact, country, language, class).
    pub async fn update(tx: &mut Tx, a: &Account, now: Timestamp) -> StoreResult<Account> {
        crate::auth::auth_changed();
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE accounts SET name = $2, email = $3, phone = $4, address_line1 = $5, address_line2 = $6, city = $7,
                postal_code = $8, tax_id = $9, country = $10, language = $11, customer_class_id = $12, updated_at = $13
             WHERE id = $1")
            .bind(a.id.0)
            .bind(&a.name)
            .bind(a.contact.email.as_ref().map(|e| e.as_str()))
            .bind(a.contact.phone.as_ref().map(|e| e.as_str()))
            .bind(&a.contact.address_line1)
            .bind(&a.contact.address_line2)
            .bind(&a.contact.city)
            .bind(&a.contact.postal_code)
            .bind(&a.contact.tax_id)
            .bind(a.country.as_str())
            .bind(a.language.as_str())
            .bind(a.customer_class_id.map(|c| c.0))
            .bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Self::get_in(tx, a.id).await
    }

    pub async fn set_status(
        tx: &mut Tx,
        id: AccountId,
        status: AccountStatus,
        now: Timestamp,
    ) -> StoreResult<Account> {
        crate::auth::auth_changed();
        on_tx!(tx, c => sqlx::query("UPDATE accounts SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(id.0).bind(status.as_str()).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Self::get_in(tx, id).await
    }

    /// Whether a customer class exists and belongs to `owner`.
    pub async fn customer_class_owned_by(
        &self,
        class: CustomerClassId,
        owner: AccountId,
    ) -> StoreResult<bool> {
        let r: Option<(i64,)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT id FROM customer_classes WHERE id = $1 AND owner_account_id = $2").bind(class.0).bind(owner.0).fetch_optional(p).await)?;
        Ok(r.is_some())
    }

    pub async fn create_customer_class(
        tx: &mut Tx,
        owner: AccountId,
        name: &str,
        now: Timestamp,
    ) -> StoreResult<CustomerClassId> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO customer_classes (owner_account_id, name, created_at) VALUES ($1, $2, $3) RETURNING id")
            .bind(owner.0).bind(name).bind(now.0).fetch_one(c).await)?;
        Ok(CustomerClassId(id))
    }
}

/// Escape `%`, `_` and the escape character itself for a `LIKE … ESCAPE '\'` pattern.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// One account of a bulk load (benchmarks, imports). Accounts must come after their vendor.
#[derive(Debug, Clone)]
pub struct BulkAccount {
    pub id: i64,
    pub kind: AccountKind,
    pub vendor_id: Option<i64>,
    pub name: String,
}

/// Load many accounts at once with multi-row inserts, closure rows computed in memory.
/// Meant for an empty tree (benchmarks and imports): ids are given, and on PostgreSQL
/// the identity sequence is moved past them afterwards. `progress` is called with the
/// number of accounts written so far.
pub async fn bulk_load(
    db: &Db,
    accounts: &[BulkAccount],
    country: &str,
    language: &str,
    currency: &str,
    now: Timestamp,
    progress: impl Fn(usize),
) -> StoreResult<()> {
    use std::collections::HashMap;
    let mut ancestors: HashMap<i64, Vec<i64>> = HashMap::with_capacity(accounts.len());
    const CHUNK: usize = 500;
    let mut written = 0;
    for chunk in accounts.chunks(CHUNK) {
        let mut closure: Vec<(i64, i64, i32)> = Vec::with_capacity(chunk.len() * 5);
        let mut depths = Vec::with_capacity(chunk.len());
        for a in chunk {
            let mut chain = match a.vendor_id {
                Some(v) => ancestors.get(&v).cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!("vendor {v} of {} not loaded first", a.id))
                })?,
                None => Vec::new(),
            };
            if let Some(v) = a.vendor_id {
                chain.insert(0, v);
            }
            closure.push((a.id, a.id, 0));
            for (i, anc) in chain.iter().enumerate() {
                closure.push((*anc, a.id, i as i32 + 1));
            }
            depths.push(chain.len() as i32);
            ancestors.insert(a.id, chain);
        }
        let mut tx = db.begin().await?;
        on_tx!(&mut tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO accounts (id, kind, vendor_id, name, country, language, currency, status, depth, created_at, updated_at) ");
            qb.push_values(chunk.iter().zip(&depths), |mut b, (a, d)| {
                b.push_bind(a.id).push_bind(a.kind.as_str()).push_bind(a.vendor_id).push_bind(&a.name).push_bind(country)
                    .push_bind(language).push_bind(currency).push_bind("active").push_bind(*d).push_bind(now.0).push_bind(now.0);
            });
            qb.build().execute(&mut *c).await.map(|r| r.rows_affected())
        })?;
        for part in closure.chunks(3000) {
            on_tx!(&mut tx, c => {
                let mut qb = sqlx::QueryBuilder::new("INSERT INTO account_closure (ancestor_id, descendant_id, depth) ");
                qb.push_values(part, |mut b, (anc, desc, d)| {
                    b.push_bind(*anc).push_bind(*desc).push_bind(*d);
                });
                qb.build().execute(&mut *c).await.map(|r| r.rows_affected())
            })?;
        }
        tx.commit().await?;
        written += chunk.len();
        progress(written);
    }
    if let Db::Postgres(p) = db {
        sqlx::query("SELECT setval(pg_get_serial_sequence('accounts', 'id'), (SELECT MAX(id) FROM accounts))").execute(p).await?;
        sqlx::query("ANALYZE accounts").execute(p).await?;
        sqlx::query("ANALYZE account_closure").execute(p).await?;
    } else if let Db::Sqlite { write, .. } = db {
        sqlx::query("ANALYZE").execute(write).await?;
    }
    Ok(())
}

//! Billing-screen visibility: each seller's own choice (or none, to inherit), and the
//! chain of choices from an account up to the provider that the domain's
//! [`resolve`](cascade_domain::billing::visibility::resolve) turns into the effective
//! setting. One indexed query walks the chain through the closure table.

use crate::{Db, StoreResult, Tx, on_db, on_tx};
use cascade_domain::billing::visibility::{BillingScreens, Resolved, resolve};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;

pub struct BillingVisibility<'a>(pub &'a Db);

/// Generation of the billing-screen choices, process-wide: [`BillingVisibility::set_own`]
/// bumps it, so a cache of effective settings (the panels' `catalog_cache`) can discard
/// entries read before a seller changed its choice. Like `auth::auth_generation`, it does
/// not see writes by other processes.
static VISIBILITY_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The current generation (see [`VISIBILITY_GENERATION`]).
pub fn visibility_generation() -> u64 {
    VISIBILITY_GENERATION.load(std::sync::atomic::Ordering::Acquire)
}

impl Db {
    pub fn billing_visibility(&self) -> BillingVisibility<'_> {
        BillingVisibility(self)
    }
}

type Row = (i64, Option<bool>, Option<bool>, Option<bool>);

fn screens(r: &Row) -> Option<BillingScreens> {
    match (r.1, r.2, r.3) {
        (Some(invoices), Some(payments), Some(balance)) => Some(BillingScreens {
            invoices,
            payments,
            balance,
        }),
        _ => None,
    }
}

impl BillingVisibility<'_> {
    /// The account's own choice, if it made one.
    pub async fn own(&self, account: AccountId) -> StoreResult<Option<BillingScreens>> {
        let r: Option<Row> = on_db!(self.0, p => sqlx::query_as(
            "SELECT account_id, invoices, payments, balance FROM billing_visibility WHERE account_id = $1")
            .bind(account.0).fetch_optional(p).await)?;
        Ok(r.as_ref().and_then(screens))
    }

    /// The own choices from `account` up to the provider, nearest first (`None` where an
    /// account inherits).
    pub async fn chain(
        &self,
        account: AccountId,
    ) -> StoreResult<Vec<(AccountId, Option<BillingScreens>)>> {
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(
            "SELECT c.ancestor_id, v.invoices, v.payments, v.balance
             FROM account_closure c LEFT JOIN billing_visibility v ON v.account_id = c.ancestor_id
             WHERE c.descendant_id = $1 ORDER BY c.depth")
            .bind(account.0).fetch_all(p).await)?;
        Ok(rows.iter().map(|r| (AccountId(r.0), screens(r))).collect())
    }

    /// What applies to `account` (and, for a customer, what it sees) and whose choice it is.
    pub async fn effective(&self, account: AccountId) -> StoreResult<Resolved<AccountId>> {
        Ok(resolve(&self.chain(account).await?))
    }

    /// Set the account's own choice (`None`: drop it and inherit again). Returns whether
    /// anything changed.
    pub async fn set_own(
        tx: &mut Tx,
        account: AccountId,
        choice: Option<BillingScreens>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        VISIBILITY_GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let n = match choice {
            Some(s) => on_tx!(tx, c => sqlx::query(
                "INSERT INTO billing_visibility (account_id, invoices, payments, balance, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account_id) DO UPDATE SET invoices = excluded.invoices, payments = excluded.payments,
                   balance = excluded.balance, updated_at = excluded.updated_at")
                .bind(account.0).bind(s.invoices).bind(s.payments).bind(s.balance).bind(now.0)
                .execute(c).await.map(|r| r.rows_affected()))?,
            None => {
                on_tx!(tx, c => sqlx::query("DELETE FROM billing_visibility WHERE account_id = $1")
                .bind(account.0).execute(c).await.map(|r| r.rows_affected()))?
            }
        };
        Ok(n > 0)
    }
}

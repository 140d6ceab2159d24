//! References the database does not check on every insert, checked as a whole instead.
//!
//! On PostgreSQL, migration 22 drops the foreign keys of the billing run's high-volume
//! rows — BO orders (account, vendor, subscription) and invoice lines (document). A
//! foreign key check there is a query per row (PostgreSQL runs each through its
//! executor and locks the parent row): by `perf`, a third of the server's CPU in a
//! billing run, for rows whose parents the same transaction has just read or written.
//! Parents are never deleted (accounts, subscriptions and documents are closed, cancelled
//! or terminated, never removed), so a dangling reference could only come from a bug.
//! [`dangling_references`] finds such rows in one pass; the scenario tests call it next
//! to the books-balance invariant, and `cascade bench billing` after its run. SQLite keeps
//! these foreign keys (its checks are one index probe each, and dropping one means
//! rebuilding the table).

use crate::{Db, StoreResult, on_db};

/// Each reference and the query counting the rows that break it.
const CHECKS: [(&str, &str); 4] = [
    (
        "orders.account_id",
        "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = o.account_id)",
    ),
    (
        "orders.vendor_id",
        "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = o.vendor_id)",
    ),
    (
        "orders.subscription_id",
        "SELECT COUNT(*) FROM orders o WHERE o.subscription_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = o.subscription_id)",
    ),
    (
        "document_lines.document_id",
        "SELECT COUNT(*) FROM document_lines l WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = l.document_id)",
    ),
];

/// Rows whose reference points nowhere, per reference (`table.column`, count); empty
/// when every reference holds. Reads whole tables: for tests, benches and maintenance.
pub async fn dangling_references(db: &Db) -> StoreResult<Vec<(&'static str, i64)>> {
    let mut out = Vec::new();
    for (what, sql) in CHECKS {
        let (n,): (i64,) = on_db!(db, p => sqlx::query_as(sql).fetch_one(p).await)?;
        if n > 0 {
            out.push((what, n));
        }
    }
    Ok(out)
}

//! Cascade's storage layer.
//!
//! One schema on two backends: SQLite, the embedded default (one file, zero set-up), and
//! PostgreSQL for production. Queries are written once in the SQL subset both accept
//! (`$1` placeholders, `RETURNING`, partial indexes) and run through [`on_db!`] /
//! [`on_tx!`], which compile each query for both drivers; backend-specific SQL (task
//! claiming with `FOR UPDATE SKIP LOCKED`, bulk loads) is kept in the few places that
//! need it and marked as such.
//!
//! Money columns are integers in minor units and times are microseconds since the Unix
//! epoch (UTC) in `BIGINT` columns, because sqlx decodes neither decimals on SQLite nor
//! `TIMESTAMPTZ` through a shared type; an integer is exact and identical on both.
//!
//! Interfaces are small and per aggregate ([`accounts::Accounts`], [`users::Users`],
//! [`auth::Auth`], [`tasks::Tasks`], …) rather than one trait with many methods.

pub mod accounts;
pub mod auth;
pub mod billing_batch;
pub mod billing_visibility;
pub mod collections;
pub mod connectors;
pub mod credit;
pub mod db;
pub mod documents;
pub mod events;
pub mod holds;
pub mod idempotency;
pub mod integrity;
pub mod migrate;
pub mod money_figures;
pub mod notifications;
pub mod plans;
pub mod resources;
pub mod sales_categories;
pub mod schema;
pub mod seller_lists;
pub mod subscriptions;
pub mod tasks;
pub mod usage;
pub mod users;
pub mod wholesale;

pub use db::{Backend, Db, Tx};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or similar rule of the data was violated; `what` names it.
    #[error("conflict: {what}")]
    Conflict { what: String },
    /// Stored data failed to parse into a domain type: a bug or a manual edit.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("migration: {0}")]
    Migration(String),
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict {
                what: d
                    .constraint()
                    .map(str::to_string)
                    .unwrap_or_else(|| unique_target(d.message())),
            },
            _ => StoreError::Database(e),
        }
    }
}

/// SQLite reports unique violations as "UNIQUE constraint failed: users.login" without a
/// constraint name; keep the column list so callers can tell which rule was hit.
fn unique_target(message: &str) -> String {
    message.rsplit(": ").next().unwrap_or(message).to_string()
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a cursor-paginated list. `next` is the cursor for the following page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

impl<T> Page<T> {
    /// Build a page from rows fetched with `LIMIT limit + 1`, keyed by `key`.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> i64) -> Self {
        let limit = limit.max(0) as usize;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Page { items: rows, next }
    }
}

//! Connection pools and transactions for both backends.

use crate::{StoreError, StoreResult, migrate};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A handle on the database. Cheap to clone.
///
/// SQLite allows one writer at a time; rather than let concurrent write transactions
/// fail with `SQLITE_BUSY` when they upgrade from read to write, writes go through a
/// pool of exactly one connection and reads through a separate pool (WAL lets readers
/// run alongside the writer).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres(PgPool),
}

/// A write transaction on either backend.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// SQL statements run through [`on_db!`] and [`on_tx!`] in this process (a relaxed
/// counter: the benchmarks print statements per page or per reading from it).
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many statements the store has run in this process (see [`STATEMENTS`]).
pub fn statements() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

#[doc(hidden)]
pub fn count_statement() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Run `$body` with `$c` bound to the read pool of whichever backend `$db` is.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $c:ident => $body:expr) => {{
        $crate::db::count_statement();
        match $db {
            $crate::Db::Sqlite { read: $c, .. } => $body,
            $crate::Db::Postgres($c) => $body,
        }
    }};
}

/// Run `$body` with `$c` bound to the connection of transaction `$tx`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {{
        $crate::db::count_statement();
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    }};
}

/// Appends bind parameter `n` (1-based) of a generated statement: `$n` on PostgreSQL,
/// `?` on SQLite. For statements with many parameters (multi-row inserts, long `IN`
/// lists) only: sqlx binds every *named* SQLite parameter (`$n`) by asking SQLite for
/// its name, a linear search, so a statement of n parameters costs O(n²) to bind (49 %
/// of a usage collection's CPU at 6,000 parameters a statement). Positional `?` are
/// bound in textual order, so the statement must bind its values in the order its
/// placeholders appear, and use no `$n` besides.
pub fn push_param(backend: Backend, n: usize, sql: &mut String) {
    use std::fmt::Write;
    match backend {
        Backend::Sqlite => sql.push('?'),
        Backend::Postgres => {
            let _ = write!(sql, "${n}");
        }
    }
}

/// Appends `(p, p, …), (p, …), …`: `rows` tuples of `width` parameters, numbered from 1
/// (see [`push_param`]).
pub fn push_param_rows(backend: Backend, rows: usize, width: usize, sql: &mut String) {
    for i in 0..rows {
        sql.push_str(if i > 0 { ", (" } else { "(" });
        for j in 0..width {
            if j > 0 {
                sql.push_str(", ");
            }
            push_param(backend, i * width + j + 1, sql);
        }
        sql.push(')');
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// PostgreSQL: `search_path` to use (tests put each run in its own schema).
    pub pg_schema: Option<String>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            pg_schema: None,
        }
    }
}

impl Db {
    /// Connect to `sqlite://path` or `postgres://…`. SQLite files are created when absent.
    pub async fn connect(url: &str, settings: &PoolSettings) -> StoreResult<Db> {
        if url.starts_with("sqlite:") {
            // `row_buffer_size`: sqlx runs each SQLite connection on a thread of its own
            // and hands rows to the async caller over a channel. With its default of 50
            // rows, a query returning thousands (a billing batch's subscriptions, the ids
            // a multi-row insert returns) made the two threads wake each other every few
            // rows; with room for a batch's rows the worker runs through and the caller
            // drains them in one go (1M-subscription billing run: 6,854 -> 10,509 subs/s,
            // 219 -> 104 µs of CPU per subscription).
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-65536")
                .row_buffer_size(4096);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await?;
            // Readers keep a smaller page cache than the writer: the pool has up to
            // `max_connections` of them, and at 64 MiB each they held most of a 1 GiB
            // peak in a 1M-subscription billing run (the OS caches the file anyway).
            let read = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.max(2))
                .connect_with(opts.read_only(false).pragma("cache_size", "-16384"))
                .await?;
            Ok(Db::Sqlite { read, write })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // JIT compilation is off for this application's sessions: its statements are
            // short OLTP ones, many planned generically over array parameters whose
            // estimated cost crosses `jit_above_cost`, and compiling them cost more than
            // running them (a third of PostgreSQL's CPU in a billing run, by `perf`).
            let mut opts = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
            if let Some(schema) = &settings.pg_schema {
                opts = opts.options([("search_path", schema.as_str())]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::Migration(format!(
                "unsupported database URL scheme in `{}`: use sqlite://… or postgres://…",
                redact_url(url)
            )))
        }
    }

    /// Connect and bring the schema up to date.
    pub async fn connect_and_migrate(url: &str, settings: &PoolSettings) -> StoreResult<Db> {
        let db = Db::connect(url, settings).await?;
        migrate::run(&db).await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Start a write transaction.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin().await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Cheap liveness query for `/readyz`.
    pub async fn ping(&self) -> StoreResult<()> {
        on_db!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
    pub async fn rollback(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// A database URL with any password replaced, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/... → scheme://user:***@host/...
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::{Backend, push_param_rows, redact_url};

    #[test]
    fn parameters_per_backend() {
        let mut s = String::new();
        push_param_rows(Backend::Postgres, 2, 3, &mut s);
        assert_eq!(s, "($1, $2, $3), ($4, $5, $6)");
        let mut s = String::new();
        push_param_rows(Backend::Sqlite, 2, 2, &mut s);
        assert_eq!(s, "(?, ?), (?, ?)");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert!(!redact_url("postgresql://admin:hunter2@db/x").contains("hunter2"));
    }
}

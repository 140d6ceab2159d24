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

/// Run `$body` with `$c` bound to the read pool of whichever backend `$db` is.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite { read: $c, .. } => $body,
            $crate::Db::Postgres($c) => $body,
        }
    };
}

/// Run `$body` with `$c` bound to the connection of transaction `$tx`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
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
    };
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
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-65536");
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.max(2))
                .connect_with(opts.read_only(false))
                .await?;
            Ok(Db::Sqlite { read, write })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut opts = PgConnectOptions::from_str(url)?;
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
    use super::redact_url;

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

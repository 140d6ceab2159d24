//! The task queue.
//!
//! Claiming differs per backend, deliberately and only here: PostgreSQL uses
//! `FOR UPDATE SKIP LOCKED` so several worker processes share the queue without
//! blocking each other; SQLite has one writer, so a plain `UPDATE … RETURNING` inside the
//! single write connection is already exclusive (one process). A claimed task carries a
//! lease (`locked_until`); a worker that dies mid-task leaves a lease that expires, and
//! the task is claimed again.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, EventId, TaskId};
use cascade_domain::task::{AfterFailure, TaskState};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct NewTask {
    pub kind: String,
    pub account_id: Option<AccountId>,
    pub event_id: Option<EventId>,
    pub payload: Value,
    pub max_attempts: u32,
    pub run_at: Option<Timestamp>,
}

impl NewTask {
    pub fn new(kind: impl Into<String>, account_id: Option<AccountId>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            account_id,
            event_id: None,
            payload,
            max_attempts: 8,
            run_at: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    pub kind: String,
    pub event_id: Option<EventId>,
    pub account_id: Option<AccountId>,
    pub payload: Value,
    pub state: TaskState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    event_id: Option<i64>,
    account_id: Option<i64>,
    payload: String,
    state: String,
    attempts: i32,
    max_attempts: i32,
    run_at: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

const COLUMNS: &str = "id, kind, event_id, account_id, payload, state, attempts, max_attempts, run_at, last_error, created_at, updated_at, finished_at";

impl TryFrom<Row> for Task {
    type Error = StoreError;
    fn try_from(r: Row) -> StoreResult<Task> {
        Ok(Task {
            id: TaskId(r.id),
            kind: r.kind,
            event_id: r.event_id.map(EventId),
            account_id: r.account_id.map(AccountId),
            payload: serde_json::from_str(&r.payload)
                .map_err(|e| StoreError::Corrupt(format!("task {}: payload: {e}", r.id)))?,
            state: r
                .state
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("task {}: {e}", r.id)))?,
            attempts: r.attempts.max(0) as u32,
            max_attempts: r.max_attempts.max(0) as u32,
            run_at: Timestamp(r.run_at),
            last_error: r.last_error,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
            finished_at: r.finished_at.map(Timestamp),
        })
    }
}

fn to_tasks(rows: Vec<Row>) -> StoreResult<Vec<Task>> {
    rows.into_iter().map(Task::try_from).collect()
}

/// Filters for the task list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub kind: Option<String>,
    /// Only tasks of this account.
    pub account_id: Option<AccountId>,
}

pub struct Tasks<'a>(pub &'a Db);

impl Db {
    pub fn tasks(&self) -> Tasks<'_> {
        Tasks(self)
    }
}

impl Tasks<'_> {
    pub async fn enqueue(tx: &mut Tx, t: NewTask, now: Timestamp) -> StoreResult<TaskId> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO tasks (kind, event_id, account_id, payload, state, attempts, max_attempts, run_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $7) RETURNING id")
            .bind(&t.kind).bind(t.event_id.map(|e| e.0)).bind(t.account_id.map(|a| a.0)).bind(t.payload.to_string())
            .bind(t.max_attempts as i32).bind(t.run_at.unwrap_or(now).0).bind(now.0).fetch_one(c).await)?;
        Ok(TaskId(id))
    }

    /// Claim up to `limit` runnable tasks for `worker`: pending and due, or running with
    /// an expired lease. Each claim counts as an attempt.
    pub async fn claim(
        &self,
        worker: &str,
        now: Timestamp,
        limit: i64,
        lease_secs: i64,
    ) -> StoreResult<Vec<Task>> {
        let mut tx = self.0.begin().await?;
        let lock = match self.0 {
            Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Db::Sqlite { .. } => "",
        };
        let sql = format!(
            "UPDATE tasks SET state = 'running', attempts = attempts + 1, locked_by = $1, locked_until = $2, updated_at = $3
             WHERE id IN (SELECT id FROM tasks
                          WHERE (state = 'pending' AND run_at <= $3) OR (state = 'running' AND locked_until < $3)
                          ORDER BY run_at, id LIMIT $4{lock})
             RETURNING {COLUMNS}"
        );
        let rows: Vec<Row> = on_tx!(&mut tx, c => sqlx::query_as(&sql).bind(worker).bind(now.plus_secs(lease_secs).0).bind(now.0).bind(limit).fetch_all(c).await)?;
        tx.commit().await?;
        let mut tasks = to_tasks(rows)?;
        tasks.sort_by_key(|t| (t.run_at, t.id));
        Ok(tasks)
    }

    pub async fn complete(&self, id: TaskId, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE tasks SET state = 'done', last_error = NULL, locked_by = NULL, locked_until = NULL, updated_at = $2, finished_at = $2 WHERE id = $1 AND state = 'running'")
            .bind(id.0).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await
    }

    /// Record a failed attempt: back to pending at the retry time, or failed for good.
    pub async fn fail(
        &self,
        id: TaskId,
        error: &str,
        after: AfterFailure,
        now: Timestamp,
    ) -> StoreResult<()> {
        let error: String = error.chars().take(2000).collect();
        let mut tx = self.0.begin().await?;
        match after {
            AfterFailure::RetryAt(at) => on_tx!(&mut tx, c => sqlx::query(
                "UPDATE tasks SET state = 'pending', run_at = $2, last_error = $3, locked_by = NULL, locked_until = NULL, updated_at = $4 WHERE id = $1 AND state = 'running'")
                .bind(id.0).bind(at.0).bind(&error).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?,
            AfterFailure::GiveUp => on_tx!(&mut tx, c => sqlx::query(
                "UPDATE tasks SET state = 'failed', last_error = $2, locked_by = NULL, locked_until = NULL, updated_at = $3, finished_at = $3 WHERE id = $1 AND state = 'running'")
                .bind(id.0).bind(&error).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?,
        };
        tx.commit().await
    }

    /// Cancel a task that has not finished. Returns false when it was already final.
    pub async fn cancel(tx: &mut Tx, id: TaskId, now: Timestamp) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE tasks SET state = 'cancelled', locked_by = NULL, locked_until = NULL, updated_at = $2, finished_at = $2 WHERE id = $1 AND state IN ('pending', 'running')")
            .bind(id.0).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Put a failed or cancelled task back in the queue with a fresh set of attempts.
    pub async fn retry(tx: &mut Tx, id: TaskId, now: Timestamp) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE tasks SET state = 'pending', attempts = 0, run_at = $2, updated_at = $2, finished_at = NULL WHERE id = $1 AND state IN ('failed', 'cancelled')")
            .bind(id.0).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    pub async fn get(&self, id: TaskId) -> StoreResult<Task> {
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
        let r: Row = on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        r.try_into()
    }

    /// Tasks of accounts in `root`'s subtree (plus, when `include_system`, tasks that
    /// belong to no account), newest first.
    pub async fn list(
        &self,
        root: AccountId,
        include_system: bool,
        f: &TaskFilter,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<Task>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks t WHERE t.id < $1
               AND ($2 IS NULL OR t.state = $2) AND ($3 IS NULL OR t.kind = $3) AND ($4 IS NULL OR t.account_id = $4)
               AND ((t.account_id IS NULL AND $5) OR t.account_id IN (SELECT descendant_id FROM account_closure WHERE ancestor_id = $6))
             ORDER BY t.id DESC LIMIT $7"
        );
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql)
            .bind(before.unwrap_or(i64::MAX)).bind(f.state.map(|s| s.as_str())).bind(&f.kind).bind(f.account_id.map(|a| a.0))
            .bind(include_system).bind(root.0).bind(limit + 1).fetch_all(p).await)?;
        Ok(Page::from_rows(to_tasks(rows)?, limit, |t| t.id.0))
    }

    pub async fn count_by_state(&self, state: TaskState) -> StoreResult<i64> {
        let (n,): (i64,) = on_db!(self.0, p => sqlx::query_as("SELECT COUNT(*) FROM tasks WHERE state = $1").bind(state.as_str()).fetch_one(p).await)?;
        Ok(n)
    }

    /// Delete at most `batch` finished tasks older than `cutoff`; one short transaction.
    pub async fn delete_finished_batch(&self, cutoff: Timestamp, batch: i64) -> StoreResult<u64> {
        let mut tx = self.0.begin().await?;
        let n = on_tx!(&mut tx, c => sqlx::query(
            "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE state IN ('done', 'failed', 'cancelled') AND finished_at < $1 ORDER BY id LIMIT $2)")
            .bind(cutoff.0).bind(batch).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(n)
    }
}

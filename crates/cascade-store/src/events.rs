//! Events: every business state change writes one, in the same transaction as the
//! change. The worker's dispatcher turns pending events into tasks.

use crate::tasks::{NewTask, Tasks};
use crate::{Db, StoreResult, Tx, on_db, on_tx};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::{AccountId, EventId, UserId};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub account_id: Option<AccountId>,
    pub actor_user_id: Option<UserId>,
    pub subject_type: &'static str,
    pub subject_id: i64,
    pub payload: Value,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub kind: String,
    pub account_id: Option<AccountId>,
    pub actor_user_id: Option<UserId>,
    pub subject_type: String,
    pub subject_id: i64,
    pub payload: Value,
    pub state: String,
    pub created_at: Timestamp,
}

type EventTuple = (
    i64,
    String,
    Option<i64>,
    Option<i64>,
    String,
    i64,
    String,
    String,
    i64,
);
const COLUMNS: &str =
    "id, kind, account_id, actor_user_id, subject_type, subject_id, payload, state, created_at";

fn event_from(t: EventTuple) -> Event {
    Event {
        id: EventId(t.0),
        kind: t.1,
        account_id: t.2.map(AccountId),
        actor_user_id: t.3.map(UserId),
        subject_type: t.4,
        subject_id: t.5,
        payload: serde_json::from_str(&t.6).unwrap_or(Value::Null),
        state: t.7,
        created_at: Timestamp(t.8),
    }
}

pub struct Events<'a>(pub &'a Db);

impl Db {
    pub fn events(&self) -> Events<'_> {
        Events(self)
    }
}

impl Events<'_> {
    pub async fn emit(tx: &mut Tx, e: NewEvent, now: Timestamp) -> StoreResult<EventId> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO events (kind, account_id, actor_user_id, subject_type, subject_id, payload, state, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING id")
            .bind(e.kind).bind(e.account_id.map(|a| a.0)).bind(e.actor_user_id.map(|u| u.0)).bind(e.subject_type).bind(e.subject_id)
            .bind(e.payload.to_string()).bind(now.0).fetch_one(c).await)?;
        Ok(EventId(id))
    }

    /// Take up to `limit` pending events, create the tasks `route` asks for, and mark
    /// the events done, all in one transaction. On PostgreSQL the events are locked with
    /// `FOR UPDATE SKIP LOCKED`, so several dispatchers never route one event twice.
    pub async fn dispatch_pending(
        &self,
        limit: i64,
        now: Timestamp,
        route: impl Fn(&Event) -> Vec<NewTask>,
    ) -> StoreResult<usize> {
        let mut tx = self.0.begin().await?;
        let lock = match self.0 {
            Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Db::Sqlite { .. } => "",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE state = 'pending' ORDER BY id LIMIT $1{lock}"
        );
        let rows: Vec<EventTuple> =
            on_tx!(&mut tx, c => sqlx::query_as(&sql).bind(limit).fetch_all(c).await)?;
        let n = rows.len();
        for row in rows {
            let ev = event_from(row);
            for mut t in route(&ev) {
                t.event_id = Some(ev.id);
                Tasks::enqueue(&mut tx, t, now).await?;
            }
            on_tx!(&mut tx, c => sqlx::query("UPDATE events SET state = 'done', finished_at = $2 WHERE id = $1")
                .bind(ev.id.0).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Events of an account, newest first (the account's audit trail).
    pub async fn for_account(
        &self,
        account: AccountId,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<EventTuple> = on_db!(self.0, p => sqlx::query_as(&sql).bind(account.0).bind(before.unwrap_or(i64::MAX)).bind(limit).fetch_all(p).await)?;
        Ok(rows.into_iter().map(event_from).collect())
    }

    pub async fn count_by_state(&self, state: &str) -> StoreResult<i64> {
        let (n,): (i64,) = on_db!(self.0, p => sqlx::query_as("SELECT COUNT(*) FROM events WHERE state = $1").bind(state).fetch_one(p).await)?;
        Ok(n)
    }

    /// Delete at most `batch` finished events older than `cutoff`; one short
    /// transaction per call.
    pub async fn delete_finished_batch(&self, cutoff: Timestamp, batch: i64) -> StoreResult<u64> {
        let mut tx = self.0.begin().await?;
        let n = on_tx!(&mut tx, c => sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE state IN ('done', 'failed', 'cancelled') AND finished_at < $1 ORDER BY id LIMIT $2)")
            .bind(cutoff.0).bind(batch).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(n)
    }
}

//! Stored responses for `Idempotency-Key`. The first request with a key reserves it
//! (unique index on user + key), runs, and stores its response; a repeat with the same
//! request body gets the stored response, with another body a 422.

use crate::{Db, StoreError, StoreResult, on_db};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::UserId;

#[derive(Debug, Clone)]
pub enum Reservation {
    /// The key is new and now reserved for this request.
    Reserved(i64),
    /// Seen before: the stored record.
    Existing(IdempotencyRecord),
}

#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub id: i64,
    pub method: String,
    pub path: String,
    pub request_hash: String,
    /// `None` while the first request is still in flight.
    pub status_code: Option<i32>,
    pub response_body: Option<String>,
    pub response_content_type: Option<String>,
}

pub struct Idempotency<'a>(pub &'a Db);

impl Db {
    pub fn idempotency(&self) -> Idempotency<'_> {
        Idempotency(self)
    }
}

type RecTuple = (
    i64,
    String,
    String,
    String,
    Option<i32>,
    Option<String>,
    Option<String>,
);

impl Idempotency<'_> {
    pub async fn reserve(
        &self,
        user: UserId,
        key: &str,
        method: &str,
        path: &str,
        request_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Reservation> {
        let mut tx = self.0.begin().await?;
        let inserted: Result<(i64,), sqlx::Error> = crate::on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO idempotency_keys (user_id, idem_key, method, path, request_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id")
            .bind(user.0).bind(key).bind(method).bind(path).bind(request_hash).bind(now.0).fetch_one(c).await);
        match inserted {
            Ok((id,)) => {
                tx.commit().await?;
                Ok(Reservation::Reserved(id))
            }
            Err(e) => {
                tx.rollback().await?;
                match StoreError::from(e) {
                    StoreError::Conflict { .. } => {
                        let r: RecTuple = on_db!(self.0, p => sqlx::query_as(
                            "SELECT id, method, path, request_hash, status_code, response_body, response_content_type
                             FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2")
                            .bind(user.0).bind(key).fetch_one(p).await)?;
                        Ok(Reservation::Existing(IdempotencyRecord {
                            id: r.0,
                            method: r.1,
                            path: r.2,
                            request_hash: r.3,
                            status_code: r.4,
                            response_body: r.5,
                            response_content_type: r.6,
                        }))
                    }
                    other => Err(other),
                }
            }
        }
    }

    pub async fn complete(
        &self,
        id: i64,
        status: i32,
        body: &str,
        content_type: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        crate::on_tx!(&mut tx, c => sqlx::query("UPDATE idempotency_keys SET status_code = $2, response_body = $3, response_content_type = $4 WHERE id = $1")
            .bind(id).bind(status).bind(body).bind(content_type).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await
    }

    /// Release a reservation whose request failed with a server error, so it may be retried.
    pub async fn release(&self, id: i64) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        crate::on_tx!(&mut tx, c => sqlx::query("DELETE FROM idempotency_keys WHERE id = $1").bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await
    }

    /// Forget keys older than `before` (kept 24 h by default).
    pub async fn purge_before(&self, before: Timestamp) -> StoreResult<u64> {
        let mut tx = self.0.begin().await?;
        let n = crate::on_tx!(&mut tx, c => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before.0).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(n)
    }
}

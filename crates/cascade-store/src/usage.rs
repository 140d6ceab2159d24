//! Usage records imported for pay-as-you-go and measurable resources.
//!
//! Idempotent per record id: importing the same record again (same id, same content) is
//! a no-op; the same id with other content is a conflict and nothing of the batch is
//! written. Records are billed by the daily run; a record that arrives for a period
//! already invoiced is billed as an adjustment on the next invoice, never by changing
//! an issued one.

use crate::{Db, StoreError, StoreResult, Tx, on_tx};
use cascade_domain::clock::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsage {
    pub external_id: String,
    pub rate_uid: String,
    pub quantity: i64,
    pub usage_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub inserted: usize,
    pub already_present: usize,
}

pub struct Usage<'a>(pub &'a Db);

impl Db {
    pub fn usage(&self) -> Usage<'_> {
        Usage(self)
    }
}

impl Usage<'_> {
    /// Import a batch for one subscription, all or nothing.
    pub async fn import(
        tx: &mut Tx,
        subscription: i64,
        records: &[NewUsage],
        now: Timestamp,
    ) -> StoreResult<ImportReport> {
        let mut report = ImportReport::default();
        for r in records {
            let existing: Option<(String, i64, String)> = on_tx!(tx, c => sqlx::query_as(
                "SELECT rate_uid, quantity, usage_date FROM usage_records WHERE subscription_id = $1 AND external_id = $2")
                .bind(subscription).bind(&r.external_id).fetch_optional(c).await)?;
            match existing {
                Some((rate, qty, date))
                    if rate == r.rate_uid && qty == r.quantity && date == r.usage_date =>
                {
                    report.already_present += 1
                }
                Some(_) => {
                    return Err(StoreError::Conflict {
                        what: format!(
                            "usage record `{}` was already imported with other values",
                            r.external_id
                        ),
                    });
                }
                None => {
                    on_tx!(tx, c => sqlx::query(
                        "INSERT INTO usage_records (subscription_id, external_id, rate_uid, quantity, usage_date, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(subscription).bind(&r.external_id).bind(&r.rate_uid).bind(r.quantity).bind(&r.usage_date).bind(now.0)
                        .execute(c).await.map(|x| x.rows_affected()))?;
                    report.inserted += 1;
                }
            }
        }
        Ok(report)
    }
}

impl Usage<'_> {
    /// Record readings collected from connectors, many subscriptions at once, in
    /// multi-row inserts. Idempotent per (subscription, record id) like [`Usage::import`],
    /// but the **first reading of a record id wins**: a level read again later the same
    /// day is not a conflict, it is already recorded (connectors are read, not trusted
    /// to resend the same value). Returns how many were new.
    pub async fn record_collected(
        tx: &mut Tx,
        records: &[(i64, NewUsage)],
        now: Timestamp,
    ) -> StoreResult<usize> {
        let mut inserted = 0usize;
        // 6 parameters a row; SQLite allows 32766 per statement.
        for chunk in records.chunks(1000) {
            let mut sql = String::from(
                "INSERT INTO usage_records (subscription_id, external_id, rate_uid, quantity, usage_date, created_at) VALUES ",
            );
            // Bound in placeholder order (`push_param_rows`: `?` on SQLite).
            crate::db::push_param_rows(tx.backend(), chunk.len(), 6, &mut sql);
            sql.push_str(" ON CONFLICT (subscription_id, external_id) DO NOTHING");
            let n = on_tx!(tx, c => {
                let mut q = sqlx::query(&sql);
                for (sub, r) in chunk {
                    q = q.bind(*sub).bind(&r.external_id).bind(&r.rate_uid).bind(r.quantity).bind(&r.usage_date).bind(now.0);
                }
                q.execute(c).await.map(|x| x.rows_affected())
            })?;
            inserted += n as usize;
        }
        Ok(inserted)
    }
}

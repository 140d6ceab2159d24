//! The daily events cleanup (domain §6): finished, failed and cancelled tasks and
//! events older than the retention are deleted.
//!
//! Deletion runs in bounded batches, one short transaction each, so the cleanup never
//! holds a long lock on tables the dispatcher and the web server write to, and a large
//! backlog (the first run after an outage) drains without one huge transaction. Tasks go
//! first: they reference events (`ON DELETE SET NULL`), so deleting events first would
//! rewrite task rows that are about to be deleted anyway. Pending and running items are
//! never touched, however old: only the store's finished states qualify.

use cascade_domain::clock::Timestamp;
use cascade_store::{Db, StoreError};

/// What a cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupStats {
    pub tasks_removed: u64,
    pub events_removed: u64,
    /// Delete transactions run, over both tables, including each table's last (short
    /// or empty) batch.
    pub batches: u64,
}

/// Delete finished tasks, then finished events, that finished before
/// `now - retention_days`, `batch` rows per transaction, until a batch removes fewer
/// than `batch`.
pub async fn events_cleanup(
    db: &Db,
    now: Timestamp,
    retention_days: i64,
    batch: i64,
) -> Result<CleanupStats, StoreError> {
    let cutoff = now.minus_days(retention_days);
    let batch = batch.max(1);
    let mut stats = CleanupStats::default();
    loop {
        let n = db.tasks().delete_finished_batch(cutoff, batch).await?;
        stats.batches += 1;
        stats.tasks_removed += n;
        if n < batch as u64 {
            break;
        }
    }
    loop {
        let n = db.events().delete_finished_batch(cutoff, batch).await?;
        stats.batches += 1;
        stats.events_removed += n;
        if n < batch as u64 {
            break;
        }
    }
    tracing::info!(
        tasks_removed = stats.tasks_removed,
        events_removed = stats.events_removed,
        batches = stats.batches,
        cutoff = cutoff.0,
        retention_days,
        "events cleanup finished"
    );
    Ok(stats)
}

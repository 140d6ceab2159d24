//! Worker settings. The defaults suit one embedded worker next to the web server; the
//! CLI maps its configuration file onto this struct.

use cascade_domain::task::RetryPolicy;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Written into `tasks.locked_by`; only for diagnostics (the lease, not the name,
    /// keeps two workers off one task), but set it per host when several run.
    pub worker_id: String,
    /// Events dispatched and tasks claimed per round.
    pub batch: i64,
    /// How long a claimed task is reserved; after that another worker may take it over,
    /// so it must exceed the longest expected run of a handler.
    pub lease_secs: i64,
    /// Pause between rounds when a round found nothing to do.
    pub poll_interval: Duration,
    /// Back-off shape; the number of attempts comes from each task (`max_attempts`).
    pub retry: RetryPolicy,
    /// Finished events and tasks older than this many days are deleted daily.
    pub cleanup_retention_days: i64,
    /// Rows deleted per cleanup transaction, so the cleanup never holds a long lock.
    pub cleanup_batch: i64,
    /// Run the daily billing run once per UTC day, in the background of this worker.
    pub daily_billing: bool,
    /// Collect usage from connector instances once per UTC day.
    pub usage_collection: bool,
    /// Per-instance limit of one usage collection.
    pub usage_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", std::process::id()),
            batch: 32,
            lease_secs: 300,
            poll_interval: Duration::from_millis(500),
            retry: RetryPolicy::default(),
            cleanup_retention_days: 90,
            cleanup_batch: 1000,
            daily_billing: false,
            usage_collection: false,
            usage_timeout: Duration::from_secs(120),
        }
    }
}

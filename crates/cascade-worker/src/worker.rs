//! The worker loop: dispatch events, claim tasks, run them, record the outcome.
//!
//! Choices:
//! - **Tasks of one batch run concurrently**, each in its own tokio task, so one slow
//!   handler (a connector that takes seconds) does not hold up the rest of the batch,
//!   and a panicking handler fails its task instead of killing the worker. Tasks carry
//!   no ordering promise (several workers on PostgreSQL would break it anyway).
//! - **Outcomes are recorded after the handler returns**, in their own short
//!   transactions. If recording fails (database gone), the task stays `running` and its
//!   lease expires, so it runs again: at-least-once, which idempotent handlers absorb.
//! - **Graceful shutdown** (the *mini-redis* pattern): the stop signal is looked at
//!   between rounds, never inside one, so an in-flight batch finishes and is recorded
//!   before [`Worker::run`] returns; an idle worker wakes at once on the signal.

use crate::cleanup::events_cleanup;
use crate::config::WorkerConfig;
use crate::handler::{Registry, TaskContext, TaskError};
use crate::routing::route;
use cascade_domain::clock::{Clock, Timestamp};
use cascade_domain::task::{AfterFailure, RetryPolicy};
use cascade_store::tasks::Task;
use cascade_store::{Db, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often the events cleanup runs, and how soon it is tried again after an error.
const CLEANUP_EVERY_SECS: i64 = 24 * 3600;
const CLEANUP_RETRY_SECS: i64 = 3600;

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Events routed (and marked done).
    pub dispatched: usize,
    /// Tasks that succeeded.
    pub done: usize,
    /// Tasks that failed and were put back for a later attempt.
    pub retried: usize,
    /// Tasks that failed for good.
    pub failed: usize,
}

impl RunStats {
    /// Tasks claimed in the round.
    pub fn claimed(&self) -> usize {
        self.done + self.retried + self.failed
    }
    /// Whether the round found nothing at all to do.
    pub fn is_idle(&self) -> bool {
        self.dispatched == 0 && self.claimed() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Retried,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
        }
    }
}

pub struct Worker {
    db: Db,
    clock: Arc<dyn Clock>,
    registry: Registry,
    config: WorkerConfig,
    /// The card gateway of the daily run's automatic charges (none: no automatic charges).
    gateway: Option<Arc<dyn cascade_store::documents::PaymentGateway>>,
}

impl Worker {
    pub fn new(db: Db, clock: Arc<dyn Clock>, registry: Registry, config: WorkerConfig) -> Self {
        Self {
            db,
            clock,
            registry,
            config,
            gateway: None,
        }
    }

    /// Take automatic charges in the daily billing run through `gateway`.
    pub fn with_gateway(
        mut self,
        gateway: Option<Arc<dyn cascade_store::documents::PaymentGateway>>,
    ) -> Self {
        self.gateway = gateway;
        self
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The context handed to handlers.
    pub fn context(&self) -> TaskContext {
        TaskContext {
            db: self.db.clone(),
            clock: self.clock.clone(),
        }
    }

    /// One round: route up to `batch` pending events into tasks, then claim up to `batch`
    /// due tasks, run them and record each outcome. A storage error while recording does
    /// not stop the others from being recorded; the first such error is returned.
    pub async fn run_once(&self) -> Result<RunStats, StoreError> {
        let mut stats = RunStats::default();
        let now = self.clock.now();
        stats.dispatched = self
            .db
            .events()
            .dispatch_pending(self.config.batch, now, route)
            .await?;
        if stats.dispatched > 0 {
            metrics::counter!("cascade_events_dispatched_total").increment(stats.dispatched as u64);
            tracing::debug!(dispatched = stats.dispatched, "events dispatched");
        }

        let tasks = self
            .db
            .tasks()
            .claim(
                &self.config.worker_id,
                self.clock.now(),
                self.config.batch,
                self.config.lease_secs,
            )
            .await?;
        if tasks.is_empty() {
            return Ok(stats);
        }

        let ctx = self.context();
        let mut running = JoinSet::new();
        let mut spawned: HashMap<tokio::task::Id, Task> = HashMap::new();
        let mut results: Vec<(Task, Result<(), TaskError>)> = Vec::with_capacity(tasks.len());
        for task in tasks {
            match self.registry.get(&task.kind) {
                None => {
                    let err =
                        TaskError::permanent(format!("no handler for task kind {}", task.kind));
                    results.push((task, Err(err)));
                }
                Some(handler) => {
                    let ctx = ctx.clone();
                    let t = task.clone();
                    let handle = running.spawn(async move { handler.run(&ctx, &t).await });
                    spawned.insert(handle.id(), task);
                }
            }
        }
        while let Some(joined) = running.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                Err(e) => {
                    // A panic (or abort) fails this attempt like a transient error: the
                    // retry policy bounds how often a buggy handler is tried again.
                    let id = e.id();
                    let msg = if e.is_panic() {
                        format!("handler panicked: {}", panic_message(e.into_panic()))
                    } else {
                        format!("handler aborted: {e}")
                    };
                    (id, Err(TaskError::Retryable(msg)))
                }
            };
            if let Some(task) = spawned.remove(&id) {
                results.push((task, result));
            }
        }

        let mut first_error = None;
        for (task, result) in results {
            match self.record(&task, result).await {
                Ok(Outcome::Done) => stats.done += 1,
                Ok(Outcome::Retried) => stats.retried += 1,
                Ok(Outcome::Failed) => stats.failed += 1,
                Err(e) => {
                    tracing::error!(task_id = %task.id, kind = %task.kind, error = %e, "could not record task outcome; it will run again when its lease expires");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    async fn record(
        &self,
        task: &Task,
        result: Result<(), TaskError>,
    ) -> Result<Outcome, StoreError> {
        let now = self.clock.now();
        let outcome = match result {
            Ok(()) => {
                self.db.tasks().complete(task.id, now).await?;
                tracing::info!(task_id = %task.id, kind = %task.kind, attempt = task.attempts, "task done");
                Outcome::Done
            }
            Err(err) => {
                let after = match &err {
                    TaskError::Permanent(_) => AfterFailure::GiveUp,
                    TaskError::Retryable(_) => RetryPolicy {
                        max_attempts: task.max_attempts,
                        ..self.config.retry
                    }
                    .after_failure(task.attempts, now),
                };
                self.db
                    .tasks()
                    .fail(task.id, err.message(), after, now)
                    .await?;
                match after {
                    AfterFailure::RetryAt(at) => {
                        tracing::warn!(task_id = %task.id, kind = %task.kind, attempt = task.attempts, max_attempts = task.max_attempts, retry_at = at.0, error = %err, "task failed; will retry");
                        Outcome::Retried
                    }
                    AfterFailure::GiveUp => {
                        tracing::error!(task_id = %task.id, kind = %task.kind, attempt = task.attempts, max_attempts = task.max_attempts, permanent = !err.is_retryable(), error = %err, "task failed");
                        Outcome::Failed
                    }
                }
            }
        };
        metrics::counter!("cascade_tasks_total", "kind" => task.kind.clone(), "outcome" => outcome.as_str()).increment(1);
        Ok(outcome)
    }

    /// Run rounds until `shutdown` becomes true (or its sender is dropped). After an idle
    /// round, wait `poll_interval` or until the signal changes. The events cleanup runs
    /// at start-up and then every 24 hours of clock time (an hour after a failure).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker_id = %self.config.worker_id, handlers = ?self.registry.kinds(), "worker started");
        let mut next_cleanup: Option<Timestamp> = None;
        let mut billed_day: Option<chrono::NaiveDate> = None;
        let mut billing: Option<tokio::task::JoinHandle<()>> = None;
        let mut collected_day: Option<chrono::NaiveDate> = None;
        let mut collecting: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = self.clock.now();
            // The daily billing run goes in a task of its own, so tasks (provisioning,
            // notices) keep flowing while it runs; one run at a time.
            if self.config.daily_billing && billing.as_ref().is_none_or(|h| h.is_finished()) {
                let today = chrono::DateTime::from_timestamp_micros(now.0)
                    .map(|d| d.date_naive())
                    .unwrap_or_default();
                if billed_day.is_none_or(|d| d < today) {
                    billed_day = Some(today);
                    let (db, clock) = (self.db.clone(), self.clock.clone());
                    let gateway = self.gateway.clone();
                    billing = Some(tokio::spawn(async move {
                        let opts = crate::billing_run::RunOptions {
                            gateway,
                            ..Default::default()
                        };
                        if let Err(e) =
                            crate::billing_run::run(&db, clock.as_ref(), today, &opts, |_, _| {})
                                .await
                        {
                            tracing::error!(error = %e, %today, "daily billing run failed; re-running it is safe");
                        }
                    }));
                }
            }
            // Usage collection from connectors: once per UTC day, in its own task (each
            // instance in parallel with its own timeout, see `usage_collect`).
            if self.config.usage_collection && collecting.as_ref().is_none_or(|h| h.is_finished()) {
                let today = chrono::DateTime::from_timestamp_micros(now.0)
                    .map(|d| d.date_naive())
                    .unwrap_or_default();
                if collected_day.is_none_or(|d| d < today) {
                    collected_day = Some(today);
                    let (db, clock) = (self.db.clone(), self.clock.clone());
                    let timeout = self.config.usage_timeout;
                    collecting = Some(tokio::spawn(async move {
                        let date = today.format("%Y-%m-%d").to_string();
                        let skew = cascade_domain::connector::DEFAULT_SKEW_SECS;
                        if let Err(e) = crate::usage_collect::collect_all(
                            &db, clock, &date, timeout, skew, None,
                        )
                        .await
                        {
                            tracing::error!(error = %e, %date, "usage collection failed");
                        }
                    }));
                }
            }
            if next_cleanup.is_none_or(|at| now >= at) {
                next_cleanup = Some(
                    match events_cleanup(
                        &self.db,
                        now,
                        self.config.cleanup_retention_days,
                        self.config.cleanup_batch,
                    )
                    .await
                    {
                        Ok(_) => now.plus_secs(CLEANUP_EVERY_SECS),
                        Err(e) => {
                            tracing::error!(error = %e, "events cleanup failed; trying again in an hour");
                            now.plus_secs(CLEANUP_RETRY_SECS)
                        }
                    },
                );
            }
            let idle = match self.run_once().await {
                Ok(stats) => stats.is_idle(),
                Err(e) => {
                    tracing::error!(error = %e, "worker round failed");
                    true
                }
            };
            if *shutdown.borrow() {
                break;
            }
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    changed = shutdown.changed() => {
                        // A dropped sender can never signal again: treat it as the signal.
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        if let Some(h) = collecting {
            // Collection is idempotent per day: an interrupted one is simply done again.
            h.abort();
        }
        if let Some(h) = billing {
            // Stop an in-flight billing run: the account in progress rolls back (one
            // transaction each) and the next start re-runs the day; nothing is charged twice.
            h.abort();
        }
        tracing::info!(worker_id = %self.config.worker_id, "worker stopped");
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

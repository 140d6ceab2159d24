//! Cascade's background worker.
//!
//! Business actions write an **event** in the same transaction as the change; the
//! worker turns events into **tasks** ([`routing`]) and runs tasks with the
//! [`handler::TaskHandler`] registered for their kind ([`worker`]). Two steps rather than
//! "run the work when the event is written" because the event is also the audit trail,
//! and because one event may fan out into several independent tasks that retry on their
//! own schedule.
//!
//! Design choices:
//! - **The queue is the database.** Tasks live in the `tasks` table and are claimed with
//!   a lease ([`cascade_store::tasks`]), so a worker that dies leaves nothing lost and no
//!   broker has to be run next to the database.
//! - **At-least-once, so handlers are idempotent.** A task can run again after a crash,
//!   an expired lease or a retry; every handler must make a second run harmless (see
//!   [`notify`], which will not queue the same mail twice).
//! - **Failures say whether trying again can help** ([`handler::TaskError`]): a transient
//!   failure retries with exponential back-off, a permanent one fails the task at once
//!   instead of burning its attempts.
//! - **Time comes from a [`Clock`](cascade_domain::clock::Clock)**, so back-off and the
//!   retention of the daily cleanup are tested by moving a manual clock, never by sleeping.

pub mod billing_run;
pub mod cleanup;
pub mod collections;
pub mod config;
pub mod connector_service;
pub mod handler;
pub mod notify;
pub mod provision;
pub mod routing;
pub mod tier_billing;
pub mod usage_collect;
pub mod worker;

pub use cleanup::{CleanupStats, events_cleanup};
pub use config::WorkerConfig;
pub use handler::{Registry, TaskContext, TaskError, TaskHandler};
pub use routing::route;
pub use worker::{RunStats, Worker};

//! Task handlers and the registry that maps a task kind to its handler.
//!
//! Handlers are trait objects registered at start-up rather than a `match` on the kind
//! string in the worker loop: each feature module (notifications, provisioning, usage)
//! owns its handlers, and tests register stubs for kinds whose real handlers would call
//! the outside world.

use async_trait::async_trait;
use cascade_domain::clock::Clock;
use cascade_store::tasks::Task;
use cascade_store::{Db, StoreError};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// What a handler gets besides its task: the database and the one source of "now".
#[derive(Clone)]
pub struct TaskContext {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
}

/// Why a task attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Transient (a timeout, a connector answering 503, a lost connection): retried
    /// with back-off until the task's attempts are used up.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (malformed payload, no handler, a refusal): the task fails
    /// at once.
    #[error("{0}")]
    Permanent(String),
}

impl TaskError {
    pub fn retryable(msg: impl fmt::Display) -> Self {
        TaskError::Retryable(msg.to_string())
    }
    pub fn permanent(msg: impl fmt::Display) -> Self {
        TaskError::Permanent(msg.to_string())
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, TaskError::Retryable(_))
    }
    pub fn message(&self) -> &str {
        match self {
            TaskError::Retryable(m) | TaskError::Permanent(m) => m,
        }
    }
}

/// Storage errors are usually transient (connection lost, lock timeout), so they retry;
/// corrupt stored data will not heal by itself, so it fails the task at once.
impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(_) => TaskError::Permanent(format!("storage: {e}")),
            _ => TaskError::Retryable(format!("storage: {e}")),
        }
    }
}

/// The code that performs one kind of task. Runs at least once per task, possibly more
/// (retries, expired leases): implementations must be idempotent.
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// The task kind this handler runs, e.g. `notify.welcome_user`.
    fn kind(&self) -> &'static str;
    async fn run(&self, ctx: &TaskContext, task: &Task) -> Result<(), TaskError>;
}

/// Task kind → handler.
#[derive(Default, Clone)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn TaskHandler>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handlers shipped with the worker (`notify.welcome_user`, `orders.provision`
    /// with the no-op service).
    pub fn with_builtin() -> Self {
        let mut r = Self::new();
        // Connector-backed; plans without connectors complete at once (no-op path).
        r.register(Arc::new(crate::provision::ProvisionOrder::new(Arc::new(
            crate::connector_service::ConnectorService::default(),
        ))));
        r.register(Arc::new(crate::connector_service::SyncService::default()));
        crate::notify::register(&mut r, None);
        r
    }

    /// Register `handler` for its kind. A later registration for the same kind replaces
    /// the earlier one, so tests and deployments can swap a built-in handler for a stub.
    pub fn register(&mut self, handler: Arc<dyn TaskHandler>) -> &mut Self {
        if self
            .handlers
            .insert(handler.kind(), handler.clone())
            .is_some()
        {
            tracing::debug!(kind = handler.kind(), "task handler replaced");
        }
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn TaskHandler>> {
        self.handlers.get(kind).cloned()
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<_> = self.handlers.keys().copied().collect();
        k.sort_unstable();
        k
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

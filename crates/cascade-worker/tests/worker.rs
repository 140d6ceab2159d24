//! The worker suite: every test runs on SQLite and on PostgreSQL, with a manual clock
//! (time moves by `advance_secs`, never by sleeping).

use async_trait::async_trait;
use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::clock::{Clock, ManualClock, Timestamp};
use cascade_domain::ids::{AccountId, TaskId, UserId};
use cascade_domain::task::{AfterFailure, RetryPolicy, TaskState};
use cascade_domain::user::NewUserInput;
use cascade_store::accounts::Accounts;
use cascade_store::events::{Events, NewEvent};
use cascade_store::on_db;
use cascade_store::tasks::{NewTask, Task, Tasks};
use cascade_store::users::Users;
use cascade_testkit::{Db, both_backends};
use cascade_worker::{
    CleanupStats, Registry, RunStats, TaskContext, TaskError, TaskHandler, Worker, WorkerConfig,
    events_cleanup,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

const T0: Timestamp = Timestamp(1_700_000_000_000_000);
const DAY: i64 = 86_400;
/// Bounds every wait on the worker; a correct test never gets near it.
const LIMIT: Duration = Duration::from_secs(20);

async fn provider(db: &Db) -> AccountId {
    let input = NewAccountInput {
        kind: AccountKind::Provider,
        name: "Provider".into(),
        contact: ContactInput::default(),
        country: "DE".into(),
        language: "en".into(),
        currency: Some("EUR".into()),
        customer_class_id: None,
    };
    let new = input.validate(None).unwrap();
    let mut tx = db.begin().await.unwrap();
    let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

async fn user(db: &Db, account: AccountId, login: &str, email: &str) -> UserId {
    let input = NewUserInput {
        login: login.into(),
        display_name: login.into(),
        email: email.into(),
        language: None,
        password: None,
    };
    let mut tx = db.begin().await.unwrap();
    let u = Users::create(&mut tx, account, &input.validate().unwrap(), None, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    u.id
}

async fn emit(
    db: &Db,
    kind: &'static str,
    account: AccountId,
    subject_id: i64,
    payload: Value,
    now: Timestamp,
) {
    let mut tx = db.begin().await.unwrap();
    Events::emit(
        &mut tx,
        NewEvent {
            kind,
            account_id: Some(account),
            actor_user_id: None,
            subject_type: "user",
            subject_id,
            payload,
        },
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn enqueue(db: &Db, t: NewTask, now: Timestamp) -> TaskId {
    let mut tx = db.begin().await.unwrap();
    let id = Tasks::enqueue(&mut tx, t, now).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// (user_id, template, recipient, language, payload) of every outbox row.
async fn outbox(db: &Db) -> Vec<(Option<i64>, String, String, String, String)> {
    on_db!(db, p => sqlx::query_as("SELECT user_id, template, recipient, language, payload FROM outbox ORDER BY id").fetch_all(p).await).unwrap()
}

fn config() -> WorkerConfig {
    WorkerConfig {
        worker_id: "test-worker".into(),
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay_secs: 10,
            max_delay_secs: 60,
        },
        ..WorkerConfig::default()
    }
}

fn worker(db: &Db, clock: &Arc<ManualClock>, registry: Registry) -> Worker {
    Worker::new(db.clone(), clock.clone(), registry, config())
}

fn registry_with(h: impl TaskHandler + 'static) -> Registry {
    let mut r = Registry::with_builtin();
    r.register(Arc::new(h));
    r
}

/// Fails retryably `failures` times, then succeeds.
struct Flaky {
    failures: AtomicU32,
}

#[async_trait]
impl TaskHandler for Flaky {
    fn kind(&self) -> &'static str {
        "test.flaky"
    }
    async fn run(&self, _: &TaskContext, _: &Task) -> Result<(), TaskError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(TaskError::retryable("connector timed out"));
        }
        Ok(())
    }
}

/// Always fails permanently.
struct Refuses;

#[async_trait]
impl TaskHandler for Refuses {
    fn kind(&self) -> &'static str {
        "test.refuses"
    }
    async fn run(&self, _: &TaskContext, _: &Task) -> Result<(), TaskError> {
        Err(TaskError::permanent("connector refused: plan unknown"))
    }
}

/// Panics: a bug in a handler.
struct Panics;

#[async_trait]
impl TaskHandler for Panics {
    fn kind(&self) -> &'static str {
        "test.panics"
    }
    async fn run(&self, _: &TaskContext, _: &Task) -> Result<(), TaskError> {
        panic!("index out of bounds")
    }
}

/// Reports that it started, then waits to be released.
struct Blocking {
    started: mpsc::UnboundedSender<TaskId>,
    release: Arc<Notify>,
}

#[async_trait]
impl TaskHandler for Blocking {
    fn kind(&self) -> &'static str {
        "test.blocking"
    }
    async fn run(&self, _: &TaskContext, task: &Task) -> Result<(), TaskError> {
        let _ = self.started.send(task.id);
        self.release.notified().await;
        Ok(())
    }
}

both_backends! {
    async fn user_created_queues_one_welcome_mail(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let p = provider(&db).await;
        let alice = user(&db, p, "alice", "alice@p.example").await;
        let payload = json!({"user_id": alice.0, "login": "alice", "email": "alice@p.example", "display_name": "Alice", "language": "de"});
        emit(&db, "user.created", p, alice.0, payload.clone(), T0).await;
        // Unrouted kinds create no task but are marked done all the same.
        emit(&db, "account.created", p, p.0, json!({}), T0).await;
        emit(&db, "something.nobody.routes", p, 1, json!({}), T0).await;

        let w = worker(&db, &clock, Registry::with_builtin());
        let stats = w.run_once().await.unwrap();
        assert_eq!(stats, RunStats { dispatched: 3, done: 1, retried: 0, failed: 0 });
        assert_eq!(db.events().count_by_state("pending").await.unwrap(), 0);
        assert_eq!(db.events().count_by_state("done").await.unwrap(), 3);

        let rows = outbox(&db).await;
        assert_eq!(rows.len(), 1);
        let (user_id, template, recipient, language, stored) = &rows[0];
        assert_eq!((*user_id, template.as_str(), recipient.as_str(), language.as_str()), (Some(alice.0), "welcome_user", "alice@p.example", "en"));
        // Alice prefers German; the only text is the built-in English one: the fallback.
        assert_eq!(serde_json::from_str::<Value>(stored).unwrap(), payload);

        // A retry of the same task (the handler runs again) queues nothing more…
        let done = db.tasks().list(p, false, &Default::default(), None, 10).await.unwrap().items;
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].kind, "notify.welcome_user");
        assert_eq!(done[0].state, TaskState::Done);
        cascade_worker::notify::WelcomeUser::default().run(&w.context(), &done[0]).await.unwrap();
        // …nor does a second task for the same user going through the queue.
        emit(&db, "user.created", p, alice.0, payload.clone(), T0).await;
        assert_eq!(w.run_once().await.unwrap(), RunStats { dispatched: 1, done: 1, retried: 0, failed: 0 });
        assert_eq!(outbox(&db).await.len(), 1);

        // Another user without a language gets the default, in a mail of their own.
        let bob = user(&db, p, "bob", "bob@p.example").await;
        emit(&db, "user.created", p, bob.0, json!({"user_id": bob.0, "login": "bob", "email": "bob@p.example", "display_name": "Bob", "language": null}), T0).await;
        assert_eq!(w.run_once().await.unwrap().done, 1);
        let rows = outbox(&db).await;
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].0, rows[1].3.as_str()), (Some(bob.0), "en"));
    }

    async fn malformed_welcome_payload_fails_at_once(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let p = provider(&db).await;
        let id = enqueue(&db, NewTask::new("notify.welcome_user", Some(p), json!({"user_id": 1})), T0).await;
        let stats = worker(&db, &clock, Registry::with_builtin()).run_once().await.unwrap();
        assert_eq!(stats.failed, 1);
        let t = db.tasks().get(id).await.unwrap();
        assert_eq!((t.state, t.attempts, t.last_error.as_deref()), (TaskState::Failed, 1, Some("payload has no `email`")));
        assert!(outbox(&db).await.is_empty());
    }

    async fn retryable_failure_is_retried_after_back_off(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let w = worker(&db, &clock, registry_with(Flaky { failures: AtomicU32::new(1) }));
        let id = enqueue(&db, NewTask::new("test.flaky", None, json!({})), T0).await;

        assert_eq!(w.run_once().await.unwrap(), RunStats { retried: 1, ..Default::default() });
        let t = db.tasks().get(id).await.unwrap();
        assert_eq!((t.state, t.attempts, t.run_at), (TaskState::Pending, 1, T0.plus_secs(10)));
        assert_eq!(t.last_error.as_deref(), Some("connector timed out"));

        // Not due yet: nothing runs.
        clock.advance_secs(9);
        assert!(w.run_once().await.unwrap().is_idle());
        clock.advance_secs(1);
        assert_eq!(w.run_once().await.unwrap(), RunStats { done: 1, ..Default::default() });
        let t = db.tasks().get(id).await.unwrap();
        assert_eq!((t.state, t.attempts, t.last_error), (TaskState::Done, 2, None));
        assert_eq!(t.finished_at, Some(clock.now()));
    }

    async fn permanent_failure_fails_at_once(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let w = worker(&db, &clock, registry_with(Refuses));
        let id = enqueue(&db, NewTask::new("test.refuses", None, json!({})), T0).await;
        assert_eq!(w.run_once().await.unwrap(), RunStats { failed: 1, ..Default::default() });
        let t = db.tasks().get(id).await.unwrap();
        assert_eq!((t.state, t.attempts), (TaskState::Failed, 1), "a permanent failure uses no further attempts");
        assert_eq!(t.last_error.as_deref(), Some("connector refused: plan unknown"));
        clock.advance_secs(DAY);
        assert!(w.run_once().await.unwrap().is_idle());
    }

    async fn unknown_task_kind_fails_with_a_clear_error(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let w = worker(&db, &clock, Registry::with_builtin());
        let id = enqueue(&db, NewTask::new("nobody.handles_this", None, json!({})), T0).await;
        assert_eq!(w.run_once().await.unwrap(), RunStats { failed: 1, ..Default::default() });
        let t = db.tasks().get(id).await.unwrap();
        assert_eq!(t.state, TaskState::Failed);
        assert_eq!(t.last_error.as_deref(), Some("no handler for task kind nobody.handles_this"));
    }

    async fn a_panicking_handler_fails_only_its_own_task(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let mut registry = registry_with(Panics);
        registry.register(Arc::new(Flaky { failures: AtomicU32::new(0) }));
        let w = worker(&db, &clock, registry);
        let bad = enqueue(&db, NewTask::new("test.panics", None, json!({})), T0).await;
        let good = enqueue(&db, NewTask::new("test.flaky", None, json!({})), T0).await;
        assert_eq!(w.run_once().await.unwrap(), RunStats { done: 1, retried: 1, ..Default::default() });
        let t = db.tasks().get(bad).await.unwrap();
        assert_eq!(t.state, TaskState::Pending);
        assert_eq!(t.last_error.as_deref(), Some("handler panicked: index out of bounds"));
        assert_eq!(db.tasks().get(good).await.unwrap().state, TaskState::Done);
    }

    async fn exhausting_max_attempts_fails_the_task(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let w = worker(&db, &clock, registry_with(Flaky { failures: AtomicU32::new(u32::MAX) }));
        let id = enqueue(&db, NewTask { max_attempts: 3, ..NewTask::new("test.flaky", None, json!({})) }, T0).await;
        let mut total = RunStats::default();
        for _ in 0..5 {
            let s = w.run_once().await.unwrap();
            total.retried += s.retried;
            total.failed += s.failed;
            clock.advance_secs(60); // the policy's cap: every retry is due
        }
        assert_eq!((total.retried, total.failed), (2, 1));
        let t = db.tasks().get(id).await.unwrap();
        assert_eq!((t.state, t.attempts), (TaskState::Failed, 3));
        assert_eq!(t.last_error.as_deref(), Some("connector timed out"));
    }

    async fn cleanup_removes_only_old_finished_items_in_batches(db) {
        let p = provider(&db).await;
        let young = T0.plus_secs(2 * DAY);
        let new = |kind: &str| NewTask::new(kind, Some(p), json!({}));

        // Old finished tasks: 3 done, 1 failed, 1 cancelled, all at T0.
        let mut old_finished = vec![];
        for outcome in ["done", "done", "done", "failed"] {
            let id = enqueue(&db, new("test.x"), T0).await;
            let claimed = db.tasks().claim("w", T0, 1, 60).await.unwrap();
            assert_eq!(claimed[0].id, id);
            match outcome {
                "done" => db.tasks().complete(id, T0).await.unwrap(),
                _ => db.tasks().fail(id, "boom", AfterFailure::GiveUp, T0).await.unwrap(),
            }
            old_finished.push(id);
        }
        let cancelled = enqueue(&db, new("test.x"), T0).await;
        let mut tx = db.begin().await.unwrap();
        assert!(Tasks::cancel(&mut tx, cancelled, T0).await.unwrap());
        tx.commit().await.unwrap();
        old_finished.push(cancelled);
        // Young finished task.
        let young_done = enqueue(&db, new("test.x"), young).await;
        assert_eq!(db.tasks().claim("w", young, 1, 60).await.unwrap()[0].id, young_done);
        db.tasks().complete(young_done, young).await.unwrap();
        // Old but unfinished: one pending (due far in the future), one running (lease long expired).
        let far = T0.plus_secs(365 * DAY);
        let pending = enqueue(&db, NewTask { run_at: Some(far), ..new("test.x") }, T0).await;
        let running = enqueue(&db, new("test.x"), T0).await;
        assert_eq!(db.tasks().claim("w", T0, 1, 60).await.unwrap()[0].id, running);

        // Events: 3 old done, 1 young done, 1 old still pending.
        for i in 0..3 {
            emit(&db, "test.old", p, i, json!({}), T0).await;
        }
        assert_eq!(db.events().dispatch_pending(100, T0, |_| vec![]).await.unwrap(), 3);
        emit(&db, "test.young", p, 9, json!({}), young).await;
        assert_eq!(db.events().dispatch_pending(100, young, |_| vec![]).await.unwrap(), 1);
        emit(&db, "test.waiting", p, 10, json!({}), T0).await;

        // Retention 90 days, now T0 + 91 days: the cutoff is T0 + 1 day.
        let now = T0.plus_secs(91 * DAY);
        let stats = events_cleanup(&db, now, 90, 2).await.unwrap();
        // Tasks 5 in batches 2+2+1, events 3 in batches 2+1.
        assert_eq!(stats, CleanupStats { tasks_removed: 5, events_removed: 3, batches: 5 });

        for id in old_finished {
            assert!(matches!(db.tasks().get(id).await, Err(cascade_store::StoreError::NotFound)), "task {id} should be gone");
        }
        assert_eq!(db.tasks().get(pending).await.unwrap().state, TaskState::Pending);
        assert_eq!(db.tasks().get(running).await.unwrap().state, TaskState::Running);
        assert_eq!(db.tasks().get(young_done).await.unwrap().state, TaskState::Done);
        assert_eq!(db.events().count_by_state("done").await.unwrap(), 1);
        assert_eq!(db.events().count_by_state("pending").await.unwrap(), 1);

        // A full last batch needs one more (empty) batch to know it is finished.
        let again = events_cleanup(&db, now, 90, 2).await.unwrap();
        assert_eq!(again, CleanupStats { tasks_removed: 0, events_removed: 0, batches: 2 });
        let later = events_cleanup(&db, young.plus_secs(91 * DAY), 90, 1).await.unwrap();
        assert_eq!(later, CleanupStats { tasks_removed: 1, events_removed: 1, batches: 4 });
    }

    async fn run_finishes_the_batch_in_flight_then_stops(db) {
        let now = T0.plus_secs(100 * DAY);
        let clock = Arc::new(ManualClock::new(now));
        // Something for the start-up cleanup to remove.
        let old = enqueue(&db, NewTask::new("test.old", None, json!({})), T0).await;
        db.tasks().claim("w", T0, 1, 60).await.unwrap();
        db.tasks().complete(old, T0).await.unwrap();

        let (started_tx, mut started_rx) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let w = worker(&db, &clock, registry_with(Blocking { started: started_tx, release: release.clone() }));
        let id = enqueue(&db, NewTask::new("test.blocking", None, json!({})), now).await;

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut handle = tokio::spawn(w.run(stop_rx));
        let started = tokio::time::timeout(LIMIT, started_rx.recv()).await.expect("the worker picks up the task").unwrap();
        assert_eq!(started, id);
        assert!(matches!(db.tasks().get(old).await, Err(cascade_store::StoreError::NotFound)), "the cleanup runs at start-up");

        stop_tx.send(true).unwrap();
        tokio::task::yield_now().await;
        assert!(!handle.is_finished(), "run must wait for the batch in flight");
        release.notify_one();
        tokio::time::timeout(LIMIT, &mut handle).await.expect("run stops after the signal").unwrap();
        assert_eq!(db.tasks().get(id).await.unwrap().state, TaskState::Done, "the in-flight task was recorded");
    }

    async fn idle_run_stops_on_signal(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let idle = || WorkerConfig { poll_interval: Duration::from_secs(3600), ..config() };
        let w = Worker::new(db.clone(), clock.clone(), Registry::with_builtin(), idle());
        let (stop_tx, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(w.run(stop_rx));
        tokio::task::yield_now().await;
        stop_tx.send(true).unwrap();
        // The poll interval is an hour: only the signal can end the wait in time.
        tokio::time::timeout(LIMIT, handle).await.expect("run stops on the signal").unwrap();

        // Dropping the sender counts as the signal too.
        let w = Worker::new(db.clone(), clock.clone(), Registry::with_builtin(), idle());
        let (stop_tx, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(w.run(stop_rx));
        drop(stop_tx);
        tokio::time::timeout(LIMIT, handle).await.expect("run stops when the sender is gone").unwrap();
    }
}

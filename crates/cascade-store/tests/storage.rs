//! The storage suite: every test runs on SQLite and on PostgreSQL.

use cascade_domain::account::{AccountKind, AccountStatus, ContactInput, NewAccountInput};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::privilege::{BuiltinRole, Privilege};
use cascade_domain::task::{AfterFailure, TaskState};
use cascade_domain::user::NewUserInput;
use cascade_store::accounts::{AccountFilter, Accounts};
use cascade_store::events::{Events, NewEvent};
use cascade_store::idempotency::Reservation;
use cascade_store::tasks::{NewTask, TaskFilter, Tasks};
use cascade_store::users::Users;
use cascade_store::{StoreError, schema};
use cascade_testkit::{Db, TestDb, both_backends};
use serde_json::json;

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

async fn add(db: &Db, vendor: Option<AccountId>, kind: AccountKind, name: &str) -> AccountId {
    let facts = match vendor {
        Some(v) => Some(db.accounts().get(v).await.unwrap().facts()),
        None => None,
    };
    let input = NewAccountInput {
        kind,
        name: name.into(),
        contact: ContactInput::default(),
        country: "DE".into(),
        language: "en".into(),
        currency: if vendor.is_none() {
            Some("EUR".into())
        } else {
            None
        },
        customer_class_id: None,
    };
    let new = input.validate(facts.as_ref()).unwrap();
    let mut tx = db.begin().await.unwrap();
    let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

#[tokio::test]
async fn both_backends_end_at_the_same_logical_schema() {
    let s = TestDb::sqlite().await;
    let p = TestDb::postgres().await;
    let a = schema::logical_schema(&s.db).await.unwrap();
    let b = schema::logical_schema(&p.db).await.unwrap();
    assert!(
        a.columns.len() > 50,
        "schema looks empty: {} columns",
        a.columns.len()
    );
    let only_sqlite: Vec<_> = a.columns.difference(&b.columns).collect();
    let only_pg: Vec<_> = b.columns.difference(&a.columns).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "columns differ:\nSQLite only: {only_sqlite:#?}\nPostgreSQL only: {only_pg:#?}"
    );
    assert_eq!(a.indexes, b.indexes);
}

both_backends! {
    async fn migrations_are_idempotent(db) {
        let again = cascade_store::migrate::run(&db).await.unwrap();
        assert!(again.is_empty(), "second run applied {again:?}");
    }

    async fn closure_table_answers_tree_queries(db) {
        let p = add(&db, None, AccountKind::Provider, "Provider").await;
        let l1a = add(&db, Some(p), AccountKind::Reseller, "L1 A").await;
        let l1b = add(&db, Some(p), AccountKind::Reseller, "L1 B").await;
        let l2 = add(&db, Some(l1a), AccountKind::Reseller, "L2 under A").await;
        let c1 = add(&db, Some(l2), AccountKind::Customer, "Customer of L2").await;
        let c2 = add(&db, Some(l1a), AccountKind::Customer, "Customer of A").await;
        let c3 = add(&db, Some(l1b), AccountKind::Customer, "Customer of B").await;

        let chain: Vec<_> = db.accounts().vendor_chain(c1).await.unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(chain, vec![l2, l1a, p]);
        assert_eq!(db.accounts().get(c1).await.unwrap().depth, 3);

        let desc = db.accounts().descendants(l1a, &AccountFilter::default(), None, 100).await.unwrap();
        let ids: Vec<_> = desc.items.iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![l2, c1, c2]);
        assert_eq!(db.accounts().count_descendants(p).await.unwrap(), 6);

        let children = db.accounts().children(l1a, &AccountFilter::default(), None, 100).await.unwrap();
        assert_eq!(children.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![l2, c2]);

        let customers = db.accounts().descendants(p, &AccountFilter { kind: Some(AccountKind::Customer), ..Default::default() }, None, 100).await.unwrap();
        assert_eq!(customers.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![c1, c2, c3]);
        let named = db.accounts().descendants(p, &AccountFilter { name_contains: Some("of b".into()), ..Default::default() }, None, 100).await.unwrap();
        assert_eq!(named.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![c3]);
        let shallow = db.accounts().descendants(p, &AccountFilter { max_depth: Some(1), ..Default::default() }, None, 100).await.unwrap();
        assert_eq!(shallow.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![l1a, l1b]);

        // Pagination walks every descendant exactly once.
        let mut seen = vec![];
        let mut cursor = None;
        loop {
            let page = db.accounts().descendants(p, &AccountFilter::default(), cursor, 2).await.unwrap();
            seen.extend(page.items.iter().map(|a| a.id));
            match page.next { Some(n) => cursor = Some(n), None => break }
        }
        assert_eq!(seen, vec![l1a, l1b, l2, c1, c2, c3]);

        assert_eq!(db.accounts().relation_depth(l1a, c1).await.unwrap(), Some(2));
        assert_eq!(db.accounts().relation_depth(l1a, l1a).await.unwrap(), Some(0));
        assert_eq!(db.accounts().relation_depth(l1a, c3).await.unwrap(), None);
        assert_eq!(db.accounts().relation_depth(c1, l1a).await.unwrap(), None);
    }

    async fn only_one_provider(db) {
        add(&db, None, AccountKind::Provider, "P").await;
        let new = NewAccountInput {
            kind: AccountKind::Provider, name: "P2".into(), contact: ContactInput::default(), country: "DE".into(),
            language: "en".into(), currency: Some("EUR".into()), customer_class_id: None,
        }.validate(None).unwrap();
        let mut tx = db.begin().await.unwrap();
        let err = Accounts::create(&mut tx, &new, T0).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    }

    async fn status_changes_persist(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let c = add(&db, Some(p), AccountKind::Customer, "C").await;
        let mut tx = db.begin().await.unwrap();
        Accounts::set_status(&mut tx, c, AccountStatus::AdminHold, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(db.accounts().get(c).await.unwrap().status, AccountStatus::AdminHold);
    }

    async fn users_roles_and_privileges(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let input = NewUserInput { login: "Admin".into(), display_name: "Admin".into(), email: "admin@p.example".into(), language: None, password: None };
        let mut tx = db.begin().await.unwrap();
        let u = Users::create(&mut tx, p, &input.validate().unwrap(), Some("hash"), T0).await.unwrap();
        let billing = db.roles().builtin(BuiltinRole::BillingStaff).await.unwrap();
        assert!(Users::attach_role(&mut tx, u.id, billing.id).await.unwrap());
        assert!(!Users::attach_role(&mut tx, u.id, billing.id).await.unwrap(), "attaching twice is a no-op");
        tx.commit().await.unwrap();
        let privs = db.users().privileges(u.id).await.unwrap();
        assert!(privs.has(Privilege::BillingManage));
        assert!(!privs.has(Privilege::AccountsManage));

        // Logins are unique, case-insensitively.
        let dup = NewUserInput { login: "ADMIN".into(), ..input.clone() }.validate().unwrap();
        let mut tx = db.begin().await.unwrap();
        let err = Users::create(&mut tx, p, &dup, None, T0).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { ref what } if what.contains("login")), "{err:?}");
        tx.rollback().await.unwrap();

        let creds = db.users().credentials_by_login(" admin ").await.unwrap().unwrap();
        assert_eq!(creds.user.id, u.id);
        let mut tx = db.begin().await.unwrap();
        Users::set_disabled(&mut tx, u.id, true, T0).await.unwrap();
        tx.commit().await.unwrap();
        let after = db.users().credentials_by_login("admin").await.unwrap().unwrap();
        assert!(after.user.disabled);
        assert!(after.credentials_version > creds.credentials_version, "disabling voids sessions");
    }

    async fn task_queue_claims_retries_and_finishes(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let mut tx = db.begin().await.unwrap();
        let id = Tasks::enqueue(&mut tx, NewTask::new("test.job", Some(p), json!({"n": 1})), T0).await.unwrap();
        let later = Tasks::enqueue(&mut tx, NewTask { run_at: Some(T0.plus_secs(3600)), ..NewTask::new("test.later", Some(p), json!({})) }, T0).await.unwrap();
        tx.commit().await.unwrap();

        let claimed = db.tasks().claim("w1", T0, 10, 60).await.unwrap();
        assert_eq!(claimed.iter().map(|t| t.id).collect::<Vec<_>>(), vec![id], "future task is not due");
        assert_eq!(claimed[0].attempts, 1);
        assert!(db.tasks().claim("w2", T0, 10, 60).await.unwrap().is_empty(), "a claimed task is not claimed twice");

        db.tasks().fail(id, "boom", AfterFailure::RetryAt(T0.plus_secs(5)), T0).await.unwrap();
        let t = db.tasks().get(id).await.unwrap();
        assert_eq!((t.state, t.last_error.as_deref()), (TaskState::Pending, Some("boom")));
        assert!(db.tasks().claim("w1", T0.plus_secs(4), 10, 60).await.unwrap().is_empty(), "back-off respected");
        let again = db.tasks().claim("w1", T0.plus_secs(5), 10, 60).await.unwrap();
        assert_eq!(again[0].attempts, 2);

        // A crashed worker's lease expires and the task is claimed again.
        let reclaimed = db.tasks().claim("w2", T0.plus_secs(5 + 61), 10, 60).await.unwrap();
        assert_eq!(reclaimed.iter().map(|t| t.id).collect::<Vec<_>>(), vec![id]);
        db.tasks().complete(id, T0.plus_secs(70)).await.unwrap();
        assert_eq!(db.tasks().get(id).await.unwrap().state, TaskState::Done);

        let mut tx = db.begin().await.unwrap();
        assert!(Tasks::cancel(&mut tx, later, T0).await.unwrap());
        assert!(!Tasks::cancel(&mut tx, id, T0).await.unwrap(), "a done task cannot be cancelled");
        assert!(Tasks::retry(&mut tx, later, T0).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(db.tasks().get(later).await.unwrap().state, TaskState::Pending);

        let failed = db.tasks().list(p, true, &TaskFilter { state: Some(TaskState::Done), ..Default::default() }, None, 10).await.unwrap();
        assert_eq!(failed.items.len(), 1);
    }

    async fn events_dispatch_once_and_cleanup_in_batches(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let mut tx = db.begin().await.unwrap();
        for i in 0..5 {
            Events::emit(&mut tx, NewEvent { kind: "test.happened", account_id: Some(p), actor_user_id: None, subject_type: "account", subject_id: i, payload: json!({"i": i}) }, T0).await.unwrap();
        }
        tx.commit().await.unwrap();
        let n = db.events().dispatch_pending(100, T0, |e| vec![NewTask::new("test.follow_up", e.account_id, e.payload.clone())]).await.unwrap();
        assert_eq!(n, 5);
        assert_eq!(db.events().dispatch_pending(100, T0, |_| vec![]).await.unwrap(), 0, "dispatched events are not routed again");
        let tasks = db.tasks().claim("w", T0, 100, 60).await.unwrap();
        assert_eq!(tasks.len(), 5);
        for t in &tasks {
            assert!(t.event_id.is_some());
            db.tasks().complete(t.id, T0).await.unwrap();
        }
        // Cleanup: nothing is younger than the cutoff → nothing removed; then batches of 2.
        assert_eq!(db.tasks().delete_finished_batch(T0, 2).await.unwrap(), 0);
        let cutoff = T0.plus_secs(1);
        let mut removed = vec![];
        loop {
            let n = db.tasks().delete_finished_batch(cutoff, 2).await.unwrap();
            if n == 0 { break }
            assert!(n <= 2);
            removed.push(n);
        }
        assert_eq!(removed.iter().sum::<u64>(), 5);
        assert_eq!(db.events().delete_finished_batch(cutoff, 10).await.unwrap(), 5);
    }

    async fn idempotency_keys_reserve_once(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let input = NewUserInput { login: "user1".into(), display_name: "U".into(), email: "u@p.example".into(), language: None, password: None };
        let mut tx = db.begin().await.unwrap();
        let u = Users::create(&mut tx, p, &input.validate().unwrap(), None, T0).await.unwrap();
        tx.commit().await.unwrap();
        let r = db.idempotency().reserve(u.id, "k1", "POST", "/x", "h1", T0).await.unwrap();
        let Reservation::Reserved(id) = r else { panic!("expected a reservation") };
        match db.idempotency().reserve(u.id, "k1", "POST", "/x", "h1", T0).await.unwrap() {
            Reservation::Existing(rec) => assert_eq!(rec.status_code, None),
            other => panic!("{other:?}"),
        }
        db.idempotency().complete(id, 201, "{}", Some("application/json")).await.unwrap();
        match db.idempotency().reserve(u.id, "k1", "POST", "/x", "h2", T0).await.unwrap() {
            Reservation::Existing(rec) => { assert_eq!(rec.status_code, Some(201)); assert_eq!(rec.request_hash, "h1"); }
            other => panic!("{other:?}"),
        }
    }
}

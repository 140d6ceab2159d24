//! Notifications end to end in the worker: events → templates inherited down the chain →
//! outbox → a real SMTP sink process. Every test runs on SQLite and PostgreSQL, with a
//! manual clock.

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::clock::{ManualClock, Timestamp};
use cascade_domain::ids::{AccountId, UserId};
use cascade_domain::notification::{NotificationEvent, TemplateInput, TemplateTextInput, validate};
use cascade_domain::task::RetryPolicy;
use cascade_domain::user::NewUserInput;
use cascade_store::accounts::Accounts;
use cascade_store::events::{Events, NewEvent};
use cascade_store::notifications::{Notifications, TemplateSource};
use cascade_store::users::Users;
use cascade_testkit::smtp::{SmtpSink, free_port};
use cascade_testkit::{Db, both_backends};
use cascade_worker::notify::{Deliver, Delivery, Mailer, SmtpSettings, SmtpTls, deliver};
use cascade_worker::{Registry, RunStats, TaskHandler, Worker, WorkerConfig};
use serde_json::{Value, json};
use std::sync::Arc;

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

async fn account(
    db: &Db,
    kind: AccountKind,
    vendor: Option<AccountId>,
    name: &str,
    language: &str,
) -> AccountId {
    let input = NewAccountInput {
        kind,
        name: name.into(),
        contact: ContactInput {
            email: Some(format!("{}@acct.example", name.to_lowercase())),
            ..ContactInput::default()
        },
        country: "FR".into(),
        language: language.into(),
        currency: Some("EUR".into()),
        customer_class_id: None,
    };
    let facts = match vendor {
        Some(v) => Some(db.accounts().get(v).await.unwrap().facts()),
        None => None,
    };
    let new = input.validate(facts.as_ref()).unwrap();
    let mut tx = db.begin().await.unwrap();
    let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

async fn user(db: &Db, account: AccountId, login: &str, language: Option<&str>) -> UserId {
    let input = NewUserInput {
        login: login.into(),
        display_name: format!("{login} name"),
        email: format!("{login}@users.example"),
        language: language.map(str::to_string),
        password: None,
    };
    let mut tx = db.begin().await.unwrap();
    let u = Users::create(&mut tx, account, &input.validate().unwrap(), None, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    u.id
}

async fn save(db: &Db, account: AccountId, event: NotificationEvent, texts: &[(&str, &str, &str)]) {
    let doc = validate(
        event,
        &TemplateInput {
            default_language: texts[0].0.into(),
            texts: texts
                .iter()
                .map(|(l, s, t)| TemplateTextInput {
                    language: (*l).into(),
                    subject: (*s).into(),
                    text: (*t).into(),
                    html: None,
                })
                .collect(),
        },
    )
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    Notifications::save(&mut tx, account, event, &doc, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn emit(db: &Db, kind: &'static str, account: AccountId, payload: Value) {
    let mut tx = db.begin().await.unwrap();
    Events::emit(
        &mut tx,
        NewEvent {
            kind,
            account_id: Some(account),
            actor_user_id: None,
            subject_type: "order",
            subject_id: 1,
            payload,
        },
        T0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn mailer(port: u16) -> Arc<Mailer> {
    Arc::new(
        Mailer::new(&SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            from: "Cascade <noreply@cascade.example>".into(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout_secs: 5,
        })
        .unwrap(),
    )
}

fn worker(db: &Db, clock: &Arc<ManualClock>, mailer: Option<Arc<Mailer>>) -> Worker {
    let mut r = Registry::with_builtin();
    cascade_worker::notify::register(&mut r, mailer);
    Worker::new(
        db.clone(),
        clock.clone(),
        r,
        WorkerConfig {
            worker_id: "test".into(),
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay_secs: 10,
                max_delay_secs: 60,
            },
            ..WorkerConfig::default()
        },
    )
}

/// (recipient, language, subject, sent?) of every outbox row, by id.
async fn outbox(db: &Db) -> Vec<(String, String, String, bool)> {
    let rows: Vec<(String, String, Option<String>, Option<i64>)> =
        cascade_store::on_db!(db, p => sqlx::query_as(
        "SELECT recipient, language, subject, sent_at FROM outbox ORDER BY id").fetch_all(p).await)
        .unwrap();
    rows.into_iter()
        .map(|(r, l, s, sent)| (r, l, s.unwrap_or_default(), sent.is_some()))
        .collect()
}

/// Provider → reseller → customer (two users: French, and none = the account's Arabic).
struct Chain {
    provider: AccountId,
    reseller: AccountId,
    customer: AccountId,
}

async fn chain(db: &Db) -> Chain {
    let provider = account(db, AccountKind::Provider, None, "Provider", "en").await;
    let reseller = account(db, AccountKind::Reseller, Some(provider), "Reseller", "en").await;
    let customer = account(db, AccountKind::Customer, Some(reseller), "Customer", "ar").await;
    user(db, customer, "amelie", Some("fr")).await;
    user(db, customer, "karim", None).await;
    save(
        db,
        provider,
        NotificationEvent::OrderCompleted,
        &[
            (
                "en",
                "Order {{ order_id }} completed",
                "Hello {{ recipient_name }}, order {{ order_id }} is ready.",
            ),
            (
                "fr",
                "Commande {{ order_id }} terminée",
                "Bonjour {{ recipient_name }}, la commande {{ order_id }} est prête.",
            ),
            (
                "ar",
                "اكتمل الطلب {{ order_id }}",
                "مرحبا {{ recipient_name }}، الطلب {{ order_id }} جاهز.",
            ),
        ],
    )
    .await;
    Chain {
        provider,
        reseller,
        customer,
    }
}

both_backends! {
    async fn order_completed_mail_reaches_the_sink_in_each_recipients_language(db) {
        let sink = SmtpSink::start();
        let clock = Arc::new(ManualClock::new(T0));
        let c = chain(&db).await;
        emit(&db, "order.completed", c.customer, json!({"order_id": 42, "type": "SO"})).await;

        let w = worker(&db, &clock, Some(mailer(sink.port)));
        assert_eq!(w.run_once().await.unwrap(), RunStats { dispatched: 1, done: 1, retried: 0, failed: 0 });

        let mut got = sink.wait_for(2);
        got.sort_by(|a, b| a.to.cmp(&b.to));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].to, vec!["amelie@users.example"]);
        assert_eq!(got[0].from, "noreply@cascade.example");
        assert_eq!(got[0].subject.as_deref(), Some("Commande 42 terminée"));
        assert_eq!(got[0].text.as_deref().map(str::trim_end), Some("Bonjour amelie name, la commande 42 est prête."));
        // No language of her own: the account's (Arabic).
        assert_eq!(got[1].to, vec!["karim@users.example"]);
        assert_eq!(got[1].subject.as_deref(), Some("اكتمل الطلب 42"));
        assert!(got[1].text.as_deref().unwrap().contains("karim name"));
        // Each carries a Message-ID derived from its outbox row, the same on every attempt.
        let ids: Vec<String> = got.iter().map(|m| {
            m.raw.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap_or_else(|| panic!("no Message-ID in {}", m.raw)).trim().to_string()
        }).collect();
        assert!(ids.iter().all(|i| i.starts_with("<cascade.") && i.ends_with("@cascade.example>")), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
        // Marked sent; a second delivery of the same message sends nothing.
        let rows = outbox(&db).await;
        assert!(rows.iter().all(|r| r.3), "{rows:?}");
        let m = Some(mailer(sink.port));
        assert_eq!(deliver(&db, m.as_deref(), 1, T0).await.unwrap(), Delivery::AlreadySent);
        // The same event routed again (a replayed task) queues and sends nothing new.
        emit(&db, "order.completed", c.customer, json!({"order_id": 42, "type": "SO"})).await;
        assert_eq!(w.run_once().await.unwrap().done, 1);
        assert_eq!(outbox(&db).await.len(), 2);
        assert_eq!(sink.messages().len(), 2);
        let _ = c.provider;
        let _ = c.reseller;
    }

    async fn resellers_inherit_live_until_their_first_edit(db) {
        let c = chain(&db).await;
        let sub = account(&db, AccountKind::Reseller, Some(c.reseller), "Sub", "en").await;
        let n = db.notifications();
        let ev = NotificationEvent::OrderCompleted;
        let eff = n.effective(c.reseller, ev).await.unwrap();
        assert_eq!(eff.source, TemplateSource::Inherited { from: c.provider });
        assert_eq!(n.effective(c.provider, ev).await.unwrap().source, TemplateSource::Own);
        // Nobody has a payment-failed template: the built-in one.
        assert_eq!(n.effective(sub, NotificationEvent::PaymentFailed).await.unwrap().source, TemplateSource::Builtin);

        // The provider edits: the reseller sees the new text at once.
        save(&db, c.provider, ev, &[("en", "Done: {{ order_id }}", "v2")]).await;
        assert_eq!(n.effective(c.reseller, ev).await.unwrap().doc.texts[0].subject, "Done: {{ order_id }}");

        // The reseller's first edit is its own copy; the provider no longer reaches it,
        // and the sub-reseller now inherits from the reseller.
        save(&db, c.reseller, ev, &[("en", "Reseller: {{ order_id }}", "r1"), ("fr", "Revendeur : {{ order_id }}", "r1")]).await;
        save(&db, c.provider, ev, &[("en", "Provider v3 {{ order_id }}", "v3")]).await;
        let r = n.effective(c.reseller, ev).await.unwrap();
        assert_eq!((r.source, r.doc.texts.len()), (TemplateSource::Own, 2));
        let s = n.effective(sub, ev).await.unwrap();
        assert_eq!(s.source, TemplateSource::Inherited { from: c.reseller });
        // The customer's mail uses its reseller's copy.
        let rendered = n.compose(c.reseller, ev, &["fr"], &json!({"order_id": "7"})).await.unwrap().unwrap();
        assert_eq!(rendered.subject, "Revendeur : 7");

        // Revert: the reseller follows the provider again.
        let mut tx = db.begin().await.unwrap();
        assert!(Notifications::revert(&mut tx, c.reseller, ev).await.unwrap());
        tx.commit().await.unwrap();
        let r = n.effective(c.reseller, ev).await.unwrap();
        assert_eq!((r.source, r.doc.texts[0].subject.as_str()), (TemplateSource::Inherited { from: c.provider }, "Provider v3 {{ order_id }}"));
    }

    async fn smtp_down_is_retried_then_delivered_once(db) {
        let port = free_port();
        let clock = Arc::new(ManualClock::new(T0));
        let c = chain(&db).await;
        emit(&db, "payment.declined", c.customer, json!({"amount_minor": 4900, "currency": "EUR", "message": "card expired", "reference": "pay-1"})).await;
        let w = worker(&db, &clock, Some(mailer(port)));

        // Nobody listens: the task is retried with back-off, the messages stay unsent.
        assert_eq!(w.run_once().await.unwrap(), RunStats { dispatched: 1, done: 0, retried: 1, failed: 0 });
        let rows: Vec<(i32, Option<String>, Option<i64>)> = cascade_store::on_db!(&db, p => sqlx::query_as(
            "SELECT attempts, last_error, sent_at FROM outbox ORDER BY id").fetch_all(p).await).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.0 == 1 && r.1.as_deref().is_some_and(|e| e.starts_with("SMTP")) && r.2.is_none()), "{rows:?}");

        // The server comes back; once the back-off has passed, both are delivered.
        let sink = SmtpSink::start_on(port);
        clock.advance_secs(10);
        assert_eq!(w.run_once().await.unwrap(), RunStats { dispatched: 0, done: 1, retried: 0, failed: 0 });
        let mut got = sink.wait_for(2);
        got.sort_by(|a, b| a.to.cmp(&b.to));
        assert_eq!(got.len(), 2);
        // Built-in English text (no payment template anywhere) for both languages.
        assert_eq!(got[0].subject.as_deref(), Some("Payment of 49.00 EUR failed"));
        assert!(got[0].text.as_deref().unwrap().contains("card expired"));

        // Running the delivery again (a re-claimed task) never sends twice.
        let task = db.tasks().list(c.customer, false, &Default::default(), None, 10).await.unwrap().items;
        let h = Deliver { mailer: Some(mailer(port)) };
        h.run(&w.context(), &cascade_store::tasks::Task { payload: json!({"outbox_id": 1}), ..task[0].clone() }).await.unwrap();
        clock.advance_secs(600);
        assert!(w.run_once().await.unwrap().is_idle());
        assert_eq!(sink.messages().len(), 2);
        assert!(outbox(&db).await.iter().all(|r| r.3));
    }

    async fn without_smtp_messages_stay_in_the_outbox(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let c = chain(&db).await;
        emit(&db, "order.completed", c.customer, json!({"order_id": 9, "type": "SO"})).await;
        let w = worker(&db, &clock, None);
        assert_eq!(w.run_once().await.unwrap().done, 1);
        let mut rows = outbox(&db).await;
        rows.sort();
        assert_eq!(rows, vec![
            ("amelie@users.example".to_string(), "fr".to_string(), "Commande 9 terminée".to_string(), false),
            ("karim@users.example".to_string(), "ar".to_string(), "اكتمل الطلب 9".to_string(), false),
        ]);
    }

    async fn a_payg_suspension_notice_mails_the_deadline_once(db) {
        let clock = Arc::new(ManualClock::new(T0));
        let c = chain(&db).await;
        let payload = json!({"subscription_id": 77, "suspension_deadline": "2026-12-20",
                             "balance_minor": 2340, "currency": "EUR", "status": "active"});
        emit(&db, "subscription.suspension_notice", c.customer, payload.clone()).await;
        let w = worker(&db, &clock, None);
        assert_eq!(w.run_once().await.unwrap().done, 1);
        let rows = outbox(&db).await;
        assert_eq!(rows.len(), 2, "one mail per recipient: {rows:?}");
        assert!(rows.iter().all(|r| r.2 == "Service suspension on 2026-12-20"), "{rows:?}");
        let bodies: Vec<(String,)> = cascade_store::on_db!(&db, p => sqlx::query_as(
            "SELECT body_text FROM outbox ORDER BY id").fetch_all(p).await).unwrap();
        assert!(bodies.iter().all(|b| b.0.contains("subscription 77") && b.0.contains("23.40")), "{bodies:?}");
        // The same notice again (a re-run of the same day) queues nothing new.
        emit(&db, "subscription.suspension_notice", c.customer, payload).await;
        w.run_once().await.unwrap();
        assert_eq!(outbox(&db).await.len(), 2);
    }

    async fn a_queued_message_is_delivered_by_its_task_and_a_reset_body_is_dropped(db) {
        let sink = SmtpSink::start();
        let clock = Arc::new(ManualClock::new(T0));
        let c = chain(&db).await;
        let msg = cascade_store::notifications::NewMessage {
            account_id: Some(c.customer),
            user_id: None,
            template: "password_reset".into(),
            recipient: "karim@users.example".into(),
            language: "en".into(),
            payload: json!({}),
            subject: "Reset".into(),
            body_text: "Code: prt_secret".into(),
            body_html: None,
            dedup_key: None,
        };
        let mut tx = db.begin().await.unwrap();
        let id = cascade_store::notifications::Outbox::queue_with_delivery(&mut tx, &msg, T0).await.unwrap();
        tx.commit().await.unwrap();
        let w = worker(&db, &clock, Some(mailer(sink.port)));
        assert_eq!(w.run_once().await.unwrap().done, 1);
        let got = sink.wait_for(1);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].subject.as_deref(), got[0].text.as_deref().map(str::trim_end)), (Some("Reset"), Some("Code: prt_secret")));
        let m = db.outbox().get(id).await.unwrap();
        assert!(m.sent_at.is_some());
        assert_eq!((m.body_text, m.attempts), (None, 1));
    }
}

//! Connectors end to end, on both backends: real Cascade code (API router served on a
//! loopback port, worker) against the reference mail connector serving HTTPS on
//! loopback (in-process; the spawned binary is exercised by the connector crate's
//! tests and by `usage_collection_spawned_binaries` below).
//!
//! Covered: registering instances (validation, secret never returned, tenant
//! isolation), the two-way connectivity check, the callback refusing bad, stale and
//! replayed signatures, the deployment wizard (all-or-nothing), SO/CH/CL and
//! suspend/terminate through the connector with the async path, faults (garbage, 500,
//! bad signature, timeout, connector gone mid-provisioning then back: the order shows
//! the failure and a retry succeeds), and usage collection with one hanging connector.

mod common;

use axum::http::StatusCode;
use cascade_domain::clock::{Clock, SystemClock, Timestamp};
use cascade_domain::connector::{self as proto, Signed};
use cascade_domain::ids::AccountId;
use cascade_mail_connector::{Config, Fault, Running, start};
use cascade_store::documents::{DocKind, Documents, NewDocument, NewLine};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::connector_service::{ConnectorService, SyncService};
use cascade_worker::provision::ProvisionOrder;
use cascade_worker::{Registry, RunStats, Worker, WorkerConfig};
use common::{Channel, TestApp};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "s3cret-s3cret-s3cret";
/// Tests move Cascade's clock (back-off) while the connector reads the wall clock.
const WIDE_SKEW: i64 = 10 * 86_400;

struct Fx {
    app: TestApp,
    ch: Channel,
    base: String,
}

async fn sql(db: &Db, q: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let (id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(q).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    id
}

async fn fixture(db: Db) -> Fx {
    let app = TestApp::with_config(
        db,
        cascade_http::HttpConfig {
            connector_skew_secs: WIDE_SKEW,
            ..Default::default()
        },
    );
    app.clock.set(SystemClock.now());
    let ch = Channel::build(&app).await;
    // Serve the same router on loopback: connectors call Cascade back there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = cascade_http::router(app.state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Fx {
        app,
        ch,
        base: format!("http://{addr}"),
    }
}

async fn connector(fault: Fault, delay_secs: u64) -> Running {
    start(Config {
        secret: SECRET.into(),
        skew_secs: WIDE_SKEW,
        async_delay: Duration::from_secs(delay_secs),
        fault,
        ..Config::default()
    })
    .await
    .unwrap()
}

fn registry() -> Registry {
    let service = ConnectorService {
        skew_secs: WIDE_SKEW,
        max_wait: Duration::from_secs(5),
    };
    let mut r = Registry::with_builtin();
    r.register(Arc::new(ProvisionOrder::new(Arc::new(service.clone()))));
    r.register(Arc::new(SyncService { service }));
    r
}

impl Fx {
    async fn register(&self, c: &Running, service: &str) -> Value {
        self.app
            .post(
                format!("/api/v1/accounts/{}/connector-instances", self.ch.p.account),
                self.ch.p.cred(),
                json!({"service": service, "name": "Mail", "endpoint": c.base_url(), "secret": SECRET, "cert_pin": c.pin, "timeout_ms": 2000}),
            )
            .await
            .expect(StatusCode::CREATED)
            .json
    }

    /// Run the worker until idle; `max_rounds` bounds retries.
    async fn work(&self) -> RunStats {
        let w = Worker::new(
            self.app.db.clone(),
            self.app.clock.clone() as Arc<dyn Clock>,
            registry(),
            WorkerConfig::default(),
        );
        let mut total = RunStats::default();
        for _ in 0..20 {
            let s = w.run_once().await.unwrap();
            total.dispatched += s.dispatched;
            total.done += s.done;
            total.retried += s.retried;
            total.failed += s.failed;
            if s.is_idle() {
                break;
            }
        }
        total
    }

    /// A provider plan whose mailbox rate (measurable) is provisioned by service `mail`.
    async fn mail_plan(&self) -> i64 {
        let p = self.ch.p.account;
        let db = &self.app.db;
        let rt = sql(db, &format!("INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ({p}, 'mailbox', 'mail', 'mailbox', '{{\"default\":\"en\",\"values\":{{\"en\":\"Mailbox\"}}}}', 0, 0) RETURNING id")).await;
        let template = sql(db, &format!("INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({p}, 'Mail', '[]', '{{\"domain\":{{\"type\":\"string\",\"value\":\"provider.test\"}}}}', 0, 0) RETURNING id")).await;
        let period = json!({"uid": "m1", "duration": 1, "unit": "month", "active": true, "setup": {"amount": 0}, "recurring": {"amount": 1_000_000},
            "renewal": {"amount": 1_000_000}, "transfer": {"amount": 0}, "cancellation": {"amount": 0},
            "refund": {"full_refund_days": 30, "non_refundable": 0, "after": "prorated"}, "sort": 1});
        let rate = json!({"uid": "boxes", "resource_type_id": rt, "included": 2, "min": 1, "max": 50, "setup_fee": 0, "recurring_fee": 0,
            "overuse_fee": 0, "per_unit": true, "measurable": true, "show_in_store": true, "show_in_panel": true, "display": {"type": "spinner"}});
        let content = json!({
            "name": {"default": "en", "values": {"en": "Mail"}},
            "published": true, "visible": true, "listing_priority": 1,
            "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"},
            "recurring_basis": "billing_period", "periods": [period], "rates": [rate],
        });
        self.app
            .post(
                format!("/api/v1/accounts/{p}/plans"),
                self.ch.p.cred(),
                json!({"template_id": template, "content": content}),
            )
            .await
            .expect(StatusCode::CREATED)
            .id()
    }

    async fn top_up(&self, issuer: i64, account: i64, minor: i64) {
        let now = self.app.clock.now();
        let mut tx = self.app.db.begin().await.unwrap();
        let head = NewDocument {
            kind: DocKind::Payment,
            issuer: AccountId(issuer),
            account: AccountId(account),
            currency: "EUR",
            issue_date: "2000-01-01",
            due_date: None,
            charge_date: None,
            tax_bp: 0,
            method: Some("bank_transfer"),
            external_ref: None,
            idem_key: None,
        };
        let line = NewLine {
            subscription_id: None,
            kind: "payment".into(),
            description: "Top-up".into(),
            quantity: 1,
            unit_price_micro: minor * 10_000,
            amount_minor: minor,
            period_start: None,
            period_end: None,
            charge_key: None,
        };
        Documents::issue(&mut tx, &head, &[line], now)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// The provider's customer orders the mail plan with `boxes` mailboxes; (order, subscription).
    async fn buy(&self, plan: i64, boxes: i64) -> (i64, i64) {
        let pc = self.ch.pc.account;
        self.top_up(self.ch.p.account, pc, 100_000).await;
        let o = self
            .app
            .post(
                format!("/api/v1/accounts/{pc}/orders"),
                self.ch.pc.cred(),
                json!({"plan_id": plan, "period_uid": "m1", "quantities": {"boxes": boxes}}),
            )
            .await
            .expect(StatusCode::CREATED)
            .json;
        assert_eq!(o["status"], "paid", "{o}");
        (
            o["id"].as_i64().unwrap(),
            o["subscription_id"].as_i64().unwrap(),
        )
    }

    async fn order(&self, id: i64) -> Value {
        self.app
            .get(format!("/api/v1/orders/{id}"), self.ch.p.cred())
            .await
            .expect(StatusCode::OK)
            .json
    }
}

fn boxes_at(c: &Running, sub: i64) -> Option<usize> {
    c.shared
        .snapshot()
        .resources
        .get(&proto::resource_id(sub))
        .map(|r| r.mailboxes.len())
}

both_backends! {
    async fn instances_checks_and_callbacks(db) {
        let fx = fixture(db).await;
        let (app, ch) = (&fx.app, &fx.ch);
        let c = connector(Fault::None, 0).await;
        let path = format!("/api/v1/accounts/{}/connector-instances", ch.p.account);
        // Bad input names its fields; nothing is written.
        let bad = json!({"service": "Mail!", "name": "", "endpoint": "http://plain", "secret": "short", "cert_pin": "xyz", "timeout_ms": 5});
        let r = app.post(&path, ch.p.cred(), bad).await.expect(StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<String> = r.field_errors().into_iter().map(|(f, _)| f).collect();
        for f in ["service", "name", "endpoint", "secret", "cert_pin", "timeout_ms"] {
            assert!(fields.iter().any(|x| x == f), "{f} not named in {fields:?}");
        }
        assert!(app.db.connector_instances().list(None).await.unwrap().is_empty());

        let i = fx.register(&c, "mail").await;
        let id = i["id"].as_i64().unwrap();
        assert!(!i.to_string().contains(SECRET), "the secret is never returned");
        assert_eq!(i["has_secret"], true);
        assert!(!format!("{:?}", app.db.connector_instances().get(id).await.unwrap()).contains(SECRET), "nor Debug-printed");
        app.post(&path, ch.p.cred(), json!({"service": "mail", "name": "Again", "endpoint": c.base_url(), "secret": SECRET})).await.expect(StatusCode::CONFLICT);
        // Other tenants do not see it.
        for outsider in [&ch.a, &ch.pc, &ch.b] {
            app.get(format!("/api/v1/connector-instances/{id}"), outsider.cred()).await.expect(StatusCode::NOT_FOUND);
        }
        app.get(&path, ch.a.cred()).await.expect(StatusCode::NOT_FOUND);
        assert_eq!(app.get(&path, ch.p.cred()).await.expect(StatusCode::OK).json.as_array().unwrap().len(), 1);

        // Both directions.
        let cb = format!("{}/api/v1/connector-callback", fx.base);
        let out = app.post(format!("/api/v1/connector-instances/{id}/check"), ch.p.cred(), json!({"callback_url": cb})).await.expect(StatusCode::OK).json;
        assert_eq!((out["outbound_ok"].as_bool(), out["callback_ok"].as_bool()), (Some(true), Some(true)), "{out}");
        assert!(out["instance"]["callback_verified_at"].is_string());
        assert_eq!(out["instance"]["last_check_ok"], true);

        // Callback refusals: bad signature, stale timestamp, replay, unknown instance.
        let now = app.clock.now().0 / 1_000_000;
        app.db.connector_instances().expect_callback(id, "n-1", app.clock.now()).await.unwrap();
        let body = br#"{"nonce":"n-1"}"#;
        let send = |inst: i64, tx: &'static str, ts: i64, sig: String| {
            app.req(axum::http::Method::POST, "/api/v1/connector-callback")
                .raw(body.to_vec(), Some("application/json"))
                .header(proto::H_INSTANCE, &inst.to_string())
                .header(proto::H_TRANSACTION, tx)
                .header(proto::H_TIMESTAMP, &ts.to_string())
                .header(proto::H_SIGNATURE, &sig)
                .send()
        };
        let sign = |secret: &str, tx: &str, ts: i64| proto::sign(secret.as_bytes(), ts, tx, Signed::Request { method: "POST", path: "/api/v1/connector-callback" }, body);
        send(id, "t-1", now, sign("wrong-secret-wrong", "t-1", now)).await.expect(StatusCode::UNAUTHORIZED);
        let stale = now - WIDE_SKEW - 10;
        send(id, "t-1", stale, sign(SECRET, "t-1", stale)).await.expect(StatusCode::UNAUTHORIZED);
        send(id + 100, "t-1", now, sign(SECRET, "t-1", now)).await.expect(StatusCode::UNAUTHORIZED);
        send(id, "t-1", now, sign(SECRET, "t-1", now)).await.expect(StatusCode::NO_CONTENT);
        send(id, "t-1", now, sign(SECRET, "t-1", now)).await.expect(StatusCode::UNAUTHORIZED);

        // A connector that answers with a bad signature fails the outbound check.
        c.shared.set_fault(Fault::BadSignature);
        let out = app.post(format!("/api/v1/connector-instances/{id}/check"), ch.p.cred(), json!({"callback_url": cb})).await.expect(StatusCode::OK).json;
        assert_eq!(out["outbound_ok"], false);
        assert!(out["outbound_message"].as_str().unwrap().contains("bad signature"), "{out}");
        assert_eq!(out["instance"]["last_check_ok"], false);
        assert!(out["instance"]["callback_verified_at"].is_null());
        c.stop().await;
    }

    async fn the_wizard_creates_everything_or_nothing(db) {
        let fx = fixture(db).await;
        let (app, ch) = (&fx.app, &fx.ch);
        let c = connector(Fault::None, 0).await;
        let path = format!("/api/v1/accounts/{}/connector-wizard", ch.p.account);
        let body = json!({"name": "Demo Mail", "endpoint": c.base_url(), "secret": SECRET, "cert_pin": c.pin});
        let out = app.post(&path, ch.p.cred(), body.clone()).await.expect(StatusCode::CREATED).json;
        assert_eq!(out["instance"]["service"], "mail");
        let types = out["resource_type_ids"].as_object().unwrap();
        assert_eq!(types.len(), 3);
        let tpl = out["service_template_id"].as_i64().unwrap();
        let t = app.get(format!("/api/v1/service-templates/{tpl}"), ch.p.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(t["resources"].as_array().unwrap().len(), 3, "{t}");
        assert_eq!(t["settings"]["domain"]["value"], "example.test");
        let rt = app.get(format!("/api/v1/resource-types/{}", types["mailbox"]), ch.p.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(rt["service"], "mail");
        // The starter plan: on the template, a rate per resource, unpublished and free.
        let plan_id = out["starter_plan_id"].as_i64().unwrap();
        let plan = app.get(format!("/api/v1/plans/{plan_id}"), ch.p.cred()).await.expect(StatusCode::OK).json;
        assert_eq!(plan["template_id"].as_i64(), Some(tpl), "{plan}");
        assert_eq!(plan["content"]["published"], false, "{plan}");
        let rates = plan["content"]["rates"].as_array().unwrap();
        assert_eq!(rates.len(), 3, "{plan}");
        assert!(rates.iter().all(|r| r["recurring_fee"] == 0), "{plan}");
        let mailbox_rate = rates.iter().find(|r| r["resource_type_id"] == types["mailbox"]).unwrap();
        let mailbox_default = t["resources"].as_array().unwrap().iter()
            .find(|r| r["resource_type_id"] == types["mailbox"]).unwrap()["default_limit"].clone();
        assert_eq!(mailbox_rate["included"], mailbox_default, "{plan} {t}");
        // Again: the instance exists → 409, and no second set of resource types or plan.
        let count = || async { sql(&app.db, "SELECT COUNT(*) FROM resource_types").await };
        let plans = || async { sql(&app.db, "SELECT COUNT(*) FROM plans").await };
        let (before, plans_before) = (count().await, plans().await);
        app.post(&path, ch.p.cred(), body).await.expect(StatusCode::CONFLICT);
        assert_eq!(count().await, before);
        assert_eq!(plans().await, plans_before);
        // An unreachable connector: 502, nothing written.
        let gone = json!({"name": "Gone", "endpoint": "https://127.0.0.1:9", "secret": SECRET, "cert_pin": c.pin});
        app.post(format!("/api/v1/accounts/{}/connector-wizard", ch.a.account), ch.a.cred(), gone).await.expect(StatusCode::BAD_GATEWAY);
        assert_eq!(count().await, before);
        // Only for the caller's own catalog (another account is not visible).
        app.post(&path, ch.a.cred(), json!({"name": "x", "endpoint": c.base_url(), "secret": SECRET})).await.expect(StatusCode::NOT_FOUND);
        c.stop().await;
    }

    async fn orders_provision_through_the_connector(db) {
        let fx = fixture(db).await;
        let c = connector(Fault::None, 1).await;
        fx.register(&c, "mail").await;
        let plan = fx.mail_plan().await;
        let (oid, sub) = fx.buy(plan, 3).await;
        fx.work().await;
        let o = fx.order(oid).await;
        assert_eq!(o["status"], "completed", "{o}");
        // The connector has the mailboxes, with the effective settings and the customer.
        let r = c.shared.snapshot().resources[&proto::resource_id(sub)].clone();
        assert_eq!(r.mailboxes.len(), 3);
        assert_eq!(r.mailboxes[0], "user0@provider.test");
        assert_eq!(r.customer.id, fx.ch.pc.account);
        // CH: more mailboxes. The order must complete and the connector must really hold
        // the new quantity (its own state, not ours).
        let ch = fx.app.post(format!("/api/v1/subscriptions/{sub}/change"), fx.ch.pc.cred(), json!({"quantities": {"boxes": 5}})).await.expect(StatusCode::CREATED).json;
        let s = fx.work().await;
        assert_eq!(s.failed, 0, "{s:?}");
        let o2 = fx.order(ch["id"].as_i64().unwrap()).await;
        assert_eq!((o2["type"].as_str(), o2["status"].as_str()), (Some("CH"), Some("completed")), "{o2}");
        assert_eq!(boxes_at(&c, sub), Some(5), "the connector received the new limit");
        let r = c.shared.snapshot().resources[&proto::resource_id(sub)].clone();
        assert_eq!(r.mailboxes[4], "user4@provider.test");
        assert_eq!(fx.app.db.subscriptions().get(sub).await.unwrap().quantities["boxes"], 5);
        // Suspend / resume / terminate through the real status seam: each move emits its
        // lifecycle event in its transaction, the connector follows, the customer gets a
        // mail per transition. Unprovision is idempotent (a stale second task is harmless).
        use cascade_domain::billing::lifecycle::SubscriptionStatus::*;
        let mails = || async { sql(&fx.app.db, "SELECT COUNT(*) FROM outbox WHERE template = 'subscription_status'").await };
        let mut sent = mails().await;
        for (from, to) in [(Active, AdminHold), (AdminHold, Active), (Active, CreditHold), (CreditHold, Terminated)] {
            let mut tx = fx.app.db.begin().await.unwrap();
            assert!(cascade_store::subscriptions::Subscriptions::move_status(&mut tx, sub, from, to, fx.app.clock.now()).await.unwrap());
            tx.commit().await.unwrap();
            let s = fx.work().await;
            assert_eq!(s.failed, 0, "{to:?}: {s:?}");
            let snap = c.shared.snapshot();
            match to {
                AdminHold | CreditHold => assert_eq!(snap.resources[&proto::resource_id(sub)].state, proto::ResourceState::Suspended),
                Active => assert_eq!(snap.resources[&proto::resource_id(sub)].state, proto::ResourceState::Active),
                _ => assert!(!snap.resources.contains_key(&proto::resource_id(sub))),
            }
            let now_sent = mails().await;
            assert!(now_sent > sent, "{to:?}: a status mail is queued");
            sent = now_sent;
        }
        c.stop().await;
    }

    async fn plans_without_connectors_keep_the_noop_path(db) {
        let fx = fixture(db).await;
        let plan = fx.mail_plan().await;
        // No instance for `mail`: the order completes without calling anything.
        let (oid, _) = fx.buy(plan, 2).await;
        fx.work().await;
        assert_eq!(fx.order(oid).await["status"], "completed");
    }

    async fn faults_show_on_the_order_and_a_retry_succeeds(db) {
        let fx = fixture(db).await;
        let plan = fx.mail_plan().await;
        let c = connector(Fault::Error500, 0).await;
        fx.register(&c, "mail").await;
        let (oid, sub) = fx.buy(plan, 2).await;
        let s = fx.work().await;
        assert_eq!(s.retried, 1, "{s:?}");
        let o = fx.order(oid).await;
        assert_eq!(o["status"], "provisioning");
        assert!(o["reason"].as_str().unwrap().contains("the mail service is broken"), "{o}");
        // Garbage, then a bad signature, then a hang (timeout): still retrying, each shown.
        for (fault, shown) in [(Fault::Garbage, "garbage"), (Fault::BadSignature, "bad signature"), (Fault::Hang, "timed out")] {
            c.shared.set_fault(fault);
            fx.app.advance_secs(3600);
            fx.work().await;
            let o = fx.order(oid).await;
            assert!(o["reason"].as_str().unwrap().contains(shown), "{shown}: {o}");
        }
        // The connector goes away entirely; the attempts run out: failed, with the message.
        let (url, pin) = (c.base_url(), c.pin.clone());
        c.stop().await;
        for _ in 0..6 {
            fx.app.advance_secs(86_400);
            fx.work().await;
        }
        let o = fx.order(oid).await;
        assert_eq!(o["status"], "failed", "{o}");
        assert!(o["reason"].as_str().unwrap().starts_with("provisioning failed: connector `mail`: connector unreachable"), "{o}");
        // Back on a new address (same secret): update the instance, retry from the panel.
        let back = connector(Fault::None, 1).await;
        assert_ne!(back.base_url(), url);
        let _ = pin;
        sql(&fx.app.db, &format!("UPDATE connector_instances SET endpoint = '{}', cert_pin = '{}' WHERE service = 'mail' RETURNING id", back.base_url(), back.pin)).await;
        fx.app.post_empty(format!("/api/v1/orders/{oid}/retry"), fx.ch.p.cred()).await.expect(StatusCode::OK);
        fx.work().await;
        assert_eq!(fx.order(oid).await["status"], "completed");
        assert_eq!(boxes_at(&back, sub), Some(2));
        back.stop().await;
    }

    async fn usage_is_collected_in_parallel_and_a_hanging_connector_delays_nobody(db) {
        let fx = fixture(db).await;
        let ok = connector(Fault::None, 0).await;
        fx.register(&ok, "mail").await;
        let plan = fx.mail_plan().await;
        let (_, sub) = fx.buy(plan, 4).await;
        fx.work().await;
        let hang = connector(Fault::None, 0).await;
        fx.register(&hang, "hangmail").await;
        hang.shared.set_fault(Fault::Hang);
        let clock: Arc<dyn Clock> = fx.app.clock.clone();
        let date = "2030-01-02";
        let started = std::time::Instant::now();
        let out = cascade_worker::usage_collect::collect_all(&fx.app.db, clock.clone(), date, Duration::from_secs(2), WIDE_SKEW, None).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(4), "bounded by the timeout, not the sum");
        assert_eq!(out.len(), 2);
        let good = out.iter().find(|o| o.service == "mail").unwrap();
        assert_eq!(good.error, None);
        assert_eq!((good.readings, good.recorded), (3, 1), "{good:?}: only the measurable mailbox rate is billed");
        let bad = out.iter().find(|o| o.service == "hangmail").unwrap();
        assert!(bad.error.as_deref().unwrap().contains("timed out"), "{bad:?}");
        let q = sql(&fx.app.db, &format!("SELECT quantity FROM usage_records WHERE subscription_id = {sub} AND usage_date = '{date}'")).await;
        assert_eq!(q, 4);
        // Collecting the same day again records nothing new.
        let again = cascade_worker::usage_collect::collect_all(&fx.app.db, clock, date, Duration::from_secs(2), WIDE_SKEW, Some(&[good.instance_id])).await.unwrap();
        assert_eq!(again[0].recorded, 0);
        assert_eq!(sql(&fx.app.db, &format!("SELECT COUNT(*) FROM usage_records WHERE subscription_id = {sub}")).await, 1);
        let i = fx.app.db.connector_instances().get(good.instance_id).await.unwrap();
        assert_eq!(i.usage_collected_on.as_deref(), Some(date));
        ok.stop().await;
        hang.stop().await;
    }
}

#[allow(dead_code)]
fn unused(_: Timestamp) {}

impl Fx {
    /// An invoice of the provider to its customer, issued and due `days_ago` days before
    /// today (overdue); its id.
    async fn overdue_invoice(&self, minor: i64, days_ago: u64) -> i64 {
        let due = (self.today() - chrono::Days::new(days_ago)).to_string();
        let now = self.app.clock.now();
        let mut tx = self.app.db.begin().await.unwrap();
        let head = NewDocument {
            kind: DocKind::Invoice,
            issuer: AccountId(self.ch.p.account),
            account: AccountId(self.ch.pc.account),
            currency: "EUR",
            issue_date: &due,
            due_date: Some(&due),
            charge_date: None,
            tax_bp: 0,
            method: None,
            external_ref: None,
            idem_key: None,
        };
        let line = NewLine {
            subscription_id: None,
            kind: "recurring".into(),
            description: "Overdue".into(),
            quantity: 1,
            unit_price_micro: minor * 10_000,
            amount_minor: minor,
            period_start: None,
            period_end: None,
            charge_key: None,
        };
        let (doc, _) = Documents::issue(&mut tx, &head, &[line], now)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        doc.id
    }

    fn today(&self) -> chrono::NaiveDate {
        chrono::DateTime::from_timestamp_micros(self.app.clock.now().0)
            .unwrap()
            .date_naive()
    }

    /// The daily run's collections (credit holds, terminations) `days` after today.
    async fn collect(&self, days: u64) -> cascade_worker::collections::CollectionsReport {
        let day = self.today() + chrono::Days::new(days);
        cascade_worker::collections::run(&self.app.db, None, day, self.app.clock.now())
            .await
            .unwrap()
    }

    fn state_at(c: &Running, sub: i64) -> Option<proto::ResourceState> {
        c.shared
            .snapshot()
            .resources
            .get(&proto::resource_id(sub))
            .map(|r| r.state)
    }
}

both_backends! {
    async fn account_holds_reach_the_connector_and_a_restore_provisions_again(db) {
        let fx = fixture(db).await;
        let c = connector(Fault::None, 0).await;
        fx.register(&c, "mail").await;
        let plan = fx.mail_plan().await;
        let (oid, sub) = fx.buy(plan, 2).await;
        fx.work().await;
        assert_eq!(fx.order(oid).await["status"], "completed");
        assert_eq!(Fx::state_at(&c, sub), Some(proto::ResourceState::Active));
        let (app, ch, db) = (&fx.app, &fx.ch, &fx.app.db);
        let pc = ch.pc.account;
        let status = || async { app.get(format!("/api/v1/subscriptions/{sub}"), ch.pc.cred()).await.expect(StatusCode::OK).json };
        let mails = || async { sql(db, "SELECT COUNT(*) FROM outbox WHERE template = 'subscription_status'").await };
        let syncs = || async { sql(db, "SELECT COUNT(*) FROM tasks WHERE kind = 'subscriptions.sync_service'").await };
        let kinds = || async {
            let rows: Vec<(String,)> = cascade_store::on_db!(db, p => sqlx::query_as(
                "SELECT kind FROM events WHERE subject_type = 'subscription' AND subject_id = $1 AND kind IN ('subscription.suspended', 'subscription.resumed', 'subscription.terminated') ORDER BY id")
                .bind(sub).fetch_all(p).await).unwrap();
            rows.into_iter().map(|r| r.0.trim_start_matches("subscription.").to_string()).collect::<Vec<_>>()
        };

        // Administrative hold by the seller through the API: the subscription follows, the
        // connector suspends it, the customer gets a mail; the answer says what moved.
        let mails0 = mails().await;
        let r = app.post(format!("/api/v1/accounts/{pc}/status"), ch.p.cred(), json!({"status": "admin_hold", "reason": "abuse"})).await.expect(StatusCode::OK).json;
        assert_eq!((r["status"].clone(), r["subscriptions_suspended"].clone()), (json!("admin_hold"), json!([sub])));
        assert_eq!(status().await["status"], "admin_hold");
        assert_eq!(fx.work().await.failed, 0);
        assert_eq!(Fx::state_at(&c, sub), Some(proto::ResourceState::Suspended));
        assert_eq!(mails().await, mails0 + 1);
        // Holding twice is refused and moves nothing.
        app.post(format!("/api/v1/accounts/{pc}/status"), ch.p.cred(), json!({"status": "admin_hold"})).await.expect_field("status", Some("invalid_status_transition"));
        // The credit check of the run never lifts an administrative hold.
        assert_eq!(fx.collect(0).await.subscriptions_released, 0);
        let r = app.post(format!("/api/v1/accounts/{pc}/status"), ch.p.cred(), json!({"status": "active"})).await.expect(StatusCode::OK).json;
        assert_eq!(r["subscriptions_resumed"], json!([sub]));
        fx.work().await;
        assert_eq!(Fx::state_at(&c, sub), Some(proto::ResourceState::Active));
        assert_eq!(mails().await, mails0 + 2);

        // Credit hold by the daily run (an invoice 60 days overdue, default terms).
        let inv = fx.overdue_invoice(5_000, 60).await;
        let r = fx.collect(0).await;
        assert_eq!((r.accounts_held, r.subscriptions_held), (1, 1));
        assert_eq!((status().await["status"].clone(), status().await["held_on"].clone()), (json!("credit_hold"), json!(fx.today().to_string())));
        fx.work().await;
        assert_eq!(Fx::state_at(&c, sub), Some(proto::ResourceState::Suspended));
        // A payment through the API that settles the debt lifts the hold at once.
        let paid = app.post(format!("/api/v1/accounts/{pc}/payments"), ch.p.cred(),
            json!({"amount_minor": 5_000, "currency": "EUR", "method": "bank_transfer", "apply_to": [inv]})).await.expect(StatusCode::CREATED).json;
        assert_eq!(paid["open_minor"], 0);
        assert_eq!(app.get(format!("/api/v1/accounts/{pc}"), ch.p.cred()).await.expect(StatusCode::OK).json["status"], "active");
        assert_eq!(status().await["status"], "active");
        fx.work().await;
        assert_eq!(Fx::state_at(&c, sub), Some(proto::ResourceState::Active));

        // Held again, and the hold period (30 days) passes: terminated, unprovisioned once.
        fx.overdue_invoice(7_000, 60).await;
        assert_eq!(fx.collect(0).await.subscriptions_held, 1);
        fx.work().await;
        assert_eq!(fx.collect(29).await.subscriptions_terminated, 0);
        assert_eq!(fx.collect(30).await.subscriptions_terminated, 1);
        let s = status().await;
        let end = (fx.today() + chrono::Days::new(30)).to_string();
        assert_eq!((s["status"].clone(), s["terminated_on"].clone()), (json!("terminated"), json!(end)));
        assert_eq!(fx.work().await.failed, 0);
        assert_eq!(Fx::state_at(&c, sub), None, "unprovisioned at the connector");
        let (sync_n, mail_n) = (syncs().await, mails().await);
        // The same day again: nothing new (no event, no task, no mail).
        assert_eq!(fx.collect(30).await, Default::default());
        fx.work().await;
        assert_eq!((syncs().await, mails().await), (sync_n, mail_n));
        assert_eq!(kinds().await, ["suspended", "resumed", "suspended", "resumed", "suspended", "terminated"]);

        // Restore: active again, provisioned again at the connector.
        let r = app.post_empty(format!("/api/v1/subscriptions/{sub}/restore"), ch.pc.cred()).await.expect(StatusCode::OK).json;
        assert_eq!((r["status"].clone(), r["terminated_on"].clone()), (json!("active"), Value::Null));
        assert_eq!(fx.work().await.failed, 0);
        assert_eq!(Fx::state_at(&c, sub), Some(proto::ResourceState::Active));
        assert_eq!(boxes_at(&c, sub), Some(2));

        // Terminated once more, its data gone: a restore is refused (422 data_gone).
        cascade_store::on_db!(db, p => sqlx::query("UPDATE subscriptions SET status = 'terminated', data_removed = TRUE WHERE id = $1").bind(sub).execute(p).await.map(|r| r.rows_affected())).unwrap();
        app.post_empty(format!("/api/v1/subscriptions/{sub}/restore"), ch.pc.cred()).await.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "data_gone");
        assert_eq!(status().await["status"], "terminated");
        c.stop().await;
    }
}

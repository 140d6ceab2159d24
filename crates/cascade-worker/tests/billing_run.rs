//! The daily billing run on both backends: what is charged when, catching up, renewals
//! and expiries, overuse, month ends, and exactly-once under crashes at any point.

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::catalog::plan::{BillingModel, BillingPeriodType};
use cascade_domain::clock::ManualClock;
use cascade_domain::ids::AccountId;
use cascade_store::accounts::Accounts;
use cascade_store::plans::Plans;
use cascade_store::subscriptions::{NewSubscription, Subscriptions};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::billing_run::{CrashPoint, RunError, RunOptions, run as billing_run, run_with};
use std::collections::BTreeMap;

mod common;
use common::{T0, account, d, plan_content};

struct Fixture {
    db: Db,
    provider: AccountId,
    rt: i64,
    template: i64,
}

async fn fixture(db: Db) -> Fixture {
    let provider = account(&db, None, AccountKind::Provider, "P").await;
    let mut tx = db.begin().await.unwrap();
    let (rt,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ($1, 'seats', 's', 'seat', '{}', 0, 0) RETURNING id")
        .bind(provider.0).fetch_one(c).await).unwrap();
    let (template,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
        "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ($1, 't', '[]', '{}', 0, 0) RETURNING id")
        .bind(provider.0).fetch_one(c).await).unwrap();
    tx.commit().await.unwrap();
    Fixture {
        db,
        provider,
        rt,
        template,
    }
}

impl Fixture {
    async fn plan(&self, model: BillingModel, pt: BillingPeriodType, measurable: bool) -> i64 {
        let mut tx = self.db.begin().await.unwrap();
        let p = Plans::create(
            &mut tx,
            self.provider,
            self.template,
            "EUR",
            &plan_content(model, pt, measurable, self.rt),
            T0,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        p.id
    }

    async fn subscribe(
        &self,
        customer: AccountId,
        plan: i64,
        start: &str,
        next: &str,
        renew: AutoRenew,
        seats: i64,
    ) -> i64 {
        let expires = cascade_domain::billing::calendar::add_months(d(start), 12).to_string();
        let s = NewSubscription {
            account_id: customer,
            vendor_id: self.provider,
            plan_id: plan,
            period_uid: "y1".into(),
            status: SubscriptionStatus::Active,
            start_date: start.into(),
            expires_on: expires,
            next_bill_date: next.into(),
            auto_renew: renew,
            quantities: BTreeMap::from([("seats".to_string(), seats)]),
            attributes: serde_json::json!({}),
        };
        let mut tx = self.db.begin().await.unwrap();
        let sub = Subscriptions::create(&mut tx, &s, T0).await.unwrap();
        tx.commit().await.unwrap();
        sub.id
    }

    async fn usage(&self, sub: i64, id: &str, qty: i64, day: &str) {
        let mut tx = self.db.begin().await.unwrap();
        on_tx!(&mut tx, c => sqlx::query("INSERT INTO usage_records (subscription_id, external_id, rate_uid, quantity, usage_date, created_at) VALUES ($1, $2, 'seats', $3, $4, 0)")
            .bind(sub).bind(id).bind(qty).bind(day).execute(c).await.map(|r| r.rows_affected())).unwrap();
        tx.commit().await.unwrap();
    }

    async fn bill(&self, day: &str) -> cascade_worker::billing_run::RunReport {
        billing_run(
            &self.db,
            &ManualClock::new(T0),
            d(day),
            &RunOptions::default(),
            |_, _| {},
        )
        .await
        .unwrap()
    }

    /// (kind, amount_minor, period_start) of every line billed to `customer`, in order.
    async fn lines(&self, customer: AccountId) -> Vec<(String, i64, Option<String>)> {
        let docs = self
            .db
            .documents()
            .of_account(customer, None, None, 1000)
            .await
            .unwrap()
            .items;
        let mut out = vec![];
        for doc in docs.iter().rev() {
            for l in self.db.documents().lines(doc.id).await.unwrap() {
                out.push((l.kind, l.amount_minor, l.period_start));
            }
        }
        out
    }

    async fn assert_books_balance(&self) {
        assert!(
            self.db
                .documents()
                .unbalanced(self.provider)
                .await
                .unwrap()
                .is_empty(),
            "books do not balance"
        );
        let dangling = cascade_store::integrity::dangling_references(&self.db)
            .await
            .unwrap();
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }
}

fn monthly() -> BillingPeriodType {
    BillingPeriodType::MonthlyOnStatementDay
}

both_backends! {
    async fn prepaid_monthly_bills_each_month_once(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let sub = f.subscribe(c, plan, "2024-01-15", "2024-02-01", AutoRenew::OnExpiry, 3).await;
        assert_eq!(f.bill("2024-01-31").await.documents_written, 0, "nothing due yet");
        let r = f.bill("2024-02-01").await;
        assert_eq!((r.accounts_done, r.documents_written, r.lines_written), (1, 1, 2));
        // 10.00 for February, 2 extra seats × 2.00.
        assert_eq!(f.lines(c).await, vec![("recurring".into(), 1000, Some("2024-02-01".into())), ("resource".into(), 400, Some("2024-02-01".into()))]);
        // Running the same day again charges nothing.
        let again = f.bill("2024-02-01").await;
        assert_eq!((again.documents_written, again.lines_written), (0, 0));
        assert_eq!(f.db.subscriptions().get(sub).await.unwrap().next_bill_date, "2024-03-01");
        // A missed run catches up: March and April on 10 April.
        f.bill("2024-04-10").await;
        let starts: Vec<_> = f.lines(c).await.into_iter().filter(|l| l.0 == "recurring").map(|l| l.2.unwrap()).collect();
        assert_eq!(starts, vec!["2024-02-01", "2024-03-01", "2024-04-01"]);
        f.assert_books_balance().await;
    }

    async fn anniversary_on_the_31st_bills_on_month_ends(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, BillingPeriodType::EveryNMonths { months: 1 }, false).await;
        f.subscribe(c, plan, "2024-01-31", "2024-02-29", AutoRenew::OnExpiry, 1).await;
        f.bill("2024-05-01").await;
        let starts: Vec<_> = f.lines(c).await.into_iter().map(|l| l.2.unwrap()).collect();
        assert_eq!(starts, vec!["2024-02-29", "2024-03-31", "2024-04-30"]);
    }

    async fn expiry_without_auto_renew_stops_billing(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let sub = f.subscribe(c, plan, "2024-01-01", "2024-12-01", AutoRenew::Off, 1).await;
        f.bill("2025-03-01").await;
        let s = f.db.subscriptions().get(sub).await.unwrap();
        // Expired on 1 Jan 2025; the grace period (7 days) long over, the same run's
        // collections terminated it.
        assert_eq!((s.status, s.terminated_on.as_deref()), (SubscriptionStatus::Terminated, Some("2025-03-01")));
        assert_eq!(s.expires_on, "2025-01-01");
        let starts: Vec<_> = f.lines(c).await.into_iter().map(|l| l.2.unwrap()).collect();
        assert_eq!(starts, vec!["2024-12-01"], "nothing after the term ends on 2025-01-01");
    }

    async fn overuse_and_payg_usage(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), true).await;
        let sub = f.subscribe(c, plan, "2024-01-01", "2024-02-01", AutoRenew::OnExpiry, 1).await;
        f.usage(sub, "u1", 4, "2024-01-10").await;
        f.usage(sub, "u2", 3, "2024-01-20").await;
        f.bill("2024-02-01").await;
        // 7 used, 1 included: 6 × 0.50 overuse for January.
        assert!(f.lines(c).await.contains(&("overuse".into(), 300, Some("2024-01-01".into()))));

        let c2 = account(&f.db, Some(f.provider), AccountKind::Customer, "PAYG").await;
        let payg = f.plan(BillingModel::ExternalRating, monthly(), true).await;
        let s2 = f.subscribe(c2, payg, "2024-01-01", "2024-02-01", AutoRenew::OnExpiry, 1).await;
        f.usage(s2, "x", 10, "2024-01-05").await;
        f.bill("2024-02-01").await;
        assert_eq!(f.lines(c2).await, vec![("usage".into(), 500, Some("2024-01-01".into()))]);
        f.assert_books_balance().await;
    }

    async fn crashing_anywhere_and_rerunning_never_charges_twice(db) {
        let f = fixture(db).await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        // Nobody pays for eight months: a class without automatic credit hold keeps the
        // subscriptions running (a hold would suspend them, and nothing would be billed).
        let mut tx = f.db.begin().await.unwrap();
        let terms = cascade_domain::billing::payments::CreditTerms { auto_credit_hold: false, ..Default::default() };
        let class = cascade_store::credit::CustomerClasses::create(&mut tx, f.provider, "No hold", &terms, T0).await.unwrap();
        tx.commit().await.unwrap();
        let mut customers = vec![];
        for i in 0..4 {
            let c = account(&f.db, Some(f.provider), AccountKind::Customer, &format!("C{i}")).await;
            let mut tx = f.db.begin().await.unwrap();
            on_tx!(&mut tx, x => sqlx::query("UPDATE accounts SET customer_class_id = $1 WHERE id = $2")
                .bind(class.id.0).bind(c.0).execute(x).await.map(|r| r.rows_affected())).unwrap();
            tx.commit().await.unwrap();
            f.subscribe(c, plan, "2024-01-10", "2024-02-01", AutoRenew::OnExpiry, 2 + i).await;
            customers.push(c);
        }
        // Crash at every point in turn, re-run after each crash, and compare with what
        // one clean run produces.
        let points: Vec<CrashPoint> = (0..4).flat_map(|i| [CrashPoint::InsideAccount(i), CrashPoint::BetweenAccounts(i)]).collect();
        for (i, point) in points.iter().enumerate() {
            let day = format!("2024-{:02}-01", 2 + i);
            let crashed = billing_run(&f.db, &ManualClock::new(T0), d(&day), &RunOptions { batch: 2, crash: Some(*point), ..Default::default() }, |_, _| {}).await;
            assert!(matches!(crashed, Err(RunError::Crash)), "{point:?}");
            billing_run(&f.db, &ManualClock::new(T0), d(&day), &RunOptions::default(), |_, _| {}).await.unwrap();
            billing_run(&f.db, &ManualClock::new(T0), d(&day), &RunOptions::default(), |_, _| {}).await.unwrap();
        }
        for (i, c) in customers.iter().enumerate() {
            let lines = f.lines(*c).await;
            let recurring: Vec<_> = lines.iter().filter(|l| l.0 == "recurring").map(|l| l.2.clone().unwrap()).collect();
            let months: Vec<String> = (2..=9).map(|m| format!("2024-{m:02}-01")).collect();
            assert_eq!(recurring, months, "customer {i}: each month exactly once");
            let seats = lines.iter().filter(|l| l.0 == "resource").count();
            assert_eq!(seats, 8, "customer {i}");
        }
        f.assert_books_balance().await;
    }
}

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Fifty customers with a mix of everything the run bills: prepaid monthly on the
/// statement day (1st or 15th) with seats and overuse, anniversaries on the 31st,
/// annual periods, terms charged before the subscription period, postpaid, PAYG usage,
/// terms that expire, and customers of two issuers (the provider and a reseller).
async fn seed_mix(f: &Fixture) -> Vec<AccountId> {
    use BillingModel::*;
    let reseller = account(&f.db, Some(f.provider), AccountKind::Reseller, "R").await;
    let kinds = [
        f.plan(ChargeBeforeBillingPeriod, monthly(), true).await,
        f.plan(
            ChargeBeforeBillingPeriod,
            BillingPeriodType::EveryNMonths { months: 1 },
            false,
        )
        .await,
        f.plan(
            ChargeBeforeBillingPeriod,
            BillingPeriodType::EveryNMonths { months: 12 },
            false,
        )
        .await,
        f.plan(
            ChargeBeforeSubscriptionPeriod,
            BillingPeriodType::EveryNMonths { months: 12 },
            true,
        )
        .await,
        f.plan(ChargeAfterBillingPeriod, monthly(), true).await,
        f.plan(ExternalRating, monthly(), true).await,
    ];
    let mut customers = vec![];
    for i in 0..50i64 {
        let vendor = if i % 5 == 4 { reseller } else { f.provider };
        let c = account(&f.db, Some(vendor), AccountKind::Customer, &format!("C{i}")).await;
        if i % 3 == 1 {
            let mut tx = f.db.begin().await.unwrap();
            on_tx!(&mut tx, x => sqlx::query("UPDATE accounts SET statement_day = 15 WHERE id = $1").bind(c.0).execute(x).await.map(|r| r.rows_affected())).unwrap();
            tx.commit().await.unwrap();
        }
        for j in 0..(1 + i % 3) {
            let k = ((i + j) % kinds.len() as i64) as usize;
            let (start, next) = match k {
                1 => ("2024-01-31", "2024-02-29"),
                2 | 3 => ("2023-03-01", "2024-03-01"),
                _ if i % 3 == 1 => ("2024-01-15", "2024-02-15"),
                _ => ("2024-01-10", "2024-02-01"),
            };
            let renew = if i % 7 == 3 {
                AutoRenew::Off
            } else {
                AutoRenew::OnExpiry
            };
            let s = NewSubscription {
                account_id: c,
                vendor_id: vendor,
                plan_id: kinds[k],
                period_uid: "y1".into(),
                status: SubscriptionStatus::Active,
                start_date: start.into(),
                expires_on: cascade_domain::billing::calendar::add_months(
                    d(start),
                    if i % 7 == 3 { 4 } else { 12 },
                )
                .to_string(),
                next_bill_date: next.into(),
                auto_renew: renew,
                quantities: BTreeMap::from([("seats".to_string(), 1 + (i + j) % 4)]),
                attributes: serde_json::json!({}),
            };
            let mut tx = f.db.begin().await.unwrap();
            let sub = Subscriptions::create(&mut tx, &s, T0).await.unwrap();
            tx.commit().await.unwrap();
            if matches!(k, 0 | 3 | 4 | 5) {
                for (n, day) in [
                    "2024-01-20",
                    "2024-02-05",
                    "2024-02-20",
                    "2024-03-10",
                    "2024-04-02",
                    "2024-05-25",
                ]
                .iter()
                .enumerate()
                {
                    f.usage(sub.id, &format!("u{n}"), 1 + (i + n as i64) % 5, day)
                        .await;
                }
            }
        }
        customers.push(c);
    }
    customers
}

/// Everything billing wrote, in a form that does not depend on ids or on the order in
/// which batches committed.
#[derive(Debug, sqlx::FromRow)]
#[allow(dead_code)] // read through Debug
struct LineRow {
    account_id: i64,
    issuer_account_id: i64,
    issue_date: String,
    total_minor: i64,
    open_minor: i64,
    subscription_id: Option<i64>,
    line_kind: String,
    description: String,
    quantity: i64,
    unit_price_micro: i64,
    amount_minor: i64,
    period_start: Option<String>,
    period_end: Option<String>,
    charge_key: Option<String>,
}

async fn billed_state(db: &Db) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let mut tx = db.begin().await.unwrap();
    let lines: Vec<LineRow> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT d.account_id, d.issuer_account_id, d.issue_date, d.total_minor, d.open_minor, l.subscription_id, l.line_kind, l.description,
                l.quantity, l.unit_price_micro, l.amount_minor, l.period_start, l.period_end, l.charge_key
         FROM document_lines l JOIN documents d ON d.id = l.document_id").fetch_all(c).await).unwrap();
    let subs: Vec<(i64, String, String, String, i64)> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT id, next_bill_date, expires_on, status, version FROM subscriptions ORDER BY id").fetch_all(c).await).unwrap();
    let usage: Vec<(i64, String, Option<i64>)> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT subscription_id, external_id, billed_line_id FROM usage_records ORDER BY subscription_id, external_id").fetch_all(c).await).unwrap();
    let numbers: Vec<(i64, String)> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT issuer_account_id, number FROM documents WHERE kind = 'invoice' ORDER BY issuer_account_id, number").fetch_all(c).await).unwrap();
    // BO orders: each linked to lines of its invoice billing its subscription, under its
    // charge keys; compared without ids and numbers (batches commit in any order).
    type OrderRow = (i64, i64, Option<i64>, String, String, i64, String);
    let orders: Vec<OrderRow> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT account_id, vendor_id, subscription_id, order_type, status, total_minor, details FROM orders ORDER BY id").fetch_all(c).await).unwrap();
    let key_lines: Vec<(String, i64, Option<i64>, i64)> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT charge_key, document_id, subscription_id, amount_minor FROM document_lines
         WHERE charge_key IS NOT NULL AND document_id IN (SELECT subject_id FROM events WHERE kind = 'invoice.issued')").fetch_all(c).await).unwrap();
    let key_lines: std::collections::HashMap<String, (i64, Option<i64>, i64)> = key_lines
        .into_iter()
        .map(|(k, d, s, a)| (k, (d, s, a)))
        .collect();
    let mut bo = vec![];
    let mut keys_in_orders = 0;
    for (account, vendor, sub, kind, status, total, details) in orders {
        assert_eq!((kind.as_str(), status.as_str()), ("BO", "completed"));
        let det: serde_json::Value = serde_json::from_str(&details).unwrap();
        let keys: Vec<String> = det["charge_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        let mut sum = 0;
        for k in &keys {
            let (doc, ksub, amount) = key_lines[k];
            assert_eq!(
                (doc, ksub),
                (det["invoice_id"].as_i64().unwrap(), sub),
                "{k}"
            );
            sum += amount;
        }
        keys_in_orders += keys.len();
        assert_eq!(sum, total);
        bo.push(format!(
            "{account} {vendor} {sub:?} {total} {} {} {} {keys:?}",
            det["billed_on"], det["period_start"], det["period_end"]
        ));
    }
    assert_eq!(
        keys_in_orders,
        key_lines.len(),
        "every line the run billed belongs to one BO order"
    );
    bo.sort();
    // One `invoice.issued` per invoice the run wrote (every such invoice holds BO orders).
    let with_orders: std::collections::HashSet<i64> = key_lines.values().map(|l| l.0).collect();
    let events: Vec<(i64,)> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT e.subject_id FROM events e JOIN documents d ON d.id = e.subject_id AND d.kind = 'invoice' WHERE e.kind = 'invoice.issued'").fetch_all(c).await).unwrap();
    let evented: std::collections::HashSet<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        evented.len(),
        events.len(),
        "no invoice has two invoice.issued events"
    );
    assert_eq!(
        evented, with_orders,
        "invoice.issued for exactly the invoices the run wrote"
    );
    tx.rollback().await.unwrap();
    // Invoice numbers are sequential per issuer, without gaps or repeats.
    let mut per_issuer: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (issuer, n) in numbers {
        per_issuer.entry(issuer).or_default().push(n);
    }
    for (issuer, ns) in per_issuer {
        let want: Vec<String> = (1..=ns.len()).map(|i| format!("INV-{i:06}")).collect();
        assert_eq!(ns, want, "numbers of issuer {issuer}");
    }
    let mut lines: Vec<String> = lines.into_iter().map(|l| format!("{l:?}")).collect();
    lines.sort();
    (
        lines,
        subs.into_iter().map(|s| format!("{s:?}")).collect(),
        usage.into_iter().map(|u| format!("{u:?}")).collect(),
        bo,
    )
}

/// Equal lists, or a failure that shows only what differs.
fn same(got: &[String], want: &[String], what: &str) {
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
    assert!(
        got == want,
        "{what}: {} vs {} rows; missing {missing:#?}; extra {extra:#?}",
        got.len(),
        want.len()
    );
}

both_backends! {
    async fn random_crashes_in_batches_bill_exactly_what_a_clean_run_bills(db) {
        let dates = ["2024-02-01", "2024-02-15", "2024-02-29", "2024-03-01", "2024-03-15", "2024-04-10", "2024-05-01", "2024-05-31", "2024-07-02"];
        // The reference: a clean run per date on a fresh database.
        let clean = cascade_testkit::TestDb::for_backend(db.backend().as_str()).await;
        let reference = fixture(clean.db.clone()).await;
        let customers = seed_mix(&reference).await;
        for day in dates {
            let r = billing_run(&reference.db, &ManualClock::new(T0), d(day), &RunOptions::default(), |_, _| {}).await.unwrap();
            assert_eq!((r.accounts_failed, r.accounts_billed_alone), (0, 0), "{day}: a clean run bills every account with its batch");
        }
        let want = billed_state(&reference.db).await;
        assert!(want.0.len() > 300, "the mix bills plenty: {} lines", want.0.len());

        let f = fixture(db).await;
        assert_eq!(seed_mix(&f).await, customers);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut crashes = 0;
        for day in dates {
            let mut due = cascade_store::billing_batch::due_accounts(&f.db, day).await.unwrap().len() as u64;
            for _ in 0..2 + rng.below(3) {
                let point = if rng.below(2) == 0 { CrashPoint::InsideAccount(rng.below(due + 2)) } else { CrashPoint::BetweenAccounts(rng.below(due + 2)) };
                // Batches written whole or in parts of one or two accounts.
                let opts = RunOptions { batch: 1 + rng.below(20) as i64, crash: Some(point), write_chunk: crashes % 3, ..Default::default() };
                let parallel = 1 + rng.below(3) as usize;
                let out = run_with(&f.db, &ManualClock::new(T0), d(day), &opts, parallel, |_, _| {}).await;
                let reached = match point {
                    CrashPoint::InsideAccount(i) => i < due,
                    CrashPoint::BetweenAccounts(n) => n < due,
                };
                if reached {
                    assert!(matches!(out, Err(RunError::Crash)), "{day} {point:?}: {out:?}");
                    crashes += 1;
                } else {
                    out.unwrap();
                }
                // What is left due after the crash, for the next point.
                let left = cascade_store::billing_batch::due_accounts(&f.db, day).await.unwrap().len() as u64;
                assert!(left <= due);
                due = left;
            }
            let opts = RunOptions { batch: 1 + rng.below(30) as i64, crash: None, ..Default::default() };
            let r = run_with(&f.db, &ManualClock::new(T0), d(day), &opts, 1 + rng.below(3) as usize, |_, _| {}).await.unwrap();
            assert_eq!(r.accounts_failed, 0, "{day}");
            let again = billing_run(&f.db, &ManualClock::new(T0), d(day), &RunOptions::default(), |_, _| {}).await.unwrap();
            assert_eq!((again.accounts_done, again.documents_written, again.lines_written), (0, 0, 0), "{day}: re-running writes nothing");
        }
        let got = billed_state(&f.db).await;
        same(&got.0, &want.0, "the same lines on the same invoices, with the same totals");
        same(&got.1, &want.1, "subscriptions end in the same state");
        same(&got.2, &want.2, "the same usage is marked billed");
        same(&got.3, &want.3, "the same BO orders");
        assert!(crashes >= 10, "only {crashes} crashes");
        f.assert_books_balance().await;
        let reseller = AccountId(f.provider.0 + 1);
        assert!(f.db.documents().unbalanced(reseller).await.unwrap().is_empty());
    }

    async fn an_account_with_bad_data_is_billed_alone_and_fails_alone(db) {
        let f = fixture(db).await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let mut subs = vec![];
        for i in 0..6 {
            let c = account(&f.db, Some(f.provider), AccountKind::Customer, &format!("C{i}")).await;
            subs.push(f.subscribe(c, plan, "2024-01-10", "2024-02-01", AutoRenew::OnExpiry, 2).await);
        }
        let mut tx = f.db.begin().await.unwrap();
        on_tx!(&mut tx, c => sqlx::query("UPDATE subscriptions SET period_uid = 'gone' WHERE id = $1").bind(subs[2]).execute(c).await.map(|r| r.rows_affected())).unwrap();
        tx.commit().await.unwrap();
        let r = f.bill("2024-02-01").await;
        assert_eq!((r.accounts_done, r.accounts_failed, r.accounts_billed_alone, r.documents_written), (5, 1, 1, 5));
        assert_eq!(f.db.subscriptions().get(subs[2]).await.unwrap().next_bill_date, "2024-02-01", "stays due");
        assert_eq!(f.db.subscriptions().get(subs[3]).await.unwrap().next_bill_date, "2024-03-01");
        f.assert_books_balance().await;
    }

    async fn a_subscription_changed_since_it_was_read_is_not_moved(db) {
        use cascade_store::billing_batch::{SubscriptionMove, move_subscriptions};
        let f = fixture(db).await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let a = f.subscribe(c, plan, "2024-01-10", "2024-02-01", AutoRenew::OnExpiry, 2).await;
        let b = f.subscribe(c, plan, "2024-01-10", "2024-02-01", AutoRenew::OnExpiry, 2).await;
        let read = [f.db.subscriptions().get(a).await.unwrap(), f.db.subscriptions().get(b).await.unwrap()];
        // Someone changes `b` meanwhile.
        let mut tx = f.db.begin().await.unwrap();
        Subscriptions::set_status(&mut tx, b, SubscriptionStatus::Active, T0).await.unwrap();
        tx.commit().await.unwrap();
        let moves: Vec<SubscriptionMove> = read.iter().map(|s| SubscriptionMove {
            id: s.id, version: s.version, next_bill_date: "2024-03-01".into(), expires_on: s.expires_on.clone(), status: s.status,
        }).collect();
        let mut tx = f.db.begin().await.unwrap();
        let moved = move_subscriptions(&mut tx, &moves, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(moved, [a].into_iter().collect());
        let (sa, sb) = (f.db.subscriptions().get(a).await.unwrap(), f.db.subscriptions().get(b).await.unwrap());
        assert_eq!((sa.next_bill_date.as_str(), sa.version), ("2024-03-01", read[0].version + 1));
        assert_eq!(sb.next_bill_date, "2024-02-01");
    }
}

both_backends! {
    async fn a_charge_billed_elsewhere_is_not_billed_again_and_the_batch_still_goes_through(db) {
        use cascade_store::documents::{DocKind, Documents, NewDocument, NewLine};
        let f = fixture(db).await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let mut subs = vec![];
        let mut customers = vec![];
        for i in 0..4 {
            let c = account(&f.db, Some(f.provider), AccountKind::Customer, &format!("C{i}")).await;
            subs.push(f.subscribe(c, plan, "2024-01-10", "2024-02-01", AutoRenew::OnExpiry, 3).await);
            customers.push(c);
        }
        // The order flow already charged February's fee of the second subscription.
        let head = NewDocument {
            kind: DocKind::Invoice,
            issuer: f.provider,
            account: customers[1],
            currency: "EUR",
            issue_date: "2024-01-20",
            due_date: None,
            charge_date: None,
            tax_bp: 0,
            method: None,
            external_ref: None,
            idem_key: None,
        };
        let line = NewLine {
            subscription_id: Some(subs[1]),
            kind: "recurring".into(),
            description: "February, charged with the order".into(),
            quantity: 1,
            unit_price_micro: 10_000_000,
            amount_minor: 1000,
            period_start: Some("2024-02-01".into()),
            period_end: Some("2024-03-01".into()),
            charge_key: Some(format!("sub:{}:rec:2024-02-01", subs[1])),
        };
        let mut tx = f.db.begin().await.unwrap();
        Documents::issue(&mut tx, &head, &[line], T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let r = f.bill("2024-02-01").await;
        assert_eq!((r.accounts_done, r.accounts_billed_alone, r.documents_written, r.lines_written), (4, 0, 4, 7));
        let kinds: Vec<String> = f.lines(customers[1]).await.into_iter().map(|l| l.0).collect();
        assert_eq!(kinds, ["recurring", "resource"], "February's fee once (from the order), seats from the run");
        f.assert_books_balance().await;
        let _ = billed_state(&f.db).await; // numbers stay sequential
    }
}

/// (subscription, status, total, billed_on, period_start, charge keys, invoice number) of
/// every BO order of `customer`, oldest first; checks each is linked to lines of its
/// invoice that bill its subscription.
async fn bo_orders(
    db: &Db,
    customer: AccountId,
) -> Vec<(i64, String, i64, String, String, Vec<String>, String)> {
    let page = db.orders().of_account(customer, None, 1000).await.unwrap();
    let mut out = vec![];
    for o in page
        .items
        .iter()
        .rev()
        .filter(|o| o.order_type.as_str() == "BO")
    {
        let doc = o.details["invoice_id"]
            .as_i64()
            .expect("linked to its invoice");
        let keys: Vec<String> = o.details["charge_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        let lines: Vec<(Option<String>, Option<i64>, i64)> = cascade_store::on_db!(db, p => sqlx::query_as(
            "SELECT charge_key, subscription_id, amount_minor FROM document_lines WHERE document_id = $1").bind(doc).fetch_all(p).await).unwrap();
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| l.0.as_ref().is_some_and(|k| keys.contains(k)))
            .collect();
        assert_eq!(
            mine.len(),
            keys.len(),
            "order {}: every charge key is a line of invoice {doc}",
            o.id
        );
        assert!(mine.iter().all(|l| l.1 == o.subscription_id));
        assert_eq!(mine.iter().map(|l| l.2).sum::<i64>(), o.total_minor);
        assert_eq!(
            (o.vendor_id, o.currency.as_str()),
            (
                db.documents().get(doc).await.unwrap().issuer_account_id,
                "EUR"
            )
        );
        out.push((
            o.subscription_id.unwrap(),
            o.status.as_str().to_string(),
            o.total_minor,
            o.details["billed_on"].as_str().unwrap().to_string(),
            o.details["period_start"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            keys,
            o.details["invoice_number"].as_str().unwrap().to_string(),
        ));
    }
    out
}

/// (kind, account, subject, payload) of every event of `kinds`, by id.
async fn events_of(db: &Db, kinds: &[&str]) -> Vec<(String, i64, i64, serde_json::Value)> {
    let rows: Vec<(String, Option<i64>, i64, String)> =
        cascade_store::on_db!(db, p => sqlx::query_as(
        "SELECT kind, account_id, subject_id, payload FROM events ORDER BY id").fetch_all(p).await)
        .unwrap();
    rows.into_iter()
        .filter(|r| kinds.contains(&r.0.as_str()))
        .map(|(k, a, s, p)| (k, a.unwrap_or(0), s, serde_json::from_str(&p).unwrap()))
        .collect()
}

both_backends! {
    async fn each_billed_period_is_one_completed_bo_order_linked_to_its_lines(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), true).await;
        let sub = f.subscribe(c, plan, "2024-01-15", "2024-02-01", AutoRenew::OnExpiry, 3).await;
        f.usage(sub, "u1", 5, "2024-02-10").await;
        let r = f.bill("2024-02-01").await;
        assert_eq!(r.orders_written, 1);
        let orders = bo_orders(&f.db, c).await;
        let k = |s: &str| format!("sub:{sub}:{s}");
        assert_eq!(orders, vec![(sub, "completed".into(), 1400, "2024-02-01".into(), "2024-02-01".into(),
            vec![k("rec:2024-02-01"), k("res:seats:2024-02-01")], "INV-000001".into())]);
        // Re-running the day writes no second order.
        assert_eq!(f.bill("2024-02-01").await.orders_written, 0);
        assert_eq!(bo_orders(&f.db, c).await.len(), 1);
        // A missed run catches up two periods: two orders on one invoice, March's with
        // February's overuse (5 used, 1 included: 4 × 0.50).
        let r = f.bill("2024-04-10").await;
        assert_eq!((r.documents_written, r.orders_written), (1, 2));
        let orders = bo_orders(&f.db, c).await;
        assert_eq!(orders.len(), 3);
        assert_eq!((orders[1].2, orders[1].3.as_str(), orders[1].6.as_str()), (1600, "2024-03-01", "INV-000002"));
        // April's: no overuse, February's usage is not billed a second time for March.
        assert_eq!((orders[2].2, orders[2].3.as_str(), orders[2].6.as_str()), (1400, "2024-04-01", "INV-000002"));
        assert_eq!(orders[1].5.len(), 3, "March's fee and seats, February's overuse: {:?}", orders[1].5);
        // Nothing to provision: BO orders are listed with the subscription's orders.
        let of_sub = f.db.orders().of_subscription(sub).await.unwrap();
        assert_eq!(of_sub.iter().filter(|o| o.order_type.as_str() == "BO").count(), 3);
        f.assert_books_balance().await;
    }

    async fn the_run_emits_invoice_issued_once_per_invoice(db) {
        let f = fixture(db).await;
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        let mut customers = vec![];
        for i in 0..3 {
            let c = account(&f.db, Some(f.provider), AccountKind::Customer, &format!("C{i}")).await;
            f.subscribe(c, plan, "2024-01-10", "2024-02-01", AutoRenew::OnExpiry, 2).await;
            customers.push(c);
        }
        // One account billed alone (bad data elsewhere in its batch does not matter).
        let r = billing_run(&f.db, &ManualClock::new(T0), d("2024-02-01"), &RunOptions { batch: 2, ..Default::default() }, |_, _| {}).await.unwrap();
        assert_eq!((r.documents_written, r.invoice_events), (3, 3));
        let ev = events_of(&f.db, &["invoice.issued"]).await;
        assert_eq!(ev.len(), 3);
        for (i, c) in customers.iter().enumerate() {
            let doc = &f.db.documents().of_account(*c, None, None, 10).await.unwrap().items[0];
            let e = ev.iter().find(|e| e.1 == c.0).unwrap_or_else(|| panic!("customer {i}"));
            assert_eq!(e.2, doc.id);
            assert_eq!(e.3["document_id"], doc.id);
            assert_eq!(e.3["invoice_number"], doc.number.clone().unwrap());
            assert_eq!((e.3["total_minor"].as_i64(), e.3["currency"].as_str()), (Some(doc.total_minor), Some("EUR")));
            assert_eq!(e.3["due_date"].as_str(), doc.due_date.as_deref());
        }
        assert_eq!(f.bill("2024-02-01").await.invoice_events, 0);
        assert_eq!(events_of(&f.db, &["invoice.issued"]).await.len(), 3, "re-run: no second event");
    }

    async fn a_subscription_that_will_not_renew_is_told_once_before_it_ends(db) {
        let f = fixture(db).await;
        let c = account(&f.db, Some(f.provider), AccountKind::Customer, "C").await;
        let plan = f.plan(BillingModel::ChargeBeforeSubscriptionPeriod, BillingPeriodType::EveryNMonths { months: 12 }, false).await;
        // Both end on 2025-03-01; only the one without auto-renewal is told.
        let ending = f.subscribe(c, plan, "2024-03-01", "2025-03-01", AutoRenew::Off, 1).await;
        f.subscribe(c, plan, "2024-03-01", "2025-03-01", AutoRenew::OnExpiry, 1).await;
        assert_eq!(f.bill("2025-02-21").await.expiring_notices, 0, "8 days ahead: not yet");
        let r = f.bill("2025-02-22").await;
        assert_eq!(r.expiring_notices, 1);
        let ev = events_of(&f.db, &["subscription.expiring"]).await;
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].1, ev[0].2), (c.0, ending));
        assert_eq!(ev[0].3["expires_on"], "2025-03-01");
        assert_eq!(ev[0].3["plan_name"], "Suite");
        // The following days (and a re-run) tell nobody again.
        for day in ["2025-02-22", "2025-02-23", "2025-02-28"] {
            assert_eq!(f.bill(day).await.expiring_notices, 0, "{day}");
        }
        // A longer notice period is an option of the run.
        let c2 = account(&f.db, Some(f.provider), AccountKind::Customer, "C2").await;
        let s2 = f.subscribe(c2, plan, "2024-04-01", "2025-04-01", AutoRenew::Off, 1).await;
        let opts = RunOptions { expiry_notice_days: 40, ..Default::default() };
        let r = billing_run(&f.db, &ManualClock::new(T0), d("2025-02-28"), &opts, |_, _| {}).await.unwrap();
        assert_eq!(r.expiring_notices, 1);
        assert_eq!(events_of(&f.db, &["subscription.expiring"]).await.last().unwrap().2, s2);
    }

    async fn billing_run_events_become_mails(db) {
        use cascade_domain::task::RetryPolicy;
        use cascade_worker::{Registry, Worker, WorkerConfig};
        use std::sync::Arc;
        let f = fixture(db).await;
        let new = NewAccountInput {
            kind: AccountKind::Customer,
            name: "Mailed".into(),
            contact: ContactInput { email: Some("billing@mailed.example".into()), ..ContactInput::default() },
            country: "DE".into(),
            language: "en".into(),
            currency: None,
            customer_class_id: None,
        }
        .validate(Some(&f.db.accounts().get(f.provider).await.unwrap().facts()))
        .unwrap();
        let mut tx = f.db.begin().await.unwrap();
        let c = Accounts::create(&mut tx, &new, T0).await.unwrap().id;
        tx.commit().await.unwrap();
        let plan = f.plan(BillingModel::ChargeBeforeBillingPeriod, monthly(), false).await;
        f.subscribe(c, plan, "2024-03-01", "2025-02-01", AutoRenew::Off, 1).await;
        let r = f.bill("2025-02-22").await;
        assert_eq!((r.invoice_events, r.expiring_notices), (1, 1));
        let clock = Arc::new(ManualClock::new(T0));
        let mut registry = Registry::with_builtin();
        cascade_worker::notify::register(&mut registry, None);
        let w = Worker::new(f.db.clone(), clock, registry, WorkerConfig {
            worker_id: "test".into(),
            retry: RetryPolicy { max_attempts: 3, base_delay_secs: 10, max_delay_secs: 60 },
            ..WorkerConfig::default()
        });
        let stats = w.run_once().await.unwrap();
        assert_eq!((stats.done, stats.failed), (2, 0), "{stats:?}");
        // No SMTP configured: the rendered messages wait in the outbox.
        let rows: Vec<(String, String, Option<String>)> = cascade_store::on_db!(&f.db, p => sqlx::query_as(
            "SELECT template, recipient, subject FROM outbox ORDER BY template").fetch_all(p).await).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), ("invoice_issued", "billing@mailed.example"));
        assert!(rows[0].2.as_deref().unwrap().contains("INV-000001"), "{rows:?}");
        assert_eq!(rows[1].0, "subscription_expiring");
        // Re-running the day queues nothing more.
        f.bill("2025-02-22").await;
        w.run_once().await.unwrap();
        let n: Vec<(i64,)> = cascade_store::on_db!(&f.db, p => sqlx::query_as("SELECT COUNT(*) FROM outbox").fetch_all(p).await).unwrap();
        assert_eq!(n[0].0, 2);
    }
}

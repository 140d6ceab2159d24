//! Wholesale billing down the channel in the daily run, on both backends: a customer of
//! an L2 billed monthly makes the L2 owe the L1 the L1's price and the L1 owe the
//! provider the provider's price (one wholesale row per reseller and BO order), and each
//! reseller is invoiced by its vendor on its own statement day, once, under crashes.

use cascade_domain::account::AccountKind;
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::catalog::plan::{BillingModel, BillingPeriodType, Fee, Price};
use cascade_domain::clock::ManualClock;
use cascade_domain::ids::AccountId;
use cascade_store::documents::DocKind;
use cascade_store::plans::Plans;
use cascade_store::subscriptions::{NewSubscription, Subscriptions};
use cascade_store::{Db, on_tx};
use cascade_testkit::both_backends;
use cascade_worker::billing_run::{RunError, RunOptions, run as billing_run};
use std::collections::BTreeMap;

mod common;
use common::{T0, account, d, plan_content};

struct Chain {
    db: Db,
    p: AccountId,
    l1: AccountId,
    l2: AccountId,
    c: AccountId,
    /// L2's copy, which C's subscription is on.
    plan: i64,
}

async fn exec(db: &Db, q: &str) {
    let mut tx = db.begin().await.unwrap();
    on_tx!(&mut tx, c => sqlx::query(q).execute(c).await.map(|r| r.rows_affected())).unwrap();
    tx.commit().await.unwrap();
}

/// A monthly subscription of `account` to `plan` sold by `vendor`, with `seats` seats,
/// started 1 January 2024 and billed from 1 February.
async fn subscribe(db: &Db, account: AccountId, vendor: AccountId, plan: i64, seats: i64) {
    let mut tx = db.begin().await.unwrap();
    Subscriptions::create(
        &mut tx,
        &NewSubscription {
            account_id: account,
            vendor_id: vendor,
            plan_id: plan,
            period_uid: "y1".into(),
            status: SubscriptionStatus::Active,
            start_date: "2024-01-01".into(),
            expires_on: "2025-01-01".into(),
            next_bill_date: "2024-02-01".into(),
            auto_renew: AutoRenew::OnExpiry,
            quantities: BTreeMap::from([("seats".to_string(), seats)]),
            attributes: serde_json::json!({}),
        },
        T0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// P → L1 (statement day 5) → L2 (statement day 10) → C (statement day 1). P's plan is
/// 10.00/month + 2.00/seat, L1's copy 12.00 + 3.00, L2's copy 15.00 + 4.00; C has 3 seats
/// (1 included) on L2's copy, billed monthly from 1 February 2024.
async fn chain(db: Db) -> Chain {
    let p = account(&db, None, AccountKind::Provider, "P").await;
    let l1 = account(&db, Some(p), AccountKind::Reseller, "L1").await;
    let l2 = account(&db, Some(l1), AccountKind::Reseller, "L2").await;
    let c = account(&db, Some(l2), AccountKind::Customer, "C").await;
    exec(
        &db,
        &format!("UPDATE accounts SET statement_day = 5 WHERE id = {}", l1.0),
    )
    .await;
    exec(
        &db,
        &format!("UPDATE accounts SET statement_day = 10 WHERE id = {}", l2.0),
    )
    .await;
    exec(
        &db,
        &format!("UPDATE accounts SET statement_day = 1 WHERE id = {}", c.0),
    )
    .await;
    let mut tx = db.begin().await.unwrap();
    let (rt,): (i64,) = on_tx!(&mut tx, x => sqlx::query_as(
        "INSERT INTO resource_types (owner_account_id, code, service, unit, name, created_at, updated_at) VALUES ($1, 'seats', 's', 'seat', '{}', 0, 0) RETURNING id")
        .bind(p.0).fetch_one(x).await).unwrap();
    let (template,): (i64,) = on_tx!(&mut tx, x => sqlx::query_as(
        "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ($1, 't', '[]', '{}', 0, 0) RETURNING id")
        .bind(p.0).fetch_one(x).await).unwrap();
    let priced = |fee: i64, seat: i64| {
        let mut c = plan_content(
            BillingModel::ChargeBeforeBillingPeriod,
            BillingPeriodType::MonthlyOnStatementDay,
            false,
            rt,
        );
        c.periods[0].recurring = Fee::of(Price::units(fee));
        c.rates[0].recurring_fee = Price::units(seat);
        c
    };
    let plan_p = Plans::create(&mut tx, p, template, "EUR", &priced(10, 2), T0)
        .await
        .unwrap();
    let plan_l1 = Plans::delegate(&mut tx, &plan_p, l1, T0).await.unwrap();
    let plan_l1 = Plans::update(
        &mut tx,
        plan_l1.id,
        plan_l1.version,
        &priced(12, 3),
        false,
        false,
        T0,
    )
    .await
    .unwrap();
    let plan_l2 = Plans::delegate(&mut tx, &plan_l1, l2, T0).await.unwrap();
    Plans::update(
        &mut tx,
        plan_l2.id,
        plan_l2.version,
        &priced(15, 4),
        false,
        false,
        T0,
    )
    .await
    .unwrap();
    let plan = plan_l2.id;
    tx.commit().await.unwrap();
    subscribe(&db, c, l2, plan, 3).await;
    Chain {
        db,
        p,
        l1,
        l2,
        c,
        plan,
    }
}

impl Chain {
    /// Another customer of L2 with `seats` seats on L2's copy, billed from 1 February.
    async fn customer(&self, name: &str, seats: i64) -> AccountId {
        let c = account(&self.db, Some(self.l2), AccountKind::Customer, name).await;
        exec(
            &self.db,
            &format!("UPDATE accounts SET statement_day = 1 WHERE id = {}", c.0),
        )
        .await;
        subscribe(&self.db, c, self.l2, self.plan, seats).await;
        c
    }

    /// (buyer, amount, periods, plan, billed_on) of the recurring rows, in buyer and id order.
    async fn recurring(&self) -> Vec<(AccountId, i64, i64, i64, String)> {
        let mut tx = self.db.begin().await.unwrap();
        let r: Vec<(i64, i64, i64, i64, String)> = on_tx!(&mut tx, x => sqlx::query_as(
            "SELECT buyer_account_id, amount_minor, periods, plan_id, billed_on FROM wholesale_transactions WHERE order_id IS NULL ORDER BY buyer_account_id DESC, id").fetch_all(x).await).unwrap();
        tx.commit().await.unwrap();
        r.into_iter()
            .map(|r| (AccountId(r.0), r.1, r.2, r.3, r.4))
            .collect()
    }

    async fn bill(&self, day: &str) -> cascade_worker::billing_run::RunReport {
        self.bill_with(day, RunOptions::default()).await.unwrap()
    }

    async fn bill_with(
        &self,
        day: &str,
        opts: RunOptions,
    ) -> Result<cascade_worker::billing_run::RunReport, RunError> {
        billing_run(&self.db, &ManualClock::new(T0), d(day), &opts, |_, _| {}).await
    }

    /// (issuer, number, total, [line amounts]) of `account`'s invoices, oldest first.
    async fn invoices(&self, account: AccountId) -> Vec<(AccountId, String, i64, Vec<i64>)> {
        let docs = self
            .db
            .documents()
            .of_account(account, Some(DocKind::Invoice), None, 1000)
            .await
            .unwrap()
            .items;
        let mut out = vec![];
        for doc in docs.iter().rev() {
            let lines = self
                .db
                .documents()
                .lines(doc.id)
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.amount_minor)
                .collect();
            out.push((
                doc.issuer_account_id,
                doc.number.clone().unwrap(),
                doc.total_minor,
                lines,
            ));
        }
        out
    }

    /// (buyer, seller, amount, invoiced) of every wholesale row, in id order.
    async fn rows(&self) -> Vec<(AccountId, AccountId, i64, bool)> {
        let mut tx = self.db.begin().await.unwrap();
        let r: Vec<(i64, i64, i64, Option<i64>)> = on_tx!(&mut tx, x => sqlx::query_as(
            "SELECT buyer_account_id, seller_account_id, amount_minor, document_id FROM wholesale_transactions ORDER BY id").fetch_all(x).await).unwrap();
        tx.commit().await.unwrap();
        r.into_iter()
            .map(|r| (AccountId(r.0), AccountId(r.1), r.2, r.3.is_some()))
            .collect()
    }

    async fn assert_books(&self) {
        for a in [self.p, self.l1, self.l2, self.c] {
            assert!(
                self.db.documents().unbalanced(a).await.unwrap().is_empty(),
                "books of {a:?}"
            );
        }
        let dangling = cascade_store::integrity::dangling_references(&self.db)
            .await
            .unwrap();
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }
}

both_backends! {
    async fn resellers_owe_their_vendors_price_and_are_invoiced_on_their_own_day(db) {
        let ch = chain(db).await;
        let r = ch.bill("2024-02-01").await;
        // C pays L2's price: 15.00 + 2 × 4.00.
        assert_eq!(ch.invoices(ch.c).await.iter().map(|i| i.2).collect::<Vec<_>>(), vec![2300]);
        // L2 owes L1 12.00 + 2 × 3.00, L1 owes P 10.00 + 2 × 2.00, not invoiced yet.
        assert_eq!(r.wholesale_rows, 2);
        let mut rows = ch.rows().await;
        rows.sort();
        assert_eq!(rows, vec![(ch.l1, ch.p, 1400, false), (ch.l2, ch.l1, 1800, false)]);
        let upcoming = ch.db.wholesale().uninvoiced_of(ch.l2).await.unwrap();
        // The run's consolidated row: no order, the plan priced, one subscription period.
        assert_eq!(upcoming.iter().map(|u| (u.order_id, u.periods, u.billed_on.as_deref(), u.amount_minor)).collect::<Vec<_>>(),
            vec![(None, 1, Some("2024-02-01"), 1800)]);
        assert_eq!(upcoming[0].subscription_id, None);
        assert!(upcoming[0].description.as_deref().unwrap().starts_with("Suite (plan #"), "{:?}", upcoming[0].description);
        assert_eq!(r.tiers.invoices, 0, "nobody's billing day");

        // L1's day: P invoices L1; L2's row waits for the 10th.
        let r = ch.bill("2024-02-05").await;
        assert_eq!((r.tiers.invoices, r.tiers.rows, r.tiers.events), (1, 1, 1));
        assert_eq!(ch.invoices(ch.l1).await, vec![(ch.p, "INV-000001".to_string(), 1400, vec![1400])]);
        assert!(ch.invoices(ch.l2).await.is_empty());
        assert_eq!(ch.bill("2024-02-05").await.tiers, Default::default(), "re-running the day invoices nothing");
        let r = ch.bill("2024-02-10").await;
        assert_eq!(r.tiers.invoices, 1);
        assert_eq!(ch.invoices(ch.l2).await, vec![(ch.l1, "INV-000001".to_string(), 1800, vec![1800])]);
        assert!(ch.db.wholesale().uninvoiced_of(ch.l2).await.unwrap().is_empty());
        let doc = ch.db.documents().of_account(ch.l2, Some(DocKind::Invoice), None, 10).await.unwrap().items.remove(0);
        assert_eq!(doc.due_date.as_deref(), Some("2024-02-24"), "14 days: no class");
        let rows = ch.db.wholesale().of_document(doc.id).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].buyer_account_id, ch.l2);

        // March: the L1 invoice crashes inside its transaction; the re-run writes it once.
        ch.bill("2024-03-01").await;
        let crashed = ch.bill_with("2024-03-05", RunOptions { tier_crash: Some(0), ..Default::default() }).await;
        assert!(matches!(crashed, Err(RunError::Crash)));
        assert_eq!(ch.invoices(ch.l1).await.len(), 1, "nothing of the crashed chunk");
        ch.bill("2024-03-05").await;
        ch.bill("2024-03-05").await;
        ch.bill("2024-03-10").await;
        assert_eq!(ch.invoices(ch.l1).await, vec![
            (ch.p, "INV-000001".to_string(), 1400, vec![1400]),
            (ch.p, "INV-000002".to_string(), 1400, vec![1400]),
        ]);
        assert_eq!(ch.invoices(ch.l2).await.iter().map(|i| (i.1.as_str(), i.2)).collect::<Vec<_>>(), vec![("INV-000001", 1800), ("INV-000002", 1800)]);
        assert!(ch.rows().await.iter().all(|r| r.3), "every row invoiced once");
        assert_eq!(ch.rows().await.len(), 4);
        let mut tx = ch.db.begin().await.unwrap();
        let (events,): (i64,) = on_tx!(&mut tx, x => sqlx::query_as("SELECT COUNT(*) FROM events WHERE kind = 'invoice.issued' AND account_id IN ($1, $2)")
            .bind(ch.l1.0).bind(ch.l2.0).fetch_one(x).await).unwrap();
        tx.commit().await.unwrap();
        assert_eq!(events, 4);
        ch.assert_books().await;
    }

    async fn a_catch_up_writes_one_row_per_period_and_reseller(db) {
        let ch = chain(db).await;
        // February and March billed on 2 March: two BO orders, two rows per reseller.
        let r = ch.bill("2024-03-02").await;
        assert_eq!(r.orders_written, 2);
        assert_eq!(r.wholesale_rows, 4);
        assert_eq!(ch.bill("2024-03-02").await.wholesale_rows, 0);
        let mut tx = ch.db.begin().await.unwrap();
        let keys: Vec<(String,)> = on_tx!(&mut tx, x => sqlx::query_as("SELECT charge_key FROM wholesale_transactions WHERE buyer_account_id = $1 ORDER BY id")
            .bind(ch.l1.0).fetch_all(x).await).unwrap();
        tx.commit().await.unwrap();
        let keys: Vec<String> = keys.into_iter().map(|k| k.0).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        for (key, on) in keys.iter().zip(["2024-02-01", "2024-03-01"]) {
            let head = format!("run:{}:bill:{on}:plan:", r.run_id);
            assert!(key.starts_with(&head) && key.ends_with(&format!(":wholesale:{}", ch.l1.0)), "{key}");
        }
        // L1's day in March: both on one invoice.
        ch.bill("2024-03-05").await;
        assert_eq!(ch.invoices(ch.l1).await, vec![(ch.p, "INV-000001".to_string(), 2800, vec![1400, 1400])]);
        ch.assert_books().await;
    }

    async fn a_run_consolidates_each_resellers_debt_per_plan_across_batches_and_crashes(db) {
        let ch = chain(db).await;
        // Six customers of L2 with 3, 1, 2, 5, 1 and 4 seats (1 included).
        for (i, seats) in [1, 2, 5, 1, 4].into_iter().enumerate() {
            ch.customer(&format!("C{i}"), seats).await;
        }
        // Seats above the one included, C first.
        let extra_seats: i64 = [3, 1, 2, 5, 1, 4].iter().map(|s| s - 1).sum();
        // Crash after three accounts, two accounts per batch: the first run's batches
        // committed, the rest is billed by the re-run.
        let crashed = ch.bill_with("2024-02-01", RunOptions { batch: 2, crash: Some(cascade_worker::billing_run::CrashPoint::BetweenAccounts(4)), ..Default::default() }).await;
        assert!(matches!(crashed, Err(RunError::Crash)));
        let first = ch.recurring().await;
        assert_eq!(first.iter().filter(|r| r.0 == ch.l2).map(|r| r.2).sum::<i64>(), 4, "four accounts billed before the crash: {first:?}");
        ch.bill_with("2024-02-01", RunOptions { batch: 2, ..Default::default() }).await.unwrap();
        assert_eq!(ch.bill("2024-02-01").await.wholesale_rows, 0, "a third run owes nothing more");
        let rows = ch.recurring().await;
        // One row per run and reseller (the plan priced is the vendor's copy), never one per
        // subscription: L2 owes 12.00 + 3.00 per extra seat, L1 owes 10.00 + 2.00.
        let of = |b: AccountId| rows.iter().filter(|r| r.0 == b).collect::<Vec<_>>();
        assert_eq!(of(ch.l2).len(), 2, "{rows:?}");
        assert_eq!(of(ch.l1).len(), 2, "{rows:?}");
        assert_eq!(of(ch.l2).iter().map(|r| r.2).sum::<i64>(), 6);
        assert_eq!(of(ch.l2).iter().map(|r| r.1).sum::<i64>(), 6 * 1200 + extra_seats * 300);
        assert_eq!(of(ch.l1).iter().map(|r| r.1).sum::<i64>(), 6 * 1000 + extra_seats * 200);
        assert!(of(ch.l2).iter().all(|r| r.4 == "2024-02-01"));
        assert_ne!(of(ch.l2)[0].3, of(ch.l1)[0].3, "each priced with its vendor's copy");
        // L1's day: one invoice from P, a line per row, the exact total.
        let r = ch.bill("2024-02-05").await;
        assert_eq!((r.tiers.invoices, r.tiers.rows), (1, 2));
        let inv = ch.invoices(ch.l1).await;
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].2, 6 * 1000 + extra_seats * 200);
        assert_eq!(inv[0].3.len(), 2);
        let doc = ch.db.documents().of_account(ch.l1, Some(DocKind::Invoice), None, 10).await.unwrap().items.remove(0);
        let lines = ch.db.documents().lines(doc.id).await.unwrap();
        assert!(lines.iter().all(|l| l.description.starts_with("Wholesale: Suite (plan #") && l.description.contains("billed on 2024-02-01")), "{lines:?}");
        // The customers' own invoices: each billed once.
        let mut tx = ch.db.begin().await.unwrap();
        let (bo,): (i64,) = on_tx!(&mut tx, x => sqlx::query_as("SELECT COUNT(*) FROM orders WHERE order_type = 'BO'").fetch_one(x).await).unwrap();
        tx.commit().await.unwrap();
        assert_eq!(bo, 6);
        ch.assert_books().await;
    }
}

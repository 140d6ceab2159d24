//! Storage of the order flow, on both backends: wholesale rows written once and never
//! repriced, the chain check against credit limits and exposure, the payment-gate
//! helpers (balances and allocations inside a transaction, books kept balanced), and
//! the subscription and order methods the API and the provisioning task use.

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::billing::lifecycle::{AutoRenew, OrderStatus, OrderType, SubscriptionStatus};
use cascade_domain::catalog::plan::PlanContent;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_store::accounts::Accounts;
use cascade_store::documents::{DocKind, Document, Documents, NewDocument, NewLine};
use cascade_store::plans::Plans;
use cascade_store::subscriptions::{NewOrder, NewSubscription, Orders, Subscriptions};
use cascade_store::wholesale::{self, NewWholesale, Wholesale};
use cascade_store::{StoreError, on_tx};
use cascade_testkit::{Db, both_backends};
use serde_json::json;
use std::collections::BTreeMap;

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

async fn exec(db: &Db, q: &str) {
    let mut tx = db.begin().await.unwrap();
    on_tx!(&mut tx, c => sqlx::query(q).execute(c).await.map(|r| r.rows_affected())).unwrap();
    tx.commit().await.unwrap();
}

/// Give `account` a customer class (owned by `owner`) with this credit limit.
async fn credit_limit(db: &Db, owner: AccountId, account: AccountId, limit: Option<i64>) {
    let mut tx = db.begin().await.unwrap();
    let limit = limit
        .map(|l| l.to_string())
        .unwrap_or_else(|| "NULL".into());
    let class = Accounts::create_customer_class(
        &mut tx,
        owner,
        &format!("class of {account}, limit {limit}"),
        T0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    exec(
        db,
        &format!(
            "UPDATE customer_classes SET credit_limit_minor = {limit} WHERE id = {}",
            class.0
        ),
    )
    .await;
    exec(
        db,
        &format!(
            "UPDATE accounts SET customer_class_id = {} WHERE id = {account}",
            class.0
        ),
    )
    .await;
}

/// An issued document of `kind` with one line of `minor` (charge key optional).
#[allow(clippy::too_many_arguments)]
async fn doc(
    db: &Db,
    kind: DocKind,
    issuer: AccountId,
    account: AccountId,
    minor: i64,
    key: Option<&str>,
    sub: Option<i64>,
    period: Option<(&str, &str)>,
) -> Document {
    let mut tx = db.begin().await.unwrap();
    let head = NewDocument {
        kind,
        issuer,
        account,
        currency: "EUR",
        issue_date: "2024-03-01",
        due_date: None,
        charge_date: None,
        tax_bp: 0,
        method: None,
        external_ref: None,
        idem_key: None,
    };
    let line = NewLine {
        subscription_id: sub,
        kind: kind.as_str().into(),
        description: "test".into(),
        quantity: 1,
        unit_price_micro: minor * 10_000,
        amount_minor: minor,
        period_start: period.map(|p| p.0.to_string()),
        period_end: period.map(|p| p.1.to_string()),
        charge_key: key.map(str::to_string),
    };
    let (d, _) = Documents::issue(&mut tx, &head, &[line], T0)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    d
}

async fn order(
    db: &Db,
    customer: AccountId,
    vendor: AccountId,
    sub: Option<i64>,
    status: OrderStatus,
) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let o = Orders::create(
        &mut tx,
        &NewOrder {
            account_id: customer,
            vendor_id: vendor,
            subscription_id: sub,
            order_type: OrderType::So,
            status,
            reason: None,
            currency: "EUR".into(),
            total_minor: 0,
            details: json!({}),
            placed_by: None,
        },
        T0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    o.id
}

async fn owe(db: &Db, order: i64, buyer: AccountId, seller: AccountId, minor: i64) -> bool {
    let mut tx = db.begin().await.unwrap();
    let w = NewWholesale {
        order_id: order,
        buyer,
        seller,
        currency: "EUR".into(),
        amount_minor: minor,
    };
    let written = Wholesale::record(&mut tx, &w, T0).await.unwrap();
    tx.commit().await.unwrap();
    written
}

async fn shortfall(db: &Db, order: i64) -> Option<wholesale::Shortfall> {
    let mut tx = db.begin().await.unwrap();
    let s = Wholesale::chain_shortfall(&mut tx, order).await.unwrap();
    tx.commit().await.unwrap();
    s
}

async fn open(db: &Db, d: &Document) -> i64 {
    db.documents().get(d.id).await.unwrap().open_minor
}

async fn books(db: &Db, issuers: &[AccountId]) {
    for i in issuers {
        assert_eq!(
            db.documents().unbalanced(*i).await.unwrap(),
            Vec::<i64>::new(),
            "issuer {i}"
        );
    }
}

struct Tree {
    p: AccountId,
    a: AccountId,
    a2: AccountId,
    c: AccountId,
}

async fn tree(db: &Db) -> Tree {
    let p = add(db, None, AccountKind::Provider, "Provider").await;
    let a = add(db, Some(p), AccountKind::Reseller, "Reseller A").await;
    let a2 = add(db, Some(a), AccountKind::Reseller, "Reseller A2").await;
    let c = add(db, Some(a2), AccountKind::Customer, "Customer").await;
    Tree { p, a, a2, c }
}

both_backends! {
    async fn an_invoiced_wholesale_row_counts_once_in_the_chain_check(db) {
        let t = tree(&db).await;
        credit_limit(&db, t.p, t.a, Some(1_500)).await;
        // A owes 1,000 on a completed order; a new order needs 800 more.
        let done = order(&db, t.c, t.a2, None, OrderStatus::Completed).await;
        owe(&db, done, t.a, t.p, 1_000).await;
        let next = order(&db, t.c, t.a2, None, OrderStatus::Paid).await;
        owe(&db, next, t.a, t.p, 800).await;
        let before = shortfall(&db, next).await.expect("1,000 + 800 exceed 1,500");
        assert_eq!(before.available_minor, 500, "pending, not invoiced");
        assert_eq!(db.wholesale().uninvoiced_of(t.a).await.unwrap().iter().map(|u| u.amount_minor).collect::<Vec<_>>(), vec![1_000], "the paid order has not passed the check");
        // The provider invoices the completed order's row to A: now a balance, no longer pending.
        let inv = doc(&db, DocKind::Invoice, t.p, t.a, 1_000, Some("tier:test"), None, None).await;
        let row = db.wholesale().of_order(done).await.unwrap().remove(0);
        let mut tx = db.begin().await.unwrap();
        assert_eq!(wholesale::mark_invoiced(&mut tx, &[(row.id, inv.id)]).await.unwrap(), 1);
        assert_eq!(wholesale::mark_invoiced(&mut tx, &[(row.id, inv.id)]).await.unwrap(), 0, "once");
        tx.commit().await.unwrap();
        let after = shortfall(&db, next).await.expect("still short");
        assert_eq!(after.available_minor, 500, "counted once: as the invoice's balance");
        assert!(db.wholesale().uninvoiced_of(t.a).await.unwrap().is_empty());
        assert_eq!(db.wholesale().of_document(inv.id).await.unwrap().len(), 1);
        // A pays the invoice: the 800 fit.
        let pay = doc(&db, DocKind::Payment, t.p, t.a, 1_000, None, None, None).await;
        let mut tx = db.begin().await.unwrap();
        wholesale::apply_credits(&mut tx, &inv, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(open(&db, &pay).await, 0);
        assert_eq!(shortfall(&db, next).await, None);
        books(&db, &[t.p]).await;
    }

    async fn the_orders_waiting_for_payment_of_an_account_newest_first(db) {
        let t = tree(&db).await;
        let other = add(&db, Some(t.a2), AccountKind::Customer, "Other").await;
        let w1 = order(&db, t.c, t.a2, None, OrderStatus::WaitingForPayment).await;
        // Many orders in other states do not hide older waiting ones.
        for _ in 0..5 {
            order(&db, t.c, t.a2, None, OrderStatus::Completed).await;
        }
        order(&db, other, t.a2, None, OrderStatus::WaitingForPayment).await;
        let w2 = order(&db, t.c, t.a2, None, OrderStatus::WaitingForPayment).await;
        order(&db, t.c, t.a2, None, OrderStatus::Cancelled).await;
        let ids = |v: Vec<cascade_store::subscriptions::Order>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(ids(db.orders().waiting_for_payment(t.c, 100).await.unwrap()), vec![w2, w1]);
        assert_eq!(ids(db.orders().waiting_for_payment(t.c, 1).await.unwrap()), vec![w2]);
        assert!(db.orders().waiting_for_payment(t.a, 100).await.unwrap().is_empty());
    }

    async fn wholesale_rows_are_written_once(db) {
        let t = tree(&db).await;
        let o = order(&db, t.c, t.a2, None, OrderStatus::Paid).await;
        assert!(owe(&db, o, t.a2, t.a, 2_400).await);
        assert!(owe(&db, o, t.a, t.p, 2_000).await);
        // The same debt again, even at another price, writes nothing.
        assert!(!owe(&db, o, t.a2, t.a, 9_999).await);
        let rows = db.wholesale().of_order(o).await.unwrap();
        assert_eq!(
            rows.iter().map(|w| (w.buyer_account_id, w.seller_account_id, w.amount_minor, w.document_id)).collect::<Vec<_>>(),
            vec![(t.a2, t.a, 2_400, None), (t.a, t.p, 2_000, None)]
        );
        assert_eq!(rows[0].charge_key, format!("order:{o}:wholesale:{}", t.a2));
        assert_eq!(Wholesale::charge_key(o, t.a), rows[1].charge_key);
    }

    async fn the_chain_check_weighs_credit_against_exposure(db) {
        let t = tree(&db).await;
        // No class: unlimited for now.
        let o1 = order(&db, t.c, t.a2, None, OrderStatus::Paid).await;
        owe(&db, o1, t.a2, t.a, 2_400).await;
        owe(&db, o1, t.a, t.p, 2_000).await;
        assert_eq!(shortfall(&db, o1).await, None);

        // A may owe up to 30.00.
        credit_limit(&db, t.p, t.a, Some(3_000)).await;
        assert_eq!(shortfall(&db, o1).await, None);
        exec(&db, &format!("UPDATE orders SET status = 'completed' WHERE id = {o1}")).await;

        // A second order: 20.00 already owed and not invoiced leaves 10.00 of credit.
        let o2 = order(&db, t.c, t.a2, None, OrderStatus::Paid).await;
        owe(&db, o2, t.a2, t.a, 1_800).await;
        owe(&db, o2, t.a, t.p, 1_500).await;
        let s = shortfall(&db, o2).await.expect("A lacks credit");
        assert_eq!((s.reseller, s.needed_minor, s.available_minor), (t.a, 1_500, 1_000));
        assert_eq!(s.reason(), format!("reseller Reseller A (#{}) lacks balance or credit", t.a));
        // Orders that did not pass the check yet do not count against each other.
        let o3 = order(&db, t.c, t.a2, None, OrderStatus::Paid).await;
        owe(&db, o3, t.a, t.p, 1_000).await;
        assert_eq!(shortfall(&db, o3).await, None);

        // A pays 5.00 in advance: its balance is a credit, and the order passes.
        doc(&db, DocKind::Payment, t.p, t.a, 500, None, None, None).await;
        assert_eq!(shortfall(&db, o2).await, None);

        // An open invoice to A counts as exposure too; and the nearest reseller is named first.
        doc(&db, DocKind::Invoice, t.p, t.a, 800, Some("a-inv"), None, None).await;
        credit_limit(&db, t.a, t.a2, Some(0)).await;
        let s = shortfall(&db, o2).await.expect("A2 has no credit");
        assert_eq!(s.reseller, t.a2);
        credit_limit(&db, t.a, t.a2, None).await;
        let s = shortfall(&db, o2).await.expect("A is short again");
        assert_eq!((s.reseller, s.available_minor), (t.a, 3_000 - (800 - 500) - 2_000));
        books(&db, &[t.p, t.a, t.a2]).await;
    }

    async fn credits_are_applied_inside_the_transaction(db) {
        let t = tree(&db).await;
        let pay1 = doc(&db, DocKind::Payment, t.a2, t.c, 300, None, None, None).await;
        let pay2 = doc(&db, DocKind::Payment, t.a2, t.c, 900, None, None, None).await;
        let mut tx = db.begin().await.unwrap();
        let head = NewDocument {
            kind: DocKind::Invoice, issuer: t.a2, account: t.c, currency: "EUR", issue_date: "2024-03-01", due_date: Some("2024-03-15"),
            charge_date: None, tax_bp: 0, method: None, external_ref: None, idem_key: None,
        };
        let line = NewLine {
            subscription_id: None, kind: "recurring".into(), description: "x".into(), quantity: 1, unit_price_micro: 10_000_000,
            amount_minor: 1_000, period_start: None, period_end: None, charge_key: Some("k1".into()),
        };
        let (inv, _) = Documents::issue(&mut tx, &head, &[line], T0).await.unwrap().unwrap();
        // The invoice written in this transaction already counts.
        assert_eq!(wholesale::balance_in(&mut tx, t.c, "EUR").await.unwrap(), 1_000 - 1_200);
        assert_eq!(wholesale::apply_credits(&mut tx, &inv, T0).await.unwrap(), 1_000);
        assert_eq!(wholesale::apply_credits(&mut tx, &inv, T0).await.unwrap(), 0, "nothing left to settle");
        tx.commit().await.unwrap();
        assert_eq!((open(&db, &inv).await, open(&db, &pay1).await, open(&db, &pay2).await), (0, 0, 200));
        assert_eq!(db.documents().balance(t.c, "EUR").await.unwrap(), -200);

        // A credit memo goes to the preferred invoice first, then the oldest.
        let inv2 = doc(&db, DocKind::Invoice, t.a2, t.c, 400, Some("k2"), None, None).await;
        let inv3 = doc(&db, DocKind::Invoice, t.a2, t.c, 100, Some("k3"), None, None).await;
        let cm = doc(&db, DocKind::CreditMemo, t.a2, t.c, 250, None, None, None).await;
        let mut tx = db.begin().await.unwrap();
        assert_eq!(wholesale::apply_credit_to_open(&mut tx, &cm, &[inv3.id], T0).await.unwrap(), 250);
        tx.commit().await.unwrap();
        assert_eq!((open(&db, &inv2).await, open(&db, &inv3).await, open(&db, &cm).await), (250, 0, 0));
        books(&db, &[t.a2]).await;

        // Terms: defaults without a class, the class's otherwise.
        let mut tx = db.begin().await.unwrap();
        let terms = wholesale::account_terms(&mut tx, t.c).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((terms.statement_day, terms.due_days, terms.credit_limit_minor), (1, 14, None));
        credit_limit(&db, t.a2, t.c, Some(5_000)).await;
        exec(&db, &format!("UPDATE accounts SET statement_day = 15 WHERE id = {}", t.c)).await;
        let terms = db.wholesale().account_terms(t.c).await.unwrap();
        assert_eq!((terms.statement_day, terms.due_days, terms.credit_limit_minor), (15, 14, Some(5_000)));
    }

    async fn subscriptions_and_orders_of_the_flow(db) {
        let t = tree(&db).await;
        let (template,): (i64,) = {
            let mut tx = db.begin().await.unwrap();
            let r = on_tx!(&mut tx, c => sqlx::query_as(&format!(
                "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at) VALUES ({}, 'T', '[]', '{{}}', 0, 0) RETURNING id", t.p))
                .fetch_one(c).await).unwrap();
            tx.commit().await.unwrap();
            r
        };
        let content: PlanContent = serde_json::from_value(json!({
            "name": {"default": "en", "values": {"en": "Suite"}}, "published": true, "visible": true, "listing_priority": 0,
            "billing_model": "charge_before_billing_period", "period_type": {"type": "monthly_on_statement_day"}, "recurring_basis": "billing_period",
            "periods": [], "rates": []
        })).unwrap();
        let mut tx = db.begin().await.unwrap();
        let plan = Plans::create(&mut tx, t.a2, template, "EUR", &content, T0).await.unwrap();
        let new = NewSubscription {
            account_id: t.c, vendor_id: t.a2, plan_id: plan.id, period_uid: "m1".into(), status: SubscriptionStatus::Ordered,
            start_date: "2024-03-01".into(), expires_on: "2024-04-01".into(), next_bill_date: "2024-04-01".into(), auto_renew: AutoRenew::OnExpiry,
            quantities: BTreeMap::from([("seats".to_string(), 3)]), attributes: json!({}),
        };
        let s1 = Subscriptions::create(&mut tx, &new, T0).await.unwrap();
        let s2 = Subscriptions::create(&mut tx, &new, T0).await.unwrap();
        tx.commit().await.unwrap();

        // Guarded moves: only from the status the caller saw.
        let mut tx = db.begin().await.unwrap();
        assert!(Subscriptions::move_status(&mut tx, s2.id, SubscriptionStatus::Ordered, SubscriptionStatus::Cancelled, T0).await.unwrap());
        assert!(!Subscriptions::move_status(&mut tx, s2.id, SubscriptionStatus::Ordered, SubscriptionStatus::Active, T0).await.unwrap());
        let live: Vec<i64> = Subscriptions::live_of_account_in(&mut tx, t.c, t.a2).await.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(live, vec![s1.id]);
        assert!(Subscriptions::live_of_account_in(&mut tx, t.c, t.a).await.unwrap().is_empty());
        // New terms at the version read; a stale version is a conflict.
        let q = BTreeMap::from([("seats".to_string(), 8)]);
        let s1b = Subscriptions::update_terms(&mut tx, &s1, "m1", &q, "2024-05-01", "2024-04-01", T0).await.unwrap();
        assert_eq!((s1b.quantities["seats"], s1b.expires_on.as_str(), s1b.version), (8, "2024-05-01", s1.version + 1));
        assert!(matches!(Subscriptions::update_terms(&mut tx, &s1, "m1", &q, "2024-05-01", "2024-04-01", T0).await, Err(StoreError::Conflict { .. })));
        let s1c = Subscriptions::set_auto_renew(&mut tx, s1.id, AutoRenew::DaysBefore { days: 7 }, T0).await.unwrap();
        assert_eq!(s1c.auto_renew, AutoRenew::DaysBefore { days: 7 });
        tx.commit().await.unwrap();

        // What the term was charged: invoice lines with a period in it, less credit memos.
        doc(&db, DocKind::Invoice, t.a2, t.c, 3_100, Some("sub:rec"), Some(s1.id), Some(("2024-03-01", "2024-04-01"))).await;
        doc(&db, DocKind::Invoice, t.a2, t.c, 500, Some("sub:setup"), Some(s1.id), None).await;
        doc(&db, DocKind::Invoice, t.a2, t.c, 1_200, Some("sub:chg"), Some(s1.id), Some(("2024-03-10", "2024-04-01"))).await;
        doc(&db, DocKind::CreditMemo, t.a2, t.c, 300, Some("sub:cm"), Some(s1.id), Some(("2024-03-20", "2024-04-01"))).await;
        doc(&db, DocKind::Invoice, t.a2, t.c, 3_100, Some("sub:next"), Some(s1.id), Some(("2024-04-01", "2024-05-01"))).await;
        let mut tx = db.begin().await.unwrap();
        let (charged, until) = Subscriptions::charged_in_term(&mut tx, s1.id, "2024-03-01", "2024-04-01").await.unwrap();
        assert_eq!((charged, until.as_deref()), (3_100 + 1_200 - 300, Some("2024-04-01")));
        assert_eq!(Subscriptions::charged_in_term(&mut tx, s2.id, "2024-03-01", "2024-04-01").await.unwrap(), (0, None));
        tx.commit().await.unwrap();

        // Orders of a subscription: open ones, details, reasons.
        let o1 = order(&db, t.c, t.a2, Some(s1.id), OrderStatus::WaitingForPayment).await;
        let o2 = order(&db, t.c, t.a2, Some(s1.id), OrderStatus::Completed).await;
        let mut tx = db.begin().await.unwrap();
        let open_ids: Vec<i64> = Orders::open_of_subscription_in(&mut tx, s1.id).await.unwrap().into_iter().map(|o| o.id).collect();
        assert_eq!(open_ids, vec![o1]);
        Orders::set_details(&mut tx, o1, 3_100, &json!({"invoice_id": 7}), T0).await.unwrap();
        Orders::set_reason(&mut tx, o1, Some("account on hold"), T0).await.unwrap();
        let got = Orders::get_in(&mut tx, o1).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((got.total_minor, got.details["invoice_id"].as_i64(), got.reason.as_deref(), got.status), (3_100, Some(7), Some("account on hold"), OrderStatus::WaitingForPayment));
        let all: Vec<i64> = db.orders().of_subscription(s1.id).await.unwrap().into_iter().map(|o| o.id).collect();
        assert_eq!(all, vec![o2, o1]);
        let usage = db.subscriptions().unbilled_usage(s1.id, "2024-03-01", "2024-04-01").await.unwrap();
        assert!(usage.is_empty());
        books(&db, &[t.a2]).await;
    }
}

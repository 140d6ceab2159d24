//! Money documents, allocations, pending card payments, the test gateway and customer
//! classes in storage, on SQLite and on PostgreSQL.

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::billing::payments::{
    AllocationError, CardNumber, CreditTerms, GatewayDecision,
};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::money::{Currency, Money};
use cascade_store::StoreError;
use cascade_store::accounts::Accounts;
use cascade_store::credit::CustomerClasses;
use cascade_store::documents::{
    ChargeRequest, DocKind, Document, Documents, NewAttempt, NewDocument, PaymentAttempts,
    PaymentGateway, TestGateway,
};
use cascade_testkit::{Db, both_backends};

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

async fn add(db: &Db, vendor: Option<AccountId>, kind: AccountKind, name: &str) -> AccountId {
    let facts = match vendor {
        Some(v) => Some(db.accounts().get(v).await.unwrap().facts()),
        None => None,
    };
    let new = NewAccountInput {
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
    }
    .validate(facts.as_ref())
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

/// Provider → reseller → two customers.
async fn tree(db: &Db) -> (AccountId, AccountId, AccountId, AccountId) {
    let p = add(db, None, AccountKind::Provider, "P").await;
    let r = add(db, Some(p), AccountKind::Reseller, "R").await;
    let c1 = add(db, Some(r), AccountKind::Customer, "C1").await;
    let c2 = add(db, Some(r), AccountKind::Customer, "C2").await;
    (p, r, c1, c2)
}

fn head<'a>(
    kind: DocKind,
    issuer: AccountId,
    account: AccountId,
    currency: &'a str,
) -> NewDocument<'a> {
    NewDocument {
        kind,
        issuer,
        account,
        currency,
        issue_date: "2024-01-31",
        due_date: if kind.is_debit() {
            Some("2024-02-14")
        } else {
            None
        },
        charge_date: None,
        tax_bp: 0,
        method: None,
        external_ref: None,
        idem_key: None,
    }
}

async fn single(db: &Db, h: &NewDocument<'_>, amount: i64) -> Document {
    let mut tx = db.begin().await.unwrap();
    let d = Documents::issue_single(&mut tx, h, h.kind.as_str(), "test", amount, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    d
}

async fn apply(
    db: &Db,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(Document, Document), AllocationError> {
    let mut tx = db.begin().await.unwrap();
    let r = Documents::apply(&mut tx, from, to, amount, T0)
        .await
        .unwrap();
    if r.is_ok() {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    r
}

async fn open(db: &Db, id: i64) -> i64 {
    db.documents().get(id).await.unwrap().open_minor
}

both_backends! {
    async fn single_line_documents_carry_exact_unit_prices(db) {
        let (_, r, c1, _) = tree(&db).await;
        let pay = single(&db, &head(DocKind::Payment, r, c1, "EUR"), 12_345).await;
        assert_eq!((pay.number.as_deref(), pay.total_minor, pay.open_minor, pay.tax_bp), (Some("PAY-000001"), 12_345, 12_345, Some(0)));
        let l = &db.documents().lines(pay.id).await.unwrap()[0];
        assert_eq!((l.quantity, l.unit_price_micro, l.amount_minor), (1, 123_450_000, 12_345));
        let jpy = single(&db, &head(DocKind::CreditMemo, r, c1, "JPY"), 1_500).await;
        assert_eq!(db.documents().lines(jpy.id).await.unwrap()[0].unit_price_micro, 1_500_000_000);
        let kwd = single(&db, &head(DocKind::DebitMemo, r, c1, "KWD"), 1_234).await;
        assert_eq!(db.documents().lines(kwd.id).await.unwrap()[0].unit_price_micro, 1_234_000);
        // Numbers run per issuer and kind.
        assert_eq!(single(&db, &head(DocKind::Payment, r, c1, "EUR"), 1).await.number.as_deref(), Some("PAY-000002"));
        assert!(db.documents().unbalanced(r).await.unwrap().is_empty());
    }

    async fn allocations_follow_the_rule_and_keep_the_books(db) {
        let (_, r, c1, c2) = tree(&db).await;
        let pay = single(&db, &head(DocKind::Payment, r, c1, "EUR"), 5_000).await;
        let inv = single(&db, &head(DocKind::Invoice, r, c1, "EUR"), 3_000).await;
        let inv_other = single(&db, &head(DocKind::Invoice, r, c2, "EUR"), 3_000).await;
        let inv_usd = single(&db, &head(DocKind::Invoice, r, c1, "USD"), 3_000).await;

        assert_eq!(apply(&db, pay.id, inv.id, 0).await.unwrap_err(), AllocationError::NotPositive);
        assert_eq!(apply(&db, pay.id, inv.id, -10).await.unwrap_err(), AllocationError::NotPositive);
        assert_eq!(apply(&db, pay.id, inv.id, 3_001).await.unwrap_err(), AllocationError::ExceedsTarget { open: 3_000 });
        assert_eq!(apply(&db, pay.id, inv_other.id, 1).await.unwrap_err(), AllocationError::OtherAccount);
        assert_eq!(apply(&db, pay.id, inv_usd.id, 1).await.unwrap_err(), AllocationError::CurrencyMismatch);
        assert_eq!(apply(&db, inv.id, pay.id, 1).await.unwrap_err(), AllocationError::SourceNotCredit);
        assert_eq!(db.documents().allocations(pay.id).await.unwrap(), vec![]);
        assert_eq!((open(&db, pay.id).await, open(&db, inv.id).await), (5_000, 3_000));

        let (p, i) = apply(&db, pay.id, inv.id, 3_000).await.unwrap();
        assert_eq!((p.open_minor, i.open_minor), (2_000, 0));
        assert_eq!(db.documents().balance(c1, "EUR").await.unwrap(), -2_000);
        let inv2 = single(&db, &head(DocKind::Invoice, r, c1, "EUR"), 4_000).await;
        assert_eq!(apply(&db, pay.id, inv2.id, 2_001).await.unwrap_err(), AllocationError::ExceedsSource { open: 2_000 });

        // `allocate` itself refuses what the rule refuses, even with stale copies.
        let mut tx = db.begin().await.unwrap();
        let stale = pay.clone();
        assert!(matches!(Documents::allocate(&mut tx, &stale, &inv2, -5, T0).await, Err(StoreError::Conflict { .. })));
        assert!(matches!(Documents::allocate(&mut tx, &stale, &inv_other, 1, T0).await, Err(StoreError::Conflict { .. })));
        assert!(matches!(Documents::allocate(&mut tx, &stale, &inv2, 2_500, T0).await, Err(StoreError::Conflict { .. })));
        tx.rollback().await.unwrap();

        // A refund is settled by the payment it gives back.
        let rf = single(&db, &head(DocKind::Refund, r, c1, "EUR"), 500).await;
        apply(&db, pay.id, rf.id, 500).await.unwrap();
        assert_eq!((open(&db, pay.id).await, open(&db, rf.id).await), (1_500, 0));
        assert_eq!(db.documents().allocations(pay.id).await.unwrap().len(), 2);
        assert_eq!(db.documents().balance(c1, "EUR").await.unwrap(), 4_000 - 1_500);
        let od = db.documents().open_debits(c1, "EUR").await.unwrap();
        assert_eq!((od.count, od.total_minor), (1, 4_000));
        assert!(db.documents().unbalanced(r).await.unwrap().is_empty());
    }

    async fn oldest_overdue_due_date(db) {
        let (_, r, c1, _) = tree(&db).await;
        assert_eq!(db.documents().oldest_overdue_due_date(c1, "2024-03-01").await.unwrap(), None);
        let mut h = head(DocKind::Invoice, r, c1, "EUR");
        h.due_date = Some("2024-02-14");
        let a = single(&db, &h, 100).await;
        h.due_date = Some("2024-01-31");
        let b = single(&db, &h, 100).await;
        assert_eq!(db.documents().oldest_overdue_due_date(c1, "2024-01-31").await.unwrap(), None, "due today is not overdue");
        assert_eq!(db.documents().oldest_overdue_due_date(c1, "2024-02-01").await.unwrap().as_deref(), Some("2024-01-31"));
        let pay = single(&db, &head(DocKind::Payment, r, c1, "EUR"), 100).await;
        apply(&db, pay.id, b.id, 100).await.unwrap();
        assert_eq!(db.documents().oldest_overdue_due_date(c1, "2024-03-01").await.unwrap().as_deref(), Some("2024-02-14"));
        let _ = a;
    }

    async fn documents_found_by_idempotency_key(db) {
        let (_, r, c1, _) = tree(&db).await;
        let mut h = head(DocKind::Payment, r, c1, "EUR");
        h.idem_key = Some("pay:1:abc");
        let d = single(&db, &h, 700).await;
        assert_eq!(db.documents().by_idem_key("pay:1:abc").await.unwrap().map(|x| x.id), Some(d.id));
        assert!(db.documents().by_idem_key("pay:1:other").await.unwrap().is_none());
        let mut tx = db.begin().await.unwrap();
        let again = Documents::issue_single(&mut tx, &h, "payment", "again", 700, T0).await;
        assert!(matches!(again, Err(StoreError::Conflict { .. })));
        drop(tx);
        assert_eq!(db.documents().of_account(c1, Some(DocKind::Payment), None, 10).await.unwrap().items.len(), 1);
    }

    async fn pending_attempts_are_settled_once(db) {
        let (_, r, c1, _) = tree(&db).await;
        let eur = Currency::parse("EUR").unwrap();
        let mut tx = db.begin().await.unwrap();
        let a = PaymentAttempts::create(&mut tx, &NewAttempt {
            reference: "tg_ch_1", gateway: "test", issuer: r, account: c1, amount: Money::new(4_200, eur), card_last4: Some("1111"),
            apply_to: &[7, 9], external_ref: None, idem_key: Some("pay:1:k"), created_by: None,
        }, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((a.status.as_str(), a.apply_to.clone(), a.amount_minor), ("pending", vec![7, 9], 4_200));
        assert_eq!(db.payment_attempts().by_idem_key("pay:1:k").await.unwrap().map(|x| x.id), Some(a.id));

        let mut tx = db.begin().await.unwrap();
        let claimed = PaymentAttempts::claim(&mut tx, "tg_ch_1", "confirmed", T0).await.unwrap();
        assert!(claimed.is_some());
        assert!(PaymentAttempts::claim(&mut tx, "tg_ch_1", "confirmed", T0).await.unwrap().is_none(), "claimed once");
        let d = Documents::issue_single(&mut tx, &head(DocKind::Payment, r, c1, "EUR"), "payment", "card", 4_200, T0).await.unwrap();
        PaymentAttempts::set_document(&mut tx, a.id, d.id, T0).await.unwrap();
        tx.commit().await.unwrap();
        let after = db.payment_attempts().get("tg_ch_1").await.unwrap();
        assert_eq!((after.status.as_str(), after.document_id), ("confirmed", Some(d.id)));
        assert!(matches!(db.payment_attempts().get("nope").await, Err(StoreError::NotFound)));
    }

    async fn customer_classes_store_their_terms(db) {
        let (p, r, c1, _) = tree(&db).await;
        let terms = CreditTerms { due_days: 60, payment_delay_days: Some(45), credit_limit_minor: Some(100_000), auto_credit_hold: false, ..Default::default() };
        let mut tx = db.begin().await.unwrap();
        let c = CustomerClasses::create(&mut tx, r, "Net 60", &terms, T0).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(c.terms, terms);
        assert_eq!(db.customer_classes().get(c.id).await.unwrap(), c);

        let mut tx = db.begin().await.unwrap();
        assert!(matches!(CustomerClasses::create(&mut tx, r, "Net 60", &terms, T0).await, Err(StoreError::Conflict { .. })));
        drop(tx);
        let mut tx = db.begin().await.unwrap();
        CustomerClasses::create(&mut tx, p, "Net 60", &CreditTerms::default(), T0).await.unwrap();
        let second = CustomerClasses::create(&mut tx, r, "Standard", &CreditTerms::default(), T0).await.unwrap();
        tx.commit().await.unwrap();
        let page = db.customer_classes().of_owner(r, None, 1).await.unwrap();
        assert_eq!(page.items.iter().map(|x| x.id).collect::<Vec<_>>(), vec![c.id]);
        let page = db.customer_classes().of_owner(r, page.next, 1).await.unwrap();
        assert_eq!((page.items[0].id, page.next), (second.id, None));

        // Without a class an account is under the default terms.
        assert_eq!(db.customer_classes().terms_of_account(c1).await.unwrap(), CreditTerms::default());
        let mut account = db.accounts().get(c1).await.unwrap();
        account.customer_class_id = Some(c.id);
        let mut tx = db.begin().await.unwrap();
        Accounts::update(&mut tx, &account, T0).await.unwrap();
        let cleared = CreditTerms { payment_delay_days: None, credit_limit_minor: None, ..terms };
        let updated = CustomerClasses::update(&mut tx, c.id, "Net 60 (no limit)", &cleared).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((updated.name.as_str(), updated.terms), ("Net 60 (no limit)", cleared));
        assert_eq!(db.customer_classes().terms_of_account(c1).await.unwrap(), cleared);
        assert_eq!(db.customer_classes().of_account(c1).await.unwrap().map(|x| x.id), Some(c.id));
    }

    async fn the_test_gateway(db) {
        let _ = db;
        let gw = TestGateway;
        let eur = Currency::parse("EUR").unwrap();
        let charge = |n: &'static str, key: &'static str| {
            let card = CardNumber::parse(n).unwrap();
            async move { gw.charge(ChargeRequest { account: AccountId(1), amount: Money::new(100, eur), card: &card, idem_key: key }).await.unwrap() }
        };
        let ok = charge("4242424242424242", "k1").await;
        assert_eq!(ok.decision, GatewayDecision::Approved);
        assert!(ok.reference.starts_with("tg_ch_"));
        assert_eq!(charge("4242424242424242", "k1").await.reference, ok.reference, "a retry is recognised by its key");
        assert_ne!(charge("4242424242424242", "k2").await.reference, ok.reference);
        let declined = charge("4000000000000000", "k3").await;
        assert_eq!(declined.decision, GatewayDecision::Declined);
        assert!(declined.message.unwrap().contains("0000"));
        let pending = charge("4000000000001111", "k4").await;
        assert_eq!(pending.decision, GatewayDecision::Pending);
        assert_eq!(gw.status(&pending.reference).await.unwrap(), GatewayDecision::Approved);
        assert!(gw.status("someone-else").await.is_err());
        assert!(gw.refund(&ok.reference, Money::new(50, eur), "r1").await.unwrap().starts_with("tg_rf_"));
        assert_eq!(gw.name(), "test");
    }
}

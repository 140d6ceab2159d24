//! The seller dashboard's money figures and billing-screen visibility in storage, on
//! SQLite and on PostgreSQL.

use cascade_domain::account::{AccountKind, ContactInput, NewAccountInput};
use cascade_domain::billing::visibility::BillingScreens;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_store::accounts::Accounts;
use cascade_store::billing_visibility::BillingVisibility;
use cascade_store::documents::{DocKind, Documents, NewDocument};
use cascade_store::money_figures::CurrencyTotal;
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
        currency: vendor.is_none().then(|| "EUR".into()),
        customer_class_id: None,
    }
    .validate(facts.as_ref())
    .unwrap();
    let mut tx = db.begin().await.unwrap();
    let a = Accounts::create(&mut tx, &new, T0).await.unwrap();
    tx.commit().await.unwrap();
    a.id
}

async fn doc(
    db: &Db,
    kind: DocKind,
    issuer: AccountId,
    account: AccountId,
    currency: &str,
    date: &str,
    amount: i64,
) -> i64 {
    let h = NewDocument {
        kind,
        issuer,
        account,
        currency,
        issue_date: date,
        due_date: kind.is_debit().then_some("2099-01-01"),
        charge_date: None,
        tax_bp: 0,
        method: None,
        external_ref: None,
        idem_key: None,
    };
    let mut tx = db.begin().await.unwrap();
    let d = Documents::issue_single(&mut tx, &h, kind.as_str(), "test", amount, T0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    d.id
}

fn total(currency: &str, count: i64, minor: i64) -> CurrencyTotal {
    CurrencyTotal {
        currency: currency.into(),
        count,
        minor,
    }
}

const NO_INVOICES: BillingScreens = BillingScreens {
    invoices: false,
    payments: true,
    balance: true,
};
const ONLY_INVOICES: BillingScreens = BillingScreens {
    invoices: true,
    payments: false,
    balance: false,
};

async fn set(db: &Db, a: AccountId, s: Option<BillingScreens>) -> bool {
    let mut tx = db.begin().await.unwrap();
    let changed = BillingVisibility::set_own(&mut tx, a, s, T0).await.unwrap();
    tx.commit().await.unwrap();
    changed
}

both_backends! {
    async fn revenue_of_a_month_and_open_invoices_per_currency(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let r = add(&db, Some(p), AccountKind::Reseller, "R").await;
        let c1 = add(&db, Some(r), AccountKind::Customer, "C1").await;
        let c2 = add(&db, Some(p), AccountKind::Customer, "C2").await;
        let i1 = doc(&db, DocKind::Invoice, r, c1, "EUR", "2026-11-01", 1_050).await;
        doc(&db, DocKind::Invoice, r, c1, "EUR", "2026-11-30", 2_001).await;
        doc(&db, DocKind::Invoice, r, c1, "USD", "2026-11-15", 999).await;
        // Outside the month, another kind, another issuer: not counted.
        doc(&db, DocKind::Invoice, r, c1, "EUR", "2026-10-31", 70_000).await;
        doc(&db, DocKind::Invoice, r, c1, "EUR", "2026-12-01", 80_000).await;
        doc(&db, DocKind::DebitMemo, r, c1, "EUR", "2026-11-10", 90_000).await;
        doc(&db, DocKind::Invoice, p, c2, "EUR", "2026-11-10", 100_000).await;

        let month = db.documents().invoiced_between(r, "2026-11-01", "2026-12-01").await.unwrap();
        assert_eq!(month, vec![total("EUR", 2, 3_051), total("USD", 1, 999)]);
        assert_eq!(db.documents().invoiced_between(r, "2026-09-01", "2026-10-01").await.unwrap(), vec![]);

        // A payment applied in part leaves the rest open.
        let pay = doc(&db, DocKind::Payment, r, c1, "EUR", "2026-11-20", 1_000).await;
        let mut tx = db.begin().await.unwrap();
        Documents::apply(&mut tx, pay, i1, 1_000, T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let open = db.documents().open_invoices(r).await.unwrap();
        assert_eq!(open, vec![total("EUR", 4, 50 + 2_001 + 70_000 + 80_000), total("USD", 1, 999)]);
        // Fully paid invoices leave the figure.
        let pay2 = doc(&db, DocKind::Payment, r, c1, "EUR", "2026-11-20", 50).await;
        let mut tx = db.begin().await.unwrap();
        Documents::apply(&mut tx, pay2, i1, 50, T0).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert_eq!(db.documents().open_invoices(r).await.unwrap()[0], total("EUR", 3, 2_001 + 70_000 + 80_000));
        assert_eq!(db.documents().open_invoices(c1).await.unwrap(), vec![]);
    }

    async fn billing_visibility_is_inherited_until_a_reseller_overrides(db) {
        let p = add(&db, None, AccountKind::Provider, "P").await;
        let l1 = add(&db, Some(p), AccountKind::Reseller, "L1").await;
        let l2 = add(&db, Some(l1), AccountKind::Reseller, "L2").await;
        let other = add(&db, Some(p), AccountKind::Reseller, "Other").await;
        let c = add(&db, Some(l2), AccountKind::Customer, "C").await;
        let oc = add(&db, Some(other), AccountKind::Customer, "OC").await;
        let v = db.billing_visibility();

        let e = v.effective(c).await.unwrap();
        assert_eq!((e.screens, e.source), (BillingScreens::ALL, None));
        assert_eq!(v.chain(c).await.unwrap().iter().map(|x| x.0).collect::<Vec<_>>(), vec![c, l2, l1, p]);

        assert!(set(&db, p, Some(NO_INVOICES)).await);
        assert_eq!(v.effective(c).await.unwrap().screens, NO_INVOICES);
        assert_eq!(v.effective(c).await.unwrap().source, Some(p));

        // L1 overrides; the provider's later change reaches Other's customers, not L1's tree.
        assert!(set(&db, l1, Some(ONLY_INVOICES)).await);
        assert!(set(&db, p, Some(BillingScreens::ALL)).await);
        assert_eq!(v.own(l1).await.unwrap(), Some(ONLY_INVOICES));
        assert_eq!(v.own(l2).await.unwrap(), None);
        let e = v.effective(c).await.unwrap();
        assert_eq!((e.screens, e.source), (ONLY_INVOICES, Some(l1)));
        assert_eq!(v.effective(l2).await.unwrap().screens, ONLY_INVOICES);
        assert_eq!(v.effective(oc).await.unwrap().screens, BillingScreens::ALL);

        // Reset to inherit: the provider's choice reaches L1's tree again.
        assert!(set(&db, l1, None).await);
        assert!(!set(&db, l1, None).await, "nothing left to drop");
        assert_eq!(v.own(l1).await.unwrap(), None);
        assert_eq!(v.effective(c).await.unwrap().source, Some(p));
    }
}

//! The demo's account on hold: "Halted Systems", a customer of the provider whose
//! account is on credit hold. Its hosting subscription was suspended with the hold (the
//! status seam's events, as the daily run does it), and an older one ran out its hold
//! period and was terminated — its data still exists, so it can be restored
//! (`POST /api/v1/subscriptions/{id}/restore`). The hosting plan has no connector, so
//! the worker's service tasks for these events finish at once.

use crate::admin::{AccountSpec, UserSpec, create_account, create_user};
use anyhow::Context;
use cascade_domain::account::{Account, AccountKind, AccountStatus};
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::clock::Timestamp;
use cascade_domain::privilege::BuiltinRole;
use cascade_store::Db;
use cascade_store::accounts::Accounts;
use cascade_store::holds::TerminationCandidate;
use cascade_store::subscriptions::{NewSubscription, Subscriptions};
use chrono::Days;
use std::collections::BTreeMap;

pub const LOGIN: &str = "halted-admin";

pub async fn seed(db: &Db, provider: &Account, now: Timestamp) -> anyhow::Result<()> {
    let today = chrono::DateTime::from_timestamp_micros(now.0)
        .map(|d| d.date_naive())
        .context("clock out of range")?;
    let day = |n: u64| (today - Days::new(n)).to_string();
    let plans = db
        .plans()
        .of_owner(provider.id, false, None, 200)
        .await?
        .items;
    let hosting = plans
        .iter()
        .find(|p| p.content.name.get("en") == "Web Hosting Starter")
        .context("the demo catalog has no Web Hosting Starter plan")?;
    let period = hosting
        .content
        .periods
        .first()
        .map(|p| p.uid.clone())
        .context("the hosting plan has no period")?;
    let halted = create_account(
        db,
        Some(provider),
        &AccountSpec {
            kind: AccountKind::Customer,
            name: "Halted Systems",
            email: "accounts@halted.example",
            country: "DE",
            language: "en",
            currency: None,
        },
        now,
    )
    .await?;
    create_user(
        db,
        &halted,
        &UserSpec {
            login: LOGIN,
            name: "Hal Ted",
            email: "hal@halted.example",
            password: crate::demo::DEMO_PASSWORD,
            roles: &[BuiltinRole::AccountAdmin],
        },
        now,
    )
    .await?;
    let new_sub =
        |status, start: u64, expires: String, next: String, domain: &str| NewSubscription {
            account_id: halted.id,
            vendor_id: provider.id,
            plan_id: hosting.id,
            period_uid: period.clone(),
            status,
            start_date: day(start),
            expires_on: expires,
            next_bill_date: next,
            auto_renew: AutoRenew::Off,
            quantities: BTreeMap::new(),
            attributes: serde_json::json!({"attributes": {"domain": domain}}),
        };
    let mut tx = db.begin().await?;
    // An older site expired without renewal 20 days ago; once the grace period (7 days)
    // had passed, the daily run terminated it. Its data still exists: restorable.
    let old = Subscriptions::create(
        &mut tx,
        &new_sub(
            SubscriptionStatus::Expired,
            385,
            day(20),
            "9999-12-31".into(),
            "old.halted.example",
        ),
        now,
    )
    .await?;
    Subscriptions::terminate(
        &mut tx,
        &TerminationCandidate {
            subscription_id: old.id,
            account_id: halted.id,
            status: old.status,
            version: old.version,
            since: day(20),
            terms: Default::default(),
        },
        &day(13),
        now,
    )
    .await?;
    // The running site, suspended 5 days ago with the account's credit hold (as the
    // daily run raises it); terminated if the hold lasts its 30 days.
    Subscriptions::create(
        &mut tx,
        &new_sub(
            SubscriptionStatus::Active,
            60,
            (today + Days::new(305)).to_string(),
            (today + Days::new(1)).to_string(),
            "halted.example",
        ),
        now,
    )
    .await?;
    Accounts::set_status(&mut tx, halted.id, AccountStatus::CreditHold, now).await?;
    Subscriptions::follow_account_status(
        &mut tx,
        halted.id,
        AccountStatus::Active,
        AccountStatus::CreditHold,
        &day(5),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

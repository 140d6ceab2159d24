//! Demo seed for wholesale billing down the channel: Edelweiss AG (a customer of the L2
//! reseller Alpine VAR) holds an office subscription, sold from Alpine's copy of the
//! provider's plan, that is due today, and today is the billing day of Alpine and of its
//! vendor Northwind. So the daily run the demo starts with bills Edelweiss, records what
//! Alpine owes Northwind and what Northwind owes the provider for that month, and issues
//! the tier invoices: Northwind → Alpine and provider → Northwind. They show in the
//! seller panel's money page of the reseller (`/seller/accounts/{id}/money`, as its
//! vendor) and in `GET /api/v1/accounts/{id}/documents` (as the reseller).

use cascade_domain::billing::calendar::add_months;
use cascade_domain::billing::lifecycle::{AutoRenew, SubscriptionStatus};
use cascade_domain::catalog::plan::PlanContent;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_store::subscriptions::{NewSubscription, Subscriptions};
use cascade_store::{Db, on_tx};
use chrono::Datelike;
use std::collections::BTreeMap;

pub async fn seed(
    db: &Db,
    alpine: AccountId,
    northwind: AccountId,
    edelweiss: AccountId,
    now: Timestamp,
) -> anyhow::Result<()> {
    let today = chrono::DateTime::from_timestamp_micros(now.0)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    let mut tx = db.begin().await?;
    let plans: Vec<(i64, String)> = on_tx!(&mut tx, c => sqlx::query_as(
        "SELECT id, content FROM plans WHERE owner_account_id = $1 AND parent_plan_id IS NOT NULL ORDER BY id")
        .bind(alpine.0).fetch_all(c).await)?;
    let office = plans.into_iter().find(|(_, content)| {
        serde_json::from_str::<PlanContent>(content)
            .is_ok_and(|c| c.name.get("en") == "Office Suite Business")
    });
    let Some((plan_id, _)) = office else {
        anyhow::bail!("the demo catalog has no office plan at Alpine VAR");
    };
    on_tx!(&mut tx, c => sqlx::query("UPDATE accounts SET statement_day = $1 WHERE id IN ($2, $3)")
        .bind(today.day() as i32).bind(alpine.0).bind(northwind.0).execute(c).await.map(|r| r.rows_affected()))?;
    Subscriptions::create(
        &mut tx,
        &NewSubscription {
            account_id: edelweiss,
            vendor_id: alpine,
            plan_id,
            period_uid: "m1".into(),
            status: SubscriptionStatus::Active,
            start_date: add_months(today, -1).to_string(),
            expires_on: today.to_string(),
            next_bill_date: today.to_string(),
            auto_renew: AutoRenew::OnExpiry,
            quantities: BTreeMap::from([("seats".to_string(), 10), ("storage".to_string(), 50)]),
            attributes: serde_json::json!({"attributes": {}, "parameters": {"admin_login": "erika"}}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

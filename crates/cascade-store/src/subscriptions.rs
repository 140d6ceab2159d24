//! Subscriptions and orders.
//!
//! A subscription keeps the plan terms it was sold at (`terms`: a snapshot of the plan
//! content taken when it is created, see `catalog::sync` for why a snapshot), so a plan
//! edit changes nothing already sold; a sync with the "update subscriptions" option
//! moves them ([`Subscriptions::sync_updates`], [`Subscriptions::apply_sync_updates`]).
//! Readers take the plan terms through [`Subscription::plan_terms`]. Rows without a
//! snapshot (written before migration 9) read their plan's live content.

use crate::events::{Events, NewEvent};
use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::billing::lifecycle::{
    AutoRenew, OrderStatus, OrderType, SubscriptionStatus, lifecycle_event,
};
use cascade_domain::catalog::plan::PlanContent;
use cascade_domain::catalog::sync::{SubscriptionTerms, sync_subscription};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: i64,
    pub account_id: AccountId,
    pub vendor_id: AccountId,
    pub plan_id: i64,
    pub period_uid: String,
    pub status: SubscriptionStatus,
    pub start_date: String,
    pub expires_on: String,
    pub next_bill_date: String,
    pub auto_renew: AutoRenew,
    pub quantities: BTreeMap<String, i64>,
    pub attributes: serde_json::Value,
    pub suspension_deadline: Option<String>,
    pub data_removed: bool,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The plan terms it holds (`None`: a row from before snapshots, on the live plan).
    pub terms: Option<SubscriptionTerms>,
    /// The date it went on hold (the hold period counts from it), while held.
    pub held_on: Option<String>,
    /// What holds it: `account` (its account's hold) or `payg` (its own PAYG deadline).
    pub held_by: Option<String>,
    /// The date it was terminated, while terminated.
    pub terminated_on: Option<String>,
}

impl Subscription {
    /// The plan content that governs a period starting on `day` (ISO date): the
    /// subscription's own terms, or `live` (its plan's current content) for a row
    /// without a snapshot. Limits and terms in force today: `plan_terms(today, ..)`.
    pub fn plan_terms<'a>(&'a self, day: &str, live: &'a PlanContent) -> &'a PlanContent {
        match &self.terms {
            Some(t) => t.for_period(day),
            None => live,
        }
    }
}

/// Parse the three snapshot columns.
pub(crate) fn terms_from(
    id: i64,
    terms: Option<&str>,
    next: Option<&str>,
    next_from: Option<String>,
) -> StoreResult<Option<SubscriptionTerms>> {
    let parse = |t: &str| {
        serde_json::from_str::<PlanContent>(t)
            .map_err(|e| StoreError::Corrupt(format!("subscription {id}: terms: {e}")))
    };
    let Some(current) = terms.map(parse).transpose()? else {
        return Ok(None);
    };
    let next = match (next, next_from) {
        (Some(n), Some(from)) => Some((from, parse(n)?)),
        _ => None,
    };
    Ok(Some(SubscriptionTerms { current, next }))
}

#[derive(sqlx::FromRow)]
struct SubRow {
    id: i64,
    account_id: i64,
    vendor_id: i64,
    plan_id: i64,
    period_uid: String,
    status: String,
    start_date: String,
    expires_on: String,
    next_bill_date: String,
    auto_renew: String,
    quantities: String,
    attributes: String,
    suspension_deadline: Option<String>,
    data_removed: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
    terms: Option<String>,
    next_terms: Option<String>,
    next_terms_from: Option<String>,
    held_on: Option<String>,
    held_by: Option<String>,
    terminated_on: Option<String>,
}

const SUB_COLUMNS: &str = "id, account_id, vendor_id, plan_id, period_uid, status, start_date, expires_on, next_bill_date, auto_renew, quantities, \
     attributes, suspension_deadline, data_removed, version, created_at, updated_at, terms, next_terms, next_terms_from, held_on, held_by, terminated_on";

impl TryFrom<SubRow> for Subscription {
    type Error = StoreError;
    fn try_from(r: SubRow) -> StoreResult<Subscription> {
        let bad = |what: &str, e: String| {
            StoreError::Corrupt(format!("subscription {}: {what}: {e}", r.id))
        };
        let terms = terms_from(
            r.id,
            r.terms.as_deref(),
            r.next_terms.as_deref(),
            r.next_terms_from.clone(),
        )?;
        Ok(Subscription {
            terms,
            id: r.id,
            account_id: AccountId(r.account_id),
            vendor_id: AccountId(r.vendor_id),
            plan_id: r.plan_id,
            period_uid: r.period_uid.clone(),
            status: SubscriptionStatus::parse(&r.status).map_err(|e| bad("status", e.message))?,
            start_date: r.start_date.clone(),
            expires_on: r.expires_on.clone(),
            next_bill_date: r.next_bill_date.clone(),
            auto_renew: serde_json::from_str(&r.auto_renew)
                .map_err(|e| bad("auto_renew", e.to_string()))?,
            quantities: serde_json::from_str(&r.quantities)
                .map_err(|e| bad("quantities", e.to_string()))?,
            attributes: serde_json::from_str(&r.attributes)
                .map_err(|e| bad("attributes", e.to_string()))?,
            suspension_deadline: r.suspension_deadline.clone(),
            data_removed: r.data_removed,
            version: r.version,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
            held_on: r.held_on,
            held_by: r.held_by,
            terminated_on: r.terminated_on,
        })
    }
}

/// A new subscription.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub account_id: AccountId,
    pub vendor_id: AccountId,
    pub plan_id: i64,
    pub period_uid: String,
    pub status: SubscriptionStatus,
    pub start_date: String,
    pub expires_on: String,
    pub next_bill_date: String,
    pub auto_renew: AutoRenew,
    pub quantities: BTreeMap<String, i64>,
    pub attributes: serde_json::Value,
}

pub struct Subscriptions<'a>(pub &'a Db);

impl Db {
    pub fn subscriptions(&self) -> Subscriptions<'_> {
        Subscriptions(self)
    }
}

impl Subscriptions<'_> {
    pub async fn create(
        tx: &mut Tx,
        s: &NewSubscription,
        now: Timestamp,
    ) -> StoreResult<Subscription> {
        let sql = format!(
            "INSERT INTO subscriptions (account_id, vendor_id, plan_id, period_uid, status, start_date, expires_on, next_bill_date, auto_renew,
                quantities, attributes, suspension_deadline, data_removed, version, created_at, updated_at, terms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, FALSE, 1, $12, $12,
                (SELECT content FROM plans WHERE id = $3)) RETURNING {SUB_COLUMNS}"
        );
        let r: SubRow = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(s.account_id.0).bind(s.vendor_id.0).bind(s.plan_id).bind(&s.period_uid).bind(s.status.as_str()).bind(&s.start_date)
            .bind(&s.expires_on).bind(&s.next_bill_date).bind(serde_json::to_string(&s.auto_renew).unwrap_or_default())
            .bind(serde_json::to_string(&s.quantities).unwrap_or_default()).bind(s.attributes.to_string()).bind(now.0)
            .fetch_one(c).await)?;
        r.try_into()
    }

    pub async fn get(&self, id: i64) -> StoreResult<Subscription> {
        let sql = format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE id = $1");
        let r: SubRow = on_db!(self.0, p => sqlx::query_as(&sql).bind(id).fetch_one(p).await)?;
        r.try_into()
    }

    pub async fn get_in(tx: &mut Tx, id: i64) -> StoreResult<Subscription> {
        let sql = format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE id = $1");
        let r: SubRow = on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_one(c).await)?;
        r.try_into()
    }

    pub async fn of_account(
        &self,
        account: AccountId,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<Subscription>> {
        let sql = format!(
            "SELECT {SUB_COLUMNS} FROM subscriptions WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<SubRow> = on_db!(self.0, p => sqlx::query_as(&sql).bind(account.0).bind(after.unwrap_or(0)).bind(limit + 1).fetch_all(p).await)?;
        let subs = rows
            .into_iter()
            .map(Subscription::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(subs, limit, |s| s.id))
    }

    /// Accounts with something to bill on or before `date`, after `after_account`, at
    /// most `limit` of them (the daily run's batches).
    pub async fn accounts_due(
        &self,
        date: &str,
        after_account: i64,
        limit: i64,
    ) -> StoreResult<Vec<AccountId>> {
        let rows: Vec<(i64,)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT DISTINCT account_id FROM subscriptions
             WHERE next_bill_date <= $1 AND account_id > $2 AND status IN ('active', 'graced', 'expired')
             ORDER BY account_id LIMIT $3")
            .bind(date).bind(after_account).bind(limit).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| AccountId(r.0)).collect())
    }

    /// An account's subscriptions due on or before `date`.
    pub async fn due_of_account_in(
        tx: &mut Tx,
        account: AccountId,
        date: &str,
    ) -> StoreResult<Vec<Subscription>> {
        let sql = format!(
            "SELECT {SUB_COLUMNS} FROM subscriptions WHERE account_id = $1 AND next_bill_date <= $2 AND status IN ('active', 'graced', 'expired') ORDER BY id"
        );
        let rows: Vec<SubRow> =
            on_tx!(tx, c => sqlx::query_as(&sql).bind(account.0).bind(date).fetch_all(c).await)?;
        rows.into_iter().map(Subscription::try_from).collect()
    }

    /// Record what billing did: the next date to bill, the term end, the status.
    pub async fn after_billing(
        tx: &mut Tx,
        s: &Subscription,
        next_bill_date: &str,
        expires_on: &str,
        status: SubscriptionStatus,
        now: Timestamp,
    ) -> StoreResult<()> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE subscriptions SET next_bill_date = $3, expires_on = $4, status = $5, version = version + 1, updated_at = $6 WHERE id = $1 AND version = $2")
            .bind(s.id).bind(s.version).bind(next_bill_date).bind(expires_on).bind(status.as_str()).bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: format!("subscription {} changed during billing", s.id),
            });
        }
        Ok(())
    }

    pub async fn set_status(
        tx: &mut Tx,
        id: i64,
        status: SubscriptionStatus,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query("UPDATE subscriptions SET status = $2, version = version + 1, updated_at = $3 WHERE id = $1")
            .bind(id).bind(status.as_str()).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Usage per rate recorded for a subscription within [from, to) and not yet billed.
    pub async fn unbilled_usage_in(
        tx: &mut Tx,
        sub: i64,
        from: &str,
        to: &str,
    ) -> StoreResult<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT rate_uid, CAST(SUM(quantity) AS BIGINT) FROM usage_records
             WHERE subscription_id = $1 AND usage_date >= $2 AND usage_date < $3 AND billed_line_id IS NULL GROUP BY rate_uid")
            .bind(sub).bind(from).bind(to).fetch_all(c).await)?;
        Ok(rows.into_iter().collect())
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: i64,
    pub account_id: AccountId,
    pub vendor_id: AccountId,
    pub subscription_id: Option<i64>,
    pub order_type: OrderType,
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub currency: String,
    pub total_minor: i64,
    pub details: serde_json::Value,
    pub placed_by: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

type OrderRow = (
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
    String,
    i64,
    String,
    Option<i64>,
    i64,
    i64,
);
const ORDER_COLUMNS: &str = "id, account_id, vendor_id, subscription_id, order_type, status, reason, currency, total_minor, details, placed_by, created_at, updated_at";

fn order_from(r: OrderRow) -> StoreResult<Order> {
    Ok(Order {
        id: r.0,
        account_id: AccountId(r.1),
        vendor_id: AccountId(r.2),
        subscription_id: r.3,
        order_type: OrderType::parse(&r.4).map_err(|e| StoreError::Corrupt(e.message))?,
        status: OrderStatus::parse(&r.5).map_err(|e| StoreError::Corrupt(e.message))?,
        reason: r.6,
        currency: r.7,
        total_minor: r.8,
        details: serde_json::from_str(&r.9).unwrap_or_default(),
        placed_by: r.10,
        created_at: Timestamp(r.11),
        updated_at: Timestamp(r.12),
    })
}

pub struct Orders<'a>(pub &'a Db);

impl Db {
    pub fn orders(&self) -> Orders<'_> {
        Orders(self)
    }
}

#[derive(Debug, Clone)]
pub struct NewOrder {
    pub account_id: AccountId,
    pub vendor_id: AccountId,
    pub subscription_id: Option<i64>,
    pub order_type: OrderType,
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub currency: String,
    pub total_minor: i64,
    pub details: serde_json::Value,
    pub placed_by: Option<i64>,
}

/// Unfinished orders of subscription `$1`, oldest first (index `orders_open_subscription`,
/// whose predicate this repeats word for word so that both backends use it).
const OPEN_OF_SUBSCRIPTION: &str =
    "subscription_id = $1 AND status NOT IN ('completed', 'cancelled') ORDER BY id";

impl Orders<'_> {
    pub async fn create(tx: &mut Tx, o: &NewOrder, now: Timestamp) -> StoreResult<Order> {
        let sql = format!(
            "INSERT INTO orders (account_id, vendor_id, subscription_id, order_type, status, reason, currency, total_minor, details, placed_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING {ORDER_COLUMNS}"
        );
        let r: OrderRow = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(o.account_id.0).bind(o.vendor_id.0).bind(o.subscription_id).bind(o.order_type.as_str()).bind(o.status.as_str())
            .bind(&o.reason).bind(&o.currency).bind(o.total_minor).bind(o.details.to_string()).bind(o.placed_by).bind(now.0)
            .fetch_one(c).await)?;
        order_from(r)
    }

    pub async fn get(&self, id: i64) -> StoreResult<Order> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        order_from(on_db!(self.0, p => sqlx::query_as(&sql).bind(id).fetch_one(p).await)?)
    }

    pub async fn of_account(
        &self,
        account: AccountId,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<Order>> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<OrderRow> = on_db!(self.0, p => sqlx::query_as(&sql).bind(account.0).bind(before.unwrap_or(i64::MAX)).bind(limit + 1).fetch_all(p).await)?;
        let orders = rows
            .into_iter()
            .map(order_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(orders, limit, |o| o.id))
    }

    /// An account's orders waiting for payment, newest first, at most `limit` (the
    /// customer home's notices): one query on the partial index `orders_waiting`
    /// (migration 17), however many paid or billed orders the account has.
    pub async fn waiting_for_payment(
        &self,
        account: AccountId,
        limit: i64,
    ) -> StoreResult<Vec<Order>> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND status = 'waiting_for_payment' ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<OrderRow> = on_db!(self.0, p => sqlx::query_as(&sql).bind(account.0).bind(limit).fetch_all(p).await)?;
        rows.into_iter().map(order_from).collect()
    }

    /// Move an order along its status machine (checked by the caller with
    /// `OrderStatus::transition`); `from` guards against a concurrent move.
    pub async fn set_status(
        tx: &mut Tx,
        id: i64,
        from: OrderStatus,
        to: OrderStatus,
        reason: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query("UPDATE orders SET status = $3, reason = $4, updated_at = $5 WHERE id = $1 AND status = $2")
            .bind(id).bind(from.as_str()).bind(to.as_str()).bind(reason).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}

/// Statuses in which a subscription is still "live": it counts for unique groups and can
/// be changed, renewed or cancelled.
pub const LIVE_STATUSES: &str =
    "'ordered', 'active', 'expired', 'graced', 'credit_hold', 'admin_hold'";

/// The order flow's reads and writes of subscriptions.
impl Subscriptions<'_> {
    /// The live subscriptions an account holds from `vendor`, oldest first (unique-group check).
    pub async fn live_of_account_in(
        tx: &mut Tx,
        account: AccountId,
        vendor: AccountId,
    ) -> StoreResult<Vec<Subscription>> {
        let sql = format!(
            "SELECT {SUB_COLUMNS} FROM subscriptions WHERE account_id = $1 AND vendor_id = $2 AND status IN ({LIVE_STATUSES}) ORDER BY id"
        );
        let rows: Vec<SubRow> = on_tx!(tx, c => sqlx::query_as(&sql).bind(account.0).bind(vendor.0).fetch_all(c).await)?;
        rows.into_iter().map(Subscription::try_from).collect()
    }

    /// Move a subscription from `from` to `to` (checked by the caller with
    /// `SubscriptionStatus::transition`); false when it was no longer in `from`. A move
    /// that suspends, resumes or terminates the service emits its lifecycle event
    /// ([`lifecycle_event`]) in the same transaction, only when the row really moved:
    /// exactly one event per transition.
    pub async fn move_status(
        tx: &mut Tx,
        id: i64,
        from: SubscriptionStatus,
        to: SubscriptionStatus,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let moved: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "UPDATE subscriptions SET status = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND status = $2 RETURNING account_id")
            .bind(id).bind(from.as_str()).bind(to.as_str()).bind(now.0).fetch_optional(c).await)?;
        let Some((account,)) = moved else {
            return Ok(false);
        };
        Self::announce_move(tx, id, AccountId(account), from, to, now).await?;
        Ok(true)
    }

    /// Emit the lifecycle event of a status move just written by the caller (for writers
    /// that move the status together with other columns, e.g. the PAYG check). Nothing
    /// for moves the service does not see.
    pub async fn announce_move(
        tx: &mut Tx,
        id: i64,
        account: AccountId,
        from: SubscriptionStatus,
        to: SubscriptionStatus,
        now: Timestamp,
    ) -> StoreResult<()> {
        let Some(kind) = lifecycle_event(from, to) else {
            return Ok(());
        };
        Events::emit(
            tx,
            NewEvent {
                kind,
                account_id: Some(account),
                actor_user_id: None,
                subject_type: "subscription",
                subject_id: id,
                payload: serde_json::json!({"subscription_id": id, "from": from.as_str(), "to": to.as_str()}),
            },
            now,
        )
        .await?;
        Ok(())
    }

    /// Write new terms (period, quantities, term end, next billing date) if the
    /// subscription is still at `s.version`.
    pub async fn update_terms(
        tx: &mut Tx,
        s: &Subscription,
        period_uid: &str,
        quantities: &BTreeMap<String, i64>,
        expires_on: &str,
        next_bill_date: &str,
        now: Timestamp,
    ) -> StoreResult<Subscription> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE subscriptions SET period_uid = $3, quantities = $4, expires_on = $5, next_bill_date = $6, version = version + 1, updated_at = $7
             WHERE id = $1 AND version = $2")
            .bind(s.id).bind(s.version).bind(period_uid).bind(serde_json::to_string(quantities).unwrap_or_default())
            .bind(expires_on).bind(next_bill_date).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: format!("subscription {} was changed meanwhile; try again", s.id),
            });
        }
        Self::get_in(tx, s.id).await
    }

    /// Move the subscription to another plan (an upgrade or downgrade applied by its CH
    /// order) with that plan's period and quantities, if it is still at `s.version`. It takes the
    /// new plan's current terms (a snapshot, as a new subscription does) and drops any
    /// scheduled by a sync of the old plan.
    pub async fn switch_plan(
        tx: &mut Tx,
        s: &Subscription,
        plan_id: i64,
        period_uid: &str,
        quantities: &BTreeMap<String, i64>,
        now: Timestamp,
    ) -> StoreResult<Subscription> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE subscriptions SET plan_id = $3, period_uid = $4, quantities = $5, version = version + 1, updated_at = $6,
                terms = (SELECT content FROM plans WHERE id = $3), next_terms = NULL, next_terms_from = NULL
             WHERE id = $1 AND version = $2")
            .bind(s.id).bind(s.version).bind(plan_id).bind(period_uid).bind(serde_json::to_string(quantities).unwrap_or_default())
            .bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: format!("subscription {} was changed meanwhile; try again", s.id),
            });
        }
        Self::get_in(tx, s.id).await
    }

    pub async fn set_auto_renew(
        tx: &mut Tx,
        id: i64,
        auto_renew: AutoRenew,
        now: Timestamp,
    ) -> StoreResult<Subscription> {
        on_tx!(tx, c => sqlx::query("UPDATE subscriptions SET auto_renew = $2, version = version + 1, updated_at = $3 WHERE id = $1")
            .bind(id).bind(serde_json::to_string(&auto_renew).unwrap_or_default()).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Self::get_in(tx, id).await
    }

    /// What a subscription was charged for days in `[from, to)`: its invoice lines whose
    /// period starts there, less its credit-memo lines there, in minor units; and the end
    /// of the last period those lines cover (how far the term is paid for). Lines without
    /// a period (setup fees) belong to no term.
    pub async fn charged_in_term(
        tx: &mut Tx,
        sub: i64,
        from: &str,
        to: &str,
    ) -> StoreResult<(i64, Option<String>)> {
        let (n, end): (Option<i64>, Option<String>) = on_tx!(tx, c => sqlx::query_as(
            "SELECT CAST(SUM(CASE WHEN d.kind = 'credit_memo' THEN -l.amount_minor ELSE l.amount_minor END) AS BIGINT),
                    MAX(CASE WHEN d.kind = 'invoice' THEN l.period_end END)
             FROM document_lines l JOIN documents d ON d.id = l.document_id
             WHERE l.subscription_id = $1 AND d.status = 'issued' AND d.kind IN ('invoice', 'credit_memo')
               AND l.period_start IS NOT NULL AND l.period_start >= $2 AND l.period_start < $3")
            .bind(sub).bind(from).bind(to).fetch_one(c).await)?;
        Ok((n.unwrap_or(0), end))
    }

    /// Usage per rate recorded within [from, to) and not yet billed (invoice preview).
    pub async fn unbilled_usage(
        &self,
        sub: i64,
        from: &str,
        to: &str,
    ) -> StoreResult<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT rate_uid, CAST(SUM(quantity) AS BIGINT) FROM usage_records
             WHERE subscription_id = $1 AND usage_date >= $2 AND usage_date < $3 AND billed_line_id IS NULL GROUP BY rate_uid")
            .bind(sub).bind(from).bind(to).fetch_all(p).await)?;
        Ok(rows.into_iter().collect())
    }
}

impl Orders<'_> {
    pub async fn get_in(tx: &mut Tx, id: i64) -> StoreResult<Order> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        order_from(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_one(c).await)?)
    }

    /// Orders of a subscription, newest first.
    pub async fn of_subscription(&self, sub: i64) -> StoreResult<Vec<Order>> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE subscription_id = $1 ORDER BY id DESC"
        );
        let rows: Vec<OrderRow> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(sub).fetch_all(p).await)?;
        rows.into_iter().map(order_from).collect()
    }

    /// [`Self::open_of_subscription_in`] outside a transaction.
    pub async fn open_of_subscription(&self, sub: i64) -> StoreResult<Vec<Order>> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE {OPEN_OF_SUBSCRIPTION}");
        let rows: Vec<OrderRow> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(sub).fetch_all(p).await)?;
        rows.into_iter().map(order_from).collect()
    }

    /// Unfinished orders of a subscription (not completed or cancelled), oldest first
    /// (index `orders_open_subscription`).
    pub async fn open_of_subscription_in(tx: &mut Tx, sub: i64) -> StoreResult<Vec<Order>> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE {OPEN_OF_SUBSCRIPTION}");
        let rows: Vec<OrderRow> =
            on_tx!(tx, c => sqlx::query_as(&sql).bind(sub).fetch_all(c).await)?;
        rows.into_iter().map(order_from).collect()
    }

    /// Replace an order's details and total (written once the order's documents exist).
    pub async fn set_details(
        tx: &mut Tx,
        id: i64,
        total_minor: i64,
        details: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query("UPDATE orders SET total_minor = $2, details = $3, updated_at = $4 WHERE id = $1")
            .bind(id).bind(total_minor).bind(details.to_string()).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Set the reason shown with an order without moving it.
    pub async fn set_reason(
        tx: &mut Tx,
        id: i64,
        reason: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_tx!(tx, c => sqlx::query("UPDATE orders SET reason = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(reason).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

/// One subscription a plan → subscriptions sync moves to new terms.
#[derive(Debug, Clone)]
pub struct SubscriptionUpdate {
    pub subscription_id: i64,
    pub plan_id: i64,
    pub version: i64,
    pub terms: SubscriptionTerms,
}

impl Subscriptions<'_> {
    /// What a sync with the subscriptions option would do on `today`: the live
    /// subscriptions of each `(plan, its new content)` whose terms change. Read before
    /// the copies are written (a row without a snapshot is taken at its plan's content
    /// before the sync). One query per 500 plans.
    pub async fn sync_updates(
        &self,
        targets: &[(i64, &PlanContent)],
        today: &str,
    ) -> StoreResult<Vec<SubscriptionUpdate>> {
        let content: std::collections::HashMap<i64, &PlanContent> =
            targets.iter().copied().collect();
        let mut out = Vec::new();
        for chunk in targets.chunks(500) {
            let list = chunk
                .iter()
                .map(|(id, _)| id.to_string())
                .collect::<Vec<_>>()
                .join(",");
            type Row = (
                i64,
                i64,
                i64,
                String,
                String,
                Option<String>,
                Option<String>,
            );
            // Ids are integers we formatted ourselves: nothing from outside reaches the SQL.
            let sql = format!(
                "SELECT s.id, s.plan_id, s.version, s.next_bill_date, COALESCE(s.terms, p.content), s.next_terms, s.next_terms_from
                 FROM subscriptions s JOIN plans p ON p.id = s.plan_id
                 WHERE s.plan_id IN ({list}) AND s.status IN ({LIVE_STATUSES}) ORDER BY s.id"
            );
            let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql).fetch_all(p).await)?;
            for (id, plan, version, next_bill, terms, next, next_from) in rows {
                let Some(t) = terms_from(id, Some(&terms), next.as_deref(), next_from)? else {
                    continue;
                };
                if let Some(new) = sync_subscription(&t, content[&plan], today, &next_bill) {
                    out.push(SubscriptionUpdate {
                        subscription_id: id,
                        plan_id: plan,
                        version,
                        terms: new,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Write sync updates, 500 per transaction; a subscription changed since it was
    /// read is skipped (the next sync brings it along). Returns the ids written.
    pub async fn apply_sync_updates(
        &self,
        updates: &[SubscriptionUpdate],
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        let json = |c: &PlanContent| serde_json::to_string(c).unwrap_or_default();
        let mut written = Vec::new();
        for chunk in updates.chunks(500) {
            let mut tx = self.0.begin().await?;
            for u in chunk {
                let (next, from) = match &u.terms.next {
                    Some((from, c)) => (Some(json(c)), Some(from.clone())),
                    None => (None, None),
                };
                let n = on_tx!(&mut tx, c => sqlx::query(
                    "UPDATE subscriptions SET terms = $3, next_terms = $4, next_terms_from = $5, version = version + 1, updated_at = $6
                     WHERE id = $1 AND version = $2")
                    .bind(u.subscription_id).bind(u.version).bind(json(&u.terms.current)).bind(next).bind(from).bind(now.0)
                    .execute(c).await.map(|r| r.rows_affected()))?;
                if n == 1 {
                    written.push(u.subscription_id);
                }
            }
            tx.commit().await?;
        }
        Ok(written)
    }
}

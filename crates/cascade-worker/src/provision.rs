//! `orders.provision`: take a paid order through provisioning to completion.
//!
//! Routed from `order.paid` (and enqueued directly by `POST /orders/{id}/retry` and for
//! changes deferred to the next billing date, with `run_at` on that date). Steps, each
//! in its own short transaction so the order's state is visible between them:
//!
//! 1. **Chain check** (order `paid`): every reseller between the customer and the
//!    provider must have available balance or credit for its wholesale amount
//!    ([`Wholesale::chain_shortfall`]). If one lacks it, the order stays `paid` with
//!    the reason ("reseller X lacks balance or credit") and the task fails *retryably*:
//!    the back-off retries it until the reseller tops up or gets credit.
//! 2. `paid` → `provisioning`.
//! 3. The **service** delivers: [`NoopService`] (succeeds at once) or
//!    [`crate::connector_service::ConnectorService`] (calls the connectors of the
//!    plan's resource types). A transient failure keeps the order `provisioning` with
//!    the reason and retries with back-off while the task has attempts; a refusal, or
//!    a transient failure on the last attempt, moves the order to `failed` with the
//!    service's message; the task fails permanently and `POST /orders/{id}/retry`
//!    starts again at step 3 (same transaction ids, so the connector does not do the
//!    work twice).
//! 4. The order's effect on the subscription — SO: `ordered` → `active`; CH: the new
//!    quantities (and period) are written; CL: nothing left (cancelled when ordered) —
//!    and `provisioning` → `completed`, in one transaction.
//!
//! Idempotent: every move is guarded by the status it comes from, and a task that finds
//! its order completed, cancelled or failed does nothing, so a re-run (retry, expired
//! lease) is harmless.

use crate::handler::{TaskContext, TaskError, TaskHandler};
use async_trait::async_trait;
use cascade_domain::billing::lifecycle::{OrderStatus, OrderType, SubscriptionStatus};
use cascade_domain::clock::Timestamp;
use cascade_store::events::{Events, NewEvent};
use cascade_store::subscriptions::{Order, Orders, Subscriptions};
use cascade_store::tasks::Task;
use cascade_store::wholesale::Wholesale;
use cascade_store::{StoreResult, Tx};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a service could not deliver, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// Shown on the order (the connector's message).
    pub message: String,
    /// Transient (unreachable, timeout, 5xx, garbage, bad signature, still pending):
    /// the task retries with back-off while it has attempts left.
    pub retryable: bool,
}

impl ServiceError {
    pub fn permanent(m: impl Into<String>) -> Self {
        Self {
            message: m.into(),
            retryable: false,
        }
    }
    pub fn retryable(m: impl Into<String>) -> Self {
        Self {
            message: m.into(),
            retryable: true,
        }
    }
}

/// What delivers (or removes) the service of an order.
#[async_trait]
pub trait Service: Send + Sync {
    /// Provision what `order` asks for. `Err` is a refusal or a transient failure,
    /// shown on the order.
    async fn provision(&self, ctx: &TaskContext, order: &Order) -> Result<(), ServiceError>;
}

/// The service that needs nothing done: provisioning succeeds at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopService;

#[async_trait]
impl Service for NoopService {
    async fn provision(&self, _ctx: &TaskContext, _order: &Order) -> Result<(), ServiceError> {
        Ok(())
    }
}

/// The `orders.provision` handler.
#[derive(Clone)]
pub struct ProvisionOrder {
    service: Arc<dyn Service>,
}

impl ProvisionOrder {
    pub const KIND: &'static str = "orders.provision";

    pub fn new(service: Arc<dyn Service>) -> Self {
        Self { service }
    }

    /// With the no-op service.
    pub fn noop() -> Self {
        Self::new(Arc::new(NoopService))
    }
}

impl Default for ProvisionOrder {
    fn default() -> Self {
        Self::noop()
    }
}

async fn event(
    tx: &mut Tx,
    kind: &'static str,
    order: &Order,
    payload: Value,
    now: Timestamp,
) -> StoreResult<()> {
    Events::emit(
        tx,
        NewEvent {
            kind,
            account_id: Some(order.account_id),
            actor_user_id: None,
            subject_type: "order",
            subject_id: order.id,
            payload,
        },
        now,
    )
    .await?;
    Ok(())
}

fn today(now: Timestamp) -> String {
    chrono_free_date(now)
}

/// `YYYY-MM-DD` of a timestamp (UTC), without pulling a date library into the worker.
fn chrono_free_date(now: Timestamp) -> String {
    // Days since the epoch → civil date (Howard Hinnant's algorithm).
    let z = now.0.div_euclid(Timestamp::MICROS_PER_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Apply what a completed order changes on its subscription.
async fn apply_effect(tx: &mut Tx, order: &Order, now: Timestamp) -> Result<(), TaskError> {
    let Some(sub_id) = order.subscription_id else {
        return Ok(());
    };
    match order.order_type {
        OrderType::So => {
            let sub = Subscriptions::get_in(tx, sub_id).await?;
            if sub.status == SubscriptionStatus::Ordered {
                Subscriptions::move_status(
                    tx,
                    sub_id,
                    SubscriptionStatus::Ordered,
                    SubscriptionStatus::Active,
                    now,
                )
                .await?;
            }
        }
        OrderType::Ch => {
            let sub = Subscriptions::get_in(tx, sub_id).await?;
            let change = &order.details["change"];
            let quantities: BTreeMap<String, i64> = match change.get("quantities") {
                Some(q) => serde_json::from_value(q.clone()).map_err(|e| {
                    TaskError::permanent(format!("order {}: change.quantities: {e}", order.id))
                })?,
                None => sub.quantities.clone(),
            };
            let period_uid = change
                .get("period_uid")
                .and_then(Value::as_str)
                .unwrap_or(&sub.period_uid)
                .to_string();
            let expires_on = change
                .get("expires_on")
                .and_then(Value::as_str)
                .unwrap_or(&sub.expires_on)
                .to_string();
            // An upgrade or downgrade to another plan of the same seller.
            if let Some(plan_id) = change.get("plan_id").and_then(Value::as_i64) {
                Subscriptions::switch_plan(tx, &sub, plan_id, &period_uid, &quantities, now)
                    .await?;
            } else {
                Subscriptions::update_terms(
                    tx,
                    &sub,
                    &period_uid,
                    &quantities,
                    &expires_on,
                    &sub.next_bill_date,
                    now,
                )
                .await?;
            }
        }
        // Cancelled when ordered; renewals and billing orders provision nothing.
        OrderType::Cl | OrderType::Rn | OrderType::Bo => {}
    }
    Ok(())
}

#[async_trait]
impl TaskHandler for ProvisionOrder {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    async fn run(&self, ctx: &TaskContext, task: &Task) -> Result<(), TaskError> {
        let order_id = task
            .payload
            .get("order_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| TaskError::permanent("payload has no integer `order_id`"))?;
        let now = ctx.clock.now();

        // 1–2: chain check, then paid → provisioning.
        let mut tx = ctx.db.begin().await?;
        let order = Orders::get_in(&mut tx, order_id).await?;
        match order.status {
            OrderStatus::Completed | OrderStatus::Cancelled | OrderStatus::Failed => {
                tracing::info!(
                    order_id,
                    status = order.status.as_str(),
                    "nothing to provision"
                );
                return Ok(());
            }
            OrderStatus::New | OrderStatus::WaitingForPayment => {
                return Err(TaskError::permanent(format!(
                    "order {order_id} is not paid ({})",
                    order.status.as_str()
                )));
            }
            OrderStatus::Paid => {
                if let Some(eff) = order.details.get("effective_on").and_then(Value::as_str)
                    && eff > today(now).as_str()
                {
                    return Err(TaskError::retryable(format!(
                        "order {order_id} is deferred until {eff}"
                    )));
                }
                if let Some(short) = Wholesale::chain_shortfall(&mut tx, order_id).await? {
                    let reason = short.reason();
                    Orders::set_reason(&mut tx, order_id, Some(&reason), now).await?;
                    tx.commit().await?;
                    tracing::warn!(order_id, reseller = %short.reseller, needed = short.needed_minor, available = short.available_minor, "chain check failed");
                    return Err(TaskError::retryable(reason));
                }
                if !Orders::set_status(
                    &mut tx,
                    order_id,
                    OrderStatus::Paid,
                    OrderStatus::Provisioning,
                    None,
                    now,
                )
                .await?
                {
                    return Ok(());
                }
                event(
                    &mut tx,
                    "order.provisioning",
                    &order,
                    json!({"order_id": order_id}),
                    now,
                )
                .await?;
                tx.commit().await?;
            }
            OrderStatus::Provisioning => {
                tx.commit().await?;
            }
        }

        // 3: the service.
        let order = ctx.db.orders().get(order_id).await?;
        if let Err(why) = self.service.provision(ctx, &order).await {
            let mut tx = ctx.db.begin().await?;
            if why.retryable && task.attempts < task.max_attempts {
                // Still provisioning; the reason says what is being waited for.
                let reason = format!(
                    "provisioning attempt {} of {} failed, will retry: {}",
                    task.attempts, task.max_attempts, why.message
                );
                Orders::set_reason(&mut tx, order_id, Some(&reason), now).await?;
                tx.commit().await?;
                return Err(TaskError::retryable(reason));
            }
            let reason = format!("provisioning failed: {}", why.message);
            if Orders::set_status(
                &mut tx,
                order_id,
                OrderStatus::Provisioning,
                OrderStatus::Failed,
                Some(&reason),
                now,
            )
            .await?
            {
                event(
                    &mut tx,
                    "order.failed",
                    &order,
                    json!({"order_id": order_id, "reason": reason}),
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            return Err(TaskError::permanent(reason));
        }

        // 4: the effect and completion, together.
        let mut tx = ctx.db.begin().await?;
        let order = Orders::get_in(&mut tx, order_id).await?;
        if order.status != OrderStatus::Provisioning {
            return Ok(());
        }
        apply_effect(&mut tx, &order, now).await?;
        Orders::set_status(
            &mut tx,
            order_id,
            OrderStatus::Provisioning,
            OrderStatus::Completed,
            None,
            now,
        )
        .await?;
        event(
            &mut tx,
            "order.completed",
            &order,
            json!({"order_id": order_id, "type": order.order_type.as_str()}),
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(order_id, "order provisioned");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_timestamps() {
        assert_eq!(chrono_free_date(Timestamp(0)), "1970-01-01");
        assert_eq!(
            chrono_free_date(Timestamp(1_700_000_000_000_000)),
            "2023-11-14"
        );
        assert_eq!(
            chrono_free_date(Timestamp(951_782_400 * 1_000_000)),
            "2000-02-29"
        );
        assert_eq!(chrono_free_date(Timestamp(-1)), "1969-12-31");
    }
}

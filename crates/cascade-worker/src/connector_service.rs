//! Provisioning through connectors: the [`Service`] that calls the connector instances
//! of a plan's resource types, and the `subscriptions.sync_service` task that tells
//! connectors about suspensions, resumptions and terminations.
//!
//! - **Which connector**: each rate of the plan names a resource type, each resource
//!   type names its service (`resource_types.service`) and owner; the instance
//!   registered by that owner for that service provisions it. Rates whose service has
//!   no instance are not sent anywhere: a plan with no connector at all keeps the
//!   no-op path (the order completes at once), so catalogs without connectors behave
//!   as before.
//! - **What is sent**: one resource per (subscription, instance), id `sub-{id}`, with
//!   the limits per resource type code (the subscription's quantity of the rate, else
//!   what the rate includes), the customer, and the **effective provisioning
//!   settings** of the plan's service template for the customer (template values
//!   overridden down the reseller chain, the `effective-settings` code).
//! - **Idempotency**: the transaction id is derived from the order (or the
//!   subscription's version for sync tasks) and the instance, so a retried task sends
//!   the same id and the connector answers with the first call's outcome.
//! - **Async path**: the client polls `GET /transactions/{id}` (bounded wait); still
//!   pending after that is a transient failure, and the task's retry asks again with
//!   the same transaction id.
//! - SO → `POST /resources`; CH → `PUT /resources/{id}` with the new limits; CL →
//!   `DELETE`. Suspension (holds, expiry, grace) → `PUT` with `state: suspended`,
//!   resumption → `PUT` with `state: active`, termination or cancellation → `DELETE`,
//!   which a connector answers `done` also for a resource it no longer has
//!   (idempotent unprovision). A restore (terminated → active) → `POST` again: the
//!   resource was unprovisioned on termination.

use crate::handler::{TaskContext, TaskError, TaskHandler};
use crate::provision::{Service, ServiceError};
use async_trait::async_trait;
use cascade_connector::{ConnectorClient, ConnectorError, Endpoint, HttpMethod, Secret};
use cascade_domain::billing::lifecycle::{OrderType, SubscriptionStatus};
use cascade_domain::catalog::resources::{ServiceTemplateId, SettingValue};
use cascade_domain::connector::{self as proto, Customer, ResourceRequest, ResourceState};
use cascade_domain::ids::AccountId;
use cascade_store::connectors::ConnectorInstance;
use cascade_store::plans::Plan;
use cascade_store::subscriptions::{Order, Subscription};
use cascade_store::tasks::Task;
use cascade_store::{Db, StoreError, StoreResult};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One connector a subscription's plan reaches, with the limits it gets.
#[derive(Debug, Clone)]
pub struct Target {
    pub instance: ConnectorInstance,
    /// Resource type code → limit.
    pub limits: BTreeMap<String, i64>,
    /// Rate uid → resource type code, for usage.
    pub rates: BTreeMap<String, String>,
}

/// The connector instances `plan` reaches and the limits for `quantities`.
pub async fn targets(
    db: &Db,
    plan: &Plan,
    quantities: &BTreeMap<String, i64>,
) -> StoreResult<Vec<Target>> {
    let mut by_instance: BTreeMap<i64, Target> = BTreeMap::new();
    let mut cache: BTreeMap<(AccountId, String), Option<ConnectorInstance>> = BTreeMap::new();
    for rate in &plan.content.rates {
        let rt = db
            .resource_types()
            .get(cascade_domain::catalog::resources::ResourceTypeId(
                rate.resource_type_id,
            ))
            .await?;
        let key = (rt.owner_account_id, rt.service.as_str().to_string());
        let inst = match cache.get(&key) {
            Some(i) => i.clone(),
            None => {
                let i = db.connector_instances().for_service(key.0, &key.1).await?;
                cache.insert(key, i.clone());
                i
            }
        };
        let Some(inst) = inst else { continue };
        let t = by_instance.entry(inst.id).or_insert_with(|| Target {
            instance: inst.clone(),
            limits: BTreeMap::new(),
            rates: BTreeMap::new(),
        });
        let limit = quantities.get(&rate.uid).copied().unwrap_or(rate.included);
        let code = protocol_code(rt.code.as_str(), rt.service.as_str()).to_string();
        t.limits.insert(code.clone(), limit);
        t.rates.insert(rate.uid.clone(), code);
    }
    Ok(by_instance.into_values().collect())
}

/// The code a connector knows a resource type by: its code without a leading
/// `{service}-` (resource type codes are unique per owner, so two services offering a
/// `mailbox` are told apart as `mail-a-mailbox` and `mail-b-mailbox`).
pub fn protocol_code<'a>(code: &'a str, service: &str) -> &'a str {
    code.strip_prefix(service)
        .and_then(|c| c.strip_prefix('-'))
        .filter(|c| !c.is_empty())
        .unwrap_or(code)
}

/// A client for `i`, with the connector skew tolerance.
pub fn client(
    i: &ConnectorInstance,
    clock: Arc<dyn cascade_domain::clock::Clock>,
    skew_secs: i64,
) -> Result<ConnectorClient, ConnectorError> {
    ConnectorClient::new(
        Endpoint {
            instance_id: i.id,
            base_url: i.endpoint.clone(),
            secret: Secret(i.secret.clone()),
            cert_pin: i.cert_pin.clone(),
            timeout: Duration::from_millis(i.timeout_ms.max(1) as u64),
            skew_secs,
        },
        clock,
    )
}

fn settings_json(s: &BTreeMap<String, SettingValue>) -> Value {
    Value::Object(
        s.iter()
            .map(|(k, v)| {
                let v = match v {
                    SettingValue::String(x) => Value::from(x.clone()),
                    SettingValue::Integer(x) => Value::from(*x),
                    SettingValue::Boolean(x) => Value::from(*x),
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

fn service_error(instance: &ConnectorInstance, e: ConnectorError) -> ServiceError {
    let message = format!("connector `{}`: {e}", instance.service);
    if e.is_retryable() {
        ServiceError::retryable(message)
    } else {
        ServiceError::permanent(message)
    }
}

/// The connector-backed service.
#[derive(Debug, Clone)]
pub struct ConnectorService {
    pub skew_secs: i64,
    /// How long one attempt polls a pending operation.
    pub max_wait: Duration,
}

impl Default for ConnectorService {
    fn default() -> Self {
        Self {
            skew_secs: proto::DEFAULT_SKEW_SECS,
            max_wait: Duration::from_secs(20),
        }
    }
}

impl ConnectorService {
    async fn request(
        ctx: &TaskContext,
        sub: &Subscription,
        plan: &Plan,
        t: &Target,
        state: ResourceState,
    ) -> Result<ResourceRequest, ServiceError> {
        let storage = |e: StoreError| ServiceError::retryable(format!("storage: {e}"));
        let account = ctx
            .db
            .accounts()
            .get(sub.account_id)
            .await
            .map_err(storage)?;
        let settings = match ctx
            .db
            .service_templates()
            .effective_settings_for(ServiceTemplateId(plan.template_id), sub.account_id)
            .await
        {
            Ok(s) => settings_json(&s),
            Err(StoreError::NotFound) => Value::Object(Default::default()),
            Err(e) => return Err(storage(e)),
        };
        Ok(ResourceRequest {
            resource_id: proto::resource_id(sub.id),
            customer: Customer {
                id: sub.account_id.0,
                name: account.name,
            },
            limits: t.limits.clone(),
            settings,
            state,
        })
    }

    /// Send what `op` means for every connector of the subscription.
    async fn apply(
        &self,
        ctx: &TaskContext,
        sub: &Subscription,
        quantities: &BTreeMap<String, i64>,
        op: Op,
        tx_prefix: &str,
    ) -> Result<usize, ServiceError> {
        let storage = |e: StoreError| ServiceError::retryable(format!("storage: {e}"));
        // The limits the subscription holds today (a sync may have lowered them).
        let day = chrono::DateTime::from_timestamp_micros(ctx.clock.now().0)
            .map(|d| d.date_naive().to_string())
            .unwrap_or_default();
        let plan = ctx
            .db
            .plans()
            .for_subscription(sub, &day)
            .await
            .map_err(storage)?;
        let targets = targets(&ctx.db, &plan, quantities).await.map_err(storage)?;
        for t in &targets {
            let c = client(&t.instance, ctx.clock.clone(), self.skew_secs)
                .map_err(|e| service_error(&t.instance, e))?;
            let txid = format!("{tx_prefix}-i{}", t.instance.id);
            let rid = proto::resource_id(sub.id);
            let r = match op {
                Op::Create => {
                    let body = Self::request(ctx, sub, &plan, t, ResourceState::Active).await?;
                    c.operate(
                        HttpMethod::POST,
                        "/resources",
                        &txid,
                        Some(&body),
                        self.max_wait,
                    )
                    .await
                }
                Op::Update(state) => {
                    let body = Self::request(ctx, sub, &plan, t, state).await?;
                    c.operate(
                        HttpMethod::PUT,
                        &format!("/resources/{rid}"),
                        &txid,
                        Some(&body),
                        self.max_wait,
                    )
                    .await
                }
                Op::Delete => {
                    c.operate::<()>(
                        HttpMethod::DELETE,
                        &format!("/resources/{rid}"),
                        &txid,
                        None,
                        self.max_wait,
                    )
                    .await
                }
            };
            match r {
                Ok(_) => {}
                // Unprovisioning something the connector does not have is done.
                Err(ConnectorError::Status { status: 404, .. }) if matches!(op, Op::Delete) => {}
                Err(e) => return Err(service_error(&t.instance, e)),
            }
        }
        Ok(targets.len())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn protocol_codes() {
        assert_eq!(super::protocol_code("mailbox", "mail"), "mailbox");
        assert_eq!(super::protocol_code("mail7-mailbox", "mail7"), "mailbox");
        assert_eq!(super::protocol_code("mail7-", "mail7"), "mail7-");
        assert_eq!(super::protocol_code("mailbox", "mailbox"), "mailbox");
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    Update(ResourceState),
    Delete,
}

#[async_trait]
impl Service for ConnectorService {
    async fn provision(&self, ctx: &TaskContext, order: &Order) -> Result<(), ServiceError> {
        let Some(sub_id) = order.subscription_id else {
            return Ok(());
        };
        let sub = ctx
            .db
            .subscriptions()
            .get(sub_id)
            .await
            .map_err(|e| ServiceError::retryable(format!("storage: {e}")))?;
        let prefix = format!("order-{}", order.id);
        let n = match order.order_type {
            OrderType::So => {
                self.apply(ctx, &sub, &sub.quantities, Op::Create, &prefix)
                    .await?
            }
            OrderType::Ch => {
                let q: BTreeMap<String, i64> = order.details["change"]
                    .get("quantities")
                    .and_then(|q| serde_json::from_value(q.clone()).ok())
                    .unwrap_or_else(|| sub.quantities.clone());
                self.apply(ctx, &sub, &q, Op::Update(ResourceState::Active), &prefix)
                    .await?
            }
            OrderType::Cl => {
                self.apply(ctx, &sub, &sub.quantities, Op::Delete, &prefix)
                    .await?
            }
            OrderType::Rn | OrderType::Bo => 0,
        };
        tracing::info!(
            order_id = order.id,
            connectors = n,
            "order sent to connectors"
        );
        Ok(())
    }
}

/// `subscriptions.sync_service`: bring the connectors in line with the subscription's
/// status (routed from suspension, resumption, restore, cancellation and termination
/// events; the payload carries `subscription_id`). Reads the status when it runs, so
/// a late or repeated task sends the current truth, never a stale one.
#[derive(Debug, Clone, Default)]
pub struct SyncService {
    pub service: ConnectorService,
}

impl SyncService {
    pub const KIND: &'static str = "subscriptions.sync_service";
}

#[async_trait]
impl TaskHandler for SyncService {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    async fn run(&self, ctx: &TaskContext, task: &Task) -> Result<(), TaskError> {
        let sub_id = task
            .payload
            .get("subscription_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| TaskError::permanent("payload has no integer `subscription_id`"))?;
        let sub = ctx.db.subscriptions().get(sub_id).await?;
        // A restore (terminated → active): the connector unprovisioned the resource on
        // termination, so it is provisioned again rather than resumed.
        let restored = task.payload.get("from").and_then(Value::as_str)
            == Some(SubscriptionStatus::Terminated.as_str());
        let op = match sub.status {
            SubscriptionStatus::Ordered => return Ok(()),
            SubscriptionStatus::Active if restored => Op::Create,
            SubscriptionStatus::Active => Op::Update(ResourceState::Active),
            SubscriptionStatus::Expired
            | SubscriptionStatus::Graced
            | SubscriptionStatus::CreditHold
            | SubscriptionStatus::AdminHold => Op::Update(ResourceState::Suspended),
            SubscriptionStatus::Cancelled | SubscriptionStatus::Terminated => Op::Delete,
        };
        let prefix = format!("sub-{}-v{}-{}", sub.id, sub.version, sub.status.as_str());
        self.service
            .apply(ctx, &sub, &sub.quantities, op, &prefix)
            .await
            .map(|_| ())
            .map_err(|e| {
                if e.retryable {
                    TaskError::retryable(e.message)
                } else {
                    TaskError::permanent(e.message)
                }
            })
    }
}

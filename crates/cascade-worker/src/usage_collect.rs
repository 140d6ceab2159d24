//! Usage collection: read each connector instance's usage and record it for billing.
//!
//! - **Per instance, in parallel, independently**: every instance is collected in its
//!   own tokio task with its own timeout ([`collect_all`]); a connector that hangs or
//!   fails yields an error for that instance only, and the total time is the slowest
//!   instance's (bounded by the timeout), not the sum.
//! - **What is recorded**: readings of resources `sub-{id}` whose subscription was sold
//!   under the instance's owner, for resource types the subscription's plan rates as
//!   measurable (or any rate of an external-rating plan). Levels are recorded as read;
//!   counters as their growth since the latest earlier day's reading
//!   ([`cascade_domain::connector::billable_quantity`]).
//! - **Idempotent**: the record id is `conn:{instance}:{type}:{date}` per subscription
//!   and the first reading of a day wins ([`Usage::record_collected`]), and counter
//!   readings are kept per day, so collecting a day again records nothing new.
//! - Scheduled by the worker once per UTC day (like the daily billing run), for the
//!   instances whose `usage_collected_on` is before today.

use crate::connector_service::{client, targets};
use cascade_domain::catalog::plan::BillingModel;
use cascade_domain::clock::Clock;
use cascade_domain::connector::{self as proto, UsageKind};
use cascade_store::connectors::{ConnectorInstance, ConnectorInstances};
use cascade_store::usage::{NewUsage, Usage};
use cascade_store::{Db, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What collecting one instance did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceOutcome {
    pub instance_id: i64,
    pub service: String,
    /// Readings the connector returned.
    pub readings: usize,
    /// Usage records newly written.
    pub recorded: usize,
    /// Readings that matched no measurable rate of a subscription of this owner.
    pub skipped: usize,
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// Collect `date` from every instance (or those in `only`), in parallel, each within
/// `timeout`.
pub async fn collect_all(
    db: &Db,
    clock: Arc<dyn Clock>,
    date: &str,
    timeout: Duration,
    skew_secs: i64,
    only: Option<&[i64]>,
) -> Result<Vec<InstanceOutcome>, StoreError> {
    let instances = db.connector_instances().list(None).await?;
    // Reading connectors is fully parallel; recording goes through a gate sized to
    // the backend's writers (SQLite has one), so instances queue here rather than
    // time out waiting for a pooled connection.
    let writers = match db {
        Db::Sqlite { .. } => 1,
        Db::Postgres(_) => 4,
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(writers));
    let mut set = tokio::task::JoinSet::new();
    for i in instances {
        if only.is_some_and(|o| !o.contains(&i.id)) {
            continue;
        }
        let (db, clock, date, gate) = (db.clone(), clock.clone(), date.to_string(), gate.clone());
        set.spawn(async move {
            let started = Instant::now();
            let (id, service) = (i.id, i.service.clone());
            let r =
                collect_instance(&db, clock.clone(), &i, &date, skew_secs, timeout, &gate).await;
            let mut o = InstanceOutcome {
                instance_id: id,
                service,
                readings: 0,
                recorded: 0,
                skipped: 0,
                error: None,
                elapsed: Duration::ZERO,
            };
            match r {
                Ok((readings, recorded, skipped)) => {
                    (o.readings, o.recorded, o.skipped) = (readings, recorded, skipped);
                    if let Err(e) = db
                        .connector_instances()
                        .set_collected(id, &date, clock.now())
                        .await
                    {
                        o.error = Some(format!("storage: {e}"));
                    }
                }
                Err(e) => o.error = Some(e),
            }
            o.elapsed = started.elapsed();
            if let Some(e) = &o.error {
                tracing::warn!(instance = id, error = %e, "usage collection failed");
            } else {
                tracing::info!(
                    instance = id,
                    readings = o.readings,
                    recorded = o.recorded,
                    "usage collected"
                );
            }
            o
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(o) => out.push(o),
            Err(e) => tracing::error!(error = %e, "usage collection task panicked"),
        }
    }
    out.sort_by_key(|o| o.instance_id);
    Ok(out)
}

/// Collect one instance: `(readings, recorded, skipped)`.
pub async fn collect_instance(
    db: &Db,
    clock: Arc<dyn Clock>,
    inst: &ConnectorInstance,
    date: &str,
    skew_secs: i64,
    timeout: Duration,
    gate: &tokio::sync::Semaphore,
) -> Result<(usize, usize, usize), String> {
    let c = client(inst, clock.clone(), skew_secs).map_err(|e| e.to_string())?;
    let report = tokio::time::timeout(timeout, c.usage(date))
        .await
        .map_err(|_| format!("timed out after {} ms", timeout.as_millis()))?
        .map_err(|e| e.to_string())?;
    if report.date != date {
        return Err(format!(
            "asked for {date}, the connector answered for {}",
            report.date
        ));
    }
    let storage = |e: StoreError| format!("storage: {e}");
    // Resource → subscription, for this owner's subscriptions only.
    let mut sub_ids: Vec<i64> = report
        .readings
        .iter()
        .filter_map(|r| proto::subscription_of(&r.resource_id))
        .collect();
    sub_ids.sort_unstable();
    sub_ids.dedup();
    let subs: HashMap<i64, i64> = db
        .connector_instances()
        .subscriptions_of(inst.owner_account_id, &sub_ids)
        .await
        .map_err(storage)?
        .into_iter()
        .collect();
    // Per plan: resource type code → rate uid, for this instance's measurable rates.
    let mut plan_rates: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
    for plan_id in subs.values() {
        if plan_rates.contains_key(plan_id) {
            continue;
        }
        let plan = db.plans().get(*plan_id).await.map_err(storage)?;
        let external = plan.content.billing_model == BillingModel::ExternalRating;
        let mut m = BTreeMap::new();
        for t in targets(db, &plan, &BTreeMap::new())
            .await
            .map_err(storage)?
        {
            if t.instance.id != inst.id {
                continue;
            }
            for (uid, code) in t.rates {
                if external || plan.content.rate(&uid).is_some_and(|r| r.measurable) {
                    m.insert(code, uid);
                }
            }
        }
        plan_rates.insert(*plan_id, m);
    }
    let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
    let now = clock.now();
    let mut tx = db.begin().await.map_err(storage)?;
    let before = ConnectorInstances::counters_before(&mut tx, inst.id, date)
        .await
        .map_err(storage)?;
    let today = ConnectorInstances::counters_on(&mut tx, inst.id, date)
        .await
        .map_err(storage)?;
    let mut records = Vec::new();
    let mut new_counters = Vec::new();
    let mut skipped = 0;
    for r in &report.readings {
        let rate = proto::subscription_of(&r.resource_id)
            .and_then(|s| subs.get(&s).map(|p| (s, p)))
            .and_then(|(s, p)| plan_rates.get(p)?.get(&r.resource_type).map(|u| (s, u)));
        let Some((sub, uid)) = rate else {
            skipped += 1;
            continue;
        };
        let key = (r.resource_id.clone(), r.resource_type.clone());
        let quantity = match r.kind {
            UsageKind::Level => proto::billable_quantity(UsageKind::Level, r.value, None),
            UsageKind::Counter => {
                // The first reading of the day is the one that counts.
                let value = match today.get(&key) {
                    Some(v) => *v,
                    None => {
                        new_counters.push((key.0.clone(), key.1.clone(), r.value));
                        r.value
                    }
                };
                proto::billable_quantity(UsageKind::Counter, value, before.get(&key).copied())
            }
        };
        records.push((
            sub,
            NewUsage {
                external_id: format!("conn:{}:{}:{}", inst.id, r.resource_type, date),
                rate_uid: uid.clone(),
                quantity,
                usage_date: date.to_string(),
            },
        ));
    }
    ConnectorInstances::put_counters(&mut tx, inst.id, date, &new_counters)
        .await
        .map_err(storage)?;
    let recorded = Usage::record_collected(&mut tx, &records, now)
        .await
        .map_err(storage)?;
    tx.commit().await.map_err(storage)?;
    Ok((report.readings.len(), recorded, skipped))
}

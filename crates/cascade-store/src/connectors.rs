//! Connector instances, the nonces of connector → Cascade calls, and counter readings.
//!
//! An instance belongs to the account that runs the service (the provider) and is
//! found by `(owner, service)`: a resource type names its service
//! (`resource_types.service`), so provisioning and usage collection go from a plan's
//! resource types to the instance without another link table.
//!
//! The secret is stored (Cascade must sign with it, so it cannot be hashed); the
//! [`ConnectorInstance`] `Debug` output hides it and the API never returns it.

use crate::{Db, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct ConnectorInstance {
    pub id: i64,
    pub owner_account_id: AccountId,
    pub service: String,
    pub name: String,
    pub endpoint: String,
    pub secret: String,
    pub cert_pin: Option<String>,
    pub timeout_ms: i64,
    pub last_check_at: Option<Timestamp>,
    pub last_check_ok: Option<bool>,
    pub last_check_message: Option<String>,
    pub callback_nonce: Option<String>,
    pub callback_verified_at: Option<Timestamp>,
    pub usage_collected_on: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl fmt::Debug for ConnectorInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorInstance")
            .field("id", &self.id)
            .field("owner_account_id", &self.owner_account_id)
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("secret", &"***")
            .field("cert_pin", &self.cert_pin)
            .finish_non_exhaustive()
    }
}

/// What registering an instance needs.
#[derive(Clone)]
pub struct NewInstance {
    pub service: String,
    pub name: String,
    pub endpoint: String,
    pub secret: String,
    pub cert_pin: Option<String>,
    pub timeout_ms: i64,
}

const COLUMNS: &str = "id, owner_account_id, service, name, endpoint, secret, cert_pin, timeout_ms, last_check_at, last_check_ok, last_check_message, callback_nonce, callback_verified_at, usage_collected_on, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    owner_account_id: i64,
    service: String,
    name: String,
    endpoint: String,
    secret: String,
    cert_pin: Option<String>,
    timeout_ms: i64,
    last_check_at: Option<i64>,
    last_check_ok: Option<bool>,
    last_check_message: Option<String>,
    callback_nonce: Option<String>,
    callback_verified_at: Option<i64>,
    usage_collected_on: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<Row> for ConnectorInstance {
    fn from(r: Row) -> Self {
        ConnectorInstance {
            id: r.id,
            owner_account_id: AccountId(r.owner_account_id),
            service: r.service,
            name: r.name,
            endpoint: r.endpoint,
            secret: r.secret,
            cert_pin: r.cert_pin,
            timeout_ms: r.timeout_ms,
            last_check_at: r.last_check_at.map(Timestamp),
            last_check_ok: r.last_check_ok,
            last_check_message: r.last_check_message,
            callback_nonce: r.callback_nonce,
            callback_verified_at: r.callback_verified_at.map(Timestamp),
            usage_collected_on: r.usage_collected_on,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        }
    }
}

pub struct ConnectorInstances<'a>(pub &'a Db);

impl Db {
    pub fn connector_instances(&self) -> ConnectorInstances<'_> {
        ConnectorInstances(self)
    }
}

impl ConnectorInstances<'_> {
    /// A second instance for the same owner and service is a [`StoreError::Conflict`].
    pub async fn create(
        tx: &mut Tx,
        owner: AccountId,
        n: &NewInstance,
        now: Timestamp,
    ) -> StoreResult<ConnectorInstance> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO connector_instances (owner_account_id, service, name, endpoint, secret, cert_pin, timeout_ms, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id")
            .bind(owner.0).bind(&n.service).bind(&n.name).bind(&n.endpoint).bind(&n.secret).bind(&n.cert_pin).bind(n.timeout_ms).bind(now.0)
            .fetch_one(c).await)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::Conflict {
                what: format!("a connector instance for service `{}` already exists", n.service),
            },
            o => o,
        })?;
        Self::get_in(tx, id).await
    }

    pub async fn get_in(tx: &mut Tx, id: i64) -> StoreResult<ConnectorInstance> {
        let sql = format!("SELECT {COLUMNS} FROM connector_instances WHERE id = $1");
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_one(c).await)?;
        Ok(r.into())
    }

    pub async fn get(&self, id: i64) -> StoreResult<ConnectorInstance> {
        let sql = format!("SELECT {COLUMNS} FROM connector_instances WHERE id = $1");
        let r: Row = on_db!(self.0, c => sqlx::query_as(&sql).bind(id).fetch_one(c).await)?;
        Ok(r.into())
    }

    /// Instances of `owner`, or all (the usage collector) when `None`.
    pub async fn list(&self, owner: Option<AccountId>) -> StoreResult<Vec<ConnectorInstance>> {
        let rows: Vec<Row> = match owner {
            Some(o) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM connector_instances WHERE owner_account_id = $1 ORDER BY id"
                );
                on_db!(self.0, c => sqlx::query_as(&sql).bind(o.0).fetch_all(c).await)?
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM connector_instances ORDER BY id");
                on_db!(self.0, c => sqlx::query_as(&sql).fetch_all(c).await)?
            }
        };
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The instance serving `service` for `owner`.
    pub async fn for_service(
        &self,
        owner: AccountId,
        service: &str,
    ) -> StoreResult<Option<ConnectorInstance>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM connector_instances WHERE owner_account_id = $1 AND service = $2"
        );
        let r: Option<Row> = on_db!(self.0, c => sqlx::query_as(&sql).bind(owner.0).bind(service).fetch_optional(c).await)?;
        Ok(r.map(Into::into))
    }

    /// Record the outcome of a Cascade → connector check.
    pub async fn record_check(
        &self,
        id: i64,
        ok: bool,
        message: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE connector_instances SET last_check_at = $2, last_check_ok = $3, last_check_message = $4, updated_at = $2 WHERE id = $1")
            .bind(id).bind(now.0).bind(ok).bind(message).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }

    /// Expect the connector to call back with `nonce` (voids an earlier verification).
    pub async fn expect_callback(&self, id: i64, nonce: &str, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE connector_instances SET callback_nonce = $2, callback_verified_at = NULL, updated_at = $3 WHERE id = $1")
            .bind(id).bind(nonce).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }

    /// Remember a nonce of a connector → Cascade call; `false` if it was seen already
    /// (a replay).
    pub async fn remember_nonce(
        tx: &mut Tx,
        id: i64,
        nonce: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query(
            "INSERT INTO connector_nonces (instance_id, nonce, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(id).bind(nonce).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Nonces older than the skew window cannot be replayed (the timestamp check
    /// refuses them first), so they need not be remembered.
    pub async fn forget_nonces_before(&self, cutoff: Timestamp) -> StoreResult<u64> {
        let mut tx = self.0.begin().await?;
        let n = on_tx!(&mut tx, c => sqlx::query("DELETE FROM connector_nonces WHERE seen_at < $1")
            .bind(cutoff.0).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(n)
    }

    /// The connector called back with the nonce it was asked for: the reverse
    /// connectivity check passed. `false` if the nonce is not the expected one.
    pub async fn mark_callback(
        tx: &mut Tx,
        id: i64,
        nonce: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE connector_instances SET callback_verified_at = $3, updated_at = $3 WHERE id = $1 AND callback_nonce = $2")
            .bind(id).bind(nonce).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn set_collected(&self, id: i64, date: &str, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE connector_instances SET usage_collected_on = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(date).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }
}

impl ConnectorInstances<'_> {
    /// `(id, plan_id)` of the subscriptions among `ids` sold by a seller under `owner`
    /// (the instance's owner or its resellers), in batches: the usage collector maps
    /// thousands of resources at once.
    pub async fn subscriptions_of(
        &self,
        owner: AccountId,
        ids: &[i64],
    ) -> StoreResult<Vec<(i64, i64)>> {
        let mut out = Vec::with_capacity(ids.len());
        let backend = self.0.backend();
        for chunk in ids.chunks(900) {
            // Bound in placeholder order (`push_param`: `?` on SQLite): the ids, then
            // the owner. The id list drives the lookup (primary key), materialized first: otherwise
            // PostgreSQL may walk every subscription of the owner's tree through
            // `subscriptions_vendor_id` for each chunk (measured: 30× slower at 200k).
            let mut sql = String::from(
                "WITH s AS MATERIALIZED (SELECT id, plan_id, vendor_id FROM subscriptions WHERE id IN (",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                crate::db::push_param(backend, i + 1, &mut sql);
            }
            sql.push_str(
                ")) SELECT s.id, s.plan_id FROM s
                 JOIN account_closure c ON c.descendant_id = s.vendor_id AND c.ancestor_id = ",
            );
            crate::db::push_param(backend, chunk.len() + 1, &mut sql);
            let rows: Vec<(i64, i64)> = on_db!(self.0, p => {
                let mut q = sqlx::query_as(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.bind(owner.0).fetch_all(p).await
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The counter readings before `date` (latest per resource and type) of the given
    /// resources, and store today's first reading of each (first wins, like usage).
    pub async fn counters_before(
        tx: &mut Tx,
        id: i64,
        date: &str,
    ) -> StoreResult<std::collections::HashMap<(String, String), i64>> {
        let rows: Vec<(String, String, i64)> = on_tx!(tx, c => sqlx::query_as(
            // One pass over the instance's readings (its primary key range) instead of a
            // correlated MAX per reading of every earlier day.
            "SELECT r.resource_id, r.resource_type, r.value FROM connector_counter_readings r
             JOIN (SELECT resource_id, resource_type, MAX(reading_date) AS d FROM connector_counter_readings
                   WHERE instance_id = $1 AND reading_date < $2 GROUP BY resource_id, resource_type) m
               ON r.resource_id = m.resource_id AND r.resource_type = m.resource_type AND r.reading_date = m.d
             WHERE r.instance_id = $1")
            .bind(id).bind(date).fetch_all(c).await)?;
        Ok(rows.into_iter().map(|(r, t, v)| ((r, t), v)).collect())
    }

    /// The counter readings of `date` already stored (first reading of a day wins).
    pub async fn counters_on(
        tx: &mut Tx,
        id: i64,
        date: &str,
    ) -> StoreResult<std::collections::HashMap<(String, String), i64>> {
        let rows: Vec<(String, String, i64)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT resource_id, resource_type, value FROM connector_counter_readings WHERE instance_id = $1 AND reading_date = $2")
            .bind(id).bind(date).fetch_all(c).await)?;
        Ok(rows.into_iter().map(|(r, t, v)| ((r, t), v)).collect())
    }

    /// Store first readings of a day (existing ones are kept).
    pub async fn put_counters(
        tx: &mut Tx,
        id: i64,
        date: &str,
        values: &[(String, String, i64)],
    ) -> StoreResult<()> {
        for chunk in values.chunks(1000) {
            let mut sql = String::from(
                "INSERT INTO connector_counter_readings (instance_id, resource_id, resource_type, reading_date, value) VALUES ",
            );
            // Bound in placeholder order (`push_param_rows`: `?` on SQLite).
            crate::db::push_param_rows(tx.backend(), chunk.len(), 5, &mut sql);
            sql.push_str(
                " ON CONFLICT (instance_id, resource_id, resource_type, reading_date) DO NOTHING",
            );
            on_tx!(tx, c => {
                let mut q = sqlx::query(&sql);
                for (r, t, v) in chunk {
                    q = q.bind(id).bind(r).bind(t).bind(date).bind(*v);
                }
                q.execute(c).await.map(|x| x.rows_affected())
            })?;
        }
        Ok(())
    }
}

impl ConnectorInstances<'_> {
    /// Point an instance at a new address and certificate (a connector that moved).
    pub async fn update_endpoint(
        &self,
        id: i64,
        endpoint: &str,
        cert_pin: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.0.begin().await?;
        on_tx!(&mut tx, c => sqlx::query(
            "UPDATE connector_instances SET endpoint = $2, cert_pin = $3, updated_at = $4 WHERE id = $1")
            .bind(id).bind(endpoint).bind(cert_pin).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }
}

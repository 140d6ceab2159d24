//! Set-wise reads and writes of the daily billing run.
//!
//! Billing one account per transaction with a few queries per subscription spends the
//! run's time on round trips, not on work. Here a whole batch of accounts is read with
//! three queries (due subscriptions with their account's statement day, the plans not
//! cached yet, unbilled usage) and written in one transaction with a constant number of
//! statements: move the subscriptions (with their version check), mark usage billed,
//! check charge keys, reserve invoice numbers (one counter update per issuer, all in one
//! statement), insert the invoices, insert their lines.
//!
//! The statements take their lists as **one parameter**: a PostgreSQL array (`= ANY($1)`
//! on tables that are large before the run, otherwise joined with `unnest(…)`, see
//! [`emit_invoices_issued`]) or, on SQLite, a JSON array read with `json_each`. That keeps each
//! statement's text independent of the batch size (prepared once and cached by sqlx),
//! avoids the bind-parameter limits of both backends, and lets PostgreSQL do
//! `UPDATE … FROM unnest(…)`. This is the one module with backend-specific SQL for billing;
//! everything else goes through the shared subset.
//!
//! Exactly-once rests on the same two guards as the per-account path in `documents` and
//! `subscriptions`: charge keys under a unique index (lines already billed are dropped
//! before writing, and a concurrent writer of the same key fails the transaction), and
//! the version check on every subscription moved in the same transaction as its lines.

use crate::documents::{NewLine, tax_of};
use crate::subscriptions::Subscription;
use crate::{Backend, Db, StoreError, StoreResult, Tx};
use cascade_domain::billing::lifecycle::SubscriptionStatus;
use cascade_domain::catalog::plan::PlanContent;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Statuses the daily run bills (as `Subscriptions::accounts_due`).
const DUE: &str = "s.status IN ('active', 'graced', 'expired')";

/// Prefix of invoice numbers; must match `DocKind::Invoice` in `documents`
/// (`Documents::next_number`), which shares the counter row.
const INVOICE_PREFIX: &str = "INV";
const INVOICE: &str = "invoice";

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("encoding a batch: {e}")))
}

/// Every account with something to bill on or before `date`, with its vendor (0 for
/// none), in account order: one query (a scan of the subscriptions: migration 21), 16 bytes per
/// account, so a run over millions of subscriptions holds a few MiB.
pub async fn due_accounts(db: &Db, date: &str) -> StoreResult<Vec<(AccountId, i64)>> {
    let sql = format!(
        "SELECT DISTINCT s.account_id, COALESCE(a.vendor_id, 0) FROM subscriptions s JOIN accounts a ON a.id = s.account_id
         WHERE s.next_bill_date <= $1 AND {DUE} ORDER BY s.account_id"
    );
    let rows: Vec<(i64, i64)> =
        crate::on_db!(db, p => sqlx::query_as(&sql).bind(date).fetch_all(p).await)?;
    Ok(rows.into_iter().map(|(a, v)| (AccountId(a), v)).collect())
}

/// A due subscription and its account's statement day.
#[derive(Debug, Clone)]
pub struct DueSubscription {
    /// `attributes` is not loaded (billing does not read it): always `Null`.
    pub sub: Subscription,
    pub statement_day: u32,
}

#[derive(sqlx::FromRow)]
struct DueRow {
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
    suspension_deadline: Option<String>,
    data_removed: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
    statement_day: i32,
    terms: Option<String>,
    next_terms: Option<String>,
    next_terms_from: Option<String>,
}

impl TryFrom<DueRow> for DueSubscription {
    type Error = StoreError;
    fn try_from(r: DueRow) -> StoreResult<DueSubscription> {
        let bad = |what: &str, e: String| {
            StoreError::Corrupt(format!("subscription {}: {what}: {e}", r.id))
        };
        let terms = crate::subscriptions::terms_from(
            r.id,
            r.terms.as_deref(),
            r.next_terms.as_deref(),
            r.next_terms_from.clone(),
        )?;
        let sub = Subscription {
            terms,
            id: r.id,
            account_id: AccountId(r.account_id),
            vendor_id: AccountId(r.vendor_id),
            plan_id: r.plan_id,
            status: SubscriptionStatus::parse(&r.status).map_err(|e| bad("status", e.message))?,
            auto_renew: serde_json::from_str(&r.auto_renew)
                .map_err(|e| bad("auto_renew", e.to_string()))?,
            quantities: serde_json::from_str(&r.quantities)
                .map_err(|e| bad("quantities", e.to_string()))?,
            period_uid: r.period_uid,
            start_date: r.start_date,
            expires_on: r.expires_on,
            next_bill_date: r.next_bill_date,
            attributes: serde_json::Value::Null,
            suspension_deadline: r.suspension_deadline,
            data_removed: r.data_removed,
            version: r.version,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
            // Due subscriptions run (active, graced, expired): never held nor terminated.
            held_on: None,
            held_by: None,
            terminated_on: None,
        };
        Ok(DueSubscription {
            sub,
            statement_day: r.statement_day.clamp(1, 31) as u32,
        })
    }
}

const DUE_COLUMNS: &str = "s.id, s.account_id, s.vendor_id, s.plan_id, s.period_uid, s.status, s.start_date, s.expires_on, s.next_bill_date, \
     s.auto_renew, s.quantities, s.suspension_deadline, s.data_removed, s.version, s.created_at, s.updated_at, a.statement_day, \
     s.terms, s.next_terms, s.next_terms_from";

/// A connection to read a batch on (inside a read transaction).
enum ReadConn<'c> {
    Pg(&'c mut sqlx::PgConnection),
    Lite(&'c mut sqlx::SqliteConnection),
}

/// What billing a batch of accounts needs to read.
pub struct BatchRead {
    /// The due subscriptions, ordered by account and id. A row that does not parse
    /// fails only its account: it comes back as `Err` with the account id, so the caller
    /// can bill that account on its own (and report it).
    pub subscriptions: Vec<Result<DueSubscription, (AccountId, StoreError)>>,
    /// The plans of those subscriptions that `cached` did not know: (id, currency, content).
    pub plans: Vec<(i64, String, PlanContent)>,
    /// Their unbilled usage dated before the run date, ordered by subscription and id.
    pub usage: Vec<UsageRecord>,
}

/// Read what billing `accounts` on `date` needs, in three queries and one read
/// transaction (one snapshot). On PostgreSQL the transaction plans every statement
/// generically (`plan_cache_mode`): the lists are parameters, and a custom plan made for
/// the first batches of a run (small tables, a long list) may scan whole tables.
pub async fn read_batch(
    db: &Db,
    accounts: &[AccountId],
    date: &str,
    cached: impl Fn(i64) -> bool,
) -> StoreResult<BatchRead> {
    match db {
        Db::Postgres(p) => {
            let mut tx = p.begin().await?;
            sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
                .execute(&mut *tx)
                .await?;
            let read = read_in(&mut ReadConn::Pg(&mut tx), accounts, date, cached).await?;
            tx.commit().await?;
            Ok(read)
        }
        Db::Sqlite { read, .. } => {
            let mut tx = read.begin().await?;
            let out = read_in(&mut ReadConn::Lite(&mut tx), accounts, date, cached).await?;
            tx.commit().await?;
            Ok(out)
        }
    }
}

async fn read_in(
    c: &mut ReadConn<'_>,
    accounts: &[AccountId],
    date: &str,
    cached: impl Fn(i64) -> bool,
) -> StoreResult<BatchRead> {
    let subscriptions = due_subscriptions(c, accounts, date).await?;
    let mut missing: Vec<i64> = subscriptions
        .iter()
        .flatten()
        .map(|s| s.sub.plan_id)
        .filter(|id| !cached(*id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let plans = plans(c, &missing).await?;
    let ids: Vec<i64> = subscriptions.iter().flatten().map(|s| s.sub.id).collect();
    let usage = unbilled_usage(c, &ids, date).await?;
    Ok(BatchRead {
        subscriptions,
        plans,
        usage,
    })
}

/// The query of a batch's due subscriptions: `$1` the accounts (an array on PostgreSQL,
/// a JSON array on SQLite), `$2` the run date. They are found through the accounts
/// (`subscriptions_account`). On SQLite the status test is written `+s.status` so that
/// it cannot use `subscriptions_status`: without statistics (a database never
/// `ANALYZE`d) the planner preferred that index, which reads every live subscription for
/// each batch.
pub fn due_subscriptions_sql(backend: Backend) -> String {
    match backend {
        Backend::Postgres => format!(
            "SELECT {DUE_COLUMNS} FROM subscriptions s JOIN accounts a ON a.id = s.account_id
             WHERE s.account_id = ANY($1) AND s.next_bill_date <= $2 AND {DUE} ORDER BY s.account_id, s.id"
        ),
        Backend::Sqlite => format!(
            "SELECT {DUE_COLUMNS} FROM subscriptions s JOIN accounts a ON a.id = s.account_id
             WHERE s.account_id IN (SELECT value FROM json_each($1)) AND s.next_bill_date <= $2 AND +{DUE} ORDER BY s.account_id, s.id"
        ),
    }
}

async fn due_subscriptions(
    c: &mut ReadConn<'_>,
    accounts: &[AccountId],
    date: &str,
) -> StoreResult<Vec<Result<DueSubscription, (AccountId, StoreError)>>> {
    let ids: Vec<i64> = accounts.iter().map(|a| a.0).collect();
    let rows: Vec<DueRow> = match c {
        ReadConn::Pg(c) => {
            let sql = due_subscriptions_sql(Backend::Postgres);
            sqlx::query_as(&sql)
                .bind(&ids)
                .bind(date)
                .fetch_all(&mut **c)
                .await?
        }
        ReadConn::Lite(c) => {
            let sql = due_subscriptions_sql(Backend::Sqlite);
            sqlx::query_as(&sql)
                .bind(json(&ids)?)
                .bind(date)
                .fetch_all(&mut **c)
                .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            let account = AccountId(r.account_id);
            DueSubscription::try_from(r).map_err(|e| (account, e))
        })
        .collect())
}

/// A usage record not billed yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UsageRecord {
    pub id: i64,
    pub subscription_id: i64,
    pub rate_uid: String,
    pub quantity: i64,
    pub usage_date: String,
}

async fn unbilled_usage(
    c: &mut ReadConn<'_>,
    subscriptions: &[i64],
    before: &str,
) -> StoreResult<Vec<UsageRecord>> {
    if subscriptions.is_empty() {
        return Ok(vec![]);
    }
    Ok(match c {
        ReadConn::Pg(c) => {
            sqlx::query_as(
                "SELECT id, subscription_id, rate_uid, quantity, usage_date FROM usage_records
                 WHERE subscription_id = ANY($1) AND billed_line_id IS NULL AND usage_date < $2 ORDER BY subscription_id, id",
            )
            .bind(subscriptions)
            .bind(before)
            .fetch_all(&mut **c)
            .await?
        }
        ReadConn::Lite(c) => {
            sqlx::query_as(
                "SELECT id, subscription_id, rate_uid, quantity, usage_date FROM usage_records
                 WHERE subscription_id IN (SELECT value FROM json_each($1)) AND billed_line_id IS NULL AND usage_date < $2
                 ORDER BY subscription_id, id",
            )
            .bind(json(&subscriptions)?)
            .bind(before)
            .fetch_all(&mut **c)
            .await?
        }
    })
}

async fn plans(c: &mut ReadConn<'_>, ids: &[i64]) -> StoreResult<Vec<(i64, String, PlanContent)>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let rows: Vec<(i64, String, String)> = match c {
        ReadConn::Pg(c) => {
            sqlx::query_as("SELECT id, currency, content FROM plans WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&mut **c)
                .await?
        }
        ReadConn::Lite(c) => sqlx::query_as(
            "SELECT id, currency, content FROM plans WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(json(&ids)?)
        .fetch_all(&mut **c)
        .await?,
    };
    rows.into_iter()
        .map(|(id, currency, content)| {
            let c = serde_json::from_str(&content)
                .map_err(|e| StoreError::Corrupt(format!("plan {id}: content: {e}")))?;
            Ok((id, currency, c))
        })
        .collect()
}

/// Start a batch's write transaction. On PostgreSQL its statements are planned
/// generically, as in [`read_batch`]: an update joined to a list of thousands of
/// subscriptions must go through the primary key, never through a scan of the table.
///
/// `durable = false` commits it with `synchronous_commit = off` (PostgreSQL): the commit
/// returns before its WAL is flushed, so the run does not wait for a disk flush per
/// batch and the WAL writer flushes many batches at once. Safe for the billing run and
/// only for it: the database stays consistent after a crash (the transaction is either
/// wholly there or wholly lost), and a lost batch is exactly one whose subscriptions are
/// still due, so the re-run that follows any crash bills it again — the same as a batch
/// that was in flight when the process died. Nothing outside the run learns of a batch
/// before its commit is durable except the API readers of its invoices, which the
/// re-run writes again identically (same charge keys).
pub async fn begin(db: &Db, durable: bool) -> StoreResult<Tx> {
    let mut tx = db.begin().await?;
    if let Tx::Postgres(t) = &mut tx {
        let sql = if durable {
            "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"
        } else {
            "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('synchronous_commit', 'off', true)"
        };
        sqlx::query(sql).execute(&mut **t).await?;
    }
    Ok(tx)
}

/// Requests (pages and API calls, reads included) in flight in this process, and the
/// microseconds spent in finished ones: the load the billing run paces itself by.
static REQUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static REQUEST_MICROS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Marks a request in flight until dropped (held by the HTTP layer for every request).
pub struct RequestGuard(std::time::Instant);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let us = self.0.elapsed().as_micros() as u64;
        REQUEST_MICROS.fetch_add(us, std::sync::atomic::Ordering::Relaxed);
        REQUESTS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Count a request (any method) until the guard drops.
pub fn request() -> RequestGuard {
    REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    RequestGuard(std::time::Instant::now())
}

/// Default of the billing run's `pace_max`.
pub const DEFAULT_PACE_MAX: f64 = 8.0;

/// The request load: requests in flight on average (request time per wall time) over
/// the last sampling interval (≥ 100 ms), smoothed. 0 when nobody uses the panels or API.
pub fn request_load() -> f64 {
    struct Sample {
        at: std::time::Instant,
        micros: u64,
        load: f64,
    }
    static LAST: std::sync::Mutex<Option<Sample>> = std::sync::Mutex::new(None);
    let now = std::time::Instant::now();
    let micros = REQUEST_MICROS.load(std::sync::atomic::Ordering::Relaxed);
    let in_flight = REQUESTS.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    match last.as_mut() {
        None => {
            *last = Some(Sample {
                at: now,
                micros,
                load: in_flight,
            });
            in_flight
        }
        Some(s) => {
            let wall = now.duration_since(s.at).as_micros() as f64;
            if wall >= 100_000.0 {
                let busy = micros.saturating_sub(s.micros) as f64;
                // Requests still in flight have not added their time yet: count them too.
                let sample = (busy / wall).max(in_flight);
                // Recent load weighs more the longer the interval was.
                let w = (wall / 1_000_000.0).min(1.0);
                s.load = s.load * (1.0 - w) + sample * w;
                s.at = now;
                s.micros = micros;
            }
            s.load
        }
    }
}

/// The pause factor while API writes (orders, payments) are in flight or were within the
/// last [`WRITES_RECENT`]: the run works at most a third of the time, so an order placed
/// meanwhile is not slowed by more than a few milliseconds (the write gate
/// [`yield_to_interactive`] alone left it 2.4× slower at p99 during a 1M run).
pub const WRITE_PACE: f64 = 2.0;

/// How recent an API write makes the run pace at [`WRITE_PACE`].
pub const WRITES_RECENT: std::time::Duration = std::time::Duration::from_secs(2);

/// The pause after `worked` of billing: `worked × min(max, (load − 1) / 2)`, at least
/// `worked × WRITE_PACE` while API writes are recent, so a lone page request at a time
/// costs the run nothing, orders being placed get most of the machine, and saturating
/// traffic (dozens of requests in flight) gets `max / (max + 1)` of it.
pub fn pace_for(
    worked: std::time::Duration,
    load: f64,
    writes_recent: bool,
    max: f64,
) -> std::time::Duration {
    let mut factor = (load - 1.0) / 2.0;
    if writes_recent {
        factor = factor.max(WRITE_PACE);
    }
    worked.mul_f64(factor.clamp(0.0, max.max(0.0)))
}

/// Pause the billing run after a step that took `worked`, in proportion to the request
/// load ([`pace_for`]). Returns the pause.
pub async fn pace(worked: std::time::Duration, max: f64) -> std::time::Duration {
    if max <= 0.0 {
        return std::time::Duration::ZERO;
    }
    let pause = pace_for(
        worked,
        request_load(),
        interactive_within(WRITES_RECENT),
        max,
    );
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    pause
}

/// Interactive writes (API requests) in flight in this process; see [`interactive`].
static INTERACTIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Marks an interactive write in flight until dropped.
pub struct InteractiveGuard(());

impl Drop for InteractiveGuard {
    fn drop(&mut self) {
        mark_interactive();
        INTERACTIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// When an interactive write last started or ended: milliseconds since [`epoch`], plus
/// one (0: never).
static LAST_INTERACTIVE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fixed instant of this process: scheduling time, not business time (no `Clock`).
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

fn mark_interactive() {
    let ms = epoch().elapsed().as_millis() as u64 + 1;
    LAST_INTERACTIVE.fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Whether an interactive write is in flight or was within the last `window`: the
/// billing run then writes in short transactions ([`write_chunk`]), so that the next
/// API write never waits for a whole batch's writes (SQLite's single writer, PostgreSQL's
/// invoice counter rows, which every batch locks for its issuers until it commits).
pub fn interactive_within(window: std::time::Duration) -> bool {
    if interactive_in_flight() > 0 {
        return true;
    }
    let last = LAST_INTERACTIVE.load(std::sync::atomic::Ordering::Relaxed);
    last > 0 && (epoch().elapsed().as_millis() as u64) < last + window.as_millis() as u64
}

/// How many of `remaining` accounts the next write transaction of a batch takes:
/// `configured` if set (non-zero); otherwise all of them, or `busy` while interactive
/// writes are recent (`interactive`), trading a few statements per transaction for short
/// waits of the API behind the run.
pub fn write_chunk(remaining: usize, configured: usize, busy: usize, interactive: bool) -> usize {
    let n = if configured > 0 {
        configured
    } else if interactive && busy > 0 {
        busy
    } else {
        remaining
    };
    n.clamp(1, remaining.max(1))
}

/// The in-process priority gate: the HTTP layer holds a guard for every mutating request
/// while it runs, and the billing run calls [`yield_to_interactive`] before each write
/// transaction, so an order being placed does not queue behind a batch's writes (on
/// SQLite, behind the single writer; on PostgreSQL, behind counter and index contention
/// and WAL flushes).
pub fn interactive() -> InteractiveGuard {
    mark_interactive();
    INTERACTIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    InteractiveGuard(())
}

/// Interactive writes in flight now.
pub fn interactive_in_flight() -> usize {
    INTERACTIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Wait while interactive writes are in flight, at most `max` (so the run always
/// progresses). Returns how long it waited.
pub async fn yield_to_interactive(max: std::time::Duration) -> std::time::Duration {
    let start = std::time::Instant::now();
    while interactive_in_flight() > 0 && start.elapsed() < max {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// Where billing moves a subscription, if it is still at `version`.
#[derive(Debug, Clone)]
pub struct SubscriptionMove {
    pub id: i64,
    pub version: i64,
    pub next_bill_date: String,
    pub expires_on: String,
    pub status: SubscriptionStatus,
}

/// Move subscriptions in one statement (`version + 1`), each only if still at its
/// `version`. Returns the ids that moved; the others were changed meanwhile.
pub async fn move_subscriptions(
    tx: &mut Tx,
    moves: &[SubscriptionMove],
    now: Timestamp,
) -> StoreResult<HashSet<i64>> {
    if moves.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(i64,)> = match tx {
        Tx::Postgres(t) => {
            let ids: Vec<i64> = moves.iter().map(|m| m.id).collect();
            let versions: Vec<i64> = moves.iter().map(|m| m.version).collect();
            let next: Vec<&str> = moves.iter().map(|m| m.next_bill_date.as_str()).collect();
            let expires: Vec<&str> = moves.iter().map(|m| m.expires_on.as_str()).collect();
            let status: Vec<&str> = moves.iter().map(|m| m.status.as_str()).collect();
            sqlx::query_as(
                "UPDATE subscriptions AS s
                 SET next_bill_date = v.next_bill_date, expires_on = v.expires_on, status = v.status, version = s.version + 1, updated_at = $6
                 FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[]) AS v(id, version, next_bill_date, expires_on, status)
                 WHERE s.id = v.id AND s.version = v.version
                 RETURNING s.id",
            )
            .bind(ids)
            .bind(versions)
            .bind(next)
            .bind(expires)
            .bind(status)
            .bind(now.0)
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            let rows: Vec<(i64, i64, &str, &str, &str)> = moves
                .iter()
                .map(|m| {
                    (
                        m.id,
                        m.version,
                        m.next_bill_date.as_str(),
                        m.expires_on.as_str(),
                        m.status.as_str(),
                    )
                })
                .collect();
            sqlx::query_as(
                "UPDATE subscriptions
                 SET next_bill_date = v.value ->> 2, expires_on = v.value ->> 3, status = v.value ->> 4, version = version + 1, updated_at = $2
                 FROM json_each($1) AS v
                 WHERE subscriptions.id = v.value ->> 0 AND subscriptions.version = v.value ->> 1
                 RETURNING subscriptions.id",
            )
            .bind(json(&rows)?)
            .bind(now.0)
            .fetch_all(&mut **t)
            .await?
        }
    };
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Mark usage records billed (as the per-account path does: `billed_line_id = 0`).
pub async fn mark_usage_billed(tx: &mut Tx, ids: &[i64]) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let n = match tx {
        Tx::Postgres(t) => {
            sqlx::query("UPDATE usage_records AS u SET billed_line_id = 0 FROM unnest($1::int8[]) AS v(id) WHERE u.id = v.id AND u.billed_line_id IS NULL")
                .bind(ids)
                .execute(&mut **t)
                .await?
                .rows_affected()
        }
        Tx::Sqlite(t) => {
            sqlx::query("UPDATE usage_records SET billed_line_id = 0 WHERE id IN (SELECT value FROM json_each($1)) AND billed_line_id IS NULL")
                .bind(json(&ids)?)
                .execute(&mut **t)
                .await?
                .rows_affected()
        }
    };
    Ok(n)
}

/// Which of `keys` were billed already.
pub async fn existing_charge_keys(tx: &mut Tx, keys: &[&str]) -> StoreResult<HashSet<String>> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(String,)> = match tx {
        Tx::Postgres(t) => {
            sqlx::query_as("SELECT l.charge_key FROM unnest($1::text[]) AS v(k) JOIN document_lines l ON l.charge_key = v.k").bind(keys).fetch_all(&mut **t).await?
        }
        Tx::Sqlite(t) => {
            sqlx::query_as("SELECT charge_key FROM document_lines WHERE charge_key IN (SELECT value FROM json_each($1))")
                .bind(json(&keys)?)
                .fetch_all(&mut **t)
                .await?
        }
    };
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Reserve `count` consecutive invoice numbers per issuer with one statement (one
/// counter row update per issuer, taken in issuer order so concurrent batches never
/// deadlock on each other). Returns the first number reserved per issuer.
pub async fn reserve_invoice_numbers(
    tx: &mut Tx,
    counts: &BTreeMap<i64, i64>,
) -> StoreResult<HashMap<i64, i64>> {
    if counts.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64)> = match tx {
        Tx::Postgres(t) => {
            let issuers: Vec<i64> = counts.keys().copied().collect();
            let ns: Vec<i64> = counts.values().copied().collect();
            sqlx::query_as(
                "INSERT INTO document_sequences (issuer_account_id, kind, next_number)
                 SELECT v.issuer, $3, v.n FROM unnest($1::int8[], $2::int8[]) AS v(issuer, n) ORDER BY v.issuer
                 ON CONFLICT (issuer_account_id, kind) DO UPDATE SET next_number = document_sequences.next_number + excluded.next_number
                 RETURNING issuer_account_id, next_number",
            )
            .bind(issuers)
            .bind(ns)
            .bind(INVOICE)
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            let rows: Vec<(i64, i64)> = counts.iter().map(|(i, n)| (*i, *n)).collect();
            // `WHERE true` settles the parsing ambiguity of INSERT … SELECT … ON CONFLICT.
            sqlx::query_as(
                "INSERT INTO document_sequences (issuer_account_id, kind, next_number)
                 SELECT v.value ->> 0, $2, v.value ->> 1 FROM json_each($1) AS v WHERE true
                 ON CONFLICT (issuer_account_id, kind) DO UPDATE SET next_number = document_sequences.next_number + excluded.next_number
                 RETURNING issuer_account_id, next_number",
            )
            .bind(json(&rows)?)
            .bind(INVOICE)
            .fetch_all(&mut **t)
            .await?
        }
    };
    // The counter holds the last number issued.
    rows.into_iter()
        .map(|(issuer, last)| {
            let n = counts.get(&issuer).copied().ok_or_else(|| {
                StoreError::Corrupt(format!("counter of unexpected issuer {issuer}"))
            })?;
            Ok((issuer, last - n + 1))
        })
        .collect()
}

/// Dates and tax shared by the invoices of one batch.
#[derive(Debug, Clone, Copy)]
pub struct InvoiceHead<'a> {
    pub issue_date: &'a str,
    pub due_date: Option<&'a str>,
    /// Tax rate in basis points applied to each invoice's subtotal.
    pub tax_bp: i64,
}

/// One invoice to issue: what `issuer` bills `account` in `currency`.
#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub issuer: AccountId,
    pub account: AccountId,
    pub currency: String,
    pub lines: Vec<NewLine>,
}

/// How [`issue_invoices`] treats charge keys billed already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// Look the keys up first and drop the lines billed already (the semantics of
    /// `Documents::issue`).
    Before,
    /// Assume no key was billed and let the unique index check: if a line's key exists,
    /// the insert fails and [`issue_invoices`] answers `Ok(None)`; the transaction is then
    /// unusable and the caller must roll back and issue again with [`KeyCheck::Before`].
    /// Saves a query and an index probe per line in the usual case, where a billing run
    /// only meets keys it has never billed.
    Optimistic,
}

/// Issue many invoices at once, with the semantics of `Documents::issue` for each: lines
/// whose charge key was billed already are dropped, and an invoice left with nothing to
/// bill is not written. Numbers are sequential per issuer. Returns, per input invoice,
/// what was issued or `None`; `Ok(None)` when [`KeyCheck::Optimistic`] met a key billed
/// already (roll back).
pub async fn issue_invoices(
    tx: &mut Tx,
    head: &InvoiceHead<'_>,
    invoices: &[&NewInvoice],
    now: Timestamp,
    check: KeyCheck,
) -> StoreResult<Option<Vec<Option<Issued>>>> {
    let keys: Vec<&str> = invoices
        .iter()
        .flat_map(|i| i.lines.iter().filter_map(|l| l.charge_key.as_deref()))
        .collect();
    let seen = match check {
        KeyCheck::Before => existing_charge_keys(tx, &keys).await?,
        KeyCheck::Optimistic => HashSet::new(),
    };
    // Per invoice, the positions of the lines to write.
    let written: Vec<Vec<usize>> = invoices
        .iter()
        .map(|i| {
            (0..i.lines.len())
                .filter(|n| {
                    i.lines[*n]
                        .charge_key
                        .as_ref()
                        .is_none_or(|k| !seen.contains(k))
                })
                .collect()
        })
        .collect();
    let fresh: Vec<Vec<&NewLine>> = invoices
        .iter()
        .zip(&written)
        .map(|(i, w)| w.iter().map(|n| &i.lines[*n]).collect())
        .collect();
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for (inv, lines) in invoices.iter().zip(&fresh) {
        if !lines.is_empty() {
            *counts.entry(inv.issuer.0).or_default() += 1;
        }
    }
    let mut next = reserve_invoice_numbers(tx, &counts).await?;
    // Document rows: (number, issuer, account, currency, subtotal, tax, total).
    let mut docs: Vec<(String, i64, i64, &str, i64, i64, i64)> = Vec::with_capacity(invoices.len());
    let mut doc_of: Vec<Option<usize>> = Vec::with_capacity(invoices.len());
    for (inv, lines) in invoices.iter().zip(&fresh) {
        if lines.is_empty() {
            doc_of.push(None);
            continue;
        }
        let n = next.get_mut(&inv.issuer.0).ok_or_else(|| {
            StoreError::Corrupt(format!("no number reserved for issuer {}", inv.issuer.0))
        })?;
        let number = format!("{INVOICE_PREFIX}-{:06}", *n);
        *n += 1;
        let subtotal: i64 = lines.iter().map(|l| l.amount_minor).sum();
        let tax = tax_of(subtotal, head.tax_bp);
        doc_of.push(Some(docs.len()));
        docs.push((
            number,
            inv.issuer.0,
            inv.account.0,
            inv.currency.as_str(),
            subtotal,
            tax,
            subtotal + tax,
        ));
    }
    if docs.is_empty() {
        return Ok(Some(vec![None; invoices.len()]));
    }
    let returned: Vec<(i64, i64, String)> = match &mut *tx {
        Tx::Postgres(t) => {
            sqlx::query_as(
                "INSERT INTO documents (kind, number, issuer_account_id, account_id, currency, status, subtotal_minor, tax_minor, total_minor, open_minor,
                    issue_date, due_date, charge_date, method, external_ref, idem_key, created_at, issued_at, tax_bp)
                 SELECT $8, v.number, v.issuer, v.account, v.currency, 'issued', v.subtotal, v.tax, v.total, v.total, $9, $10, NULL, NULL, NULL, NULL, $11, $11, $12
                 FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::int8[], $7::int8[])
                   AS v(number, issuer, account, currency, subtotal, tax, total)
                 RETURNING id, issuer_account_id, number",
            )
            .bind(docs.iter().map(|d| d.0.as_str()).collect::<Vec<_>>())
            .bind(docs.iter().map(|d| d.1).collect::<Vec<_>>())
            .bind(docs.iter().map(|d| d.2).collect::<Vec<_>>())
            .bind(docs.iter().map(|d| d.3).collect::<Vec<_>>())
            .bind(docs.iter().map(|d| d.4).collect::<Vec<_>>())
            .bind(docs.iter().map(|d| d.5).collect::<Vec<_>>())
            .bind(docs.iter().map(|d| d.6).collect::<Vec<_>>())
            .bind(INVOICE)
            .bind(head.issue_date)
            .bind(head.due_date)
            .bind(now.0)
            .bind(head.tax_bp)
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            sqlx::query_as(
                "INSERT INTO documents (kind, number, issuer_account_id, account_id, currency, status, subtotal_minor, tax_minor, total_minor, open_minor,
                    issue_date, due_date, charge_date, method, external_ref, idem_key, created_at, issued_at, tax_bp)
                 SELECT $2, v.value ->> 0, v.value ->> 1, v.value ->> 2, v.value ->> 3, 'issued', v.value ->> 4, v.value ->> 5, v.value ->> 6, v.value ->> 6,
                    $3, $4, NULL, NULL, NULL, NULL, $5, $5, $6
                 FROM json_each($1) AS v
                 RETURNING id, issuer_account_id, number",
            )
            .bind(json(&docs)?)
            .bind(INVOICE)
            .bind(head.issue_date)
            .bind(head.due_date)
            .bind(now.0)
            .bind(head.tax_bp)
            .fetch_all(&mut **t)
            .await?
        }
    };
    // RETURNING order is not promised: map back by (issuer, number), unique per kind.
    let ids: HashMap<(i64, String), i64> = returned
        .into_iter()
        .map(|(id, issuer, number)| ((issuer, number), id))
        .collect();
    let doc_ids: Vec<i64> = docs
        .iter()
        .map(|d| {
            ids.get(&(d.1, d.0.clone())).copied().ok_or_else(|| {
                StoreError::Corrupt(format!("invoice {} of issuer {} not returned", d.0, d.1))
            })
        })
        .collect::<StoreResult<_>>()?;
    let mut line_rows: Vec<(i64, &NewLine)> = Vec::with_capacity(keys.len());
    for (lines, d) in fresh.iter().zip(&doc_of) {
        if let Some(d) = d {
            line_rows.extend(lines.iter().map(|l| (doc_ids[*d], *l)));
        }
    }
    match insert_lines(tx, &line_rows).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) if check == KeyCheck::Optimistic => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok(Some(
        doc_of
            .iter()
            .zip(written)
            .map(|(d, lines)| {
                d.map(|d| Issued {
                    id: doc_ids[d],
                    number: docs[d].0.clone(),
                    lines,
                })
            })
            .collect(),
    ))
}

/// An invoice [`issue_invoices`] wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: i64,
    pub number: String,
    /// Positions (in the input invoice's `lines`) of the lines written; the others were
    /// billed already.
    pub lines: Vec<usize>,
}

/// Insert lines in one statement, in the given order (their ids follow it). A charge
/// key that exists fails the statement (`StoreError::Conflict`).
///
/// PostgreSQL takes them through `COPY … FROM STDIN` (text format), the cheapest way in
/// for the server: no executor over `unnest`, no per-row expression evaluation. Lines
/// are the bulk of what a billing run writes.
async fn insert_lines(tx: &mut Tx, lines: &[(i64, &NewLine)]) -> StoreResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Postgres(t) => {
            let mut text = String::with_capacity(lines.len() * 160);
            for (d, l) in lines {
                copy_row(&mut text, *d, l);
            }
            let conn: &mut sqlx::PgConnection = t;
            let mut copy = conn
                .copy_in_raw(
                    "COPY document_lines (document_id, subscription_id, line_kind, description, quantity, unit_price_micro, amount_minor,
                        period_start, period_end, charge_key) FROM STDIN",
                )
                .await?;
            if let Err(e) = copy.send(text.into_bytes()).await {
                let _ = copy.abort("sending lines failed").await;
                return Err(e.into());
            }
            copy.finish().await?;
        }
        Tx::Sqlite(t) => {
            type Row<'a> = (
                i64,
                Option<i64>,
                &'a str,
                &'a str,
                i64,
                i64,
                i64,
                Option<&'a str>,
                Option<&'a str>,
                Option<&'a str>,
            );
            let rows: Vec<Row<'_>> = lines
                .iter()
                .map(|(d, l)| {
                    (
                        *d,
                        l.subscription_id,
                        l.kind.as_str(),
                        l.description.as_str(),
                        l.quantity,
                        l.unit_price_micro,
                        l.amount_minor,
                        l.period_start.as_deref(),
                        l.period_end.as_deref(),
                        l.charge_key.as_deref(),
                    )
                })
                .collect();
            sqlx::query(
                "INSERT INTO document_lines (document_id, subscription_id, line_kind, description, quantity, unit_price_micro, amount_minor,
                    period_start, period_end, charge_key)
                 SELECT v.value ->> 0, v.value ->> 1, v.value ->> 2, v.value ->> 3, v.value ->> 4, v.value ->> 5, v.value ->> 6, v.value ->> 7,
                    v.value ->> 8, v.value ->> 9
                 FROM json_each($1) AS v",
            )
            .bind(json(&rows)?)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

/// One line in PostgreSQL's COPY text format.
fn copy_row(out: &mut String, document: i64, l: &NewLine) {
    use std::fmt::Write;
    let _ = write!(out, "{document}\t");
    match l.subscription_id {
        Some(s) => {
            let _ = write!(out, "{s}\t");
        }
        None => out.push_str("\\N\t"),
    }
    copy_text(out, Some(&l.kind));
    copy_text(out, Some(&l.description));
    let _ = write!(
        out,
        "{}\t{}\t{}\t",
        l.quantity, l.unit_price_micro, l.amount_minor
    );
    copy_text(out, l.period_start.as_deref());
    copy_text(out, l.period_end.as_deref());
    copy_text(out, l.charge_key.as_deref());
    // The last field's tab becomes the end of the row.
    out.pop();
    out.push('\n');
}

/// A text field and its tab, escaped for COPY (`\N` is NULL).
fn copy_text(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
    out.push('\t');
}

/// A BO (billing) order: what one subscription was billed by one run, on one invoice.
/// Written completed (nothing to provision), in the transaction of its lines.
#[derive(Debug, Clone)]
pub struct BillingOrder {
    pub account: AccountId,
    pub vendor: AccountId,
    pub subscription_id: i64,
    pub currency: String,
    pub total_minor: i64,
    /// JSON: the invoice (`invoice_id`, `invoice_number`), the billed span and the charge
    /// keys of the lines it produced.
    pub details: String,
}

/// Insert BO orders with one statement (status `completed`, no placing user). Returns
/// their ids, in the order of `orders`.
pub async fn insert_billing_orders(
    tx: &mut Tx,
    orders: &[BillingOrder],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    if orders.is_empty() {
        return Ok(vec![]);
    }
    let returned: Vec<(i64, i64)> = match tx {
        Tx::Postgres(t) => {
            sqlx::query_as(
                "INSERT INTO orders (account_id, vendor_id, subscription_id, order_type, status, reason, currency, total_minor, details, placed_by, created_at, updated_at)
                 SELECT v.account, v.vendor, v.sub, 'BO', 'completed', NULL, v.currency, v.total, v.details, NULL, $7, $7
                 FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::text[]) AS v(account, vendor, sub, currency, total, details)
                 RETURNING id, subscription_id",
            )
            .bind(orders.iter().map(|o| o.account.0).collect::<Vec<_>>())
            .bind(orders.iter().map(|o| o.vendor.0).collect::<Vec<_>>())
            .bind(orders.iter().map(|o| o.subscription_id).collect::<Vec<_>>())
            .bind(orders.iter().map(|o| o.currency.as_str()).collect::<Vec<_>>())
            .bind(orders.iter().map(|o| o.total_minor).collect::<Vec<_>>())
            .bind(orders.iter().map(|o| o.details.as_str()).collect::<Vec<_>>())
            .bind(now.0)
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            let rows: Vec<(i64, i64, i64, &str, i64, &str)> = orders
                .iter()
                .map(|o| {
                    (
                        o.account.0,
                        o.vendor.0,
                        o.subscription_id,
                        o.currency.as_str(),
                        o.total_minor,
                        o.details.as_str(),
                    )
                })
                .collect();
            sqlx::query_as(
                "INSERT INTO orders (account_id, vendor_id, subscription_id, order_type, status, reason, currency, total_minor, details, placed_by, created_at, updated_at)
                 SELECT v.value ->> 0, v.value ->> 1, v.value ->> 2, 'BO', 'completed', NULL, v.value ->> 3, v.value ->> 4, v.value ->> 5, NULL, $2, $2
                 FROM json_each($1) AS v
                 RETURNING id, subscription_id",
            )
            .bind(json(&rows)?)
            .bind(now.0)
            .fetch_all(&mut **t)
            .await?
        }
    };
    // RETURNING order is not promised, but ids follow the insertion order within the
    // statement: a subscription's k-th order in `orders` has its k-th smallest id.
    let mut ids: HashMap<i64, Vec<i64>> = HashMap::new();
    for (id, sub) in returned {
        ids.entry(sub).or_default().push(id);
    }
    for v in ids.values_mut() {
        v.sort_unstable_by(|a, b| b.cmp(a));
    }
    orders
        .iter()
        .map(|o| {
            ids.get_mut(&o.subscription_id)
                .and_then(Vec::pop)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "BO order of subscription {} not returned",
                        o.subscription_id
                    ))
                })
        })
        .collect()
}

/// Emit `invoice.issued` for these documents with one statement, the payload built from
/// the rows as they are now (after `collections::date_by_terms` set their due date):
/// `document_id`, `invoice_number`, `issuer_account_id`, `total_minor`, `currency`,
/// `due_date`. The event belongs to the invoiced account.
///
/// On PostgreSQL the ids are joined (`unnest`), not filtered with `= ANY`: the generic
/// plan a connection caches while `documents` is small scans the table and tests every
/// row against the whole list, and it kept doing so as the run filled the table (15% of
/// the server's CPU in a 200,000-subscription run, by `perf` and `auto_explain`). The
/// join is planned as one primary-key lookup per id whatever the table's size.
pub async fn emit_invoices_issued(
    tx: &mut Tx,
    documents: &[i64],
    now: Timestamp,
) -> StoreResult<u64> {
    if documents.is_empty() {
        return Ok(0);
    }
    let n = match tx {
        Tx::Postgres(t) => sqlx::query(
            "INSERT INTO events (kind, account_id, actor_user_id, subject_type, subject_id, payload, state, created_at)
             SELECT 'invoice.issued', d.account_id, NULL, 'document', d.id,
                json_build_object('document_id', d.id, 'invoice_number', d.number, 'issuer_account_id', d.issuer_account_id,
                    'total_minor', d.total_minor, 'currency', d.currency, 'due_date', d.due_date)::text, 'pending', $2
             FROM unnest($1::int8[]) AS v(id) JOIN documents d ON d.id = v.id ORDER BY d.id",
        )
        .bind(documents)
        .bind(now.0)
        .execute(&mut **t)
        .await?
        .rows_affected(),
        Tx::Sqlite(t) => sqlx::query(
            "INSERT INTO events (kind, account_id, actor_user_id, subject_type, subject_id, payload, state, created_at)
             SELECT 'invoice.issued', d.account_id, NULL, 'document', d.id,
                json_object('document_id', d.id, 'invoice_number', d.number, 'issuer_account_id', d.issuer_account_id,
                    'total_minor', d.total_minor, 'currency', d.currency, 'due_date', d.due_date), 'pending', $2
             FROM documents d WHERE d.id IN (SELECT value FROM json_each($1)) ORDER BY d.id",
        )
        .bind(json(&documents)?)
        .bind(now.0)
        .execute(&mut **t)
        .await?
        .rows_affected(),
    };
    Ok(n)
}

/// A subscription that ends without renewing, not yet told so for that end date.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Expiring {
    pub id: i64,
    pub account_id: i64,
    pub plan_id: i64,
    pub expires_on: String,
}

/// `auto_renew` as stored for [`cascade_domain::billing::lifecycle::AutoRenew::Off`].
const AUTO_RENEW_OFF: &str = r#"{"mode":"off"}"#;

/// Up to `limit` live subscriptions with id above `after` that will not renew and end in
/// `(today, until]`, without an `expiring` notice for that end date yet; by id.
pub async fn expiring_subscriptions(
    db: &Db,
    today: &str,
    until: &str,
    after: i64,
    limit: i64,
) -> StoreResult<Vec<Expiring>> {
    let sql = "SELECT s.id, s.account_id, s.plan_id, s.expires_on FROM subscriptions s
         WHERE s.id > $1 AND s.status IN ('active', 'graced') AND s.auto_renew = $2 AND s.expires_on > $3 AND s.expires_on <= $4
           AND NOT EXISTS (SELECT 1 FROM subscription_notices n WHERE n.subscription_id = s.id AND n.kind = 'expiring' AND n.on_date = s.expires_on)
         ORDER BY s.id LIMIT $5";
    Ok(
        crate::on_db!(db, p => sqlx::query_as(sql).bind(after).bind(AUTO_RENEW_OFF).bind(today).bind(until).bind(limit).fetch_all(p).await)?,
    )
}

/// Record `expiring` notices for these (subscription, end date) pairs, each at most once
/// ever: returns the pairs recorded now (the others were recorded before), for which the
/// caller emits the event in the same transaction.
pub async fn record_expiring_notices(
    tx: &mut Tx,
    subs: &[(i64, &str)],
    now: Timestamp,
) -> StoreResult<HashSet<i64>> {
    if subs.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(i64,)> = match tx {
        Tx::Postgres(t) => sqlx::query_as(
            "INSERT INTO subscription_notices (subscription_id, kind, on_date, created_at)
             SELECT v.id, 'expiring', v.on_date, $3 FROM unnest($1::int8[], $2::text[]) AS v(id, on_date)
             ON CONFLICT DO NOTHING RETURNING subscription_id",
        )
        .bind(subs.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(subs.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(now.0)
        .fetch_all(&mut **t)
        .await?,
        Tx::Sqlite(t) => sqlx::query_as(
            "INSERT INTO subscription_notices (subscription_id, kind, on_date, created_at)
             SELECT v.value ->> 0, 'expiring', v.value ->> 1, $2 FROM json_each($1) AS v WHERE true
             ON CONFLICT DO NOTHING RETURNING subscription_id",
        )
        .bind(json(&subs)?)
        .bind(now.0)
        .fetch_all(&mut **t)
        .await?,
    };
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// One event to insert with [`insert_events`].
#[derive(Debug, Clone)]
pub struct BatchEvent {
    pub kind: &'static str,
    pub account_id: i64,
    pub subject_type: &'static str,
    pub subject_id: i64,
    pub payload: String,
}

/// Insert pending events with one statement (`events::Events::emit`, set-wise).
pub async fn insert_events(tx: &mut Tx, events: &[BatchEvent], now: Timestamp) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Postgres(t) => {
            sqlx::query(
                "INSERT INTO events (kind, account_id, actor_user_id, subject_type, subject_id, payload, state, created_at)
                 SELECT v.kind, v.account, NULL, v.subject_type, v.subject, v.payload, 'pending', $6
                 FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[]) AS v(kind, account, subject_type, subject, payload)",
            )
            .bind(events.iter().map(|e| e.kind).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.account_id).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.subject_type).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.subject_id).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
            .bind(now.0)
            .execute(&mut **t)
            .await?;
        }
        Tx::Sqlite(t) => {
            let rows: Vec<(&str, i64, &str, i64, &str)> = events
                .iter()
                .map(|e| {
                    (
                        e.kind,
                        e.account_id,
                        e.subject_type,
                        e.subject_id,
                        e.payload.as_str(),
                    )
                })
                .collect();
            sqlx::query(
                "INSERT INTO events (kind, account_id, actor_user_id, subject_type, subject_id, payload, state, created_at)
                 SELECT v.value ->> 0, v.value ->> 1, NULL, v.value ->> 2, v.value ->> 3, v.value ->> 4, 'pending', $2
                 FROM json_each($1) AS v",
            )
            .bind(json(&rows)?)
            .bind(now.0)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_chunks_shrink_only_while_api_writes_are_recent() {
        // Quiet: the whole batch in one transaction.
        assert_eq!(write_chunk(500, 0, 20, false), 500);
        // API writes recent: short transactions, never more than what is left.
        assert_eq!(write_chunk(500, 0, 20, true), 20);
        assert_eq!(write_chunk(7, 0, 20, true), 7);
        // A configured chunk wins either way; `busy` 0 turns shrinking off.
        assert_eq!(write_chunk(500, 100, 20, true), 100);
        assert_eq!(write_chunk(500, 100, 20, false), 100);
        assert_eq!(write_chunk(500, 0, 0, true), 500);
        assert_eq!(write_chunk(0, 0, 20, true), 1);
    }

    #[test]
    fn an_api_write_counts_as_recent_until_the_window_after_it_ends() {
        let window = std::time::Duration::from_secs(3600);
        assert!(
            !interactive_within(window),
            "none yet (each test is its own process)"
        );
        let g = interactive();
        assert!(interactive_within(std::time::Duration::ZERO), "in flight");
        drop(g);
        assert!(interactive_within(window), "just ended");
    }

    #[test]
    fn copy_rows_escape_what_copy_reads_specially() {
        let l = NewLine {
            subscription_id: None,
            kind: "usage".into(),
            description: "a\tb\\c\nd".into(),
            quantity: 2,
            unit_price_micro: 5,
            amount_minor: 10,
            period_start: Some("2025-01-01".into()),
            period_end: None,
            charge_key: Some("k".into()),
        };
        let mut s = String::new();
        copy_row(&mut s, 7, &l);
        assert_eq!(
            s,
            "7\t\\N\tusage\ta\\tb\\\\c\\nd\t2\t5\t10\t2025-01-01\t\\N\tk\n"
        );
    }
}

#[cfg(test)]
mod pace_tests {
    use super::pace_for;
    use std::time::Duration;

    #[test]
    fn the_run_pauses_in_proportion_to_request_load_up_to_its_cap() {
        let step = Duration::from_millis(100);
        let ms = Duration::from_millis;
        assert_eq!(
            pace_for(step, 0.0, false, 4.0),
            Duration::ZERO,
            "nobody around"
        );
        assert_eq!(
            pace_for(step, 1.0, false, 4.0),
            Duration::ZERO,
            "one page at a time"
        );
        assert_eq!(pace_for(step, 5.0, false, 4.0), ms(200));
        assert_eq!(pace_for(step, 64.0, false, 4.0), ms(400), "capped");
        assert_eq!(
            pace_for(step, 64.0, false, 0.0),
            Duration::ZERO,
            "pacing off"
        );
        // Orders being placed: at least twice the step, more under heavier load.
        assert_eq!(pace_for(step, 1.0, true, 4.0), ms(200));
        assert_eq!(pace_for(step, 9.0, true, 4.0), ms(400));
        assert_eq!(pace_for(step, 1.0, true, 0.0), Duration::ZERO, "pacing off");
    }
}

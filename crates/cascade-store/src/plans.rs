//! Plans, their delegated copies, synchronization settings and the sync audit trail.
//!
//! A plan's content is one JSON document (`plans.content`); the columns beside it
//! (`published`, `visible`, `withdrawn`, `listing_priority`, tree links, `version`) are
//! what lists filter and sort on. Every copy keeps `root_plan_id` (the original), so the
//! whole delegation tree of a plan loads in one indexed query — the set-wise basis of
//! synchronization. Writes check `version` (optimistic concurrency): a copy edited
//! between a sync's preview and its application is reported, never overwritten.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::catalog::plan::PlanContent;
use cascade_domain::catalog::sync::{CopyNode, CopyOutcome, Restrictions};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use std::collections::HashMap;

/// Generation of the catalog a store front shows (plans, sales categories), process-wide:
/// every store function writing plans or sales categories calls [`catalog_changed`], so
/// a cache of catalog reads (the panels') can discard entries read before the write.
/// Like `auth::auth_generation`, it does not see writes by other processes.
static CATALOG_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The current catalog generation (see [`CATALOG_GENERATION`]).
pub fn catalog_generation() -> u64 {
    CATALOG_GENERATION.load(std::sync::atomic::Ordering::Acquire)
}

/// Record that plans or sales categories changed (called by the writing functions).
pub fn catalog_changed() {
    CATALOG_GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub id: i64,
    pub owner_account_id: AccountId,
    pub template_id: i64,
    pub root_plan_id: Option<i64>,
    pub parent_plan_id: Option<i64>,
    pub currency: String,
    pub content: PlanContent,
    pub withdrawn: bool,
    pub upstream_changes: bool,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Plan {
    /// The original this plan descends from (itself for an original).
    pub fn root(&self) -> i64 {
        self.root_plan_id.unwrap_or(self.id)
    }
    pub fn is_copy(&self) -> bool {
        self.parent_plan_id.is_some()
    }
    /// Can a customer buy it in the owner's store?
    pub fn on_sale(&self) -> bool {
        self.content.published && self.content.visible && !self.withdrawn
    }
}

const COLUMNS: &str = "id, owner_account_id, template_id, root_plan_id, parent_plan_id, currency, content, withdrawn, upstream_changes, version, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    owner_account_id: i64,
    template_id: i64,
    root_plan_id: Option<i64>,
    parent_plan_id: Option<i64>,
    currency: String,
    content: String,
    withdrawn: bool,
    upstream_changes: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<Row> for Plan {
    type Error = StoreError;
    fn try_from(r: Row) -> StoreResult<Plan> {
        Ok(Plan {
            id: r.id,
            owner_account_id: AccountId(r.owner_account_id),
            template_id: r.template_id,
            root_plan_id: r.root_plan_id,
            parent_plan_id: r.parent_plan_id,
            currency: r.currency,
            content: serde_json::from_str(&r.content)
                .map_err(|e| StoreError::Corrupt(format!("plan {}: content: {e}", r.id)))?,
            withdrawn: r.withdrawn,
            upstream_changes: r.upstream_changes,
            version: r.version,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

fn to_plans(rows: Vec<Row>) -> StoreResult<Vec<Plan>> {
    rows.into_iter().map(Plan::try_from).collect()
}

fn content_json(c: &PlanContent) -> String {
    serde_json::to_string(c).unwrap_or_else(|e| panic!("plan content always serialises: {e}"))
}

/// A reseller's synchronization settings, as set by its vendor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSettings {
    pub restrictions: Restrictions,
    pub cascade_stop: bool,
}

/// One sync run as recorded.
#[derive(Debug, Clone)]
pub struct SyncRun {
    pub id: i64,
    pub plan_id: i64,
    pub account_id: AccountId,
    pub actor_user_id: Option<i64>,
    pub options: serde_json::Value,
    pub scope: serde_json::Value,
    pub copies_total: i64,
    pub copies_changed: i64,
    pub copies_failed: i64,
    /// Customer subscriptions the run moved to new terms (the subscriptions option).
    pub subscriptions_changed: i64,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct SyncRunItem {
    pub plan_id: i64,
    pub owner_account_id: AccountId,
    pub level: i64,
    pub status: String,
    pub changes: serde_json::Value,
    pub blocked: serde_json::Value,
    pub withdrawn: bool,
    pub upstream_pending: bool,
    pub error: Option<String>,
}

pub struct Plans<'a>(pub &'a Db);

impl Db {
    pub fn plans(&self) -> Plans<'_> {
        Plans(self)
    }
}

impl Plans<'_> {
    pub async fn create(
        tx: &mut Tx,
        owner: AccountId,
        template_id: i64,
        currency: &str,
        content: &PlanContent,
        now: Timestamp,
    ) -> StoreResult<Plan> {
        catalog_changed();
        let sql = format!(
            "INSERT INTO plans (owner_account_id, template_id, root_plan_id, parent_plan_id, currency, content, published, visible, withdrawn,
                upstream_changes, listing_priority, version, created_at, updated_at)
             VALUES ($1, $2, NULL, NULL, $3, $4, $5, $6, FALSE, FALSE, $7, 1, $8, $8) RETURNING {COLUMNS}"
        );
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(owner.0).bind(template_id).bind(currency).bind(content_json(content)).bind(content.published).bind(content.visible)
            .bind(content.listing_priority).bind(now.0).fetch_one(c).await)?;
        r.try_into()
    }

    /// Give `reseller` its own copy of `parent`, linked to it. A second copy of the same
    /// plan for the same reseller is a conflict.
    pub async fn delegate(
        tx: &mut Tx,
        parent: &Plan,
        reseller: AccountId,
        now: Timestamp,
    ) -> StoreResult<Plan> {
        catalog_changed();
        let sql = format!(
            "INSERT INTO plans (owner_account_id, template_id, root_plan_id, parent_plan_id, currency, content, published, visible, withdrawn,
                upstream_changes, listing_priority, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, FALSE, $10, 1, $11, $11) RETURNING {COLUMNS}"
        );
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(reseller.0).bind(parent.template_id).bind(parent.root()).bind(parent.id).bind(&parent.currency)
            .bind(content_json(&parent.content)).bind(parent.content.published).bind(parent.content.visible).bind(parent.withdrawn)
            .bind(parent.content.listing_priority).bind(now.0).fetch_one(c).await)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => StoreError::Conflict { what: "this plan is already delegated to this reseller".into() },
            o => o,
        })?;
        r.try_into()
    }

    /// A subscription's plan as the subscription holds it on `day` (ISO date): the plan
    /// row with the subscription's own terms as content (its snapshot; the live content
    /// for a row without one). Every reader of a subscription's prices or limits goes
    /// through here, so a plan edit changes nothing already sold until a sync says so.
    pub async fn for_subscription(
        &self,
        sub: &crate::subscriptions::Subscription,
        day: &str,
    ) -> StoreResult<Plan> {
        let mut plan = self.get(sub.plan_id).await?;
        if let Some(t) = &sub.terms {
            plan.content = t.for_period(day).clone();
        }
        Ok(plan)
    }

    pub async fn get(&self, id: i64) -> StoreResult<Plan> {
        let sql = format!("SELECT {COLUMNS} FROM plans WHERE id = $1");
        let r: Row = on_db!(self.0, p => sqlx::query_as(&sql).bind(id).fetch_one(p).await)?;
        r.try_into()
    }

    /// Write new content, if the plan is still at `expected_version`.
    pub async fn update(
        tx: &mut Tx,
        id: i64,
        expected_version: i64,
        content: &PlanContent,
        withdrawn: bool,
        upstream_changes: bool,
        now: Timestamp,
    ) -> StoreResult<Plan> {
        catalog_changed();
        let sql = format!(
            "UPDATE plans SET content = $3, published = $4, visible = $5, withdrawn = $6, upstream_changes = $7, listing_priority = $8,
                version = version + 1, updated_at = $9
             WHERE id = $1 AND version = $2 RETURNING {COLUMNS}"
        );
        let r: Option<Row> = on_tx!(tx, c => sqlx::query_as(&sql)
            .bind(id).bind(expected_version).bind(content_json(content)).bind(content.published).bind(content.visible)
            .bind(withdrawn).bind(upstream_changes).bind(content.listing_priority).bind(now.0).fetch_optional(c).await)?;
        match r {
            Some(r) => r.try_into(),
            None => Err(StoreError::Conflict {
                what: "the plan was changed meanwhile; reload it and try again".into(),
            }),
        }
    }

    pub async fn delete(tx: &mut Tx, id: i64) -> StoreResult<()> {
        catalog_changed();
        on_tx!(tx, c => sqlx::query("DELETE FROM plans WHERE id = $1").bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The seller's catalog view: its own originals and the copies delegated to it.
    pub async fn of_owner(
        &self,
        owner: AccountId,
        only_on_sale: bool,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<Plan>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM plans WHERE owner_account_id = $1 AND id > $2
               AND (NOT $3 OR (published AND visible AND NOT withdrawn))
             ORDER BY id LIMIT $4"
        );
        let rows: Vec<Row> = on_db!(self.0, p => sqlx::query_as(&sql).bind(owner.0).bind(after.unwrap_or(0)).bind(only_on_sale).bind(limit + 1).fetch_all(p).await)?;
        Ok(Page::from_rows(to_plans(rows)?, limit, |p| p.id))
    }

    /// Direct copies of a plan.
    pub async fn copies_of(&self, id: i64) -> StoreResult<Vec<Plan>> {
        let sql = format!("SELECT {COLUMNS} FROM plans WHERE parent_plan_id = $1 ORDER BY id");
        to_plans(on_db!(self.0, p => sqlx::query_as(&sql).bind(id).fetch_all(p).await)?)
    }

    /// Every copy below `plan` (any depth) in one query, with its owner's sync settings.
    pub async fn subtree(&self, plan: &Plan) -> StoreResult<Vec<CopyNode>> {
        let sql = format!("SELECT {COLUMNS} FROM plans WHERE root_plan_id = $1 ORDER BY id");
        let rows: Vec<Row> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(plan.root()).fetch_all(p).await)?;
        let settings = self.settings_for_root(plan.root()).await?;
        // Keep only the copies below `plan`.
        let mut below: std::collections::HashSet<i64> = std::collections::HashSet::from([plan.id]);
        let mut nodes = Vec::new();
        let mut pending: Vec<Row> = rows;
        // Rows are ordered by id and a copy is always created after its parent, so one
        // pass in id order sees every parent before its children.
        pending.sort_by_key(|r| r.id);
        for r in pending {
            let Some(parent) = r.parent_plan_id else {
                continue;
            };
            if !below.contains(&parent) {
                continue;
            }
            below.insert(r.id);
            let owner = r.owner_account_id;
            let s = settings.get(&owner).copied().unwrap_or_default();
            let p: Plan = r.try_into()?;
            nodes.push(CopyNode {
                plan_id: p.id,
                parent_plan_id: parent,
                owner_id: owner,
                version: p.version,
                content: p.content,
                restrictions: s.restrictions,
                cascade_stop: s.cascade_stop,
            });
        }
        Ok(nodes)
    }

    async fn settings_for_root(&self, root: i64) -> StoreResult<HashMap<i64, SyncSettings>> {
        type S = SettingsRow;
        let rows: Vec<S> = on_db!(self.0, p => sqlx::query_as(
            "SELECT account_id, lock_prices, lock_terms, lock_plan_categories, lock_resource_categories, lock_sales_categories, lock_publication, cascade_stop
             FROM sync_settings WHERE account_id IN (SELECT owner_account_id FROM plans WHERE root_plan_id = $1)")
            .bind(root).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| (r.0, settings_from(r))).collect())
    }

    pub async fn sync_settings(&self, account: AccountId) -> StoreResult<SyncSettings> {
        type S = SettingsRow;
        let r: Option<S> = on_db!(self.0, p => sqlx::query_as(
            "SELECT account_id, lock_prices, lock_terms, lock_plan_categories, lock_resource_categories, lock_sales_categories, lock_publication, cascade_stop
             FROM sync_settings WHERE account_id = $1").bind(account.0).fetch_optional(p).await)?;
        Ok(r.map(settings_from).unwrap_or_default())
    }

    pub async fn set_sync_settings(
        tx: &mut Tx,
        account: AccountId,
        s: &SyncSettings,
        now: Timestamp,
    ) -> StoreResult<()> {
        let r = &s.restrictions;
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO sync_settings (account_id, lock_prices, lock_terms, lock_plan_categories, lock_resource_categories, lock_sales_categories,
                lock_publication, cascade_stop, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (account_id) DO UPDATE SET lock_prices = $2, lock_terms = $3, lock_plan_categories = $4, lock_resource_categories = $5,
                lock_sales_categories = $6, lock_publication = $7, cascade_stop = $8, updated_at = $9")
            .bind(account.0).bind(r.prices).bind(r.terms).bind(r.plan_categories).bind(r.resource_categories).bind(r.sales_categories)
            .bind(r.publication).bind(s.cascade_stop).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Apply sync outcomes: each changed copy is one versioned update (a copy edited
    /// since the outcome was computed fails alone, and nothing below it is applied), in
    /// transactions of `batch` copies; then the run and its per-copy results are
    /// recorded. Returns the run id. `progress` gets the number of copies handled.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_sync(
        &self,
        plan_id: i64,
        account: AccountId,
        actor: Option<i64>,
        options: &serde_json::Value,
        scope: &serde_json::Value,
        outcomes: &[CopyOutcome],
        now: Timestamp,
        batch: usize,
        progress: impl Fn(usize),
    ) -> StoreResult<SyncRun> {
        catalog_changed();
        let mut failed: HashMap<i64, String> = HashMap::new();
        let mut done = 0;
        for chunk in outcomes.chunks(batch.max(1)) {
            let mut tx = self.0.begin().await?;
            for o in chunk {
                if failed.contains_key(&o.parent_plan_id) {
                    failed.insert(o.plan_id, "not applied: its parent copy failed".into());
                    continue;
                }
                let withdrawn_flag = o.content.has_unconfirmed_prices();
                if o.changes.is_empty() && !o.upstream_pending {
                    continue;
                }
                let n = on_tx!(&mut tx, c => sqlx::query(
                    "UPDATE plans SET content = $3, published = $4, visible = $5, withdrawn = $6, upstream_changes = $7, listing_priority = $8,
                        version = version + 1, updated_at = $9 WHERE id = $1 AND version = $2")
                    .bind(o.plan_id).bind(o.version).bind(content_json(&o.content)).bind(o.content.published).bind(o.content.visible)
                    .bind(withdrawn_flag).bind(o.upstream_pending).bind(o.content.listing_priority).bind(now.0)
                    .execute(c).await.map(|r| r.rows_affected()))?;
                if n == 0 {
                    failed.insert(
                        o.plan_id,
                        "the copy was changed after the sync was computed; run the sync again"
                            .into(),
                    );
                }
            }
            tx.commit().await?;
            done += chunk.len();
            progress(done);
        }
        let changed = outcomes
            .iter()
            .filter(|o| !o.changes.is_empty() && !failed.contains_key(&o.plan_id))
            .count();
        let mut tx = self.0.begin().await?;
        let (run_id,): (i64,) = on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO sync_runs (plan_id, account_id, actor_user_id, options, scope, copies_total, copies_changed, copies_failed, created_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id")
            .bind(plan_id).bind(account.0).bind(actor).bind(options.to_string()).bind(scope.to_string())
            .bind(outcomes.len() as i32).bind(changed as i32).bind(failed.len() as i32).bind(now.0).fetch_one(c).await)?;
        for part in outcomes.chunks(500) {
            on_tx!(&mut tx, c => {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO sync_run_items (run_id, plan_id, owner_account_id, level, status, changes, blocked, withdrawn, upstream_pending, error) ");
                qb.push_values(part, |mut b, o| {
                    let err = failed.get(&o.plan_id).cloned();
                    let status = if err.is_some() { "failed" } else if o.changes.is_empty() { "unchanged" } else { "changed" };
                    b.push_bind(run_id).push_bind(o.plan_id).push_bind(o.owner_id).push_bind(o.level as i32).push_bind(status)
                        .push_bind(serde_json::to_string(&o.changes).unwrap_or_default())
                        .push_bind(serde_json::to_string(&o.blocked).unwrap_or_default())
                        .push_bind(o.withdrawn).push_bind(o.upstream_pending).push_bind(err);
                });
                qb.build().execute(&mut *c).await.map(|r| r.rows_affected())
            })?;
        }
        tx.commit().await?;
        self.run(run_id).await
    }

    /// Record in a run's audit how many subscriptions it updated, per copy and in total.
    pub async fn record_subscriptions(
        &self,
        run_id: i64,
        per_plan: &HashMap<i64, i64>,
    ) -> StoreResult<SyncRun> {
        let total: i64 = per_plan.values().sum();
        let mut tx = self.0.begin().await?;
        on_tx!(&mut tx, c => sqlx::query("UPDATE sync_runs SET subscriptions_changed = $2 WHERE id = $1")
            .bind(run_id).bind(total as i32).execute(c).await.map(|r| r.rows_affected()))?;
        for (plan, n) in per_plan {
            on_tx!(&mut tx, c => sqlx::query("UPDATE sync_run_items SET subscriptions_changed = $3 WHERE run_id = $1 AND plan_id = $2")
                .bind(run_id).bind(plan).bind(*n as i32).execute(c).await.map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        self.run(run_id).await
    }

    pub async fn run(&self, id: i64) -> StoreResult<SyncRun> {
        type R = RunRow;
        let r: R = on_db!(self.0, p => sqlx::query_as(
            "SELECT id, plan_id, account_id, actor_user_id, options, scope, copies_total, copies_changed, copies_failed, created_at, finished_at, subscriptions_changed
             FROM sync_runs WHERE id = $1").bind(id).fetch_one(p).await)?;
        Ok(run_from(r))
    }

    pub async fn runs_of(
        &self,
        plan_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<SyncRun>> {
        type R = RunRow;
        let rows: Vec<R> = on_db!(self.0, p => sqlx::query_as(
            "SELECT id, plan_id, account_id, actor_user_id, options, scope, copies_total, copies_changed, copies_failed, created_at, finished_at, subscriptions_changed
             FROM sync_runs WHERE plan_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            .bind(plan_id).bind(before.unwrap_or(i64::MAX)).bind(limit + 1).fetch_all(p).await)?;
        Ok(Page::from_rows(
            rows.into_iter().map(run_from).collect(),
            limit,
            |r| r.id,
        ))
    }

    pub async fn run_items(
        &self,
        run_id: i64,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<SyncRunItem>> {
        type R = (
            i64,
            i64,
            i32,
            String,
            String,
            String,
            bool,
            bool,
            Option<String>,
        );
        let rows: Vec<R> = on_db!(self.0, p => sqlx::query_as(
            "SELECT plan_id, owner_account_id, level, status, changes, blocked, withdrawn, upstream_pending, error
             FROM sync_run_items WHERE run_id = $1 AND plan_id > $2 ORDER BY plan_id LIMIT $3")
            .bind(run_id).bind(after.unwrap_or(0)).bind(limit + 1).fetch_all(p).await)?;
        let items = rows
            .into_iter()
            .map(|r| SyncRunItem {
                plan_id: r.0,
                owner_account_id: AccountId(r.1),
                level: i64::from(r.2),
                status: r.3,
                changes: serde_json::from_str(&r.4).unwrap_or_default(),
                blocked: serde_json::from_str(&r.5).unwrap_or_default(),
                withdrawn: r.6,
                upstream_pending: r.7,
                error: r.8,
            })
            .collect();
        Ok(Page::from_rows(items, limit, |i: &SyncRunItem| i.plan_id))
    }

    /// Bulk delegation for benchmarks and imports: copies of `parent_of[i]` for
    /// `owner[i]`, in multi-row inserts. Parents must already exist.
    pub async fn bulk_delegate(
        &self,
        copies: &[(i64, AccountId)],
        now: Timestamp,
    ) -> StoreResult<Vec<i64>> {
        catalog_changed();
        let mut ids = Vec::with_capacity(copies.len());
        let mut cache: HashMap<i64, Plan> = HashMap::new();
        for chunk in copies.chunks(200) {
            for (parent, _) in chunk {
                if !cache.contains_key(parent) {
                    cache.insert(*parent, self.get(*parent).await?);
                }
            }
            let mut tx = self.0.begin().await?;
            let rows: Vec<(i64,)> = on_tx!(&mut tx, c => {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO plans (owner_account_id, template_id, root_plan_id, parent_plan_id, currency, content, published, visible, withdrawn,
                        upstream_changes, listing_priority, version, created_at, updated_at) ");
                qb.push_values(chunk, |mut b, (parent, owner)| {
                    let p = &cache[parent];
                    b.push_bind(owner.0).push_bind(p.template_id).push_bind(p.root()).push_bind(p.id).push_bind(p.currency.clone())
                        .push_bind(content_json(&p.content)).push_bind(p.content.published).push_bind(p.content.visible).push_bind(false)
                        .push_bind(false).push_bind(p.content.listing_priority).push_bind(1i64).push_bind(now.0).push_bind(now.0);
                });
                qb.push(" RETURNING id");
                qb.build_query_as().fetch_all(&mut *c).await
            })?;
            tx.commit().await?;
            ids.extend(rows.into_iter().map(|r| r.0));
        }
        Ok(ids)
    }
}

type SettingsRow = (i64, bool, bool, bool, bool, bool, bool, bool);

fn settings_from(r: SettingsRow) -> SyncSettings {
    SyncSettings {
        restrictions: Restrictions {
            prices: r.1,
            terms: r.2,
            plan_categories: r.3,
            resource_categories: r.4,
            sales_categories: r.5,
            publication: r.6,
        },
        cascade_stop: r.7,
    }
}

type RunRow = (
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    String,
    i32,
    i32,
    i32,
    i64,
    Option<i64>,
    i32,
);

fn run_from(r: RunRow) -> SyncRun {
    SyncRun {
        id: r.0,
        plan_id: r.1,
        account_id: AccountId(r.2),
        actor_user_id: r.3,
        options: serde_json::from_str(&r.4).unwrap_or_default(),
        scope: serde_json::from_str(&r.5).unwrap_or_default(),
        copies_total: i64::from(r.6),
        copies_changed: i64::from(r.7),
        copies_failed: i64::from(r.8),
        created_at: Timestamp(r.9),
        finished_at: r.10.map(Timestamp),
        subscriptions_changed: i64::from(r.11),
    }
}

/// Lookups the plan rules need from the rest of the catalog.
impl Plans<'_> {
    /// Owner of a service template, if it exists.
    pub async fn template_owner(&self, template_id: i64) -> StoreResult<Option<AccountId>> {
        let r: Option<(i64,)> = on_db!(self.0, p => sqlx::query_as("SELECT owner_account_id FROM service_templates WHERE id = $1")
            .bind(template_id).fetch_optional(p).await)?;
        Ok(r.map(|r| AccountId(r.0)))
    }

    /// Owner of a resource type, if it exists.
    pub async fn resource_type_owner(&self, id: i64) -> StoreResult<Option<AccountId>> {
        let r: Option<(i64,)> = on_db!(self.0, p => sqlx::query_as("SELECT owner_account_id FROM resource_types WHERE id = $1")
            .bind(id).fetch_optional(p).await)?;
        Ok(r.map(|r| AccountId(r.0)))
    }

    /// The owner's sales categories by code: (code, has sub-categories).
    pub async fn sales_category_codes(
        &self,
        owner: AccountId,
    ) -> StoreResult<HashMap<String, bool>> {
        let rows: Vec<(String, bool)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT c.code, EXISTS (SELECT 1 FROM sales_categories k WHERE k.parent_id = c.id) FROM sales_categories c WHERE c.owner_account_id = $1")
            .bind(owner.0).fetch_all(p).await)?;
        Ok(rows.into_iter().collect())
    }

    /// Period and rate uids used by any copy below the original `root`.
    pub async fn uids_in_copies(
        &self,
        root: i64,
    ) -> StoreResult<(
        std::collections::HashSet<String>,
        std::collections::HashSet<String>,
    )> {
        let rows: Vec<(String,)> = on_db!(self.0, p => sqlx::query_as("SELECT content FROM plans WHERE root_plan_id = $1").bind(root).fetch_all(p).await)?;
        let mut periods = std::collections::HashSet::new();
        let mut rates = std::collections::HashSet::new();
        for (c,) in rows {
            let c: PlanContent = serde_json::from_str(&c)
                .map_err(|e| StoreError::Corrupt(format!("plan content: {e}")))?;
            periods.extend(c.periods.into_iter().map(|p| p.uid));
            rates.extend(c.rates.into_iter().map(|r| r.uid));
        }
        Ok((periods, rates))
    }
}

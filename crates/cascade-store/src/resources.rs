//! Resource categories, resource types, service templates and their per-reseller
//! provisioning overrides.
//!
//! Multilingual texts, template resources and settings are JSON documents in TEXT
//! columns (identical on both backends); what lists filter on is a real column.
//!
//! Writes are associated functions taking the caller's transaction, so the handler can
//! emit its event in the same transaction; lookups that validation depends on
//! (`visible_in`, `of_owner_in`, `usage_in`) also run in that transaction. Deletes refuse
//! with [`StoreError::Conflict`] (naming what still uses the object) rather than leave a
//! dangling reference: plans reference resource types and categories inside their JSON
//! content, which no foreign key can protect.

use crate::{Db, Page, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::catalog::resources::{
    Code, ResourceCategory, ResourceCategoryData, ResourceCategoryId, ResourceKind, ResourceType,
    ResourceTypeData, ResourceTypeId, ServiceTemplate, ServiceTemplateData, ServiceTemplateId,
    SettingValue, Settings, TemplateOverride, TemplateResource, effective_settings_sourced,
};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use std::collections::{BTreeMap, BTreeSet};

fn corrupt(what: &str, id: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what} {id}: {e}"))
}

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("serialise: {e}")))
}

fn code_conflict<'a>(
    kind: &'static str,
    code: &'a Code,
) -> impl Fn(sqlx::Error) -> StoreError + 'a {
    move |e| match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::Conflict {
            what: format!("a {kind} with code `{code}` already exists for this owner"),
        },
        o => o,
    }
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// LIKE patterns that find `"key":id` in compact JSON (followed by `,` or `}`).
fn json_id_patterns(key: &str, id: i64) -> (String, String) {
    (format!("%\"{key}\":{id},%"), format!("%\"{key}\":{id}}}%"))
}

// ---------------------------------------------------------------------------------------
// Resource categories
// ---------------------------------------------------------------------------------------

const CATEGORY_COLUMNS: &str =
    "id, owner_account_id, code, name, parent_resource_type_id, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct CategoryRow {
    id: i64,
    owner_account_id: i64,
    code: String,
    name: String,
    parent_resource_type_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<CategoryRow> for ResourceCategory {
    type Error = StoreError;
    fn try_from(r: CategoryRow) -> StoreResult<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            corrupt("resource category", r.id, format!("{what}: {e}"))
        };
        Ok(ResourceCategory {
            id: ResourceCategoryId(r.id),
            owner_account_id: AccountId(r.owner_account_id),
            code: Code::parse(&r.code).map_err(|e| bad("code", &e))?,
            name: serde_json::from_str::<Localized>(&r.name).map_err(|e| bad("name", &e))?,
            parent_resource_type_id: r.parent_resource_type_id.map(ResourceTypeId),
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

pub struct ResourceCategories<'a>(pub &'a Db);

impl Db {
    pub fn resource_categories(&self) -> ResourceCategories<'_> {
        ResourceCategories(self)
    }
}

impl ResourceCategories<'_> {
    /// A duplicate code of the same owner is a [`StoreError::Conflict`].
    pub async fn create(
        tx: &mut Tx,
        owner: AccountId,
        d: &ResourceCategoryData,
        now: Timestamp,
    ) -> StoreResult<ResourceCategory> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO resource_categories (owner_account_id, code, name, parent_resource_type_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id")
            .bind(owner.0).bind(d.code.as_str()).bind(json(&d.name)?).bind(d.parent_resource_type_id.map(|t| t.0)).bind(now.0)
            .fetch_one(c).await)
        .map_err(code_conflict("resource category", &d.code))?;
        Self::get_in(tx, ResourceCategoryId(id)).await
    }

    pub async fn update(
        tx: &mut Tx,
        id: ResourceCategoryId,
        d: &ResourceCategoryData,
        now: Timestamp,
    ) -> StoreResult<ResourceCategory> {
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE resource_categories SET code = $2, name = $3, parent_resource_type_id = $4, updated_at = $5 WHERE id = $1")
            .bind(id.0).bind(d.code.as_str()).bind(json(&d.name)?).bind(d.parent_resource_type_id.map(|t| t.0)).bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(code_conflict("resource category", &d.code))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Self::get_in(tx, id).await
    }

    pub async fn get(&self, id: ResourceCategoryId) -> StoreResult<ResourceCategory> {
        let sql = format!("SELECT {CATEGORY_COLUMNS} FROM resource_categories WHERE id = $1");
        let r: CategoryRow =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        r.try_into()
    }

    pub async fn get_in(tx: &mut Tx, id: ResourceCategoryId) -> StoreResult<ResourceCategory> {
        let sql = format!("SELECT {CATEGORY_COLUMNS} FROM resource_categories WHERE id = $1");
        let r: CategoryRow = on_tx!(tx, c => sqlx::query_as(&sql).bind(id.0).fetch_one(c).await)?;
        r.try_into()
    }

    /// The categories owned by `owner`, by id.
    pub async fn list(
        &self,
        owner: AccountId,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<ResourceCategory>> {
        let sql = format!(
            "SELECT {CATEGORY_COLUMNS} FROM resource_categories WHERE owner_account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<CategoryRow> = on_db!(self.0, p => sqlx::query_as(&sql).bind(owner.0).bind(after.unwrap_or(0)).bind(limit + 1).fetch_all(p).await)?;
        let items = rows
            .into_iter()
            .map(ResourceCategory::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |c| c.id.0))
    }

    /// Which of `ids` are categories of `owner`.
    pub async fn of_owner_in(
        tx: &mut Tx,
        owner: AccountId,
        ids: &[ResourceCategoryId],
    ) -> StoreResult<BTreeSet<ResourceCategoryId>> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let sql = format!(
            "SELECT id FROM resource_categories WHERE owner_account_id = $1 AND id IN ({})",
            placeholders(2, ids.len())
        );
        let rows: Vec<(i64,)> = on_tx!(tx, c => {
            let mut q = sqlx::query_as(&sql).bind(owner.0);
            for id in ids {
                q = q.bind(id.0);
            }
            q.fetch_all(c).await
        })?;
        Ok(rows.into_iter().map(|r| ResourceCategoryId(r.0)).collect())
    }

    /// What still uses the category, if anything: resource types in it, plan rates
    /// grouped under it.
    pub async fn usage_in(tx: &mut Tx, id: ResourceCategoryId) -> StoreResult<Option<String>> {
        let t: Option<(String,)> = on_tx!(tx, c => sqlx::query_as("SELECT code FROM resource_types WHERE category_id = $1 ORDER BY id LIMIT 1")
            .bind(id.0).fetch_optional(c).await)?;
        if let Some((code,)) = t {
            return Ok(Some(format!("resource type `{code}` is in this category")));
        }
        let (a, b) = json_id_patterns("resource_category_id", id.0);
        let p: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as("SELECT id FROM plans WHERE content LIKE $1 OR content LIKE $2 ORDER BY id LIMIT 1")
            .bind(a).bind(b).fetch_optional(c).await)?;
        Ok(p.map(|(pid,)| format!("plan {pid} groups resources under this category")))
    }

    /// Delete the category; a [`StoreError::Conflict`] while something uses it.
    pub async fn delete(tx: &mut Tx, id: ResourceCategoryId) -> StoreResult<()> {
        if let Some(why) = Self::usage_in(tx, id).await? {
            return Err(StoreError::Conflict { what: why });
        }
        let n = on_tx!(tx, c => sqlx::query("DELETE FROM resource_categories WHERE id = $1").bind(id.0).execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Resource types
// ---------------------------------------------------------------------------------------

const TYPE_COLUMNS: &str = "id, owner_account_id, code, service, unit, kind, name, description, category_id, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct TypeRow {
    id: i64,
    owner_account_id: i64,
    code: String,
    service: String,
    unit: String,
    kind: String,
    name: String,
    description: Option<String>,
    category_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<TypeRow> for ResourceType {
    type Error = StoreError;
    fn try_from(r: TypeRow) -> StoreResult<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            corrupt("resource type", r.id, format!("{what}: {e}"))
        };
        Ok(ResourceType {
            id: ResourceTypeId(r.id),
            owner_account_id: AccountId(r.owner_account_id),
            code: Code::parse(&r.code).map_err(|e| bad("code", &e))?,
            service: Code::parse(&r.service).map_err(|e| bad("service", &e))?,
            unit: r.unit,
            kind: ResourceKind::parse(&r.kind).map_err(|e| bad("kind", &e))?,
            name: serde_json::from_str(&r.name).map_err(|e| bad("name", &e))?,
            description: r
                .description
                .as_deref()
                .map(serde_json::from_str::<Localized>)
                .transpose()
                .map_err(|e| bad("description", &e))?,
            category_id: r.category_id.map(ResourceCategoryId),
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

pub struct ResourceTypes<'a>(pub &'a Db);

impl Db {
    pub fn resource_types(&self) -> ResourceTypes<'_> {
        ResourceTypes(self)
    }
}

impl ResourceTypes<'_> {
    pub async fn create(
        tx: &mut Tx,
        owner: AccountId,
        d: &ResourceTypeData,
        now: Timestamp,
    ) -> StoreResult<ResourceType> {
        let description = d.description.as_ref().map(json).transpose()?;
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO resource_types (owner_account_id, code, service, unit, name, description, category_id, created_at, updated_at, kind)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING id")
            .bind(owner.0).bind(d.code.as_str()).bind(d.service.as_str()).bind(&d.unit).bind(json(&d.name)?).bind(&description)
            .bind(d.category_id.map(|c| c.0)).bind(now.0).bind(d.kind.as_str())
            .fetch_one(c).await)
        .map_err(code_conflict("resource type", &d.code))?;
        Self::get_in(tx, ResourceTypeId(id)).await
    }

    pub async fn update(
        tx: &mut Tx,
        id: ResourceTypeId,
        d: &ResourceTypeData,
        now: Timestamp,
    ) -> StoreResult<ResourceType> {
        let description = d.description.as_ref().map(json).transpose()?;
        let n = on_tx!(tx, c => sqlx::query(
            "UPDATE resource_types SET code = $2, service = $3, unit = $4, name = $5, description = $6, category_id = $7, updated_at = $8, kind = $9
             WHERE id = $1")
            .bind(id.0).bind(d.code.as_str()).bind(d.service.as_str()).bind(&d.unit).bind(json(&d.name)?).bind(&description)
            .bind(d.category_id.map(|c| c.0)).bind(now.0).bind(d.kind.as_str())
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(code_conflict("resource type", &d.code))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Self::get_in(tx, id).await
    }

    pub async fn get(&self, id: ResourceTypeId) -> StoreResult<ResourceType> {
        let sql = format!("SELECT {TYPE_COLUMNS} FROM resource_types WHERE id = $1");
        let r: TypeRow = on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        r.try_into()
    }

    pub async fn get_in(tx: &mut Tx, id: ResourceTypeId) -> StoreResult<ResourceType> {
        let sql = format!("SELECT {TYPE_COLUMNS} FROM resource_types WHERE id = $1");
        let r: TypeRow = on_tx!(tx, c => sqlx::query_as(&sql).bind(id.0).fetch_one(c).await)?;
        r.try_into()
    }

    /// The resource types owned by `owner`, by id.
    pub async fn list(
        &self,
        owner: AccountId,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<ResourceType>> {
        let sql = format!(
            "SELECT {TYPE_COLUMNS} FROM resource_types WHERE owner_account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<TypeRow> = on_db!(self.0, p => sqlx::query_as(&sql).bind(owner.0).bind(after.unwrap_or(0)).bind(limit + 1).fetch_all(p).await)?;
        let items = rows
            .into_iter()
            .map(ResourceType::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |t| t.id.0))
    }

    /// Which of `ids` are visible to `owner`: owned by it or by one of its ancestors.
    pub async fn visible_in(
        tx: &mut Tx,
        owner: AccountId,
        ids: &[ResourceTypeId],
    ) -> StoreResult<BTreeSet<ResourceTypeId>> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let sql = format!(
            "SELECT t.id FROM resource_types t JOIN account_closure c ON c.ancestor_id = t.owner_account_id AND c.descendant_id = $1
             WHERE t.id IN ({})",
            placeholders(2, ids.len())
        );
        let rows: Vec<(i64,)> = on_tx!(tx, c => {
            let mut q = sqlx::query_as(&sql).bind(owner.0);
            for id in ids {
                q = q.bind(id.0);
            }
            q.fetch_all(c).await
        })?;
        Ok(rows.into_iter().map(|r| ResourceTypeId(r.0)).collect())
    }

    /// What still uses the resource type, if anything: a template's resources, a plan's
    /// rates, a resource category's up-sell rule.
    pub async fn usage_in(tx: &mut Tx, id: ResourceTypeId) -> StoreResult<Option<String>> {
        let (a, b) = json_id_patterns("resource_type_id", id.0);
        let t: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT id FROM service_templates WHERE resources LIKE $1 OR resources LIKE $2 ORDER BY id LIMIT 1")
            .bind(&a).bind(&b).fetch_optional(c).await)?;
        if let Some((tid,)) = t {
            return Ok(Some(format!(
                "service template {tid} provisions this resource type"
            )));
        }
        let p: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as("SELECT id FROM plans WHERE content LIKE $1 OR content LIKE $2 ORDER BY id LIMIT 1")
            .bind(&a).bind(&b).fetch_optional(c).await)?;
        if let Some((pid,)) = p {
            return Ok(Some(format!(
                "plan {pid} has a rate for this resource type"
            )));
        }
        let k: Option<(String,)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT code FROM resource_categories WHERE parent_resource_type_id = $1 ORDER BY id LIMIT 1")
            .bind(id.0).fetch_optional(c).await)?;
        Ok(k.map(|(code,)| {
            format!("resource category `{code}` is sold only together with this resource type")
        }))
    }

    /// Delete the resource type; a [`StoreError::Conflict`] while something uses it.
    pub async fn delete(tx: &mut Tx, id: ResourceTypeId) -> StoreResult<()> {
        if let Some(why) = Self::usage_in(tx, id).await? {
            return Err(StoreError::Conflict { what: why });
        }
        let n = on_tx!(tx, c => sqlx::query("DELETE FROM resource_types WHERE id = $1").bind(id.0).execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Service templates and overrides
// ---------------------------------------------------------------------------------------

const TEMPLATE_COLUMNS: &str =
    "id, owner_account_id, name, resources, settings, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct TemplateRow {
    id: i64,
    owner_account_id: i64,
    name: String,
    resources: String,
    settings: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<TemplateRow> for ServiceTemplate {
    type Error = StoreError;
    fn try_from(r: TemplateRow) -> StoreResult<Self> {
        Ok(ServiceTemplate {
            id: ServiceTemplateId(r.id),
            owner_account_id: AccountId(r.owner_account_id),
            name: r.name,
            resources: serde_json::from_str::<Vec<TemplateResource>>(&r.resources)
                .map_err(|e| corrupt("service template", r.id, e))?,
            settings: serde_json::from_str::<Settings>(&r.settings)
                .map_err(|e| corrupt("service template", r.id, e))?,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

fn override_from(
    template: i64,
    account: i64,
    settings: &str,
    updated_at: i64,
) -> StoreResult<TemplateOverride> {
    Ok(TemplateOverride {
        template_id: ServiceTemplateId(template),
        account_id: AccountId(account),
        settings: serde_json::from_str(settings)
            .map_err(|e| corrupt("template override of account", account, e))?,
        updated_at: Timestamp(updated_at),
    })
}

pub struct ServiceTemplates<'a>(pub &'a Db);

impl Db {
    pub fn service_templates(&self) -> ServiceTemplates<'_> {
        ServiceTemplates(self)
    }
}

impl ServiceTemplates<'_> {
    pub async fn create(
        tx: &mut Tx,
        owner: AccountId,
        d: &ServiceTemplateData,
        now: Timestamp,
    ) -> StoreResult<ServiceTemplate> {
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO service_templates (owner_account_id, name, resources, settings, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id")
            .bind(owner.0).bind(&d.name).bind(json(&d.resources)?).bind(json(&d.settings)?).bind(now.0)
            .fetch_one(c).await)?;
        Self::get_in(tx, ServiceTemplateId(id)).await
    }

    pub async fn update(
        tx: &mut Tx,
        id: ServiceTemplateId,
        d: &ServiceTemplateData,
        now: Timestamp,
    ) -> StoreResult<ServiceTemplate> {
        let n = on_tx!(tx, c => sqlx::query("UPDATE service_templates SET name = $2, resources = $3, settings = $4, updated_at = $5 WHERE id = $1")
            .bind(id.0).bind(&d.name).bind(json(&d.resources)?).bind(json(&d.settings)?).bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Self::get_in(tx, id).await
    }

    pub async fn get(&self, id: ServiceTemplateId) -> StoreResult<ServiceTemplate> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM service_templates WHERE id = $1");
        let r: TemplateRow =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        r.try_into()
    }

    pub async fn get_in(tx: &mut Tx, id: ServiceTemplateId) -> StoreResult<ServiceTemplate> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM service_templates WHERE id = $1");
        let r: TemplateRow = on_tx!(tx, c => sqlx::query_as(&sql).bind(id.0).fetch_one(c).await)?;
        r.try_into()
    }

    pub async fn list(
        &self,
        owner: AccountId,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Page<ServiceTemplate>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} FROM service_templates WHERE owner_account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<TemplateRow> = on_db!(self.0, p => sqlx::query_as(&sql).bind(owner.0).bind(after.unwrap_or(0)).bind(limit + 1).fetch_all(p).await)?;
        let items = rows
            .into_iter()
            .map(ServiceTemplate::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |t| t.id.0))
    }

    /// Delete a template and its overrides; a [`StoreError::Conflict`] while a plan is
    /// built on it.
    pub async fn delete(tx: &mut Tx, id: ServiceTemplateId) -> StoreResult<()> {
        let p: Option<(i64,)> = on_tx!(tx, c => sqlx::query_as("SELECT id FROM plans WHERE template_id = $1 ORDER BY id LIMIT 1")
            .bind(id.0).fetch_optional(c).await)?;
        if let Some((pid,)) = p {
            return Err(StoreError::Conflict {
                what: format!("plan {pid} is built on this template"),
            });
        }
        on_tx!(tx, c => sqlx::query("DELETE FROM template_overrides WHERE template_id = $1").bind(id.0).execute(c).await.map(|r| r.rows_affected()))?;
        let n = on_tx!(tx, c => sqlx::query("DELETE FROM service_templates WHERE id = $1").bind(id.0).execute(c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    /// Set (insert or replace) `account`'s override of the template.
    pub async fn set_override(
        tx: &mut Tx,
        template: ServiceTemplateId,
        account: AccountId,
        settings: &Settings,
        now: Timestamp,
    ) -> StoreResult<TemplateOverride> {
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO template_overrides (template_id, account_id, settings, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (template_id, account_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at")
            .bind(template.0).bind(account.0).bind(json(settings)?).bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(TemplateOverride {
            template_id: template,
            account_id: account,
            settings: settings.clone(),
            updated_at: now,
        })
    }

    /// Remove `account`'s override; false when it had none.
    pub async fn delete_override(
        tx: &mut Tx,
        template: ServiceTemplateId,
        account: AccountId,
    ) -> StoreResult<bool> {
        let n = on_tx!(tx, c => sqlx::query("DELETE FROM template_overrides WHERE template_id = $1 AND account_id = $2")
            .bind(template.0).bind(account.0).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// The template's overrides set by `root` or accounts at most `max_depth` levels
    /// below it (0: only `root`'s own), by account id.
    pub async fn overrides_within(
        &self,
        template: ServiceTemplateId,
        root: AccountId,
        max_depth: i64,
    ) -> StoreResult<Vec<TemplateOverride>> {
        let rows: Vec<(i64, String, i64)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT o.account_id, o.settings, o.updated_at FROM template_overrides o
             JOIN account_closure c ON c.descendant_id = o.account_id AND c.ancestor_id = $2
             WHERE o.template_id = $1 AND c.depth <= $3 ORDER BY o.account_id")
            .bind(template.0).bind(root.0).bind(max_depth).fetch_all(p).await)?;
        rows.into_iter()
            .map(|(a, s, u)| override_from(template.0, a, &s, u))
            .collect()
    }

    /// The settings a connector receives for `account`'s subscriptions on the template
    /// (see [`effective_settings_for`]).
    pub async fn effective_settings_for(
        &self,
        template: ServiceTemplateId,
        account: AccountId,
    ) -> StoreResult<Settings> {
        effective_settings_for(self.0, template, account).await
    }

    /// [`Self::effective_settings_for`] with where each value comes from (`None`: the
    /// template; else the reseller whose override won).
    pub async fn effective_settings_sourced_for(
        &self,
        template: ServiceTemplateId,
        account: AccountId,
    ) -> StoreResult<BTreeMap<String, (SettingValue, Option<AccountId>)>> {
        effective_settings_sourced_for(self.0, template, account).await
    }
}

/// The settings a connector receives for `account` on `template`: the template's
/// settings with the overrides of the resellers on `account`'s vendor chain applied from
/// the top down (nearest wins, [`effective_settings`]).
///
/// For a customer the chain is its vendors; for a seller it also includes the seller
/// itself, so the answer is what that seller's customers receive. The chain and its
/// overrides come from one query over the closure table (the same index range that
/// [`crate::accounts::Accounts::vendor_chain`] scans). [`StoreError::NotFound`] when the
/// template does not exist or is not available to the account (its owner is neither the
/// account nor one of its vendors).
pub async fn effective_settings_for(
    db: &Db,
    template: ServiceTemplateId,
    account: AccountId,
) -> StoreResult<Settings> {
    Ok(effective_settings_sourced_for(db, template, account)
        .await?
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect())
}

/// [`effective_settings_for`], each value with the reseller whose override gave it
/// (`None`: the template's own value), by [`effective_settings_sourced`].
pub async fn effective_settings_sourced_for(
    db: &Db,
    template: ServiceTemplateId,
    account: AccountId,
) -> StoreResult<BTreeMap<String, (SettingValue, Option<AccountId>)>> {
    let row: Option<(String, Option<i32>)> = on_db!(db, p => sqlx::query_as(
        "SELECT t.settings, c.depth FROM service_templates t
         LEFT JOIN account_closure c ON c.ancestor_id = t.owner_account_id AND c.descendant_id = $2
         WHERE t.id = $1")
        .bind(template.0).bind(account.0).fetch_optional(p).await)?;
    let Some((settings, Some(_))) = row else {
        return Err(StoreError::NotFound);
    };
    let settings: Settings =
        serde_json::from_str(&settings).map_err(|e| corrupt("service template", template.0, e))?;
    let rows: Vec<(i64, String)> = on_db!(db, p => sqlx::query_as(
        "SELECT o.account_id, o.settings FROM accounts n
         JOIN account_closure c ON c.descendant_id = n.id
         JOIN template_overrides o ON o.account_id = c.ancestor_id AND o.template_id = $2
         WHERE n.id = $1 AND (c.depth > 0 OR n.kind <> 'customer')
         ORDER BY c.depth DESC")
        .bind(account.0).bind(template.0).fetch_all(p).await)?;
    let overrides = rows
        .into_iter()
        .map(|(a, s)| {
            Ok((
                AccountId(a),
                serde_json::from_str::<Settings>(&s)
                    .map_err(|e| corrupt("template override of account", a, e))?,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(effective_settings_sourced(&settings, &overrides))
}

//! Sales categories: each seller's store tree.
//!
//! `sort` is the dense position among siblings (0, 1, 2…). Every insert, move and
//! delete renumbers the sibling groups it touches inside the caller's transaction
//! ([`cascade_domain::catalog::sales::place`]), so the stored order is always explicit
//! and stable. The tree rules (no cycles, plans or children but not both) are pure
//! functions of the domain; the checks that need stored facts ([`SalesCategories::parents_in`],
//! [`SalesCategories::holds_plans_in`]) are meant to run in the same transaction as the
//! write they guard.

use crate::accounts::escape_like;
use crate::{Db, StoreError, StoreResult, Tx, on_db, on_tx};
use cascade_domain::catalog::resources::Code;
use cascade_domain::catalog::sales::{
    Move, NewSalesCategory, SalesCategory, SalesCategoryId, SalesTreeNode, build_tree, place,
    renumber,
};
use cascade_domain::catalog::text::Localized;
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use std::collections::BTreeMap;

const COLUMNS: &str = "id, owner_account_id, parent_id, code, name, sort, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    owner_account_id: i64,
    parent_id: Option<i64>,
    code: String,
    name: String,
    sort: i32,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<Row> for SalesCategory {
    type Error = StoreError;
    fn try_from(r: Row) -> StoreResult<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("sales category {}: {what}: {e}", r.id))
        };
        Ok(SalesCategory {
            id: SalesCategoryId(r.id),
            owner_account_id: AccountId(r.owner_account_id),
            parent_id: r.parent_id.map(SalesCategoryId),
            code: Code::parse(&r.code).map_err(|e| bad("code", &e))?,
            name: serde_json::from_str::<Localized>(&r.name).map_err(|e| bad("name", &e))?,
            sort: r.sort,
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        })
    }
}

fn code_conflict(code: &Code) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| match StoreError::from(e) {
        StoreError::Conflict { .. } => StoreError::Conflict {
            what: format!("a sales category with code `{code}` already exists in this store"),
        },
        o => o,
    }
}

fn name_json(name: &Localized) -> StoreResult<String> {
    serde_json::to_string(name).map_err(|e| StoreError::Corrupt(format!("serialise: {e}")))
}

/// Whether a plan's JSON content lists `code` among its sales categories.
fn content_lists(content: &str, code: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(content)
        .ok()
        .and_then(|v| {
            v.get("sales_categories")
                .and_then(|s| s.as_array())
                .map(|a| a.iter().any(|c| c.as_str() == Some(code)))
        })
        .unwrap_or(false)
}

pub struct SalesCategories<'a>(pub &'a Db);

impl Db {
    pub fn sales_categories(&self) -> SalesCategories<'_> {
        SalesCategories(self)
    }
}

impl SalesCategories<'_> {
    /// Insert a category at its position among its siblings (renumbering them). The
    /// caller has checked the parent ([`Self::parents_in`] with
    /// [`cascade_domain::catalog::sales::check_parent`]) and that it holds no plans
    /// ([`Self::holds_plans_in`]). A duplicate code is a [`StoreError::Conflict`].
    pub async fn create(
        tx: &mut Tx,
        owner: AccountId,
        n: &NewSalesCategory,
        now: Timestamp,
    ) -> StoreResult<SalesCategory> {
        crate::plans::catalog_changed();
        let siblings = Self::siblings_in(tx, owner, n.parent_id).await?;
        let (id,): (i64,) = on_tx!(tx, c => sqlx::query_as(
            "INSERT INTO sales_categories (owner_account_id, parent_id, code, name, sort, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id")
            .bind(owner.0).bind(n.parent_id.map(|p| p.0)).bind(n.code.as_str()).bind(name_json(&n.name)?).bind(siblings.len() as i32).bind(now.0)
            .fetch_one(c).await)
        .map_err(code_conflict(&n.code))?;
        let id = SalesCategoryId(id);
        Self::write_order(tx, &place(&siblings, id, n.position), now).await?;
        Self::get_in(tx, id).await
    }

    /// Change code and name. Renaming the code of a category that plans list would
    /// orphan them: a [`StoreError::Conflict`], like a duplicate code.
    pub async fn update(
        tx: &mut Tx,
        next: &SalesCategory,
        now: Timestamp,
    ) -> StoreResult<SalesCategory> {
        crate::plans::catalog_changed();
        let current = Self::get_in(tx, next.id).await?;
        if current.code != next.code
            && Self::holds_plans_in(tx, current.owner_account_id, &current.code).await?
        {
            return Err(StoreError::Conflict {
                what: format!(
                    "plans list the category by its code `{}`; the code cannot change",
                    current.code
                ),
            });
        }
        on_tx!(tx, c => sqlx::query("UPDATE sales_categories SET code = $2, name = $3, updated_at = $4 WHERE id = $1")
            .bind(next.id.0).bind(next.code.as_str()).bind(name_json(&next.name)?).bind(now.0)
            .execute(c).await.map(|r| r.rows_affected()))
        .map_err(code_conflict(&next.code))?;
        Self::get_in(tx, next.id).await
    }

    /// Move a category under `m.parent_id` at `m.position`, renumbering the old and the
    /// new sibling groups. The caller has checked the parent (no cycle, same owner, holds
    /// no plans).
    pub async fn move_to(
        tx: &mut Tx,
        id: SalesCategoryId,
        m: &Move,
        now: Timestamp,
    ) -> StoreResult<SalesCategory> {
        crate::plans::catalog_changed();
        let current = Self::get_in(tx, id).await?;
        let owner = current.owner_account_id;
        on_tx!(tx, c => sqlx::query("UPDATE sales_categories SET parent_id = $2, updated_at = $3 WHERE id = $1")
            .bind(id.0).bind(m.parent_id.map(|p| p.0)).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        if current.parent_id != m.parent_id {
            let old = Self::siblings_in(tx, owner, current.parent_id).await?;
            Self::write_order(tx, &renumber(&old), now).await?;
        }
        let new = Self::siblings_in(tx, owner, m.parent_id).await?;
        Self::write_order(tx, &place(&new, id, m.position), now).await?;
        Self::get_in(tx, id).await
    }

    /// Delete a category; a [`StoreError::Conflict`] while it has sub-categories or plans
    /// list it. Its former siblings are renumbered.
    pub async fn delete(tx: &mut Tx, id: SalesCategoryId, now: Timestamp) -> StoreResult<()> {
        crate::plans::catalog_changed();
        let current = Self::get_in(tx, id).await?;
        let child: Option<(String,)> = on_tx!(tx, c => sqlx::query_as("SELECT code FROM sales_categories WHERE parent_id = $1 ORDER BY id LIMIT 1")
            .bind(id.0).fetch_optional(c).await)?;
        if let Some((code,)) = child {
            return Err(StoreError::Conflict {
                what: format!("the category has sub-categories (e.g. `{code}`)"),
            });
        }
        if Self::holds_plans_in(tx, current.owner_account_id, &current.code).await? {
            return Err(StoreError::Conflict {
                what: "plans are listed in this category".into(),
            });
        }
        on_tx!(tx, c => sqlx::query("DELETE FROM sales_categories WHERE id = $1").bind(id.0).execute(c).await.map(|r| r.rows_affected()))?;
        let rest = Self::siblings_in(tx, current.owner_account_id, current.parent_id).await?;
        Self::write_order(tx, &renumber(&rest), now).await
    }

    pub async fn get(&self, id: SalesCategoryId) -> StoreResult<SalesCategory> {
        let sql = format!("SELECT {COLUMNS} FROM sales_categories WHERE id = $1");
        let r: Row = on_db!(self.0, p => sqlx::query_as(&sql).bind(id.0).fetch_one(p).await)?;
        r.try_into()
    }

    pub async fn get_in(tx: &mut Tx, id: SalesCategoryId) -> StoreResult<SalesCategory> {
        let sql = format!("SELECT {COLUMNS} FROM sales_categories WHERE id = $1");
        let r: Row = on_tx!(tx, c => sqlx::query_as(&sql).bind(id.0).fetch_one(c).await)?;
        r.try_into()
    }

    /// All categories of `owner`, siblings together, each group by `sort` then id.
    pub async fn list(&self, owner: AccountId) -> StoreResult<Vec<SalesCategory>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sales_categories WHERE owner_account_id = $1 ORDER BY parent_id, sort, id"
        );
        let rows: Vec<Row> =
            on_db!(self.0, p => sqlx::query_as(&sql).bind(owner.0).fetch_all(p).await)?;
        rows.into_iter().map(SalesCategory::try_from).collect()
    }

    /// The owner's store tree, ordered.
    pub async fn tree(&self, owner: AccountId) -> StoreResult<Vec<SalesTreeNode>> {
        Ok(build_tree(self.list(owner).await?))
    }

    /// The owner's tree as id → parent, for [`cascade_domain::catalog::sales::check_parent`].
    pub async fn parents_in(
        tx: &mut Tx,
        owner: AccountId,
    ) -> StoreResult<BTreeMap<SalesCategoryId, Option<SalesCategoryId>>> {
        let rows: Vec<(i64, Option<i64>)> = on_tx!(tx, c => sqlx::query_as("SELECT id, parent_id FROM sales_categories WHERE owner_account_id = $1")
            .bind(owner.0).fetch_all(c).await)?;
        Ok(rows
            .into_iter()
            .map(|(id, p)| (SalesCategoryId(id), p.map(SalesCategoryId)))
            .collect())
    }

    /// Whether a plan of `owner` lists `code` among its sales categories. Plan contents
    /// are JSON; a LIKE narrows the candidates and each is then parsed, so a code that
    /// merely appears elsewhere in a plan (a name, another list) does not count.
    pub async fn holds_plans_in(tx: &mut Tx, owner: AccountId, code: &Code) -> StoreResult<bool> {
        let pattern = format!("%\"{}\"%", escape_like(code.as_str()));
        let rows: Vec<(String,)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT content FROM plans WHERE owner_account_id = $1 AND content LIKE $2 ESCAPE '\\'")
            .bind(owner.0).bind(&pattern).fetch_all(c).await)?;
        Ok(rows
            .iter()
            .any(|(content,)| content_lists(content, code.as_str())))
    }

    /// [`Self::holds_plans_in`] outside a transaction (for the plans engine and reads).
    pub async fn holds_plans(&self, owner: AccountId, code: &Code) -> StoreResult<bool> {
        let pattern = format!("%\"{}\"%", escape_like(code.as_str()));
        let rows: Vec<(String,)> = on_db!(self.0, p => sqlx::query_as(
            "SELECT content FROM plans WHERE owner_account_id = $1 AND content LIKE $2 ESCAPE '\\'")
            .bind(owner.0).bind(&pattern).fetch_all(p).await)?;
        Ok(rows
            .iter()
            .any(|(content,)| content_lists(content, code.as_str())))
    }

    /// The ids of `owner`'s categories under `parent` (`None`: root level), in order.
    async fn siblings_in(
        tx: &mut Tx,
        owner: AccountId,
        parent: Option<SalesCategoryId>,
    ) -> StoreResult<Vec<SalesCategoryId>> {
        let rows: Vec<(i64,)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT id FROM sales_categories WHERE owner_account_id = $1 AND (parent_id = $2 OR (parent_id IS NULL AND $2 IS NULL))
             ORDER BY sort, id")
            .bind(owner.0).bind(parent.map(|p| p.0)).fetch_all(c).await)?;
        Ok(rows.into_iter().map(|r| SalesCategoryId(r.0)).collect())
    }

    async fn write_order(
        tx: &mut Tx,
        order: &[(SalesCategoryId, i32)],
        now: Timestamp,
    ) -> StoreResult<()> {
        crate::plans::catalog_changed();
        for (id, sort) in order {
            on_tx!(tx, c => sqlx::query("UPDATE sales_categories SET sort = $2, updated_at = $3 WHERE id = $1 AND sort <> $2")
                .bind(id.0).bind(*sort).bind(now.0).execute(c).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }
}

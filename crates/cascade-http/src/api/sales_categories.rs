//! `/api/v1/…/sales-categories`: a seller's store tree.
//!
//! Sales categories are a seller's own storefront, not something delegated: they are
//! visible to the owner's users and to users above the owner only (no reads from below).
//! `sort` is a category's position among its siblings; creating at a position or moving
//! renumbers the siblings densely, so the order is explicit and stable.

use super::resources::{LocalizedText, code_taken, in_use, nullable};
use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::authz::Action;
use cascade_domain::catalog::resources::check_owner;
use cascade_domain::catalog::sales::{
    MoveInput, SalesCategory, SalesCategoryId, SalesCategoryInput, SalesCategoryPatch,
    SalesTreeNode, can_hold_children, check_parent,
};
use cascade_domain::ids::AccountId;
use cascade_store::Tx;
use cascade_store::sales_categories::SalesCategories;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_tree, create_category))
        .routes(routes!(get_category, update_category, delete_category))
        .routes(routes!(move_category))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SalesCategoryOut {
    pub id: i64,
    pub owner_account_id: i64,
    /// `null` at the root level of the store.
    pub parent_id: Option<i64>,
    pub code: String,
    pub name: LocalizedText,
    /// Position among its siblings, from 0.
    pub sort: i32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<SalesCategory> for SalesCategoryOut {
    fn from(c: SalesCategory) -> Self {
        Self {
            id: c.id.0,
            owner_account_id: c.owner_account_id.0,
            parent_id: c.parent_id.map(|p| p.0),
            code: c.code.as_str().into(),
            name: (&c.name).into(),
            sort: c.sort,
            created_at: iso(c.created_at),
            updated_at: iso(c.updated_at),
        }
    }
}

/// A category with its sub-categories, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalesCategoryNodeOut {
    #[serde(flatten)]
    pub category: SalesCategoryOut,
    #[schema(no_recursion)]
    pub children: Vec<SalesCategoryNodeOut>,
}

impl From<SalesTreeNode> for SalesCategoryNodeOut {
    fn from(n: SalesTreeNode) -> Self {
        Self {
            category: n.category.into(),
            children: n.children.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SalesTreeOut {
    /// Root-level categories ordered by `sort` then id, each with its children likewise.
    pub items: Vec<SalesCategoryNodeOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSalesCategoryIn {
    /// 1–64 of letters, digits, `_ . -`; unique in the owner's store. Plans list categories by code.
    pub code: String,
    pub name: LocalizedText,
    /// A category of the same owner that lists no plans; absent or `null` for the root level.
    pub parent_id: Option<i64>,
    /// Position among the siblings (0 = first); absent appends at the end.
    pub sort: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSalesCategoryIn {
    /// Cannot change while plans list the category.
    pub code: Option<String>,
    pub name: Option<LocalizedText>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveSalesCategoryIn {
    /// The new parent; `null` for the root level; absent keeps the current parent (reorder only).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub parent_id: Option<Option<i64>>,
    /// Position among the new siblings (0 = first); absent appends at the end.
    pub sort: Option<i64>,
}

/// Whether `parent` may take `category` (None: a new one) as a child: it exists in the
/// same store, is not the category or below it, and lists no plans.
async fn check_new_parent(
    tx: &mut Tx,
    owner: AccountId,
    category: Option<SalesCategoryId>,
    parent: Option<SalesCategoryId>,
) -> ApiResult<()> {
    let Some(pid) = parent else { return Ok(()) };
    let parents = SalesCategories::parents_in(tx, owner).await?;
    check_parent(category, Some(pid), &parents)?;
    let p = SalesCategories::get_in(tx, pid).await?;
    if !can_hold_children(SalesCategories::holds_plans_in(tx, owner, &p.code).await?) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "category_holds_plans",
            "The category holds plans",
        )
        .detail(format!(
            "plans are listed in `{}`; a category holds plans or sub-categories, not both",
            p.code
        )));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/sales-categories", tag = "sales-categories", params(("id" = i64, Path)),
    responses((status = 200, body = SalesTreeOut, description = "The ordered store tree"), ProblemResponses))]
pub(crate) async fn get_tree(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<SalesTreeOut>> {
    auth.check(&st, AccountId(id), Action::ViewCatalog).await?;
    let tree = st.db.sales_categories().tree(AccountId(id)).await?;
    Ok(Json(SalesTreeOut {
        items: tree.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/sales-categories", tag = "sales-categories", params(("id" = i64, Path)),
    request_body = CreateSalesCategoryIn, responses((status = 201, body = SalesCategoryOut), ProblemResponses))]
pub(crate) async fn create_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CreateSalesCategoryIn>,
) -> ApiResult<(StatusCode, Json<SalesCategoryOut>)> {
    let owner = AccountId(id);
    auth.check(&st, owner, Action::ManageCatalog).await?;
    check_owner(st.db.accounts().get(owner).await?.kind)?;
    let new = SalesCategoryInput {
        parent_id: body.parent_id,
        code: body.code,
        name: body.name.into(),
        sort: body.sort,
    }
    .validate()?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    check_new_parent(&mut tx, owner, None, new.parent_id).await?;
    let c = SalesCategories::create(&mut tx, owner, &new, now)
        .await
        .map_err(code_taken)?;
    emit(
        &mut tx,
        now,
        "sales_category.created",
        owner,
        &auth,
        "sales_category",
        c.id.0,
        json!({"code": c.code.as_str(), "parent_id": c.parent_id.map(|p| p.0), "sort": c.sort}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

/// Load a category and check the caller may act on its owner's store.
async fn category_for(
    st: &AppState,
    auth: &Authed,
    id: i64,
    action: Action,
) -> ApiResult<SalesCategory> {
    let c = st.db.sales_categories().get(SalesCategoryId(id)).await?;
    auth.check(st, c.owner_account_id, action).await?;
    Ok(c)
}

#[utoipa::path(get, path = "/api/v1/sales-categories/{id}", tag = "sales-categories", params(("id" = i64, Path)),
    responses((status = 200, body = SalesCategoryOut), ProblemResponses))]
pub(crate) async fn get_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<SalesCategoryOut>> {
    Ok(Json(
        category_for(&st, &auth, id, Action::ViewCatalog)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/api/v1/sales-categories/{id}", tag = "sales-categories", params(("id" = i64, Path)),
    request_body = UpdateSalesCategoryIn, responses((status = 200, body = SalesCategoryOut), ProblemResponses))]
pub(crate) async fn update_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateSalesCategoryIn>,
) -> ApiResult<Json<SalesCategoryOut>> {
    let current = category_for(&st, &auth, id, Action::ManageCatalog).await?;
    let next = SalesCategoryPatch {
        code: body.code,
        name: body.name.map(Into::into),
    }
    .apply(&current)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if next.code != current.code
        && SalesCategories::holds_plans_in(&mut tx, current.owner_account_id, &current.code).await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "category_holds_plans",
            "The category holds plans",
        )
        .detail(format!(
            "plans list the category by its code `{}`; the code cannot change while they do",
            current.code
        )));
    }
    let c = SalesCategories::update(&mut tx, &next, now)
        .await
        .map_err(code_taken)?;
    emit(
        &mut tx,
        now,
        "sales_category.updated",
        c.owner_account_id,
        &auth,
        "sales_category",
        c.id.0,
        json!({"code": c.code.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

#[utoipa::path(delete, path = "/api/v1/sales-categories/{id}", tag = "sales-categories", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted; the siblings are renumbered"), ProblemResponses))]
pub(crate) async fn delete_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let current = category_for(&st, &auth, id, Action::ManageCatalog).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    SalesCategories::delete(&mut tx, current.id, now)
        .await
        .map_err(in_use)?;
    emit(
        &mut tx,
        now,
        "sales_category.deleted",
        current.owner_account_id,
        &auth,
        "sales_category",
        id,
        json!({"code": current.code.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/sales-categories/{id}/move", tag = "sales-categories", params(("id" = i64, Path)),
    request_body = MoveSalesCategoryIn, responses((status = 200, body = SalesCategoryOut), ProblemResponses))]
pub(crate) async fn move_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<MoveSalesCategoryIn>,
) -> ApiResult<Json<SalesCategoryOut>> {
    let current = category_for(&st, &auth, id, Action::ManageCatalog).await?;
    let parent_id = match body.parent_id {
        Some(p) => p,
        None => current.parent_id.map(|p| p.0),
    };
    let m = MoveInput {
        parent_id,
        sort: body.sort,
    }
    .validate()?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if m.parent_id != current.parent_id {
        check_new_parent(
            &mut tx,
            current.owner_account_id,
            Some(current.id),
            m.parent_id,
        )
        .await?;
    }
    let c = SalesCategories::move_to(&mut tx, current.id, &m, now).await?;
    emit(&mut tx, now, "sales_category.moved", c.owner_account_id, &auth, "sales_category", c.id.0,
        json!({"from_parent_id": current.parent_id.map(|p| p.0), "parent_id": c.parent_id.map(|p| p.0), "sort": c.sort})).await?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

//! `/api/v1/…/plans`: service plans, delegation down the channel, synchronization with
//! preview and audit, and resellers' synchronization settings.
//!
//! Plan content travels as the domain's [`PlanContent`] JSON (validated on the way in by
//! `PlanContent::validate` and, for copies, `check_copy_edit`); the OpenAPI document
//! describes it as an object.

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PageOut, PageParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::FieldError;
use cascade_domain::account::AccountKind;
use cascade_domain::authz::Action;
use cascade_domain::catalog::plan::PlanContent;
use cascade_domain::catalog::sync::{CopyOutcome, Restrictions, Scope, SyncOptions, plan_sync};
use cascade_domain::ids::AccountId;
use cascade_domain::validation::ValidationErrors;
use cascade_store::plans::{Plan, Plans, SyncRun, SyncSettings};
use cascade_store::subscriptions::SubscriptionUpdate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans, create_plan))
        .routes(routes!(list_offers))
        .routes(routes!(get_plan, update_plan, delete_plan))
        .routes(routes!(list_copies, delegate_plan))
        .routes(routes!(confirm_prices))
        .routes(routes!(sync_preview))
        .routes(routes!(sync_apply))
        .routes(routes!(list_sync_runs))
        .routes(routes!(get_sync_run))
        .routes(routes!(get_sync_settings, put_sync_settings))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanOut {
    pub id: i64,
    pub owner_account_id: i64,
    pub template_id: i64,
    /// The original this plan was delegated from (absent on an original).
    pub root_plan_id: Option<i64>,
    pub parent_plan_id: Option<i64>,
    pub currency: String,
    /// The name in the requested language (falling back to the default).
    pub display_name: String,
    /// Published, visible and not withdrawn.
    pub on_sale: bool,
    /// Withdrawn from the store until the owner confirms prices a sync added.
    pub withdrawn: bool,
    /// A one-level sync changed this copy; its own copies have not received it yet.
    pub upstream_changes: bool,
    pub version: i64,
    #[schema(value_type = Object)]
    pub content: PlanContent,
    pub created_at: String,
    pub updated_at: String,
}

fn plan_out(p: Plan, lang: &str) -> PlanOut {
    PlanOut {
        id: p.id,
        owner_account_id: p.owner_account_id.0,
        template_id: p.template_id,
        root_plan_id: p.root_plan_id,
        parent_plan_id: p.parent_plan_id,
        currency: p.currency.clone(),
        display_name: p.content.name.get(lang).to_string(),
        on_sale: p.on_sale(),
        withdrawn: p.withdrawn,
        upstream_changes: p.upstream_changes,
        version: p.version,
        created_at: iso(p.created_at),
        updated_at: iso(p.updated_at),
        content: p.content,
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlanListParams {
    /// Only plans on sale (published, visible, not withdrawn).
    pub on_sale: Option<bool>,
    /// Language for `display_name` (BCP 47); the user's language by default.
    pub lang: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn lang_of(auth: &Authed, lang: Option<&str>) -> ApiResult<String> {
    match lang {
        Some(l) => Ok(cascade_domain::account::Language::parse(l)
            .map_err(|e| ApiError::from(e.under("lang")))?
            .as_str()
            .to_string()),
        None => Ok(auth
            .user
            .language
            .as_ref()
            .map(|l| l.as_str().to_string())
            .unwrap_or_else(|| "en".into())),
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/plans", tag = "plans", params(("id" = i64, Path), PlanListParams),
    responses((status = 200, body = PageOut<PlanOut>, description = "The seller's catalog view: its own plans and the copies delegated to it, with its prices"), ProblemResponses))]
pub(crate) async fn list_plans(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PlanListParams>,
) -> ApiResult<Json<PageOut<PlanOut>>> {
    auth.check(&st, AccountId(id), Action::ViewCatalog).await?;
    let lang = lang_of(&auth, q.lang.as_deref())?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let p = st
        .db
        .plans()
        .of_owner(
            AccountId(id),
            q.on_sale.unwrap_or(false),
            page.after()?,
            page.limit()?,
        )
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(|x| plan_out(x, &lang)).collect(),
        p.next,
    )))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/offers", tag = "plans", params(("id" = i64, Path), PlanListParams),
    responses((status = 200, body = PageOut<PlanOut>, description = "What the account can buy: its vendor's plans on sale"), ProblemResponses))]
async fn list_offers(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PlanListParams>,
) -> ApiResult<Json<PageOut<PlanOut>>> {
    auth.check(&st, AccountId(id), Action::ViewAccount).await?;
    let account = st.db.accounts().get(AccountId(id)).await?;
    let Some(vendor) = account.vendor_id else {
        return Ok(Json(PageOut::new(vec![], None)));
    };
    let lang = match q.lang.as_deref() {
        Some(_) => lang_of(&auth, q.lang.as_deref())?,
        None => account.language.as_str().to_string(),
    };
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let p = st
        .db
        .plans()
        .of_owner(vendor, true, page.after()?, page.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(|x| plan_out(x, &lang)).collect(),
        p.next,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanIn {
    /// A service template owned by the seller or one of its vendors.
    pub template_id: i64,
    #[schema(value_type = Object)]
    pub content: PlanContent,
}

/// Rules a plan's content obeys within its owner's catalog: resource types visible to
/// the owner, sales categories that exist in the owner's store and hold plans.
async fn check_catalog_refs(
    st: &AppState,
    owner: AccountId,
    c: &PlanContent,
    check_categories: bool,
) -> ApiResult<()> {
    let mut e = ValidationErrors::new();
    for (i, r) in c.rates.iter().enumerate() {
        let visible = match st
            .db
            .plans()
            .resource_type_owner(r.resource_type_id)
            .await?
        {
            Some(o) => st.db.accounts().relation_depth(o, owner).await?.is_some(),
            None => false,
        };
        if !visible {
            e.push(FieldError::new(
                format!("content.rates[{i}].resource_type_id"),
                "unknown_resource_type",
                "no such resource type",
            ));
        }
    }
    if check_categories {
        let cats = st.db.plans().sales_category_codes(owner).await?;
        for (i, code) in c.sales_categories.iter().enumerate() {
            match cats.get(code) {
                None => e.push(FieldError::new(
                    format!("content.sales_categories[{i}]"),
                    "unknown_sales_category",
                    format!("no sales category `{code}` in this store"),
                )),
                Some(true) => e.push(FieldError::new(
                    format!("content.sales_categories[{i}]"),
                    "category_has_subcategories",
                    "a sales category holds plans or sub-categories, not both",
                )),
                Some(false) => {}
            }
        }
    }
    e.into_result().map_err(Into::into)
}

fn prefixed(e: ValidationErrors, prefix: &str) -> ApiError {
    ValidationErrors(e.0.into_iter().map(|x| x.under(prefix)).collect()).into()
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/plans", tag = "plans", params(("id" = i64, Path)), request_body = CreatePlanIn,
    responses((status = 201, body = PlanOut), ProblemResponses))]
async fn create_plan(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CreatePlanIn>,
) -> ApiResult<(StatusCode, Json<PlanOut>)> {
    let owner = AccountId(id);
    auth.check(&st, owner, Action::ManageCatalog).await?;
    let account = st.db.accounts().get(owner).await?;
    if account.kind == AccountKind::Customer {
        return Err(ApiError::field(
            "account_id",
            "not_a_seller",
            "only the provider and resellers own plans",
        ));
    }
    let template_ok = match st.db.plans().template_owner(body.template_id).await? {
        Some(o) => st.db.accounts().relation_depth(o, owner).await?.is_some(),
        None => false,
    };
    if !template_ok {
        return Err(ApiError::field(
            "template_id",
            "unknown_template",
            "no such service template",
        ));
    }
    let mut content = body.content;
    for p in &mut content.periods {
        p.unconfirmed = false;
    }
    for r in &mut content.rates {
        r.unconfirmed = false;
    }
    content.validate().map_err(|e| prefixed(e, "content"))?;
    check_catalog_refs(&st, owner, &content, true).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let plan = Plans::create(
        &mut tx,
        owner,
        body.template_id,
        account.currency.code(),
        &content,
        now,
    )
    .await?;
    emit(
        &mut tx,
        now,
        "plan.created",
        owner,
        &auth,
        "plan",
        plan.id,
        json!({"name": plan.content.name.get("en")}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(plan_out(plan, &lang_of(&auth, None)?)),
    ))
}

async fn plan_for(st: &AppState, auth: &Authed, id: i64, action: Action) -> ApiResult<Plan> {
    let plan = st.db.plans().get(id).await?;
    auth.check(st, plan.owner_account_id, action).await?;
    Ok(plan)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LangParam {
    pub lang: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/plans/{id}", tag = "plans", params(("id" = i64, Path), LangParam), responses((status = 200, body = PlanOut), ProblemResponses))]
pub(crate) async fn get_plan(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<LangParam>,
) -> ApiResult<Json<PlanOut>> {
    let plan = plan_for(&st, &auth, id, Action::ViewCatalog).await?;
    Ok(Json(plan_out(plan, &lang_of(&auth, q.lang.as_deref())?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlanIn {
    #[schema(value_type = Object)]
    pub content: PlanContent,
    /// The version the change was made from; a stale version is a 409.
    pub expected_version: Option<i64>,
}

#[utoipa::path(put, path = "/api/v1/plans/{id}", tag = "plans", params(("id" = i64, Path)), request_body = UpdatePlanIn,
    responses((status = 200, body = PlanOut), ProblemResponses))]
pub(crate) async fn update_plan(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdatePlanIn>,
) -> ApiResult<Json<PlanOut>> {
    let plan = plan_for(&st, &auth, id, Action::ManageCatalog).await?;
    let mut next = body.content;
    // Price confirmation flags are the platform's, not the caller's.
    for p in &mut next.periods {
        p.unconfirmed = plan.content.period(&p.uid).is_some_and(|c| c.unconfirmed);
    }
    for r in &mut next.rates {
        r.unconfirmed = plan.content.rate(&r.uid).is_some_and(|c| c.unconfirmed);
    }
    next.validate().map_err(|e| prefixed(e, "content"))?;
    if plan.is_copy() {
        plan.content
            .check_copy_edit(&next)
            .map_err(|e| prefixed(e, "content"))?;
    } else {
        check_original_edit(&st, &plan, &next).await?;
    }
    check_catalog_refs(
        &st,
        plan.owner_account_id,
        &next,
        next.sales_categories != plan.content.sales_categories,
    )
    .await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let updated = Plans::update(
        &mut tx,
        plan.id,
        body.expected_version.unwrap_or(plan.version),
        &next,
        plan.withdrawn,
        plan.upstream_changes,
        now,
    )
    .await?;
    emit(
        &mut tx,
        now,
        "plan.updated",
        plan.owner_account_id,
        &auth,
        "plan",
        plan.id,
        json!({"version": updated.version}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(plan_out(updated, &lang_of(&auth, None)?)))
}

/// An original with copies keeps what the copies rely on: its billing model and period
/// type, and every period and rate a copy has, with the same duration and resource.
async fn check_original_edit(st: &AppState, plan: &Plan, next: &PlanContent) -> ApiResult<()> {
    let (periods, rates) = st.db.plans().uids_in_copies(plan.id).await?;
    if periods.is_empty() && rates.is_empty() {
        return Ok(());
    }
    let mut e = ValidationErrors::new();
    if next.billing_model != plan.content.billing_model
        || next.period_type != plan.content.period_type
    {
        e.push(FieldError::new(
            "content.billing_model",
            "structure_in_use",
            "the billing model and period type cannot change while the plan is delegated",
        ));
    }
    for uid in &periods {
        match (plan.content.period(uid), next.period(uid)) {
            (Some(_), None) => e.push(FieldError::new(
                format!("content.periods[{uid}]"),
                "period_in_use",
                "this period is used by delegated copies and cannot be removed",
            )),
            (Some(a), Some(b))
                if (a.duration, a.unit, a.trial) != (b.duration, b.unit, b.trial) =>
            {
                e.push(FieldError::new(
                    format!("content.periods[{uid}]"),
                    "period_in_use",
                    "the duration of a period used by copies cannot change",
                ))
            }
            _ => {}
        }
    }
    for uid in &rates {
        match (plan.content.rate(uid), next.rate(uid)) {
            (Some(_), None) => e.push(FieldError::new(
                format!("content.rates[{uid}]"),
                "rate_in_use",
                "this resource rate is used by delegated copies and cannot be removed",
            )),
            (Some(a), Some(b)) if a.resource_type_id != b.resource_type_id => {
                e.push(FieldError::new(
                    format!("content.rates[{uid}]"),
                    "rate_in_use",
                    "the resource of a rate used by copies cannot change",
                ))
            }
            _ => {}
        }
    }
    e.into_result().map_err(Into::into)
}

#[utoipa::path(delete, path = "/api/v1/plans/{id}", tag = "plans", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_plan(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let plan = plan_for(&st, &auth, id, Action::ManageCatalog).await?;
    if !st.db.plans().copies_of(plan.id).await?.is_empty() {
        return Err(ApiError::conflict(
            "the plan is delegated; its copies must be removed first",
        ));
    }
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    Plans::delete(&mut tx, plan.id).await?;
    emit(
        &mut tx,
        now,
        "plan.deleted",
        plan.owner_account_id,
        &auth,
        "plan",
        plan.id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/plans/{id}/copies", tag = "plans", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<PlanOut>, description = "The direct resellers' copies"), ProblemResponses))]
pub(crate) async fn list_copies(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<PlanOut>>> {
    let plan = plan_for(&st, &auth, id, Action::ViewCatalog).await?;
    let lang = lang_of(&auth, None)?;
    Ok(Json(
        st.db
            .plans()
            .copies_of(plan.id)
            .await?
            .into_iter()
            .map(|p| plan_out(p, &lang))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegateIn {
    /// A reseller directly under the plan's owner.
    pub reseller_id: i64,
}

#[utoipa::path(post, path = "/api/v1/plans/{id}/copies", tag = "plans", params(("id" = i64, Path)), request_body = DelegateIn,
    responses((status = 201, body = PlanOut, description = "The reseller's own copy, linked to this plan"), ProblemResponses))]
pub(crate) async fn delegate_plan(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<DelegateIn>,
) -> ApiResult<(StatusCode, Json<PlanOut>)> {
    let plan = plan_for(&st, &auth, id, Action::ManageCatalog).await?;
    let not_child = || {
        ApiError::field(
            "reseller_id",
            "not_a_direct_reseller",
            "a plan is delegated to a reseller directly under its owner",
        )
    };
    let reseller = match st.db.accounts().get(AccountId(body.reseller_id)).await {
        Ok(a) => a,
        Err(cascade_store::StoreError::NotFound) => return Err(not_child()),
        Err(e) => return Err(e.into()),
    };
    if reseller.kind != AccountKind::Reseller || reseller.vendor_id != Some(plan.owner_account_id) {
        return Err(not_child());
    }
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let copy = Plans::delegate(&mut tx, &plan, reseller.id, now).await?;
    emit(
        &mut tx,
        now,
        "plan.delegated",
        plan.owner_account_id,
        &auth,
        "plan",
        plan.id,
        json!({"copy_id": copy.id, "reseller_id": reseller.id.0}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(plan_out(copy, &lang_of(&auth, None)?)),
    ))
}

#[utoipa::path(post, path = "/api/v1/plans/{id}/confirm-prices", tag = "plans", params(("id" = i64, Path)),
    responses((status = 200, body = PlanOut, description = "Prices added by a sync are confirmed; the plan returns to the store"), ProblemResponses))]
async fn confirm_prices(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<PlanOut>> {
    let plan = plan_for(&st, &auth, id, Action::ManageCatalog).await?;
    let mut next = plan.content.clone();
    for p in &mut next.periods {
        p.unconfirmed = false;
    }
    for r in &mut next.rates {
        r.unconfirmed = false;
    }
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let updated = Plans::update(
        &mut tx,
        plan.id,
        plan.version,
        &next,
        false,
        plan.upstream_changes,
        now,
    )
    .await?;
    emit(
        &mut tx,
        now,
        "plan.prices_confirmed",
        plan.owner_account_id,
        &auth,
        "plan",
        plan.id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(plan_out(updated, &lang_of(&auth, None)?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncIn {
    /// Which of the eight options to apply (at least one).
    #[schema(value_type = Object)]
    pub options: SyncOptions,
    /// `{"type": "all_resellers"}`, `{"type": "one_level"}` or
    /// `{"type": "reseller", "account_id": N, "with_subtree": true}`.
    #[schema(value_type = Object)]
    pub scope: Scope,
    /// The `digest` of the preview being applied: if anything changed since, 409.
    pub expected_digest: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CopyChangeOut {
    pub plan_id: i64,
    pub owner_account_id: i64,
    pub level: u32,
    /// `{field, from, to}` per changed field.
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<cascade_domain::catalog::sync::Change>,
    /// `{field, restriction, wanted}` per change a restriction stopped.
    #[schema(value_type = Vec<Object>)]
    pub blocked: Vec<cascade_domain::catalog::sync::Blocked>,
    /// The sync adds prices the owner must confirm: withdrawn from its store meanwhile.
    pub withdrawn: bool,
    /// Changed, with copies below it that this sync does not reach.
    pub upstream_pending: bool,
    /// Customer subscriptions on this copy the sync moves to new terms (0 without the
    /// `subscriptions` option, or below a cascade stop).
    pub subscriptions_changed: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncPreviewOut {
    /// Pass back as `expected_digest` to apply exactly this preview.
    pub digest: String,
    pub copies_reached: usize,
    pub copies_changed: usize,
    /// Customer subscriptions the sync moves to new terms, the synced plan's own included.
    pub subscriptions_changed: usize,
    pub copies: Vec<CopyChangeOut>,
}

fn digest(outcomes: &[CopyOutcome], subs: &[SubscriptionUpdate]) -> String {
    let mut h = Sha256::new();
    for o in outcomes {
        h.update(o.plan_id.to_le_bytes());
        h.update(o.version.to_le_bytes());
        h.update(serde_json::to_vec(&o.changes).unwrap_or_default());
        h.update(serde_json::to_vec(&o.blocked).unwrap_or_default());
    }
    for u in subs {
        h.update(u.subscription_id.to_le_bytes());
        h.update(u.version.to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// The subscriptions a sync with the `subscriptions` option moves: those of the synced
/// plan itself and of every copy it reaches, except below a cascade stop.
async fn subscription_updates(
    st: &AppState,
    plan: &Plan,
    body: &SyncIn,
    outcomes: &[CopyOutcome],
) -> ApiResult<Vec<SubscriptionUpdate>> {
    if !body.options.subscriptions {
        return Ok(vec![]);
    }
    let today = chrono::DateTime::from_timestamp_micros(st.clock.now().0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
        .to_string();
    let targets: Vec<(i64, &PlanContent)> = std::iter::once((plan.id, &plan.content))
        .chain(
            outcomes
                .iter()
                .filter(|o| o.reaches_subscriptions)
                .map(|o| (o.plan_id, &o.content)),
        )
        .collect();
    Ok(st.db.subscriptions().sync_updates(&targets, &today).await?)
}

fn per_plan(subs: &[SubscriptionUpdate]) -> HashMap<i64, usize> {
    let mut m = HashMap::new();
    for u in subs {
        *m.entry(u.plan_id).or_default() += 1;
    }
    m
}

async fn compute_sync(st: &AppState, plan: &Plan, body: &SyncIn) -> ApiResult<Vec<CopyOutcome>> {
    if !body.options.any() {
        return Err(ApiError::field(
            "options",
            "no_options",
            "pick at least one synchronization option",
        ));
    }
    let nodes = st.db.plans().subtree(plan).await?;
    if let Scope::Reseller { account_id, .. } = body.scope
        && !nodes
            .iter()
            .any(|n| n.parent_plan_id == plan.id && n.owner_id == account_id)
    {
        return Err(ApiError::field(
            "scope.account_id",
            "not_a_copy_holder",
            "this reseller holds no direct copy of the plan",
        ));
    }
    Ok(plan_sync(
        plan.id,
        &plan.content,
        &nodes,
        body.scope,
        &body.options,
    ))
}

fn preview_out(outcomes: &[CopyOutcome], subs: &[SubscriptionUpdate]) -> SyncPreviewOut {
    let counts = per_plan(subs);
    SyncPreviewOut {
        digest: digest(outcomes, subs),
        copies_reached: outcomes.len(),
        copies_changed: outcomes.iter().filter(|o| !o.changes.is_empty()).count(),
        subscriptions_changed: subs.len(),
        copies: outcomes
            .iter()
            .map(|o| CopyChangeOut {
                plan_id: o.plan_id,
                owner_account_id: o.owner_id,
                level: o.level,
                changes: o.changes.clone(),
                blocked: o.blocked.clone(),
                withdrawn: o.withdrawn,
                upstream_pending: o.upstream_pending,
                subscriptions_changed: counts.get(&o.plan_id).copied().unwrap_or(0),
            })
            .collect(),
    }
}

#[utoipa::path(post, path = "/api/v1/plans/{id}/sync/preview", tag = "plans", params(("id" = i64, Path)), request_body = SyncIn,
    responses((status = 200, body = SyncPreviewOut, description = "What the sync would change where, and what restrictions stop"), ProblemResponses))]
pub(crate) async fn sync_preview(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<SyncIn>,
) -> ApiResult<Json<SyncPreviewOut>> {
    let plan = plan_for(&st, &auth, id, Action::ManageCatalog).await?;
    let outcomes = compute_sync(&st, &plan, &body).await?;
    let subs = subscription_updates(&st, &plan, &body, &outcomes).await?;
    Ok(Json(preview_out(&outcomes, &subs)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncRunOut {
    pub id: i64,
    pub plan_id: i64,
    pub account_id: i64,
    pub actor_user_id: Option<i64>,
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    #[schema(value_type = Object)]
    pub scope: serde_json::Value,
    pub copies_total: i64,
    pub copies_changed: i64,
    pub copies_failed: i64,
    /// Customer subscriptions moved to new terms (the `subscriptions` option).
    pub subscriptions_changed: i64,
    pub created_at: String,
}

fn run_out(r: SyncRun) -> SyncRunOut {
    SyncRunOut {
        id: r.id,
        plan_id: r.plan_id,
        account_id: r.account_id.0,
        actor_user_id: r.actor_user_id,
        options: r.options,
        scope: r.scope,
        copies_total: r.copies_total,
        copies_changed: r.copies_changed,
        copies_failed: r.copies_failed,
        subscriptions_changed: r.subscriptions_changed,
        created_at: iso(r.created_at),
    }
}

#[utoipa::path(post, path = "/api/v1/plans/{id}/sync", tag = "plans", params(("id" = i64, Path)), request_body = SyncIn,
    responses((status = 200, body = SyncRunOut, description = "Applied; per-copy results under /api/v1/sync-runs/{id}"), ProblemResponses))]
pub(crate) async fn sync_apply(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<SyncIn>,
) -> ApiResult<Json<SyncRunOut>> {
    let plan = plan_for(&st, &auth, id, Action::ManageCatalog).await?;
    let outcomes = compute_sync(&st, &plan, &body).await?;
    // Read before the copies are written: a subscription without a snapshot is taken
    // at its plan's content before the sync.
    let subs = subscription_updates(&st, &plan, &body, &outcomes).await?;
    if let Some(expected) = &body.expected_digest
        && *expected != digest(&outcomes, &subs)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "preview_outdated",
            "The preview is outdated",
        )
        .detail("the plan or its copies changed since the preview; preview again"));
    }
    let now = st.clock.now();
    let options = json!(body.options);
    let scope = json!(body.scope);
    let run = st
        .db
        .plans()
        .apply_sync(
            plan.id,
            plan.owner_account_id,
            Some(auth.actor.user_id.0),
            &options,
            &scope,
            &outcomes,
            now,
            500,
            |_| {},
        )
        .await?;
    let run = if body.options.subscriptions {
        // Subscriptions follow only copies really written (a copy that failed keeps its
        // subscriptions as they are); the synced plan itself is not a copy.
        let failed: std::collections::HashSet<i64> = st
            .db
            .plans()
            .run_items(run.id, None, i64::from(i32::MAX))
            .await?
            .items
            .into_iter()
            .filter(|i| i.status == "failed")
            .map(|i| i.plan_id)
            .collect();
        let subs: Vec<SubscriptionUpdate> = subs
            .into_iter()
            .filter(|u| !failed.contains(&u.plan_id))
            .collect();
        let written: std::collections::HashSet<i64> = st
            .db
            .subscriptions()
            .apply_sync_updates(&subs, now)
            .await?
            .into_iter()
            .collect();
        let mut counts: HashMap<i64, i64> = HashMap::new();
        for u in subs.iter().filter(|u| written.contains(&u.subscription_id)) {
            *counts.entry(u.plan_id).or_default() += 1;
        }
        st.db.plans().record_subscriptions(run.id, &counts).await?
    } else {
        run
    };
    let mut tx = st.db.begin().await?;
    // A copy that passed everything down has no upstream changes pending any more.
    if plan.upstream_changes && matches!(body.scope, Scope::AllResellers) {
        let fresh = st.db.plans().get(plan.id).await?;
        Plans::update(
            &mut tx,
            fresh.id,
            fresh.version,
            &fresh.content,
            fresh.withdrawn,
            false,
            now,
        )
        .await?;
    }
    emit(&mut tx, now, "plan.synced", plan.owner_account_id, &auth, "sync_run", run.id,
        json!({"plan_id": plan.id, "copies_changed": run.copies_changed, "copies_failed": run.copies_failed,
               "subscriptions_changed": run.subscriptions_changed})).await?;
    tx.commit().await?;
    Ok(Json(run_out(run)))
}

#[utoipa::path(get, path = "/api/v1/plans/{id}/sync-runs", tag = "plans", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = PageOut<SyncRunOut>, description = "The plan's sync audit trail, newest first"), ProblemResponses))]
pub(crate) async fn list_sync_runs(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<SyncRunOut>>> {
    let plan = plan_for(&st, &auth, id, Action::ViewCatalog).await?;
    let p = st
        .db
        .plans()
        .runs_of(plan.id, q.after()?, q.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(run_out).collect(),
        p.next,
    )))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncRunItemOut {
    pub plan_id: i64,
    pub owner_account_id: i64,
    pub level: i64,
    /// `changed`, `unchanged` or `failed`.
    pub status: String,
    #[schema(value_type = Vec<Object>)]
    pub changes: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub blocked: serde_json::Value,
    pub withdrawn: bool,
    pub upstream_pending: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncRunDetailOut {
    pub run: SyncRunOut,
    pub items: PageOut<SyncRunItemOut>,
}

#[utoipa::path(get, path = "/api/v1/sync-runs/{id}", tag = "plans", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = SyncRunDetailOut, description = "One sync: who, when, options, scope, per-copy results"), ProblemResponses))]
pub(crate) async fn get_sync_run(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<SyncRunDetailOut>> {
    let run = st.db.plans().run(id).await?;
    auth.check(&st, run.account_id, Action::ViewCatalog).await?;
    let items = st
        .db
        .plans()
        .run_items(run.id, q.after()?, q.limit()?)
        .await?;
    let out = items
        .items
        .into_iter()
        .map(|i| SyncRunItemOut {
            plan_id: i.plan_id,
            owner_account_id: i.owner_account_id.0,
            level: i.level,
            status: i.status,
            changes: i.changes,
            blocked: i.blocked,
            withdrawn: i.withdrawn,
            upstream_pending: i.upstream_pending,
            error: i.error,
        })
        .collect();
    Ok(Json(SyncRunDetailOut {
        run: run_out(run),
        items: PageOut::new(out, items.next),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncSettingsIo {
    /// What a sync may never change on this reseller's copies.
    #[schema(value_type = Object)]
    pub restrictions: Restrictions,
    /// Synchronization reaches this reseller's copies but goes no further.
    pub cascade_stop: bool,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/sync-settings", tag = "plans", params(("id" = i64, Path)),
    responses((status = 200, body = SyncSettingsIo), ProblemResponses))]
pub(crate) async fn get_sync_settings(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<SyncSettingsIo>> {
    auth.check(&st, AccountId(id), Action::ViewCatalog).await?;
    let s = st.db.plans().sync_settings(AccountId(id)).await?;
    Ok(Json(SyncSettingsIo {
        restrictions: s.restrictions,
        cascade_stop: s.cascade_stop,
    }))
}

#[utoipa::path(put, path = "/api/v1/accounts/{id}/sync-settings", tag = "plans", params(("id" = i64, Path)), request_body = SyncSettingsIo,
    responses((status = 200, body = SyncSettingsIo), ProblemResponses))]
pub(crate) async fn put_sync_settings(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<SyncSettingsIo>,
) -> ApiResult<Json<SyncSettingsIo>> {
    let account = AccountId(id);
    auth.check(&st, account, Action::ManageSyncSettings).await?;
    if st.db.accounts().get(account).await?.kind != AccountKind::Reseller {
        return Err(ApiError::field(
            "account_id",
            "not_a_reseller",
            "synchronization settings apply to resellers",
        ));
    }
    let s = SyncSettings {
        restrictions: body.restrictions,
        cascade_stop: body.cascade_stop,
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    Plans::set_sync_settings(&mut tx, account, &s, now).await?;
    emit(
        &mut tx,
        now,
        "sync_settings.updated",
        account,
        &auth,
        "account",
        id,
        json!({"restrictions": s.restrictions, "cascade_stop": s.cascade_stop}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(body))
}

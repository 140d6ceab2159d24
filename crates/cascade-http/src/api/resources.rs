//! `/api/v1/…/resource-categories`, `…/resource-types`, `…/service-templates`: the
//! technical catalog of a seller, and resellers' provisioning overrides.
//!
//! Who sees what: a list shows the objects owned by the account in the path; an object
//! is readable by users of its owner, by users above the owner (with the privileges the
//! authorization rule asks for below one's own account), and — for resource categories,
//! resource types and service templates, which delegated plans are built on — by users
//! of sellers below the owner. Anything else is 404. Only the owner's account and the
//! accounts above it change an object (`CATALOG_MANAGE`); a seller below it gets 403.

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PageOut, PageParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::authz::{Action, Relation, authorize};
use cascade_domain::catalog::resources::{
    ResourceCategory, ResourceCategoryId, ResourceCategoryInput, ResourceCategoryPatch,
    ResourceKind, ResourceType, ResourceTypeId, ResourceTypeInput, ResourceTypePatch,
    ServiceTemplate, ServiceTemplateId, ServiceTemplateInput, ServiceTemplatePatch, SettingInput,
    SettingValue, Settings, TemplateOverride, TemplateResourceInput, check_override_account,
    check_owner, validate_override,
};
use cascade_domain::catalog::text::{Localized, LocalizedInput};
use cascade_domain::ids::AccountId;
use cascade_store::StoreError;
use cascade_store::resources::{ResourceCategories, ResourceTypes, ServiceTemplates};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_resource_categories, create_resource_category))
        .routes(routes!(
            get_resource_category,
            update_resource_category,
            delete_resource_category
        ))
        .routes(routes!(list_resource_types, create_resource_type))
        .routes(routes!(
            get_resource_type,
            update_resource_type,
            delete_resource_type
        ))
        .routes(routes!(list_service_templates, create_service_template))
        .routes(routes!(
            get_service_template,
            update_service_template,
            delete_service_template
        ))
        .routes(routes!(list_overrides))
        .routes(routes!(put_override, delete_override))
        .routes(routes!(effective_settings))
}

// ---------------------------------------------------------------------------------------
// Shared API types and helpers (also used by the sales categories)
// ---------------------------------------------------------------------------------------

/// Multilingual text: a default language and a text per BCP 47 language tag.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"default": "en", "values": {"en": "Mailbox", "fr": "Boîte aux lettres", "ar": "صندوق البريد"}}))]
pub struct LocalizedText {
    /// The language reads fall back to; must have a text in `values`.
    pub default: String,
    pub values: BTreeMap<String, String>,
}

impl From<&Localized> for LocalizedText {
    fn from(l: &Localized) -> Self {
        Self {
            default: l.default.clone(),
            values: l.values.clone(),
        }
    }
}

impl From<LocalizedText> for LocalizedInput {
    fn from(l: LocalizedText) -> Self {
        LocalizedInput {
            default: l.default,
            values: l.values,
        }
    }
}

/// For PATCH bodies: an absent field is `None`, an explicit `null` is `Some(None)`.
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A duplicate code (unique per owner) names the field.
pub(crate) fn code_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { what } => ApiError::field("code", "code_taken", what),
        o => o.into(),
    }
}

/// A delete refused because something still uses the object.
pub(crate) fn in_use(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { what } => {
            ApiError::new(StatusCode::CONFLICT, "in_use", "Still in use").detail(what)
        }
        o => o.into(),
    }
}

/// Whether `owner` is a vendor above the caller's account, and the caller's account a
/// seller: what was delegated to a seller is built on its vendors' catalog objects.
async fn is_sellers_vendor(st: &AppState, auth: &Authed, owner: AccountId) -> ApiResult<bool> {
    if st
        .db
        .accounts()
        .relation_depth(owner, auth.actor.account_id)
        .await?
        .is_none_or(|d| d == 0)
    {
        return Ok(false);
    }
    Ok(st
        .db
        .accounts()
        .get(auth.actor.account_id)
        .await?
        .kind
        .is_seller())
}

/// May the caller read an object owned by `owner`? Own and below as the authorization
/// rule says; above only when `from_below` (objects delegated plans are built on).
pub(crate) async fn can_read(
    st: &AppState,
    auth: &Authed,
    owner: AccountId,
    from_below: bool,
) -> ApiResult<()> {
    let relation = Relation::from_depth(
        st.db
            .accounts()
            .relation_depth(auth.actor.account_id, owner)
            .await?,
    );
    if relation != Relation::Unrelated {
        return authorize(&auth.actor, relation, Action::ViewCatalog).map_err(Into::into);
    }
    if from_below && is_sellers_vendor(st, auth, owner).await? {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// May the caller change an object owned by `owner`? A vendor's object that the caller
/// can read is 403, anything else it cannot see is 404.
pub(crate) async fn can_manage(
    st: &AppState,
    auth: &Authed,
    owner: AccountId,
    from_below: bool,
) -> ApiResult<()> {
    let relation = Relation::from_depth(
        st.db
            .accounts()
            .relation_depth(auth.actor.account_id, owner)
            .await?,
    );
    if relation != Relation::Unrelated {
        return authorize(&auth.actor, relation, Action::ManageCatalog).map_err(Into::into);
    }
    if from_below && is_sellers_vendor(st, auth, owner).await? {
        Err(ApiError::forbidden(
            "this object belongs to a vendor above your account: it can be used, not changed",
        ))
    } else {
        Err(ApiError::not_found())
    }
}

/// Check the caller may create catalog objects owned by `owner`, a seller.
pub(crate) async fn check_new_owner(
    st: &AppState,
    auth: &Authed,
    owner: AccountId,
) -> ApiResult<()> {
    auth.check(st, owner, Action::ManageCatalog).await?;
    let account = st.db.accounts().get(owner).await?;
    check_owner(account.kind)?;
    Ok(())
}

/// A typed provisioning setting.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "string", "value": "eu-west"}))]
pub struct SettingIo {
    /// `string`, `integer` or `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A JSON string, integer or boolean matching `type`.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

fn settings_in(raw: BTreeMap<String, SettingIo>) -> BTreeMap<String, SettingInput> {
    raw.into_iter()
        .map(|(k, v)| {
            (
                k,
                SettingInput {
                    kind: v.kind,
                    value: v.value,
                },
            )
        })
        .collect()
}

pub(crate) fn settings_out(s: &Settings) -> BTreeMap<String, SettingIo> {
    s.iter()
        .map(|(k, v)| {
            let value = match v {
                SettingValue::String(s) => serde_json::Value::String(s.clone()),
                SettingValue::Integer(n) => serde_json::Value::from(*n),
                SettingValue::Boolean(b) => serde_json::Value::Bool(*b),
            };
            (
                k.clone(),
                SettingIo {
                    kind: v.type_name().into(),
                    value,
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Resource categories
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceCategoryOut {
    pub id: i64,
    pub owner_account_id: i64,
    pub code: String,
    pub name: LocalizedText,
    /// Up-sell: resources of this category are sold only together with this resource type.
    pub parent_resource_type_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ResourceCategory> for ResourceCategoryOut {
    fn from(c: ResourceCategory) -> Self {
        Self {
            id: c.id.0,
            owner_account_id: c.owner_account_id.0,
            code: c.code.as_str().into(),
            name: (&c.name).into(),
            parent_resource_type_id: c.parent_resource_type_id.map(|t| t.0),
            created_at: iso(c.created_at),
            updated_at: iso(c.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateResourceCategoryIn {
    /// 1–64 of letters, digits, `_ . -`; unique per owner.
    pub code: String,
    pub name: LocalizedText,
    /// A resource type visible to the owner (its own or a vendor's).
    pub parent_resource_type_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateResourceCategoryIn {
    pub code: Option<String>,
    pub name: Option<LocalizedText>,
    /// `null` removes the up-sell rule.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub parent_resource_type_id: Option<Option<i64>>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/resource-categories", tag = "catalog", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = PageOut<ResourceCategoryOut>), ProblemResponses))]
pub(crate) async fn list_resource_categories(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<ResourceCategoryOut>>> {
    can_read(&st, &auth, AccountId(id), true).await?;
    let page = st
        .db
        .resource_categories()
        .list(AccountId(id), q.after()?, q.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        page.items.into_iter().map(Into::into).collect(),
        page.next,
    )))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/resource-categories", tag = "catalog", params(("id" = i64, Path)),
    request_body = CreateResourceCategoryIn, responses((status = 201, body = ResourceCategoryOut), ProblemResponses))]
async fn create_resource_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CreateResourceCategoryIn>,
) -> ApiResult<(StatusCode, Json<ResourceCategoryOut>)> {
    let owner = AccountId(id);
    check_new_owner(&st, &auth, owner).await?;
    let input = ResourceCategoryInput {
        code: body.code,
        name: body.name.into(),
        parent_resource_type_id: body.parent_resource_type_id,
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let refs: Vec<_> = input
        .parent_resource_type_id
        .map(ResourceTypeId)
        .into_iter()
        .collect();
    let visible = ResourceTypes::visible_in(&mut tx, owner, &refs).await?;
    let data = input.validate(&visible)?;
    let c = ResourceCategories::create(&mut tx, owner, &data, now)
        .await
        .map_err(code_taken)?;
    emit(
        &mut tx,
        now,
        "resource_category.created",
        owner,
        &auth,
        "resource_category",
        c.id.0,
        json!({"code": c.code.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

#[utoipa::path(get, path = "/api/v1/resource-categories/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = ResourceCategoryOut), ProblemResponses))]
async fn get_resource_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<ResourceCategoryOut>> {
    let c = st
        .db
        .resource_categories()
        .get(ResourceCategoryId(id))
        .await?;
    can_read(&st, &auth, c.owner_account_id, true).await?;
    Ok(Json(c.into()))
}

#[utoipa::path(patch, path = "/api/v1/resource-categories/{id}", tag = "catalog", params(("id" = i64, Path)),
    request_body = UpdateResourceCategoryIn, responses((status = 200, body = ResourceCategoryOut), ProblemResponses))]
async fn update_resource_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateResourceCategoryIn>,
) -> ApiResult<Json<ResourceCategoryOut>> {
    let current = st
        .db
        .resource_categories()
        .get(ResourceCategoryId(id))
        .await?;
    let owner = current.owner_account_id;
    can_manage(&st, &auth, owner, true).await?;
    let patch = ResourceCategoryPatch {
        code: body.code,
        name: body.name.map(Into::into),
        parent_resource_type_id: body.parent_resource_type_id,
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let refs: Vec<_> = patch.referenced_type().into_iter().collect();
    let visible = ResourceTypes::visible_in(&mut tx, owner, &refs).await?;
    let data = patch.apply(&current, &visible)?;
    let c = ResourceCategories::update(&mut tx, current.id, &data, now)
        .await
        .map_err(code_taken)?;
    emit(
        &mut tx,
        now,
        "resource_category.updated",
        owner,
        &auth,
        "resource_category",
        c.id.0,
        json!({"code": c.code.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(c.into()))
}

#[utoipa::path(delete, path = "/api/v1/resource-categories/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_resource_category(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let current = st
        .db
        .resource_categories()
        .get(ResourceCategoryId(id))
        .await?;
    can_manage(&st, &auth, current.owner_account_id, true).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    ResourceCategories::delete(&mut tx, current.id)
        .await
        .map_err(in_use)?;
    emit(
        &mut tx,
        now,
        "resource_category.deleted",
        current.owner_account_id,
        &auth,
        "resource_category",
        id,
        json!({"code": current.code.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Resource types
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceTypeOut {
    pub id: i64,
    pub owner_account_id: i64,
    pub code: String,
    /// The connector (service) that provisions it.
    pub service: String,
    pub unit: String,
    /// `quantity` (units, shown as a gauge against the limit) or `boolean` (a feature, on or off).
    pub kind: String,
    pub name: LocalizedText,
    pub description: Option<LocalizedText>,
    pub category_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ResourceType> for ResourceTypeOut {
    fn from(t: ResourceType) -> Self {
        Self {
            id: t.id.0,
            owner_account_id: t.owner_account_id.0,
            code: t.code.as_str().into(),
            service: t.service.as_str().into(),
            unit: t.unit,
            kind: t.kind.as_str().into(),
            name: (&t.name).into(),
            description: t.description.as_ref().map(Into::into),
            category_id: t.category_id.map(|c| c.0),
            created_at: iso(t.created_at),
            updated_at: iso(t.updated_at),
        }
    }
}

/// A resource type's `kind` field, if given (a field error names it otherwise).
fn parse_kind(kind: Option<&str>) -> ApiResult<Option<ResourceKind>> {
    kind.map(ResourceKind::parse)
        .transpose()
        .map_err(ApiError::from)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateResourceTypeIn {
    /// 1–64 of letters, digits, `_ . -`; unique per owner.
    pub code: String,
    /// The connector's service name, same rules as `code`.
    pub service: String,
    /// 1–32 characters, e.g. `GB`, `mailbox`.
    pub unit: String,
    /// `quantity` (the default) or `boolean` (a feature that is on or off).
    #[serde(default)]
    pub kind: Option<String>,
    pub name: LocalizedText,
    pub description: Option<LocalizedText>,
    /// A resource category of the same owner.
    pub category_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateResourceTypeIn {
    pub code: Option<String>,
    pub service: Option<String>,
    pub unit: Option<String>,
    /// `quantity` or `boolean`.
    pub kind: Option<String>,
    pub name: Option<LocalizedText>,
    /// `null` removes the description.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<LocalizedText>)]
    pub description: Option<Option<LocalizedText>>,
    /// `null` takes the type out of its category.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub category_id: Option<Option<i64>>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/resource-types", tag = "catalog", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = PageOut<ResourceTypeOut>), ProblemResponses))]
pub(crate) async fn list_resource_types(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<ResourceTypeOut>>> {
    can_read(&st, &auth, AccountId(id), true).await?;
    let page = st
        .db
        .resource_types()
        .list(AccountId(id), q.after()?, q.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        page.items.into_iter().map(Into::into).collect(),
        page.next,
    )))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/resource-types", tag = "catalog", params(("id" = i64, Path)),
    request_body = CreateResourceTypeIn, responses((status = 201, body = ResourceTypeOut), ProblemResponses))]
pub(crate) async fn create_resource_type(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CreateResourceTypeIn>,
) -> ApiResult<(StatusCode, Json<ResourceTypeOut>)> {
    let owner = AccountId(id);
    check_new_owner(&st, &auth, owner).await?;
    let input = ResourceTypeInput {
        code: body.code,
        service: body.service,
        unit: body.unit,
        kind: parse_kind(body.kind.as_deref())?.unwrap_or_default(),
        name: body.name.into(),
        description: body.description.map(Into::into),
        category_id: body.category_id,
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let refs: Vec<_> = input
        .category_id
        .map(ResourceCategoryId)
        .into_iter()
        .collect();
    let own = ResourceCategories::of_owner_in(&mut tx, owner, &refs).await?;
    let data = input.validate(&own)?;
    let t = ResourceTypes::create(&mut tx, owner, &data, now)
        .await
        .map_err(code_taken)?;
    emit(
        &mut tx,
        now,
        "resource_type.created",
        owner,
        &auth,
        "resource_type",
        t.id.0,
        json!({"code": t.code.as_str(), "service": t.service.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

#[utoipa::path(get, path = "/api/v1/resource-types/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = ResourceTypeOut), ProblemResponses))]
pub(crate) async fn get_resource_type(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<ResourceTypeOut>> {
    let t = st.db.resource_types().get(ResourceTypeId(id)).await?;
    can_read(&st, &auth, t.owner_account_id, true).await?;
    Ok(Json(t.into()))
}

#[utoipa::path(patch, path = "/api/v1/resource-types/{id}", tag = "catalog", params(("id" = i64, Path)),
    request_body = UpdateResourceTypeIn, responses((status = 200, body = ResourceTypeOut), ProblemResponses))]
pub(crate) async fn update_resource_type(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateResourceTypeIn>,
) -> ApiResult<Json<ResourceTypeOut>> {
    let current = st.db.resource_types().get(ResourceTypeId(id)).await?;
    let owner = current.owner_account_id;
    can_manage(&st, &auth, owner, true).await?;
    let patch = ResourceTypePatch {
        code: body.code,
        service: body.service,
        unit: body.unit,
        kind: parse_kind(body.kind.as_deref())?,
        name: body.name.map(Into::into),
        description: body.description.map(|d| d.map(Into::into)),
        category_id: body.category_id,
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let refs: Vec<_> = patch.referenced_category().into_iter().collect();
    let own = ResourceCategories::of_owner_in(&mut tx, owner, &refs).await?;
    let data = patch.apply(&current, &own)?;
    let t = ResourceTypes::update(&mut tx, current.id, &data, now)
        .await
        .map_err(code_taken)?;
    emit(
        &mut tx,
        now,
        "resource_type.updated",
        owner,
        &auth,
        "resource_type",
        t.id.0,
        json!({"code": t.code.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(t.into()))
}

#[utoipa::path(delete, path = "/api/v1/resource-types/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_resource_type(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let current = st.db.resource_types().get(ResourceTypeId(id)).await?;
    can_manage(&st, &auth, current.owner_account_id, true).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    ResourceTypes::delete(&mut tx, current.id)
        .await
        .map_err(in_use)?;
    emit(
        &mut tx,
        now,
        "resource_type.deleted",
        current.owner_account_id,
        &auth,
        "resource_type",
        id,
        json!({"code": current.code.as_str()}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Service templates
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateResourceIo {
    /// A resource type owned by the template's owner or one of its vendors.
    pub resource_type_id: i64,
    /// −1 for unlimited, else ≥ 0.
    pub default_limit: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceTemplateOut {
    pub id: i64,
    pub owner_account_id: i64,
    pub name: String,
    pub resources: Vec<TemplateResourceIo>,
    /// Provisioning settings passed to connectors.
    pub settings: BTreeMap<String, SettingIo>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ServiceTemplate> for ServiceTemplateOut {
    fn from(t: ServiceTemplate) -> Self {
        Self {
            id: t.id.0,
            owner_account_id: t.owner_account_id.0,
            name: t.name,
            resources: t
                .resources
                .iter()
                .map(|r| TemplateResourceIo {
                    resource_type_id: r.resource_type_id.0,
                    default_limit: r.default_limit,
                })
                .collect(),
            settings: settings_out(&t.settings),
            created_at: iso(t.created_at),
            updated_at: iso(t.updated_at),
        }
    }
}

fn resources_in(r: Vec<TemplateResourceIo>) -> Vec<TemplateResourceInput> {
    r.into_iter()
        .map(|r| TemplateResourceInput {
            resource_type_id: r.resource_type_id,
            default_limit: r.default_limit,
        })
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceTemplateIn {
    /// Plain text, at most 200 characters.
    pub name: String,
    #[serde(default)]
    pub resources: Vec<TemplateResourceIo>,
    /// Keys: 1–64 of `a-z 0-9 _ . -`.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingIo>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServiceTemplateIn {
    pub name: Option<String>,
    /// Replaces the whole list.
    pub resources: Option<Vec<TemplateResourceIo>>,
    /// Replaces the whole map. Overrides of keys that disappear or change type no longer apply.
    pub settings: Option<BTreeMap<String, SettingIo>>,
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/service-templates", tag = "catalog", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = PageOut<ServiceTemplateOut>), ProblemResponses))]
pub(crate) async fn list_service_templates(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<ServiceTemplateOut>>> {
    can_read(&st, &auth, AccountId(id), true).await?;
    let page = st
        .db
        .service_templates()
        .list(AccountId(id), q.after()?, q.limit()?)
        .await?;
    Ok(Json(PageOut::new(
        page.items.into_iter().map(Into::into).collect(),
        page.next,
    )))
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/service-templates", tag = "catalog", params(("id" = i64, Path)),
    request_body = CreateServiceTemplateIn, responses((status = 201, body = ServiceTemplateOut), ProblemResponses))]
async fn create_service_template(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CreateServiceTemplateIn>,
) -> ApiResult<(StatusCode, Json<ServiceTemplateOut>)> {
    let owner = AccountId(id);
    check_new_owner(&st, &auth, owner).await?;
    let input = ServiceTemplateInput {
        name: body.name,
        resources: resources_in(body.resources),
        settings: settings_in(body.settings),
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let visible = ResourceTypes::visible_in(&mut tx, owner, &input.referenced_types()).await?;
    let data = input.validate(&visible)?;
    let t = ServiceTemplates::create(&mut tx, owner, &data, now).await?;
    emit(
        &mut tx,
        now,
        "service_template.created",
        owner,
        &auth,
        "service_template",
        t.id.0,
        json!({"name": t.name}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

#[utoipa::path(get, path = "/api/v1/service-templates/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = ServiceTemplateOut), ProblemResponses))]
pub(crate) async fn get_service_template(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<ServiceTemplateOut>> {
    let t = st.db.service_templates().get(ServiceTemplateId(id)).await?;
    can_read(&st, &auth, t.owner_account_id, true).await?;
    Ok(Json(t.into()))
}

#[utoipa::path(patch, path = "/api/v1/service-templates/{id}", tag = "catalog", params(("id" = i64, Path)),
    request_body = UpdateServiceTemplateIn, responses((status = 200, body = ServiceTemplateOut), ProblemResponses))]
pub(crate) async fn update_service_template(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateServiceTemplateIn>,
) -> ApiResult<Json<ServiceTemplateOut>> {
    let current = st.db.service_templates().get(ServiceTemplateId(id)).await?;
    let owner = current.owner_account_id;
    can_manage(&st, &auth, owner, true).await?;
    let patch = ServiceTemplatePatch {
        name: body.name,
        resources: body.resources.map(resources_in),
        settings: body.settings.map(settings_in),
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let visible =
        ResourceTypes::visible_in(&mut tx, owner, &patch.referenced_types(&current)).await?;
    let data = patch.apply(&current, &visible)?;
    let t = ServiceTemplates::update(&mut tx, current.id, &data, now).await?;
    emit(
        &mut tx,
        now,
        "service_template.updated",
        owner,
        &auth,
        "service_template",
        t.id.0,
        json!({"name": t.name}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(t.into()))
}

#[utoipa::path(delete, path = "/api/v1/service-templates/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted, with its overrides"), ProblemResponses))]
async fn delete_service_template(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let current = st.db.service_templates().get(ServiceTemplateId(id)).await?;
    can_manage(&st, &auth, current.owner_account_id, true).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    ServiceTemplates::delete(&mut tx, current.id)
        .await
        .map_err(in_use)?;
    emit(
        &mut tx,
        now,
        "service_template.deleted",
        current.owner_account_id,
        &auth,
        "service_template",
        id,
        json!({"name": current.name}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Provisioning overrides
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct OverrideOut {
    pub template_id: i64,
    /// The reseller whose customers get these values.
    pub account_id: i64,
    pub settings: BTreeMap<String, SettingIo>,
    pub updated_at: String,
}

impl From<TemplateOverride> for OverrideOut {
    fn from(o: TemplateOverride) -> Self {
        Self {
            template_id: o.template_id.0,
            account_id: o.account_id.0,
            settings: settings_out(&o.settings),
            updated_at: iso(o.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutOverrideIn {
    /// Only keys the template defines, each with the template's type.
    pub settings: BTreeMap<String, SettingIo>,
}

#[utoipa::path(get, path = "/api/v1/service-templates/{id}/overrides", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<OverrideOut>, description = "Overrides set by the caller's account or accounts below it"), ProblemResponses))]
pub(crate) async fn list_overrides(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<OverrideOut>>> {
    let t = st.db.service_templates().get(ServiceTemplateId(id)).await?;
    can_read(&st, &auth, t.owner_account_id, true).await?;
    // Below one's own account only with the privileges the rule asks for there.
    let below = authorize(
        &auth.actor,
        Relation::Descendant { depth: 1 },
        Action::ViewCatalog,
    )
    .is_ok();
    let overrides = st
        .db
        .service_templates()
        .overrides_within(
            t.id,
            auth.actor.account_id,
            if below { i64::MAX } else { 0 },
        )
        .await?;
    Ok(Json(overrides.into_iter().map(Into::into).collect()))
}

/// The template, checked visible to the caller, and the reseller account, checked
/// manageable by the caller.
async fn override_target(
    st: &AppState,
    auth: &Authed,
    id: i64,
    account_id: i64,
) -> ApiResult<ServiceTemplate> {
    let t = st.db.service_templates().get(ServiceTemplateId(id)).await?;
    can_read(st, auth, t.owner_account_id, true).await?;
    auth.check(st, AccountId(account_id), Action::ManageCatalog)
        .await?;
    Ok(t)
}

#[utoipa::path(put, path = "/api/v1/service-templates/{id}/overrides/{account_id}", tag = "catalog",
    params(("id" = i64, Path), ("account_id" = i64, Path, description = "A reseller: the caller's account or one below it")),
    request_body = PutOverrideIn, responses((status = 200, body = OverrideOut), ProblemResponses))]
pub(crate) async fn put_override(
    State(st): State<AppState>,
    auth: Authed,
    Path((id, account_id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<PutOverrideIn>,
) -> ApiResult<Json<OverrideOut>> {
    let t = override_target(&st, &auth, id, account_id).await?;
    let account = st.db.accounts().get(AccountId(account_id)).await?;
    check_override_account(account.kind)?;
    // A reseller overrides a template delegated to it (or its own), for its customers.
    if st
        .db
        .accounts()
        .relation_depth(t.owner_account_id, account.id)
        .await?
        .is_none()
    {
        return Err(ApiError::field(
            "account_id",
            "template_not_available",
            "the template belongs to neither this reseller nor one of its vendors",
        ));
    }
    let settings = validate_override(&t.settings, &settings_in(body.settings))?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let o = ServiceTemplates::set_override(&mut tx, t.id, account.id, &settings, now).await?;
    emit(&mut tx, now, "template_override.set", account.id, &auth, "service_template", t.id.0,
        json!({"template_id": t.id.0, "account_id": account.id.0, "keys": settings.keys().collect::<Vec<_>>()})).await?;
    tx.commit().await?;
    Ok(Json(o.into()))
}

#[utoipa::path(delete, path = "/api/v1/service-templates/{id}/overrides/{account_id}", tag = "catalog",
    params(("id" = i64, Path), ("account_id" = i64, Path)), responses((status = 204, description = "Removed"), ProblemResponses))]
pub(crate) async fn delete_override(
    State(st): State<AppState>,
    auth: Authed,
    Path((id, account_id)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    let t = override_target(&st, &auth, id, account_id).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if !ServiceTemplates::delete_override(&mut tx, t.id, AccountId(account_id)).await? {
        return Err(ApiError::not_found().detail("the account has no override of this template"));
    }
    emit(
        &mut tx,
        now,
        "template_override.deleted",
        AccountId(account_id),
        &auth,
        "service_template",
        t.id.0,
        json!({"template_id": t.id.0, "account_id": account_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EffectiveParams {
    /// The customer (or a seller, for what its customers receive).
    pub account_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveSettingsOut {
    pub template_id: i64,
    pub account_id: i64,
    /// The template's settings with the overrides of the resellers above the account
    /// applied from the top down: the nearest reseller's value wins.
    pub settings: BTreeMap<String, SettingIo>,
    /// Where each value comes from: the reseller account whose override gave it, or
    /// `null` for the template's own value.
    pub sources: BTreeMap<String, Option<i64>>,
}

#[utoipa::path(get, path = "/api/v1/service-templates/{id}/effective-settings", tag = "catalog", params(("id" = i64, Path), EffectiveParams),
    responses((status = 200, body = EffectiveSettingsOut, description = "The values a connector receives for the account"), ProblemResponses))]
pub(crate) async fn effective_settings(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<EffectiveParams>,
) -> ApiResult<Json<EffectiveSettingsOut>> {
    let t = st.db.service_templates().get(ServiceTemplateId(id)).await?;
    can_read(&st, &auth, t.owner_account_id, true).await?;
    let account = AccountId(q.account_id);
    auth.check(&st, account, Action::ViewCatalog).await?;
    let sourced = st
        .db
        .service_templates()
        .effective_settings_sourced_for(t.id, account)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::field(
                "account_id",
                "template_not_available",
                "the template is not available to this account",
            ),
            o => o.into(),
        })?;
    let settings: Settings = sourced
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    Ok(Json(EffectiveSettingsOut {
        template_id: t.id.0,
        account_id: account.0,
        settings: settings_out(&settings),
        sources: sourced
            .into_iter()
            .map(|(k, (_, from))| (k, from.map(|a| a.0)))
            .collect(),
    }))
}

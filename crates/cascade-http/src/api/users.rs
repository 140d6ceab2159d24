//! `/api/v1/…/users` and roles.

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PageOut, PageParams};
use crate::password::hash_password_off_runtime;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cascade_domain::authz::Action;
use cascade_domain::ids::{AccountId, RoleId, UserId};
use cascade_domain::privilege::{Grant, PrivilegeSet};
use cascade_domain::user::{NewUserInput, User, UserPatchInput};
use cascade_domain::validation::{ValidationErrors, bounded_text, optional_text};
use cascade_store::users::{Role, Roles, Users};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(attach_role))
        .routes(routes!(detach_role))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, update_role))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantOut {
    pub privilege: String,
    /// For levelled privileges (`MANAGE_DOMAINS`): the level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

pub fn grants_out(g: &[Grant]) -> Vec<GrantOut> {
    g.iter()
        .map(|g| GrantOut {
            privilege: g.privilege.as_str().into(),
            level: g.level.map(|l| l.as_str().into()),
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleOut {
    pub id: i64,
    /// The account that defined this custom role; absent for built-in roles.
    pub account_id: Option<i64>,
    /// `account_admin`, `billing_staff`, `technical_staff` for built-in roles.
    pub builtin: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub grants: Vec<GrantOut>,
}

impl From<Role> for RoleOut {
    fn from(r: Role) -> Self {
        RoleOut {
            id: r.id.0,
            account_id: r.account_id.map(|a| a.0),
            builtin: r.builtin_key,
            name: r.name,
            description: r.description,
            grants: grants_out(&r.grants),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: i64,
    pub account_id: i64,
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub language: Option<String>,
    pub disabled: bool,
    pub roles: Vec<RoleOut>,
    pub created_at: String,
    pub updated_at: String,
}

pub async fn user_out(st: &AppState, u: User) -> ApiResult<UserOut> {
    let roles = st.db.users().roles_of(u.id).await?;
    Ok(UserOut {
        id: u.id.0,
        account_id: u.account_id.0,
        login: u.login.as_str().into(),
        display_name: u.display_name,
        email: u.email.as_str().into(),
        language: u.language.map(|l| l.as_str().into()),
        disabled: u.disabled,
        roles: roles.into_iter().map(Into::into).collect(),
        created_at: iso(u.created_at),
        updated_at: iso(u.updated_at),
    })
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/users", tag = "users", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = PageOut<UserOut>), ProblemResponses))]
pub(crate) async fn list_users(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<PageOut<UserOut>>> {
    let id = AccountId(id);
    auth.check(&st, id, Action::ViewUsers).await?;
    let page = st
        .db
        .users()
        .list_for_account(id, q.after()?, q.limit()?)
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for u in page.items {
        items.push(user_out(&st, u).await?);
    }
    Ok(Json(PageOut::new(items, page.next)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserIn {
    /// 3–100 characters: letters, digits, `. _ - @ +`; unique in the installation.
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub language: Option<String>,
    /// Optional: a user without a password can only use API tokens issued for it… or
    /// get a password later.
    pub password: Option<String>,
    /// Roles to attach at creation.
    #[serde(default)]
    pub role_ids: Vec<i64>,
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/users", tag = "users", params(("id" = i64, Path)), request_body = CreateUserIn,
    responses((status = 201, body = UserOut), ProblemResponses))]
pub(crate) async fn create_user(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CreateUserIn>,
) -> ApiResult<(StatusCode, Json<UserOut>)> {
    let account = AccountId(id);
    auth.check(&st, account, Action::CreateUser).await?;
    let input = NewUserInput {
        login: body.login,
        display_name: body.display_name,
        email: body.email,
        language: body.language,
        password: body.password.clone(),
    };
    let new = input.validate()?;
    let mut roles = Vec::new();
    for (i, r) in body.role_ids.iter().enumerate() {
        roles.push(
            assignable_role(&st, &auth, RoleId(*r), account)
                .await
                .map_err(|e| field_err(e, &format!("role_ids[{i}]")))?,
        );
    }
    let hash = match body.password.clone() {
        Some(p) => Some(hash_password_off_runtime(p).await?),
        None => None,
    };
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let user = Users::create(&mut tx, account, &new, hash.as_deref(), now)
        .await
        .map_err(|e| match e {
            cascade_store::StoreError::Conflict { .. } => {
                ApiError::field("login", "login_taken", "this login is already taken")
            }
            o => o.into(),
        })?;
    for r in &roles {
        Users::attach_role(&mut tx, user.id, r.id).await?;
    }
    emit(&mut tx, now, "user.created", account, &auth, "user", user.id.0, json!({
        "user_id": user.id.0, "login": user.login.as_str(), "email": user.email.as_str(),
        "display_name": user.display_name, "language": user.language.as_ref().map(|l| l.as_str()),
    })).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user_out(&st, user).await?)))
}

fn field_err(e: ApiError, field: &str) -> ApiError {
    if e.status == StatusCode::NOT_FOUND {
        ApiError::field(field, "unknown_role", "no such role")
    } else {
        e
    }
}

/// A role may be given to a user of `target` by `auth` when it is built in or defined
/// by an account between the caller's and the target (inclusive), and when the caller
/// holds every privilege the role grants: nobody hands out more than it has.
pub(crate) async fn assignable_role(
    st: &AppState,
    auth: &Authed,
    role: RoleId,
    target: AccountId,
) -> ApiResult<Role> {
    let r = st.db.roles().get(role).await?;
    if let Some(owner) = r.account_id {
        let caller_above_owner = st
            .db
            .accounts()
            .relation_depth(auth.actor.account_id, owner)
            .await?
            .is_some();
        let owner_above_target = st
            .db
            .accounts()
            .relation_depth(owner, target)
            .await?
            .is_some();
        if !(caller_above_owner && owner_above_target) {
            return Err(ApiError::not_found());
        }
    }
    if !auth.actor.privileges.covers(&r.privileges()) {
        return Err(ApiError::forbidden(
            "a role can only be given by a user who holds all of its privileges",
        ));
    }
    Ok(r)
}

/// Load a user and check the caller may act on it.
async fn user_for(
    st: &AppState,
    auth: &Authed,
    id: UserId,
    action: impl Fn(bool) -> Action,
) -> ApiResult<User> {
    let user = st.db.users().get(id).await?;
    auth.check(st, user.account_id, action(user.id == auth.actor.user_id))
        .await?;
    Ok(user)
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = UserOut), ProblemResponses))]
async fn get_user(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<UserOut>> {
    let user = if UserId(id) == auth.actor.user_id {
        auth.user.clone()
    } else {
        user_for(&st, &auth, UserId(id), |_| Action::ViewUsers).await?
    };
    Ok(Json(user_out(&st, user).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserIn {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = UpdateUserIn,
    responses((status = 200, body = UserOut), ProblemResponses))]
pub(crate) async fn update_user(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateUserIn>,
) -> ApiResult<Json<UserOut>> {
    // Anyone may edit their own details; others need the user-management privileges.
    let current = if UserId(id) == auth.actor.user_id {
        auth.user.clone()
    } else {
        user_for(&st, &auth, UserId(id), |is_self| Action::ManageUser {
            is_self,
        })
        .await?
    };
    let next = UserPatchInput {
        display_name: body.display_name,
        email: body.email,
        language: body.language,
    }
    .apply(&current)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let user = Users::update(&mut tx, &next, now).await?;
    emit(
        &mut tx,
        now,
        "user.updated",
        user.account_id,
        &auth,
        "user",
        user.id.0,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(user_out(&st, user).await?))
}

async fn set_disabled(
    st: AppState,
    auth: Authed,
    id: i64,
    disabled: bool,
) -> ApiResult<Json<UserOut>> {
    let current = user_for(&st, &auth, UserId(id), |is_self| Action::ManageUser {
        is_self,
    })
    .await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let user = Users::set_disabled(&mut tx, current.id, disabled, now).await?;
    let kind = if disabled {
        "user.disabled"
    } else {
        "user.enabled"
    };
    emit(
        &mut tx,
        now,
        kind,
        user.account_id,
        &auth,
        "user",
        user.id.0,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(user_out(&st, user).await?))
}

#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = UserOut), ProblemResponses))]
async fn disable_user(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<UserOut>> {
    set_disabled(st, auth, id, true).await
}

#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = UserOut), ProblemResponses))]
async fn enable_user(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<UserOut>> {
    set_disabled(st, auth, id, false).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachRoleIn {
    pub role_id: i64,
}

#[utoipa::path(post, path = "/api/v1/users/{id}/roles", tag = "users", params(("id" = i64, Path)), request_body = AttachRoleIn,
    responses((status = 200, body = UserOut), ProblemResponses))]
pub(crate) async fn attach_role(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<AttachRoleIn>,
) -> ApiResult<Json<UserOut>> {
    let user = user_for(&st, &auth, UserId(id), |is_self| Action::ManageUser {
        is_self,
    })
    .await?;
    let role = assignable_role(&st, &auth, RoleId(body.role_id), user.account_id)
        .await
        .map_err(|e| field_err(e, "role_id"))?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if Users::attach_role(&mut tx, user.id, role.id).await? {
        emit(
            &mut tx,
            now,
            "user.role_attached",
            user.account_id,
            &auth,
            "user",
            user.id.0,
            json!({"role_id": role.id.0}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(user_out(&st, user).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/roles/{role_id}", tag = "users", params(("id" = i64, Path), ("role_id" = i64, Path)),
    responses((status = 200, body = UserOut), ProblemResponses))]
pub(crate) async fn detach_role(
    State(st): State<AppState>,
    auth: Authed,
    Path((id, role_id)): Path<(i64, i64)>,
) -> ApiResult<Json<UserOut>> {
    let user = user_for(&st, &auth, UserId(id), |is_self| Action::ManageUser {
        is_self,
    })
    .await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if !Users::detach_role(&mut tx, user.id, RoleId(role_id)).await? {
        return Err(ApiError::not_found().detail("the user does not have this role"));
    }
    emit(
        &mut tx,
        now,
        "user.role_detached",
        user.account_id,
        &auth,
        "user",
        user.id.0,
        json!({"role_id": role_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(user_out(&st, user).await?))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}/roles", tag = "roles", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<RoleOut>, description = "Built-in roles and the account's custom roles"), ProblemResponses))]
pub(crate) async fn list_roles(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<RoleOut>>> {
    auth.check(&st, AccountId(id), Action::ViewRoles).await?;
    Ok(Json(
        st.db
            .roles()
            .list_for_account(AccountId(id))
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantIn {
    /// e.g. `SHOW_PRICES`, `MANAGE_DOMAINS`.
    pub privilege: String,
    /// For `MANAGE_DOMAINS`: `disabled`, `manage_settings`, `manage_contacts`, `allow_transfer_out`, `place_orders`.
    pub level: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleIn {
    pub name: String,
    pub description: Option<String>,
    pub grants: Vec<GrantIn>,
}

struct ValidRole {
    name: String,
    description: Option<String>,
    grants: Vec<Grant>,
}

fn validate_role(auth: &Authed, body: RoleIn) -> ApiResult<ValidRole> {
    let mut errs = ValidationErrors::new();
    let name = errs.check("name", bounded_text(&body.name, 100));
    let description = errs
        .check(
            "description",
            optional_text(body.description.as_deref(), 500),
        )
        .flatten();
    let mut grants = Vec::new();
    for (i, g) in body.grants.iter().enumerate() {
        if let Some(g) = errs.check(
            &format!("grants[{i}]"),
            Grant::parse(&g.privilege, g.level.as_deref()),
        ) {
            if grants.iter().any(|x: &Grant| x.privilege == g.privilege) {
                errs.push(cascade_domain::FieldError::new(
                    format!("grants[{i}]"),
                    "duplicate_privilege",
                    "privilege listed twice",
                ));
            }
            grants.push(g);
        }
    }
    errs.into_result()?;
    if !auth
        .actor
        .privileges
        .covers(&PrivilegeSet::from_grants(grants.iter().copied()))
    {
        return Err(ApiError::forbidden(
            "a role can only grant privileges its creator holds",
        ));
    }
    Ok(ValidRole {
        name: name.unwrap_or_default(),
        description,
        grants,
    })
}

fn role_conflict(e: cascade_store::StoreError) -> ApiError {
    match e {
        cascade_store::StoreError::Conflict { .. } => ApiError::field(
            "name",
            "role_name_taken",
            "a role with this name already exists",
        ),
        o => o.into(),
    }
}

#[utoipa::path(post, path = "/api/v1/accounts/{id}/roles", tag = "roles", params(("id" = i64, Path)), request_body = RoleIn,
    responses((status = 201, body = RoleOut), ProblemResponses))]
async fn create_role(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<RoleIn>,
) -> ApiResult<(StatusCode, Json<RoleOut>)> {
    let account = AccountId(id);
    auth.check(&st, account, Action::ManageRoles).await?;
    let v = validate_role(&auth, body)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    let rid = Roles::create_custom(
        &mut tx,
        account,
        &v.name,
        v.description.as_deref(),
        &v.grants,
        now,
    )
    .await
    .map_err(role_conflict)?;
    emit(
        &mut tx,
        now,
        "role.created",
        account,
        &auth,
        "role",
        rid.0,
        json!({"name": v.name}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(st.db.roles().get(rid).await?.into()),
    ))
}

#[utoipa::path(get, path = "/api/v1/roles/{id}", tag = "roles", params(("id" = i64, Path)),
    responses((status = 200, body = RoleOut), ProblemResponses))]
async fn get_role(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<RoleOut>> {
    let role = st.db.roles().get(RoleId(id)).await?;
    if let Some(owner) = role.account_id {
        auth.check(&st, owner, Action::ViewRoles).await?;
    }
    Ok(Json(role.into()))
}

#[utoipa::path(patch, path = "/api/v1/roles/{id}", tag = "roles", params(("id" = i64, Path)), request_body = RoleIn,
    responses((status = 200, body = RoleOut), ProblemResponses))]
async fn update_role(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<RoleIn>,
) -> ApiResult<Json<RoleOut>> {
    let role = st.db.roles().get(RoleId(id)).await?;
    let Some(owner) = role.account_id else {
        return Err(ApiError::forbidden("built-in roles cannot be changed"));
    };
    auth.check(&st, owner, Action::ManageRoles).await?;
    let v = validate_role(&auth, body)?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    Roles::update_custom(
        &mut tx,
        role.id,
        &v.name,
        v.description.as_deref(),
        &v.grants,
    )
    .await
    .map_err(role_conflict)?;
    emit(
        &mut tx,
        now,
        "role.updated",
        owner,
        &auth,
        "role",
        role.id.0,
        json!({"name": v.name}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(st.db.roles().get(role.id).await?.into()))
}

//! The seller panel's account administration pages: the users and roles of an account,
//! and the billing screens customers see (inherited down the tree, overridable per
//! reseller).
//!
//! Users and roles go through the API's handlers (`api::users`), so the rule of
//! `authz::authorize` applies unchanged: the users of *other* accounts below the caller
//! need `MANAGE_AFFILIATED_ACCOUNTS`, the users of the caller's own account need
//! `USERS_MANAGE`, nobody changes their own roles, and a role can only be given by
//! someone who holds all of its privileges. A refusal is the API's problem, shown as an
//! error page; nothing is changed. Billing visibility goes through
//! `api::billing_visibility` the same way.

use super::layout::csrf_field;
use super::{CsrfForm, Ctx, Pairs, WebError, WebResult, field, page};
use crate::api::billing_visibility::{self, ScreensIo};
use crate::api::users::{self, AttachRoleIn, CreateUserIn, RoleOut, UpdateUserIn};
use crate::auth::Authed;
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use cascade_domain::account::AccountKind;
use cascade_domain::billing::visibility::BillingScreens;
use maud::html;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/seller/accounts/{id}/users",
            get(users_page).post(create_user),
        )
        .route("/seller/users/{id}", post(update_user))
        .route("/seller/users/{id}/roles", post(attach_role))
        .route("/seller/users/{id}/roles/{role}/detach", post(detach_role))
        .route("/seller/billing-visibility", get(own_visibility))
        .route(
            "/seller/accounts/{id}/billing-visibility",
            get(visibility_page).post(save_visibility),
        )
}

/// The logged-in seller; anyone else gets a 404.
fn seller(ctx: &Ctx) -> WebResult<Authed> {
    let auth = ctx.authed()?.clone();
    match ctx.account.as_ref() {
        Some(a) if a.kind != AccountKind::Customer => Ok(auth),
        _ => Err(WebError::not_found()),
    }
}

fn back(account: i64) -> axum::response::Response {
    Redirect::to(&format!("/seller/accounts/{account}/users")).into_response()
}

fn role_label(r: &RoleOut) -> String {
    r.name.clone()
}

/// The users of an account with their roles; forms to create users, change details and
/// attach or detach roles.
async fn users_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let auth = seller(&ctx)?;
    let acc = crate::api::accounts::get_account(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let list = users::list_users(
        State(st.clone()),
        auth.clone(),
        Path(id),
        ApiQuery(PageParams {
            limit: Some(100),
            cursor: None,
        }),
    )
    .await?
    .0;
    let roles = users::list_roles(State(st), auth, Path(id)).await?.0;
    let body = html! {
        p { strong { (acc.name) } " · " (ctx.t(&format!("seller.kind.{}", acc.kind))) }
        table id="users" {
            thead { tr {
                th { (ctx.t("seller.users.login")) } th { (ctx.t("seller.users.name")) } th { (ctx.t("seller.users.email")) }
                th { (ctx.t("seller.users.roles")) } th { }
            } }
            tbody {
                @for u in &list.items {
                    tr data-user=(u.id) {
                        td { code { (u.login) } @if u.disabled { " " span class="badge" { (ctx.t("seller.users.disabled")) } } }
                        td { (u.display_name) }
                        td { (u.email) }
                        td class="roles" {
                            @for r in &u.roles {
                                form method="post" action={ "/seller/users/" (u.id) "/roles/" (r.id) "/detach" } class="inline role" {
                                    (csrf_field(&ctx))
                                    span class="badge" { (role_label(r)) }
                                    button type="submit" class="link" aria-label={ (ctx.t("seller.users.detach")) " " (r.name) } { "×" }
                                }
                            }
                        }
                        td class="actions" {
                            form method="post" action={ "/seller/users/" (u.id) "/roles" } class="inline attach" {
                                (csrf_field(&ctx))
                                select name="role_id" aria-label=(ctx.t("seller.users.attach")) {
                                    @for r in roles.iter().filter(|r| !u.roles.iter().any(|x| x.id == r.id)) {
                                        option value=(r.id) { (role_label(r)) }
                                    }
                                }
                                button type="submit" { (ctx.t("seller.users.attach")) }
                            }
                            details {
                                summary { (ctx.t("seller.users.edit")) }
                                form method="post" action={ "/seller/users/" (u.id) } class="card narrow edit-user" {
                                    (csrf_field(&ctx))
                                    label { (ctx.t("seller.users.name")) input name="display_name" value=(u.display_name) required; }
                                    label { (ctx.t("seller.users.email")) input name="email" type="email" value=(u.email) required; }
                                    button type="submit" class="primary" { (ctx.t("seller.save")) }
                                }
                            }
                        }
                    }
                }
                @if list.items.is_empty() { tr { td colspan="5" class="muted" { (ctx.t("seller.none")) } } }
            }
        }
        h2 class="section-title" { (ctx.t("seller.users.create")) }
        form method="post" action={ "/seller/accounts/" (id) "/users" } class="card narrow" id="create-user" {
            (csrf_field(&ctx))
            label { (ctx.t("seller.users.login")) input name="login" required; }
            label { (ctx.t("seller.users.name")) input name="display_name" required; }
            label { (ctx.t("seller.users.email")) input name="email" type="email" required; }
            label { (ctx.t("seller.users.password")) input name="password" type="password" autocomplete="new-password"; }
            fieldset {
                legend { (ctx.t("seller.users.roles")) }
                @for r in &roles {
                    label { input type="checkbox" name="role_id" value=(r.id); " " (role_label(r)) }
                }
            }
            button type="submit" class="primary" { (ctx.t("seller.users.create")) }
        }
    };
    Ok(page(&ctx, ctx.t("seller.users.title"), body))
}

fn text(f: &Pairs, name: &str) -> Option<String> {
    field(f, name)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

async fn create_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let auth = seller(&ctx)?;
    let mut role_ids = Vec::new();
    for (k, v) in &f {
        if k == "role_id" {
            role_ids.push(v.parse().map_err(|_| {
                WebError::from(crate::error::ApiError::field(
                    "role_ids",
                    "unknown_role",
                    "no such role",
                ))
            })?);
        }
    }
    let body = CreateUserIn {
        login: field(&f, "login").unwrap_or("").trim().to_string(),
        display_name: field(&f, "display_name").unwrap_or("").to_string(),
        email: field(&f, "email").unwrap_or("").trim().to_string(),
        language: None,
        password: field(&f, "password")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        role_ids,
    };
    let _ = users::create_user(State(st), auth, Path(id), ApiJson(body)).await?;
    Ok(back(id))
}

async fn update_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let auth = seller(&ctx)?;
    let u = users::update_user(
        State(st),
        auth,
        Path(id),
        ApiJson(UpdateUserIn {
            display_name: text(&f, "display_name"),
            email: text(&f, "email"),
            language: None,
        }),
    )
    .await?
    .0;
    Ok(back(u.account_id))
}

async fn attach_role(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let auth = seller(&ctx)?;
    let role_id = field(&f, "role_id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            WebError::from(crate::error::ApiError::field(
                "role_id",
                "unknown_role",
                "no such role",
            ))
        })?;
    let u = users::attach_role(State(st), auth, Path(id), ApiJson(AttachRoleIn { role_id }))
        .await?
        .0;
    Ok(back(u.account_id))
}

#[derive(serde::Deserialize)]
struct Empty {}

async fn detach_role(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((id, role)): Path<(i64, i64)>,
    CsrfForm(_): CsrfForm<Empty>,
) -> WebResult {
    let auth = seller(&ctx)?;
    let u = users::detach_role(State(st), auth, Path((id, role)))
        .await?
        .0;
    Ok(back(u.account_id))
}

// ---------------------------------------------------------------------------------------
// Billing-screen visibility

async fn own_visibility(ctx: Ctx) -> WebResult {
    let auth = seller(&ctx)?;
    Ok(Redirect::to(&format!(
        "/seller/accounts/{}/billing-visibility",
        auth.actor.account_id.0
    ))
    .into_response())
}

async fn visibility_page(State(st): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> WebResult {
    let auth = seller(&ctx)?;
    let acc = crate::api::accounts::get_account(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    if acc.kind == "customer" {
        return Err(WebError::not_found());
    }
    let v = billing_visibility::get_visibility(State(st.clone()), auth.clone(), Path(id))
        .await?
        .0;
    let shown: BillingScreens = v.effective.into();
    let source = match v.inherited_from {
        Some(a) if a == id => ctx.t("seller.visibility.own").to_string(),
        Some(a) => {
            let name = st
                .db
                .accounts()
                .get(cascade_domain::ids::AccountId(a))
                .await
                .map(|x| x.name)
                .unwrap_or_default();
            ctx.tr
                .f("seller.visibility.inherited", &[("seller", &name)])
        }
        None => ctx.t("seller.visibility.default").to_string(),
    };
    let body = html! {
        p { strong { (acc.name) } }
        p id="visibility-source" class="notice" { (source) }
        form method="post" action={ "/seller/accounts/" (id) "/billing-visibility" } class="card narrow" id="billing-visibility" {
            (csrf_field(&ctx))
            fieldset {
                legend { (ctx.t("seller.visibility.screens")) }
                @for s in BillingScreens::NAMES {
                    label { input type="checkbox" name={ "s_" (s) } value="1" checked[shown.shows(s)]; " " (ctx.t(&format!("seller.visibility.{s}"))) }
                }
            }
            p class="muted" { (ctx.t("seller.visibility.hint")) }
            div class="actions" {
                button type="submit" name="action" value="set" class="primary" { (ctx.t("seller.visibility.save")) }
                @if v.own.is_some() {
                    button type="submit" name="action" value="reset" { (ctx.t("seller.visibility.reset")) }
                }
            }
        }
    };
    Ok(page(&ctx, ctx.t("seller.visibility.title"), body))
}

async fn save_visibility(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<Pairs>,
) -> WebResult {
    let auth = seller(&ctx)?;
    if field(&f, "action") == Some("reset") {
        let _ = billing_visibility::reset_visibility(State(st), auth, Path(id)).await?;
    } else {
        let on = |n: &str| field(&f, &format!("s_{n}")).is_some();
        let body = ScreensIo {
            invoices: on("invoices"),
            payments: on("payments"),
            balance: on("balance"),
        };
        let _ =
            billing_visibility::put_visibility(State(st), auth, Path(id), ApiJson(body)).await?;
    }
    Ok(Redirect::to(&format!("/seller/accounts/{id}/billing-visibility")).into_response())
}
